//! The search parameter types (search page, "Search Parameter Types"), one file each: the
//! modifiers and prefixes the page defines for the type, how a value is parsed into
//! [`Predicate`]s, and the index values a resource is found by (extracted on every write).
//!
//! This file dispatches a parameter occurrence `code[:modifier]=values` by its type, and holds
//! what all types share: `:missing`, and refusing a modifier the type does not define.

pub mod composite;
pub mod date;
pub mod number;
pub mod quantity;
pub mod reference;
pub mod string;
pub mod token;
pub mod uri;

use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::fhirpath::Item;
use crate::search::chain::{self, MAX_CHAIN_DEPTH};
use crate::search::definitions::{ParamType, Registry};
use crate::search::hierarchy;
use crate::search::index::IndexEntries;
use crate::search::query::{IndexTable, Predicate, RangeTarget, StringMatch, UriMatch};

/// What a parameter name stands for.
#[derive(Clone, Copy)]
enum Kind {
    Id,
    LastUpdated,
    Param(ParamType),
}

/// The predicates of one parameter occurrence: any of them (comma), or all of them (`:not` of
/// a list).
pub(crate) enum Occurrence {
    AnyOf(Vec<Predicate>),
    AllOf(Vec<Predicate>),
}

impl Occurrence {
    /// As query filters: an AND of ORs.
    pub(crate) fn into_filters(self) -> Vec<Vec<Predicate>> {
        match self {
            Occurrence::AnyOf(any_of) => vec![any_of],
            Occurrence::AllOf(all_of) => all_of.into_iter().map(|p| vec![p]).collect(),
        }
    }

    /// One predicate per value, any of them.
    pub(crate) fn each(
        values: &[String],
        f: impl Fn(&str) -> Result<Predicate, FhirError>,
    ) -> Result<Occurrence, FhirError> {
        Ok(Occurrence::AnyOf(
            values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
        ))
    }
}

/// The predicates of one parameter occurrence `name=values` on `rtype`: `Ok(Err(reason))` when
/// the server does not support it (ignored or refused by the caller), `Err` when it is wrong.
pub(crate) fn parameter(
    registry: &Registry,
    rtype: &str,
    name: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Result<Occurrence, String>, FhirError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(FhirError::invalid(format!(
            "{name}: chains and _has nest at most {MAX_CHAIN_DEPTH} deep"
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return chain::has(registry, rtype, rest, values, base, depth).map(Ok);
    }
    if name == "_list" || name.starts_with("_list:") {
        return chain::list(registry, rtype, name, values, base, depth).map(Ok);
    }
    if let Some((head, tail)) = name.split_once('.') {
        return chain::chain(registry, rtype, head, tail, values, base, depth).map(Ok);
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let kind = match code {
        "_id" => Kind::Id,
        "_lastUpdated" => Kind::LastUpdated,
        _ => match registry.get(rtype, code) {
            // `_text`, `_content`, `_filter`, `_query`: refusing is honest, ignoring is not.
            Some(param) if param.expression.is_none() => {
                return Err(FhirError::invalid(format!(
                    "The search parameter {code} is not supported by this server"
                )))
            }
            Some(param) => Kind::Param(param.kind),
            None => return Ok(Err(format!("{code}: no such search parameter for {rtype}"))),
        },
    };
    if let Some(m) = modifier {
        check_modifier(name, kind, m)?;
    }
    if let (Kind::Param(ParamType::Composite), None) = (kind, modifier) {
        let Some(param) = registry.get(rtype, code) else {
            return Ok(Err(format!("{code}: no such search parameter for {rtype}")));
        };
        let parsed = Occurrence::each(values, |v| {
            composite::value(code, &param.components, v, base)
        })?;
        return Ok(Ok(parsed));
    }
    if let (Kind::Param(ParamType::Reference), Some(m @ ("below" | "above"))) = (kind, modifier) {
        let parsed = Occurrence::each(values, |v| {
            hierarchy::value(registry, rtype, code, m == "above", v, base)
        })?;
        return Ok(Ok(parsed));
    }
    // Only composites keep `\$` escaped: it separates their components.
    let values: Vec<String> = values.iter().map(|v| v.replace("\\$", "$")).collect();
    Ok(match predicates(code, kind, modifier, &values, base)? {
        Some(parsed) => Ok(parsed),
        None => Err(match modifier {
            Some(m) => format!("{name}: the modifier ':{m}' is not supported for this parameter"),
            None => format!("{code}: searching on this parameter type is not supported yet"),
        }),
    })
}

/// Refuses a modifier the search page does not define for the parameter's type (400): unlike
/// an unknown parameter, it cannot be ignored without changing what the client asked.
fn check_modifier(name: &str, kind: Kind, modifier: &str) -> Result<(), FhirError> {
    let (type_name, allowed): (&str, &[&str]) = match kind {
        Kind::Id => ("_id", &["missing", "not"]),
        Kind::LastUpdated => ("_lastUpdated", &["missing"]),
        Kind::Param(t) => match t {
            ParamType::String => ("string", string::MODIFIERS),
            ParamType::Token => ("token", token::MODIFIERS),
            ParamType::Reference => ("reference", reference::MODIFIERS),
            ParamType::Uri => ("uri", uri::MODIFIERS),
            ParamType::Date => ("date", date::MODIFIERS),
            ParamType::Number => ("number", number::MODIFIERS),
            ParamType::Quantity => ("quantity", quantity::MODIFIERS),
            ParamType::Composite => ("composite", composite::MODIFIERS),
            ParamType::Special => ("special", &["missing"]),
        },
    };
    let is_type = matches!(kind, Kind::Param(ParamType::Reference))
        && resource_types::is_resource_type(modifier);
    if is_type || allowed.contains(&modifier) {
        return Ok(());
    }
    Err(FhirError::invalid(format!(
        "{name}: ':{modifier}' is not a modifier of {type_name} parameters (allowed: {})",
        allowed
            .iter()
            .map(|m| format!(":{m}"))
            .collect::<Vec<_>>()
            .join(" ")
    )))
}

/// The index table a parameter type's values live in (`None`: composite and special have no
/// values of their own).
pub(crate) fn table(kind: ParamType) -> Option<IndexTable> {
    Some(match kind {
        ParamType::Token => IndexTable::Token,
        ParamType::String => IndexTable::String,
        ParamType::Date => IndexTable::Date,
        ParamType::Reference => IndexTable::Reference,
        ParamType::Uri => IndexTable::Uri,
        ParamType::Number => IndexTable::Number,
        ParamType::Quantity => IndexTable::Quantity,
        ParamType::Composite | ParamType::Special => return None,
    })
}

/// The predicates for one parameter occurrence, or `None` when the combination of type and
/// modifier is not supported.
fn predicates(
    code: &str,
    kind: Kind,
    modifier: Option<&str>,
    values: &[String],
    base: &str,
) -> Result<Option<Occurrence>, FhirError> {
    match (kind, modifier) {
        (_, Some("missing")) => {
            let Kind::Param(t) = kind else {
                return Ok(None);
            };
            let Some(table) = table(t) else {
                return Ok(None);
            };
            missing(code, table, values).map(Some)
        }
        (Kind::Id, None) => Occurrence::each(values, |v| Ok(Predicate::Id(v.to_owned()))).map(Some),
        (Kind::LastUpdated, None) => {
            Occurrence::each(values, |v| date::value(RangeTarget::LastUpdated, code, v)).map(Some)
        }
        (Kind::Param(t), None) if t != ParamType::Composite && t != ParamType::Special => {
            Occurrence::each(values, |v| {
                Ok(value(code, t, v, base)?.expect("a plain value"))
            })
            .map(Some)
        }
        (Kind::Param(ParamType::Token), Some(m)) => token::modified(code, m, values),
        (Kind::Param(ParamType::String), Some(m)) => string::modified(code, m, values),
        (Kind::Param(ParamType::Uri), Some(m)) => uri::modified(code, m, values),
        (Kind::Param(ParamType::Reference), Some(m)) => reference::modified(code, m, values, base),
        _ => Ok(None),
    }
}

/// `:missing=true|false`: the parameter has no value, or has one.
fn missing(code: &str, table: IndexTable, values: &[String]) -> Result<Occurrence, FhirError> {
    Occurrence::each(values, |v| match v {
        "true" | "false" => Ok(Predicate::Missing {
            table,
            param: code.to_owned(),
            missing: v == "true",
        }),
        other => Err(FhirError::invalid(format!(
            "{code}:missing must be true or false, not '{other}'"
        ))),
    })
}

/// The predicate of one plain (unmodified) value of a parameter of type `kind`, `None` for
/// types without values of their own (composite, special).
pub(crate) fn value(
    code: &str,
    kind: ParamType,
    value: &str,
    base: &str,
) -> Result<Option<Predicate>, FhirError> {
    Ok(Some(match kind {
        ParamType::Date => date::value(RangeTarget::Date(code.to_owned()), code, value)?,
        ParamType::Token => token::value(code, value),
        ParamType::String => string::value(code, value, StringMatch::StartsWith),
        ParamType::Uri => uri::value(code, value, UriMatch::Exact),
        ParamType::Reference => reference::value(code, None, value, base),
        ParamType::Number => number::value(code, value)?,
        ParamType::Quantity => quantity::value(code, value)?,
        ParamType::Composite | ParamType::Special => return Ok(None),
    }))
}

/// Adds the index entries of one value `item` of the parameter `code` of type `kind` (composite
/// parameters are read by [`composite::index`]; special ones have none).
pub(crate) fn index(entries: &mut IndexEntries, code: &str, kind: ParamType, item: &Item<'_>) {
    match kind {
        ParamType::Token => token::index(entries, code, item),
        ParamType::String => string::index(entries, code, item),
        ParamType::Date => date::index(entries, code, item),
        ParamType::Reference => reference::index(entries, code, item),
        ParamType::Uri => uri::index(entries, code, item),
        ParamType::Number => number::index(entries, code, item),
        ParamType::Quantity => quantity::index(entries, code, item),
        ParamType::Composite | ParamType::Special => {}
    }
}

/// The entries of one value of a composite's component: as [`index`], but a token component
/// gives only its `system|code` entries, not the `:text` and `:of-type` ones a composite does
/// not store (and whose texts cost a Unicode normalisation each). Returns whether [`index`]
/// would have made any entry of the value.
pub(crate) fn index_component(
    entries: &mut IndexEntries,
    code: &str,
    kind: ParamType,
    item: &Item<'_>,
) -> bool {
    match kind {
        ParamType::Token => token::index_codes(entries, code, item),
        _ => {
            let before = entries.len();
            index(entries, code, kind, item);
            entries.len() > before
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The index entries of a small resource, as a write computes them.
    pub(crate) fn indexed(rtype: &str, resource: serde_json::Value) -> IndexEntries {
        crate::search::extract::index_entries(&Registry::official(), &resource, rtype)
    }

    #[test]
    fn a_modifier_the_type_does_not_define_is_refused() {
        let token = Kind::Param(ParamType::Token);
        assert!(check_modifier("code:exact", token, "exact").is_err());
        assert!(check_modifier("code:text", token, "text").is_ok());
        let reference = Kind::Param(ParamType::Reference);
        assert!(check_modifier("subject:Patient", reference, "Patient").is_ok());
        assert!(check_modifier("_lastUpdated:not", Kind::LastUpdated, "not").is_err());
    }

    #[test]
    fn missing_takes_true_or_false() {
        let parsed = missing("birthdate", IndexTable::Date, &["true".into()]).unwrap();
        assert_eq!(
            parsed.into_filters(),
            vec![vec![Predicate::Missing {
                table: IndexTable::Date,
                param: "birthdate".into(),
                missing: true
            }]]
        );
        assert!(missing("birthdate", IndexTable::Date, &["yes".into()]).is_err());
    }

    #[test]
    fn an_unknown_parameter_is_reported_not_refused() {
        let parsed = parameter(
            &Registry::official(),
            "Patient",
            "no-such-param",
            &["x".into()],
            "http://h",
            0,
        )
        .unwrap();
        assert!(parsed.is_err());
    }
}
