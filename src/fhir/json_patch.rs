//! JSON Patch (RFC 6902) on `serde_json::Value`, with JSON Pointers (RFC 6901).
//!
//! Operations apply in order to a working copy; the first failure aborts the whole patch and
//! the document is left as it was (RFC 6902 section 5).

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonPatchError {
    /// The patch document itself is malformed (not an array of operations, unknown `op`,
    /// missing member, bad pointer syntax).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but cannot be applied to this document (missing target,
    /// index out of range).
    #[error("{0}")]
    Unapplicable(String),
    /// A `test` operation failed.
    #[error("{0}")]
    TestFailed(String),
}

use JsonPatchError::{Malformed, TestFailed, Unapplicable};

/// Applies `patch` (a JSON array of operations) to `doc`. On error `doc` is unchanged.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| Malformed("a JSON Patch document is a JSON array of operations".into()))?;
    let mut work = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        apply_op(&mut work, op).map_err(|e| prefix(e, n))?;
        // `copy` can double the document with every operation: stop before it eats the memory.
        if !within_limits(&work) {
            return Err(Unapplicable(format!(
                "JSON Patch operation {n}: the result would exceed {MAX_NODES} elements or {MAX_DEPTH} levels of nesting"
            )));
        }
    }
    *doc = work;
    Ok(())
}

/// The most JSON values a patched resource may hold.
pub const MAX_NODES: usize = 2_000_000;
/// The deepest nesting a patched resource may have (JSON bodies are parsed to 128 levels).
pub const MAX_DEPTH: usize = 100;

/// Whether a value stays within `MAX_NODES` and `MAX_DEPTH`, walked without recursion.
pub fn within_limits(value: &Value) -> bool {
    let mut stack = vec![(value, 0usize)];
    let mut nodes = 0usize;
    while let Some((v, depth)) = stack.pop() {
        nodes += 1;
        if nodes > MAX_NODES || depth > MAX_DEPTH {
            return false;
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    true
}

fn prefix(err: JsonPatchError, n: usize) -> JsonPatchError {
    let at = |m: String| format!("JSON Patch operation {n}: {m}");
    match err {
        Malformed(m) => Malformed(at(m)),
        Unapplicable(m) => Unapplicable(at(m)),
        TestFailed(m) => TestFailed(at(m)),
    }
}

fn member<'a>(op: &'a Value, name: &str) -> Result<&'a Value, JsonPatchError> {
    op.get(name)
        .ok_or_else(|| Malformed(format!("the operation has no '{name}' member")))
}

fn pointer_member(op: &Value, name: &str) -> Result<Vec<String>, JsonPatchError> {
    let text = member(op, name)?
        .as_str()
        .ok_or_else(|| Malformed(format!("'{name}' must be a string (a JSON Pointer)")))?;
    parse_pointer(text)
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), JsonPatchError> {
    if !op.is_object() {
        return Err(Malformed("each operation must be a JSON object".into()));
    }
    let name = member(op, "op")?
        .as_str()
        .ok_or_else(|| Malformed("'op' must be a string".into()))?;
    let path = pointer_member(op, "path")?;
    match name {
        "add" => add(doc, &path, member(op, "value")?.clone()),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            let value = member(op, "value")?.clone();
            *get_mut(doc, &path)? = value;
            Ok(())
        }
        "move" => {
            let from = pointer_member(op, "from")?;
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(Unapplicable(
                    "'from' is a proper prefix of 'path': a value cannot move into itself".into(),
                ));
            }
            let value = remove(doc, &from)?;
            add(doc, &path, value)
        }
        "copy" => {
            let from = pointer_member(op, "from")?;
            let value = get(doc, &from)?.clone();
            add(doc, &path, value)
        }
        "test" => {
            let expected = member(op, "value")?;
            let actual = get(doc, &path)?;
            if json_equal(actual, expected) {
                Ok(())
            } else {
                Err(TestFailed(format!(
                    "test failed: the value at '{}' is {actual}, not {expected}",
                    render_pointer(&path)
                )))
            }
        }
        other => Err(Malformed(format!(
            "unknown op '{other}': expected add, remove, replace, move, copy or test"
        ))),
    }
}

/// Parses a JSON Pointer into its unescaped reference tokens (`~1` → `/`, then `~0` → `~`).
pub fn parse_pointer(text: &str) -> Result<Vec<String>, JsonPatchError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(Malformed(format!(
            "'{text}' is not a JSON Pointer: it must be empty or start with '/'"
        )));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(Malformed(format!(
                                "'{text}': '~' must be followed by 0 or 1 in a JSON Pointer"
                            )))
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Renders tokens as a JSON Pointer, escaping `~` and `/`.
pub fn render_pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An array index token: digits without leading zeros (RFC 6901 section 4).
fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, JsonPatchError> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index: usize = if valid {
        token
            .parse()
            .map_err(|_| Unapplicable(format!("array index '{token}' is too large")))?
    } else {
        return Err(Unapplicable(format!("'{token}' is not an array index")));
    };
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if index > max || (!allow_end && len == 0) {
        return Err(Unapplicable(format!(
            "array index {index} is out of range (the array has {len} items)"
        )));
    }
    Ok(index)
}

pub fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, JsonPatchError> {
    let mut cur = doc;
    for (depth, token) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(map) => map.get(token),
            Value::Array(items) => Some(&items[array_index(token, items.len(), false)?]),
            _ => None,
        }
        .ok_or_else(|| missing(&path[..=depth]))?;
    }
    Ok(cur)
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, JsonPatchError> {
    let mut cur = doc;
    for (depth, token) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => {
                let i = array_index(token, items.len(), false)?;
                Some(&mut items[i])
            }
            _ => None,
        }
        .ok_or_else(|| missing(&path[..=depth]))?;
    }
    Ok(cur)
}

fn missing(path: &[String]) -> JsonPatchError {
    Unapplicable(format!("path {} does not exist", render_pointer(path)))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), JsonPatchError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = array_index(last, items.len(), true)?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err(Unapplicable(format!(
            "{} is neither an object nor an array",
            render_pointer(parent)
        ))),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, JsonPatchError> {
    let Some((last, parent)) = path.split_last() else {
        return Err(Unapplicable("cannot remove the whole document".into()));
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => map.remove(last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let i = array_index(last, items.len(), false)?;
            Ok(items.remove(i))
        }
        _ => Err(missing(path)),
    }
}

/// Equality as RFC 6902 `test` defines it: numbers by value, objects regardless of order.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_escapes() {
        assert_eq!(parse_pointer("/a~1b/~01").unwrap(), vec!["a/b", "~1"]);
        assert_eq!(
            render_pointer(&parse_pointer("/a~1b/~01").unwrap()),
            "/a~1b/~01"
        );
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/~2").is_err());
    }

    #[test]
    fn failure_leaves_document_unchanged() {
        let mut doc = json!({"a": 1});
        let err = apply(
            &mut doc,
            &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 3}]),
        )
        .unwrap_err();
        assert!(matches!(err, TestFailed(_)));
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn leading_zero_index_is_refused() {
        let mut doc = json!({"a": [1, 2]});
        assert!(apply(&mut doc, &json!([{"op": "remove", "path": "/a/01"}])).is_err());
        apply(
            &mut doc,
            &json!([{"op": "copy", "from": "/a/0", "path": "/a/-"}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": [1, 2, 1]}));
    }
}
