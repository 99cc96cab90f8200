//! Where an extension may be used: its definition's `context` ("the types of resource or data
//! type elements to which the extension can be applied") and `contextInvariant` ("FHIRPath
//! invariants about when the extension can be used … All the rules must be true";
//! StructureDefinition, R4).
//!
//! Context types (extension-context-type): `element` — an element id (`Patient.name`), a data
//! type (`HumanName`, `BackboneElement`, `Element`) or a resource (`Patient`, `DomainResource`);
//! `extension` — another extension, by url; `fhirpath` — "all elements that match the FHIRPath
//! query found in the expression", evaluated on the resource.

use std::sync::LazyLock;

use serde_json::Value;

use super::element::Walk;
use super::structure_definition::StructureDefinition;
use crate::fhirpath::{self, Expression, Item};

const EXTENSION_BASE: &str = "http://hl7.org/fhir/StructureDefinition/Extension";

/// Whether one of the extension's contexts allows it where it is: on the element at
/// `holder_path` in the terms of the resource, `defined_at` in the definition walked
/// (`holder_sd`). `extension` is the extension itself, to find its holder for FHIRPath contexts.
pub fn allowed(
    walk: &Walk<'_, '_>,
    definition: &StructureDefinition,
    extension: &Value,
    holder_path: &str,
    defined_at: &str,
    holder_sd: &StructureDefinition,
) -> bool {
    if definition.contexts.is_empty() {
        return true;
    }
    definition
        .contexts
        .iter()
        .any(|(kind, expression)| match kind.as_str() {
            "element" => {
                element_allows(expression, holder_path, holder_sd)
                    || element_allows(expression, defined_at, holder_sd)
                    || holder_type_is(expression, defined_at, holder_sd)
            }
            // The holder is (a part of) that extension; or an extension whose definition the
            // server does not have (walked against the base Extension): not known, allowed.
            "extension" => {
                holder_sd.url == expression.split('|').next().unwrap_or(expression)
                    || holder_sd.url == EXTENSION_BASE
            }
            "fhirpath" => fhirpath_allows(walk, expression, extension),
            _ => true,
        })
}

/// An `element` context naming the holder's path, a resource the holder is the root of, or the
/// data type the holder's definition is.
fn element_allows(expression: &str, holder_path: &str, holder_sd: &StructureDefinition) -> bool {
    let (root_type, rest) = match holder_path.split_once('.') {
        Some((root, rest)) => (root, Some(rest)),
        None => (holder_path, None),
    };
    expression == holder_path
        || matches!(expression, "Element" | "Base")
        || (rest.is_none()
            && holder_sd.kind == "resource"
            && (matches!(expression, "Resource" | "DomainResource") || expression == root_type))
        // `DomainResource.text`, `Resource.meta`: that element of any resource.
        || expression
            .split_once('.')
            .is_some_and(|(base, path)| {
                matches!(base, "Resource" | "DomainResource") && Some(path) == rest
            })
        || (holder_sd.type_name == "Extension" && expression == "Extension")
        || expression == holder_sd.type_name && holder_sd.kind != "resource"
}

/// An `element` context naming the type of the holder element (`BackboneElement` for
/// `Patient.contact`).
fn holder_type_is(expression: &str, defined_at: &str, holder_sd: &StructureDefinition) -> bool {
    holder_sd.element_by_path(defined_at).is_some_and(|i| {
        holder_sd.elements[i]
            .types
            .iter()
            .any(|t| t.code == expression)
    })
}

/// A `fhirpath` context: the expression, evaluated on the resource, selects the holder. One the
/// evaluator cannot read or evaluate allows it (not guessed against the sender).
fn fhirpath_allows(walk: &Walk<'_, '_>, expression: &str, extension: &Value) -> bool {
    let Ok(parsed) = fhirpath::parse(expression) else {
        return true;
    };
    match parsed.evaluate(walk.resource) {
        Ok(items) => items.iter().any(|item| holds(item, extension)),
        Err(_) => true,
    }
}

/// Checks the extension's `contextInvariant`s with its holder as the focus and `%extension`
/// the extension itself ("The rules are only evaluated when the extension is present").
pub fn check_invariants(
    walk: &mut Walk<'_, '_>,
    definition: &StructureDefinition,
    extension: &Value,
    at: &str,
) {
    if definition.context_invariants.is_empty() {
        return;
    }
    let url = &definition.url;
    let Some(holder) = holder(walk.resource, extension) else {
        return;
    };
    for rule in &definition.context_invariants {
        // `%extension` is not a variable of the evaluator: it is the extension itself, so it is
        // written as the holder's extension with this url.
        let source = rule.replace(
            "%extension",
            &format!("extension.where(url = '{}')", url.replace('\'', "\\'")),
        );
        let result = fhirpath::parse(&source)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                e.evaluate_in(walk.resource, walk.root_resource, &holder)
                    .map_err(|e| e.to_string())
            });
        match result.as_deref() {
            Ok([Item::Boolean(false)]) => walk.out.error(
                "structure",
                at,
                format!(
                    "The extension {url} is not allowed here: its context invariant '{rule}' is false"
                ),
            ),
            Ok(_) => {}
            Err(e) => walk.out.not_checked(
                format!("context invariant {url}"),
                at,
                format!(
                    "The context invariant '{rule}' of the extension {url} was not checked: {e}"
                ),
            ),
        }
    }
}

/// The element of `resource` (itself or a descendant) that holds `extension`.
fn holder<'a>(resource: &'a Value, extension: &Value) -> Option<Item<'a>> {
    static DESCENDANTS: LazyLock<Option<Expression>> =
        LazyLock::new(|| fhirpath::parse("descendants()").ok());
    let root = Item::Node(fhirpath::Node {
        value: resource,
        type_name: resource.get("resourceType").and_then(Value::as_str),
        ext: None,
    });
    if holds(&root, extension) {
        return Some(root);
    }
    DESCENDANTS
        .as_ref()?
        .evaluate(resource)
        .ok()?
        .into_iter()
        .find(|item| holds(item, extension))
}

/// Whether the node `item` (or its primitive's `_name` sibling) has `extension` among its
/// extensions or modifier extensions (the same JSON value, not an equal one).
fn holds(item: &Item<'_>, extension: &Value) -> bool {
    let Item::Node(node) = item else {
        return false;
    };
    [Some(node.value), node.ext].into_iter().flatten().any(|v| {
        ["extension", "modifierExtension"].iter().any(|key| {
            v.get(*key)
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|e| std::ptr::eq(e, extension)))
        })
    })
}
