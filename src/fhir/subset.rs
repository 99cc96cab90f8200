//! Subsets of a resource for `_summary=data` and `_elements` (search page): what is left out is
//! marked with the `SUBSETTED` tag so that nobody mistakes the subset for the whole resource.

use serde_json::{json, Map, Value};

/// The tag a subsetted resource carries (http://hl7.org/fhir/R4/search.html#summary).
fn subsetted_tag() -> Value {
    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"})
}

fn mark_subsetted(object: &mut Map<String, Value>) {
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Value::Array(tags) = tags {
            tags.push(subsetted_tag());
        }
    }
}

/// The resource without its narrative (`_summary=data`).
pub fn without_text(mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        if object.shift_remove("text").is_some() {
            mark_subsetted(object);
        }
    }
    resource
}

/// Only the named top-level elements, plus `resourceType`, `id` and `meta` (`_elements`). A name
/// covers its choice forms (`value` → `valueQuantity`) and primitive extensions (`_birthDate`).
pub fn only_elements(resource: Value, names: &[String]) -> Value {
    let Value::Object(object) = resource else {
        return resource;
    };
    let keep = |key: &str| {
        let key = key.strip_prefix('_').unwrap_or(key);
        matches!(key, "resourceType" | "id" | "meta")
            || names.iter().any(|n| {
                key == n
                    || key
                        .strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
    };
    let mut kept: Map<String, Value> = object.into_iter().filter(|(k, _)| keep(k)).collect();
    mark_subsetted(&mut kept);
    Value::Object(kept)
}
