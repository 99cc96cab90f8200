//! The Patient compartment (official CompartmentDefinition `patient`, R4
//! http://hl7.org/fhir/R4/compartmentdefinition-patient.html): which search parameters put a
//! resource of each type in a Patient's compartment. One answer for the whole server: the write
//! path (the stored compartment column), compartment search and patient-bound access tokens.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The Patient compartment parameters of each resource type (`conformance/compartment-patient.json`,
/// generated from the official CompartmentDefinition by `scripts/generate_definitions.py`).
static PATIENT_COMPARTMENT: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../conformance/compartment-patient.json"))
        .expect("conformance/compartment-patient.json is valid")
});

/// The parameters that put a resource of type `rtype` in a Patient's compartment (none: the
/// type is not in it, but a Patient is in its own).
pub fn patient_params(rtype: &str) -> &'static [String] {
    PATIENT_COMPARTMENT.get(rtype).map_or(&[], Vec::as_slice)
}

/// Whether a resource of type `rtype` is in a Patient's compartment by being that Patient (the
/// definition's "identity" rule for its own type).
pub fn is_the_patient(rtype: &str) -> bool {
    rtype == "Patient"
}

/// The index entry (a reference, under this name, which no search parameter has) that holds
/// the Patient a Subscription's filters are confined to (see [`subscription_patients`]).
pub const SUBSCRIPTION_PATIENT: &str = "_subscription-patient";

/// The id of the Patient whose compartment holds the resource `rtype/id`, if any: a Patient its
/// own, another type that of the first Patient one of its compartment parameters refers to, in
/// the order of the definition. `patient_of(param)` gives the Patient id a parameter of the
/// resource refers to.
///
/// One addition to the definition: a Subscription (in no compartment in R4) is in the
/// compartment of the Patient its filters name ([`subscription_patients`]), so that a
/// patient-bound access token can create, read and end subscriptions about its own patient.
pub fn patient(
    rtype: &str,
    id: &str,
    patient_of: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    if is_the_patient(rtype) {
        return Some(id.to_owned());
    }
    if rtype == "Subscription" {
        return patient_of(SUBSCRIPTION_PATIENT);
    }
    patient_params(rtype)
        .iter()
        .find_map(|param| patient_of(param))
}

/// The URL of the Subscriptions Backport IG's filter extension on `Subscription.criteria`.
const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";

/// The Patients a Subscription's filter criteria (`backport-filter-criteria`, each
/// `[Type?]param=value&…`) name with their `patient` parameter, in order: `patient=Patient/123`,
/// `patient=123` or an absolute URL ending in `Patient/123`. (Several values, `a,b`, are no one
/// Patient and count for none.)
pub fn subscription_patients(subscription: &serde_json::Value) -> Vec<String> {
    let mut patients = Vec::new();
    let extensions = subscription["_criteria"]["extension"].as_array();
    for extension in extensions.into_iter().flatten() {
        if extension["url"] != FILTER_CRITERIA {
            continue;
        }
        let Some(text) = extension["valueString"].as_str() else {
            continue;
        };
        let query = text.split_once('?').map_or(text, |(_, q)| q);
        for (param, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if param != "patient" || value.contains(',') {
                continue;
            }
            let mut segments = value.rsplit('/');
            let id = segments.next().unwrap_or_default();
            let ok_type = segments.next().is_none_or(|t| t == "Patient");
            if ok_type && !id.is_empty() {
                patients.push(id.to_owned());
            }
        }
    }
    patients
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_is_in_its_own_compartment() {
        assert_eq!(patient("Patient", "p1", |_| None).as_deref(), Some("p1"));
    }

    #[test]
    fn an_observation_is_in_its_subjects_compartment() {
        assert!(patient_params("Observation").iter().any(|p| p == "subject"));
        let of = |param: &str| (param == "subject").then(|| "p2".to_owned());
        assert_eq!(patient("Observation", "o", of).as_deref(), Some("p2"));
    }

    #[test]
    fn types_outside_the_compartment_have_no_parameters() {
        assert!(patient_params("Organization").is_empty());
        let always = |_: &str| Some("p3".to_owned());
        assert_eq!(patient("Organization", "o", always), None);
    }

    #[test]
    fn a_subscription_is_in_the_compartment_of_the_patient_its_filters_name() {
        let s = serde_json::json!({"resourceType": "Subscription", "_criteria": {"extension": [
            {"url": FILTER_CRITERIA, "valueString": "Flag?patient=Patient/p7&priority=ge2"},
            {"url": FILTER_CRITERIA, "valueString": "code=x&patient=p8"},
            {"url": FILTER_CRITERIA, "valueString": "patient=Group/g1"},
            {"url": FILTER_CRITERIA, "valueString": "patient=p1,p2"}]}});
        assert_eq!(subscription_patients(&s), ["p7", "p8"]);
        let of = |param: &str| (param == SUBSCRIPTION_PATIENT).then(|| "p7".to_owned());
        assert_eq!(patient("Subscription", "s", of).as_deref(), Some("p7"));
    }
}
