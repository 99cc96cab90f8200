//! Palliative phase and advance care planning: not a published score but two rules of the
//! palliative care programme (issue 17), documented in docs/palliative.md.
//!
//! - **palliative-phase**: a source records that the patient is in the palliative phase: a
//!   Condition (counted, clinical status not inactive, resolved or in remission) whose code
//!   is in `scoring-palliative-care`, a CarePlan (active or on hold) whose category is, or
//!   the newest completed answer to the surprise question (the Questionnaire
//!   `conformance/questionnaire-surprise-question.json`) is "no, I would not be surprised"
//!   (`surprised` = false);
//! - **no-acp**: while the patient is in the palliative phase and no advance care plan is
//!   documented: an active Consent whose scope or category, or a Goal (not cancelled,
//!   rejected or entered in error) or CarePlan (not revoked or entered in error) whose
//!   category, is in `scoring-advance-care-planning`.
//!
//! Each finding is one point; the palliative phase is high risk (of dying within a year: what
//! the surprise question asks).

use serde_json::Value;

use super::terms::{url, Terms};
use super::{codings, condition_counts, instant, key, Item, Record, Risk, Score};

/// The canonical URL of the surprise question Questionnaire.
pub const SURPRISE_QUESTION: &str = "https://signaal.dev/fhir/Questionnaire/surprise-question";
/// Its item.
pub const SURPRISE_ITEM: &str = "surprised";

fn any_in(terms: &Terms, set: &str, concepts: &Value) -> bool {
    match concepts {
        Value::Array(items) => items.iter().any(|c| terms.holds(set, c)),
        Value::Object(_) => terms.holds(set, concepts),
        _ => false,
    }
}

/// The newest completed answer to the surprise question: the response and its answer.
fn surprise_answer(record: &Record) -> Option<(&Value, bool)> {
    record
        .of_type("QuestionnaireResponse")
        .filter(|r| matches!(r["status"].as_str(), Some("completed" | "amended")))
        .filter(|r| {
            r["questionnaire"]
                .as_str()
                .is_some_and(|q| q.split('|').next() == Some(SURPRISE_QUESTION))
        })
        .filter_map(|r| {
            let answer = r["item"]
                .as_array()?
                .iter()
                .find(|i| i["linkId"] == SURPRISE_ITEM)?["answer"][0]["valueBoolean"]
                .as_bool()?;
            Some((instant(&r["authored"]).unwrap_or(i64::MIN), r, answer))
        })
        .max_by_key(|(at, r, _)| (*at, key(r)))
        .map(|(_, r, answer)| (r, answer))
}

/// The sources that put the patient in the palliative phase, each a breakdown line.
fn phase_sources(terms: &Terms, record: &Record) -> Vec<Item> {
    let set = url("palliative-care");
    let mut items = Vec::new();
    for c in record.of_type("Condition").filter(|c| condition_counts(c)) {
        let over = codings(&c["clinicalStatus"])
            .any(|(_, s)| matches!(s, "inactive" | "resolved" | "remission"));
        if !over && terms.holds(&set, &c["code"]) {
            let what = c["code"]["text"]
                .as_str()
                .or_else(|| c["code"]["coding"][0]["display"].as_str())
                .unwrap_or("palliative care");
            items.push(Item::new(
                1.0,
                format!("palliative phase: condition {what}"),
                vec![key(c)],
            ));
        }
    }
    for p in record
        .of_type("CarePlan")
        .filter(|p| matches!(p["status"].as_str(), Some("active" | "on-hold")))
    {
        if any_in(terms, &set, &p["category"]) {
            items.push(Item::new(
                1.0,
                "palliative phase: a palliative care plan",
                vec![key(p)],
            ));
        }
    }
    if let Some((response, false)) = surprise_answer(record) {
        let when = response["authored"].as_str().unwrap_or("undated");
        items.push(Item::new(
            1.0,
            format!("palliative phase: the surprise question answered no ({when})"),
            vec![key(response)],
        ));
    }
    items
}

/// The documented advance care plans.
fn advance_care_plans(terms: &Terms, record: &Record) -> Vec<String> {
    let set = url("advance-care-planning");
    let mut out = Vec::new();
    for c in record
        .of_type("Consent")
        .filter(|c| c["status"] == "active")
    {
        if any_in(terms, &set, &c["scope"]) || any_in(terms, &set, &c["category"]) {
            out.push(key(c));
        }
    }
    for g in record.of_type("Goal").filter(|g| {
        !matches!(
            g["lifecycleStatus"].as_str(),
            Some("cancelled" | "rejected" | "entered-in-error")
        )
    }) {
        if any_in(terms, &set, &g["category"]) {
            out.push(key(g));
        }
    }
    for p in record
        .of_type("CarePlan")
        .filter(|p| !matches!(p["status"].as_str(), Some("revoked" | "entered-in-error")))
    {
        if any_in(terms, &set, &p["category"]) {
            out.push(key(p));
        }
    }
    out
}

/// Whether the record holds anything this model reads: a palliative source, an answer to the
/// surprise question, or an advance care plan. Without one, no assessment.
pub fn applies(terms: &Terms, record: &Record) -> bool {
    !phase_sources(terms, record).is_empty()
        || surprise_answer(record).is_some()
        || !advance_care_plans(terms, record).is_empty()
}

/// The model's score and the Flag reasons that hold (`palliative-phase`, `no-acp`) with why.
pub fn score(terms: &Terms, record: &Record, now: i64) -> (Score, Vec<(&'static str, String)>) {
    let mut items = phase_sources(terms, record);
    let mut flags = Vec::new();
    let plans = advance_care_plans(terms, record);
    if !items.is_empty() {
        let why: Vec<&str> = items.iter().map(|i| i.why.as_str()).collect();
        flags.push(("palliative-phase", why.join("; ")));
        if plans.is_empty() {
            let why = "palliative phase and no advance care plan documented (a Consent, or a \
                       Goal or CarePlan with an advance care planning category)";
            items.push(Item::new(1.0, why, Vec::new()));
            flags.push(("no-acp", why.to_owned()));
        }
    }
    let total = items.len() as f64;
    if items.is_empty() {
        items.push(Item::new(
            0.0,
            "no source records the palliative phase",
            Vec::new(),
        ));
    }
    if !plans.is_empty() {
        items.push(Item::new(0.0, "advance care plan documented", plans));
    }
    let score = Score {
        model: "palliative",
        score: total,
        risk: if total > 0.0 { Risk::High } else { Risk::Low },
        items,
        encounter: None,
        occurrence: now,
    };
    (score, flags)
}

#[cfg(test)]
mod tests {
    use super::super::terms::BUILTIN_TERMS;
    use super::*;
    use serde_json::json;

    fn surprise(id: &str, authored: &str, surprised: bool) -> Value {
        json!({"resourceType": "QuestionnaireResponse", "id": id, "status": "completed",
            "questionnaire": SURPRISE_QUESTION, "authored": authored,
            "item": [{"linkId": "surprised", "answer": [{"valueBoolean": surprised}]}]})
    }

    #[test]
    fn the_newest_surprise_question_answer_decides() {
        let terms = &BUILTIN_TERMS;
        let no = surprise("a", "2024-01-01", false);
        let record = Record::new("p", vec![no.clone()]);
        let (s, flags) = score(terms, &record, 0);
        assert_eq!(s.score, 2.0);
        assert_eq!(
            flags.iter().map(|f| f.0).collect::<Vec<_>>(),
            ["palliative-phase", "no-acp"]
        );
        let record = Record::new("p", vec![no, surprise("b", "2024-02-01", true)]);
        let (s, flags) = score(terms, &record, 0);
        assert_eq!(s.score, 0.0);
        assert!(flags.is_empty());
        assert!(applies(terms, &record));
    }

    #[test]
    fn a_palliative_condition_without_acp_raises_both_and_a_consent_ends_no_acp() {
        let terms = &BUILTIN_TERMS;
        let condition = json!({"resourceType": "Condition", "id": "c",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "Z51.5"}]}});
        let (_, flags) = score(terms, &Record::new("p", vec![condition.clone()]), 0);
        assert_eq!(flags.len(), 2);
        let consent = json!({"resourceType": "Consent", "id": "k", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]}});
        let (s, flags) = score(terms, &Record::new("p", vec![condition, consent]), 0);
        assert_eq!(
            flags.iter().map(|f| f.0).collect::<Vec<_>>(),
            ["palliative-phase"]
        );
        assert_eq!(s.items.last().unwrap().basis, vec!["Consent/k"]);
    }

    #[test]
    fn a_patient_without_palliative_sources_is_not_assessed() {
        assert!(!applies(&BUILTIN_TERMS, &Record::new("p", vec![])));
    }
}
