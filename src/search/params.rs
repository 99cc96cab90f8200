//! Parses FHIR search parameters (from a query string, a `_search` form body or conditional
//! criteria) into a [`SearchQuery`]: result parameters by their own files, every other
//! parameter by its type ([`crate::search::param`]).
//!
//! A parameter the server does not support is never silently dropped from conditional criteria
//! (that could widen a conditional delete); a search ignores it unless the client asked for
//! `Prefer: handling=strict`, and reports it.

use crate::error::FhirError;
use crate::fhir::subset::Subset;
use crate::search::budget::Budget;
use crate::search::contained;
use crate::search::definitions::Registry;
use crate::search::include::{include, Include};
use crate::search::param::parameter;
use crate::search::query::{Contained, SearchQuery};
use crate::search::result::{self, Total, DEFAULT_COUNT};
use crate::search::sort::{self, CURSOR_AFTER, CURSOR_BEFORE};

/// The most OR-ed values one search combines in all: each parameter's values are one flat list
/// (bound as parameters, no deeper expression tree), so they are bounded apart from the
/// AND-ed parameters of the complexity budget.
pub const MAX_VALUES: usize = 1000;

/// How parameters the server does not support are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Ignore them and report them (search, `Prefer: handling=lenient`).
    Ignore,
    /// Refuse the request with 400 (`Prefer: handling=strict`, conditional interactions).
    Refuse,
}

#[derive(Debug)]
pub struct Parsed {
    pub query: SearchQuery,
    /// Parameters that were ignored, with the reason.
    pub ignored: Vec<String>,
    pub total: Total,
    /// `_include` and `_revinclude`, in request order.
    pub includes: Vec<Include>,
    /// `_summary` and `_elements`: which parts of the matches and included resources to return.
    pub subset: Subset,
    /// `_count` as read, when the request gave one (it may have been capped).
    pub count: Option<result::Count>,
}

/// Parses search parameters for resource type `rtype`, those of `registry`, within `budget`.
pub fn parse(
    registry: &Registry,
    budget: &Budget,
    rtype: &str,
    params: &[(String, String)],
    unknown: Unknown,
    base: &str,
) -> Result<Parsed, FhirError> {
    let mut query = SearchQuery {
        rtype: rtype.to_owned(),
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut ignored = Vec::new();
    let mut total = Total::Accurate;
    let mut includes = Vec::new();
    let mut subset = Subset::Full;
    let mut count = None;
    let mut cursor: Option<(bool, &str)> = None;
    // AND-ed parameters (each a level of the statement's expression tree) and all OR-ed values.
    let (mut terms, mut values) = (0usize, 0usize);
    for (name, value) in params {
        if name.contains('\0') || value.contains('\0') {
            return Err(FhirError::invalid(format!(
                "{name}: search parameters cannot contain NUL characters"
            )));
        }
        // Result parameters (`_count`, `_include:iterate`, …) by their name without modifier.
        match name.split(':').next().unwrap_or(name) {
            "_count" => {
                let read = result::count(value)?;
                query.count = read.size;
                count = Some(read);
            }
            "_total" => total = result::total(value)?,
            "_summary" => subset = Subset::summary(value)?,
            "_elements" => subset = Subset::elements(value)?,
            "_sort" => query.sort = sort::keys(registry, rtype, value)?,
            // Decoded after the loop, once `_sort` is known.
            code @ (CURSOR_AFTER | CURSOR_BEFORE) => cursor = Some((code == CURSOR_AFTER, value)),
            "_include" | "_revinclude" => {
                includes.push(include(registry, name, value, rtype)?);
                budget.includes(includes.len())?;
            }
            "_contained" => query.contained = contained::contained(value)?,
            "_containedType" => query.contained_type = contained::contained_type(value)?,
            _ => {
                let alternatives = split_or(value);
                terms += 1;
                values += alternatives.len();
                budget.terms(terms)?;
                if values > MAX_VALUES {
                    return Err(FhirError::invalid(format!(
                        "A search may combine at most {MAX_VALUES} values"
                    )));
                }
                budget.chain(name)?;
                match parameter(registry, rtype, name, &alternatives, base, 0)? {
                    Ok(parsed) => query.filters.extend(parsed.into_filters()),
                    Err(reason) => refuse_or_ignore(unknown, reason, &mut ignored)?,
                }
            }
        }
    }
    if query.contained != Contained::False {
        contained::check(&includes)?;
    }
    result::check(&subset, &includes)?;
    if let Some((after, text)) = cursor {
        sort::page_from(&mut query, after, text)?;
    }
    Ok(Parsed {
        query,
        ignored,
        total,
        includes,
        subset,
        count,
    })
}

fn refuse_or_ignore(
    unknown: Unknown,
    reason: String,
    ignored: &mut Vec<String>,
) -> Result<(), FhirError> {
    match unknown {
        Unknown::Refuse => Err(FhirError::invalid(format!(
            "Unsupported search parameter {reason}"
        ))),
        Unknown::Ignore => {
            ignored.push(reason);
            Ok(())
        }
    }
}

/// Splits a value on commas that are not escaped (`\,`), unescaping `\,` and `\\`; `\$` stays
/// escaped until the parameter's type is known (it separates the components of a composite).
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\')) => out.last_mut().unwrap().push(next),
                Some(next) => {
                    let last = out.last_mut().unwrap();
                    last.push('\\');
                    last.push(next);
                }
                None => out.last_mut().unwrap().push('\\'),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn escaped_commas_do_not_split() {
        assert_eq!(
            split_or(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
        assert_eq!(split_or(r"a\$b"), vec![r"a\$b".to_string()]);
    }

    #[test]
    fn commas_are_or_and_repeated_parameters_are_and() {
        let parsed = parse(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &params(&[("gender", "male,female"), ("gender", "other")]),
            Unknown::Refuse,
            "http://h",
        )
        .unwrap();
        let sizes: Vec<usize> = parsed.query.filters.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1]);
    }

    #[test]
    fn unknown_parameters_are_ignored_and_reported_unless_refused() {
        let pairs = params(&[("no-such", "x")]);
        let parsed = parse(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &pairs,
            Unknown::Ignore,
            "http://h",
        )
        .unwrap();
        assert_eq!(parsed.ignored.len(), 1);
        assert!(parsed.query.filters.is_empty());
        assert!(parse(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &pairs,
            Unknown::Refuse,
            "http://h"
        )
        .is_err());
    }

    #[test]
    fn result_parameters_set_the_query_and_the_result() {
        let parsed = parse(
            &Registry::official(),
            &Budget::default(),
            "Observation",
            &params(&[
                ("_count", "5"),
                ("_total", "none"),
                ("_summary", "data"),
                ("_sort", "-date"),
            ]),
            Unknown::Refuse,
            "http://h",
        )
        .unwrap();
        assert_eq!(
            (parsed.query.count, parsed.total, parsed.subset),
            (5, Total::None, Subset::Data)
        );
        assert_eq!(parsed.query.sort.len(), 1);
        assert!(parse(
            &Registry::official(),
            &Budget::default(),
            "Observation",
            &params(&[("_summary", "text"), ("_include", "Observation:subject")]),
            Unknown::Refuse,
            "http://h"
        )
        .is_err());
        assert!(parse(
            &Registry::official(),
            &Budget::default(),
            "Observation",
            &params(&[("_contained", "true"), ("_include", "Observation:subject")]),
            Unknown::Refuse,
            "http://h"
        )
        .is_err());
    }

    #[test]
    fn nul_characters_and_too_many_values_are_refused() {
        assert!(parse(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &params(&[("name", "a\0b")]),
            Unknown::Ignore,
            "http://h"
        )
        .is_err());
        let many = vec!["x"; MAX_VALUES + 1].join(",");
        assert!(parse(
            &Registry::official(),
            &Budget::default(),
            "Patient",
            &params(&[("name", &many)]),
            Unknown::Ignore,
            "http://h"
        )
        .is_err());
    }
}
