//! composite (search page, "Composite Search Parameters"): `a$b[$c]`, one value per component,
//! each parsed by its component's type, all matched in the same element. Indexed as one group
//! of entries per element the composite's expression selects.

use serde_json::Value;

use crate::error::FhirError;
use crate::fhirpath::Item;
use crate::search::definitions::{Component, SearchParam};
use crate::search::index::IndexEntries;
use crate::search::param;
use crate::search::query::Predicate;

/// The modifiers of composite parameters.
pub const MODIFIERS: &[&str] = &["missing"];

/// The name of a component's entries: `code$0`, `code$1`, …
fn component_param(code: &str, i: usize) -> String {
    format!("{code}${i}")
}

/// A composite value `a$b[$c]` (`\$` is a `$` inside a part).
pub fn value(
    code: &str,
    components: &[Component],
    value: &str,
    base: &str,
) -> Result<Predicate, FhirError> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                chars.next();
                parts.last_mut().unwrap().push('$');
            }
            '$' => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    if parts.len() != components.len() || parts.iter().any(String::is_empty) {
        return Err(FhirError::invalid(format!(
            "{code}={value}: a composite value has {} parts separated by '$'",
            components.len()
        )));
    }
    let predicates = components
        .iter()
        .zip(&parts)
        .enumerate()
        .map(|(i, (component, part))| {
            param::value(&component_param(code, i), component.kind, part, base)?.ok_or_else(|| {
                FhirError::invalid(format!(
                    "{code}: its component {} cannot be searched",
                    i + 1
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Predicate::Composite(predicates))
}

/// One group per element the composite's expression selects (`items`), holding the values its
/// components read from that element.
pub(crate) fn index(
    entries: &mut IndexEntries,
    param: &SearchParam,
    resource: &Value,
    items: &[Item<'_>],
) {
    'elements: for item in items {
        let mut group = IndexEntries::default();
        for (i, component) in param.components.iter().enumerate() {
            let mut found = false;
            let values = match component.expression.evaluate_on(resource, item) {
                Ok(values) => values,
                Err(e) => {
                    tracing::debug!(param = param.code, error = %e, "composite component not evaluated");
                    Vec::new()
                }
            };
            let code = component_param(&param.code, i);
            for value in &values {
                found |= param::index_component(&mut group, &code, component.kind, value);
            }
            // An element without a value for every component matches no composite search.
            if !found {
                continue 'elements;
            }
        }
        // Only the components: not the `:text` and `:of-type` entries of token components
        // (`index_component` makes none; a string component's own entries are kept).
        group.groups.clear();
        group.strings.retain(|s| !s.param.ends_with(":text"));
        if !group.is_empty() {
            entries.groups.push(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::definitions::Registry;
    use crate::search::param::tests::indexed;
    use crate::search::query::TokenSystem;
    use serde_json::json;

    #[test]
    fn each_part_is_parsed_by_its_components_type() {
        let registry = Registry::official();
        let param = registry.get("Observation", "code-value-quantity").unwrap();
        let Predicate::Composite(parts) = value(
            "code-value-quantity",
            &param.components,
            "http://loinc.org|8867-4$gt100",
            "http://h",
        )
        .unwrap() else {
            panic!("not a composite");
        };
        assert_eq!(
            parts[0],
            Predicate::Token {
                param: "code-value-quantity$0".into(),
                system: TokenSystem::Is("http://loinc.org".into()),
                code: Some("8867-4".into())
            }
        );
        assert!(matches!(parts[1], Predicate::Quantity { .. }));
        assert!(value(
            "code-value-quantity",
            &param.components,
            "http://loinc.org|8867-4",
            "http://h"
        )
        .is_err());
    }

    #[test]
    fn components_are_indexed_together_per_element() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80}}
            ]}),
        );
        let groups: Vec<&IndexEntries> = entries
            .groups
            .iter()
            .filter(|g| {
                g.tokens
                    .iter()
                    .any(|t| t.param == "component-code-value-quantity$0")
            })
            .collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].quantities[0].param,
            "component-code-value-quantity$1"
        );
        assert!(groups.iter().all(|g| g.strings.is_empty()));
    }
}
