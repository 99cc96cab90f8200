//! Extensions by their definitions: an extension whose url names a StructureDefinition the
//! server holds is walked against it (its value type, nested extensions, cardinality,
//! invariants) and must be used where its `context` allows. One the server does not know is
//! said to be not checked.

use serde_json::Value;

use super::array;
use super::element::{Node, Walk};
use super::extension_context;
use super::structure_definition::StructureDefinition;

/// Checks the extension `value` at `at`, held by the element whose path is `holder_path` in the
/// terms of the resource (`Patient.name`) and `defined_at` in the definition walked
/// (`HumanName` for a name's own extension, `ElementDefinition.binding`, `Questionnaire.item`
/// for a nested item) in `holder_sd`. Returns whether the extension's definition was known
/// (and walked).
///
/// Used outside its context, an extension is an error (StructureDefinition.context: "the types
/// of resource or data type elements to which the extension can be applied") — except one the
/// core specification defines (`http://hl7.org/fhir/StructureDefinition/…`), a warning: the R4
/// package's own conformance resources use core extensions outside their declared contexts
/// (`structuredefinition-fhir-type` on `ElementDefinition.type`, declared for
/// `ElementDefinition.type.code`; `structuredefinition-normative-version` on ValueSets and
/// CodeSystems, declared for StructureDefinition), so the core's contexts are not reliable
/// enough to refuse on (decision 0048).
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
    // DomainResource/Element: `extension` holds "additional information that is not part of
    // the basic definition", `modifierExtension` information "that modifies the understanding
    // of the element that contains it"; the definition's `isModifier` says which one it is.
    let in_modifier = at
        .rsplit('.')
        .next()
        .is_some_and(|last| last.starts_with("modifierExtension"));
    if definition.is_modifier != in_modifier {
        let (is, belongs) = if definition.is_modifier {
            ("a modifier extension", "modifierExtension")
        } else {
            ("not a modifier extension", "extension")
        };
        walk.out.error(
            "structure",
            at,
            format!("The extension {url} is {is} (its definition's isModifier), so it belongs in {belongs}"),
        );
    }
    if !extension_context::allowed(walk, definition, value, holder_path, defined_at, holder_sd) {
        let contexts: Vec<&str> = definition
            .contexts
            .iter()
            .map(|(_, e)| e.as_str())
            .collect();
        let severity = if url.starts_with(super::CORE_PREFIX) {
            "warning"
        } else {
            "error"
        };
        walk.out.push(
            severity,
            "structure",
            at,
            format!(
                "The extension {url} is not allowed on {holder_path}: it may be used on {}",
                contexts.join(", ")
            ),
        );
    }
    extension_context::check_invariants(walk, definition, value, at);
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

/// The extensions of a primitive value (`_active.extension` in JSON), each by its definition as
/// [`check`] does for those of other elements; the holder is the primitive at `holder_path`,
/// element `defined_at` of `holder_sd` (an extension's `Extension.value[x]` in its definition).
pub fn on_primitive<'a>(
    walk: &mut Walk<'_, 'a>,
    ext: &'a Value,
    at: &str,
    holder_path: &str,
    defined_at: &str,
    holder_sd: &StructureDefinition,
) {
    for (i, value) in array(ext, "extension").iter().enumerate() {
        check(
            walk,
            value,
            &format!("{at}.extension[{i}]"),
            holder_path,
            defined_at,
            holder_sd,
        );
    }
}
