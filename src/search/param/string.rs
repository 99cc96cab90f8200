//! string (search page, "string"): by default case- and accent-insensitive and "starts with";
//! `:contains` anywhere; `:exact` the whole string, case and accents included. Values are
//! primitives, or the text parts of HumanName and Address.
//!
//! Strings are normalised here, once on each side: [`entry`] when a resource is indexed,
//! [`value`] when a search value is parsed; the store compares what it is given.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::error::FhirError;
use crate::fhirpath::Item;
use crate::search::index::{index_text, IndexEntries, StringEntry};
use crate::search::param::Occurrence;
use crate::search::query::{Predicate, StringMatch};

/// The modifiers of string parameters.
pub const MODIFIERS: &[&str] = &["missing", "exact", "contains"];

/// Case- and accent-insensitive form of a string (search page: string matching): without
/// combining marks after canonical decomposition, in lower case, as index text.
pub fn normalize(s: &str) -> String {
    let folded: String = s
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    index_text(&folded)
}

/// A search value of the string entries `param`: normalised for [`StringMatch::StartsWith`] and
/// [`StringMatch::Contains`] (compared with the `normalized` entries), as written for
/// [`StringMatch::Exact`] (compared with the `exact` ones); both cut like index text.
pub fn value(param: &str, value: &str, mode: StringMatch) -> Predicate {
    let exact = index_text(value);
    Predicate::String {
        param: param.to_owned(),
        value: match mode {
            StringMatch::Exact => exact,
            StringMatch::StartsWith | StringMatch::Contains => normalize(&exact),
        },
        mode,
    }
}

/// The predicates of `code:modifier=values`, `None` for a modifier strings do not support.
pub(super) fn modified(
    code: &str,
    modifier: &str,
    values: &[String],
) -> Result<Option<Occurrence>, FhirError> {
    let mode = match modifier {
        "exact" => StringMatch::Exact,
        "contains" => StringMatch::Contains,
        _ => return Ok(None),
    };
    Occurrence::each(values, |v| Ok(value(code, v, mode))).map(Some)
}

/// The index entry of one string `s` of the entries `param`.
pub fn entry(param: &str, s: &str) -> StringEntry {
    StringEntry {
        param: param.to_owned(),
        normalized: normalize(s),
        exact: index_text(s),
    }
}

/// The index entries of one string value.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    strings(item, &mut |s| entries.strings.push(entry(code, s)));
}

/// String values: a primitive, or the text parts of HumanName and Address.
fn strings(item: &Item<'_>, add: &mut dyn FnMut(&str)) {
    let value = match item {
        Item::Node(node) => node.value,
        Item::String(s) => return add(s),
        _ => return,
    };
    match value {
        Value::String(s) => add(s),
        Value::Object(o) => {
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match o.get(key) {
                    Some(Value::String(s)) => add(s),
                    Some(Value::Array(parts)) => {
                        parts.iter().filter_map(Value::as_str).for_each(&mut *add)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    #[test]
    fn strings_are_case_and_accent_insensitive() {
        assert_eq!(normalize("Zoë Ångström"), "zoe angstrom");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for s in ["Zoë Ångström", "İstanbul", "ǅemal", "straße"] {
            assert_eq!(normalize(&normalize(s)), normalize(s));
        }
    }

    #[test]
    fn a_search_value_is_normalised_when_parsed_except_for_exact() {
        let parsed = |mode| value("name", "Éva", mode);
        let starts = parsed(StringMatch::StartsWith);
        assert_eq!(
            starts,
            Predicate::String {
                param: "name".into(),
                value: "eva".into(),
                mode: StringMatch::StartsWith
            }
        );
        let Predicate::String {
            value: contains, ..
        } = parsed(StringMatch::Contains)
        else {
            panic!("not a string predicate");
        };
        assert_eq!(contains, "eva");
        let Predicate::String { value: exact, .. } = parsed(StringMatch::Exact) else {
            panic!("not a string predicate");
        };
        assert_eq!(exact, "Éva");
    }

    #[test]
    fn modifiers_choose_the_match() {
        let parsed = modified("name", "contains", &["Ös".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed.into_filters(),
            vec![vec![Predicate::String {
                param: "name".into(),
                value: "os".into(),
                mode: StringMatch::Contains
            }]]
        );
        assert!(modified("name", "below", &["x".into()]).unwrap().is_none());
    }

    #[test]
    fn names_are_indexed_by_their_parts_both_normalised_and_exact() {
        let entries = indexed(
            "Patient",
            json!({"resourceType": "Patient", "name": [{"family": "Brontë", "given": ["Émile"]}]}),
        );
        let family: Vec<&StringEntry> = entries
            .strings
            .iter()
            .filter(|s| s.param == "family")
            .collect();
        assert_eq!(family, vec![&entry("family", "Brontë")]);
        assert_eq!(family[0].normalized, "bronte");
        assert!(entries
            .strings
            .iter()
            .any(|s| s.param == "name" && s.exact == "Émile"));
    }
}
