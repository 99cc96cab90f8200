//! `GET [base]/$scoring-coverage`: the codes of the population that no risk model's value set
//! decides (OperationDefinition `conformance/operation-scoring-coverage.json`), so that a
//! terminologist can extend the value sets or the ConceptMap (see `scoring::terms`).
//!
//! Read across every patient compartment (as the daily re-score does, through the same
//! guarded store: a client sees the compartments its grant may read): the codes of counted
//! Conditions (`code`, not refuted or entered in error) none of whose codings a model can
//! place, of counted Observations (`code` and component codes, final/amended/corrected) none
//! of whose codings a model reads, and of Encounters: `class` outside v3 ActCode (the models
//! read IMP and EMER and treat every other ActCode class as neither) and `serviceType` codings
//! not known as oncology or not. The answer is a `Parameters` resource: one `code` parameter
//! per coding, most frequent first, with the element, the Coding, the number of resources
//! that carry it and a sample patient.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::http::response::FhirResponse;
use crate::scoring::terms::{self, Terms};
use crate::scoring::{codings, condition_counts, observation_counts, ACT_CODE};

/// The canonical URL of `conformance/operation-scoring-coverage.json`.
pub const DEFINITION: &str = "https://signaal.dev/fhir/OperationDefinition/scoring-coverage";

#[derive(Default)]
struct Seen {
    count: usize,
    display: Option<String>,
    patient: String,
}

fn note(
    seen: &mut HashMap<(&'static str, String, String), Seen>,
    element: &'static str,
    coding: &Value,
    patient: &str,
) {
    let system = coding["system"].as_str().unwrap_or("").to_owned();
    let code = coding["code"].as_str().unwrap_or("").to_owned();
    let entry = seen.entry((element, system, code)).or_insert_with(|| Seen {
        patient: patient.to_owned(),
        ..Default::default()
    });
    entry.count += 1;
    if entry.display.is_none() {
        entry.display = coding["display"].as_str().map(str::to_owned);
    }
}

fn coding_list(concept: &Value) -> Vec<&Value> {
    concept["coding"].as_array().into_iter().flatten().collect()
}

/// The undecided codings of one resource.
fn undecided<'a>(terms: &Terms, resource: &'a Value) -> Vec<(&'static str, &'a Value)> {
    let mut out = Vec::new();
    match resource["resourceType"].as_str() {
        Some("Condition") if condition_counts(resource) => {
            let concept = &resource["code"];
            if !codings(concept).any(|(s, c)| terms.decides_condition(s, c)) {
                out.extend(
                    coding_list(concept)
                        .into_iter()
                        .map(|c| ("Condition.code", c)),
                );
            }
        }
        Some("Observation") if observation_counts(resource) => {
            let concepts = std::iter::once(&resource["code"]).chain(
                resource["component"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| &c["code"]),
            );
            for concept in concepts {
                if !codings(concept).any(|(s, c)| terms.decides_observation(s, c)) {
                    out.extend(
                        coding_list(concept)
                            .into_iter()
                            .map(|c| ("Observation.code", c)),
                    );
                }
            }
        }
        Some("Encounter") => {
            let class = &resource["class"];
            if class.is_object() && class["system"] != ACT_CODE {
                out.push(("Encounter.class", class));
            }
            let service = &resource["serviceType"];
            if !codings(service).any(|(s, c)| {
                terms.contains(&terms::url("oncology-service"), s, c)
                    || terms.decides_condition(s, c)
            }) {
                out.extend(
                    coding_list(service)
                        .into_iter()
                        .map(|c| ("Encounter.serviceType", c)),
                );
            }
        }
        _ => {}
    }
    out
}

pub async fn scoring_coverage(app: &App) -> Result<FhirResponse, FhirError> {
    let terms = app.scoring.terms(&*app.store).await?;
    let mut seen: HashMap<(&'static str, String, String), Seen> = HashMap::new();
    for patient in app.store.compartments().await? {
        for version in app
            .store
            .compartment(&patient, &["Condition", "Observation", "Encounter"])
            .await?
        {
            let Some(resource) = version
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
            else {
                continue;
            };
            for (element, coding) in undecided(&terms, &resource) {
                note(&mut seen, element, coding, &patient);
            }
        }
    }
    let mut rows: Vec<_> = seen.into_iter().collect();
    rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    let parameter: Vec<Value> = rows
        .into_iter()
        .map(|((element, system, code), s)| {
            let mut coding = json!({"system": system, "code": code});
            if let Some(d) = s.display {
                coding["display"] = json!(d);
            }
            json!({"name": "code", "part": [
                {"name": "element", "valueString": element},
                {"name": "coding", "valueCoding": coding},
                {"name": "count", "valueInteger": s.count},
                {"name": "patient", "valueReference": {"reference": format!("Patient/{}", s.patient)}},
            ]})
        })
        .collect();
    Ok(FhirResponse::ok(json!({
        "resourceType": "Parameters",
        "parameter": parameter,
    })))
}
