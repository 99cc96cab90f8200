// Reading the FHIR the coach's page shows: names, Signaal's Flags and RiskAssessments
// (docs/scoring.md), and home measurements in the units the rules use.

export const LOINC = 'http://loinc.org';
const SIGNAAL = 'https://signaal.dev/fhir/StructureDefinition/';
export const GOAL_DOMAIN = 'https://signaal.dev/fhir/CodeSystem/goal-domain';
export const DOMAINS = ['health', 'daily-activities', 'coping', 'environment'];

// LOINC codes of the measurements, as the FHIR vital-signs profiles define them (body weight,
// the blood pressure panel and its components, oxygen saturation, with the pulse-oximetry code
// the profile allows beside it), and the blood glucose codes of Signaal's glucose rule
// (docs/scoring.md: mass and moles per volume in blood, serum/plasma and capillary blood).
export const CODES = {
  weight: ['29463-7', '3141-9'],
  bpPanel: ['85354-9'],
  systolic: ['8480-6'],
  diastolic: ['8462-4'],
  glucose: ['2339-0', '2345-7', '15074-8', '14749-6', '41653-7', '14743-9'],
  spo2: ['2708-6', '59408-5'],
};

// Glucose in mg/dL to mmol/L: the molar mass of glucose, 180.16 g/mol.
const MG_PER_DL_PER_MMOL_PER_L = 18.016;

export function entries(bundle, mode) {
  return (bundle?.entry || [])
    .filter((e) => !mode || e.search?.mode === mode)
    .map((e) => e.resource)
    .filter(Boolean);
}

export function ref(resource) {
  return `${resource.resourceType}/${resource.id}`;
}

export function name(patient) {
  for (const n of patient?.name || []) {
    if (n.text) return n.text;
    const parts = [...(n.given || []), n.family].filter(Boolean);
    if (parts.length) return parts.join(' ');
  }
  return patient ? ref(patient) : '';
}

function extension(resource, suffix) {
  return (resource.extension || []).find((e) => e.url === SIGNAAL + suffix);
}

export function flagPriority(flag) {
  return extension(flag, 'flag-priority')?.valueInteger ?? 0;
}

export function flagAssessment(flag) {
  return extension(flag, 'flag-risk-assessment')?.valueReference?.reference || null;
}

/** The reason of a Flag: its code's display (or code) and its one-line text. */
export function flagReason(flag) {
  const coding = flag.code?.coding?.[0] || {};
  return { code: coding.code || '', display: coding.display || coding.code || '', text: flag.code?.text || '' };
}

/** The breakdown of a Signaal RiskAssessment: score, model, risk and its lines (points, why, basis). */
export function breakdown(assessment) {
  const items = (assessment.extension || [])
    .filter((e) => e.url === `${SIGNAAL}risk-score-item`)
    .map((e) => {
      const parts = e.extension || [];
      return {
        points: parts.find((p) => p.url === 'points')?.valueDecimal ?? 0,
        why: parts.find((p) => p.url === 'why')?.valueString ?? '',
        basis: parts.filter((p) => p.url === 'basis').map((p) => p.valueReference?.reference).filter(Boolean),
      };
    });
  return {
    score: extension(assessment, 'risk-score')?.valueDecimal ?? null,
    model: assessment.method?.coding?.[0]?.display || assessment.method?.text || '',
    risk: assessment.prediction?.[0]?.qualitativeRisk?.coding?.[0]?.code || '',
    items,
  };
}

function hasCode(concept, codes) {
  return (concept?.coding || []).some((c) => c.system === LOINC && codes.includes(c.code));
}

function when(observation) {
  const t = observation.effectiveDateTime || observation.effectivePeriod?.start || observation.effectiveInstant;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/** A quantity in the unit a series is plotted in, or null when its unit is not one we know. */
function convert(quantity, kind) {
  if (typeof quantity?.value !== 'number') return null;
  const unit = quantity.code || quantity.unit || '';
  const v = quantity.value;
  switch (kind) {
    case 'weight':
      if (unit === 'kg') return v;
      if (unit === 'g') return v / 1000;
      if (unit === '[lb_av]' || unit === 'lb' || unit === 'lbs') return v * 0.45359237;
      return null;
    case 'glucose':
      if (unit === 'mmol/L') return v;
      if (unit === 'mg/dL') return v / MG_PER_DL_PER_MMOL_PER_L;
      return null;
    case 'spo2':
      return unit === '%' ? v : null;
    default:
      return unit === 'mm[Hg]' || unit === 'mmHg' ? v : null;
  }
}

/** Home measurements as series of {t, v, ref}, oldest first. */
export function series(observations) {
  const out = { weight: [], systolic: [], diastolic: [], glucose: [], spo2: [] };
  const push = (kind, obs, quantity) => {
    const t = when(obs);
    const v = convert(quantity, kind);
    if (t !== null && v !== null) out[kind].push({ t, v, ref: ref(obs) });
  };
  for (const obs of observations) {
    if (['entered-in-error', 'cancelled'].includes(obs.status)) continue;
    if (hasCode(obs.code, CODES.weight)) push('weight', obs, obs.valueQuantity);
    else if (hasCode(obs.code, CODES.glucose)) push('glucose', obs, obs.valueQuantity);
    else if (hasCode(obs.code, CODES.spo2)) push('spo2', obs, obs.valueQuantity);
    else if (hasCode(obs.code, CODES.systolic)) push('systolic', obs, obs.valueQuantity);
    else if (hasCode(obs.code, CODES.diastolic)) push('diastolic', obs, obs.valueQuantity);
    else if (hasCode(obs.code, CODES.bpPanel)) {
      for (const c of obs.component || []) {
        if (hasCode(c.code, CODES.systolic)) push('systolic', obs, c.valueQuantity);
        if (hasCode(c.code, CODES.diastolic)) push('diastolic', obs, c.valueQuantity);
      }
    }
  }
  for (const s of Object.values(out)) s.sort((a, b) => a.t - b.t);
  return out;
}

/** Signaal's weight rule (docs/scoring.md): the lowest weight of the 72 h before each reading, + 2 kg. */
export function weightLimits(weights) {
  const window = 72 * 3600 * 1000;
  return weights.map((w) => {
    const before = weights.filter((x) => x.t < w.t && x.t >= w.t - window);
    if (!before.length) return null;
    const limit = Math.min(...before.map((x) => x.v)) + 2;
    return { t: w.t, v: limit, over: w.v > limit };
  });
}

export function goalDomain(goal) {
  for (const c of goal.category || []) {
    for (const coding of c.coding || []) {
      if (coding.system === GOAL_DOMAIN) return coding.code;
    }
  }
  return null;
}

export function text(concept) {
  return concept?.text || concept?.coding?.[0]?.display || concept?.coding?.[0]?.code || '';
}
