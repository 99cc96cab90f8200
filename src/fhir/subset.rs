//! Subsets of a resource for `_summary` and `_elements` (search page): what is left out is
//! marked with the `SUBSETTED` tag so that nobody mistakes the subset for the whole resource.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Per resource type, from the official StructureDefinitions (`conformance/summary-elements.json`,
/// generated): element paths below the type, choice elements without `[x]`.
#[derive(Deserialize)]
struct SummaryElements {
    /// Marked `isSummary`, or mandatory: what `_summary=true` keeps.
    summary: HashSet<String>,
    /// Mandatory (`min` > 0): `_summary=text` keeps the top-level ones.
    mandatory: HashSet<String>,
    /// Backbone elements, whose children are filtered in turn.
    nested: HashSet<String>,
}

static SUMMARY_ELEMENTS: LazyLock<HashMap<String, SummaryElements>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../conformance/summary-elements.json"))
        .expect("conformance/summary-elements.json is valid")
});

/// The element path a JSON key stands for among `known` paths: itself, its primitive extension
/// (`_birthDate`), or a choice form (`valueQuantity` → `value`).
fn element_path<'k>(prefix: &str, key: &str, known: &'k HashSet<String>) -> Option<&'k String> {
    let key = key.strip_prefix('_').unwrap_or(key);
    let exact = format!("{prefix}{key}");
    if let Some(path) = known.get(&exact) {
        return Some(path);
    }
    key.char_indices()
        .filter(|(_, c)| c.is_ascii_uppercase())
        .find_map(|(i, _)| known.get(&format!("{prefix}{}", &key[..i])))
}

/// The elements of an object at `prefix` whose paths are in `keep`, descending into backbone
/// elements.
fn keep_paths(
    object: Map<String, Value>,
    prefix: &str,
    info: &SummaryElements,
) -> Map<String, Value> {
    let mut kept = Map::new();
    for (key, value) in object {
        if prefix.is_empty() && key == "resourceType" {
            kept.insert(key, value);
            continue;
        }
        let Some(path) = element_path(prefix, &key, &info.summary) else {
            continue;
        };
        let value = if info.nested.contains(path) {
            let inner = format!("{path}.");
            match value {
                Value::Object(o) => Value::Object(keep_paths(o, &inner, info)),
                Value::Array(items) => Value::Array(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::Object(o) => Value::Object(keep_paths(o, &inner, info)),
                            other => other,
                        })
                        .collect(),
                ),
                other => other,
            }
        } else {
            value
        };
        kept.insert(key, value);
    }
    kept
}

/// The summary elements of the resource (`_summary=true`): those the base definition marks
/// `isSummary`, and the mandatory ones.
pub fn summary(resource: Value) -> Value {
    let Value::Object(object) = resource else {
        return resource;
    };
    let rtype = object
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(info) = SUMMARY_ELEMENTS.get(&rtype) else {
        return Value::Object(object);
    };
    let mut kept = keep_paths(object, "", info);
    mark_subsetted(&mut kept);
    Value::Object(kept)
}

/// The narrative, `id`, `meta` and the top-level mandatory elements (`_summary=text`).
pub fn text_only(resource: Value) -> Value {
    let Value::Object(object) = resource else {
        return resource;
    };
    let rtype = object
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mandatory = SUMMARY_ELEMENTS.get(&rtype).map(|info| &info.mandatory);
    let mut kept: Map<String, Value> = object
        .into_iter()
        .filter(|(key, _)| {
            matches!(key.as_str(), "resourceType" | "id" | "meta" | "text")
                || mandatory.is_some_and(|m| element_path("", key, m).is_some())
        })
        .collect();
    mark_subsetted(&mut kept);
    Value::Object(kept)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_summary_and_mandatory_elements_and_filters_backbones() {
        let obs = json!({
            "resourceType": "Observation", "id": "o", "status": "final",
            "text": {"status": "generated", "div": "<div/>"},
            "code": {"text": "x"}, "note": [{"text": "a note"}],
            "valueQuantity": {"value": 1},
            "component": [{"code": {"text": "c"}, "valueString": "v", "interpretation": [{"text": "i"}]}]
        });
        let s = summary(obs);
        assert_eq!(s["status"], "final");
        assert_eq!(s["valueQuantity"]["value"], 1);
        assert!(s.get("text").is_none() && s.get("note").is_none());
        assert_eq!(s["component"][0]["valueString"], "v");
        assert!(s["component"][0].get("interpretation").is_none());
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn text_keeps_narrative_and_top_level_mandatory_elements() {
        let obs = json!({"resourceType": "Observation", "id": "o", "status": "final",
            "text": {"status": "generated", "div": "<div/>"}, "code": {"text": "x"}, "issued": "2020-01-01T00:00:00Z"});
        let t = text_only(obs);
        assert!(t.get("text").is_some() && t.get("status").is_some() && t.get("code").is_some());
        assert!(t.get("issued").is_none());
    }
}
