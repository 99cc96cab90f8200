//! Computes a resource's index entries on write by evaluating each search parameter's FHIRPath
//! expression and reading the values by parameter type (each type's `index` in
//! [`crate::search::param`]).
//!
//! FHIRPath gives back JSON nodes, sometimes without their FHIR type (only choice elements and
//! resources carry one), so complex values are recognised by shape: a `coding` array is a
//! CodeableConcept, `system`/`code` a Coding, `system`/`value` an Identifier, and so on.

use serde_json::Value;

use crate::fhir::compartment;
use crate::search::contained;
use crate::search::definitions::{ParamType, Registry};
use crate::search::index::{IndexEntries, ReferenceEntry};
use crate::search::param::{self, composite};

/// Computes every index entry of a resource of type `rtype`, for the parameters of `registry`.
pub fn index_entries(registry: &Registry, resource: &Value, rtype: &str) -> IndexEntries {
    let mut entries = IndexEntries::default();
    for param in registry.params(rtype) {
        // `_id` and `_lastUpdated` are columns of the resource row.
        if param.code == "_id" || param.code == "_lastUpdated" {
            continue;
        }
        let Some(expression) = &param.expression else {
            continue;
        };
        let items = match expression.evaluate(resource) {
            Ok(items) => items,
            Err(e) => {
                tracing::debug!(param = param.code, error = %e, "search expression not evaluated");
                continue;
            }
        };
        if param.kind == ParamType::Composite {
            composite::index(&mut entries, param, resource, &items);
            continue;
        }
        for item in &items {
            param::index(&mut entries, &param.code, param.kind, item);
        }
    }
    if rtype == "Subscription" {
        // What puts a Subscription in a Patient's compartment (`fhir::compartment::patient`).
        if let Some(patient) = compartment::subscription_patients(resource)
            .into_iter()
            .next()
        {
            entries.references.push(ReferenceEntry {
                param: compartment::SUBSCRIPTION_PATIENT.to_owned(),
                target_type: Some("Patient".to_owned()),
                target_id: Some(patient),
                url: None,
            });
        }
    }
    entries
}

/// What a write stores: the resource's own entries and those of each resource in its
/// `contained` (search page, "Contained Resources": `_contained=true` finds them, their
/// container holds them; see [`contained::entries`]).
pub fn stored_entries(registry: &Registry, resource: &Value, rtype: &str) -> IndexEntries {
    let mut entries = index_entries(registry, resource, rtype);
    entries.contained = contained::entries(registry, resource);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::TokenEntry;
    use serde_json::json;

    #[test]
    fn identifiers_are_tokens() {
        let patient = json!({"resourceType": "Patient", "id": "p", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456782"}]});
        let entries = index_entries(&Registry::official(), &patient, "Patient");
        assert!(entries.tokens.contains(&TokenEntry {
            param: "identifier".into(),
            system: Some("http://fhir.nl/fhir/NamingSystem/bsn".into()),
            code: Some("123456782".into())
        }));
    }

    #[test]
    fn observations_belong_to_their_subjects_compartment() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        let entries = index_entries(&Registry::official(), &obs, "Observation");
        assert_eq!(
            entries.patient_compartment("Observation", "o").as_deref(),
            Some("p1")
        );
    }
}
