//! uri (search page, "uri"): the whole uri, url or canonical, case-sensitive; `:below` the
//! stored uri starts with the value, `:above` the value starts with the stored uri.

use crate::error::FhirError;
use crate::fhirpath::Item;
use crate::search::index::{index_text, IndexEntries, UriEntry};
use crate::search::param::Occurrence;
use crate::search::query::{Predicate, UriMatch};

/// The modifiers of uri parameters.
pub const MODIFIERS: &[&str] = &["missing", "below", "above"];

pub fn value(code: &str, value: &str, mode: UriMatch) -> Predicate {
    Predicate::Uri {
        param: code.to_owned(),
        value: index_text(value),
        mode,
    }
}

/// The predicates of `code:modifier=values`, `None` for a modifier uris do not support.
pub(super) fn modified(
    code: &str,
    modifier: &str,
    values: &[String],
) -> Result<Option<Occurrence>, FhirError> {
    let mode = match modifier {
        "below" => UriMatch::Below,
        "above" => UriMatch::Above,
        _ => return Ok(None),
    };
    Occurrence::each(values, |v| Ok(value(code, v, mode))).map(Some)
}

/// The index entry of one uri value.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    let text = match item {
        Item::Node(node) => node.value.as_str(),
        Item::String(s) | Item::Date(s) | Item::DateTime(s) => Some(s.as_str()),
        _ => None,
    };
    if let Some(s) = text {
        entries.uris.push(UriEntry {
            param: code.to_owned(),
            value: index_text(s),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    #[test]
    fn below_and_above_choose_the_direction() {
        let parsed = modified("url", "below", &["http://a/b".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.into_filters(),
            vec![vec![Predicate::Uri {
                param: "url".into(),
                value: "http://a/b".into(),
                mode: UriMatch::Below
            }]]
        );
        assert!(modified("url", "contains", &["x".into()])
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_canonical_url_is_indexed_as_written() {
        let entries = indexed(
            "ValueSet",
            json!({"resourceType": "ValueSet", "status": "active", "url": "http://example.org/ValueSet/Kleur"}),
        );
        assert!(entries.uris.contains(&UriEntry {
            param: "url".into(),
            value: "http://example.org/ValueSet/Kleur".into()
        }));
    }
}
