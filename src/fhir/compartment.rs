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

/// The id of the Patient whose compartment holds the resource `rtype/id`, if any: a Patient its
/// own, another type that of the first Patient one of its compartment parameters refers to, in
/// the order of the definition. `patient_of(param)` gives the Patient id a parameter of the
/// resource refers to.
pub fn patient(
    rtype: &str,
    id: &str,
    patient_of: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    if is_the_patient(rtype) {
        return Some(id.to_owned());
    }
    patient_params(rtype)
        .iter()
        .find_map(|param| patient_of(param))
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
}
