//! HOSPITAL score for potentially avoidable 30-day readmission.
//!
//! Source: Donzé J, Aujesky D, Williams D, Schnipper JL. Potentially avoidable 30-day hospital
//! readmissions in medical patients: derivation and validation of a prediction model. JAMA
//! Intern Med 2013;173(8):632-8 (table 3, the HOSPITAL score).
//!
//! Scored at each inpatient discharge (Encounter class IMP with a finished period):
//! - H, haemoglobin at discharge < 12 g/dL (the last LOINC 718-7, or 59260-0 in mmol/L converted,
//!   during the stay): 1;
//! - O, discharge from an oncology service (ValueSet `scoring-oncology-service`) or a cancer
//!   (ValueSet `scoring-active-cancer`: Charlson malignancy or metastatic solid tumour) known
//!   and active at discharge (see [`active_at`]): 2;
//! - S, sodium at discharge < 135 mmol/L (the last LOINC 2951-2 during the stay): 1;
//! - P, any Procedure during the stay: 1;
//! - I, index admission urgent or emergent: 1;
//! - T, number of hospital admissions in the previous 12 months (calendar months back from the
//!   admission's start): 0–1 → 0, 2–5 → 2, > 5 → 5;
//! - A, length of stay ≥ 5 days: 2.
//!
//! 0–4 low, 5–6 intermediate (FHIR qualitative risk `moderate`), ≥ 7 high.

use serde_json::Value;

use super::lace::{as_of, discharges, emergent, length_of_stay_days, months_before};
use super::terms::{self, Terms};
use super::units::{haemoglobin_g_per_dl, quantity_in};
use super::{
    codings, condition_counts, effective, encounter_class, encounter_happened, has_code, instant,
    key, observation_counts, reference_id, unrecognised, Item, Record, Risk, Score, LOINC,
};

/// The last counted Observation with one of `codes` whose effective time falls in `[from, to]`.
fn last_during<'a>(record: &'a Record, codes: &[&str], from: i64, to: i64) -> Option<&'a Value> {
    record
        .of_type("Observation")
        .filter(|o| observation_counts(o))
        .filter(|o| codes.iter().any(|c| has_code(&o["code"], LOINC, c)))
        .filter_map(|o| {
            effective(o)
                .filter(|t| (from..=to).contains(t))
                .map(|t| (t, o))
        })
        .max_by_key(|(t, _)| *t)
        .map(|(_, o)| o)
}

/// Whether a Condition was active at `t` (a discharge): not abated at or before `t`
/// (`abatementDateTime`, or the start of `abatementPeriod`); an abatement after `t` leaves it
/// active then, whatever its clinicalStatus says now (a later resolution does not rewrite an
/// earlier discharge). Without an abatement date the clinicalStatus decides: active,
/// recurrence or relapse (or none given) is active; inactive, remission or resolved is not
/// (when it ended is unknown); an `abatementBoolean` true or an abatement age or text is not.
/// Whether it was known by `t` is [`as_of`]'s job.
pub fn active_at(condition: &Value, t: i64) -> bool {
    let abated = instant(&condition["abatementDateTime"])
        .or_else(|| instant(&condition["abatementPeriod"]["start"]));
    if let Some(at) = abated {
        return at > t;
    }
    if condition["abatementBoolean"] == true
        || condition.get("abatementAge").is_some()
        || condition.get("abatementRange").is_some()
        || condition.get("abatementString").is_some()
    {
        return false;
    }
    let mut statuses = codings(&condition["clinicalStatus"])
        .map(|(_, c)| c)
        .peekable();
    statuses.peek().is_none()
        || codings(&condition["clinicalStatus"])
            .any(|(_, c)| matches!(c, "active" | "recurrence" | "relapse"))
}

/// Whether the encounter was with an oncology service (`serviceType` in the ValueSet
/// `scoring-oncology-service`).
fn oncology_service(terms: &Terms, encounter: &Value) -> bool {
    terms.holds(&terms::url("oncology-service"), &encounter["serviceType"])
}

/// Whether a Procedure happened during `[start, end]` or belongs to the encounter.
fn during(procedure: &Value, encounter_id: &str, start: i64, end: i64) -> bool {
    if matches!(
        procedure["status"].as_str(),
        Some("not-done" | "entered-in-error" | "preparation")
    ) {
        return false;
    }
    if reference_id(&procedure["encounter"], "Encounter") == Some(encounter_id) {
        return true;
    }
    let at = instant(&procedure["performedDateTime"])
        .or_else(|| instant(&procedure["performedPeriod"]["start"]));
    at.is_some_and(|t| (start..=end).contains(&t))
}

pub fn score(terms: &Terms, record: &Record, admission: &Value, start: i64, end: i64) -> Score {
    let mut items = Vec::new();
    let at_discharge = as_of(record, end);
    // H
    match last_during(record, &["718-7", "59260-0"], start, end) {
        Some(o) => match haemoglobin_g_per_dl(&o["valueQuantity"]) {
            Ok(hb) => items.push(Item::new(
                if hb < 12.0 { 1.0 } else { 0.0 },
                format!("H: haemoglobin at discharge {:.1} g/dL", hb),
                vec![key(o)],
            )),
            Err(why) => items.push(Item::new(
                0.0,
                format!("H: haemoglobin not usable ({why})"),
                vec![key(o)],
            )),
        },
        None => items.push(Item::new(0.0, "H: no haemoglobin during the stay", vec![])),
    }
    // O
    let cancers: Vec<String> = at_discharge
        .of_type("Condition")
        .filter(|c| active_at(c, end) && condition_counts(c))
        .filter(|c| terms.holds(&terms::url("active-cancer"), &c["code"]))
        .map(key)
        .collect();
    if oncology_service(terms, admission) {
        items.push(Item::new(
            2.0,
            "O: discharged from oncology",
            vec![key(admission)],
        ));
    } else if !cancers.is_empty() {
        items.push(Item::new(2.0, "O: active cancer diagnosis", cancers));
    } else {
        items.push(Item::new(
            0.0,
            "O: no oncology discharge or active cancer",
            vec![],
        ));
    }
    // S
    match last_during(record, &["2951-2"], start, end) {
        Some(o) => match quantity_in(&o["valueQuantity"], "mmol/L") {
            Ok(na) => items.push(Item::new(
                if na < 135.0 { 1.0 } else { 0.0 },
                format!("S: sodium at discharge {na} mmol/L"),
                vec![key(o)],
            )),
            Err(why) => items.push(Item::new(
                0.0,
                format!("S: sodium not usable ({why})"),
                vec![key(o)],
            )),
        },
        None => items.push(Item::new(0.0, "S: no sodium during the stay", vec![])),
    }
    // P
    let encounter_id = admission["id"].as_str().unwrap_or("");
    let procedures: Vec<String> = record
        .of_type("Procedure")
        .filter(|p| during(p, encounter_id, start, end))
        .map(key)
        .collect();
    items.push(Item::new(
        if procedures.is_empty() { 0.0 } else { 1.0 },
        format!("P: {} procedure(s) during the stay", procedures.len()),
        procedures,
    ));
    // I
    match emergent(record, admission) {
        Some((why, basis)) => items.push(Item::new(1.0, format!("I: {why}"), basis)),
        None => items.push(Item::new(0.0, "I: elective admission", vec![])),
    }
    // T
    let since = months_before(start, 12);
    let earlier: Vec<String> = record
        .of_type("Encounter")
        .filter(|e| encounter_class(e) == Some("IMP") && encounter_happened(e))
        .filter(|e| instant(&e["period"]["start"]).is_some_and(|s| s >= since && s < start))
        .map(key)
        .collect();
    let n = earlier.len();
    items.push(Item::new(
        match n {
            0 | 1 => 0.0,
            2..=5 => 2.0,
            _ => 5.0,
        },
        format!("T: {n} admission(s) in the previous 12 months"),
        earlier,
    ));
    // A
    let days = length_of_stay_days(start, end);
    items.push(Item::new(
        if days >= 5 { 2.0 } else { 0.0 },
        format!("A: length of stay {days} day(s)"),
        vec![key(admission)],
    ));
    items.extend(unrecognised(terms, &at_discharge));
    let total: f64 = items.iter().map(|i| i.points).sum();
    Score {
        model: "hospital",
        score: total,
        risk: match total as u32 {
            0..=4 => Risk::Low,
            5 | 6 => Risk::Moderate,
            _ => Risk::High,
        },
        items,
        encounter: Some(key(admission)),
        occurrence: end,
    }
}

/// HOSPITAL at every inpatient discharge of the record.
pub fn all(terms: &Terms, record: &Record) -> Vec<Score> {
    discharges(record)
        .into_iter()
        .map(|(e, s, t)| score(terms, record, e, s, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{condition, encounter, quantity};
    use super::super::ICD10;
    use super::*;
    use serde_json::json;

    fn hospital(resources: Vec<Value>) -> Score {
        let record = Record::new("p", resources);
        all(&terms::BUILTIN_TERMS, &record)
            .into_iter()
            .find(|s| s.encounter.as_deref() == Some("Encounter/a"))
            .unwrap()
    }

    #[test]
    fn a_high_risk_stay_adds_every_item() {
        let mut resources = vec![
            encounter("ed", "EMER", "2024-03-01T09:00:00Z", "2024-03-01T10:00:00Z"),
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-06T10:00:00Z"),
            quantity("hb", "59260-0", "2024-03-05T08:00:00Z", 7.0, "mmol/L"),
            quantity("na", "2951-2", "2024-03-05T08:00:00Z", 131.0, "mmol/L"),
            condition("ca", ICD10, "C18.9"),
            json!({"resourceType": "Procedure", "id": "pr", "status": "completed",
                "subject": {"reference": "Patient/p"}, "code": {"text": "colectomy"},
                "performedDateTime": "2024-03-02T12:00:00Z"}),
        ];
        for (i, month) in ["05", "07"].iter().enumerate() {
            resources.push(encounter(
                &format!("old{i}"),
                "IMP",
                &format!("2023-{month}-01T10:00:00Z"),
                &format!("2023-{month}-02T10:00:00Z"),
            ));
        }
        let s = hospital(resources);
        let points: Vec<f64> = s.items.iter().map(|i| i.points).collect();
        assert_eq!(
            points,
            vec![1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0],
            "{:#?}",
            s.items
        );
        assert_eq!(s.score, 10.0);
        assert_eq!(s.risk, Risk::High);
        assert_eq!(s.items[0].why, "H: haemoglobin at discharge 11.3 g/dL");
    }

    #[test]
    fn the_last_value_before_discharge_counts() {
        let s = hospital(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-03T10:00:00Z"),
            quantity("hb1", "718-7", "2024-03-01T12:00:00Z", 10.0, "g/dL"),
            quantity("hb2", "718-7", "2024-03-03T09:00:00Z", 12.5, "g/dL"),
            quantity("hb3", "718-7", "2024-03-04T09:00:00Z", 9.0, "g/dL"),
        ]);
        assert_eq!(s.items[0].points, 0.0);
        assert_eq!(s.items[0].basis, vec!["Observation/hb2"]);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.risk, Risk::Low);
    }

    #[test]
    fn more_than_five_earlier_admissions_are_five_points() {
        let mut resources = vec![encounter(
            "a",
            "IMP",
            "2024-03-01T10:00:00Z",
            "2024-03-02T10:00:00Z",
        )];
        for i in 1..=6 {
            resources.push(encounter(
                &format!("old{i}"),
                "IMP",
                &format!("2023-0{}-10T10:00:00Z", i + 3),
                &format!("2023-0{}-11T10:00:00Z", i + 3),
            ));
        }
        let s = hospital(resources);
        assert_eq!(s.items[5].points, 5.0);
        assert_eq!(s.risk, Risk::Moderate);
    }

    #[test]
    fn four_days_is_not_a_long_stay() {
        let s = hospital(vec![encounter(
            "a",
            "IMP",
            "2024-03-01T10:00:00Z",
            "2024-03-06T09:59:00Z",
        )]);
        assert_eq!(s.items[6].points, 0.0);
    }

    fn cancer(id: &str) -> Value {
        // C34.2: malignant neoplasm of the middle lobe of the lung (in no file of the project).
        condition(id, ICD10, "C34.2")
    }

    #[test]
    fn a_cancer_resolved_after_the_discharge_still_counts_at_that_discharge() {
        let mut c = cancer("ca");
        c["onsetDateTime"] = json!("2024-01-10");
        c["abatementDateTime"] = json!("2024-06-01");
        c["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
        let s = hospital(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
            c.clone(),
        ]);
        assert_eq!(s.items[1].points, 2.0, "{:#?}", s.items);
        // Abated before the discharge: not active then.
        c["abatementDateTime"] = json!("2024-02-01");
        let s = hospital(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
            c,
        ]);
        assert_eq!(s.items[1].points, 0.0);
    }

    #[test]
    fn a_cancer_diagnosed_after_the_discharge_does_not_count() {
        let mut c = cancer("ca");
        c["recordedDate"] = json!("2024-04-01");
        let s = hospital(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
            c,
        ]);
        assert_eq!(s.items[1].points, 0.0);
    }

    #[test]
    fn refuted_and_entered_in_error_cancers_do_not_count() {
        for status in ["refuted", "entered-in-error"] {
            let mut c = cancer("ca");
            c["verificationStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]});
            let s = hospital(vec![
                encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
                c,
            ]);
            assert_eq!(s.items[1].points, 0.0, "{status}");
        }
    }

    #[test]
    fn not_done_and_entered_in_error_procedures_do_not_count() {
        for status in ["not-done", "entered-in-error"] {
            let s = hospital(vec![
                encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
                json!({"resourceType": "Procedure", "id": "pr", "status": status,
                    "subject": {"reference": "Patient/p"}, "code": {"text": "biopsy"},
                    "performedDateTime": "2024-03-01T12:00:00Z"}),
            ]);
            assert_eq!(s.items[3].points, 0.0, "{status}");
        }
    }

    #[test]
    fn entered_in_error_observations_do_not_count() {
        let mut hb = quantity("hb", "718-7", "2024-03-01T12:00:00Z", 9.0, "g/dL");
        hb["status"] = json!("entered-in-error");
        let s = hospital(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
            hb,
        ]);
        assert_eq!(s.items[0].why, "H: no haemoglobin during the stay");
    }

    #[test]
    fn an_oncology_service_discharge_is_o() {
        let mut a = encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z");
        a["serviceType"] =
            json!({"coding": [{"system": crate::scoring::SNOMED, "code": "419815003"}]});
        assert_eq!(hospital(vec![a.clone()]).items[1].points, 2.0);
        // 394594003 is Ophthalmology.
        a["serviceType"]["coding"][0]["code"] = json!("394594003");
        assert_eq!(hospital(vec![a]).items[1].points, 0.0);
    }

    /// "Previous 12 months" is calendar months back from the admission: from 29 February
    /// 2024 that is 28 February 2023 (chrono clamps to the month's last day).
    #[test]
    fn the_previous_twelve_months_are_calendar_months() {
        let mut resources = vec![encounter(
            "a",
            "IMP",
            "2024-02-29T10:00:00Z",
            "2024-03-01T10:00:00Z",
        )];
        for (i, start) in [
            "2023-02-28T10:00:00Z",
            "2023-02-28T09:59:59Z",
            "2023-06-01T10:00:00Z",
        ]
        .iter()
        .enumerate()
        {
            resources.push(encounter(&format!("old{i}"), "IMP", start, start));
        }
        let s = hospital(resources);
        assert_eq!(
            s.items[5].why,
            "T: 2 admission(s) in the previous 12 months"
        );
    }
}
