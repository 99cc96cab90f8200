//! CodeSystem rules of R4 that no invariant expresses, from the element definitions:
//! - `content` `not-present`: "None of the concepts defined by the code system are included in
//!   the code system resource", so such a CodeSystem has no `concept`;
//! - `concept.property.code` is "a reference to CodeSystem.property.code": a property the code
//!   system declares;
//! - `property.type` is "the type of the property value": a concept's value for the property
//!   has that type (`valueBoolean` for a `boolean` property).

use serde_json::Value;

use super::array;
use super::outcome::Outcome;

/// Checks the CodeSystem `cs` (at `at`).
pub fn check(cs: &Value, at: &str, out: &mut Outcome) {
    let concepts = array(cs, "concept");
    if cs.get("content").and_then(Value::as_str) == Some("not-present") && !concepts.is_empty() {
        out.error(
            "invalid",
            &format!("{at}.concept[0]"),
            "The content of this code system is 'not-present' (none of its concepts are included in the resource), but it has concepts".into(),
        );
    }
    let declared: Vec<(&str, &str)> = array(cs, "property")
        .iter()
        .filter_map(|p| {
            Some((
                p.get("code")?.as_str()?,
                p.get("type").and_then(Value::as_str).unwrap_or(""),
            ))
        })
        .collect();
    let mut stack: Vec<(&Value, String)> = concepts
        .iter()
        .enumerate()
        .map(|(i, c)| (c, format!("{at}.concept[{i}]")))
        .collect();
    while let Some((concept, path)) = stack.pop() {
        for (p, property) in array(concept, "property").iter().enumerate() {
            let Some(code) = property.get("code").and_then(Value::as_str) else {
                continue;
            };
            let here = format!("{path}.property[{p}]");
            let Some((_, declared_type)) = declared.iter().find(|(c, _)| *c == code) else {
                out.error(
                    "invalid",
                    &format!("{here}.code"),
                    format!("The property '{code}' is not declared in CodeSystem.property"),
                );
                continue;
            };
            let value_type = property
                .as_object()
                .into_iter()
                .flatten()
                .find_map(|(k, _)| k.strip_prefix("value"));
            if let Some(value_type) = value_type {
                if !declared_type.is_empty() && !same_type(value_type, declared_type) {
                    out.error(
                        "invalid",
                        &here,
                        format!(
                            "The property '{code}' is declared of type {declared_type}, but this value is a {}",
                            lower_first(value_type)
                        ),
                    );
                }
            }
        }
        for (i, child) in array(concept, "concept").iter().enumerate() {
            stack.push((child, format!("{path}.concept[{i}]")));
        }
    }
}

/// `Boolean` (of `valueBoolean`) against the declared `boolean`; `Coding` against `Coding`.
fn same_type(suffix: &str, declared: &str) -> bool {
    suffix == declared || lower_first(suffix) == declared
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}
