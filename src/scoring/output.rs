//! Scores as FHIR: a RiskAssessment per model, patient and occasion, and a Flag per patient and
//! reason, conforming to the profiles in `profiles/` (which `validate` enforces on write).
//!
//! Ids are derived from what they are about (model and encounter or patient; reason and
//! patient), so re-scoring the same inputs rewrites the same resources: scoring is idempotent
//! and there is exactly one Flag per patient and reason.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Value};

use super::{Score, CANONICAL};
use crate::fhir::datetime::format_instant;

pub fn code_system() -> String {
    format!("{CANONICAL}/CodeSystem/signaal")
}

pub const RISK_ASSESSMENT_PROFILE: &str =
    "https://signaal.dev/fhir/StructureDefinition/signaal-risk-assessment";
pub const FLAG_PROFILE: &str = "https://signaal.dev/fhir/StructureDefinition/signaal-flag";

fn extension_url(name: &str) -> String {
    format!("{CANONICAL}/StructureDefinition/{name}")
}

/// The version of Signaal's implementation of the models (`method.coding.version`).
pub const MODEL_VERSION: &str = "1.0.0";

/// A Flag reason from the Signaal CodeSystem.
#[derive(Debug, Clone)]
pub struct Reason {
    pub display: String,
    pub category: String,
    pub priority: i64,
}

/// Concepts of the Signaal CodeSystem: models and reasons by code.
struct Concepts {
    displays: HashMap<String, String>,
    reasons: HashMap<String, Reason>,
}

static CONCEPTS: LazyLock<Concepts> = LazyLock::new(|| {
    let cs: Value = serde_json::from_str(include_str!("../../profiles/codesystem-signaal.json"))
        .expect("profiles/codesystem-signaal.json is valid JSON");
    let mut displays = HashMap::new();
    let mut reasons = HashMap::new();
    for group in cs["concept"].as_array().into_iter().flatten() {
        for c in group["concept"].as_array().into_iter().flatten() {
            let code = c["code"].as_str().unwrap_or_default().to_owned();
            let display = c["display"].as_str().unwrap_or_default().to_owned();
            displays.insert(code.clone(), display.clone());
            if group["code"] == "flag-reason" {
                let property = |name: &str| {
                    c["property"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["code"] == name)
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                reasons.insert(
                    code,
                    Reason {
                        display,
                        category: property("category")["valueCode"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        priority: property("priority")["valueInteger"].as_i64().unwrap_or(0),
                    },
                );
            }
        }
    }
    Concepts { displays, reasons }
});

pub fn reason(code: &str) -> Option<&'static Reason> {
    CONCEPTS.reasons.get(code)
}

fn display(code: &str) -> &'static str {
    CONCEPTS.displays.get(code).map_or("", String::as_str)
}

/// A FHIR id for `prefix-subject`: as is when it fits (64 characters), else with the subject
/// hashed (FNV-1a, 64 bits).
pub fn derived_id(prefix: &str, subject: &str) -> String {
    let id = format!("{prefix}-{subject}");
    if id.len() <= 64 {
        return id;
    }
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in subject.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{prefix}-{hash:016x}")
}

/// The id of a score's RiskAssessment: per encounter for discharge models, per patient else.
pub fn risk_assessment_id(score: &Score, patient: &str) -> String {
    match &score.encounter {
        Some(e) => derived_id(score.model, e.trim_start_matches("Encounter/")),
        None => derived_id(score.model, patient),
    }
}

pub fn flag_id(reason: &str, patient: &str) -> String {
    derived_id(reason, patient)
}

fn decimal(x: f64) -> Value {
    // Two decimals at most: points are whole or halves; keeps the text stable.
    // `+ 0.0` turns a negative zero (a sum of no points can be -0) into 0.
    let rounded = (x * 100.0).round() / 100.0 + 0.0;
    serde_json::from_str(&format!("{rounded}")).unwrap_or(json!(0))
}

/// The RiskAssessment of a score.
pub fn risk_assessment(score: &Score, patient: &str) -> Value {
    let mut extension =
        vec![json!({"url": extension_url("risk-score"), "valueDecimal": decimal(score.score)})];
    for item in &score.items {
        let mut parts = vec![
            json!({"url": "points", "valueDecimal": decimal(item.points)}),
            json!({"url": "why", "valueString": item.why}),
        ];
        for b in &item.basis {
            parts.push(json!({"url": "basis", "valueReference": {"reference": b}}));
        }
        extension.push(json!({"url": extension_url("risk-score-item"), "extension": parts}));
    }
    let breakdown: Vec<String> = score
        .items
        .iter()
        .map(|i| format!("{} point(s): {}", decimal(i.points), i.why))
        .collect();
    let mut ra = json!({
        "resourceType": "RiskAssessment",
        "id": risk_assessment_id(score, patient),
        "meta": {"profile": [RISK_ASSESSMENT_PROFILE]},
        "extension": extension,
        "status": "final",
        "method": {
            "coding": [{"system": code_system(), "version": MODEL_VERSION, "code": score.model, "display": display(score.model)}],
            "text": format!("{} — Signaal {MODEL_VERSION}", display(score.model)),
        },
        "subject": {"reference": format!("Patient/{patient}")},
    });
    if let Some(e) = &score.encounter {
        ra["encounter"] = json!({"reference": e});
    }
    ra["occurrenceDateTime"] = json!(format_instant(score.occurrence));
    let basis: Vec<Value> = score
        .basis()
        .iter()
        .map(|b| json!({"reference": b}))
        .collect();
    if !basis.is_empty() {
        ra["basis"] = json!(basis);
    }
    ra["prediction"] = json!([{
        "qualitativeRisk": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
            "code": score.risk.code(),
        }]},
    }]);
    // Every assessment explains itself, also one with nothing counted.
    let explained = if breakdown.is_empty() {
        format!("no {} item applies to the data", display(score.model))
    } else {
        breakdown.join("; ")
    };
    ra["note"] = json!([{"text": format!("Score {}: {explained}", decimal(score.score))}]);
    ra
}

/// An active Flag for `reason`, raised by RiskAssessment `assessment`, since `start`.
pub fn active_flag(
    reason_code: &str,
    patient: &str,
    assessment: &str,
    why: &str,
    start: i64,
) -> Value {
    let r = reason(reason_code);
    json!({
        "resourceType": "Flag",
        "id": flag_id(reason_code, patient),
        "meta": {"profile": [FLAG_PROFILE]},
        "extension": [
            {"url": extension_url("flag-priority"), "valueInteger": r.map_or(0, |r| r.priority)},
            {"url": extension_url("flag-risk-assessment"), "valueReference": {"reference": format!("RiskAssessment/{assessment}")}},
        ],
        "status": "active",
        "category": [{"coding": [{"system": code_system(), "code": r.map_or("", |r| r.category.as_str()), "display": r.map_or("", |r| display(&r.category))}]}],
        "code": {
            "coding": [{"system": code_system(), "code": reason_code, "display": r.map_or("", |r| r.display.as_str())}],
            "text": why,
        },
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": format_instant(start)},
    })
}

/// The same Flag, inactive since `end`.
pub fn inactive_flag(active: &Value, end: i64) -> Value {
    let mut flag = active.clone();
    flag["status"] = json!("inactive");
    flag["period"]["end"] = json!(format_instant(end));
    flag
}

/// The reason code of a Signaal Flag.
pub fn flag_reason(flag: &Value) -> Option<&str> {
    super::codings(&flag["code"])
        .find(|(s, _)| *s == code_system())
        .map(|(_, c)| c)
}

/// The priority of a Flag (its extension), 0 when it has none.
pub fn flag_priority(flag: &Value) -> i64 {
    flag["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == extension_url("flag-priority"))
        .and_then(|e| e["valueInteger"].as_i64())
        .unwrap_or(0)
}

/// Whether a resource was written by the scorer (claims a Signaal profile).
pub fn is_signaal(resource: &Value) -> bool {
    resource["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p == RISK_ASSESSMENT_PROFILE || p == FLAG_PROFILE)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{encounter, ms};
    use super::super::{lace, Record};
    use super::*;
    use crate::fhir::validate::validate;

    #[test]
    fn risk_assessments_and_flags_conform_to_their_profiles() {
        let record = Record::new(
            "p",
            vec![encounter(
                "a",
                "IMP",
                "2024-03-01T10:00:00Z",
                "2024-03-20T10:00:00Z",
            )],
        );
        let score = lace::all(&crate::scoring::terms::BUILTIN_TERMS, &record).remove(0);
        let ra = risk_assessment(&score, "p");
        validate(&ra, "RiskAssessment").unwrap();
        assert_eq!(ra["id"], "lace-a");
        assert_eq!(ra["encounter"]["reference"], "Encounter/a");
        assert_eq!(ra["extension"][0]["valueDecimal"].as_f64(), Some(7.0));
        assert_eq!(decimal(-0.0).to_string(), "0");
        let flag = active_flag(
            "lace-high",
            "p",
            "lace-a",
            "LACE 12",
            ms("2024-03-20T10:00:00Z"),
        );
        validate(&flag, "Flag").unwrap();
        assert_eq!(flag_priority(&flag), 70);
        assert_eq!(flag_reason(&flag), Some("lace-high"));
        validate(&inactive_flag(&flag, ms("2024-03-21T10:00:00Z")), "Flag").unwrap();
    }

    #[test]
    fn long_ids_are_hashed() {
        let long = "x".repeat(64);
        let id = derived_id("glucose-very-high", &long);
        assert_eq!(id.len(), "glucose-very-high-".len() + 16);
        assert_eq!(id, derived_id("glucose-very-high", &long));
    }
}
