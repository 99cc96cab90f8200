//! Resolving references in Bundles (R4 bundle.html §2.36.4.1), and the document rule that
//! needs it.
//!
//! The resolution, as the page gives it:
//! - a version-specific reference (`…/_history/vid`) loses its version for matching `fullUrl`,
//!   and then matches the entry's `meta.versionId`;
//! - an absolute reference matches the `fullUrl` of an entry;
//! - a relative `[type]/[id]` is made absolute against the `[root]` of the `fullUrl` of the
//!   entry that holds it, when that `fullUrl` is a RESTful one (references.html's regex:
//!   `http(s)://…/[type]/[id]`), then matched as an absolute one; when the holder's `fullUrl`
//!   is not RESTful (a `urn:uuid:`), "no resolution is possible and the reference has no
//!   defined meaning within this specification";
//! - several matches are ambiguous ("Applications MAY return an error").
//!
//! The rule checked with it: a Composition "must be the first entry in a Bundle where
//! Bundle.type=document, and any other resources referenced from Composition must be included
//! as subsequent entries in the Bundle" (R4 Composition's definition). In a document, every
//! reference of the Composition (a contained `#id` aside) resolves to exactly one entry; one
//! that resolves to none, or to several, is an error. Other bundle types may refer to
//! resources elsewhere: nothing is said there.

use serde_json::Value;

use super::outcome::Outcome;
use super::reference::{is_absolute, type_of};
use super::Definitions;

/// What a reference resolves to inside a Bundle.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The index of the one entry it names.
    Entry(usize),
    /// The URL it names (made absolute), which no entry has.
    Missing(String),
    /// The URL it names, which several entries have (with the version asked, if any).
    Ambiguous(String, usize),
    /// A relative reference from an entry whose fullUrl is not RESTful: no defined meaning.
    Undefined,
}

/// `(root, type, id)` of a RESTful URL: `http(s)://…/` then `[type]/[id]` (a version dropped),
/// `[type]` being a resource type.
fn restful<'u>(defs: &Definitions, url: &'u str) -> Option<(&'u str, &'u str, &'u str)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let url = without_version(url).0;
    let (rest, id) = url.rsplit_once('/')?;
    let (root, rtype) = rest.rsplit_once('/')?;
    if id.is_empty()
        || root
            .split_once("://")
            .is_none_or(|(_, host)| host.is_empty())
    {
        return None;
    }
    defs.core(rtype)
        .filter(|sd| sd.kind == "resource")
        .map(|_| (&url[..root.len() + 1], rtype, id))
}

/// A URL without its `/_history/vid`, and the version.
fn without_version(url: &str) -> (&str, Option<&str>) {
    match url.find("/_history/") {
        Some(i) => (&url[..i], Some(&url[i + "/_history/".len()..])),
        None => (url, None),
    }
}

/// Resolves `reference`, held by the entry whose fullUrl is `holder`, among `entries`.
pub fn resolve(
    defs: &Definitions,
    entries: &[Value],
    holder: Option<&str>,
    reference: &str,
) -> Resolution {
    let (unversioned, version) = without_version(reference);
    let target = if is_absolute(unversioned) {
        unversioned.to_owned()
    } else {
        let relative = type_of(reference).is_some() && !reference.contains('?');
        match holder.and_then(|h| restful(defs, h)) {
            Some((root, _, _)) if relative => format!("{root}{unversioned}"),
            _ => return Resolution::Undefined,
        }
    };
    let matches: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.get("fullUrl")
                .and_then(Value::as_str)
                .is_some_and(|f| without_version(f).0 == target)
        })
        .filter(|(_, e)| match version {
            Some(v) => {
                e.pointer("/resource/meta/versionId")
                    .and_then(Value::as_str)
                    == Some(v)
            }
            None => true,
        })
        .map(|(i, _)| i)
        .collect();
    let shown = match version {
        Some(v) => format!("{target}/_history/{v}"),
        None => target,
    };
    match matches.as_slice() {
        [] => Resolution::Missing(shown),
        [one] => Resolution::Entry(*one),
        many => Resolution::Ambiguous(shown, many.len()),
    }
}

/// Every literal reference in `value` (at `at`), with its location; contained resources are
/// left out (their references are to the container's other contained resources or outside).
pub fn references<'a>(value: &'a Value, at: &str, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "contained" {
                    continue;
                }
                let here = format!("{at}.{key}");
                if key == "reference" {
                    if let Some(r) = v.as_str() {
                        found.push((here, r));
                        continue;
                    }
                }
                references(v, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                references(v, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// The document rule: every reference of the Composition (the first entry of a `document`
/// Bundle) resolves to one entry of the Bundle.
pub fn check_document(defs: &Definitions, bundle: &Value, at: &str, out: &mut Outcome) {
    if bundle.get("type").and_then(Value::as_str) != Some("document") {
        return;
    }
    let Some(entries) = bundle.get("entry").and_then(Value::as_array) else {
        return;
    };
    let Some(first) = entries.first() else { return };
    let Some(composition) = first
        .get("resource")
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Composition"))
    else {
        return; // bdl-11 says it.
    };
    let holder = first.get("fullUrl").and_then(Value::as_str);
    let mut found = Vec::new();
    references(composition, &format!("{at}.entry[0].resource"), &mut found);
    for (here, reference) in found {
        if reference.starts_with('#') {
            continue;
        }
        let why = match resolve(defs, entries, holder, reference) {
            Resolution::Entry(_) => continue,
            Resolution::Missing(url) => format!("no entry of the document has the fullUrl {url}"),
            Resolution::Ambiguous(url, n) => {
                format!("{n} entries of the document have the fullUrl {url}, so it is ambiguous")
            }
            Resolution::Undefined => {
                "it is relative and the Composition's fullUrl is not a RESTful URL, so it cannot be resolved in the Bundle (bundle.html)".to_owned()
            }
        };
        out.error(
            "not-found",
            &here,
            format!(
                "The Composition refers to {reference}, but every resource a Composition refers to must be included in its document: {why}"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries() -> Vec<Value> {
        json!([
            {"fullUrl": "http://a.example/fhir/Composition/c1", "resource": {"resourceType": "Composition", "id": "c1"}},
            {"fullUrl": "http://a.example/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "4"}}},
            {"fullUrl": "urn:uuid:6e6b3a4c-1d5f-4f0a-9a43-2f4c1c9d8e11", "resource": {"resourceType": "Device"}},
            {"fullUrl": "http://a.example/fhir/Flag/f1", "resource": {"resourceType": "Flag", "id": "f1", "meta": {"versionId": "1"}}},
            {"fullUrl": "http://a.example/fhir/Flag/f1", "resource": {"resourceType": "Flag", "id": "f1", "meta": {"versionId": "2"}}}
        ])
        .as_array()
        .unwrap()
        .clone()
    }

    #[test]
    fn a_relative_reference_resolves_against_the_holders_restful_full_url() {
        let defs = Definitions::built_in();
        let e = entries();
        let holder = Some("http://a.example/fhir/Composition/c1");
        assert_eq!(
            resolve(&defs, &e, holder, "Patient/p1"),
            Resolution::Entry(1)
        );
        assert_eq!(
            resolve(&defs, &e, holder, "Patient/p1/_history/4"),
            Resolution::Entry(1)
        );
        assert!(matches!(
            resolve(&defs, &e, holder, "Patient/p1/_history/3"),
            Resolution::Missing(_)
        ));
        assert!(matches!(
            resolve(&defs, &e, holder, "Flag/f1"),
            Resolution::Ambiguous(_, 2)
        ));
        assert_eq!(
            resolve(&defs, &e, holder, "Flag/f1/_history/2"),
            Resolution::Entry(4)
        );
        assert_eq!(
            resolve(&defs, &e, Some("urn:uuid:1"), "Patient/p1"),
            Resolution::Undefined
        );
        assert_eq!(
            resolve(
                &defs,
                &e,
                Some("urn:uuid:1"),
                "urn:uuid:6e6b3a4c-1d5f-4f0a-9a43-2f4c1c9d8e11"
            ),
            Resolution::Entry(2)
        );
    }
}
