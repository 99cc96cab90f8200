//! FHIRPath Patch (<http://hl7.org/fhir/R4/fhirpatch.html>): a `Parameters` resource whose
//! `operation` parameters add, insert, delete, replace and move elements found by FHIRPath.
//!
//! The evaluator (`crate::fhirpath`) returns nodes borrowed from the resource; each node's
//! place is found as a JSON Pointer by walking the resource and comparing addresses, and the
//! change is then made through that pointer. Whether an element repeats, and the type of an
//! anonymous (backbone) value built from `part`s, come from the R4 JSON Schema.

use serde_json::{Map, Value};

use crate::fhir::validate::schema;
use crate::fhirpath;

/// Why a FHIRPath Patch could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirPatchError {
    /// The `Parameters` body is not a well-formed FHIRPath Patch (400).
    #[error("{0}")]
    Malformed(String),
    /// Well formed, but it does not fit this resource: a path finds no element or too many,
    /// an index is out of range (422).
    #[error("{0}")]
    Unapplicable(String),
}

use FhirPatchError::{Malformed, Unapplicable};

/// One operation of the patch.
#[derive(Debug, Clone)]
struct Operation {
    kind: String,
    path: String,
    name: Option<String>,
    value: Option<PatchValue>,
    index: Option<i64>,
    source: Option<i64>,
    destination: Option<i64>,
}

/// The `value` part: a ready JSON value (`value[x]`, `resource`) or `part`s to build into an
/// object once the target element's type is known.
#[derive(Debug, Clone)]
enum PatchValue {
    Json(Value),
    Parts(Vec<Value>),
}

/// Applies a FHIRPath Patch `Parameters` resource to `resource`. On error `resource` is
/// unchanged.
pub fn apply(resource: &mut Value, parameters: &Value) -> Result<(), FhirPatchError> {
    let operations = parse(parameters)?;
    let mut work = resource.clone();
    for (n, op) in operations.iter().enumerate() {
        apply_op(&mut work, op).map_err(|e| match e {
            Malformed(m) => Malformed(format!("operation {n} ({} {}): {m}", op.kind, op.path)),
            Unapplicable(m) => {
                Unapplicable(format!("operation {n} ({} {}): {m}", op.kind, op.path))
            }
        })?;
    }
    *resource = work;
    Ok(())
}

fn parse(parameters: &Value) -> Result<Vec<Operation>, FhirPatchError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(Malformed(
            "a FHIRPath Patch is a Parameters resource (resourceType 'Parameters')".into(),
        ));
    }
    let empty = Vec::new();
    let params = match parameters.get("parameter") {
        None => &empty,
        Some(Value::Array(p)) => p,
        Some(_) => return Err(Malformed("Parameters.parameter must be an array".into())),
    };
    params
        .iter()
        .enumerate()
        .map(|(n, p)| parse_operation(p).map_err(|m| Malformed(format!("parameter {n}: {m}"))))
        .collect()
}

fn parse_operation(param: &Value) -> Result<Operation, String> {
    if param.get("name").and_then(Value::as_str) != Some("operation") {
        return Err("every parameter of a FHIRPath Patch must be named 'operation'".into());
    }
    let mut op = Operation {
        kind: String::new(),
        path: String::new(),
        name: None,
        value: None,
        index: None,
        source: None,
        destination: None,
    };
    let parts = param
        .get("part")
        .and_then(Value::as_array)
        .ok_or("an operation needs parts (type, path, …)")?;
    for part in parts {
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .ok_or("every part needs a name")?;
        let text = || {
            value_x(part)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(format!("part '{name}' needs a string value"))
        };
        let int = || {
            value_x(part)
                .and_then(Value::as_i64)
                .ok_or(format!("part '{name}' needs an integer value"))
        };
        match name {
            "type" => op.kind = text()?,
            "path" => op.path = text()?,
            "name" => op.name = Some(text()?),
            "index" => op.index = Some(int()?),
            "source" => op.source = Some(int()?),
            "destination" => op.destination = Some(int()?),
            "value" => {
                op.value = Some(if let Some(v) = value_x(part) {
                    PatchValue::Json(v.clone())
                } else if let Some(r) = part.get("resource") {
                    PatchValue::Json(r.clone())
                } else if let Some(Value::Array(p)) = part.get("part") {
                    PatchValue::Parts(p.clone())
                } else {
                    return Err("part 'value' needs value[x], a resource or parts".into());
                })
            }
            other => return Err(format!("unknown part '{other}'")),
        }
    }
    if op.kind.is_empty() {
        return Err("an operation needs a 'type'".into());
    }
    if op.path.is_empty() {
        return Err("an operation needs a 'path'".into());
    }
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("a '{}' operation needs {what}", op.kind))
        }
    };
    match op.kind.as_str() {
        "add" => {
            need(op.name.is_some(), "a 'name'")?;
            need(op.value.is_some(), "a 'value'")?;
        }
        "insert" => {
            need(op.index.is_some(), "an 'index'")?;
            need(op.value.is_some(), "a 'value'")?;
        }
        "delete" => {}
        "replace" => need(op.value.is_some(), "a 'value'")?,
        "move" => need(
            op.source.is_some() && op.destination.is_some(),
            "a 'source' and a 'destination'",
        )?,
        other => {
            return Err(format!(
                "unknown operation type '{other}': expected add, insert, delete, replace or move"
            ))
        }
    }
    Ok(op)
}

/// The `value[x]` of a part, if it has one.
fn value_x(part: &Value) -> Option<&Value> {
    part.as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value") && k.len() > 5)
        .map(|(_, v)| v)
}

fn apply_op(resource: &mut Value, op: &Operation) -> Result<(), FhirPatchError> {
    let expr = fhirpath::parse(&op.path)
        .map_err(|e| Malformed(format!("the path is not valid FHIRPath: {e}")))?;
    let targets = locate_all(resource, &expr)?;
    match op.kind.as_str() {
        "add" => {
            let name = op.name.as_deref().unwrap_or_default();
            let container = single(&targets, "adding")?;
            let def = element_def(resource, container);
            let prop = def.and_then(|d| d.get("properties")?.get(name));
            let repeats = prop.is_some_and(|p| p.get("type") == Some(&Value::from("array")));
            let value_def = prop.map(item_def);
            let value = build_value(op.value.as_ref().unwrap(), value_def)?;
            let Some(Value::Object(obj)) = pointer_mut(resource, container) else {
                return Err(Unapplicable(format!(
                    "cannot add '{name}' to a primitive at {}",
                    op.path
                )));
            };
            match obj.get_mut(name) {
                Some(Value::Array(items)) => items.push(value),
                Some(_) => {
                    return Err(Unapplicable(format!(
                        "'{name}' already has a value and does not repeat: use replace"
                    )))
                }
                None if repeats => {
                    obj.insert(name.to_owned(), Value::Array(vec![value]));
                }
                None => {
                    obj.insert(name.to_owned(), value);
                }
            }
            Ok(())
        }
        "insert" => {
            let (parent, name) = list_place(resource, op, &targets)?;
            let def = element_def(resource, &parent);
            let value_def = def
                .and_then(|d| d.get("properties")?.get(&name))
                .map(item_def);
            let value = build_value(op.value.as_ref().unwrap(), value_def)?;
            let obj = object_at(resource, &parent)?;
            let items = obj
                .entry(name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = items else {
                return Err(Unapplicable(format!("'{name}' is not a list")));
            };
            let index = checked_index(op.index.unwrap(), items.len() + 1, "index")?;
            items.insert(index, value);
            sibling(obj, &name, |s| s.insert(index.min(s.len()), Value::Null));
            Ok(())
        }
        "delete" => match targets.as_slice() {
            [] => Ok(()),
            [target] => {
                delete(resource, target)?;
                prune(resource, target);
                Ok(())
            }
            many => Err(Unapplicable(format!(
                "the path finds {} elements; delete needs exactly one (or none)",
                many.len()
            ))),
        },
        "replace" => {
            let target = single(&targets, "replacing")?;
            let value_def = element_def(resource, target);
            let value = build_value(op.value.as_ref().unwrap(), value_def)?;
            *pointer_mut(resource, target).unwrap() = value;
            Ok(())
        }
        "move" => {
            let (parent, name) = list_place(resource, op, &targets)?;
            let obj = object_at(resource, &parent)?;
            let Some(Value::Array(items)) = obj.get_mut(&name) else {
                return Err(Unapplicable(format!("'{name}' is not a list")));
            };
            let len = items.len();
            let source = checked_index(op.source.unwrap(), len, "source")?;
            let destination = checked_index(op.destination.unwrap(), len, "destination")?;
            let item = items.remove(source);
            items.insert(destination, item);
            sibling(obj, &name, |s| {
                if source < s.len() && destination < s.len() {
                    let item = s.remove(source);
                    s.insert(destination, item);
                }
            });
            Ok(())
        }
        _ => unreachable!("checked when parsing"),
    }
}

/// A JSON Pointer as reference tokens.
type Pointer = Vec<String>;

/// Evaluates `expr` and finds each resulting node's place in `resource`.
fn locate_all(
    resource: &Value,
    expr: &fhirpath::Expression,
) -> Result<Vec<Pointer>, FhirPatchError> {
    let items = expr
        .evaluate(resource)
        .map_err(|e| Unapplicable(format!("the path cannot be evaluated: {e}")))?;
    items
        .iter()
        .map(|item| {
            let node = item.as_json().ok_or_else(|| {
                Unapplicable("the path yields a computed value, not an element".into())
            })?;
            let mut path = Vec::new();
            if find(resource, node, &mut path) {
                Ok(path)
            } else {
                Err(Unapplicable(
                    "the path yields an element outside the resource".into(),
                ))
            }
        })
        .collect()
}

/// Depth-first search for the value at `target`'s address, leaving its pointer in `path`.
fn find(cur: &Value, target: &Value, path: &mut Pointer) -> bool {
    if std::ptr::eq(cur, target) {
        return true;
    }
    match cur {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                if find(v, target, path) {
                    return true;
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                if find(v, target, path) {
                    return true;
                }
                path.pop();
            }
        }
        _ => {}
    }
    false
}

fn single<'a>(targets: &'a [Pointer], doing: &str) -> Result<&'a Pointer, FhirPatchError> {
    match targets {
        [one] => Ok(one),
        [] => Err(Unapplicable(format!(
            "No content found at the path when {doing}"
        ))),
        many => Err(Unapplicable(format!(
            "the path finds {} elements; {doing} needs exactly one",
            many.len()
        ))),
    }
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    })
}

fn pointer<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(token.parse::<usize>().ok()?),
        _ => None,
    })
}

fn object_at<'a>(
    doc: &'a mut Value,
    path: &[String],
) -> Result<&'a mut Map<String, Value>, FhirPatchError> {
    pointer_mut(doc, path)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Unapplicable("the list's parent is not an element".into()))
}

/// Applies an edit to the `_name` sibling of a repeating primitive, keeping ids and extensions
/// aligned with their values.
fn sibling(obj: &mut Map<String, Value>, name: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    if let Some(Value::Array(s)) = obj.get_mut(&format!("_{name}")) {
        edit(s);
    }
}

/// The list an insert or move works on: (pointer of the element holding it, its name). The
/// path names the list (`Patient.identifier`); when it is empty, its parent is evaluated from
/// the path without its last step.
fn list_place(
    resource: &Value,
    op: &Operation,
    targets: &[Pointer],
) -> Result<(Pointer, String), FhirPatchError> {
    if let Some(first) = targets.first() {
        if let Some((last, parent)) = first.split_last() {
            if last.parse::<usize>().is_ok() && !parent.is_empty() {
                let (name, holder) = parent.split_last().unwrap();
                if targets
                    .iter()
                    .all(|t| t.len() == first.len() && t[..parent.len()] == *parent)
                {
                    return Ok((holder.to_vec(), name.clone()));
                }
                return Err(Unapplicable(
                    "the path finds elements of more than one list".into(),
                ));
            }
        }
        return Err(Unapplicable(format!(
            "the path does not find a list: {} needs a repeating element",
            op.kind
        )));
    }
    // Empty list: split `parent.name` at its last top-level dot.
    let (parent_path, name) = split_last_step(&op.path).ok_or_else(|| {
        Unapplicable("No content found at the path, and it has no parent to add to".into())
    })?;
    let expr = fhirpath::parse(parent_path)
        .map_err(|e| Malformed(format!("the path is not valid FHIRPath: {e}")))?;
    let parents = locate_all(resource, &expr)?;
    let holder = single(&parents, &format!("{}ing into an empty list", op.kind))?;
    if pointer(resource, holder).is_some_and(Value::is_object) {
        Ok((holder.clone(), name.to_owned()))
    } else {
        Err(Unapplicable("the list's parent is not an element".into()))
    }
}

/// `a.b.where(x = 'y.z').c` → (`a.b.where(x = 'y.z')`, `c`), when the last step is a name.
fn split_last_step(path: &str) -> Option<(&str, &str)> {
    let (mut depth, mut quote) = (0i32, false);
    let mut last_dot = None;
    for (i, c) in path.char_indices() {
        match c {
            '\'' => quote = !quote,
            '(' | '[' if !quote => depth += 1,
            ')' | ']' if !quote => depth -= 1,
            '.' if !quote && depth == 0 => last_dot = Some(i),
            _ => {}
        }
    }
    let i = last_dot?;
    let name = &path[i + 1..];
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some((&path[..i], name))
}

fn checked_index(index: i64, len: usize, what: &str) -> Result<usize, FhirPatchError> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| {
            Unapplicable(format!(
                "{what} {index} is out of range (0 to {})",
                len as i64 - 1
            ))
        })
}

fn delete(resource: &mut Value, target: &Pointer) -> Result<(), FhirPatchError> {
    let Some((last, parent)) = target.split_last() else {
        return Err(Unapplicable("cannot delete the resource itself".into()));
    };
    match pointer_mut(resource, parent) {
        Some(Value::Object(obj)) => {
            obj.remove(last);
            obj.remove(&format!("_{last}"));
        }
        Some(Value::Array(items)) => {
            let i: usize = last.parse().unwrap_or(usize::MAX);
            if i >= items.len() {
                return Err(Unapplicable("the element to delete is gone".into()));
            }
            items.remove(i);
            let now_empty = items.is_empty();
            if let Some((name, holder)) = parent.split_last() {
                if let Some(Value::Object(obj)) = pointer_mut(resource, holder) {
                    sibling(obj, name, |s| {
                        if i < s.len() {
                            s.remove(i);
                        }
                    });
                    // FHIR JSON has no empty arrays.
                    if now_empty {
                        obj.remove(name);
                        obj.remove(&format!("_{name}"));
                    }
                }
            }
        }
        _ => return Err(Unapplicable("the element to delete is gone".into())),
    }
    Ok(())
}

/// FHIR JSON has no empty objects or arrays: after a delete, removes ancestors of `target`
/// that it left empty.
fn prune(resource: &mut Value, target: &Pointer) {
    for depth in (1..target.len()).rev() {
        let ancestor = &target[..depth];
        let empty = match pointer(resource, ancestor) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !empty || delete(resource, &ancestor.to_vec()).is_err() {
            return;
        }
    }
}

// ---- The R4 JSON Schema as a type model ---------------------------------------------------

fn definition(name: &str) -> Option<&'static Value> {
    schema().get("definitions")?.get(name)
}

/// Follows a `$ref` to its definition.
fn resolve(def: &'static Value) -> &'static Value {
    match def.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/definitions/")
            .and_then(definition)
            .unwrap_or(def),
        None => def,
    }
}

/// The definition of one item of a property (arrays: of their items).
fn item_def(prop: &'static Value) -> &'static Value {
    resolve(prop.get("items").unwrap_or(prop))
}

/// The schema definition of the element at `path` in `resource`, when known.
fn element_def(resource: &Value, path: &[String]) -> Option<&'static Value> {
    let mut node = resource;
    let mut def = definition(resource.get("resourceType")?.as_str()?)?;
    for token in path {
        node = match node {
            Value::Object(map) => {
                def = item_def(def.get("properties")?.get(token)?);
                map.get(token)?
            }
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
        // A nested resource (`contained`, `Bundle.entry.resource`): its own type.
        if let Some(rtype) = node.get("resourceType").and_then(Value::as_str) {
            if def
                .get("properties")
                .and_then(|p| p.get("resourceType"))
                .is_some()
                && def
                    .get("properties")
                    .map_or(0, |p| p.as_object().map_or(0, Map::len))
                    == 1
            {
                def = definition(rtype)?;
            }
        }
    }
    Some(def)
}

/// Turns the `value` part into JSON. `parts` become an object of the target's type, with
/// repeating elements as arrays.
fn build_value(value: &PatchValue, def: Option<&'static Value>) -> Result<Value, FhirPatchError> {
    match value {
        PatchValue::Json(v) => Ok(v.clone()),
        PatchValue::Parts(parts) => {
            let mut obj = Map::new();
            for part in parts {
                let name = part
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Malformed("every part of a value needs a name".into()))?;
                let prop = def.and_then(|d| d.get("properties")?.get(name));
                let inner = if let Some(v) = value_x(part) {
                    PatchValue::Json(v.clone())
                } else if let Some(r) = part.get("resource") {
                    PatchValue::Json(r.clone())
                } else if let Some(Value::Array(p)) = part.get("part") {
                    PatchValue::Parts(p.clone())
                } else {
                    return Err(Malformed(format!(
                        "value part '{name}' needs value[x], a resource or parts"
                    )));
                };
                let built = build_value(&inner, prop.map(item_def))?;
                let repeats = prop.is_some_and(|p| p.get("type") == Some(&Value::from("array")));
                match obj.get_mut(name) {
                    Some(Value::Array(items)) if repeats => items.push(built),
                    Some(_) => {
                        return Err(Malformed(format!(
                            "value part '{name}' appears twice but does not repeat"
                        )))
                    }
                    None if repeats => {
                        obj.insert(name.to_owned(), Value::Array(vec![built]));
                    }
                    None => {
                        obj.insert(name.to_owned(), built);
                    }
                }
            }
            Ok(Value::Object(obj))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(parts: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
    }

    #[test]
    fn add_to_a_repeating_element_makes_an_array() {
        let mut p = json!({"resourceType": "Patient"});
        apply(
            &mut p,
            &op(json!([{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "contact"},
                {"name": "value", "part": [{"name": "name", "valueHumanName": {"text": "a"}},
                                           {"name": "relationship", "valueCodeableConcept": {"text": "x"}}]}])),
        )
        .unwrap();
        assert_eq!(
            p,
            json!({"resourceType": "Patient", "contact": [{"name": {"text": "a"}, "relationship": [{"text": "x"}]}]})
        );
    }

    #[test]
    fn delete_of_nothing_is_a_no_op_and_of_many_an_error() {
        let mut p = json!({"resourceType": "Patient", "name": [{"family": "a"}, {"family": "b"}]});
        let del = |path: &str| {
            op(
                json!([{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": path}]),
            )
        };
        apply(&mut p, &del("Patient.birthDate")).unwrap();
        assert!(matches!(
            apply(&mut p, &del("Patient.name")),
            Err(Unapplicable(_))
        ));
        apply(&mut p, &del("Patient.name.where(family = 'a')")).unwrap();
        assert_eq!(
            p,
            json!({"resourceType": "Patient", "name": [{"family": "b"}]})
        );
        apply(&mut p, &del("Patient.name[0]")).unwrap();
        assert_eq!(p, json!({"resourceType": "Patient"}));
    }

    #[test]
    fn primitive_siblings_follow_their_values() {
        let mut p = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [null, {"id": "x"}]}]});
        apply(
            &mut p,
            &op(json!([{"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Patient.name.given"},
                {"name": "index", "valueInteger": 0}, {"name": "value", "valueString": "z"}])),
        )
        .unwrap();
        assert_eq!(p["name"][0]["_given"], json!([null, null, {"id": "x"}]));
        assert_eq!(p["name"][0]["given"], json!(["z", "a", "b"]));
    }

    #[test]
    fn insert_into_an_empty_list_uses_the_parent() {
        let mut p = json!({"resourceType": "Patient"});
        apply(
            &mut p,
            &op(json!([{"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Patient.identifier"},
                {"name": "index", "valueInteger": 0}, {"name": "value", "valueIdentifier": {"value": "1"}}])),
        )
        .unwrap();
        assert_eq!(
            p,
            json!({"resourceType": "Patient", "identifier": [{"value": "1"}]})
        );
    }
}
