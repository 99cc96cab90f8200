//! reference (search page, "reference"): `[Type/]id`, an absolute URL (of this server: split
//! into type and id), `:Type` with an id, `:identifier` (the reference's `identifier`, matched
//! like a token). `:below` and `:above` follow a hierarchy: see [`crate::search::hierarchy`].
//! Chains through a reference are in [`crate::search::chain`].

use serde_json::Value;

use crate::error::FhirError;
use crate::fhir::{id, resource_types};
use crate::fhirpath::Item;
use crate::search::index::{index_text, IndexEntries, ReferenceEntry, TokenEntry};
use crate::search::param::{token, Occurrence};
use crate::search::query::Predicate;

/// The modifiers of reference parameters, besides a resource type.
pub const MODIFIERS: &[&str] = &["missing", "identifier", "above", "below"];

/// `[type/]id`, an absolute URL (of this server: split into type and id), or `:Type` + id.
pub fn value(code: &str, modifier_type: Option<&str>, value: &str, base: &str) -> Predicate {
    let local = value
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(value);
    let local = local.split("/_history/").next().unwrap_or(local);
    let param = code.to_owned();
    match local.split_once('/') {
        Some((t, id)) if !local.contains(':') && resource_types::is_resource_type(t) => {
            Predicate::Reference {
                param,
                target_type: Some(t.to_owned()),
                target_id: Some(id.to_owned()),
                url: None,
            }
        }
        _ if local.contains(':') => Predicate::Reference {
            param,
            target_type: None,
            target_id: None,
            url: Some(index_text(value)),
        },
        _ => Predicate::Reference {
            param,
            target_type: modifier_type.map(str::to_owned),
            target_id: Some(local.to_owned()),
            url: None,
        },
    }
}

/// The predicates of `code:modifier=values`, `None` for a modifier handled elsewhere or not
/// supported.
pub(super) fn modified(
    code: &str,
    modifier: &str,
    values: &[String],
    base: &str,
) -> Result<Option<Occurrence>, FhirError> {
    Ok(Some(match modifier {
        // `:identifier`: `Reference.identifier`, matched like a token.
        "identifier" => Occurrence::each(values, |v| Ok(token::value(&identifier_param(code), v)))?,
        t if resource_types::is_resource_type(t) => {
            Occurrence::each(values, |v| Ok(value(code, Some(t), v, base)))?
        }
        _ => return Ok(None),
    }))
}

/// The name of the token entries `:identifier` matches.
fn identifier_param(code: &str) -> String {
    format!("{code}:identifier")
}

/// The index entries of one reference: its target, and its `identifier` as a token.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    if let Some(entry) = entry(item, code) {
        entries.references.push(entry);
    }
    if let Some(identifier) = item.as_json().and_then(|r| r.get("identifier")) {
        let system = identifier.get("system").and_then(Value::as_str);
        if let Some(value) = identifier.get("value").and_then(Value::as_str) {
            entries.tokens.push(TokenEntry {
                param: identifier_param(code),
                system: system.map(index_text),
                code: Some(index_text(value)),
            });
        }
    }
}

fn entry(item: &Item<'_>, code: &str) -> Option<ReferenceEntry> {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Resolved { reference, .. } => return split(reference, code),
        _ => return None,
    };
    match value {
        // canonical / uri used as a reference
        Value::String(s) => split(s, code),
        Value::Object(o) => split(o.get("reference")?.as_str()?, code),
        _ => None,
    }
}

/// Splits a literal reference into type and id where it names one (`Patient/1`,
/// `http://host/fhir/Patient/1/_history/2`); other URLs are kept whole.
fn split(reference: &str, code: &str) -> Option<ReferenceEntry> {
    // A local reference to a contained resource: kept whole, for chains into contained
    // resources (search page, "Contained Resources").
    if reference.starts_with('#') {
        return (reference.len() > 1).then(|| ReferenceEntry {
            param: code.to_owned(),
            target_type: None,
            target_id: None,
            url: Some(index_text(reference)),
        });
    }
    let without_history = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let mut parts = without_history.rsplitn(3, '/');
    let id = parts.next()?;
    let rtype = parts.next();
    let relative = !reference.contains(':');
    let entry = |t: Option<&str>, i: Option<&str>, url: Option<&str>| ReferenceEntry {
        param: code.to_owned(),
        target_type: t.map(index_text),
        target_id: i.map(index_text),
        url: url.map(index_text),
    };
    match rtype {
        Some(t) if resource_types::is_resource_type(t) && id::is_valid(id) => {
            Some(entry(Some(t), Some(id), (!relative).then_some(reference)))
        }
        _ => Some(entry(None, None, Some(reference))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use crate::search::query::TokenSystem;
    use serde_json::json;

    fn reference(t: Option<&str>, id: Option<&str>, url: Option<&str>) -> Predicate {
        Predicate::Reference {
            param: "subject".into(),
            target_type: t.map(Into::into),
            target_id: id.map(Into::into),
            url: url.map(Into::into),
        }
    }

    #[test]
    fn a_reference_of_this_server_is_split_into_type_and_id() {
        let base = "http://h/fhir";
        assert_eq!(
            value("subject", None, "Patient/p1", base),
            reference(Some("Patient"), Some("p1"), None)
        );
        assert_eq!(
            value("subject", None, "http://h/fhir/Patient/p1/_history/3", base),
            reference(Some("Patient"), Some("p1"), None)
        );
        assert_eq!(
            value("subject", None, "http://elsewhere/Patient/p1", base),
            reference(None, None, Some("http://elsewhere/Patient/p1"))
        );
        assert_eq!(
            value("subject", Some("Group"), "g1", base),
            reference(Some("Group"), Some("g1"), None)
        );
        assert_eq!(
            value("subject", None, "p1", base),
            reference(None, Some("p1"), None)
        );
    }

    #[test]
    fn identifier_is_a_token_on_the_references_identifier() {
        let parsed = modified(
            "subject",
            "identifier",
            &["http://bsn|1".into()],
            "http://h",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.into_filters(),
            vec![vec![Predicate::Token {
                param: "subject:identifier".into(),
                system: TokenSystem::Is("http://bsn".into()),
                code: Some("1".into())
            }]]
        );
        assert!(modified("subject", "text", &["x".into()], "http://h")
            .unwrap()
            .is_none());
    }

    #[test]
    fn references_are_indexed_by_target_and_identifier() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "http://other/fhir/Patient/p9/_history/1",
                    "identifier": {"system": "http://bsn", "value": "7"}},
                "performer": [{"reference": "#pr"}]}),
        );
        let subject = entries
            .references
            .iter()
            .find(|r| r.param == "subject")
            .unwrap();
        assert_eq!(
            (subject.target_type.as_deref(), subject.target_id.as_deref()),
            (Some("Patient"), Some("p9"))
        );
        assert_eq!(
            subject.url.as_deref(),
            Some("http://other/fhir/Patient/p9/_history/1")
        );
        assert!(entries
            .tokens
            .iter()
            .any(|t| t.param == "subject:identifier" && t.code.as_deref() == Some("7")));
        let performer = entries
            .references
            .iter()
            .find(|r| r.param == "performer")
            .unwrap();
        assert_eq!(performer.url.as_deref(), Some("#pr"));
    }
}
