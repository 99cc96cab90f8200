//! Home-measurement alerts from vital-signs Observations, whatever source sent them.
//!
//! Sources of the thresholds:
//! - heart-failure weight gain > 2 kg within 3 days: ESC Guidelines for the diagnosis and
//!   treatment of acute and chronic heart failure (McDonagh TA et al., Eur Heart J
//!   2021;42:3599-3726, patient self-care: "sudden unexpected weight gain > 2 kg in 3 days");
//! - home blood pressure mean ≥ 135/85 mmHg (at least 3 readings over the last 7 days) and any
//!   single reading ≥ 180/110 mmHg: ESH/ESC 2018 Guidelines for the management of arterial
//!   hypertension (Williams B et al., Eur Heart J 2018;39:3021-104, table 4 and grade 3);
//! - glucose < 3.9 mmol/L (level 1) and < 3.0 mmol/L (level 2 hypoglycaemia), above 10.0
//!   and above 13.9 mmol/L (hyperglycaemia): ADA Standards of Care, Glycemic Targets (Diabetes Care
//!   2023;46(Suppl 1):S97-S110) and the international consensus on time in range (Battelino T
//!   et al., Diabetes Care 2019;42:1593-603);
//! - SpO2 ≤ 92%: BTS guideline for oxygen use in adults (O'Driscoll BR et al., Thorax 2017;72:i1-
//!   i90, target range 94–98%).
//!
//! Only measurements of the last 7 days before scoring raise alerts (older ones are history,
//! not a signal). Weight is judged at the newest reading: its gain over the lowest reading of
//! the 72 h before it (72 h exactly included), so a correcting measurement ends the alert.
//! Glucose and SpO2 are judged at the newest reading. Units go through UCUM; a reading without
//! a usable unit is reported in the breakdown and never guessed.

use serde_json::Value;

use super::terms::{self, Terms};
use super::units::{glucose_mmol_per_l, quantity_in};
use super::{
    condition_counts, effective, has_code, key, observation_counts, unrecognised, Item, Record,
    Risk, Score, CLOCK_SKEW_MS, DAY_MS, HOUR_MS, LOINC,
};

/// A rule that fired: its reason code (Signaal CodeSystem) and its breakdown line.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub reason: &'static str,
    pub item: Item,
}

const WEIGHT: &[&str] = &["29463-7", "3141-9"];
const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";
const GLUCOSE: &[&str] = &[
    "2339-0", "2345-7", "15074-8", "14749-6", "41653-7", "14743-9",
];
const SPO2: &[&str] = &["2708-6", "59408-5"];

/// A reading: when, the value in the model's unit, the Observation.
struct Reading {
    at: i64,
    value: f64,
    key: String,
}

/// Everything the rules read, in model units, newest last; unusable readings as breakdown
/// lines.
#[derive(Default)]
struct Readings {
    weight: Vec<Reading>,
    systolic: Vec<Reading>,
    diastolic: Vec<Reading>,
    glucose: Vec<Reading>,
    spo2: Vec<Reading>,
    unusable: Vec<Item>,
}

fn is(concept: &Value, codes: &[&str]) -> bool {
    codes.iter().any(|c| has_code(concept, LOINC, c))
}

fn collect(record: &Record, from: i64, to: i64) -> Readings {
    let mut r = Readings::default();
    for o in record
        .of_type("Observation")
        .filter(|o| observation_counts(o))
    {
        let Some(at) = effective(o).filter(|t| (from..=to).contains(t)) else {
            continue;
        };
        let k = key(o);
        let mut push = |list: &mut Vec<Reading>, what: &str, value: Result<f64, String>| match value
        {
            Ok(value) => list.push(Reading {
                at,
                value,
                key: k.clone(),
            }),
            Err(why) => r.unusable.push(Item::new(
                0.0,
                format!("{what} not used: {why}"),
                vec![k.clone()],
            )),
        };
        let mut weight = Vec::new();
        let mut glucose = Vec::new();
        let mut spo2 = Vec::new();
        let mut systolic = Vec::new();
        let mut diastolic = Vec::new();
        if is(&o["code"], WEIGHT) {
            push(
                &mut weight,
                "weight",
                quantity_in(&o["valueQuantity"], "kg"),
            );
        }
        if is(&o["code"], GLUCOSE) {
            push(
                &mut glucose,
                "glucose",
                glucose_mmol_per_l(&o["valueQuantity"]),
            );
        }
        if is(&o["code"], SPO2) {
            push(&mut spo2, "SpO2", quantity_in(&o["valueQuantity"], "%"));
        }
        if is(&o["code"], &[SYSTOLIC]) {
            push(
                &mut systolic,
                "systolic pressure",
                quantity_in(&o["valueQuantity"], "mm[Hg]"),
            );
        }
        if is(&o["code"], &[DIASTOLIC]) {
            push(
                &mut diastolic,
                "diastolic pressure",
                quantity_in(&o["valueQuantity"], "mm[Hg]"),
            );
        }
        for c in o["component"].as_array().into_iter().flatten() {
            if is(&c["code"], &[SYSTOLIC]) {
                push(
                    &mut systolic,
                    "systolic pressure",
                    quantity_in(&c["valueQuantity"], "mm[Hg]"),
                );
            }
            if is(&c["code"], &[DIASTOLIC]) {
                push(
                    &mut diastolic,
                    "diastolic pressure",
                    quantity_in(&c["valueQuantity"], "mm[Hg]"),
                );
            }
        }
        r.weight.append(&mut weight);
        r.glucose.append(&mut glucose);
        r.spo2.append(&mut spo2);
        r.systolic.append(&mut systolic);
        r.diastolic.append(&mut diastolic);
    }
    for list in [
        &mut r.weight,
        &mut r.systolic,
        &mut r.diastolic,
        &mut r.glucose,
        &mut r.spo2,
    ] {
        list.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.key.cmp(&b.key)));
    }
    r
}

/// The rules that fire for the record at `now`, plus the unusable readings.
pub fn evaluate(terms: &Terms, record: &Record, now: i64) -> (Vec<Alert>, Vec<Item>) {
    // Weight needs the 72 h before the oldest reading of the window too. A reading stamped up
    // to the clock skew ahead counts as now.
    let mut r = collect(record, now - 7 * DAY_MS - 3 * DAY_MS, now + CLOCK_SKEW_MS);
    let recent = |list: &[Reading]| -> Vec<usize> {
        (0..list.len())
            .filter(|&i| list[i].at > now - 7 * DAY_MS)
            .collect()
    };
    let mut alerts = Vec::new();
    let heart_failure: Vec<String> = record
        .of_type("Condition")
        .filter(|c| condition_counts(c) && terms.holds(&terms::url("heart-failure"), &c["code"]))
        .map(key)
        .collect();
    if heart_failure.is_empty() && !recent(&r.weight).is_empty() {
        // The weight rule needs heart failure: a Condition the value sets cannot place may be
        // one.
        r.unusable.extend(unrecognised(terms, record));
    }
    let heart_failure = (!heart_failure.is_empty()).then_some(heart_failure);
    if let (Some(hf), Some(&last)) = (heart_failure, recent(&r.weight).last()) {
        let newest = &r.weight[last];
        let lowest = r.weight[..last]
            .iter()
            .filter(|w| w.at >= newest.at - 72 * HOUR_MS)
            .min_by(|a, b| a.value.total_cmp(&b.value));
        if let Some(lowest) = lowest {
            let gain = newest.value - lowest.value;
            if gain > 2.0 + 1e-9 {
                let mut basis = vec![lowest.key.clone(), newest.key.clone()];
                basis.extend(hf);
                alerts.push(Alert {
                    reason: "weight-gain",
                    item: Item::new(
                        1.0,
                        format!(
                            "heart failure: weight gain {:.1} kg within 3 days ({:.1} → {:.1} kg)",
                            gain, lowest.value, newest.value
                        ),
                        basis,
                    ),
                });
            }
        }
    }
    let sys = recent(&r.systolic);
    let dia = recent(&r.diastolic);
    if sys.len() >= 3 && dia.len() >= 3 {
        let mean = |list: &[Reading], idx: &[usize]| {
            idx.iter().map(|&i| list[i].value).sum::<f64>() / idx.len() as f64
        };
        let (ms, md) = (mean(&r.systolic, &sys), mean(&r.diastolic, &dia));
        if ms >= 135.0 || md >= 85.0 {
            let mut basis: Vec<String> = sys.iter().map(|&i| r.systolic[i].key.clone()).collect();
            for &i in &dia {
                if !basis.contains(&r.diastolic[i].key) {
                    basis.push(r.diastolic[i].key.clone());
                }
            }
            alerts.push(Alert {
                reason: "home-bp-high",
                item: Item::new(
                    1.0,
                    format!(
                        "home blood pressure mean {:.0}/{:.0} mmHg over {} readings in 7 days (≥ 135/85)",
                        ms,
                        md,
                        sys.len().min(dia.len())
                    ),
                    basis,
                ),
            });
        }
    }
    let crisis: Vec<String> = sys
        .iter()
        .filter(|&&i| r.systolic[i].value >= 180.0)
        .map(|&i| r.systolic[i].key.clone())
        .chain(
            dia.iter()
                .filter(|&&i| r.diastolic[i].value >= 110.0)
                .map(|&i| r.diastolic[i].key.clone()),
        )
        .fold(Vec::new(), |mut acc, k| {
            if !acc.contains(&k) {
                acc.push(k);
            }
            acc
        });
    if !crisis.is_empty() {
        alerts.push(Alert {
            reason: "bp-very-high",
            item: Item::new(
                1.0,
                format!(
                    "{} blood pressure reading(s) ≥ 180/110 mmHg in 7 days",
                    crisis.len()
                ),
                crisis,
            ),
        });
    }
    if let Some(&last) = recent(&r.glucose).last() {
        let g = &r.glucose[last];
        let reason = if g.value < 3.0 {
            Some(("glucose-very-low", "< 3.0"))
        } else if g.value < 3.9 {
            Some(("glucose-low", "< 3.9"))
        } else if g.value > 13.9 {
            Some(("glucose-very-high", "> 13.9"))
        } else if g.value > 10.0 {
            Some(("glucose-high", "> 10.0"))
        } else {
            None
        };
        if let Some((reason, limit)) = reason {
            alerts.push(Alert {
                reason,
                item: Item::new(
                    1.0,
                    format!("glucose {:.1} mmol/L ({limit})", g.value),
                    vec![g.key.clone()],
                ),
            });
        }
    }
    if let Some(&last) = recent(&r.spo2).last() {
        let s = &r.spo2[last];
        if s.value <= 92.0 + 1e-9 {
            alerts.push(Alert {
                reason: "spo2-low",
                item: Item::new(
                    1.0,
                    format!("SpO2 {}% (≤ 92%)", s.value),
                    vec![s.key.clone()],
                ),
            });
        }
    }
    (alerts, r.unusable)
}

/// Whether an Observation is a home measurement the rules read (weight, blood pressure,
/// glucose, SpO2).
fn is_measurement(o: &Value) -> bool {
    let measured = |concept: &Value| {
        is(concept, WEIGHT)
            || is(concept, GLUCOSE)
            || is(concept, SPO2)
            || is(concept, &[SYSTOLIC, DIASTOLIC])
    };
    measured(&o["code"])
        || o["component"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| measured(&c["code"]))
}

/// Whether the record holds a home measurement the rules read (at any time): a patient who
/// never measured gets no alerts assessment, one who did keeps it, at 0 once the readings are
/// older than the rules look.
pub fn applies(record: &Record) -> bool {
    record.of_type("Observation").any(is_measurement)
}

/// Why no rule fired, for an assessment at 0 to explain itself: no measurement in the window
/// (and when the newest one was), or none past a threshold. Names the newest measurement's
/// date rather than a count, so the line changes only when the data does.
fn quiet(record: &Record, now: i64) -> Item {
    let newest = record
        .of_type("Observation")
        .filter(|o| observation_counts(o) && is_measurement(o))
        .filter_map(|o| effective(o).filter(|t| *t <= now).map(|t| (t, key(o))))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    match newest {
        Some((at, key)) if at > now - 7 * DAY_MS => Item::new(
            0.0,
            format!(
                "no home measurement of the last 7 days is past a threshold; newest {}",
                day(at)
            ),
            vec![key],
        ),
        Some((at, key)) => Item::new(
            0.0,
            format!(
                "no home measurements in the last 7 days; newest {}",
                day(at)
            ),
            vec![key],
        ),
        None => Item::new(0.0, "no home measurements", Vec::new()),
    }
}

/// The calendar day (UTC) of an instant: `2026-11-22`.
fn day(ms: i64) -> String {
    crate::fhir::datetime::format_instant(ms)[..10].to_owned()
}

/// The alerts as a score: one point per rule that fires; high risk when any fires.
pub fn score(terms: &Terms, record: &Record, now: i64) -> (Score, Vec<Alert>) {
    let (alerts, unusable) = evaluate(terms, record, now);
    let mut items: Vec<Item> = alerts.iter().map(|a| a.item.clone()).collect();
    items.extend(unusable);
    if alerts.is_empty() {
        items.push(quiet(record, now));
    }
    let total = alerts.len() as f64;
    let score = Score {
        model: "alerts",
        score: total,
        risk: if alerts.is_empty() {
            Risk::Low
        } else {
            Risk::High
        },
        items,
        encounter: None,
        occurrence: now,
    };
    (score, alerts)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{condition, ms, quantity};
    use super::super::SNOMED;
    use super::*;
    use serde_json::json;

    fn reasons(resources: Vec<Value>, now: &str) -> Vec<&'static str> {
        evaluate(&terms::BUILTIN_TERMS, &Record::new("p", resources), ms(now))
            .0
            .into_iter()
            .map(|a| a.reason)
            .collect()
    }

    fn hf() -> Value {
        condition("hf", SNOMED, "88805009")
    }

    #[test]
    fn a_gain_of_2_1_kg_exactly_72_hours_apart_fires() {
        let r = reasons(
            vec![
                hf(),
                quantity("w1", "29463-7", "2024-03-01T08:00:00+01:00", 80.0, "kg"),
                quantity("w2", "29463-7", "2024-03-04T07:00:00Z", 82.1, "kg"),
            ],
            "2024-03-04T12:00:00Z",
        );
        assert_eq!(r, vec!["weight-gain"]);
    }

    #[test]
    fn the_same_gain_just_past_72_hours_does_not() {
        let r = reasons(
            vec![
                hf(),
                quantity("w1", "29463-7", "2024-03-01T08:00:00+01:00", 80.0, "kg"),
                quantity("w2", "29463-7", "2024-03-04T07:00:01Z", 82.1, "kg"),
            ],
            "2024-03-04T12:00:00Z",
        );
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn weight_gain_needs_heart_failure_and_a_correction_ends_it() {
        let gain = vec![
            quantity("w1", "29463-7", "2024-03-01T08:00:00Z", 80.0, "kg"),
            quantity("w2", "29463-7", "2024-03-02T08:00:00Z", 182.5, "[lb_av]"),
        ];
        assert!(reasons(gain.clone(), "2024-03-02T12:00:00Z").is_empty());
        let mut with_hf = gain.clone();
        with_hf.push(hf());
        assert_eq!(
            reasons(with_hf.clone(), "2024-03-02T12:00:00Z"),
            vec!["weight-gain"]
        );
        with_hf.push(quantity(
            "w3",
            "29463-7",
            "2024-03-03T08:00:00Z",
            80.5,
            "kg",
        ));
        assert!(reasons(with_hf, "2024-03-03T12:00:00Z").is_empty());
    }

    fn bp(id: &str, at: &str, s: f64, d: f64) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": at,
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]}, "valueQuantity": {"value": s, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]}, "valueQuantity": {"value": d, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]})
    }

    #[test]
    fn home_blood_pressure_needs_three_readings_in_seven_days() {
        let two = vec![
            bp("b1", "2024-03-05T08:00:00Z", 140.0, 80.0),
            bp("b2", "2024-03-06T08:00:00Z", 140.0, 80.0),
        ];
        assert!(reasons(two.clone(), "2024-03-07T12:00:00Z").is_empty());
        let mut three = two.clone();
        three.push(bp("b3", "2024-03-07T08:00:00Z", 124.0, 80.0));
        assert!(
            reasons(three.clone(), "2024-03-07T12:00:00Z").is_empty(),
            "mean 134.7/80"
        );
        three.push(bp("b4", "2024-03-07T09:00:00Z", 137.0, 80.0));
        assert_eq!(
            reasons(three, "2024-03-07T12:00:00Z"),
            vec!["home-bp-high"],
            "mean 135.25/80"
        );
    }

    #[test]
    fn home_blood_pressure_mean_and_a_very_high_reading() {
        let readings = vec![
            bp("b0", "2024-02-20T08:00:00Z", 190.0, 120.0),
            bp("b1", "2024-03-05T08:00:00Z", 130.0, 84.0),
            bp("b2", "2024-03-06T08:00:00Z", 135.0, 86.0),
            bp("b3", "2024-03-07T08:00:00Z", 133.0, 85.0),
        ];
        assert_eq!(
            reasons(readings.clone(), "2024-03-07T12:00:00Z"),
            vec!["home-bp-high"]
        );
        let mut crisis = readings;
        crisis.push(bp("b4", "2024-03-07T09:00:00Z", 182.0, 100.0));
        assert_eq!(
            reasons(crisis, "2024-03-07T12:00:00Z"),
            vec!["home-bp-high", "bp-very-high"]
        );
    }

    #[test]
    fn glucose_in_mg_per_dl_is_judged_in_mmol_per_l() {
        let at = "2024-03-07T08:00:00Z";
        let now = "2024-03-07T12:00:00Z";
        let g = |v: f64, unit: &str| vec![quantity("g", "2339-0", at, v, unit)];
        assert_eq!(reasons(g(50.0, "mg/dL"), now), vec!["glucose-very-low"]);
        assert_eq!(reasons(g(65.0, "mg/dL"), now), vec!["glucose-low"]);
        assert_eq!(reasons(g(100.0, "mg/dL"), now), Vec::<&str>::new());
        assert_eq!(reasons(g(200.0, "mg/dL"), now), vec!["glucose-high"]);
        assert_eq!(reasons(g(14.0, "mmol/L"), now), vec!["glucose-very-high"]);
        assert_eq!(reasons(g(3.9, "mmol/L"), now), Vec::<&str>::new());
    }

    #[test]
    fn low_oxygen_saturation_and_old_readings() {
        let now = "2024-03-07T12:00:00Z";
        assert_eq!(
            reasons(
                vec![quantity("s", "59408-5", "2024-03-07T08:00:00Z", 92.0, "%")],
                now
            ),
            vec!["spo2-low"]
        );
        assert!(reasons(
            vec![quantity("s", "59408-5", "2024-02-01T08:00:00Z", 85.0, "%")],
            now
        )
        .is_empty());
    }

    #[test]
    fn readings_without_a_usable_unit_are_reported_not_guessed() {
        let (score, alerts) = score(
            &terms::BUILTIN_TERMS,
            &Record::new(
                "p",
                vec![quantity(
                    "g",
                    "2339-0",
                    "2024-03-07T08:00:00Z",
                    40.0,
                    "stone",
                )],
            ),
            ms("2024-03-07T12:00:00Z"),
        );
        assert!(alerts.is_empty());
        assert_eq!(score.items.len(), 2);
        assert!(
            score.items[0].why.starts_with("glucose not used"),
            "{}",
            score.items[0].why
        );
        assert_eq!(score.items[0].basis, vec!["Observation/g"]);
        // And the score of 0 says why.
        assert_eq!(
            score.items[1].why,
            "no home measurement of the last 7 days is past a threshold; newest 2024-03-07"
        );
    }

    #[test]
    fn a_zero_names_the_newest_measurement_when_none_is_recent() {
        let (score, _) = score(
            &terms::BUILTIN_TERMS,
            &Record::new(
                "p",
                vec![quantity("w", "29463-7", "2024-02-20T08:00:00Z", 80.0, "kg")],
            ),
            ms("2024-03-07T12:00:00Z"),
        );
        assert_eq!(score.score, 0.0);
        assert_eq!(score.items.len(), 1);
        assert_eq!(
            score.items[0].why,
            "no home measurements in the last 7 days; newest 2024-02-20"
        );
        assert_eq!(score.items[0].basis, vec!["Observation/w"]);
    }

    /// Heart failure coded as SNOMED CT 84114007 or 42343007 (the usual codes) or as a
    /// hospital code the value sets do not know: the first two raise the weight-gain alert,
    /// the third is said to be not recognised.
    #[test]
    fn heart_failure_by_its_usual_snomed_codes_raises_the_weight_alert() {
        for code in ["84114007", "42343007"] {
            let r = reasons(
                vec![
                    condition("hf", SNOMED, code),
                    quantity("w1", "29463-7", "2024-03-01T08:00:00Z", 80.0, "kg"),
                    quantity("w2", "29463-7", "2024-03-02T08:00:00Z", 82.5, "kg"),
                ],
                "2024-03-02T09:00:00Z",
            );
            assert_eq!(r, vec!["weight-gain"], "{code}");
        }
        let (alerts, items) = evaluate(
            &terms::BUILTIN_TERMS,
            &Record::new(
                "p",
                vec![
                    condition("hf", "https://hospital.example/dx", "HF"),
                    quantity("w1", "29463-7", "2024-03-01T08:00:00Z", 80.0, "kg"),
                    quantity("w2", "29463-7", "2024-03-02T08:00:00Z", 82.5, "kg"),
                ],
            ),
            ms("2024-03-02T09:00:00Z"),
        );
        assert!(alerts.is_empty());
        assert_eq!(
            items[0].why,
            "1 condition(s) not recognised: https://hospital.example/dx|HF"
        );
    }

    /// A reading stamped up to 5 minutes ahead (a device clock) counts now; a later one only
    /// at its time, when the patient is scored again.
    #[test]
    fn a_reading_slightly_in_the_future_counts_now_and_a_later_one_at_its_time() {
        let resources = |at: &str| vec![quantity("g", "2339-0", at, 2.5, "mmol/L")];
        assert_eq!(
            reasons(resources("2024-03-02T09:04:00Z"), "2024-03-02T09:00:00Z"),
            vec!["glucose-very-low"]
        );
        assert!(reasons(resources("2024-03-02T09:06:00Z"), "2024-03-02T09:00:00Z").is_empty());
        let record = Record::new("p", resources("2024-03-02T09:06:00Z"));
        assert_eq!(
            crate::scoring::next_due(&record, ms("2024-03-02T09:00:00Z")),
            Some(ms("2024-03-02T09:06:00Z"))
        );
        assert_eq!(
            reasons(resources("2024-03-02T09:06:00Z"), "2024-03-02T09:06:00Z"),
            vec!["glucose-very-low"]
        );
    }

    #[test]
    fn entered_in_error_and_preliminary_readings_are_ignored() {
        for status in ["entered-in-error", "preliminary", "cancelled"] {
            let mut g = quantity("g", "2339-0", "2024-03-02T08:00:00Z", 2.5, "mmol/L");
            g["status"] = json!(status);
            assert!(
                reasons(vec![g], "2024-03-02T09:00:00Z").is_empty(),
                "{status}"
            );
        }
    }
}
