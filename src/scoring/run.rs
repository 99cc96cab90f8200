//! Scoring a patient against the store: read the compartment, run every model, and write the
//! RiskAssessments and Flags that changed, in one transaction, each with its Provenance (the
//! scorer as agent). Running it twice on the same inputs writes nothing the second time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::models_thread;
use super::output::{self, active_flag, flag_reason, inactive_flag, is_signaal, risk_assessment};
use super::parsed::{self, ParsedVersions};
use super::terms::{self, Terms};
use super::{
    alerts, charlson, engagement, hospital, lace, palliative, utilisation, Record, Risk, Score,
    DAY_MS,
};
use crate::auth::{provenance::traced, Agent};
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::fhir::validate::validate;
use crate::search::definitions::Registry;
use crate::store::{Method, Queued, Store, Version};
use crate::write::{self, transaction::in_transaction_begun_by, Indexing};

/// How scoring runs (`signaal serve` options).
#[derive(Debug, Clone)]
pub struct Config {
    /// The share of the population flagged as high utilisers (0.01: the top 1%).
    pub high_utiliser_fraction: f64,
    /// The time of day (UTC) of the daily full re-score; `None`: no daily run.
    pub daily_at: Option<chrono::NaiveTime>,
    /// The most patients `$worklist` returns.
    pub caseload: usize,
    /// Whether the server runs the background worker that drains the queue.
    pub worker: bool,
    /// How often the worker looks at the queue without being woken: commits that queue a
    /// patient wake it at once, so this only bounds how late a retry, a measurement stamped
    /// in the future or a lost wake-up is picked up.
    pub poll: std::time::Duration,
    /// The most JSON text (bytes) of parsed versions the scorer keeps for its next scorings
    /// (`parsed`); 0: none.
    pub parsed_budget: usize,
}

/// The default of `Config::poll`.
pub const DEFAULT_POLL: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for Config {
    fn default() -> Self {
        Config {
            high_utiliser_fraction: 0.01,
            daily_at: chrono::NaiveTime::from_hms_opt(2, 0, 0),
            caseload: 120,
            worker: true,
            poll: DEFAULT_POLL,
            parsed_budget: parsed::DEFAULT_BUDGET,
        }
    }
}

/// Scoring settings and what the last full re-score learnt about the population.
#[derive(Debug, Default)]
pub struct Scoring {
    pub config: Config,
    /// The utilisation score from which a patient is a high utiliser, set by each full
    /// re-score; until the first one, high-utiliser Flags are left as they are.
    threshold: Mutex<Option<Option<f64>>>,
    /// The terminology of the last scoring and the stored resources it was built from
    /// (`Type/id/version`): rebuilt only when those change.
    terms: Mutex<Option<(Vec<(String, String, i64)>, Arc<Terms>)>>,
    /// The compartment versions parsed at earlier scorings.
    parsed: Arc<ParsedVersions>,
}

impl Scoring {
    pub fn new(config: Config) -> Self {
        Scoring {
            parsed: Arc::new(ParsedVersions::new(config.parsed_budget)),
            config,
            threshold: Mutex::new(None),
            terms: Mutex::new(None),
        }
    }

    /// The terminology the models read now: the built-in value sets and map, with the stored
    /// ValueSets, ConceptMap and CodeSystems that replace or extend them (see `terms`), read
    /// at every scoring so that a stored change counts from the next one.
    pub async fn terms(&self, store: &dyn Store) -> Result<Arc<Terms>, FhirError> {
        let versions = terms::stored(store).await?;
        let key: Vec<(String, String, i64)> = versions
            .iter()
            .map(|v| (v.rtype.clone(), v.id.clone(), v.version))
            .collect();
        if let Some((have, terms)) = &*self.terms.lock().unwrap_or_else(|e| e.into_inner()) {
            if *have == key {
                return Ok(terms.clone());
            }
        }
        let built = if versions.is_empty() {
            terms::BUILTIN_TERMS.clone()
        } else {
            Arc::new(terms::from_stored(&versions))
        };
        for problem in &built.problems {
            tracing::warn!(problem, "a scoring value set filter is not used");
        }
        *self.terms.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, built.clone()));
        Ok(built)
    }

    fn threshold(&self) -> Option<Option<f64>> {
        *self.threshold.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_threshold(&self, threshold: Option<f64>) {
        *self.threshold.lock().unwrap_or_else(|e| e.into_inner()) = Some(threshold);
    }
}

/// What scoring a patient did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub written: usize,
    pub active_flags: Vec<String>,
    /// When the patient must be scored again: the time of a measurement stamped beyond now
    /// (plus the clock skew), which counts only from then.
    pub next_due: Option<i64>,
    /// Whether the patient's queue entry was settled with the scores written
    /// ([`score_queued`] with something to write).
    pub settled: bool,
}

impl Outcome {
    /// What became of a claimed patient's queue entry: settled with the scores written, or
    /// still to be settled (with the other patients of the round whose scores did not change).
    pub fn scored(&self) -> Scored {
        if self.settled {
            Scored::Settled
        } else {
            Scored::Due(self.next_due)
        }
    }
}

/// What scoring a claimed patient did with its queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scored {
    /// Settled in the transaction that wrote the scores (`run::score_queued`).
    Settled,
    /// Scored; the entry is still to be taken off the queue (`None`) or kept until the instant
    /// given (a measurement stamped in the future).
    Due(Option<i64>),
}

/// Days after a discharge during which a high LACE or HOSPITAL score keeps its Flag: both
/// models predict readmission within 30 days.
const READMISSION_WINDOW_DAYS: i64 = 30;

/// What the scorer reads besides the models' inputs: what it wrote before.
const OUTPUT_TYPES: &[&str] = &["RiskAssessment", "Flag"];

/// The patient's resources of `types`: inputs for the models, and what the scorer wrote
/// before.
async fn load(
    store: &dyn Store,
    parsed: &ParsedVersions,
    patient: &str,
    types: &[&str],
) -> Result<(Record, Previous), FhirError> {
    Ok(parse(
        parsed,
        patient,
        store.compartment(patient, types).await?,
    ))
}

/// What the scorer wrote before for a patient, by type and id.
type Previous = HashMap<(String, String), Arc<Value>>;

/// The resources of a compartment read by [`load`]: the models' inputs, and what the scorer
/// wrote before; each version parsed once (`parsed`).
fn parse(parsed: &ParsedVersions, patient: &str, compartment: Vec<Version>) -> (Record, Previous) {
    let mut inputs = Vec::new();
    let mut previous = HashMap::new();
    for version in compartment {
        let Some(resource) = parsed.resource(&version) else {
            continue;
        };
        if super::MODEL_TYPES.contains(&version.rtype.as_str()) {
            inputs.push(resource);
        } else if is_signaal(&resource) && written_by_scorer(&resource, patient) {
            previous.insert((version.rtype, version.id), resource);
        }
    }
    (Record::shared(patient, inputs), previous)
}

/// Whether a resource claiming a Signaal profile has an id the scorer derives (so one a client
/// wrote itself under the profile is never changed or removed by the scorer).
fn written_by_scorer(resource: &Value, patient: &str) -> bool {
    let id = resource["id"].as_str().unwrap_or_default();
    match resource["resourceType"].as_str() {
        Some("Flag") => flag_reason(resource).is_some_and(|r| id == output::flag_id(r, patient)),
        Some("RiskAssessment") => super::codings(&resource["method"])
            .any(|(s, model)| s == output::code_system() && id.starts_with(&format!("{model}-"))),
        _ => false,
    }
}

/// Equal apart from the instant of scoring of a patient-level assessment.
fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if v["resourceType"] == "RiskAssessment" && v.get("encounter").is_none() {
            if let Some(o) = v.as_object_mut() {
                o.shift_remove("occurrenceDateTime");
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Scores one patient at `now` and writes what changed, indexed with `registry` (the server's
/// search parameters).
pub async fn score_patient(
    store: &dyn Store,
    registry: Arc<Registry>,
    scoring: &Scoring,
    patient: &str,
    now: i64,
) -> Result<Outcome, FhirError> {
    let terms = scoring.terms(store).await?;
    score(store, registry, scoring, &terms, patient, None, now).await
}

/// Scores a patient claimed from the scoring queue at `now` (as [`score_patient`]) and settles
/// its queue entry in the transaction that writes what changed (`Tx::settle_queued`): taken
/// off the queue, or kept for the time of a measurement stamped later. The entry goes only with
/// the scores it asked for. When nothing changed there is nothing to write it with: the
/// outcome says so ([`Outcome::scored`]) and the worker settles it with the round's other
/// unchanged patients, in one transaction (decision 0057).
///
/// `terms` is the terminology read (`Scoring::terms`) after the patient was claimed, so it
/// holds every stored value set change committed before the write that queued the patient:
/// the worker reads it once for all the patients it claimed together.
pub async fn score_queued(
    store: &dyn Store,
    registry: Arc<Registry>,
    scoring: &Scoring,
    terms: &Arc<Terms>,
    queued: &Queued,
    now: i64,
) -> Result<Outcome, FhirError> {
    let patient = queued.patient.as_str();
    score(
        store,
        registry,
        scoring,
        terms,
        patient,
        Some(queued.generation),
        now,
    )
    .await
}

/// Scores `patient`; with `generation`, settles its queue entry with the writes.
async fn score(
    store: &dyn Store,
    registry: Arc<Registry>,
    scoring: &Scoring,
    terms: &Arc<Terms>,
    patient: &str,
    generation: Option<i64>,
    now: i64,
) -> Result<Outcome, FhirError> {
    let types: Vec<&str> = super::MODEL_TYPES
        .iter()
        .chain(OUTPUT_TYPES)
        .copied()
        .collect();
    let started = std::time::Instant::now();
    let compartment = store.compartment(patient, &types).await?;
    let read = started.elapsed();
    let assessed = {
        let (terms, threshold, patient) = (terms.clone(), scoring.threshold(), patient.to_owned());
        let parsed = scoring.parsed.clone();
        models_thread::run(move || {
            let (record, previous) = parse(&parsed, &patient, compartment);
            assess(&terms, threshold, &patient, &record, &previous, now)
        })
        .await?
    };
    let Assessment {
        writes,
        active,
        next_due,
    } = assessed;
    let modelled = started.elapsed();
    write_changes(store, registry, patient, generation, next_due, &writes).await?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        patient,
        written = writes.len(),
        compartment_ms = ms(read),
        models_ms = ms(modelled - read),
        transaction_ms = ms(started.elapsed() - modelled),
        "scored"
    );
    Ok(Outcome {
        written: writes.len(),
        active_flags: active,
        next_due,
        settled: generation.is_some() && !writes.is_empty(),
    })
}

/// What the models made of a patient's compartment.
struct Assessment {
    /// The RiskAssessments and Flags to write (`None`: to delete), in key order.
    writes: Vec<(String, String, Option<Value>)>,
    /// The reasons of the patient's active Flags.
    active: Vec<String>,
    /// When the patient must be scored again (see [`Outcome::next_due`]).
    next_due: Option<i64>,
}

/// Runs every model over `patient`'s record at `now`, and compares the results with what the
/// scorer wrote before (`previous`; both as [`load`] reads them): what must be written. Pure
/// computation, run on the models' thread (`models_thread`).
fn assess(
    terms: &Terms,
    threshold: Option<Option<f64>>,
    patient: &str,
    record: &Record,
    previous: &Previous,
    now: i64,
) -> Result<Assessment, FhirError> {
    let mut scores: Vec<Score> = Vec::new();
    if charlson::applies(record) {
        scores.push(charlson::score(terms, record, now));
    }
    let laces = lace::all(terms, record);
    let hospitals = hospital::all(terms, record);
    let mut util = utilisation::score(record, now);
    if let Some(threshold) = threshold {
        if utilisation::is_high(util.score, threshold) {
            util.risk = Risk::High;
        }
    }
    let (alert_score, fired) = alerts::score(terms, record, now);
    let engaged = engagement::score(record, now);
    let (palliative_score, palliative_flags) = palliative::score(terms, record, now);

    // Flags wanted: reason → (assessment id, why).
    let mut wanted: Vec<(&str, String, String)> = Vec::new();
    for (reason, list) in [("lace-high", &laces), ("hospital-high", &hospitals)] {
        if let Some(last) = list.iter().max_by_key(|s| s.occurrence) {
            if last.risk == Risk::High && now - last.occurrence <= READMISSION_WINDOW_DAYS * DAY_MS
            {
                wanted.push((
                    reason,
                    output::risk_assessment_id(last, patient),
                    format!(
                        "{} {} at the discharge of {}",
                        last.model.to_uppercase(),
                        last.score,
                        format_instant(last.occurrence)
                    ),
                ));
            }
        }
    }
    if util.risk == Risk::High {
        wanted.push((
            "high-utiliser",
            output::risk_assessment_id(&util, patient),
            format!("utilisation score {}", util.score),
        ));
    }
    for alert in &fired {
        wanted.push((
            alert.reason,
            output::risk_assessment_id(&alert_score, patient),
            alert.item.why.clone(),
        ));
    }
    if engaged.score > 0.0 {
        let why: Vec<&str> = engaged.items.iter().map(|i| i.why.as_str()).collect();
        wanted.push((
            "disengaged",
            output::risk_assessment_id(&engaged, patient),
            why.join("; "),
        ));
    }
    for (reason, why) in palliative_flags {
        wanted.push((
            reason,
            output::risk_assessment_id(&palliative_score, patient),
            why,
        ));
    }
    // Only assessments that carry information: LACE and HOSPITAL score discharges (none without
    // one); the patient-level models only once the record holds the data they read (a score of
    // 0 from nothing is noise). Flags need a score above 0, so they always have theirs.
    scores.extend(laces);
    scores.extend(hospitals);
    if utilisation::applies(record) {
        scores.push(util);
    }
    if alerts::applies(record) {
        scores.push(alert_score);
    }
    if engagement::applies(record) {
        scores.push(engaged);
    }
    if palliative::applies(terms, record) {
        scores.push(palliative_score);
    }

    let mut writes: Vec<(String, String, Option<Value>)> = Vec::new();
    let mut keep: HashSet<(String, String)> = HashSet::new();
    for score in &scores {
        let ra = risk_assessment(score, patient);
        let id = ra["id"].as_str().unwrap_or_default().to_owned();
        let k = ("RiskAssessment".to_owned(), id.clone());
        if !previous.get(&k).is_some_and(|p| same(p, &ra)) {
            writes.push(("RiskAssessment".into(), id, Some(ra)));
        }
        keep.insert(k);
    }
    let mut active = Vec::new();
    for (reason, assessment, why) in &wanted {
        let id = output::flag_id(reason, patient);
        let k = ("Flag".to_owned(), id.clone());
        let before = previous.get(&k);
        let start = before
            .filter(|f| f["status"] == "active")
            .and_then(|f| super::instant(&f["period"]["start"]))
            .unwrap_or(now);
        let flag = active_flag(reason, patient, assessment, why, start);
        if !before.is_some_and(|p| same(p, &flag)) {
            writes.push(("Flag".into(), id, Some(flag)));
        }
        keep.insert(k);
        active.push(reason.to_string());
    }
    for ((rtype, id), resource) in previous {
        if keep.contains(&(rtype.clone(), id.clone())) {
            continue;
        }
        if rtype == "Flag" {
            let untouched = threshold.is_none() && flag_reason(resource) == Some("high-utiliser");
            if resource["status"] == "active" && !untouched {
                writes.push((
                    rtype.clone(),
                    id.clone(),
                    Some(inactive_flag(resource, now)),
                ));
            }
        } else {
            // An assessment of something no longer there (e.g. a deleted encounter).
            writes.push((rtype.clone(), id.clone(), None));
        }
    }
    writes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (rtype, _, resource) in &writes {
        if let Some(resource) = resource {
            validate(resource, rtype)?;
        }
    }
    Ok(Assessment {
        writes,
        active,
        next_due: super::next_due(record, now),
    })
}

/// Writes `writes` in one transaction (with `generation`, settling the patient's queue entry
/// in it, kept until `next_due` when that is set).
async fn write_changes(
    store: &dyn Store,
    registry: Arc<Registry>,
    patient: &str,
    generation: Option<i64>,
    next_due: Option<i64>,
    writes: &[(String, String, Option<Value>)],
) -> Result<(), FhirError> {
    if !writes.is_empty() {
        let indexing = Arc::new(Indexing::new(registry));
        // The rows written are locked first, then the queue entry is settled: the order in
        // which a client's write locks them (its resources, then its patient's queue entry),
        // so that the two never wait for each other in a circle.
        let keys: Vec<(String, String)> = writes
            .iter()
            .map(|(rtype, id, _)| (rtype.clone(), id.clone()))
            .collect();
        let begin = || async {
            let mut tx = store.begin().await?;
            if let Some(generation) = generation {
                tx.lock_all(&keys).await?;
                tx.settle_queued(patient, generation, next_due).await?;
            }
            Ok(traced(tx, Agent::Scorer, indexing.clone()))
        };
        let indexing = &*indexing;
        in_transaction_begun_by(begin, |tx| {
            Box::pin(async move {
                for (rtype, id, resource) in writes {
                    let current = tx.lock_current(rtype, id).await?;
                    if resource.is_none() && current.is_none_or(|c| c.deleted) {
                        continue;
                    }
                    let method = if resource.is_some() {
                        Method::Put
                    } else {
                        Method::Delete
                    };
                    write::write(tx, indexing, rtype, id, current, method, resource.clone())
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
    }
    Ok(())
}

/// A full re-score of every patient, done a batch at a time so that the worker can drain the
/// queue between batches: first each patient's utilisation (the population rank sets the
/// high-utiliser threshold), then each patient's scores.
pub struct FullRescore {
    now: i64,
    patients: Vec<String>,
    utilisation: Vec<f64>,
    scored: usize,
    /// Patients whose scoring failed (queued for the worker, which retries them).
    pub failed: usize,
}

impl FullRescore {
    pub async fn start(store: &dyn Store, now: i64) -> Result<Self, FhirError> {
        let patients = store.compartments().await?;
        Ok(FullRescore {
            now,
            utilisation: Vec::with_capacity(patients.len()),
            patients,
            scored: 0,
            failed: 0,
        })
    }

    /// How many patients there are to score.
    pub fn total(&self) -> usize {
        self.patients.len()
    }

    /// How many have been scored (or failed).
    pub fn scored(&self) -> usize {
        self.scored
    }

    /// Does up to `batch` patients' worth of the work; true once everything is done. A patient
    /// whose scoring fails is queued (the worker retries it with backoff) and the run goes on.
    pub async fn step(
        &mut self,
        store: &dyn Store,
        registry: Arc<Registry>,
        scoring: &Scoring,
        batch: usize,
    ) -> Result<bool, FhirError> {
        let total = self.patients.len();
        if self.utilisation.len() < total {
            let from = self.utilisation.len();
            for patient in &self.patients[from..(from + batch).min(total)] {
                // The rank needs utilisation only: Encounters.
                let (record, _) = load(store, &scoring.parsed, patient, &["Encounter"]).await?;
                self.utilisation
                    .push(utilisation::score(&record, self.now).score);
            }
            if self.utilisation.len() == total {
                scoring.set_threshold(utilisation::threshold(
                    &self.utilisation,
                    scoring.config.high_utiliser_fraction,
                ));
            }
            return Ok(total == 0);
        }
        let from = self.scored;
        // One read of the terminology a batch.
        let terms = scoring.terms(store).await?;
        for patient in &self.patients[from..(from + batch).min(total)] {
            // Scored at the present, not at the start of the run: the worker may have scored
            // the patient with newer data meanwhile, and an older "now" would undo it (a
            // reading after it would not count yet).
            let scored = score(
                store,
                registry.clone(),
                scoring,
                &terms,
                patient,
                None,
                now_ms(),
            );
            match scored.await {
                Ok(outcome) => {
                    if let Some(at) = outcome.next_due {
                        store.queue_patient(patient, at).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(patient, error = %e, "scoring failed in the full re-score; queued for a retry");
                    store.queue_patient(patient, now_ms()).await?;
                    self.failed += 1;
                }
            }
            self.scored += 1;
        }
        Ok(self.scored == total)
    }
}

/// Re-scores every patient at once (`signaal score --all`); `progress(done, total)` is called
/// after each batch.
pub async fn score_all(
    store: &dyn Store,
    registry: Arc<Registry>,
    scoring: &Scoring,
    mut progress: impl FnMut(usize, usize),
) -> Result<FullRescore, FhirError> {
    let mut run = FullRescore::start(store, now_ms()).await?;
    while !run.step(store, registry.clone(), scoring, 8).await? {
        progress(run.scored(), run.total());
    }
    progress(run.scored(), run.total());
    Ok(run)
}
