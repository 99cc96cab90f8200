//! `id` and `meta` as the server owns them.
//!
//! The server assigns `meta.versionId` and `meta.lastUpdated`. They are not stored in the
//! resource text (the version is only known inside the write transaction); `strip` removes
//! them before storage and `stamp` puts the stored values back when a version is served.

use serde_json::{Map, Value};

use crate::fhir::datetime::format_instant;
use crate::store::Version;

/// Removes server-owned `meta` fields and sets `id`, keeping `resourceType`, `id`, `meta`
/// first as FHIR's JSON examples do.
pub fn strip(resource: &mut Value, id: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(meta)) = object.get_mut("meta") {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        if meta.is_empty() {
            object.shift_remove("meta");
        }
    }
    object.insert("id".into(), Value::String(id.to_owned()));
    reorder(object);
}

/// Records where a resource came from in `meta.source` (the writing client's URI).
pub fn set_source(resource: &mut Value, source: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(meta) = meta {
        meta.insert("source".into(), Value::String(source.to_owned()));
    }
}

/// The resource of a stored version, with `meta.versionId` and `meta.lastUpdated` set.
pub fn stamp(version: &Version) -> Option<Value> {
    let text = version.content.as_deref()?;
    let mut resource: Value = serde_json::from_str(text).ok()?;
    let object = resource.as_object_mut()?;
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let rest = std::mem::take(meta);
        meta.insert(
            "versionId".into(),
            Value::String(version.version.to_string()),
        );
        meta.insert(
            "lastUpdated".into(),
            Value::String(format_instant(version.last_updated)),
        );
        meta.extend(rest);
    }
    reorder(object);
    Some(resource)
}

fn reorder(object: &mut Map<String, Value>) {
    let mut ordered = Map::with_capacity(object.len());
    for key in ["resourceType", "id", "meta"] {
        if let Some(value) = object.shift_remove(key) {
            ordered.insert(key.to_owned(), value);
        }
    }
    ordered.extend(std::mem::take(object));
    *object = ordered;
}
