// Dutch and English texts of the coach's page. The language follows the browser
// (navigator.language), or the choice in the header, kept in localStorage.

const TEXTS = {
  en: {
    title: 'Coach',
    skip: 'Skip to content',
    language: 'Language',
    login: 'Log in',
    loginIntro: 'Log in with your account at {server} to see your caseload.',
    loggingIn: 'Logging in…',
    logout: 'Log out',
    loggedOut: 'You are logged out. Your access to the server has been revoked.',
    loginFailed: 'Log-in failed: {error}',
    sessionEnded: 'Your session ended. Log in again.',
    notPractitioner: 'You are logged in as {user}, who is not a practitioner: there is no worklist.',
    worklist: 'Worklist',
    worklistIntro: 'Your patients, most urgent first.',
    updated: 'Updated {time}; refreshed every {seconds} s.',
    noPatients: 'No patients in your caseload.',
    noFlags: 'no active flags',
    rank: 'Rank',
    patient: 'Patient',
    flags: 'Active flags',
    missingDomains: 'No goal in: {domains}',
    back: 'Back to the worklist',
    born: 'born {date}',
    flagsTitle: 'Flags and why',
    flagSince: 'since {date}',
    priority: 'priority {n}',
    score: 'Score {score} ({model}), risk {risk}',
    points: 'Points',
    why: 'Why',
    basis: 'Based on',
    measurements: 'Home measurements',
    period: 'Period',
    days: '{n} days',
    year: '1 year',
    bloodPressure: 'Blood pressure (mmHg)',
    systolic: 'systolic',
    diastolic: 'diastolic',
    bpHome: 'home limit 135/85',
    bpVeryHigh: 'very high 180/110',
    weight: 'Weight (kg)',
    weightRule: 'limit: lowest of the 3 days before + 2 kg',
    weightOver: 'more than 2 kg above the lowest of the 3 days before',
    glucose: 'Glucose (mmol/L)',
    glucoseBands: 'bands: < 3.0 very low, < 3.9 low, 3.9–10.0 in range, > 10.0 high, > 13.9 very high',
    spo2: 'Oxygen saturation (%)',
    spo2Limit: 'limit 92%',
    noReadings: 'No readings in this period.',
    readings: '{n} readings from {from} to {to}; last {last}.',
    showTable: 'Show the readings',
    when: 'When',
    value: 'Value',
    goals: 'Goals by life domain',
    noGoal: 'No goal in this domain.',
    otherGoals: 'Other goals',
    actionPlan: 'Action plan',
    noActions: 'No action plan.',
    who: 'who: {who}',
    achievement: 'progress: {status}',
    encounters: 'Admissions and emergency visits (12 months)',
    noEncounters: 'No admissions or emergency visits in the last 12 months.',
    admission: 'Admission',
    emergency: 'Emergency visit',
    nights: '{n} day(s)',
    resource: 'Resource',
    loading: 'Loading…',
    error: 'Something went wrong: {error}',
    'domain.health': 'Health',
    'domain.daily-activities': 'Daily activities',
    'domain.coping': 'Own way of coping',
    'domain.environment': 'Environment',
  },
  nl: {
    title: 'Coach',
    skip: 'Naar de inhoud',
    language: 'Taal',
    login: 'Inloggen',
    loginIntro: 'Log in met uw account bij {server} om uw cliënten te zien.',
    loggingIn: 'Bezig met inloggen…',
    logout: 'Uitloggen',
    loggedOut: 'U bent uitgelogd. Uw toegang tot de server is ingetrokken.',
    loginFailed: 'Inloggen mislukt: {error}',
    sessionEnded: 'Uw sessie is verlopen. Log opnieuw in.',
    notPractitioner: 'U bent ingelogd als {user}, geen zorgverlener: er is geen werklijst.',
    worklist: 'Werklijst',
    worklistIntro: 'Uw cliënten, de meest dringende eerst.',
    updated: 'Bijgewerkt {time}; elke {seconds} s ververst.',
    noPatients: 'Geen cliënten in uw caseload.',
    noFlags: 'geen actieve signalen',
    rank: 'Plaats',
    patient: 'Cliënt',
    flags: 'Actieve signalen',
    missingDomains: 'Geen doel in: {domains}',
    back: 'Terug naar de werklijst',
    born: 'geboren {date}',
    flagsTitle: 'Signalen en waarom',
    flagSince: 'sinds {date}',
    priority: 'prioriteit {n}',
    score: 'Score {score} ({model}), risico {risk}',
    points: 'Punten',
    why: 'Waarom',
    basis: 'Op grond van',
    measurements: 'Thuismetingen',
    period: 'Periode',
    days: '{n} dagen',
    year: '1 jaar',
    bloodPressure: 'Bloeddruk (mmHg)',
    systolic: 'systolisch',
    diastolic: 'diastolisch',
    bpHome: 'thuisgrens 135/85',
    bpVeryHigh: 'zeer hoog 180/110',
    weight: 'Gewicht (kg)',
    weightRule: 'grens: laagste van de 3 dagen ervoor + 2 kg',
    weightOver: 'meer dan 2 kg boven het laagste van de 3 dagen ervoor',
    glucose: 'Glucose (mmol/L)',
    glucoseBands: 'banden: < 3,0 zeer laag, < 3,9 laag, 3,9–10,0 goed, > 10,0 hoog, > 13,9 zeer hoog',
    spo2: 'Zuurstofsaturatie (%)',
    spo2Limit: 'grens 92%',
    noReadings: 'Geen metingen in deze periode.',
    readings: '{n} metingen van {from} tot {to}; laatste {last}.',
    showTable: 'Toon de metingen',
    when: 'Wanneer',
    value: 'Waarde',
    goals: 'Doelen per levensdomein',
    noGoal: 'Geen doel in dit domein.',
    otherGoals: 'Andere doelen',
    actionPlan: 'Actieplan',
    noActions: 'Geen actieplan.',
    who: 'wie: {who}',
    achievement: 'voortgang: {status}',
    encounters: 'Opnames en SEH-bezoeken (12 maanden)',
    noEncounters: 'Geen opnames of SEH-bezoeken in de laatste 12 maanden.',
    admission: 'Opname',
    emergency: 'SEH-bezoek',
    nights: '{n} dag(en)',
    resource: 'Gegeven',
    loading: 'Laden…',
    error: 'Er ging iets mis: {error}',
    'domain.health': 'Gezondheid',
    'domain.daily-activities': 'Dagelijkse activiteiten',
    'domain.coping': 'Eigen manier van omgaan',
    'domain.environment': 'Omgeving',
  },
};

const STORED = 'signaal-coach-language';

export function language() {
  const chosen = localStorage.getItem(STORED);
  if (chosen && TEXTS[chosen]) return chosen;
  const preferred = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return preferred.toLowerCase().startsWith('nl') ? 'nl' : 'en';
}

export function setLanguage(lang) {
  if (TEXTS[lang]) localStorage.setItem(STORED, lang);
  document.documentElement.lang = language();
}

/** The text `key` in the current language, with `{name}` replaced from `values`. */
export function t(key, values = {}) {
  const text = TEXTS[language()][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ''));
}

export function formatDate(instant) {
  if (!instant) return '';
  const d = new Date(instant);
  if (Number.isNaN(d.getTime())) return String(instant);
  return d.toLocaleDateString(language() === 'nl' ? 'nl-NL' : 'en-GB',
    { day: 'numeric', month: 'short', year: 'numeric' });
}

export function formatDateTime(instant) {
  const d = new Date(instant);
  if (Number.isNaN(d.getTime())) return String(instant);
  return d.toLocaleString(language() === 'nl' ? 'nl-NL' : 'en-GB',
    { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
}

export function formatNumber(x, digits = 1) {
  return Number(x).toLocaleString(language() === 'nl' ? 'nl-NL' : 'en-GB',
    { maximumFractionDigits: digits });
}
