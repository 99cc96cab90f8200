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

/// The corrected expression of an R4 invariant whose expression, as R4 publishes it,
/// contradicts its own `human` text; the correction is the expression of the same invariant in
/// R4B (4.3.0) and R5, where HL7 fixed it (decision 0043). Only the exact R4 text is replaced,
/// so a profile that writes its own expression under the same key keeps it.
pub fn corrected(key: &str, expression: &str) -> Option<&'static str> {
    match (key, expression) {
        // "If there are more than one enableWhen, enableBehavior must be specified": R4 wrote
        // `> 2`, so two conditions without enableBehavior passed.
        ("que-12", "enableWhen.count() > 2 implies enableBehavior.exists()") => {
            Some("enableWhen.count() > 1 implies enableBehavior.exists()")
        }
        // "If the operator is 'exists', the value must be a boolean": R4 wrote `is Boolean`,
        // which names FHIRPath's System.Boolean, not the FHIR `boolean` of `answerBoolean`, so
        // every `exists` condition failed (the R4 example Questionnaire/bb among them).
        ("que-7", "operator = 'exists' implies (answer is Boolean)") => {
            Some("operator = 'exists' implies (answer is boolean)")
        }
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
