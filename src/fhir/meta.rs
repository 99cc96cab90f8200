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

/// What [`stamp`] gives, as compact JSON text, spliced into the stored text without parsing
/// it: the stored form is compact JSON with `resourceType`, `id` and `meta` first (`strip`),
/// so `meta.versionId` and `meta.lastUpdated` go right after the id, or open `meta` when it
/// is there. `None` when the stored text is not in that form (written otherwise, or `meta`
/// somewhere this cannot be sure of): the caller stamps the parsed resource then.
pub fn stamp_text(version: &Version) -> Option<String> {
    let text = version.content.as_deref()?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !plain(&version.rtype) || !plain(&version.id) {
        return None;
    }
    let head = format!(
        "{{\"resourceType\":\"{}\",\"id\":\"{}\"",
        version.rtype, version.id
    );
    let rest = text.strip_prefix(head.as_str())?;
    let stamps = format!(
        "\"versionId\":\"{}\",\"lastUpdated\":\"{}\"",
        version.version,
        format_instant(version.last_updated)
    );
    let mut out = String::with_capacity(text.len() + stamps.len() + 12);
    out.push_str(&head);
    if let Some(meta) = rest.strip_prefix(",\"meta\":{") {
        // The stored meta never holds the two (`strip`); if it did, `stamp` would keep them
        // in place, so leave such text to it.
        if meta.starts_with("\"versionId\"") || meta.starts_with("\"lastUpdated\"") {
            return None;
        }
        out.push_str(",\"meta\":{");
        out.push_str(&stamps);
        if !meta.starts_with('}') {
            out.push(',');
        }
        out.push_str(meta);
    } else {
        // No meta first: there must be none at the top level. A `"meta":` further on may be a
        // contained resource's, or (text not written by `strip`) the top level's out of place.
        if !(rest.starts_with(',') || rest == "}") || rest.contains("\"meta\":") {
            return None;
        }
        out.push_str(",\"meta\":{");
        out.push_str(&stamps);
        out.push('}');
        out.push_str(rest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Method;
    use serde_json::json;

    fn stored(rtype: &str, id: &str, mut resource: Value) -> Version {
        strip(&mut resource, id);
        Version {
            rtype: rtype.into(),
            id: id.into(),
            version: 7,
            last_updated: 1_733_500_000_123,
            method: Method::parse("PUT"),
            content: Some(serde_json::to_string(&resource).unwrap()),
        }
    }

    /// The spliced text is exactly what the parsed resource, stamped, serialises to.
    #[test]
    fn stamp_text_is_stamp_serialised() {
        let cases = [
            json!({"resourceType": "Patient", "active": true}),
            json!({"resourceType": "Patient", "meta": {"source": "urn:x"}, "active": true}),
            json!({"resourceType": "Patient", "meta": {"versionId": "3", "lastUpdated": "2020-01-01T00:00:00Z", "profile": ["http://x"]}, "gender": "other"}),
            json!({"resourceType": "Patient", "meta": {"versionId": "3"}}),
            json!({"resourceType": "Basic"}),
            json!({"resourceType": "Observation", "valueQuantity": {"value": 1.50}, "note": [{"text": "é \"q\" \\ \u{0001}"}]}),
        ];
        for resource in cases {
            let rtype = resource["resourceType"].as_str().unwrap().to_owned();
            let version = stored(&rtype, "a-1.b", resource);
            let expected = serde_json::to_string(&stamp(&version).unwrap()).unwrap();
            assert_eq!(stamp_text(&version).as_deref(), Some(expected.as_str()));
        }
    }

    /// Text this cannot be sure of is left to `stamp`.
    #[test]
    fn stamp_text_declines_what_it_cannot_splice() {
        let contained = stored(
            "Observation",
            "o",
            json!({"resourceType": "Observation", "contained": [{"resourceType": "Patient", "id": "p", "meta": {"source": "x"}}]}),
        );
        assert_eq!(stamp_text(&contained), None);
        let mut spaced = stored("Patient", "p", json!({"resourceType": "Patient"}));
        spaced.content = Some("{ \"resourceType\": \"Patient\", \"id\": \"p\" }".into());
        assert_eq!(stamp_text(&spaced), None);
        let mut late_meta = stored("Patient", "p", json!({"resourceType": "Patient"}));
        late_meta.content =
            Some("{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true,\"meta\":{\"source\":\"x\"}}".into());
        assert_eq!(stamp_text(&late_meta), None);
    }
}
