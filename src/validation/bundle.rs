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
//!   `http://example.org/something5` says nothing about it.

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
    for (i, entry) in entries.iter().enumerate() {
        let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) else {
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
        let (Some(rtype), Some(id)) = (
            resource.get("resourceType").and_then(Value::as_str),
            resource.get("id").and_then(Value::as_str),
        ) else {
            continue;
        };
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
