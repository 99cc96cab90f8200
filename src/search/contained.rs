//! Contained resources (search page, "Contained Resources"): `_contained` and `_containedType`,
//! what a query means when it searches contained resources, and how contained resources are
//! indexed: through their container, as resources of their own type under
//! [`contained_param`] names, listed by a [`CONTAINED_ID`] entry.

use serde_json::Value;

use crate::error::FhirError;
use crate::search::definitions::Registry;
use crate::search::extract::index_entries;
use crate::search::include::Include;
use crate::search::index::{contained_param, IndexEntries, TokenEntry, CONTAINED_ID};
use crate::search::query::{
    Contained, ContainedType, IndexTable, Predicate, RangeTarget, SortColumn, SortKey, TokenSystem,
};

/// Reads `_contained`.
pub fn contained(value: &str) -> Result<Contained, FhirError> {
    Ok(match value {
        "false" => Contained::False,
        "true" => Contained::True,
        "both" => Contained::Both,
        other => {
            return Err(FhirError::invalid(format!(
                "_contained must be false, true or both, not '{other}'"
            )))
        }
    })
}

/// Reads `_containedType`.
pub fn contained_type(value: &str) -> Result<ContainedType, FhirError> {
    Ok(match value {
        "container" => ContainedType::Container,
        "contained" => ContainedType::Contained,
        other => {
            return Err(FhirError::invalid(format!(
                "_containedType must be container or contained, not '{other}'"
            )))
        }
    })
}

/// What a search of contained resources (`_contained=true|both`) cannot do, refused rather than
/// guessed at: `_include`/`_revinclude` (of which resource: the container or the contained
/// one?).
pub fn check(includes: &[Include]) -> Result<(), FhirError> {
    if !includes.is_empty() {
        return Err(FhirError::invalid(
            "_include and _revinclude cannot be combined with _contained=true or both",
        ));
    }
    Ok(())
}

impl Predicate {
    /// The predicate as it applies to a contained resource of type `rtype` (`_contained`):
    /// parameters under their contained names, `_id` its local id. The compartment and
    /// `_lastUpdated` stay the container's: a contained resource has no `meta.lastUpdated` and
    /// lives in its container's compartment. A chain starts from the contained resource's
    /// reference; `_has` is left as it is (nothing outside a container references what it
    /// contains: the store matches nothing).
    pub fn in_contained(&self, rtype: &str) -> Predicate {
        let name = |param: &str| contained_param(rtype, param);
        let mut p = self.clone();
        match &mut p {
            Predicate::Id(id) => {
                return Predicate::Token {
                    param: name(CONTAINED_ID),
                    system: TokenSystem::Any,
                    code: Some(id.clone()),
                }
            }
            Predicate::Range {
                target: RangeTarget::Date(param),
                ..
            }
            | Predicate::Token { param, .. }
            | Predicate::String { param, .. }
            | Predicate::Reference { param, .. }
            | Predicate::Uri { param, .. }
            | Predicate::Number { param, .. }
            | Predicate::Quantity { param, .. }
            | Predicate::Missing { param, .. }
            | Predicate::Terminology { param, .. }
            | Predicate::Hierarchy { param, .. }
            | Predicate::TokenIn { param, .. }
            // The chain's own filters are on the resource it references.
            | Predicate::Chain { param, .. } => *param = name(param),
            Predicate::Composite(components) => {
                for c in components.iter_mut() {
                    *c = c.in_contained(rtype);
                }
            }
            Predicate::Not(inner) => **inner = inner.in_contained(rtype),
            Predicate::Compartment(_)
            | Predicate::Type(_)
            | Predicate::Range {
                target: RangeTarget::LastUpdated,
                ..
            }
            | Predicate::Has { .. } => {}
        }
        p
    }
}

impl SortKey {
    /// The sort key as it applies to a contained resource of type `rtype` (see
    /// [`Predicate::in_contained`]).
    pub fn in_contained(&self, rtype: &str) -> SortKey {
        let column = match &self.column {
            SortColumn::Id => SortColumn::Index {
                table: IndexTable::Token,
                param: contained_param(rtype, CONTAINED_ID),
            },
            SortColumn::LastUpdated => SortColumn::LastUpdated,
            SortColumn::Index { table, param } => SortColumn::Index {
                table: *table,
                param: contained_param(rtype, param),
            },
        };
        SortKey {
            column,
            descending: self.descending,
        }
    }
}

/// The entries of each resource in the `contained` of `resource`, in order: its entries as a
/// resource of its own type with itself as the root, renamed with [`contained_param`] and
/// listed by a [`CONTAINED_ID`] entry.
pub(crate) fn entries(registry: &Registry, resource: &Value) -> Vec<IndexEntries> {
    let contained = resource.get("contained").and_then(Value::as_array);
    let mut all = Vec::new();
    for child in contained.into_iter().flatten() {
        // Validation refuses a contained resource without a type; stored ones have one.
        let ctype = child
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut own = index_entries(registry, child, ctype);
        own.tokens.push(TokenEntry {
            param: CONTAINED_ID.to_owned(),
            system: None,
            code: child.get("id").and_then(Value::as_str).map(str::to_owned),
        });
        rename(&mut own, ctype);
        all.push(own);
    }
    all
}

/// Puts every entry of a contained resource of type `ctype` under its contained name.
fn rename(entries: &mut IndexEntries, ctype: &str) {
    let name = |param: &mut String| *param = contained_param(ctype, param);
    entries.tokens.iter_mut().for_each(|e| name(&mut e.param));
    entries.strings.iter_mut().for_each(|e| name(&mut e.param));
    entries.dates.iter_mut().for_each(|e| name(&mut e.param));
    entries
        .references
        .iter_mut()
        .for_each(|e| name(&mut e.param));
    entries.uris.iter_mut().for_each(|e| name(&mut e.param));
    entries.numbers.iter_mut().for_each(|e| name(&mut e.param));
    entries
        .quantities
        .iter_mut()
        .for_each(|e| name(&mut e.param));
    for group in &mut entries.groups {
        rename(group, ctype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::extract::stored_entries;
    use serde_json::json;

    #[test]
    fn contained_resources_are_indexed_as_their_own_type_under_contained_names() {
        let rx = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "contained": [{"resourceType": "Medication", "id": "med",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "aspirin"}]}}],
            "medicationReference": {"reference": "#med"}, "subject": {"reference": "Patient/p1"}});
        let entries = stored_entries(&Registry::official(), &rx, "MedicationRequest");
        assert!(entries.tokens.iter().all(|t| !t.param.contains('#')));
        assert_eq!(entries.contained.len(), 1);
        let med = &entries.contained[0];
        assert!(med.tokens.contains(&TokenEntry {
            param: "Medication#code".into(),
            system: Some("http://snomed.info/sct".into()),
            code: Some("aspirin".into())
        }));
        assert!(med.tokens.contains(&TokenEntry {
            param: "Medication#_id".into(),
            system: None,
            code: Some("med".into())
        }));
        // The container's compartment comes from its own references only.
        assert_eq!(
            entries
                .patient_compartment("MedicationRequest", "rx")
                .as_deref(),
            Some("p1")
        );
    }

    #[test]
    fn in_a_contained_resource_id_is_its_local_id_and_last_updated_the_containers() {
        assert_eq!(
            Predicate::Id("med".into()).in_contained("Medication"),
            Predicate::Token {
                param: "Medication#_id".into(),
                system: TokenSystem::Any,
                code: Some("med".into())
            }
        );
        let updated = Predicate::Range {
            target: RangeTarget::LastUpdated,
            prefix: crate::search::query::Prefix::Ge,
            lo: 0,
            hi: 1,
        };
        assert_eq!(updated.in_contained("Medication"), updated);
    }

    #[test]
    fn the_parameter_values_are_read() {
        assert_eq!(contained("both").unwrap(), Contained::Both);
        assert!(contained("maybe").is_err());
        assert_eq!(
            contained_type("contained").unwrap(),
            ContainedType::Contained
        );
        assert!(contained_type("all").is_err());
    }
}
