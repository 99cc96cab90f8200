//! The search criteria of conditional interactions (http page, "Conditional create", "update",
//! "delete", "patch"; `If-None-Exist`, `PUT/DELETE/PATCH Type?…`): a search every parameter of
//! which must be understood (an ignored one could widen a conditional delete), that runs
//! without asking the terminology or the hierarchy, and whose answer is none, one or many.

use crate::error::FhirError;
use crate::search::budget::Budget;
use crate::search::definitions::Registry;
use crate::search::hierarchy::uses_hierarchy;
use crate::search::param::token::uses_terminology;
use crate::search::params::{parse, Unknown};
use crate::search::query::{Contained, SearchQuery};

/// Parses the criteria of a conditional interaction: every parameter must be understood, and
/// at least one must be given.
pub fn criteria(
    registry: &Registry,
    budget: &Budget,
    rtype: &str,
    params: &[(String, String)],
    base: &str,
) -> Result<SearchQuery, FhirError> {
    if params.is_empty() {
        return Err(FhirError::invalid(
            "A conditional interaction needs search criteria",
        ));
    }
    let mut parsed = parse(registry, budget, rtype, params, Unknown::Refuse, base)?;
    if parsed.query.contained != Contained::False {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use _contained: a contained resource is no resource to create, update or delete on its own",
        ));
    }
    if uses_terminology(&parsed.query.filters) {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use :in, :not-in, :below or :above on tokens; search first, then use the id",
        ));
    }
    if uses_hierarchy(&parsed.query.filters) {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use :below or :above on references; search first, then use the id",
        ));
    }
    // Two hits are enough to tell "one" from "many".
    parsed.query.count = 2;
    parsed.query.after = None;
    parsed.query.before = None;
    parsed.query.sort.clear();
    Ok(parsed.query)
}

/// The key under which concurrent conditional interactions with the same criteria serialise.
pub fn criteria_key(rtype: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    format!("{rtype}?{}", sorted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn criteria_are_required_and_every_one_must_be_understood() {
        assert!(criteria(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &[],
            "http://h"
        )
        .is_err());
        assert!(criteria(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &params(&[("no-such", "x")]),
            "http://h"
        )
        .is_err());
        let query = criteria(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &params(&[("identifier", "http://bsn|1"), ("_sort", "-_id")]),
            "http://h",
        )
        .unwrap();
        assert_eq!(
            (query.count, query.sort.len(), query.filters.len()),
            (2, 0, 1)
        );
    }

    #[test]
    fn criteria_cannot_ask_the_terminology_or_the_hierarchy_or_contained_resources() {
        let refused = |pairs: &[(&str, &str)]| {
            criteria(
                &Registry::official(),
                &Budget::default(),
                "Observation",
                &params(pairs),
                "http://h",
            )
            .is_err()
        };
        assert!(refused(&[(
            "code:in",
            "http://hl7.org/fhir/ValueSet/observation-codes"
        )]));
        assert!(refused(&[(
            "code:not-in",
            "http://hl7.org/fhir/ValueSet/observation-codes"
        )]));
        assert!(refused(&[("_contained", "true"), ("code", "x")]));
        assert!(criteria(
            &Registry::official(),
            &Budget::default(),
            "Procedure",
            &params(&[("location:below", "Location/l1")]),
            "http://h"
        )
        .is_err());
    }

    #[test]
    fn the_key_does_not_depend_on_the_order_of_the_criteria() {
        let a = criteria_key("Patient", &params(&[("family", "x"), ("given", "y")]));
        let b = criteria_key("Patient", &params(&[("given", "y"), ("family", "x")]));
        assert_eq!(a, b);
    }
}
