//! Extensions by their definitions: an extension whose url names a StructureDefinition the
//! server holds is walked against it (its value type, nested extensions, cardinality,
//! invariants) and must be used where its `context` allows. One the server does not know is
//! said to be not checked.

use serde_json::Value;

use super::element::{Node, Walk};
use super::structure_definition::StructureDefinition;

/// Checks the extension `value` at `at`, held by the element whose path is `holder_path` in the
/// terms of the resource (`Patient.name`) and `defined_at` in the definition walked
/// (`HumanName` for a name's own extension, `ElementDefinition.binding`, `Questionnaire.item`
/// for a nested item) in `holder_sd`. Returns whether the extension's definition was known
/// (and walked).
///
/// Used outside its context, an extension is a warning, not an error: the R4 package's own
/// conformance resources use core extensions so (`structuredefinition-fhir-type` on
/// `ElementDefinition.type`, declared for `ElementDefinition.type.code`;
/// `structuredefinition-normative-version` on ValueSets and CodeSystems, declared for
/// StructureDefinition), so the definitions' contexts are not reliable enough to refuse on.
pub fn check<'a>(
    walk: &mut Walk<'_, 'a>,
    value: &'a Value,
    at: &str,
    holder_path: &str,
    defined_at: &str,
    holder_sd: &StructureDefinition,
) -> bool {
    let Some(url) = value.get("url").and_then(Value::as_str) else {
        return false;
    };
    // extensibility.html: an extension's url "SHALL be an absolute URL"; only the nested
    // extensions of a complex extension are named by a plain name relative to it.
    if holder_sd.type_name != "Extension" && !super::reference::is_absolute(url) {
        walk.out.error(
            "structure",
            &format!("{at}.url"),
            format!("The extension url '{url}' is not an absolute URL"),
        );
        return true;
    }
    let Some(definition) = walk.defs.get(url) else {
        walk.out.not_checked(
            format!("extension {url}"),
            at,
            format!("The extension {url} is not known to this server, so only its structure was checked"),
        );
        return false;
    };
    if definition.type_name != "Extension" {
        walk.out.error(
            "structure",
            &format!("{at}.url"),
            format!(
                "{url} is a {}, not an extension definition",
                definition.type_name
            ),
        );
        return true;
    }
    if !allowed_here(definition, holder_path, holder_sd)
        && !allowed_here(definition, defined_at, holder_sd)
    {
        let contexts: Vec<&str> = definition
            .contexts
            .iter()
            .map(|(_, e)| e.as_str())
            .collect();
        walk.out.warning(
            "structure",
            at,
            format!(
                "The extension {url} is not allowed on {holder_path}: it may be used on {}",
                contexts.join(", ")
            ),
        );
    }
    let node = Node {
        value: Some(value),
        ext: None,
    };
    walk.element(
        definition,
        0,
        node,
        Some("Extension"),
        at,
        holder_path,
        &mut Default::default(),
    );
    true
}

/// Whether one of the extension's contexts allows the element at `holder_path`.
fn allowed_here(
    definition: &StructureDefinition,
    holder_path: &str,
    holder_sd: &StructureDefinition,
) -> bool {
    if definition.contexts.is_empty() {
        return true;
    }
    let root_type = holder_path.split('.').next().unwrap_or(holder_path);
    definition
        .contexts
        .iter()
        .any(|(kind, expression)| match kind.as_str() {
            "element" => {
                let expression = expression.as_str();
                expression == holder_path
                    || matches!(expression, "Element" | "Base")
                    || (!holder_path.contains('.')
                        && (matches!(expression, "Resource" | "DomainResource")
                            || expression == root_type))
                    || (holder_sd.type_name == "Extension" && expression == "Extension")
                    || expression == holder_sd.type_name && holder_sd.kind != "resource"
            }
            "extension" => holder_sd.url == *expression || holder_sd.type_name == "Extension",
            // FHIRPath contexts are not evaluated: accepted.
            _ => true,
        })
}
