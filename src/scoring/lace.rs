//! LACE index for death or unplanned readmission within 30 days of discharge.
//!
//! Source: van Walraven C, Dhalla IA, Bell C, et al. Derivation and validation of an index to
//! predict early death or unplanned readmission after discharge from hospital to the community.
//! CMAJ 2010;182(6):551-7 (table 3, the points of the LACE index).
//!
//! Scored at each inpatient discharge (Encounter class IMP with a finished period):
//! - L, length of stay in whole days, floor((end − start) / 24 h): < 1 → 0, 1 → 1, 2 → 2, 3 → 3,
//!   4–6 → 4, 7–13 → 5, ≥ 14 → 7;
//! - A, acute (emergent) admission: 3;
//! - C, Charlson comorbidity index at discharge: 0–3 → same, ≥ 4 → 5;
//! - E, emergency department visits in the 6 months before admission, not counting the one that
//!   led to it: 0–3 → same, ≥ 4 → 4. "6 months before" is calendar months back from the
//!   admission's start (chrono's month arithmetic: 31 August → 29 February in a leap year),
//!   as HOSPITAL's "previous 12 months".
//!
//! A Condition known at discharge that no value set can place adds a 0-point line "n
//! condition(s) not recognised: …" (the C item may then be too low).
//!
//! 0–4 low, 5–9 moderate, ≥ 10 high.

use chrono::{Months, TimeZone, Utc};
use serde_json::Value;

use super::terms::Terms;
use super::{
    charlson, encounter_class, encounter_happened, finished_period, has_code, instant, key,
    unrecognised, Item, Record, Risk, Score, DAY_MS,
};

/// Whole days of a stay.
pub fn length_of_stay_days(start: i64, end: i64) -> i64 {
    ((end - start).max(0)) / DAY_MS
}

fn length_points(days: i64) -> u32 {
    match days {
        0 => 0,
        1..=3 => days as u32,
        4..=6 => 4,
        7..=13 => 5,
        _ => 7,
    }
}

/// The same instant `months` calendar months earlier.
pub fn months_before(ms: i64, months: u32) -> i64 {
    Utc.timestamp_millis_opt(ms)
        .single()
        .and_then(|t| t.checked_sub_months(Months::new(months)))
        .map_or(ms - months as i64 * 30 * DAY_MS, |t| t.timestamp_millis())
}

/// Why an admission was emergent, and what says so; `None` when it was planned (as far as the
/// record tells). Emergent: `priority` EM or UR, `hospitalization.admitSource` emd, or an
/// emergency (EMER) encounter of the patient that started at or before the admission and ended
/// no more than 24 h before it (overlapping counts: the ED visit and the admission may start
/// together).
pub fn emergent(record: &Record, admission: &Value) -> Option<(String, Vec<String>)> {
    let priority = "http://terminology.hl7.org/CodeSystem/v3-ActPriority";
    if has_code(&admission["priority"], priority, "EM")
        || has_code(&admission["priority"], priority, "UR")
    {
        return Some((
            "admission priority emergency/urgent".into(),
            vec![key(admission)],
        ));
    }
    let source = "http://terminology.hl7.org/CodeSystem/admit-source";
    if has_code(&admission["hospitalization"]["admitSource"], source, "emd") {
        return Some((
            "admitted from the emergency department".into(),
            vec![key(admission)],
        ));
    }
    let ed = leading_ed_visit(record, admission)?;
    Some((
        "admitted through the emergency department".into(),
        vec![key(admission), key(ed)],
    ))
}

/// The EMER encounter that led to an admission, if any (the latest that qualifies).
pub fn leading_ed_visit<'a>(record: &'a Record, admission: &Value) -> Option<&'a Value> {
    let admitted = instant(&admission["period"]["start"])?;
    record
        .of_type("Encounter")
        .filter(|e| encounter_class(e) == Some("EMER") && encounter_happened(e))
        .filter_map(|e| {
            let start = instant(&e["period"]["start"])?;
            let end = instant(&e["period"]["end"]).unwrap_or(start);
            (start <= admitted && end >= admitted - 24 * super::HOUR_MS).then_some((start, e))
        })
        .max_by_key(|(start, _)| *start)
        .map(|(_, e)| e)
}

/// The record as it stood at `t`: Conditions recorded (or with onset) after it left out.
pub fn as_of(record: &Record, t: i64) -> Record {
    let resources = record
        .resources
        .iter()
        .filter(|r| {
            if r["resourceType"] != "Condition" {
                return true;
            }
            let known = instant(&r["onsetDateTime"])
                .or_else(|| instant(&r["recordedDate"]))
                .or_else(|| instant(&r["onsetPeriod"]["start"]));
            known.is_none_or(|at| at <= t)
        })
        .cloned()
        .collect();
    Record::shared(&record.patient, resources)
}

/// Every inpatient discharge of the record: (encounter, start, end).
pub fn discharges(record: &Record) -> Vec<(&Value, i64, i64)> {
    record
        .of_type("Encounter")
        .filter(|e| encounter_class(e) == Some("IMP"))
        .filter_map(|e| finished_period(e).map(|(s, t)| (e, s, t)))
        .collect()
}

/// The LACE index of the discharge that ends inpatient `admission` (`[start, end]` its period).
pub fn score(terms: &Terms, record: &Record, admission: &Value, start: i64, end: i64) -> Score {
    let mut items = Vec::new();
    let days = length_of_stay_days(start, end);
    items.push(Item::new(
        length_points(days) as f64,
        format!("L: length of stay {days} day(s)"),
        vec![key(admission)],
    ));
    let acute = emergent(record, admission);
    match &acute {
        Some((why, basis)) => items.push(Item::new(
            3.0,
            format!("A: acute admission, {why}"),
            basis.clone(),
        )),
        None => items.push(Item::new(
            0.0,
            "A: elective admission",
            vec![key(admission)],
        )),
    }
    let at_discharge = as_of(record, end);
    let charlson = charlson::score(terms, &at_discharge, end);
    let c = charlson.score as u32;
    let c_points = if c >= 4 { 5 } else { c };
    let c_basis: Vec<String> = charlson
        .items
        .iter()
        .filter(|i| i.points > 0.0)
        .flat_map(|i| i.basis.iter().cloned())
        .fold(Vec::new(), |mut acc, b| {
            if !acc.contains(&b) {
                acc.push(b);
            }
            acc
        });
    items.push(Item::new(
        c_points as f64,
        format!("C: Charlson comorbidity index {c}"),
        c_basis,
    ));
    let led_to_it = leading_ed_visit(record, admission).map(key);
    let since = months_before(start, 6);
    let visits: Vec<String> = record
        .of_type("Encounter")
        .filter(|e| encounter_class(e) == Some("EMER") && encounter_happened(e))
        .filter(|e| instant(&e["period"]["start"]).is_some_and(|s| s >= since && s < start))
        .map(key)
        .filter(|k| Some(k) != led_to_it.as_ref())
        .collect();
    let e = visits.len() as u32;
    items.push(Item::new(
        e.min(4) as f64,
        format!("E: {e} emergency department visit(s) in the 6 months before admission"),
        visits,
    ));
    items.extend(unrecognised(terms, &at_discharge));
    let total: f64 = items.iter().map(|i| i.points).sum();
    Score {
        model: "lace",
        score: total,
        risk: match total as u32 {
            0..=4 => Risk::Low,
            5..=9 => Risk::Moderate,
            _ => Risk::High,
        },
        items,
        encounter: Some(key(admission)),
        occurrence: end,
    }
}

/// LACE at every inpatient discharge of the record.
pub fn all(terms: &Terms, record: &Record) -> Vec<Score> {
    discharges(record)
        .into_iter()
        .map(|(e, s, t)| score(terms, record, e, s, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{condition, encounter};
    use super::super::ICD10;
    use super::*;

    fn lace(resources: Vec<Value>) -> Score {
        let record = Record::new("p", resources);
        let mut scores = all(&crate::scoring::terms::BUILTIN_TERMS, &record);
        assert_eq!(scores.len(), 1);
        scores.remove(0)
    }

    #[test]
    fn a_stay_under_one_day_is_zero_days() {
        let s = lace(vec![encounter(
            "a",
            "IMP",
            "2024-03-01T08:00:00Z",
            "2024-03-02T07:59:59Z",
        )]);
        assert_eq!(s.items[0].points, 0.0);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.risk, Risk::Low);
        assert_eq!(s.encounter.as_deref(), Some("Encounter/a"));
    }

    #[test]
    fn length_of_stay_points_follow_the_table() {
        for (days, points) in [
            (1, 1),
            (3, 3),
            (4, 4),
            (6, 4),
            (7, 5),
            (13, 5),
            (14, 7),
            (40, 7),
        ] {
            assert_eq!(length_points(days), points, "{days} days");
        }
    }

    #[test]
    fn exactly_fourteen_days_is_seven_points() {
        let s = lace(vec![encounter(
            "a",
            "IMP",
            "2024-03-01T10:00:00+01:00",
            "2024-03-15T09:00:00Z",
        )]);
        assert_eq!(s.items[0].why, "L: length of stay 14 day(s)");
        assert_eq!(s.items[0].points, 7.0);
    }

    #[test]
    fn an_overlapping_ed_visit_makes_it_acute_and_is_not_counted_in_e() {
        let s = lace(vec![
            encounter("ed", "EMER", "2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z"),
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-03T10:00:00Z"),
            encounter(
                "ed-old",
                "EMER",
                "2023-10-01T10:00:00Z",
                "2023-10-01T11:00:00Z",
            ),
            encounter(
                "ed-too-old",
                "EMER",
                "2023-08-31T10:00:00Z",
                "2023-08-31T11:00:00Z",
            ),
        ]);
        assert_eq!(s.items[1].points, 3.0);
        assert_eq!(s.items[1].basis, vec!["Encounter/a", "Encounter/ed"]);
        assert_eq!(s.items[3].points, 1.0);
        assert_eq!(s.items[3].basis, vec!["Encounter/ed-old"]);
        assert_eq!(s.score, 2.0 + 3.0 + 1.0);
    }

    #[test]
    fn an_ed_visit_ending_more_than_a_day_before_is_not_the_admission_route() {
        let s = lace(vec![
            encounter("ed", "EMER", "2024-02-28T08:00:00Z", "2024-02-28T09:00:00Z"),
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-03T10:00:00Z"),
        ]);
        assert_eq!(s.items[1].points, 0.0);
        assert_eq!(s.items[3].points, 1.0);
    }

    #[test]
    fn charlson_four_or_more_is_five_points_and_many_ed_visits_cap_at_four() {
        let mut resources = vec![
            {
                let mut a = encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-16T10:00:00Z");
                a["priority"] = serde_json::json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": "EM"}]});
                a
            },
            condition("c1", ICD10, "I50.0"),
            condition("c2", ICD10, "N18.3"),
            condition("c3", ICD10, "G30.1"),
        ];
        for i in 0..5 {
            resources.push(encounter(
                &format!("ed{i}"),
                "EMER",
                &format!("2024-01-0{}T10:00:00Z", i + 1),
                &format!("2024-01-0{}T12:00:00Z", i + 1),
            ));
        }
        let s = lace(resources);
        assert_eq!(s.items[2].points, 5.0);
        assert_eq!(s.items[3].points, 4.0);
        assert_eq!(s.score, 7.0 + 3.0 + 5.0 + 4.0);
        assert_eq!(s.risk, Risk::High);
    }

    #[test]
    fn conditions_diagnosed_after_discharge_do_not_count() {
        let mut c = condition("c1", ICD10, "I50.0");
        c["onsetDateTime"] = serde_json::json!("2024-05-01");
        let s = lace(vec![
            encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z"),
            c,
        ]);
        assert_eq!(s.items[2].points, 0.0);
    }

    #[test]
    fn unfinished_stays_are_not_scored() {
        let mut e = encounter("a", "IMP", "2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z");
        e["status"] = serde_json::json!("in-progress");
        assert!(all(
            &crate::scoring::terms::BUILTIN_TERMS,
            &Record::new("p", vec![e])
        )
        .is_empty());
    }
}
