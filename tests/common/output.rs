//! Every response body the tests see, held to the rules the server holds its input to: the
//! common client ([`super::TestServer`]) calls [`check_reply`] on each reply, so the whole
//! suite checks what the server writes as it runs.
//!
//! FHIR JSON (JSON page): no empty arrays, objects or strings, no `null` except as an item of a
//! primitive array whose other items it lines up with; and each resource valid by the server's
//! own input validator (`signaal::fhir::validate`), except resources marked `SUBSETTED`
//! (`_summary`, `_elements`), which leave out required elements on purpose. Only bodies that
//! are resources (a JSON object with a `resourceType`) are FHIR JSON: the Bulk Data manifest,
//! SMART configuration and token responses are plain JSON with rules of their own.

use serde_json::Value;
use signaal::client::Reply;

/// Panics, naming the rule and where, when a FHIR JSON response breaks the input rules.
pub fn check_reply(reply: &Reply) {
    let xml = reply
        .header("content-type")
        .is_some_and(|t| t.contains("xml"));
    let body = if xml {
        // FHIR XML: the server's own XML reader takes what it writes, and the resource read
        // is then held to the JSON rules below.
        match signaal::fhir::xml::parse(&reply.body) {
            Ok(body) => body,
            Err(e) => panic!(
                "the server answered (status {}) with XML it would refuse as input: {:?}\nbody: {}",
                reply.status,
                e.issues(),
                String::from_utf8_lossy(&reply.body)
            ),
        }
    } else {
        let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
            return;
        };
        body
    };
    if body.get("resourceType").and_then(Value::as_str).is_none() {
        return;
    }
    let mut problems = Vec::new();
    shape(&body, "$", &mut problems);
    if problems.is_empty() {
        valid(&body, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "the server answered (status {}) with FHIR JSON it would refuse as input: {}\nbody: {}",
        reply.status,
        problems.join("; "),
        truncated(&body)
    );
}

/// The JSON rules: no empty arrays, objects or strings, and `null` only inside an array that
/// also holds something else (a primitive array and its `_element` twin).
pub fn shape(value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Null => problems.push(format!("null at {at}")),
        Value::String(s) if s.is_empty() => problems.push(format!("empty string at {at}")),
        Value::Array(items) if items.is_empty() => problems.push(format!("empty array at {at}")),
        Value::Array(items) => {
            if items.iter().all(Value::is_null) {
                problems.push(format!("array of nulls only at {at}"));
            }
            for (i, item) in items.iter().enumerate() {
                if !item.is_null() {
                    shape(item, &format!("{at}[{i}]"), problems);
                }
            }
        }
        Value::Object(map) if map.is_empty() => problems.push(format!("empty object at {at}")),
        Value::Object(map) => {
            for (name, item) in map {
                shape(item, &format!("{at}.{name}"), problems);
            }
        }
        _ => {}
    }
}

/// The server's input validator, for each resource that is not a subset; a Bundle's entries
/// one by one (an entry may be a subset), and the Bundle around them.
fn valid(resource: &Value, problems: &mut Vec<String>) {
    let rtype = resource["resourceType"].as_str().unwrap_or_default();
    if rtype == "Bundle" {
        let mut shell = resource.clone();
        let entries = shell.get_mut("entry").and_then(Value::as_array_mut);
        for entry in entries.into_iter().flatten() {
            if let Some(inner) = entry.as_object_mut().and_then(|e| e.remove("resource")) {
                valid(&inner, problems);
            }
        }
        invalid(&shell, "Bundle", problems);
    } else if !subsetted(resource) {
        invalid(resource, rtype, problems);
    }
}

fn invalid(resource: &Value, rtype: &str, problems: &mut Vec<String>) {
    if let Err(error) = signaal::fhir::validate::validate(resource, rtype) {
        let outcome = error.into_outcome();
        problems.push(format!(
            "{rtype}/{} is invalid: {}",
            resource["id"].as_str().unwrap_or("(no id)"),
            outcome["issue"]
        ));
    }
}

fn subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|tag| tag["code"] == "SUBSETTED")
}

fn truncated(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(2000) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
