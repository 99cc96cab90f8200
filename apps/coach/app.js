// The coach's page: log-in (smart.js), the worklist, a patient's page, a resource's page.
// Views are chosen by the fragment: `#` the worklist, `#patient/ID`, `#resource/TYPE/ID`.
// All data is put in the page as text (textContent), never as markup.

import { authorize, resume, client, logOut, launchSettings, SmartError } from './smart.js';
import { t, setLanguage, language, formatDate, formatDateTime, formatNumber } from './i18n.js';
import {
  entries, ref, name, flagPriority, flagAssessment, flagReason, breakdown, series,
  weightLimits, goalDomain, text, DOMAINS, CODES, LOINC,
} from './fhir.js';
import { plot, timeline } from './plot.js';

const POLL_SECONDS = 30;
const DAY = 86400000;
const main = document.getElementById('main');
const status = document.getElementById('status');
let fhir = null;
let poll = null;
let period = 30;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function show(view, ...content) {
  main.replaceChildren(...content);
  main.dataset.view = view;
  const heading = main.querySelector('h1')?.textContent;
  document.title = heading && heading !== t('title') ? `${heading} — ${t('title')}` : `${t('title')} — Signaal`;
}

function say(message) {
  status.textContent = message;
}

function failure(error) {
  return h('p', { class: 'error', role: 'alert' }, t('error', { error: error.message || String(error) }));
}

// ---------------------------------------------------------------------------
// Log-in and log-out
// ---------------------------------------------------------------------------

function loginView(message) {
  stopPolling();
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const { iss } = launchSettings();
  const button = h('button', { id: 'login', type: 'button', class: 'primary' }, t('login'));
  button.addEventListener('click', async () => {
    button.disabled = true;
    say(t('loggingIn'));
    try {
      await authorize();
    } catch (e) {
      button.disabled = false;
      main.append(failure(e));
    }
  });
  show('login', h('section', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, t('title')),
    message ? h('p', { class: 'notice', role: 'status', id: 'login-message' }, message) : null,
    h('p', {}, t('loginIntro', { server: new URL(iss).host })),
    button));
}

async function logOutClicked() {
  const session = fhir?.session();
  fhir = null;
  stopPolling();
  await logOut(session);
  loginView(t('loggedOut'));
}

// ---------------------------------------------------------------------------
// The worklist
// ---------------------------------------------------------------------------

function practitionerId(session) {
  const m = /(?:^|\/)Practitioner\/([^/]+)$/.exec(session.fhirUser || '');
  return m ? m[1] : null;
}

function stopPolling() {
  if (poll) clearInterval(poll);
  poll = null;
}

async function worklistView() {
  const session = fhir.session();
  const id = practitionerId(session);
  if (!id) {
    show('worklist', h('p', { class: 'notice' }, t('notPractitioner', { user: session.fhirUser || session.user || '?' })));
    return;
  }
  const list = h('ol', { class: 'worklist', id: 'worklist', 'aria-labelledby': 'worklist-title' });
  const updated = h('p', { class: 'updated', id: 'updated' });
  show('worklist', h('section', { 'aria-labelledby': 'worklist-title' },
    h('h1', { id: 'worklist-title' }, t('worklist')),
    h('p', {}, t('worklistIntro')), updated, list));
  const refresh = async () => {
    if (document.hidden || main.dataset.view !== 'worklist') return;
    try {
      const bundle = await fhir.get(`Practitioner/${encodeURIComponent(id)}/$worklist`);
      renderWorklist(list, bundle);
      updated.textContent = t('updated', { time: formatDateTime(Date.now()), seconds: POLL_SECONDS });
      main.dataset.state = 'ready';
    } catch (e) {
      if (fhir) list.replaceChildren(h('li', {}, failure(e)));
    }
  };
  // Polling, not the Subscriptions websocket: a Subscription runs with its client's registered
  // grant, not with the person who logged in (docs/coach-app.md).
  stopPolling();
  poll = setInterval(refresh, POLL_SECONDS * 1000);
  await refresh();
}

function renderWorklist(list, bundle) {
  const included = new Map(entries(bundle, 'include').map((r) => [ref(r), r]));
  const patients = entries(bundle, 'match');
  const matches = (bundle.entry || []).filter((e) => e.search?.mode === 'match');
  if (!patients.length) {
    list.replaceChildren(h('li', { class: 'empty' }, t('noPatients')));
    return;
  }
  list.replaceChildren(...patients.map((patient, i) => {
    const pref = ref(patient);
    const flags = [...included.values()]
      .filter((r) => r.resourceType === 'Flag' && r.subject?.reference === pref)
      .sort((a, b) => flagPriority(b) - flagPriority(a));
    const missing = (matches[i].search?.extension || [])
      .map((e) => e.valueCoding?.code).filter(Boolean)
      .map((code) => t(`domain.${code}`));
    return h('li', { class: `patient${flags.length ? ' flagged' : ''}`, 'data-patient': patient.id },
      h('a', { href: `#patient/${encodeURIComponent(patient.id)}`, class: 'patient-link' },
        h('span', { class: 'rank', 'aria-hidden': 'true' }, String(i + 1)),
        h('span', { class: 'name' }, name(patient))),
      flags.length
        ? h('ul', { class: 'flags', 'aria-label': t('flags') }, flags.map((f) => {
          const r = flagReason(f);
          return h('li', { class: `flag p${Math.min(flagPriority(f), 5)}`, 'data-reason': r.code },
            h('strong', {}, r.display), r.text ? ` — ${r.text}` : '');
        }))
        : h('p', { class: 'quiet' }, t('noFlags')),
      missing.length ? h('p', { class: 'quiet' }, t('missingDomains', { domains: missing.join(', ') })) : null);
  }));
}

// ---------------------------------------------------------------------------
// A patient
// ---------------------------------------------------------------------------

async function patientView(id) {
  stopPolling();
  const patient = await fhir.get(`Patient/${encodeURIComponent(id)}`);
  const page = h('article', { class: 'patient-page', 'aria-labelledby': 'patient-title' });
  page.dataset.name = name(patient);
  const flagsSection = h('section', { id: 'flags', 'aria-labelledby': 'flags-title' },
    h('h2', { id: 'flags-title' }, t('flagsTitle')), h('p', {}, t('loading')));
  const measurements = h('section', { id: 'measurements', 'aria-labelledby': 'measurements-title' });
  const goals = h('section', { id: 'goals', 'aria-labelledby': 'goals-title' },
    h('h2', { id: 'goals-title' }, t('goals')), h('p', {}, t('loading')));
  const encounters = h('section', { id: 'encounters', 'aria-labelledby': 'encounters-title' },
    h('h2', { id: 'encounters-title' }, t('encounters')), h('p', {}, t('loading')));
  page.append(
    h('p', {}, h('a', { href: '#', class: 'back' }, `← ${t('back')}`)),
    h('h1', { id: 'patient-title' }, name(patient),
      patient.birthDate ? h('small', {}, ` ${t('born', { date: formatDate(patient.birthDate) })}`) : null),
    flagsSection, measurements, goals, encounters);
  show('patient', page);
  const pid = encodeURIComponent(id);
  await Promise.all([
    renderFlags(flagsSection, pid).catch((e) => flagsSection.append(failure(e))),
    renderMeasurements(measurements, pid).catch((e) => measurements.append(failure(e))),
    renderGoals(goals, pid).catch((e) => goals.append(failure(e))),
    renderEncounters(encounters, pid).catch((e) => encounters.append(failure(e))),
  ]);
  main.dataset.state = 'ready';
}

function resourceLink(reference) {
  return `#resource/${reference.split('/').map(encodeURIComponent).join('/')}`;
}

async function renderFlags(section, pid) {
  const bundle = await fhir.get(`Flag?patient=Patient/${pid}&status=active&_sort=-priority`);
  const flags = entries(bundle, 'match');
  const title = section.firstChild;
  if (!flags.length) {
    section.replaceChildren(title, h('p', { class: 'quiet' }, t('noFlags')));
    return;
  }
  const items = await Promise.all(flags.map(async (flag) => {
    const r = flagReason(flag);
    const assessmentRef = flagAssessment(flag);
    const assessment = assessmentRef ? await fhir.get(assessmentRef).catch(() => null) : null;
    const b = assessment ? breakdown(assessment) : null;
    return h('li', { class: `flag-card p${Math.min(flagPriority(flag), 5)}`, 'data-reason': r.code },
      h('h3', {}, r.display, h('small', {}, ` ${t('priority', { n: flagPriority(flag) })}`)),
      h('p', { class: 'reason' }, r.text),
      h('p', { class: 'quiet' }, t('flagSince', { date: formatDateTime(flag.period?.start) }), ' · ',
        h('a', { href: resourceLink(ref(flag)) }, ref(flag))),
      b ? h('div', { class: 'breakdown' },
        h('p', {}, h('a', { href: resourceLink(assessmentRef) },
          t('score', { score: b.score === null ? '?' : formatNumber(b.score, 2), model: b.model, risk: b.risk }))),
        h('table', {},
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('points')), h('th', { scope: 'col' }, t('why')),
            h('th', { scope: 'col' }, t('basis')))),
          h('tbody', {}, b.items.map((item) => h('tr', {},
            h('td', { class: 'num' }, formatNumber(item.points, 2)),
            h('td', {}, item.why),
            h('td', {}, item.basis.map((x, i) => [i ? ', ' : '', h('a', { href: resourceLink(x) }, x)]))))))) : null);
  }));
  section.replaceChildren(title, h('ul', { class: 'flag-cards' }, items));
}

async function renderMeasurements(section, pid) {
  const choices = [7, 30, 90, 365];
  const select = h('select', { id: 'period' }, choices.map((d) => h('option', { value: d, selected: d === period },
    d === 365 ? t('year') : t('days', { n: d }))));
  const plots = h('div', { class: 'plots' });
  section.replaceChildren(
    h('h2', { id: 'measurements-title' }, t('measurements')),
    h('p', { class: 'controls' }, h('label', { for: 'period' }, `${t('period')} `), select),
    plots);
  const draw = async () => {
    const to = Date.now();
    const from = to - period * DAY;
    const codes = Object.values(CODES).flat().map((c) => `${LOINC}|${c}`).join(',');
    const since = new Date(from - 3 * DAY).toISOString();
    const observations = [];
    let next = `Observation?patient=Patient/${pid}&code=${encodeURIComponent(codes)}&date=ge${encodeURIComponent(since)}&_count=500`;
    for (let pages = 0; next && pages < 10; pages += 1) {
      const bundle = await fhir.get(next);
      observations.push(...entries(bundle, 'match'));
      next = (bundle.link || []).find((l) => l.relation === 'next')?.url;
    }
    const s = series(observations);
    const inPeriod = (points) => points.filter((p) => p.t >= from);
    const limits = weightLimits(s.weight);
    const weights = s.weight.map((w, i) => ({ ...w, over: limits[i]?.over }));
    const link = resourceLink;
    plots.replaceChildren(
      plot({
        id: 'bp', title: t('bloodPressure'), from, to, link, digits: 0,
        series: [
          { name: t('systolic'), cls: 's1', points: inPeriod(s.systolic) },
          { name: t('diastolic'), cls: 's2', points: inPeriod(s.diastolic) },
        ],
        lines: [{ v: 135, cls: 'warn' }, { v: 85, cls: 'warn' }, { v: 180, cls: 'alarm' }, { v: 110, cls: 'alarm' }],
        legend: [{ cls: 'warn', label: t('bpHome') }, { cls: 'alarm', label: t('bpVeryHigh') }],
      }),
      plot({
        id: 'weight', title: t('weight'), from, to, link,
        series: [{ name: t('weight'), cls: 's1', points: inPeriod(weights) }],
        limits: { cls: 'alarm', points: limits.filter((l) => l && l.t >= from) },
        legend: [{ cls: 'alarm', label: t('weightRule') }, { cls: 'over', label: t('weightOver') }],
      }),
      plot({
        id: 'glucose', title: t('glucose'), from, to, link,
        series: [{ name: t('glucose'), cls: 's1', points: inPeriod(s.glucose) }],
        domain: [3.0, 10.0],
        bands: [
          { to: 3.0, cls: 'alarm' }, { from: 3.0, to: 3.9, cls: 'warn' }, { from: 3.9, to: 10.0, cls: 'good' },
          { from: 10.0, to: 13.9, cls: 'warn' }, { from: 13.9, cls: 'alarm' },
        ],
        legend: [{ cls: 'good', label: t('glucoseBands') }],
      }),
      plot({
        id: 'spo2', title: t('spo2'), from, to, link, digits: 0,
        series: [{ name: 'SpO2', cls: 's1', points: inPeriod(s.spo2) }],
        domain: [90, 100],
        lines: [{ v: 92, cls: 'alarm' }],
        legend: [{ cls: 'alarm', label: t('spo2Limit') }],
      }));
  };
  select.addEventListener('change', () => {
    period = Number(select.value);
    draw().catch((e) => plots.replaceChildren(failure(e)));
  });
  await draw();
}

async function searchAll(path) {
  const out = [];
  let next = path;
  for (let pages = 0; next && pages < 10; pages += 1) {
    const bundle = await fhir.get(next);
    out.push(...entries(bundle, 'match'));
    next = (bundle.link || []).find((l) => l.relation === 'next')?.url;
  }
  return out;
}

async function renderGoals(section, pid) {
  const [goals, plans] = await Promise.all([
    searchAll(`Goal?patient=Patient/${pid}&_count=200`),
    searchAll(`CarePlan?patient=Patient/${pid}&status=active,draft,on-hold&_count=200`),
  ]);
  const current = goals.filter((g) => !['cancelled', 'entered-in-error', 'rejected'].includes(g.lifecycleStatus));
  const plansOf = (goal) => plans.filter((p) => (p.goal || []).some((g) => g.reference === ref(goal)));
  const goalItem = (goal) => {
    const actions = plansOf(goal).flatMap((p) => (p.activity || []).map((a) => ({ plan: p, a })));
    const status = text(goal.achievementStatus);
    return h('li', { class: 'goal' },
      h('p', {}, h('strong', {}, text(goal.description) || ref(goal)), ` (${goal.lifecycleStatus})`,
        status ? h('span', { class: `quiet${/worsening|not-achieving/.test(status) ? ' alarm-text' : ''}` }, ` · ${t('achievement', { status })}`) : null),
      actions.length
        ? h('div', {}, h('p', { class: 'quiet' }, t('actionPlan')), h('ul', {}, actions.map(({ plan, a }) => h('li', {},
          h('a', { href: resourceLink(ref(plan)) }, a.detail?.description || text(a.detail?.code) || ref(plan)),
          (a.detail?.performer || []).length
            ? ` · ${t('who', { who: a.detail.performer.map((p) => p.display || p.reference).join(', ') })}` : ''))))
        : h('p', { class: 'quiet' }, t('noActions')));
  };
  const groups = DOMAINS.map((domain) => {
    const inDomain = current.filter((g) => goalDomain(g) === domain);
    return h('section', { class: 'domain', 'data-domain': domain },
      h('h3', {}, t(`domain.${domain}`)),
      inDomain.length ? h('ul', {}, inDomain.map(goalItem)) : h('p', { class: 'quiet' }, t('noGoal')));
  });
  const others = current.filter((g) => !DOMAINS.includes(goalDomain(g)));
  if (others.length) {
    groups.push(h('section', { class: 'domain' }, h('h3', {}, t('otherGoals')), h('ul', {}, others.map(goalItem))));
  }
  section.replaceChildren(section.firstChild, h('div', { class: 'domains' }, groups));
}

async function renderEncounters(section, pid) {
  const to = Date.now();
  const from = to - 365 * DAY;
  const found = await searchAll(`Encounter?patient=Patient/${pid}&class=IMP,EMER&date=ge${encodeURIComponent(new Date(from).toISOString())}&_count=200`);
  const events = found
    .filter((e) => !['cancelled', 'entered-in-error'].includes(e.status))
    .map((e) => ({
      kind: e.class?.code === 'IMP' ? 'admission' : 'emergency',
      start: Date.parse(e.period?.start),
      end: e.period?.end ? Date.parse(e.period.end) : null,
      ref: ref(e),
      reason: (e.reasonCode || []).map(text).filter(Boolean).join(', '),
    }))
    .filter((e) => !Number.isNaN(e.start))
    .sort((a, b) => b.start - a.start);
  const title = section.firstChild;
  if (!events.length) {
    section.replaceChildren(title, h('p', { class: 'quiet' }, t('noEncounters')));
    return;
  }
  section.replaceChildren(title, timeline({ from, to, events }),
    h('ul', { class: 'encounters' }, events.map((e) => h('li', { class: e.kind },
      h('span', { class: `swatch ${e.kind === 'admission' ? 'stay' : 'visit'}`, 'aria-hidden': 'true' }),
      h('a', { href: resourceLink(e.ref) }, `${t(e.kind)} ${formatDate(e.start)}`),
      e.end && e.kind === 'admission' ? ` · ${t('nights', { n: Math.max(0, Math.floor((e.end - e.start) / DAY)) })}` : '',
      e.reason ? ` · ${e.reason}` : ''))));
}

// ---------------------------------------------------------------------------
// One resource (what a Flag's explanation links to)
// ---------------------------------------------------------------------------

async function resourceView(type, id) {
  stopPolling();
  const resource = await fhir.get(`${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
  const subject = resource.subject?.reference || resource.patient?.reference;
  const back = subject?.startsWith('Patient/') ? `#patient/${subject.slice(8)}` : '#';
  show('resource', h('article', { 'aria-labelledby': 'resource-title' },
    h('p', {}, h('a', { href: back, class: 'back' }, '←'), ' ', h('a', { href: '#' }, t('back'))),
    h('h1', { id: 'resource-title' }, `${type}/${id}`),
    h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(resource, null, 2))));
  main.dataset.state = 'ready';
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

async function route() {
  if (!fhir) return;
  main.dataset.state = 'loading';
  const hash = decodeURIComponent(location.hash.slice(1));
  try {
    const [view, ...rest] = hash.split('/');
    if (view === 'patient' && rest[0]) await patientView(rest[0]);
    else if (view === 'resource' && rest.length === 2) await resourceView(rest[0], rest[1]);
    else await worklistView();
    main.focus({ preventScroll: true });
  } catch (e) {
    if (fhir) show('error', failure(e));
  }
}

function languageSwitch() {
  const select = document.getElementById('language');
  select.value = language();
  select.addEventListener('change', () => {
    setLanguage(select.value);
    applyTexts();
    if (fhir) route(); else loginView();
  });
}

function applyTexts() {
  document.documentElement.lang = language();
  for (const el of document.querySelectorAll('[data-text]')) el.textContent = t(el.dataset.text);
}

async function start() {
  applyTexts();
  languageSwitch();
  document.getElementById('logout').addEventListener('click', logOutClicked);
  let session;
  try {
    session = await resume();
  } catch (e) {
    loginView(t('loginFailed', { error: e instanceof SmartError ? e.message : String(e) }));
    return;
  }
  if (!session) {
    loginView();
    return;
  }
  fhir = client(session, () => {
    fhir = null;
    loginView(t('sessionEnded'));
  });
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = session.user || session.fhirUser || '';
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && main.dataset.view === 'worklist') route();
  });
  await route();
}

start();
