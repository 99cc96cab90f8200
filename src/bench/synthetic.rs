//! Synthetic patients for the search benchmark, for users without the Synthea folder: one
//! transaction Bundle per patient shaped like Synthea's output (every entry `POST` with a
//! `urn:uuid` fullUrl, references between entries by those fullUrls), so the same HTTP
//! transaction path loads both. Everything follows from `(seed, patient number)`: the same
//! seed gives byte-identical Bundles, so runs on different machines load the same data.
//!
//! One patient is [`RESOURCES_PER_PATIENT`] resources: the Patient (with an identifier the
//! `Patient?identifier=` query finds), [`ENCOUNTERS`] Encounters over ten years (ambulatory,
//! emergency and inpatient, so `class=IMP` selects a few), vital signs at every encounter
//! (blood pressure panel 85354-9 with systolic/diastolic components, body weight, heart rate)
//! and a glucose lab result, [`HOME_READINGS`] home blood pressure readings as a PGO app sends
//! them, [`CONDITIONS`] Conditions, and two CarePlans (one active, one completed) with their
//! Goals. 2,200 patients are just over one million resources (2,000 with the 300 Synthea ones).

use serde_json::{json, Value};

use super::load::XorShift;

/// Encounters per patient.
pub const ENCOUNTERS: usize = 60;
/// Home blood pressure readings per patient (not tied to an encounter).
pub const HOME_READINGS: usize = 150;
/// Conditions per patient.
pub const CONDITIONS: usize = 6;
/// Observations at each encounter: blood pressure, weight, heart rate, glucose.
const PER_ENCOUNTER: usize = 4;
/// Goals of the active CarePlan, and of the completed one.
const ACTIVE_GOALS: usize = 2;
const COMPLETED_GOALS: usize = 1;

/// Resources in one patient's Bundle.
pub const RESOURCES_PER_PATIENT: usize = 1
    + ENCOUNTERS * (1 + PER_ENCOUNTER)
    + HOME_READINGS
    + CONDITIONS
    + 2
    + ACTIVE_GOALS
    + COMPLETED_GOALS;

/// The identifier system of generated patients (`Patient?identifier=SYSTEM|value`).
pub const IDENTIFIER_SYSTEM: &str = "https://signaal.dev/fhir/sid/bench-patient";

/// 2015-01-01T00:00:00Z: the first encounter is no earlier; ten years follow.
const START_MS: i64 = 1_420_070_400_000;
const DAY_MS: i64 = 86_400_000;
const SPAN_DAYS: i64 = 3_650;

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The identifier value of patient `n` of `seed`.
pub fn identifier_value(seed: u64, n: u64) -> String {
    format!("{seed}-{n:07}")
}

/// The transaction Bundle of patient `n` of `seed`.
pub fn patient_bundle(seed: u64, n: u64) -> Value {
    let mut b = Builder {
        random: XorShift::new(seed.wrapping_mul(0x1000_0000_01B3) ^ n),
        entries: Vec::with_capacity(RESOURCES_PER_PATIENT),
    };
    let resource = patient(&mut b.random, seed, n);
    let patient = b.add("Patient", resource);

    let mut encounters = Vec::with_capacity(ENCOUNTERS);
    for e in 0..ENCOUNTERS as i64 {
        // Spread evenly over the ten years, jittered by up to a month.
        let day = e * SPAN_DAYS / ENCOUNTERS as i64 + b.random.below(30) as i64;
        let start = START_MS + day * DAY_MS + (8 + b.random.below(9) as i64) * 3_600_000;
        let class = match b.random.below(100) {
            0..=9 => ("IMP", "inpatient encounter"),
            10..=24 => ("EMER", "emergency"),
            _ => ("AMB", "ambulatory"),
        };
        let hours = if class.0 == "IMP" {
            24 * (1 + b.random.below(6) as i64)
        } else {
            1
        };
        let end = start + hours * 3_600_000;
        let encounter = b.add("Encounter", encounter(&patient, class, start, end));
        let at = start + 900_000;
        let weight = 70.0 + b.random.below(300) as f64 / 10.0;
        let systolic = 105 + b.random.below(50) as u64;
        let diastolic = 65 + b.random.below(30) as u64;
        let pulse = 55 + b.random.below(45) as u64;
        let glucose = 70 + b.random.below(80) as u64;
        b.add(
            "Observation",
            blood_pressure(&patient, Some(&encounter), at, systolic, diastolic),
        );
        b.add(
            "Observation",
            vital(
                &patient,
                &encounter,
                at,
                ("29463-7", "Body weight"),
                json!(weight),
                ("kg", "kg"),
            ),
        );
        b.add(
            "Observation",
            vital(
                &patient,
                &encounter,
                at,
                ("8867-4", "Heart rate"),
                json!(pulse),
                ("/min", "beats/minute"),
            ),
        );
        b.add(
            "Observation",
            glucose_lab(&patient, &encounter, at, glucose),
        );
        encounters.push((encounter, start));
    }

    for h in 0..HOME_READINGS as i64 {
        // The last years, a reading every few days, at home in the morning or the evening.
        let day = SPAN_DAYS - 3 * HOME_READINGS as i64 + 3 * h + b.random.below(3) as i64;
        let hour = if b.random.below(2) == 0 { 7 } else { 20 };
        let at = START_MS + day * DAY_MS + hour * 3_600_000 + b.random.below(3_600) as i64 * 1000;
        let systolic = 110 + b.random.below(45) as u64;
        let diastolic = 68 + b.random.below(25) as u64;
        b.add(
            "Observation",
            blood_pressure(&patient, None, at, systolic, diastolic),
        );
    }

    for c in 0..CONDITIONS {
        let (encounter, start) = &encounters[b.random.below(ENCOUNTERS)];
        let (code, display) = CONDITION_CODES[(c + b.random.below(3)) % CONDITION_CODES.len()];
        b.add(
            "Condition",
            condition(&patient, encounter, *start, code, display, c % 3 != 0),
        );
    }

    for (status, goals) in [("completed", COMPLETED_GOALS), ("active", ACTIVE_GOALS)] {
        let mut goal_refs = Vec::new();
        for g in 0..goals {
            let (text, loinc) = GOALS[(g + usize::from(status == "active")) % GOALS.len()];
            let goal_status = if status == "active" {
                "active"
            } else {
                "completed"
            };
            goal_refs.push(b.add("Goal", goal(&patient, goal_status, text, loinc)));
        }
        let start = if status == "active" {
            START_MS + (SPAN_DAYS - 365) * DAY_MS
        } else {
            START_MS + 400 * DAY_MS
        };
        b.add("CarePlan", care_plan(&patient, status, start, &goal_refs));
    }

    json!({"resourceType": "Bundle", "type": "transaction", "entry": b.entries})
}

const CONDITION_CODES: [(&str, &str); 6] = [
    ("38341003", "Hypertensive disorder, systemic arterial"),
    ("44054006", "Diabetes mellitus type 2"),
    ("162864005", "Body mass index 30+ - obesity"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("271737000", "Anemia"),
];

const GOALS: [(&str, &str); 3] = [
    ("Systolic blood pressure below 140 mmHg", "8480-6"),
    ("Lose 5% of body weight", "29463-7"),
    ("Fasting glucose below 126 mg/dL", "2339-0"),
];

struct Builder {
    random: XorShift,
    entries: Vec<Value>,
}

impl Builder {
    /// Adds a POST entry with a deterministic `urn:uuid` fullUrl; returns that fullUrl.
    fn add(&mut self, rtype: &str, resource: Value) -> String {
        let high = self.random.next() as u128;
        let low = self.random.next() as u128;
        let uuid = uuid::Builder::from_random_bytes(((high << 64) | low).to_be_bytes()).into_uuid();
        let full_url = format!("urn:uuid:{uuid}");
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": resource,
            "request": {"method": "POST", "url": rtype},
        }));
        full_url
    }
}

fn instant(ms: i64) -> String {
    crate::fhir::datetime::format_instant(ms)
}

fn reference(full_url: &str) -> Value {
    json!({ "reference": full_url })
}

const GIVEN: [&str; 8] = [
    "Anna", "Daan", "Emma", "Sem", "Julia", "Lucas", "Sophie", "Milan",
];
const FAMILY: [&str; 8] = [
    "de Jong",
    "Jansen",
    "de Vries",
    "van den Berg",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
];

fn patient(random: &mut XorShift, seed: u64, n: u64) -> Value {
    let birth_day = random.below(365 * 60) as i64;
    let birth = START_MS - (20 * 365 + birth_day) * DAY_MS;
    json!({
        "resourceType": "Patient",
        "identifier": [{
            "system": IDENTIFIER_SYSTEM,
            "value": identifier_value(seed, n),
        }],
        "name": [{
            "family": FAMILY[random.below(FAMILY.len())],
            "given": [GIVEN[random.below(GIVEN.len())]],
        }],
        "gender": if random.below(2) == 0 { "female" } else { "male" },
        "birthDate": &instant(birth)[..10],
    })
}

fn encounter(patient: &str, class: (&str, &str), start: i64, end: i64) -> Value {
    json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": class.0, "display": class.1},
        "type": [{"coding": [{"system": SNOMED, "code": "185349003", "display": "Encounter for check up"}]}],
        "subject": reference(patient),
        "period": {"start": instant(start), "end": instant(end)},
    })
}

fn category(code: &str, display: &str) -> Value {
    json!([{"coding": [{"system": CATEGORY, "code": code, "display": display}]}])
}

fn loinc(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": LOINC, "code": code, "display": display}], "text": display})
}

fn quantity(value: Value, (code, unit): (&str, &str)) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": code})
}

fn blood_pressure(
    patient: &str,
    encounter: Option<&str>,
    at: i64,
    systolic: u64,
    diastolic: u64,
) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": category("vital-signs", "Vital Signs"),
        "code": loinc("85354-9", "Blood pressure panel with all children optional"),
        "subject": reference(patient),
        "effectiveDateTime": instant(at),
        "component": [
            {
                "code": loinc("8480-6", "Systolic blood pressure"),
                "valueQuantity": quantity(json!(systolic), ("mm[Hg]", "mmHg")),
            },
            {
                "code": loinc("8462-4", "Diastolic blood pressure"),
                "valueQuantity": quantity(json!(diastolic), ("mm[Hg]", "mmHg")),
            },
        ],
    });
    if let Some(encounter) = encounter {
        o["encounter"] = reference(encounter);
    }
    o
}

fn vital(
    patient: &str,
    encounter: &str,
    at: i64,
    (code, display): (&str, &str),
    value: Value,
    unit: (&str, &str),
) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": category("vital-signs", "Vital Signs"),
        "code": loinc(code, display),
        "subject": reference(patient),
        "encounter": reference(encounter),
        "effectiveDateTime": instant(at),
        "valueQuantity": quantity(value, unit),
    })
}

/// Glucose is a laboratory result, not a vital sign (as in Synthea), so `$lastn` with
/// `category=vital-signs` leaves it out.
fn glucose_lab(patient: &str, encounter: &str, at: i64, mg_dl: u64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": category("laboratory", "Laboratory"),
        "code": loinc("2339-0", "Glucose [Mass/volume] in Blood"),
        "subject": reference(patient),
        "encounter": reference(encounter),
        "effectiveDateTime": instant(at),
        "issued": instant(at + 3_600_000),
        "valueQuantity": quantity(json!(mg_dl), ("mg/dL", "mg/dL")),
    })
}

fn condition(
    patient: &str,
    encounter: &str,
    onset: i64,
    code: &str,
    display: &str,
    active: bool,
) -> Value {
    let clinical = if active { "active" } else { "resolved" };
    let mut c = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": clinical,
        }]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed",
        }]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "encounter-diagnosis",
        }]}],
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": reference(patient),
        "encounter": reference(encounter),
        "onsetDateTime": instant(onset),
        "recordedDate": instant(onset),
    });
    if !active {
        c["abatementDateTime"] = json!(instant(onset + 90 * DAY_MS));
    }
    c
}

fn goal(patient: &str, status: &str, text: &str, measure: &str) -> Value {
    json!({
        "resourceType": "Goal",
        "lifecycleStatus": status,
        "description": {"text": text},
        "subject": reference(patient),
        "target": [{"measure": {"coding": [{"system": LOINC, "code": measure}]}}],
    })
}

fn care_plan(patient: &str, status: &str, start: i64, goals: &[String]) -> Value {
    let mut plan = json!({
        "resourceType": "CarePlan",
        "status": status,
        "intent": "plan",
        "category": [{"coding": [{"system": SNOMED, "code": "736285004", "display": "Hypertension clinical management plan"}]}],
        "subject": reference(patient),
        "period": {"start": instant(start)},
        "goal": goals.iter().map(|g| reference(g)).collect::<Vec<_>>(),
    });
    if status == "completed" {
        plan["period"]["end"] = json!(instant(start + 365 * DAY_MS));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_resource_is_valid() {
        let bundle = patient_bundle(7, 3);
        crate::fhir::validate::validate(&bundle, "Bundle").expect("the Bundle is valid");
        for entry in bundle["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            let rtype = resource["resourceType"].as_str().unwrap();
            if let Err(e) = crate::fhir::validate::validate(resource, rtype) {
                panic!("{rtype} is invalid: {e:?}\n{resource:#}");
            }
        }
    }

    #[test]
    fn same_seed_same_bundle_other_seed_other_bundle() {
        assert_eq!(patient_bundle(1, 42), patient_bundle(1, 42));
        assert_ne!(patient_bundle(1, 42), patient_bundle(2, 42));
        assert_ne!(patient_bundle(1, 42), patient_bundle(1, 43));
    }

    #[test]
    fn a_patient_has_the_announced_resources() {
        let bundle = patient_bundle(1, 0);
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), RESOURCES_PER_PATIENT);
        let count = |t: &str| {
            entries
                .iter()
                .filter(|e| e["resource"]["resourceType"] == t)
                .count()
        };
        assert_eq!(count("Patient"), 1);
        assert_eq!(count("Encounter"), ENCOUNTERS);
        assert_eq!(count("CarePlan"), 2);
        assert_eq!(count("Goal"), ACTIVE_GOALS + COMPLETED_GOALS);
        assert_eq!(
            entries[0]["resource"]["identifier"][0]["value"],
            "1-0000000"
        );
        let classes: std::collections::HashSet<_> = entries
            .iter()
            .filter_map(|e| e["resource"]["class"]["code"].as_str())
            .collect();
        assert_eq!(
            classes.len(),
            3,
            "IMP, EMER and AMB encounters: {classes:?}"
        );
    }

    #[test]
    fn references_point_at_entries_of_the_bundle() {
        let bundle = patient_bundle(5, 9);
        let entries = bundle["entry"].as_array().unwrap();
        let full_urls: std::collections::HashSet<_> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        assert_eq!(full_urls.len(), entries.len(), "fullUrls are distinct");
        for entry in entries {
            for field in ["subject", "encounter"] {
                if let Some(r) = entry["resource"][field]["reference"].as_str() {
                    assert!(full_urls.contains(r), "{r} is not an entry");
                }
            }
            for goal in entry["resource"]["goal"].as_array().into_iter().flatten() {
                assert!(full_urls.contains(goal["reference"].as_str().unwrap()));
            }
        }
    }
}
