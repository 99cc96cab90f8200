//! The end-of-life care indicators for one decedent, as the Measures' descriptions define
//! them (`conformance/measure-eol-*.json`): which resources count, by which ValueSet, in
//! which window before the date of death.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use serde_json::Value;

use super::{
    date, days_before, within, Indicator, COACH_WINDOW_DAYS, LAST_MONTH_DAYS, LAST_TWO_WEEKS_DAYS,
    LATE_PALLIATIVE_CARE_DAYS,
};
use crate::scoring::terms::{url, Terms};
use crate::scoring::{condition_counts, encounter_happened, key, reference_id, Record};

/// The resource types an indicator reads from a decedent's compartment (Locations are read
/// by reference from the Encounters).
pub const INPUT_TYPES: &[&str] = &[
    "Encounter",
    "Procedure",
    "MedicationAdministration",
    "MedicationDispense",
    "CarePlan",
    "Condition",
    "CareTeam",
];

/// What a decedent's record says for the indicators.
pub struct Decedent<'a> {
    pub record: &'a Record,
    /// Location resources by id (those the Encounters reference).
    pub locations: &'a HashMap<String, Value>,
    pub death: NaiveDate,
}

/// Whether an indicator's numerator holds, and the resources that made it hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finding {
    pub met: bool,
    pub basis: Vec<String>,
}

impl Finding {
    fn from(met: bool, basis: Vec<String>) -> Self {
        Finding {
            met,
            basis: if met { basis } else { Vec::new() },
        }
    }
}

/// The ids of the Location resources a record's Encounters reference.
pub fn referenced_locations(record: &Record) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in record.of_type("Encounter") {
        for l in e["location"].as_array().into_iter().flatten() {
            if let Some(id) = reference_id(&l["location"], "Location") {
                if !out.iter().any(|o| o == id) {
                    out.push(id.to_owned());
                }
            }
        }
    }
    out
}

fn start(encounter: &Value) -> Option<NaiveDate> {
    date(&encounter["period"]["start"])
}

/// The Encounters that happened, of a class in the value set `name`, starting `0..=days`
/// before death.
fn encounters_of_class<'a>(
    d: &'a Decedent<'a>,
    terms: &'a Terms,
    name: &str,
    days: i64,
) -> Vec<&'a Value> {
    let set = url(name);
    d.record
        .of_type("Encounter")
        .filter(|e| encounter_happened(e))
        .filter(|e| {
            let class = &e["class"];
            terms.contains(
                &set,
                class["system"].as_str().unwrap_or(""),
                class["code"].as_str().unwrap_or(""),
            )
        })
        .filter(|e| start(e).is_some_and(|s| within(d.death, s, days)))
        .collect()
}

fn ed_visits(d: &Decedent, terms: &Terms) -> Finding {
    let visits = encounters_of_class(d, terms, "eol-emergency-encounter", LAST_MONTH_DAYS);
    Finding::from(visits.len() > 1, visits.iter().map(|e| key(e)).collect())
}

fn hospital_admissions(d: &Decedent, terms: &Terms) -> Finding {
    let stays = encounters_of_class(d, terms, "eol-inpatient-encounter", LAST_MONTH_DAYS);
    Finding::from(stays.len() > 1, stays.iter().map(|e| key(e)).collect())
}

/// The types of the Locations an Encounter stayed in, with the start of each stay.
fn location_stays<'a>(
    d: &'a Decedent<'a>,
    encounter: &'a Value,
) -> impl Iterator<Item = (&'a Value, Option<NaiveDate>)> + 'a {
    encounter["location"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |l| {
            let location = d.locations.get(reference_id(&l["location"], "Location")?)?;
            let from = date(&l["period"]["start"]).or_else(|| start(encounter));
            Some((location, from))
        })
}

fn any_type_in(terms: &Terms, set: &str, concepts: &Value) -> bool {
    match concepts {
        Value::Array(items) => items.iter().any(|c| terms.holds(set, c)),
        Value::Object(_) => terms.holds(set, concepts),
        _ => false,
    }
}

fn icu_admission(d: &Decedent, terms: &Terms) -> Finding {
    let set = url("eol-intensive-care");
    let mut basis = Vec::new();
    for e in d
        .record
        .of_type("Encounter")
        .filter(|e| encounter_happened(e))
    {
        let by_service = any_type_in(terms, &set, &e["serviceType"])
            && start(e).is_some_and(|s| within(d.death, s, LAST_MONTH_DAYS));
        let by_location = location_stays(d, e).any(|(location, from)| {
            any_type_in(terms, &set, &location["type"])
                && from.is_some_and(|s| within(d.death, s, LAST_MONTH_DAYS))
        });
        if by_service || by_location {
            basis.push(key(e));
        }
    }
    Finding::from(!basis.is_empty(), basis)
}

/// Whether a Procedure was done (not in preparation, not done, or entered in error).
fn procedure_done(p: &Value) -> bool {
    !matches!(
        p["status"].as_str(),
        Some("preparation" | "not-done" | "entered-in-error")
    )
}

/// The start of a `performed[x]` / `effective[x]`.
fn started(resource: &Value, element: &str) -> Option<NaiveDate> {
    date(&resource[format!("{element}DateTime")])
        .or_else(|| date(&resource[format!("{element}Period")]["start"]))
}

/// The medication code of a medication event: `medicationCodeableConcept`, or the code of the
/// contained Medication `medicationReference` points at.
fn medication_code(resource: &Value) -> Option<&Value> {
    if resource["medicationCodeableConcept"].is_object() {
        return Some(&resource["medicationCodeableConcept"]);
    }
    let local = resource["medicationReference"]["reference"]
        .as_str()?
        .strip_prefix('#')?;
    resource["contained"]
        .as_array()?
        .iter()
        .find(|c| c["resourceType"] == "Medication" && c["id"] == local)
        .map(|m| &m["code"])
}

fn chemotherapy(d: &Decedent, terms: &Terms) -> Finding {
    let set = url("eol-chemotherapy");
    let in_window =
        |when: Option<NaiveDate>| when.is_some_and(|s| within(d.death, s, LAST_TWO_WEEKS_DAYS));
    let mut basis = Vec::new();
    for p in d.record.of_type("Procedure").filter(|p| procedure_done(p)) {
        if terms.holds(&set, &p["code"]) && in_window(started(p, "performed")) {
            basis.push(key(p));
        }
    }
    for m in d
        .record
        .of_type("MedicationAdministration")
        .filter(|m| !matches!(m["status"].as_str(), Some("not-done" | "entered-in-error")))
    {
        if medication_code(m).is_some_and(|c| terms.holds(&set, c))
            && in_window(started(m, "effective"))
        {
            basis.push(key(m));
        }
    }
    for m in d
        .record
        .of_type("MedicationDispense")
        .filter(|m| m["status"] == "completed")
    {
        if medication_code(m).is_some_and(|c| terms.holds(&set, c))
            && in_window(date(&m["whenHandedOver"]))
        {
            basis.push(key(m));
        }
    }
    Finding::from(!basis.is_empty(), basis)
}

fn death_in_hospital(d: &Decedent, terms: &Terms) -> Finding {
    let set = url("eol-inpatient-encounter");
    let mut basis = Vec::new();
    for e in d
        .record
        .of_type("Encounter")
        .filter(|e| encounter_happened(e))
    {
        let class = &e["class"];
        if !terms.contains(
            &set,
            class["system"].as_str().unwrap_or(""),
            class["code"].as_str().unwrap_or(""),
        ) {
            continue;
        }
        let Some(from) = start(e) else { continue };
        if from > d.death {
            continue;
        }
        let expired = crate::scoring::has_code(
            &e["hospitalization"]["dischargeDisposition"],
            "http://terminology.hl7.org/CodeSystem/discharge-disposition",
            "exp",
        );
        let spans_death = match date(&e["period"]["end"]) {
            Some(end) => end >= d.death,
            None => e["status"] != "finished",
        };
        if expired || spans_death {
            basis.push(key(e));
        }
    }
    Finding::from(!basis.is_empty(), basis)
}

/// The dated records of palliative or hospice care up to the date of death, earliest first.
fn palliative_care(d: &Decedent, terms: &Terms) -> Vec<(NaiveDate, String)> {
    let set = url("palliative-care");
    let mut found = Vec::new();
    for e in d
        .record
        .of_type("Encounter")
        .filter(|e| encounter_happened(e))
    {
        let coded =
            any_type_in(terms, &set, &e["type"]) || any_type_in(terms, &set, &e["serviceType"]);
        let from = if coded {
            start(e)
        } else {
            location_stays(d, e)
                .filter(|(location, _)| any_type_in(terms, &set, &location["type"]))
                .filter_map(|(_, from)| from)
                .min()
        };
        if let Some(from) = from {
            found.push((from, key(e)));
        }
    }
    for p in d.record.of_type("Procedure").filter(|p| procedure_done(p)) {
        if terms.holds(&set, &p["code"]) {
            if let Some(from) = started(p, "performed") {
                found.push((from, key(p)));
            }
        }
    }
    for c in d
        .record
        .of_type("CarePlan")
        .filter(|c| !matches!(c["status"].as_str(), Some("entered-in-error" | "draft")))
    {
        if any_type_in(terms, &set, &c["category"]) {
            if let Some(from) = date(&c["period"]["start"]).or_else(|| date(&c["created"])) {
                found.push((from, key(c)));
            }
        }
    }
    for c in d
        .record
        .of_type("Condition")
        .filter(|c| condition_counts(c))
    {
        if terms.holds(&set, &c["code"]) {
            let from = date(&c["onsetDateTime"])
                .or_else(|| date(&c["onsetPeriod"]["start"]))
                .or_else(|| date(&c["recordedDate"]));
            if let Some(from) = from {
                found.push((from, key(c)));
            }
        }
    }
    found.retain(|(from, _)| *from <= d.death);
    found.sort();
    found
}

fn no_or_late_palliative_care(d: &Decedent, terms: &Terms) -> Finding {
    let care = palliative_care(d, terms);
    match care.first() {
        None => Finding::from(true, Vec::new()),
        Some((first, k)) => Finding::from(
            days_before(d.death, *first) < LATE_PALLIATIVE_CARE_DAYS,
            vec![k.clone()],
        ),
    }
}

/// Whether the numerator of `indicator` holds for the decedent.
pub fn evaluate(indicator: Indicator, d: &Decedent, terms: &Terms) -> Finding {
    match indicator {
        Indicator::EdVisits => ed_visits(d, terms),
        Indicator::HospitalAdmissions => hospital_admissions(d, terms),
        Indicator::IcuAdmission => icu_admission(d, terms),
        Indicator::Chemotherapy => chemotherapy(d, terms),
        Indicator::DeathInHospital => death_in_hospital(d, terms),
        Indicator::NoOrLatePalliativeCare => no_or_late_palliative_care(d, terms),
        Indicator::Any => {
            let mut basis = Vec::new();
            let mut met = false;
            for part in Indicator::PARTS {
                let f = evaluate(part, d, terms);
                met |= f.met;
                basis.extend(f.basis);
            }
            Finding::from(met, basis)
        }
    }
}

/// Whether `[from, to]` (either end open when `None`) overlaps `[lo, hi]`.
fn overlaps(period: &Value, lo: NaiveDate, hi: NaiveDate) -> bool {
    let from = date(&period["start"]);
    let to = date(&period["end"]);
    from.is_none_or(|f| f <= hi) && to.is_none_or(|t| t >= lo)
}

/// Whether the decedent had a coach in the 90 days before death: a CareTeam (not proposed or
/// entered in error) with a participant whose role is in `scoring-coach-role`, the team's and
/// the participant's periods (when given) overlapping those 90 days.
pub fn had_coach(d: &Decedent, terms: &Terms) -> bool {
    let set = url("coach-role");
    let lo = d.death - Duration::days(COACH_WINDOW_DAYS);
    let hi = d.death;
    d.record
        .of_type("CareTeam")
        .filter(|t| !matches!(t["status"].as_str(), Some("proposed" | "entered-in-error")))
        .filter(|t| overlaps(&t["period"], lo, hi))
        .any(|t| {
            t["participant"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| any_type_in(terms, &set, &p["role"]) && overlaps(&p["period"], lo, hi))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::terms::BUILTIN_TERMS;
    use serde_json::json;

    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

    fn enc(id: &str, class: &str, start: &str) -> Value {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": ACT, "code": class}, "period": {"start": start, "end": start}})
    }

    fn death() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 31).unwrap()
    }

    fn run(indicator: Indicator, resources: Vec<Value>) -> Finding {
        let record = Record::new("p", resources);
        let locations = HashMap::new();
        let d = Decedent {
            record: &record,
            locations: &locations,
            death: death(),
        };
        evaluate(indicator, &d, &BUILTIN_TERMS)
    }

    #[test]
    fn two_ed_visits_in_the_last_30_days_count_a_third_31_days_before_does_not() {
        let at_30 = enc("a", "EMER", "2024-05-01T10:00:00Z");
        let at_31 = enc("b", "EMER", "2024-04-30T10:00:00Z");
        let at_0 = enc("c", "EMER", "2024-05-31");
        assert!(!run(Indicator::EdVisits, vec![at_30.clone(), at_31]).met);
        let f = run(Indicator::EdVisits, vec![at_30, at_0]);
        assert!(f.met);
        assert_eq!(f.basis, vec!["Encounter/a", "Encounter/c"]);
    }

    #[test]
    fn chemotherapy_counts_14_days_before_death_not_15() {
        let chemo = |id: &str, at: &str| {
            json!({"resourceType": "Procedure", "id": id, "status": "completed",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "367336001"}]},
                "performedDateTime": at})
        };
        assert!(run(Indicator::Chemotherapy, vec![chemo("a", "2024-05-17")]).met);
        assert!(!run(Indicator::Chemotherapy, vec![chemo("a", "2024-05-16")]).met);
        let atc = json!({"resourceType": "MedicationAdministration", "id": "m", "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XA01"}]},
            "effectiveDateTime": "2024-05-20T09:00:00+02:00"});
        assert!(run(Indicator::Chemotherapy, vec![atc]).met);
    }

    #[test]
    fn palliative_care_is_late_under_3_days_and_missing_counts() {
        let pc = |at: &str| {
            json!({"resourceType": "Procedure", "id": "pc", "status": "completed",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "103735009"}]},
                "performedDateTime": at})
        };
        assert!(run(Indicator::NoOrLatePalliativeCare, vec![]).met);
        assert!(run(Indicator::NoOrLatePalliativeCare, vec![pc("2024-05-29")]).met);
        assert!(!run(Indicator::NoOrLatePalliativeCare, vec![pc("2024-05-28")]).met);
    }

    #[test]
    fn death_in_hospital_is_a_stay_spanning_the_date_of_death() {
        let mut stay = enc("s", "IMP", "2024-05-20");
        stay["period"]["end"] = json!("2024-05-31T23:00:00Z");
        assert!(run(Indicator::DeathInHospital, vec![stay.clone()]).met);
        stay["period"]["end"] = json!("2024-05-30");
        assert!(!run(Indicator::DeathInHospital, vec![stay.clone()]).met);
        stay["hospitalization"] = json!({"dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "exp"}]}});
        assert!(run(Indicator::DeathInHospital, vec![stay]).met);
    }
}
