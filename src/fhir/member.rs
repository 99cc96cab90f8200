//! A member of a JSON object by name, found the cheap way for the object's size.
//!
//! serde_json's objects (built with `preserve_order`) are `IndexMap`s hashed with SipHash: every
//! lookup hashes the name, however small the object. Most FHIR objects have a handful of
//! members (a Coding three, a Quantity four), which a scan compares faster (lengths first). The
//! validation walk, FHIRPath and the index extraction look members up about a thousand times a
//! create (decision 0053).

use serde_json::{Map, Value};

/// Objects up to this many members are scanned rather than hashed.
const SCANNED: usize = 12;

/// The member `name` of `object`.
pub fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if object.len() <= SCANNED {
        object
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    } else {
        object.get(name)
    }
}

/// The member `name` of `value` when it is an object.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object().and_then(|object| member(object, name))
}

/// The `_name` sibling of member `name` (a primitive's id and extensions), looked up without
/// making the key in the common case.
pub fn underscored<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if object.len() <= SCANNED {
        return object
            .iter()
            .find(|(key, _)| key.len() == name.len() + 1 && key.strip_prefix('_') == Some(name))
            .map(|(_, value)| value);
    }
    let mut key = [0u8; 64];
    match key.get_mut(1..=name.len()) {
        Some(rest) => {
            rest.copy_from_slice(name.as_bytes());
            key[0] = b'_';
            // An ASCII '_' before a whole str is a str.
            object.get(std::str::from_utf8(&key[..=name.len()]).ok()?)
        }
        None => object.get(&format!("_{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_and_large_objects_find_the_same_members() {
        let small = json!({"a": 1, "_a": {"id": "x"}, "bb": 2});
        let mut large = serde_json::Map::new();
        for i in 0..40 {
            large.insert(format!("k{i}"), json!(i));
            large.insert(format!("_k{i}"), json!({"id": i}));
        }
        let small = small.as_object().unwrap();
        assert_eq!(member(small, "bb"), Some(&json!(2)));
        assert_eq!(member(small, "b"), None);
        assert_eq!(underscored(small, "a"), Some(&json!({"id": "x"})));
        assert_eq!(underscored(small, "bb"), None);
        assert_eq!(member(&large, "k7"), Some(&json!(7)));
        assert_eq!(underscored(&large, "k39"), Some(&json!({"id": 39})));
        assert_eq!(underscored(&large, &"x".repeat(80)), None);
        assert_eq!(field(&json!([1]), "a"), None);
        assert_eq!(field(&json!({"a": 1}), "a"), Some(&json!(1)));
    }
}
