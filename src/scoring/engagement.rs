//! Engagement: signs that a patient has dropped out of their care plan.
//!
//! Not a published score but two plain rules from the issue, documented in docs/scoring.md:
//! - an active CarePlan has a Goal with a measurable target (`Goal.target.measure`) and no
//!   matching Observation (same code) for longer than the plan expects: the interval of the
//!   plan's activity for that goal or measure (`activity.detail.scheduledTiming.repeat`,
//!   period ÷ frequency), or 14 days when the plan says nothing; counted from the last
//!   measurement, or from the start of the goal or plan when there is none yet;
//! - a Goal's `achievementStatus` is worsening or not-achieving; for a goal in one of the four
//!   life domains (`Goal.category` from `profiles/codesystem-goal-domain.json`) the finding
//!   names the domain that is slipping.
//!
//! Each finding is one point; any finding is high risk of disengagement.

use std::sync::LazyLock;

use serde_json::Value;

use crate::fhir::datetime::format_instant;

use super::{
    codings, effective, instant, key, observation_counts, reference_id, Item, Record, Risk, Score,
    DAY_MS, HOUR_MS,
};

/// The CodeSystem of the four life domains of a goal (`profiles/codesystem-goal-domain.json`).
pub const GOAL_DOMAIN_SYSTEM: &str = "https://signaal.dev/fhir/CodeSystem/goal-domain";

/// The four life domains, `(code, display)`, in the CodeSystem's order.
pub fn goal_domains() -> &'static [(String, String)] {
    static DOMAINS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
        crate::fhir::canonical::all()
            .iter()
            .filter(|r| r["resourceType"] == "CodeSystem" && r["url"] == GOAL_DOMAIN_SYSTEM)
            .flat_map(|cs| cs["concept"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| {
                Some((
                    c["code"].as_str()?.to_owned(),
                    c["display"].as_str()?.to_owned(),
                ))
            })
            .collect()
    });
    &DOMAINS
}

/// The life domain of a Goal (its `category` coded in [`GOAL_DOMAIN_SYSTEM`]): code and display.
pub fn goal_domain(goal: &Value) -> Option<(&'static str, &'static str)> {
    goal["category"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            codings(c)
                .filter(|(s, _)| *s == GOAL_DOMAIN_SYSTEM)
                .find_map(|(_, code)| {
                    goal_domains()
                        .iter()
                        .find(|(c, _)| c == code)
                        .map(|(c, d)| (c.as_str(), d.as_str()))
                })
        })
}

/// The expectation when a plan says nothing about how often to measure.
pub const DEFAULT_INTERVAL_DAYS: i64 = 14;

fn shares_code(a: &Value, b: &Value) -> bool {
    codings(a).any(|x| codings(b).any(|y| x == y))
}

/// The interval between measurements a timing asks for, in ms (`repeat.period` ×
/// `periodUnit` ÷ `frequency`).
fn interval(timing: &Value) -> Option<i64> {
    let repeat = &timing["repeat"];
    let period = repeat["period"].as_f64()?;
    let unit = match repeat["periodUnit"].as_str()? {
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => HOUR_MS as f64,
        "d" => DAY_MS as f64,
        "wk" => 7.0 * DAY_MS as f64,
        "mo" => 30.0 * DAY_MS as f64,
        "a" => 365.0 * DAY_MS as f64,
        _ => return None,
    };
    let frequency = repeat["frequency"].as_f64().unwrap_or(1.0).max(1.0);
    Some((period * unit / frequency) as i64)
}

/// Whether the record holds anything this model reads (a CarePlan or a Goal): a patient
/// without a plan gets no engagement assessment.
pub fn applies(record: &Record) -> bool {
    record.of_type("CarePlan").next().is_some() || record.of_type("Goal").next().is_some()
}

pub fn score(record: &Record, now: i64) -> Score {
    let mut items = Vec::new();
    // Goal measures followed, for a score of 0 to say what it looked at.
    let mut followed = 0;
    let goal = |id: &str| record.of_type("Goal").find(|g| g["id"] == id);
    for plan in record
        .of_type("CarePlan")
        .filter(|p| p["status"] == "active")
    {
        for goal_ref in plan["goal"].as_array().into_iter().flatten() {
            let Some(g) = reference_id(goal_ref, "Goal").and_then(goal) else {
                continue;
            };
            if matches!(
                g["lifecycleStatus"].as_str(),
                Some("completed" | "cancelled" | "entered-in-error" | "rejected")
            ) {
                continue;
            }
            let goal_id = g["id"].as_str().unwrap_or("");
            for target in g["target"].as_array().into_iter().flatten() {
                let measure = &target["measure"];
                if codings(measure).next().is_none() {
                    continue;
                }
                let expected = plan["activity"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| &a["detail"])
                    .filter(|d| {
                        d["goal"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|r| reference_id(r, "Goal") == Some(goal_id))
                            || shares_code(&d["code"], measure)
                    })
                    .find_map(|d| interval(&d["scheduledTiming"]));
                let (expected, said) = match expected {
                    Some(ms) => (ms, "the plan expects"),
                    None => (DEFAULT_INTERVAL_DAYS * DAY_MS, "the default"),
                };
                let last = record
                    .of_type("Observation")
                    .filter(|o| observation_counts(o) && shares_code(&o["code"], measure))
                    .filter_map(|o| effective(o).filter(|t| *t <= now).map(|t| (t, o)))
                    .max_by_key(|(t, _)| *t);
                let since = match last {
                    Some((t, _)) => Some(t),
                    None => instant(&g["startDate"])
                        .or_else(|| instant(&plan["period"]["start"]))
                        .or_else(|| instant(&plan["created"])),
                };
                let Some(since) = since else { continue };
                followed += 1;
                if now - since > expected {
                    let what = measure["text"]
                        .as_str()
                        .or_else(|| measure["coding"][0]["display"].as_str())
                        .or_else(|| measure["coding"][0]["code"].as_str())
                        .unwrap_or("the goal's measure");
                    // "since" a date, not "for N days": the line (and the RiskAssessment and
                    // Flag that carry it) stays the same from one re-score to the next.
                    let since = format_instant(since);
                    let expected_days = expected as f64 / DAY_MS as f64;
                    let mut basis = vec![key(plan), key(g)];
                    if let Some((_, o)) = last {
                        basis.push(key(o));
                    }
                    items.push(Item::new(
                        1.0,
                        format!(
                            "no {what} measurement since {since}; {said} one every {expected_days} day(s)"
                        ),
                        basis,
                    ));
                }
            }
        }
    }
    for g in record.of_type("Goal") {
        let status = codings(&g["achievementStatus"])
            .map(|(_, c)| c)
            .find(|c| matches!(*c, "worsening" | "not-achieving"));
        if let Some(status) = status {
            // A goal in a life domain says which domain is slipping.
            let why = match goal_domain(g) {
                Some((_, domain)) => {
                    let what = g["description"]["text"].as_str().unwrap_or("a goal");
                    format!("domain {domain} slipping: goal \"{what}\" {status}")
                }
                None => format!("goal achievement status {status}"),
            };
            items.push(Item::new(1.0, why, vec![key(g)]));
        }
    }
    let total = items.len() as f64;
    if items.is_empty() {
        let why = match followed {
            0 => "no goal of an active care plan with a measure to follow".to_owned(),
            n => format!("each of the {n} goal measure(s) followed was measured in time"),
        };
        items.push(Item::new(0.0, why, Vec::new()));
    }
    Score {
        model: "engagement",
        score: total,
        risk: if total == 0.0 { Risk::Low } else { Risk::High },
        items,
        encounter: None,
        occurrence: now,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ms, quantity};
    use super::*;
    use serde_json::json;

    fn plan(timing: Option<Value>) -> Vec<Value> {
        let mut detail = json!({"status": "in-progress", "goal": [{"reference": "Goal/g"}],
            "code": {"coding": [{"system": super::super::LOINC, "code": "29463-7"}]}});
        if let Some(t) = timing {
            detail["scheduledTiming"] = t;
        }
        vec![
            json!({"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p"}, "period": {"start": "2024-01-01"},
                "goal": [{"reference": "Goal/g"}], "activity": [{"detail": detail}]}),
            json!({"resourceType": "Goal", "id": "g", "lifecycleStatus": "active",
                "description": {"text": "weigh daily"}, "subject": {"reference": "Patient/p"},
                "target": [{"measure": {"coding": [{"system": super::super::LOINC, "code": "29463-7", "display": "Body weight"}]}}]}),
        ]
    }

    #[test]
    fn fourteen_days_without_a_measurement_when_the_plan_says_nothing() {
        let mut r = plan(None);
        r.push(quantity("w", "29463-7", "2024-03-01T08:00:00Z", 80.0, "kg"));
        let record = Record::new("p", r);
        assert_eq!(score(&record, ms("2024-03-15T08:00:00Z")).score, 0.0);
        let s = score(&record, ms("2024-03-15T08:00:01Z"));
        assert_eq!(s.score, 1.0);
        assert_eq!(
            s.items[0].basis,
            vec!["CarePlan/cp", "Goal/g", "Observation/w"]
        );
        assert_eq!(s.risk, Risk::High);
        assert_eq!(
            s.items[0].why,
            "no Body weight measurement since 2024-03-01T08:00:00.000Z; the default one every 14 day(s)"
        );
        // A day later the finding reads the same: re-scoring rewrites nothing.
        assert_eq!(s.items, score(&record, ms("2024-03-16T08:00:01Z")).items);
    }

    #[test]
    fn the_plan_s_own_interval_counts() {
        let daily = json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}});
        let mut r = plan(Some(daily));
        r.push(quantity("w", "29463-7", "2024-03-01T08:00:00Z", 80.0, "kg"));
        let s = score(&Record::new("p", r), ms("2024-03-03T08:00:00Z"));
        assert_eq!(s.items.len(), 1);
        assert!(
            s.items[0].why.contains("the plan expects one every 1 day"),
            "{}",
            s.items[0].why
        );
    }

    #[test]
    fn no_measurement_yet_counts_from_the_plan_start_and_worsening_goals_count() {
        let mut r = plan(None);
        let s = score(&Record::new("p", r.clone()), ms("2024-01-10T00:00:00Z"));
        assert_eq!(s.score, 0.0);
        r[1]["achievementStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": "worsening"}]});
        let s = score(&Record::new("p", r), ms("2024-02-10T00:00:00Z"));
        assert_eq!(s.score, 2.0);
        assert_eq!(s.items[1].why, "goal achievement status worsening");
    }

    #[test]
    fn a_slipping_goal_in_a_life_domain_names_the_domain() {
        let mut r = plan(None);
        r[1]["category"] =
            json!([{"coding": [{"system": GOAL_DOMAIN_SYSTEM, "code": "daily-activities"}]}]);
        r[1]["achievementStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": "not-achieving"}]});
        let s = score(&Record::new("p", r), ms("2024-01-10T00:00:00Z"));
        assert_eq!(
            s.items[0].why,
            "domain Daily activities slipping: goal \"weigh daily\" not-achieving"
        );
        assert_eq!(goal_domains().len(), 4);
    }
}
