// Time-series plots in plain SVG (docs/decisions/0038): a few hundred points at most, drawn
// once per period; threshold lines and bands are rectangles and lines. Each plot is a figure
// with a title and a text summary for screen readers, and its readings as a table.

import { t, formatDate, formatDateTime, formatNumber } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 220;
const M = { left: 46, right: 14, top: 12, bottom: 28 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function html(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(6));
  return ticks;
}

/**
 * A plot. `spec`: id, title, from and to (ms), series [{name, cls, points: [{t, v, ref}]}],
 * lines [{v, label, cls}], bands [{from, to, cls}], limits {cls, label, points: [{t, v, over}]}
 * (a stepped limit line; readings over it marked), domain [min, max] to include, digits,
 * legend [{cls, label}], link(ref) the URL of a reading's resource.
 */
export function plot(spec) {
  const all = spec.series.flatMap((s) => s.points);
  const figure = html('figure', { class: 'plot', id: `plot-${spec.id}` });
  const titleId = `plot-${spec.id}-title`;
  const descId = `plot-${spec.id}-desc`;
  figure.append(html('figcaption', { id: titleId }, spec.title));
  const digits = spec.digits ?? 1;
  const unitless = (v) => formatNumber(v, digits);

  if (!all.length) {
    figure.append(html('p', { class: 'empty', id: descId }, t('noReadings')));
    figure.dataset.readings = '0';
    return figure;
  }
  figure.dataset.readings = String(all.length);

  const values = [...all.map((p) => p.v), ...(spec.domain || []),
    ...(spec.lines || []).map((l) => l.v),
    ...((spec.limits?.points || []).filter(Boolean).map((p) => p.v))];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo) * 0.08 || 1;
  lo -= pad;
  hi += pad;
  const x = (ms) => M.left + ((ms - spec.from) / (spec.to - spec.from)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - lo) / (hi - lo)) * (H - M.top - M.bottom);

  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`,
    class: 'chart',
  });
  const clip = `clip-${spec.id}`;
  const defs = svg('defs');
  const clipPath = svg('clipPath', { id: clip });
  clipPath.append(svg('rect', { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom }));
  defs.append(clipPath);
  root.append(defs);

  const area = svg('g', { 'clip-path': `url(#${clip})` });
  for (const b of spec.bands || []) {
    const top = y(Math.min(b.to ?? hi, hi));
    const bottom = y(Math.max(b.from ?? lo, lo));
    if (bottom > top) {
      area.append(svg('rect', { x: M.left, y: top, width: W - M.left - M.right, height: bottom - top, class: `band ${b.cls}` }));
    }
  }
  // Grid and axes.
  const axes = svg('g', { class: 'axes', 'aria-hidden': 'true' });
  for (const v of niceTicks(lo, hi)) {
    axes.append(svg('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: 'grid' }));
    axes.append(svg('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, unitless(v)));
  }
  const days = (spec.to - spec.from) / 86400000;
  for (let i = 0; i <= 4; i += 1) {
    const ms = spec.from + ((spec.to - spec.from) * i) / 4;
    axes.append(svg('text', { x: x(ms), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' },
      days <= 2 ? formatDateTime(ms) : formatDate(ms)));
  }
  root.append(axes);

  for (const l of spec.lines || []) {
    if (l.v < lo || l.v > hi) continue;
    area.append(svg('line', { x1: M.left, x2: W - M.right, y1: y(l.v), y2: y(l.v), class: `threshold ${l.cls}` }));
  }
  if (spec.limits) {
    // Each reading's limit, drawn over the 72 hours it looks back on.
    const pts = spec.limits.points.filter(Boolean);
    let d = '';
    for (const p of pts) {
      d += `M${x(p.t - 72 * 3600 * 1000).toFixed(1)},${y(p.v).toFixed(1)}H${x(p.t).toFixed(1)}`;
    }
    if (d) area.append(svg('path', { d, class: `limit ${spec.limits.cls}` }));
  }
  for (const s of spec.series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    area.append(svg('path', { d, class: `line ${s.cls}` }));
    for (const p of s.points) {
      const over = p.over ? ' over' : '';
      const dot = svg('circle', { cx: x(p.t), cy: y(p.v), r: p.over ? 5 : 3.5, class: `reading ${s.cls}${over}` });
      dot.append(svg('title', {}, `${s.name} ${unitless(p.v)} — ${formatDateTime(p.t)}`));
      area.append(dot);
    }
  }
  root.append(area);
  figure.append(root);

  const legend = html('ul', { class: 'legend' });
  for (const item of [...spec.series.map((s) => ({ cls: s.cls, label: s.name })), ...(spec.legend || [])]) {
    legend.append(html('li', {}, html('span', { class: `swatch ${item.cls}`, 'aria-hidden': 'true' }), item.label));
  }
  figure.append(legend);

  const first = Math.min(...all.map((p) => p.t));
  const lastPoint = spec.series[0].points[spec.series[0].points.length - 1] || all[all.length - 1];
  figure.append(html('p', { id: descId, class: 'summary' }, t('readings', {
    n: all.length, from: formatDate(first), to: formatDate(Math.max(...all.map((p) => p.t))),
    last: unitless(lastPoint.v),
  })));

  const table = html('table');
  const head = html('tr', {}, html('th', { scope: 'col' }, t('when')));
  for (const s of spec.series) head.append(html('th', { scope: 'col' }, s.name));
  table.append(html('thead', {}, head));
  const body = html('tbody');
  const rows = new Map();
  spec.series.forEach((s, i) => {
    for (const p of s.points) {
      const key = `${p.t}|${p.ref}`;
      if (!rows.has(key)) rows.set(key, { t: p.t, ref: p.ref, cells: [] });
      rows.get(key).cells[i] = p;
    }
  });
  for (const row of [...rows.values()].sort((a, b) => b.t - a.t)) {
    const tr = html('tr', {}, html('td', {}, html('a', { href: spec.link(row.ref) }, formatDateTime(row.t))));
    spec.series.forEach((_, i) => {
      const p = row.cells[i];
      tr.append(html('td', p?.over ? { class: 'over' } : {}, p ? unitless(p.v) : ''));
    });
    body.append(tr);
  }
  table.append(body);
  figure.append(html('details', {}, html('summary', {}, t('showTable')), table));
  return figure;
}

/**
 * A timeline of encounters over [from, to]: stays as bars, visits as diamonds, labelled for
 * screen readers by the list beside it.
 */
export function timeline(spec) {
  const height = 70;
  const x = (ms) => M.left + ((ms - spec.from) / (spec.to - spec.from)) * (W - M.left - M.right);
  const root = svg('svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart timeline', 'aria-hidden': 'true' });
  root.append(svg('line', { x1: M.left, x2: W - M.right, y1: 30, y2: 30, class: 'grid' }));
  for (let i = 0; i <= 4; i += 1) {
    const ms = spec.from + ((spec.to - spec.from) * i) / 4;
    root.append(svg('text', { x: x(ms), y: height - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, formatDate(ms)));
  }
  for (const e of spec.events) {
    const start = Math.max(e.start, spec.from);
    if (e.kind === 'admission') {
      const end = Math.min(e.end ?? spec.to, spec.to);
      root.append(svg('rect', { x: x(start), y: 20, width: Math.max(4, x(end) - x(start)), height: 20, class: 'stay' }));
    } else {
      const cx = x(start);
      root.append(svg('path', { d: `M${cx},18L${cx + 8},30L${cx},42L${cx - 8},30Z`, class: 'visit' }));
    }
  }
  return root;
}
