//! Risk scoring: the published models Signaal runs over each patient's resources, whatever
//! source sent them, and the FHIR it writes back (RiskAssessment, Flag).
//!
//! Each model is a pure function over a [`Record`] (the patient's resources as JSON) and the
//! instant of scoring, returning a [`Score`]: the points, a readable breakdown and the resources
//! that contributed. `output` turns scores into RiskAssessments and Flags; `queue` and `worker`
//! decide when a patient is scored (after every write that changes its inputs, and daily).

pub mod alerts;
pub mod charlson;
pub mod engagement;
pub mod hospital;
pub mod lace;
mod models_thread;
pub mod output;
pub mod palliative;
pub mod parsed;
pub mod run;
pub mod terms;
pub mod units;
pub mod utilisation;
pub mod worker;

use std::sync::Arc;

use serde_json::Value;

use crate::fhir::datetime::parse_range;

/// The canonical base of Signaal's own CodeSystem, StructureDefinitions and extensions.
pub const CANONICAL: &str = "https://signaal.dev/fhir";

// The resource types whose writes queue a patient for scoring: the write pipeline's to know.
pub use crate::write::scoring_queue::{is_input, INPUT_TYPES};

/// The resource types the models read: the scorer loads only these (and its own output) from
/// a patient's compartment, not the whole record (claims, reports, medications…). Patient and
/// CareTeam writes queue the patient but no model reads them. All of their history is read,
/// not a time window: LACE and HOSPITAL score every discharge with the labs and procedures of
/// its stay, and engagement looks for the last measurement of a goal however old.
pub const MODEL_TYPES: &[&str] = &[
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "Goal",
    "CarePlan",
    "QuestionnaireResponse",
    "Consent",
];

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// A patient's resources, as stored (without server `meta`), by type. Shared: the scorer's
/// come from the versions it parsed before (`parsed`).
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub patient: String,
    pub resources: Vec<Arc<Value>>,
}

impl Record {
    pub fn new(patient: &str, resources: Vec<Value>) -> Self {
        Record::shared(patient, resources.into_iter().map(Arc::new).collect())
    }

    /// A record of resources parsed before.
    pub fn shared(patient: &str, resources: Vec<Arc<Value>>) -> Self {
        Record {
            patient: patient.to_owned(),
            resources,
        }
    }

    pub fn of_type<'a>(&'a self, rtype: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources
            .iter()
            .map(|r| &**r)
            .filter(move |r| r["resourceType"] == rtype)
    }
}

/// The qualitative risk of `RiskAssessment.prediction.qualitativeRisk`
/// (http://terminology.hl7.org/CodeSystem/risk-probability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    Low,
    Moderate,
    High,
}

impl Risk {
    pub fn code(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Moderate => "moderate",
            Risk::High => "high",
        }
    }
}

/// One line of a score's breakdown: the points, why in words, and the resources behind it
/// (`Type/id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub points: f64,
    pub why: String,
    pub basis: Vec<String>,
}

impl Item {
    pub fn new(points: f64, why: impl Into<String>, basis: Vec<String>) -> Self {
        Item {
            points,
            why: why.into(),
            basis,
        }
    }
}

/// A model's result for one patient on one occasion.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The model's code in the Signaal CodeSystem (`lace`, `hospital`, `charlson`, …).
    pub model: &'static str,
    pub score: f64,
    pub risk: Risk,
    pub items: Vec<Item>,
    /// The Encounter scored (`Encounter/id`), for models scored at a discharge.
    pub encounter: Option<String>,
    /// When the assessment applies (the discharge, or the instant of scoring).
    pub occurrence: i64,
}

impl Score {
    /// Every resource that contributed, once, in breakdown order.
    pub fn basis(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in &self.items {
            for b in &item.basis {
                if !out.contains(b) {
                    out.push(b.clone());
                }
            }
        }
        out
    }
}

/// `Type/id` of a resource.
pub fn key(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or(""),
        resource["id"].as_str().unwrap_or("")
    )
}

/// The start of a FHIR dateTime as ms (a value without a zone is UTC; a date is its first
/// instant).
pub fn instant(value: &Value) -> Option<i64> {
    parse_range(value.as_str()?).ok().map(|(lo, _)| lo)
}

/// The end of a FHIR dateTime as ms: the last instant it covers (a date is the whole day).
pub fn instant_end(value: &Value) -> Option<i64> {
    parse_range(value.as_str()?).ok().map(|(_, hi)| hi - 1)
}

/// Whether a CodeableConcept (or a Coding list) holds `system|code`.
pub fn has_code(concept: &Value, system: &str, code: &str) -> bool {
    codings(concept).any(|(s, c)| s == system && c == code)
}

/// The `(system, code)` pairs of a CodeableConcept.
pub fn codings(concept: &Value) -> impl Iterator<Item = (&str, &str)> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["system"].as_str()?, c["code"].as_str()?)))
}

/// The id a reference points at when it names `rtype` (`Patient/1`, or an absolute URL ending
/// in it).
pub fn reference_id<'a>(reference: &'a Value, rtype: &str) -> Option<&'a str> {
    let r = reference["reference"].as_str()?;
    let mut parts = r.rsplit('/');
    let id = parts.next()?;
    (parts.next()? == rtype).then_some(id)
}

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The effective instant of an Observation (`effectiveDateTime`, `effectiveInstant` or the end
/// of `effectivePeriod`, else its start), or of anything with such a field.
pub fn effective(observation: &Value) -> Option<i64> {
    instant(&observation["effectiveDateTime"])
        .or_else(|| instant(&observation["effectiveInstant"]))
        .or_else(|| instant(&observation["effectivePeriod"]["end"]))
        .or_else(|| instant(&observation["effectivePeriod"]["start"]))
}

/// Whether a Condition counts at all: not `refuted` or `entered-in-error`
/// (`verificationStatus`, http://terminology.hl7.org/CodeSystem/condition-ver-status).
pub fn condition_counts(condition: &Value) -> bool {
    !condition["verificationStatus"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| matches!(c["code"].as_str(), Some("refuted" | "entered-in-error")))
}

/// The breakdown line of the counted Conditions of `record` whose code no model's value set or
/// map decides (see [`terms`]): "n condition(s) not recognised: system|code (display), …", with
/// 0 points and the Conditions as basis; `None` when every Condition was placed.
pub fn unrecognised(terms: &terms::Terms, record: &Record) -> Option<Item> {
    let mut described = Vec::new();
    let mut basis = Vec::new();
    for condition in record.of_type("Condition").filter(|c| condition_counts(c)) {
        let concept = &condition["code"];
        if codings(concept).any(|(s, c)| terms.decides_condition(s, c)) {
            continue;
        }
        let codes: Vec<String> = concept["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let code = format!(
                    "{}|{}",
                    c["system"].as_str().unwrap_or(""),
                    c["code"].as_str().unwrap_or("")
                );
                match c["display"].as_str() {
                    Some(d) => format!("{code} ({d})"),
                    None => code,
                }
            })
            .collect();
        let text = if codes.is_empty() {
            format!("text \"{}\"", concept["text"].as_str().unwrap_or(""))
        } else {
            codes.join(" / ")
        };
        if !described.contains(&text) {
            described.push(text);
        }
        basis.push(key(condition));
    }
    if basis.is_empty() {
        return None;
    }
    Some(Item::new(
        0.0,
        format!(
            "{} condition(s) not recognised: {}",
            basis.len(),
            described.join(", ")
        ),
        basis,
    ))
}

/// How far in the future (ms) a measurement may be stamped and still be scored as "now": the
/// clock skew of a home device or a sender (5 minutes). A later one is scored at its own time:
/// the patient is queued for then (see [`next_due`]).
pub const CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// The instant a counted Observation stamped beyond `now` + [`CLOCK_SKEW_MS`] becomes due: the
/// earliest such, when the patient must be scored again.
pub fn next_due(record: &Record, now: i64) -> Option<i64> {
    record
        .of_type("Observation")
        .filter(|o| observation_counts(o))
        .filter_map(effective)
        .filter(|t| *t > now + CLOCK_SKEW_MS)
        .min()
}

/// Whether an Observation counts: not entered in error, cancelled or preliminary.
pub fn observation_counts(observation: &Value) -> bool {
    matches!(
        observation["status"].as_str(),
        Some("final" | "amended" | "corrected")
    )
}

/// An Encounter's class code (`IMP`, `EMER`, `AMB`…).
pub fn encounter_class(encounter: &Value) -> Option<&str> {
    encounter["class"]["code"].as_str()
}

/// `[start, end]` of a finished Encounter (status `finished` with both period ends).
pub fn finished_period(encounter: &Value) -> Option<(i64, i64)> {
    if encounter["status"] != "finished" {
        return None;
    }
    Some((
        instant(&encounter["period"]["start"])?,
        instant(&encounter["period"]["end"])?,
    ))
}

/// Whether an Encounter ever happened (not planned, cancelled or entered in error).
pub fn encounter_happened(encounter: &Value) -> bool {
    !matches!(
        encounter["status"].as_str(),
        Some("planned" | "cancelled" | "entered-in-error")
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-made resources for the models' unit tests.
    use serde_json::{json, Value};

    pub fn encounter(id: &str, class: &str, start: &str, end: &str) -> Value {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": super::ACT_CODE, "code": class},
            "subject": {"reference": "Patient/p"},
            "period": {"start": start, "end": end}})
    }

    pub fn condition(id: &str, system: &str, code: &str) -> Value {
        json!({"resourceType": "Condition", "id": id,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": "Patient/p"}})
    }

    pub fn quantity(id: &str, loinc: &str, at: &str, value: f64, unit: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": super::LOINC, "code": loinc}]},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": at,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    }

    pub fn ms(at: &str) -> i64 {
        super::instant(&json!(at)).expect("a valid dateTime")
    }
}
