//! Bundle rules of R4 bundle.html that no invariant expresses (bdl-7, duplicate fullUrls, is
//! an invariant and runs with the others):
//!
//! - `entry.fullUrl` is "the Absolute URL for the resource" (Bundle.entry.fullUrl): a relative
//!   `Patient/1` is not one;
//! - "fullUrl SHALL NOT disagree with the id in the resource — i.e. if the fullUrl is not a
//!   urn:uuid, the URL shall be version-independent URL consistent with the Resource.id"
//!   (same element's definition): an `http://…/Patient/1` fullUrl whose resource is
//!   `DocumentManifest/example` names another resource. Only a fullUrl in the RESTful form
//!   (`…/[type]/[id]`, a resource type before the last segment) can be compared with the id:
//!   `http://example.org/something5` says nothing about it. The same element's comment: "if
//!   the fullUrl does look like a RESTful server URL (e.g. meets the regex), then the 'id'
//!   portion of the fullUrl SHALL end with the Resource.id" — a resource without an id cannot
//!   (a POST in a transaction or batch aside: it is being created);
//! - "The fullUrl element SHALL have a value except that: fullUrl can be empty on a POST …;
//!   Results from operations might involve resources that are not identified": in a
//!   `document`, `message` or `collection` (neither requests nor results), an entry with a
//!   resource has one.
//!
//! - `entry.search.mode` `outcome` is "An OperationOutcome that provides additional
//!   information about the processing of a search" (the code's definition): the entry's
//!   resource is an OperationOutcome.
//!
//! References between entries are resolved in `bundle_reference`.

use serde_json::Value;

use super::outcome::Outcome;
use super::reference::is_absolute;
use super::Definitions;

/// Checks the entries of `bundle` (at `at`).
pub fn check(defs: &Definitions, bundle: &Value, at: &str, out: &mut Outcome) {
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let identified = matches!(
        bundle.get("type").and_then(Value::as_str),
        Some("document" | "message" | "collection")
    );
    for (i, entry) in entries.iter().enumerate() {
        if entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
            if let Some(t) = entry
                .pointer("/resource/resourceType")
                .and_then(Value::as_str)
            {
                if t != "OperationOutcome" {
                    out.error(
                        "invalid",
                        &format!("{at}.entry[{i}].resource"),
                        format!("The entry's search mode is outcome, so it holds an OperationOutcome, not a {t}"),
                    );
                }
            }
        }
        let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) else {
            if identified && entry.get("resource").is_some() {
                out.error(
                    "required",
                    &format!("{at}.entry[{i}]"),
                    "The entry has a resource but no fullUrl: outside a POST and the results of an operation, fullUrl SHALL have a value (Bundle.entry.fullUrl)".into(),
                );
            }
            continue;
        };
        let here = format!("{at}.entry[{i}].fullUrl");
        if !is_absolute(full_url) {
            out.error(
                "invalid",
                &here,
                format!("The fullUrl '{full_url}' is not an absolute URL"),
            );
            continue;
        }
        if full_url.starts_with("urn:") {
            continue;
        }
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
            continue;
        };
        let id = resource.get("id").and_then(Value::as_str);
        let url = full_url.split(['?', '#']).next().unwrap_or(full_url);
        let url = match url.find("/_history/") {
            Some(i) => &url[..i],
            None => url,
        };
        let mut segments = url.rsplit('/');
        let restful = segments.next().is_some()
            && segments
                .next()
                .and_then(|t| defs.core(t))
                .is_some_and(|sd| sd.kind == "resource");
        let Some(id) = id else {
            let created = entry.pointer("/request/method").and_then(Value::as_str) == Some("POST");
            if restful && !created {
                out.error(
                    "invalid",
                    &here,
                    format!(
                        "The fullUrl '{full_url}' is a RESTful URL, so it SHALL end with the resource's id, but the resource has none"
                    ),
                );
            }
            continue;
        };
        if restful && !url.ends_with(&format!("/{rtype}/{id}")) {
            out.error(
                "invalid",
                &here,
                format!(
                    "The fullUrl '{full_url}' disagrees with the resource's id: it should end with /{rtype}/{id}"
                ),
            );
        }
    }
}
