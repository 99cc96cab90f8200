//! A snapshot from a differential, as the profiling page describes (profiling.html#snapshot):
//! start from the base definition's snapshot (itself generated first when it has none, so base
//! chains of any depth work), then apply each differential element in order:
//! - an element the snapshot has (same id) takes the differential's properties (constraints
//!   are added to the base's);
//! - a slice (`Observation.category:VSCat`) is a copy of the sliced element and its children,
//!   placed after the sliced element's own children and earlier slices;
//! - an element below one whose children the snapshot does not list yet
//!   (`Observation.code.coding`) first unfolds that element's type into the snapshot.
//!
//! Works on the StructureDefinition JSON, so the result is compiled like any snapshot.

use serde_json::{Map, Value};

/// Where the snapshots of other definitions come from: base definitions by url, data types by
/// type name (`CodeableConcept`).
pub trait Bases {
    fn snapshot_of(&self, url: &str) -> Option<Vec<Value>>;
}

/// Returns `sd` with a snapshot generated from its differential and its base's snapshot.
pub fn generate(sd: &Value, bases: &dyn Bases) -> Result<Value, String> {
    let base_url = sd
        .get("baseDefinition")
        .and_then(Value::as_str)
        .ok_or("it has no baseDefinition to build a snapshot from")?;
    let mut snapshot = bases
        .snapshot_of(base_url)
        .ok_or_else(|| format!("its base {base_url} is not known"))?;
    let differential = sd
        .pointer("/differential/element")
        .and_then(Value::as_array)
        .ok_or("it has neither a snapshot nor a differential")?;
    for d in with_ids(differential)? {
        apply(&mut snapshot, &d, bases)?;
    }
    let mut out = sd.clone();
    out["snapshot"] = serde_json::json!({ "element": snapshot });
    Ok(out)
}

/// The differential with an id on every element. An element without one (differentials
/// written before element ids, profiling.html: "elements are identified by their path" and
/// follow their slice) is inside the nearest element before it whose path contains its path:
/// `Bundle.entry.resource` after the slice `Bundle.entry:Patient` is
/// `Bundle.entry:Patient.resource`.
fn with_ids(differential: &[Value]) -> Result<Vec<Value>, String> {
    let mut done: Vec<Value> = Vec::with_capacity(differential.len());
    for d in differential {
        let mut d = d.clone();
        // An id whose path part is not the element's path (`effective[x]:dar` on
        // `effective[x].extension`) breaks elementdefinition.html's id rules: the path wins.
        let agrees = match (
            d.get("id").and_then(Value::as_str),
            d.get("path").and_then(Value::as_str),
        ) {
            (Some(id), Some(path)) => path_of_id(id) == path,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !agrees {
            let path = d
                .get("path")
                .and_then(Value::as_str)
                .ok_or("a differential element has neither id nor path")?
                .to_owned();
            let parent = done.iter().rev().find_map(|e| {
                let p = e.get("path").and_then(Value::as_str)?;
                let rest = path.strip_prefix(p)?.strip_prefix('.')?;
                Some(format!("{}.{rest}", id(e)))
            });
            let own = parent.unwrap_or_else(|| path.clone());
            d["id"] = Value::String(match d.get("sliceName").and_then(Value::as_str) {
                Some(slice) => format!("{own}:{slice}"),
                None => own,
            });
        }
        done.push(d);
    }
    Ok(done)
}

/// The path an element id names: the id without its slice names (`Observation.category:VSCat.coding`
/// → `Observation.category.coding`).
fn path_of_id(id: &str) -> String {
    id.split('.')
        .map(|segment| segment.split(':').next().unwrap_or(segment))
        .collect::<Vec<_>>()
        .join(".")
}

/// The id of a differential element: its own, or its path with its slice name.
fn id_of(d: &Value) -> Result<String, String> {
    if let Some(id) = d.get("id").and_then(Value::as_str) {
        return Ok(id.to_owned());
    }
    let path = d
        .get("path")
        .and_then(Value::as_str)
        .ok_or("a differential element has neither id nor path")?;
    Ok(match d.get("sliceName").and_then(Value::as_str) {
        Some(slice) => format!("{path}:{slice}"),
        None => path.to_owned(),
    })
}

fn id(e: &Value) -> &str {
    e.get("id")
        .or_else(|| e.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn position(snapshot: &[Value], wanted: &str) -> Option<usize> {
    snapshot.iter().position(|e| id(e) == wanted)
}

/// The end (exclusive) of the subtree of element `at`: its children and slices.
fn subtree_end(snapshot: &[Value], at: usize) -> usize {
    let root = id(&snapshot[at]).to_owned();
    let mut end = at + 1;
    while end < snapshot.len() {
        let other = id(&snapshot[end]);
        let below =
            other.starts_with(&format!("{root}.")) || other.starts_with(&format!("{root}:"));
        if !below {
            break;
        }
        end += 1;
    }
    end
}

fn apply(snapshot: &mut Vec<Value>, d: &Value, bases: &dyn Bases) -> Result<(), String> {
    let wanted = unrenamed(snapshot, &id_of(d)?);
    let at = match position(snapshot, &wanted) {
        Some(at) => at,
        None => make_room(snapshot, &wanted, bases)?,
    };
    merge(&mut snapshot[at], d);
    Ok(())
}

/// The id with type-specific names of choice elements (`Observation.valueQuantity`) written
/// as the choice element (`Observation.value[x]`), whose types are narrowed to that type in the
/// snapshot: a choice element constrained to one type may be named by its type-specific name
/// (profiling.html, choice types; json.html: `value[x]` as `valueQuantity`).
fn unrenamed(snapshot: &mut [Value], wanted: &str) -> String {
    let mut done = String::new();
    for segment in wanted.split('.') {
        let candidate = if done.is_empty() {
            segment.to_owned()
        } else {
            format!("{done}.{segment}")
        };
        let (name, slice) = match segment.split_once(':') {
            Some((n, s)) => (n, Some(s)),
            None => (segment, None),
        };
        let plain = if done.is_empty() {
            name.to_owned()
        } else {
            format!("{done}.{name}")
        };
        if done.is_empty() || position(snapshot, &plain).is_some() || name.ends_with("[x]") {
            done = candidate;
            continue;
        }
        let renamed = snapshot.iter().position(|e| {
            let Some(stem) = id(e)
                .strip_prefix(&format!("{done}."))
                .and_then(|rest| rest.strip_suffix("[x]"))
                .filter(|stem| !stem.contains('.') && !stem.contains(':'))
            else {
                return false;
            };
            name.strip_prefix(stem)
                .is_some_and(|suffix| choice_type(e, suffix).is_some())
        });
        let Some(at) = renamed else {
            done = candidate;
            continue;
        };
        let choice = id(&snapshot[at]).to_owned();
        let stem = choice
            .rsplit('.')
            .next()
            .and_then(|last| last.strip_suffix("[x]"))
            .unwrap_or("")
            .to_owned();
        if let Some(t) = choice_type(&snapshot[at], &name[stem.len()..]) {
            snapshot[at]["type"] = Value::Array(vec![t]);
        }
        done = match slice {
            Some(slice) => format!("{choice}:{slice}"),
            None => choice,
        };
    }
    done
}

/// The type of the choice element `e` whose name suffix is `suffix` (`Quantity`, `DateTime`).
fn choice_type(e: &Value, suffix: &str) -> Option<Value> {
    e.get("type")?
        .as_array()?
        .iter()
        .find(|t| {
            t.get("code").and_then(Value::as_str).is_some_and(|code| {
                let mut chars = code.chars();
                chars
                    .next()
                    .is_some_and(|c| c.to_ascii_uppercase().to_string() + chars.as_str() == suffix)
            })
        })
        .cloned()
}

/// Adds the element `wanted` (a slice, or a child of an element not unfolded yet) to the
/// snapshot and returns its position.
fn make_room(snapshot: &mut Vec<Value>, wanted: &str, bases: &dyn Bases) -> Result<usize, String> {
    let (parent, last) = match wanted.rfind('.') {
        Some(dot) => (&wanted[..dot], &wanted[dot + 1..]),
        None => return Err(format!("the element {wanted} is not in the base")),
    };
    if let Some((name, slice)) = last.split_once(':') {
        // A slice: a copy of the sliced element's subtree.
        let sliced = format!("{parent}.{name}");
        let at = match position(snapshot, &sliced) {
            Some(at) => at,
            None => make_room(snapshot, &sliced, bases)?,
        };
        let end = subtree_end(snapshot, at);
        let mut copy: Vec<Value> = snapshot[at..end]
            .iter()
            .filter(|e| {
                // The sliced element and its children, not its other slices.
                let other = id(e);
                other == sliced || other.starts_with(&format!("{sliced}."))
            })
            .cloned()
            .collect();
        for e in &mut copy {
            let new_id = format!("{wanted}{}", &id(e)[sliced.len()..]);
            e["id"] = Value::String(new_id);
            if let Some(object) = e.as_object_mut() {
                object.remove("slicing");
            }
        }
        copy[0]["sliceName"] = Value::String(slice.to_owned());
        snapshot.splice(end..end, copy);
        return Ok(end);
    }
    // A child of an element whose type is not unfolded yet.
    let p = match position(snapshot, parent) {
        Some(p) => p,
        None => make_room(snapshot, parent, bases)?,
    };
    let has_children = snapshot
        .get(p + 1)
        .is_some_and(|e| id(e).starts_with(&format!("{parent}.")));
    if has_children {
        return Err(format!("the element {wanted} is not in the base"));
    }
    // A content reference (`Parameters.parameter.part` → `#Parameters.parameter`): the
    // children of the element it names, under this one.
    if let Some(target) = snapshot[p]
        .get("contentReference")
        .and_then(Value::as_str)
        .map(|r| r.rsplit_once('#').map_or(r, |(_, t)| t).to_owned())
    {
        let parent_path = snapshot[p]
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(parent)
            .to_owned();
        // The children as the type defines them (the core definition of the resource), not as
        // this profile has constrained them at the first level.
        let root_type = target.split('.').next().unwrap_or(&target);
        let source = bases
            .snapshot_of(&format!(
                "http://hl7.org/fhir/StructureDefinition/{root_type}"
            ))
            .unwrap_or_else(|| snapshot.to_vec());
        let unfolded: Vec<Value> = source
            .iter()
            .filter_map(|e| {
                let rest = id(e).strip_prefix(&target)?.strip_prefix('.')?;
                // The element's own children, not those of its slices.
                if path_of_id(&target) != target {
                    return None;
                }
                let mut e = e.clone();
                let own_path = e
                    .get("path")
                    .and_then(Value::as_str)
                    .and_then(|p| p.strip_prefix(&target))
                    .unwrap_or("")
                    .to_owned();
                e["id"] = Value::String(format!("{parent}.{rest}"));
                e["path"] = Value::String(format!("{parent_path}{own_path}"));
                if let Some(object) = e.as_object_mut() {
                    object.remove("sliceName");
                }
                Some(e)
            })
            .collect();
        if unfolded.is_empty() {
            return Err(format!(
                "the element {target} that {parent} refers to has no children"
            ));
        }
        // Its children are now its own: it is walked by them, as a BackboneElement.
        if let Some(object) = snapshot[p].as_object_mut() {
            object.remove("contentReference");
            object.insert(
                "type".into(),
                serde_json::json!([{ "code": "BackboneElement" }]),
            );
        }
        snapshot.splice(p + 1..p + 1, unfolded);
        return position(snapshot, wanted)
            .ok_or_else(|| format!("the element {wanted} is not in {target}"));
    }
    let type_code = snapshot[p]
        .pointer("/type/0/code")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the element {parent} has no type to unfold for {wanted}"))?
        .to_owned();
    let type_url = snapshot[p]
        .pointer("/type/0/profile/0")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http://hl7.org/fhir/StructureDefinition/{type_code}"));
    let type_elements = bases
        .snapshot_of(&type_url)
        .ok_or_else(|| format!("the type {type_url} of {parent} is not known"))?;
    let parent_path = snapshot[p]
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or(parent)
        .to_owned();
    let root = type_elements
        .first()
        .map(|e| id(e).to_owned())
        .unwrap_or_default();
    let unfolded: Vec<Value> = type_elements
        .iter()
        .skip(1)
        .map(|e| {
            let mut e = e.clone();
            let own_id = id(&e)[root.len()..].to_owned();
            let own_path = e
                .get("path")
                .and_then(Value::as_str)
                .map(|p| p[root.len().min(p.len())..].to_owned())
                .unwrap_or_default();
            e["id"] = Value::String(format!("{parent}{own_id}"));
            e["path"] = Value::String(format!("{parent_path}{own_path}"));
            e
        })
        .collect();
    snapshot.splice(p + 1..p + 1, unfolded);
    position(snapshot, wanted).ok_or_else(|| format!("the element {wanted} is not in its type"))
}

/// The differential's properties over the snapshot element's; constraints are added.
fn merge(target: &mut Value, d: &Value) {
    let (Some(target), Some(d)) = (target.as_object_mut(), d.as_object()) else {
        return;
    };
    for (key, value) in d {
        match key.as_str() {
            "id" | "path" => {}
            "constraint" => {
                let list = target
                    .entry("constraint")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(list), Some(added)) = (list.as_array_mut(), value.as_array()) {
                    for c in added {
                        let key = c.get("key");
                        list.retain(|have| have.get("key") != key);
                        list.push(c.clone());
                    }
                }
            }
            _ => {
                if key.starts_with("fixed") || key.starts_with("pattern") {
                    remove_prefixed(target, "fixed");
                    remove_prefixed(target, "pattern");
                }
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn remove_prefixed(target: &mut Map<String, Value>, prefix: &str) {
    target.retain(|k, _| {
        !(k.starts_with(prefix) && k[prefix.len()..].starts_with(|c: char| c.is_ascii_uppercase()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Map(HashMap<String, Vec<Value>>);
    impl Bases for Map {
        fn snapshot_of(&self, url: &str) -> Option<Vec<Value>> {
            self.0.get(url).cloned()
        }
    }

    fn bases() -> Map {
        let mut m = HashMap::new();
        m.insert(
            "http://hl7.org/fhir/StructureDefinition/Thing".to_owned(),
            vec![
                json!({"id": "Thing", "path": "Thing", "min": 0, "max": "*"}),
                json!({"id": "Thing.code", "path": "Thing.code", "min": 0, "max": "1",
                       "type": [{"code": "CodeableConcept"}]}),
                json!({"id": "Thing.tag", "path": "Thing.tag", "min": 0, "max": "*",
                       "type": [{"code": "Coding"}]}),
            ],
        );
        m.insert(
            "http://hl7.org/fhir/StructureDefinition/CodeableConcept".to_owned(),
            vec![
                json!({"id": "CodeableConcept", "path": "CodeableConcept"}),
                json!({"id": "CodeableConcept.coding", "path": "CodeableConcept.coding",
                       "min": 0, "max": "*", "type": [{"code": "Coding"}]}),
                json!({"id": "CodeableConcept.text", "path": "CodeableConcept.text",
                       "min": 0, "max": "1", "type": [{"code": "string"}]}),
            ],
        );
        Map(m)
    }

    fn ids(sd: &Value) -> Vec<String> {
        sd["snapshot"]["element"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| id(e).to_owned())
            .collect()
    }

    #[test]
    fn a_differential_narrows_the_base_and_unfolds_types() {
        let profile = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Thing",
        "differential": {"element": [
            {"id": "Thing.code", "path": "Thing.code", "min": 1},
            {"id": "Thing.code.text", "path": "Thing.code.text", "min": 1},
        ]}});
        let out = generate(&profile, &bases()).unwrap();
        assert_eq!(
            ids(&out),
            [
                "Thing",
                "Thing.code",
                "Thing.code.coding",
                "Thing.code.text",
                "Thing.tag"
            ]
        );
        assert_eq!(out["snapshot"]["element"][1]["min"], 1);
        assert_eq!(out["snapshot"]["element"][1]["max"], "1");
        assert_eq!(out["snapshot"]["element"][3]["min"], 1);
        assert_eq!(out["snapshot"]["element"][3]["path"], "Thing.code.text");
    }

    #[test]
    fn elements_without_ids_belong_to_the_slice_before_them() {
        let profile = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Thing",
        "differential": {"element": [
            {"path": "Thing.code.coding",
             "slicing": {"discriminator": [{"type": "value", "path": "code"}], "rules": "open"}},
            {"path": "Thing.code.coding", "sliceName": "a"},
            {"path": "Thing.code.coding.code", "fixedCode": "x"},
            {"path": "Thing.code.coding", "sliceName": "b"},
            {"path": "Thing.code.coding.code", "fixedCode": "y"},
        ]}});
        let ids: Vec<String> = with_ids(profile["differential"]["element"].as_array().unwrap())
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            ids,
            [
                "Thing.code.coding",
                "Thing.code.coding:a",
                "Thing.code.coding:a.code",
                "Thing.code.coding:b",
                "Thing.code.coding:b.code"
            ]
        );
    }

    #[test]
    fn slices_follow_the_sliced_element_and_keep_its_children() {
        let profile = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Thing",
        "differential": {"element": [
            {"id": "Thing.code.coding", "path": "Thing.code.coding",
             "slicing": {"discriminator": [{"type": "value", "path": "code"}], "rules": "open"}},
            {"id": "Thing.code.coding:a", "path": "Thing.code.coding", "sliceName": "a", "min": 1},
            {"id": "Thing.code.coding:b", "path": "Thing.code.coding", "sliceName": "b"},
        ]}});
        let out = generate(&profile, &bases()).unwrap();
        assert_eq!(
            ids(&out),
            [
                "Thing",
                "Thing.code",
                "Thing.code.coding",
                "Thing.code.coding:a",
                "Thing.code.coding:b",
                "Thing.code.text",
                "Thing.tag"
            ]
        );
        assert_eq!(out["snapshot"]["element"][3]["sliceName"], "a");
        assert!(out["snapshot"]["element"][3].get("slicing").is_none());
    }

    #[test]
    fn a_chain_of_bases_is_followed() {
        let mut b = bases();
        let first = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Thing",
            "differential": {"element": [{"id": "Thing.code", "path": "Thing.code", "min": 1}]}});
        let first = generate(&first, &b).unwrap();
        b.0.insert(
            "http://x.org/first".into(),
            first["snapshot"]["element"].as_array().unwrap().clone(),
        );
        let second = json!({"baseDefinition": "http://x.org/first",
            "differential": {"element": [{"id": "Thing.tag", "path": "Thing.tag", "max": "2"}]}});
        let second = generate(&second, &b).unwrap();
        assert_eq!(second["snapshot"]["element"][1]["min"], 1);
        assert_eq!(second["snapshot"]["element"][2]["max"], "2");
    }

    #[test]
    fn a_content_reference_unfolds_the_children_of_the_type() {
        let mut m = bases().0;
        m.insert(
            "http://hl7.org/fhir/StructureDefinition/Nest".to_owned(),
            vec![
                json!({"id": "Nest", "path": "Nest"}),
                json!({"id": "Nest.twig", "path": "Nest.twig", "min": 0, "max": "*",
                       "type": [{"code": "BackboneElement"}]}),
                json!({"id": "Nest.twig.name", "path": "Nest.twig.name", "min": 0, "max": "1",
                       "type": [{"code": "string"}]}),
                json!({"id": "Nest.twig.twig", "path": "Nest.twig.twig", "min": 0, "max": "*",
                       "contentReference": "#Nest.twig"}),
            ],
        );
        let profile = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Nest",
        "differential": {"element": [
            {"id": "Nest.twig.name", "path": "Nest.twig.name", "min": 1},
            {"id": "Nest.twig.twig.name", "path": "Nest.twig.twig.name", "fixedString": "leaf"},
        ]}});
        let out = generate(&profile, &Map(m)).unwrap();
        assert_eq!(
            ids(&out),
            [
                "Nest",
                "Nest.twig",
                "Nest.twig.name",
                "Nest.twig.twig",
                "Nest.twig.twig.name",
                "Nest.twig.twig.twig"
            ]
        );
        // The nested twig's name is the type's (0..1), not the profile's first-level 1..1.
        assert_eq!(out["snapshot"]["element"][4]["min"], 0);
        assert_eq!(out["snapshot"]["element"][4]["fixedString"], "leaf");
        assert_eq!(
            out["snapshot"]["element"][3]["type"][0]["code"],
            "BackboneElement"
        );
    }

    #[test]
    fn a_type_specific_name_constrains_the_choice_element() {
        let mut m = bases().0;
        m.insert(
            "http://hl7.org/fhir/StructureDefinition/Reading".to_owned(),
            vec![
                json!({"id": "Reading", "path": "Reading"}),
                json!({"id": "Reading.value[x]", "path": "Reading.value[x]", "min": 0, "max": "1",
                       "type": [{"code": "CodeableConcept"}, {"code": "string"}]}),
            ],
        );
        let profile = json!({"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Reading",
        "differential": {"element": [
            {"id": "Reading.valueCodeableConcept", "path": "Reading.valueCodeableConcept", "min": 1},
            {"id": "Reading.valueCodeableConcept.text", "path": "Reading.valueCodeableConcept.text", "min": 1},
        ]}});
        let out = generate(&profile, &Map(m)).unwrap();
        assert_eq!(
            ids(&out),
            [
                "Reading",
                "Reading.value[x]",
                "Reading.value[x].coding",
                "Reading.value[x].text"
            ]
        );
        assert_eq!(out["snapshot"]["element"][1]["min"], 1);
        assert_eq!(
            out["snapshot"]["element"][1]["type"],
            json!([{"code": "CodeableConcept"}])
        );
        assert_eq!(out["snapshot"]["element"][3]["min"], 1);
    }
}
