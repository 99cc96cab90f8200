//! Invariants: each `constraint.expression` of an element, evaluated with the server's FHIRPath
//! evaluator on every item of the element (`%resource` is the resource the element belongs to,
//! `%rootResource` the one containing it when it is a contained resource). A
//! constraint whose expression is false is an error or a warning, by its `severity`; one the
//! evaluator cannot evaluate (a type test it has no model for, an unsupported function) is
//! reported once as not checked, never guessed.

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::Constraint;
use crate::fhirpath::Item;

/// Invariants the engine does not evaluate, with the reason.
pub fn skipped(key: &str) -> Option<&'static str> {
    match key {
        // `hasValue() or (children().count() > id.count())`: every element has a value or
        // children. The JSON format rules (`fhir::json_format`) refuse empty objects, arrays and
        // nulls before validation, so this cannot fail here.
        "ele-1" => Some("checked by the JSON format rules"),
        _ => None,
    }
}

/// Evaluates `constraint` on `item` (an element of `resource` at `at`).
pub fn check<'a>(
    constraint: &Constraint,
    resource: &'a Value,
    root_resource: &'a Value,
    item: &Item<'a>,
    at: &str,
    out: &mut Outcome,
) {
    if skipped(&constraint.key).is_some() {
        return;
    }
    let expression = match &constraint.expression {
        Ok(expression) => expression,
        Err(reason) => {
            out.not_checked(
                format!("invariant {}", constraint.key),
                at,
                format!("The invariant {} was not checked: {reason}", constraint.key),
            );
            return;
        }
    };
    match expression.evaluate_in(resource, root_resource, item) {
        Ok(result) => {
            let failed = match result.as_slice() {
                [Item::Boolean(false)] => true,
                // Empty, true, or a non-boolean (treated as exists()): satisfied.
                _ => false,
            };
            if failed {
                out.push(
                    constraint.severity,
                    "invariant",
                    at,
                    format!("Constraint {} failed: {}", constraint.key, constraint.human),
                );
            }
        }
        Err(e) => out.not_checked(
            format!("invariant {}", constraint.key),
            at,
            format!(
                "The invariant {} ({}) was not checked: the FHIRPath evaluator cannot evaluate it ({e})",
                constraint.key, constraint.human
            ),
        ),
    }
}
