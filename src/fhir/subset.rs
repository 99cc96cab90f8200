//! Subsets of a resource for `_summary` and `_elements` (search page, "Summary" and
//! "Elements"), on search results and reads: what is left out is marked with the `SUBSETTED`
//! tag so that nobody mistakes the subset for the whole resource.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::FhirError;
use crate::fhir::resource_types;

/// What `_summary` / `_elements` ask to be returned of a resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Subset {
    #[default]
    Full,
    /// `_summary=count`: the total only, no entries.
    Count,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_summary=true`: the elements marked as summary (and mandatory ones).
    Summary,
    /// `_summary=text`: the narrative, `id`, `meta` and top-level mandatory elements.
    Text,
    /// `_elements=a,b,Type.c`: only these top-level elements (and `id`, `meta`).
    Elements(Vec<ElementName>),
}

/// One name of `_elements`. A plain name is an element of the searched type and subsets the
/// matches (R4: "a specific set of elements be returned as part of a resource in the search
/// results"); one prefixed with a type (`Patient.gender`, the R5 search page's form) subsets
/// every entry of that type, included resources too.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementName {
    pub rtype: Option<String>,
    pub name: String,
}

impl Subset {
    /// Reads a `_summary` value (search page, "Summary").
    pub fn summary(value: &str) -> Result<Subset, FhirError> {
        Ok(match value {
            "false" => Subset::Full,
            "true" => Subset::Summary,
            "text" => Subset::Text,
            "data" => Subset::Data,
            "count" => Subset::Count,
            other => {
                return Err(FhirError::invalid(format!(
                    "_summary must be true, text, data, count or false, not '{other}'"
                )))
            }
        })
    }

    /// Reads an `_elements` value `a,b,Type.c`: top-level element names, each plain or prefixed
    /// with a resource type (search page, "Elements").
    pub fn elements(value: &str) -> Result<Subset, FhirError> {
        let is_name =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let mut names = Vec::new();
        for item in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let parts: Vec<&str> = item.split('.').collect();
            let name = match parts.as_slice() {
                [name] if is_name(name) => ElementName {
                    rtype: None,
                    name: (*name).to_owned(),
                },
                [rtype, name] if is_name(name) => {
                    if !resource_types::is_resource_type(rtype) {
                        return Err(FhirError::invalid(format!(
                            "_elements={value}: '{rtype}' is not a resource type"
                        )));
                    }
                    ElementName {
                        rtype: Some((*rtype).to_owned()),
                        name: (*name).to_owned(),
                    }
                }
                [_, _, _, ..] => {
                    return Err(FhirError::invalid(format!(
                        "_elements={value}: '{item}': only top-level elements can be named (name or Type.name)"
                    )))
                }
                _ => {
                    return Err(FhirError::invalid(format!(
                        "_elements={value}: expected element names (name or Type.name) separated by commas"
                    )))
                }
            };
            names.push(name);
        }
        Ok(Subset::Elements(names))
    }

    /// The part of a resource this subset returns: of a match, or of an `included` resource.
    /// `_summary` applies to both alike (the summary of a resource is defined for every type;
    /// `_summary=text` with includes is refused when parsed); `_elements` as its names say.
    pub fn apply(&self, resource: Value, included: bool) -> Value {
        match self {
            Subset::Data => without_text(resource),
            Subset::Summary => summary(resource),
            Subset::Text => text_only(resource),
            Subset::Elements(names) => {
                let rtype = resource["resourceType"].as_str().unwrap_or_default();
                let names: Vec<String> = names
                    .iter()
                    .filter(|n| match &n.rtype {
                        Some(t) => t == rtype,
                        None => !included,
                    })
                    .map(|n| n.name.clone())
                    .collect();
                if names.is_empty() {
                    resource
                } else {
                    only_elements(resource, &names)
                }
            }
            Subset::Full | Subset::Count => resource,
        }
    }
}

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
    fn summary_values_are_the_five_of_the_search_page() {
        assert_eq!(Subset::summary("data").unwrap(), Subset::Data);
        assert_eq!(Subset::summary("count").unwrap(), Subset::Count);
        assert!(Subset::summary("maybe").is_err());
    }

    #[test]
    fn elements_are_top_level_names_optionally_of_a_type() {
        let Subset::Elements(names) = Subset::elements("status, Patient.gender").unwrap() else {
            panic!("not elements");
        };
        assert_eq!(
            names[0],
            ElementName {
                rtype: None,
                name: "status".into()
            }
        );
        assert_eq!(names[1].rtype.as_deref(), Some("Patient"));
        assert!(Subset::elements("code.coding").is_err());
        assert!(Subset::elements("a.b.c").is_err());
    }

    #[test]
    fn typed_element_names_subset_included_resources_of_that_type_only() {
        let subset = Subset::elements("status,Patient.gender").unwrap();
        let obs = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}});
        assert!(subset.apply(obs.clone(), false).get("code").is_none());
        assert!(subset.apply(obs, true).get("code").is_some());
        let patient =
            json!({"resourceType": "Patient", "id": "p", "gender": "other", "active": true});
        assert!(subset.apply(patient, true).get("active").is_none());
    }

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
