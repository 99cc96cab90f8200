//! The canonical resources Signaal ships: its profiles and extensions, CodeSystem, ValueSets,
//! ConceptMap, OperationDefinitions and SearchParameters, all under one canonical base
//! ([`BASE`]). The server holds them as ordinary resources (seeded at start by
//! `interaction::canonical`), so they can be read and searched by `url` like any other, but
//! nobody may change them: a write to one, or of another resource claiming one's `url`, is 403.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Value};

use crate::error::FhirError;

/// The canonical base of everything Signaal defines.
pub const BASE: &str = "https://signaal.dev/fhir";

/// The files of `profiles/` and `conformance/` that are canonical resources.
const FILES: [&str; 66] = [
    include_str!("../../profiles/StructureDefinition-flag-priority.json"),
    include_str!("../../profiles/StructureDefinition-flag-risk-assessment.json"),
    include_str!("../../profiles/StructureDefinition-risk-score-item.json"),
    include_str!("../../profiles/StructureDefinition-risk-score.json"),
    include_str!("../../profiles/StructureDefinition-signaal-flag.json"),
    include_str!("../../profiles/StructureDefinition-signaal-risk-assessment.json"),
    include_str!("../../profiles/codesystem-signaal.json"),
    include_str!("../../profiles/conceptmap-snomed-charlson.json"),
    include_str!("../../profiles/valueset-charlson-category.json"),
    include_str!("../../profiles/valueset-flag-category.json"),
    include_str!("../../profiles/valueset-flag-reason.json"),
    include_str!("../../profiles/valueset-flag-status.json"),
    include_str!("../../profiles/valueset-qualitative-risk.json"),
    include_str!("../../profiles/valueset-risk-model.json"),
    include_str!("../../profiles/valueset-scoring-active-cancer.json"),
    include_str!("../../profiles/valueset-scoring-blood-pressure.json"),
    include_str!("../../profiles/valueset-scoring-body-weight.json"),
    include_str!("../../profiles/valueset-scoring-charlson-aids-hiv.json"),
    include_str!("../../profiles/valueset-scoring-charlson-cerebrovascular-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-chronic-pulmonary-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-congestive-heart-failure.json"),
    include_str!("../../profiles/valueset-scoring-charlson-dementia.json"),
    include_str!("../../profiles/valueset-scoring-charlson-diabetes-with-complication.json"),
    include_str!("../../profiles/valueset-scoring-charlson-diabetes-without-complication.json"),
    include_str!("../../profiles/valueset-scoring-charlson-hemiplegia-or-paraplegia.json"),
    include_str!("../../profiles/valueset-scoring-charlson-malignancy.json"),
    include_str!("../../profiles/valueset-scoring-charlson-metastatic-solid-tumour.json"),
    include_str!("../../profiles/valueset-scoring-charlson-mild-liver-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-moderate-or-severe-liver-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-myocardial-infarction.json"),
    include_str!("../../profiles/valueset-scoring-charlson-peptic-ulcer-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-peripheral-vascular-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-renal-disease.json"),
    include_str!("../../profiles/valueset-scoring-charlson-rheumatic-disease.json"),
    include_str!("../../profiles/valueset-scoring-glucose.json"),
    include_str!("../../profiles/valueset-scoring-haemoglobin.json"),
    include_str!("../../profiles/valueset-scoring-heart-failure.json"),
    include_str!("../../profiles/valueset-scoring-malignancy-except-skin.json"),
    include_str!("../../profiles/valueset-scoring-oncology-service.json"),
    include_str!("../../profiles/valueset-scoring-oxygen-saturation.json"),
    include_str!("../../profiles/valueset-scoring-sodium.json"),
    include_str!("../../conformance/operation-import.json"),
    include_str!("../../profiles/StructureDefinition-signaal-action-plan.json"),
    include_str!("../../profiles/StructureDefinition-signaal-domain-goal.json"),
    include_str!("../../profiles/StructureDefinition-worklist-goal-domain-missing.json"),
    include_str!("../../profiles/codesystem-goal-domain.json"),
    include_str!("../../profiles/valueset-goal-domain.json"),
    include_str!("../../profiles/valueset-scoring-advance-care-planning.json"),
    include_str!("../../profiles/valueset-scoring-coach-role.json"),
    include_str!("../../profiles/valueset-scoring-eol-chemotherapy.json"),
    include_str!("../../profiles/valueset-scoring-eol-emergency-encounter.json"),
    include_str!("../../profiles/valueset-scoring-eol-inpatient-encounter.json"),
    include_str!("../../profiles/valueset-scoring-eol-intensive-care.json"),
    include_str!("../../profiles/valueset-scoring-palliative-care.json"),
    include_str!("../../conformance/measure-eol-any.json"),
    include_str!("../../conformance/measure-eol-chemotherapy.json"),
    include_str!("../../conformance/measure-eol-death-in-hospital.json"),
    include_str!("../../conformance/measure-eol-ed-visits.json"),
    include_str!("../../conformance/measure-eol-hospital-admissions.json"),
    include_str!("../../conformance/measure-eol-icu-admission.json"),
    include_str!("../../conformance/measure-eol-no-or-late-palliative-care.json"),
    include_str!("../../conformance/operation-evaluate-measure.json"),
    include_str!("../../conformance/questionnaire-surprise-question.json"),
    include_str!("../../conformance/operation-reindex.json"),
    include_str!("../../conformance/operation-scoring-coverage.json"),
    include_str!("../../conformance/operation-worklist.json"),
];

struct Shipped {
    resources: Vec<Value>,
    /// `(type, id)` → canonical URL.
    by_key: HashMap<(String, String), String>,
    /// `(type, url)` → (id, version).
    by_url: HashMap<(String, String), (String, Option<String>)>,
}

static SHIPPED: LazyLock<Shipped> = LazyLock::new(|| {
    let mut resources: Vec<Value> = FILES
        .iter()
        .map(|text| serde_json::from_str(text).expect("the shipped canonical resources are JSON"))
        .collect();
    let parameters: Vec<Value> = serde_json::from_str(include_str!(
        "../../conformance/signaal-search-parameters.json"
    ))
    .expect("conformance/signaal-search-parameters.json is valid");
    resources.extend(parameters.iter().map(search_parameter));
    // Stored under ids of Signaal's own, so they never take the id of an HL7 resource a client
    // may store (the R4 package has its own ValueSet/flag-status, StructureDefinition/flag-priority…).
    for r in &mut resources {
        let id = r["id"].as_str().unwrap_or_default();
        if !id.starts_with("signaal") {
            r["id"] = Value::String(format!("signaal-{id}"));
        }
    }
    let mut by_key = HashMap::new();
    let mut by_url = HashMap::new();
    for r in &resources {
        let rtype = r["resourceType"].as_str().unwrap_or_default().to_owned();
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        let url = r["url"].as_str().unwrap_or_default().to_owned();
        assert!(
            url.starts_with(&format!("{BASE}/{rtype}/")),
            "{rtype}/{id}: {url} is not under {BASE}"
        );
        let version = r["version"].as_str().map(str::to_owned);
        by_key.insert((rtype.clone(), id.clone()), url.clone());
        by_url.insert((rtype, url), (id, version));
    }
    Shipped {
        resources,
        by_key,
        by_url,
    }
});

/// A SearchParameter resource from an entry of `signaal-search-parameters.json` (the registry's
/// compact form: `base`, `code`, `type`, `expression`, `url`, `description`).
fn search_parameter(entry: &Value) -> Value {
    let url = entry["url"].as_str().unwrap_or_default();
    let id = url.rsplit('/').next().unwrap_or_default();
    let mut resource = json!({
        "resourceType": "SearchParameter",
        "id": id,
        "url": url,
        "name": id,
        "status": "active",
        "publisher": "Signaal",
        "description": entry["description"],
        "code": entry["code"],
        "base": entry["base"],
        "type": entry["type"],
        "expression": entry["expression"],
        "xpathUsage": "normal",
    });
    if let Some(target) = entry.get("target") {
        resource["target"] = target.clone();
    }
    resource
}

/// Every shipped canonical resource.
pub fn all() -> &'static [Value] {
    &SHIPPED.resources
}

/// Whether `rtype/id` is a shipped resource.
pub fn is_shipped(rtype: &str, id: &str) -> bool {
    SHIPPED
        .by_key
        .contains_key(&(rtype.to_owned(), id.to_owned()))
}

/// The conformance resources the validator uses when clients store them (decision 0051): a
/// write of one changes the definitions every server validates with.
pub const DEFINITION_TYPES: [&str; 4] = [
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "Questionnaire",
];

/// Whether a shipped resource of `rtype` has the canonical `url` (in some version).
pub fn ships_url(rtype: &str, url: &str) -> bool {
    SHIPPED
        .by_url
        .contains_key(&(rtype.to_owned(), url.to_owned()))
}

/// Refuses a write to a shipped resource, and a resource of another id that claims a shipped
/// resource's canonical URL and version (`url` and `version` must find the one the server
/// ships). Another version of the same URL is allowed: a site may store a newer version of a
/// ValueSet, which scoring then prefers.
pub fn check_writable(rtype: &str, id: &str, resource: Option<&Value>) -> Result<(), FhirError> {
    if let Some(url) = SHIPPED.by_key.get(&(rtype.to_owned(), id.to_owned())) {
        return Err(FhirError::Forbidden(format!(
            "{rtype}/{id} ({url}) is shipped with Signaal and cannot be changed or deleted"
        )));
    }
    let field = |name: &str| resource.and_then(|r| r.get(name)).and_then(Value::as_str);
    let url = field("url").unwrap_or_default();
    if let Some((owner, version)) = SHIPPED.by_url.get(&(rtype.to_owned(), url.to_owned())) {
        if field("version") == version.as_deref() {
            return Err(FhirError::Forbidden(format!(
                "The canonical URL {url} (version {}) belongs to {rtype}/{owner}, shipped with \
                 Signaal; give this {rtype} a URL of its own, or another version",
                version.as_deref().unwrap_or("none")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_canonical_resource_is_valid_r4() {
        for resource in super::all() {
            let rtype = resource["resourceType"].as_str().unwrap_or_default();
            crate::fhir::validate::validate(resource, rtype)
                .unwrap_or_else(|e| panic!("{rtype}/{}: {e}", resource["id"]));
        }
    }
}
