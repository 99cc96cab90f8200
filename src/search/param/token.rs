//! token (search page, "token"): `[system]|[code]`, `|code`, `system|` or `code`, on `code`,
//! `Coding`, `CodeableConcept`, `Identifier`, `ContactPoint`, `boolean` and `string` values.
//!
//! Modifiers: `:not`, `:text` (the display texts, matched like a string), `:of-type` (an
//! Identifier's type and value), and the terminology modifiers `:in`, `:not-in`, `:below`,
//! `:above`, left as [`Predicate::Terminology`] until [`resolve`] asks the server's
//! terminology, through the [`Resolver`] passed in, which codes they stand for.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::FhirError;
use crate::fhir::member::{field, member};
use crate::fhirpath::Item;
use crate::search::index::{index_text, IndexEntries, TokenEntry};
use crate::search::param::{string, Occurrence};
use crate::search::query::{Predicate, SearchQuery, StringMatch, TerminologyOp, TokenSystem};
use crate::search::Resolver;

/// The modifiers of token parameters.
pub const MODIFIERS: &[&str] = &[
    "missing", "text", "not", "above", "below", "in", "not-in", "of-type",
];

/// A plain token value: the system before the first unescaped `|`, the code after it.
pub fn value(param: &str, value: &str) -> Predicate {
    let mut split = None;
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            split = Some(i);
            break;
        }
    }
    // Compared with index text, which is cut at `MAX_INDEXED_BYTES`.
    let unescape = |s: &str| index_text(&s.replace("\\|", "|"));
    let (system, code) = match split {
        None => (TokenSystem::Any, Some(unescape(value))),
        Some(0) => (TokenSystem::None, Some(unescape(&value[1..]))),
        Some(i) => {
            let code = &value[i + 1..];
            (
                TokenSystem::Is(unescape(&value[..i])),
                (!code.is_empty()).then(|| unescape(code)),
            )
        }
    };
    Predicate::Token {
        param: param.to_owned(),
        system,
        code,
    }
}

/// The predicates of `code:modifier=values`, `None` for a modifier tokens do not support.
pub(super) fn modified(
    code: &str,
    modifier: &str,
    values: &[String],
) -> Result<Option<Occurrence>, FhirError> {
    Ok(Some(match modifier {
        "not" => Occurrence::AllOf(
            values
                .iter()
                .map(|v| Predicate::Not(Box::new(value(code, v))))
                .collect(),
        ),
        // `:text`: the display texts, matched like a string (case- and accent-insensitive,
        // starts with).
        "text" => Occurrence::each(values, |v| {
            Ok(string::value(&text_param(code), v, StringMatch::StartsWith))
        })?,
        "of-type" => Occurrence::each(values, |v| of_type(code, v))?,
        "in" => Occurrence::each(values, |v| value_set(code, "in", v))?,
        // Not in any of the value sets.
        "not-in" => Occurrence::AllOf(
            values
                .iter()
                .map(|v| Ok(Predicate::Not(Box::new(value_set(code, "not-in", v)?))))
                .collect::<Result<_, FhirError>>()?,
        ),
        m @ ("below" | "above") => Occurrence::each(values, |v| subsumption(code, m, v))?,
        _ => return Ok(None),
    }))
}

/// The name of the string entries `:text` matches.
fn text_param(code: &str) -> String {
    format!("{code}:text")
}

/// `:in=url` / `:not-in=url`: the codes of a ValueSet held by the server (search page, token).
fn value_set(code: &str, modifier: &str, value: &str) -> Result<Predicate, FhirError> {
    let url = value.split('|').next().unwrap_or(value);
    if url.is_empty() {
        return Err(FhirError::invalid(format!(
            "{code}:{modifier}: expected the url of a value set"
        )));
    }
    Ok(Predicate::Terminology {
        param: code.to_owned(),
        op: TerminologyOp::In(url.to_owned()),
    })
}

/// `:below=system|code` / `:above=system|code`: the code and the codes below (above) it in its
/// code system's is-a hierarchy.
fn subsumption(code: &str, modifier: &str, value: &str) -> Result<Predicate, FhirError> {
    let (system, concept) = match value.split_once('|') {
        Some((s, c)) if !s.is_empty() && !c.is_empty() => (s.to_owned(), c.to_owned()),
        _ => {
            return Err(FhirError::invalid(format!(
            "{code}:{modifier}={value}: expected system|code (the hierarchy is the code system's)"
        )))
        }
    };
    let op = if modifier == "below" {
        TerminologyOp::Below {
            system,
            code: concept,
        }
    } else {
        TerminologyOp::Above {
            system,
            code: concept,
        }
    };
    Ok(Predicate::Terminology {
        param: code.to_owned(),
        op,
    })
}

/// `identifier:of-type=system|code|value`: an Identifier whose type has that coding and whose
/// value is `value` (search page, token `:of-type`).
fn of_type(code: &str, value: &str) -> Result<Predicate, FhirError> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    let [system, type_code, id_value] = parts[..] else {
        return Err(FhirError::invalid(format!(
            "{code}:of-type={value}: expected system|code|value"
        )));
    };
    if type_code.is_empty() || id_value.is_empty() {
        return Err(FhirError::invalid(format!(
            "{code}:of-type={value}: the type code and the value are required"
        )));
    }
    Ok(Predicate::Composite(vec![
        Predicate::Token {
            param: format!("{code}:of-type$0"),
            system: if system.is_empty() {
                TokenSystem::Any
            } else {
                TokenSystem::Is(index_text(system))
            },
            code: Some(index_text(type_code)),
        },
        Predicate::Token {
            param: format!("{code}:of-type$1"),
            system: TokenSystem::Any,
            code: Some(index_text(id_value)),
        },
    ]))
}

/// Replaces every terminology predicate of a search (also inside chains, `_has` and `:not`)
/// with the codes it stands for, as the resolver gives them.
pub(crate) async fn resolve(
    resolver: &dyn Resolver,
    query: &mut SearchQuery,
) -> Result<(), FhirError> {
    let mut ops = Vec::new();
    collect(&query.filters, &mut ops);
    if ops.is_empty() {
        return Ok(());
    }
    let resolved = resolver.codes(&ops).await?;
    replace(&mut query.filters, &resolved);
    Ok(())
}

/// Whether a search uses terminology modifiers (which need [`resolve`] before the store runs it).
pub fn uses_terminology(filters: &[Vec<Predicate>]) -> bool {
    let mut ops = Vec::new();
    collect(filters, &mut ops);
    !ops.is_empty()
}

fn collect(filters: &[Vec<Predicate>], out: &mut Vec<TerminologyOp>) {
    for predicate in filters.iter().flatten() {
        collect_one(predicate, out);
    }
}

fn collect_one(predicate: &Predicate, out: &mut Vec<TerminologyOp>) {
    match predicate {
        Predicate::Terminology { op, .. } => out.push(op.clone()),
        Predicate::Not(inner) => collect_one(inner, out),
        Predicate::Chain { filters, .. } | Predicate::Has { filters, .. } => collect(filters, out),
        _ => {}
    }
}

type Resolved = HashMap<TerminologyOp, Vec<(String, Vec<String>)>>;

fn replace(filters: &mut [Vec<Predicate>], resolved: &Resolved) {
    for predicate in filters.iter_mut().flatten() {
        replace_one(predicate, resolved);
    }
}

fn replace_one(predicate: &mut Predicate, resolved: &Resolved) {
    match predicate {
        Predicate::Terminology { param, op } => {
            let codes = resolved.get(op).cloned().unwrap_or_default();
            *predicate = Predicate::TokenIn {
                param: std::mem::take(param),
                codes: codes
                    .into_iter()
                    .filter(|(_, codes)| !codes.is_empty())
                    .collect(),
            };
        }
        Predicate::Not(inner) => replace_one(inner, resolved),
        Predicate::Chain { filters, .. } | Predicate::Has { filters, .. } => {
            replace(filters, resolved)
        }
        _ => {}
    }
}

/// The index entries of one token value: its `system|code` pairs, its display texts (for
/// `:text`) and, for an Identifier with a type, its `:of-type` groups.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    tokens(item, &mut |system, value| {
        entries.tokens.push(TokenEntry {
            param: code.to_owned(),
            system: system.map(index_text),
            code: value.map(index_text),
        });
    });
    let text_param = text_param(code);
    token_texts(item, &mut |s| {
        // A text the resource has for this parameter already (a CodeableConcept's text that
        // repeats its coding's display, as most do) would be the same row again: `:text`
        // finds the resource through either.
        let exact = index_text(s);
        if !entries
            .strings
            .iter()
            .any(|e| e.exact == exact && e.param == text_param)
        {
            entries.strings.push(string::entry(&text_param, s));
        }
    });
    identifier_of_type(entries, code, item);
}

/// Only the `system|code` entries of one token value: what a composite's token component
/// stores (its groups hold no `:text` or `:of-type` entries). Returns whether [`index`] would
/// have made any entry of the value (a text is a value too, though it is not stored here).
pub(super) fn index_codes(entries: &mut IndexEntries, code: &str, item: &Item<'_>) -> bool {
    let before = entries.tokens.len();
    tokens(item, &mut |system, value| {
        entries.tokens.push(TokenEntry {
            param: code.to_owned(),
            system: system.map(index_text),
            code: value.map(index_text),
        });
    });
    if entries.tokens.len() > before {
        return true;
    }
    let mut text = false;
    token_texts(item, &mut |_| text = true);
    text
}

/// The texts `:text` matches: `CodeableConcept.text`, `Coding.display`, and an Identifier's
/// type text and displays.
fn token_texts(item: &Item<'_>, add: &mut dyn FnMut(&str)) {
    let Some(Value::Object(o)) = item.as_json() else {
        return;
    };
    let concept = |cc: &serde_json::Map<String, Value>, add: &mut dyn FnMut(&str)| {
        if let Some(text) = member(cc, "text").and_then(Value::as_str) {
            add(text);
        }
        if let Some(Value::Array(codings)) = member(cc, "coding") {
            codings
                .iter()
                .filter_map(|c| field(c, "display").and_then(Value::as_str))
                .for_each(&mut *add);
        }
    };
    if member(o, "coding").is_some()
        || (member(o, "text").is_some() && member(o, "value").is_none())
    {
        concept(o, add);
    } else if member(o, "code").is_some() {
        if let Some(display) = member(o, "display").and_then(Value::as_str) {
            add(display);
        }
    } else if let Some(Value::Object(kind)) = member(o, "type") {
        concept(kind, add);
    }
}

/// `:of-type` entries of an Identifier: one group per coding of its type, with the type
/// (`$0`) and the value (`$1`) together.
fn identifier_of_type(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    let Some(Value::Object(o)) = item.as_json() else {
        return;
    };
    let (Some(value), Some(Value::Array(codings))) = (
        o.get("value").and_then(Value::as_str),
        o.get("type").and_then(|t| t.get("coding")),
    ) else {
        return;
    };
    for coding in codings {
        let system = coding.get("system").and_then(Value::as_str);
        let Some(type_code) = coding.get("code").and_then(Value::as_str) else {
            continue;
        };
        let mut group = IndexEntries::default();
        group.tokens.push(TokenEntry {
            param: format!("{code}:of-type$0"),
            system: system.map(index_text),
            code: Some(index_text(type_code)),
        });
        group.tokens.push(TokenEntry {
            param: format!("{code}:of-type$1"),
            system: None,
            code: Some(index_text(value)),
        });
        entries.groups.push(group);
    }
}

/// The `(system, code)` pairs of a token value.
fn tokens(item: &Item<'_>, add: &mut dyn FnMut(Option<&str>, Option<&str>)) {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Boolean(b) => return add(None, Some(if *b { "true" } else { "false" })),
        Item::String(s) => return add(None, Some(s)),
        _ => return,
    };
    match value {
        Value::String(s) => add(None, Some(s)),
        Value::Bool(b) => add(None, Some(if *b { "true" } else { "false" })),
        Value::Object(o) => {
            let str_of = |k: &str| member(o, k).and_then(Value::as_str);
            if let Some(Value::Array(codings)) = member(o, "coding") {
                // CodeableConcept
                for coding in codings {
                    let system = field(coding, "system").and_then(Value::as_str);
                    let code = field(coding, "code").and_then(Value::as_str);
                    if system.is_some() || code.is_some() {
                        add(system, code);
                    }
                }
            } else if member(o, "code").is_some() {
                // Coding
                add(str_of("system"), str_of("code"));
            } else if let Some(value) = str_of("value") {
                // Identifier, ContactPoint
                add(str_of("system"), Some(value));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::StringEntry;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    fn token(param: &str, system: TokenSystem, code: Option<&str>) -> Predicate {
        Predicate::Token {
            param: param.into(),
            system,
            code: code.map(Into::into),
        }
    }

    fn only(parsed: Option<Occurrence>) -> Vec<Vec<Predicate>> {
        parsed.expect("a supported modifier").into_filters()
    }

    #[test]
    fn tokens_take_the_system_before_the_bar() {
        let is = |s: &str| TokenSystem::Is(s.into());
        assert_eq!(
            value("identifier", "http://x|1"),
            token("identifier", is("http://x"), Some("1"))
        );
        assert_eq!(
            value("code", "|1"),
            token("code", TokenSystem::None, Some("1"))
        );
        assert_eq!(
            value("code", "http://x|"),
            token("code", is("http://x"), None)
        );
        assert_eq!(
            value("code", "1"),
            token("code", TokenSystem::Any, Some("1"))
        );
        assert_eq!(
            value("code", r"a\|b"),
            token("code", TokenSystem::Any, Some("a|b"))
        );
    }

    #[test]
    fn not_of_a_list_is_all_of_the_negations() {
        let filters = only(modified("code", "not", &["a".into(), "b".into()]).unwrap());
        assert_eq!(filters.len(), 2);
        assert_eq!(
            filters[0],
            vec![Predicate::Not(Box::new(token(
                "code",
                TokenSystem::Any,
                Some("a")
            )))]
        );
    }

    #[test]
    fn text_is_a_normalized_starts_with_on_the_display_texts() {
        let filters = only(modified("code", "text", &["Hartfalen".into()]).unwrap());
        assert_eq!(
            filters,
            vec![vec![Predicate::String {
                param: "code:text".into(),
                value: "hartfalen".into(),
                mode: StringMatch::StartsWith,
            }]]
        );
    }

    #[test]
    fn of_type_needs_system_code_and_value() {
        let filters = only(modified("identifier", "of-type", &["http://t|MR|42".into()]).unwrap());
        let Predicate::Composite(parts) = &filters[0][0] else {
            panic!("not a composite");
        };
        assert_eq!(
            parts[1],
            token("identifier:of-type$1", TokenSystem::Any, Some("42"))
        );
        assert!(modified("identifier", "of-type", &["MR|42".into()]).is_err());
    }

    #[test]
    fn terminology_modifiers_wait_for_the_resolver() {
        let filters = only(modified("code", "below", &["http://s|a".into()]).unwrap());
        assert_eq!(
            filters[0][0],
            Predicate::Terminology {
                param: "code".into(),
                op: TerminologyOp::Below {
                    system: "http://s".into(),
                    code: "a".into()
                }
            }
        );
        assert!(uses_terminology(&filters));
        let not_in = only(modified("code", "not-in", &["http://vs|1.0".into()]).unwrap());
        assert_eq!(
            not_in[0][0],
            Predicate::Not(Box::new(Predicate::Terminology {
                param: "code".into(),
                op: TerminologyOp::In("http://vs".into())
            }))
        );
        assert!(modified("code", "above", &["a".into()]).is_err());
        assert!(modified("code", "exact", &["a".into()]).unwrap().is_none());
    }

    #[test]
    fn a_codeable_concept_is_indexed_by_codings_texts_and_identifier_types() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "Gewicht", "coding": [{"system": "http://s", "code": "w", "display": "Weight"}]}}),
        );
        assert!(entries.tokens.contains(&TokenEntry {
            param: "code".into(),
            system: Some("http://s".into()),
            code: Some("w".into())
        }));
        assert!(entries.strings.contains(&StringEntry {
            param: "code:text".into(),
            normalized: "weight".into(),
            exact: "Weight".into()
        }));
        let patient = indexed(
            "Patient",
            json!({"resourceType": "Patient", "identifier": [{"type": {"coding": [{"system": "http://t", "code": "MR"}]}, "value": "42"}]}),
        );
        assert_eq!(patient.groups[0].tokens[1].code.as_deref(), Some("42"));
    }

    #[test]
    fn a_text_repeated_in_a_codeable_concept_is_one_text_entry() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "Body Height", "coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]}}),
        );
        let texts: Vec<&str> = entries
            .strings
            .iter()
            .filter(|s| s.param == "code:text")
            .map(|s| s.exact.as_str())
            .collect();
        assert_eq!(texts, ["Body Height"]);
    }

    #[test]
    fn a_composites_token_component_gives_codes_only() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "Gewicht", "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
                "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}}),
        );
        let group = entries
            .groups
            .iter()
            .find(|g| g.tokens.iter().any(|t| t.param == "code-value-quantity$0"))
            .expect("a code-value-quantity group");
        assert!(group.strings.is_empty() && group.groups.is_empty());
        assert_eq!(group.tokens.len(), 1);
        assert_eq!(group.quantities[0].param, "code-value-quantity$1");
        // A component with only a text still counts as present, as before: the group is kept.
        let text_only = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "Gewicht"},
                "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}}),
        );
        assert!(text_only.groups.iter().any(|g| g
            .quantities
            .iter()
            .any(|q| q.param == "code-value-quantity$1")));
    }
}
