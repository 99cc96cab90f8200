//! Parses FHIR search parameters (from a query string, a `_search` form body or conditional
//! criteria) into a [`SearchQuery`].
//!
//! Supported so far: `_id`, `_lastUpdated`, and every token and date parameter of the official
//! definitions without modifiers. A parameter the server does not support is never silently
//! dropped from conditional criteria (that could widen a conditional delete); a search ignores
//! it unless the client asked for `Prefer: handling=strict`, and reports it.

use crate::error::FhirError;
use crate::fhir::datetime::parse_range;
use crate::search::definitions::{registry, ParamType};
use crate::search::query::{Predicate, Prefix, RangeTarget, SearchQuery, TokenSystem};

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;
/// The most values one search may combine (ORs and ANDs together).
pub const MAX_VALUES: usize = 1000;

/// Keyset cursors of paging links (opaque to clients).
pub const CURSOR_AFTER: &str = "_cursor_after";
pub const CURSOR_BEFORE: &str = "_cursor_before";

/// How parameters the server does not support are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Ignore them and report them (search, `Prefer: handling=lenient`).
    Ignore,
    /// Refuse the request with 400 (`Prefer: handling=strict`, conditional interactions).
    Refuse,
}

/// `_total`: whether a search reports the number of matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Accurate,
}

#[derive(Debug)]
pub struct Parsed {
    pub query: SearchQuery,
    /// Parameters that were ignored, with the reason.
    pub ignored: Vec<String>,
    pub total: Total,
}

/// Parses search parameters for resource type `rtype`.
pub fn parse(
    rtype: &str,
    params: &[(String, String)],
    unknown: Unknown,
) -> Result<Parsed, FhirError> {
    let mut query = SearchQuery {
        rtype: rtype.to_owned(),
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut ignored = Vec::new();
    let mut total = Total::Accurate;
    let mut values = 0usize;
    for (name, value) in params {
        let (code, modifier) = match name.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (name.as_str(), None),
        };
        match code {
            "_count" => {
                query.count = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_COUNT)
                    .ok_or_else(|| {
                        FhirError::invalid(format!(
                            "_count must be a whole number from 0 to {MAX_COUNT}, not '{value}'"
                        ))
                    })?;
                continue;
            }
            CURSOR_AFTER | CURSOR_BEFORE => {
                let rid = value.parse::<i64>().map_err(|_| {
                    FhirError::invalid(format!("{code} is not a valid paging cursor"))
                })?;
                if code == CURSOR_AFTER {
                    query.after_rid = Some(rid);
                } else {
                    query.before_rid = Some(rid);
                }
                continue;
            }
            "_total" => {
                total = match value.as_str() {
                    "none" => Total::None,
                    "estimate" | "accurate" => Total::Accurate,
                    other => {
                        return Err(FhirError::invalid(format!(
                            "_total must be none, estimate or accurate, not '{other}'"
                        )))
                    }
                };
                continue;
            }
            _ => {}
        }
        let alternatives = split_or(value);
        values += alternatives.len();
        if values > MAX_VALUES {
            return Err(FhirError::invalid(format!(
                "A search may combine at most {MAX_VALUES} values"
            )));
        }
        if let Some(modifier) = modifier {
            let reason = format!("{name}: the modifier ':{modifier}' is not supported");
            refuse_or_ignore(unknown, reason, &mut ignored)?;
            continue;
        }
        let any_of = match code {
            "_id" => alternatives.into_iter().map(Predicate::Id).collect(),
            "_lastUpdated" => alternatives
                .iter()
                .map(|v| range(RangeTarget::LastUpdated, code, v))
                .collect::<Result<Vec<_>, _>>()?,
            _ => match registry().get(rtype, code).map(|p| p.kind) {
                Some(ParamType::Token) => alternatives.iter().map(|v| token(code, v)).collect(),
                Some(ParamType::Date) => alternatives
                    .iter()
                    .map(|v| range(RangeTarget::Date(code.to_owned()), code, v))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(kind) => {
                    let reason =
                        format!("{code}: searching on {kind:?} parameters is not supported yet");
                    refuse_or_ignore(unknown, reason, &mut ignored)?;
                    continue;
                }
                None => {
                    let reason = format!("{code}: no such search parameter for {rtype}");
                    refuse_or_ignore(unknown, reason, &mut ignored)?;
                    continue;
                }
            },
        };
        query.filters.push(any_of);
    }
    Ok(Parsed {
        query,
        ignored,
        total,
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

/// Splits a value on commas that are not escaped (`\,`), unescaping `\,`, `\|`, `\$`, `\\`.
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '$' | '\\')) => out.last_mut().unwrap().push(next),
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

fn token(param: &str, value: &str) -> Predicate {
    // Split at the first `|` that is not escaped.
    let mut split = None;
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            split = Some(i);
            break;
        }
    }
    let unescape = |s: &str| s.replace("\\|", "|");
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

fn range(target: RangeTarget, code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, date) = Prefix::split(value);
    let (lo, hi) = parse_range(date).map_err(|e| FhirError::invalid(format!("{code}: {e}")))?;
    Ok(Predicate::Range {
        target,
        prefix,
        lo,
        hi,
    })
}

/// Parses the criteria of a conditional interaction (`If-None-Exist`, `PUT/DELETE Type?…`):
/// every parameter must be understood, and at least one must be given.
pub fn criteria(rtype: &str, params: &[(String, String)]) -> Result<SearchQuery, FhirError> {
    if params.is_empty() {
        return Err(FhirError::invalid(
            "A conditional interaction needs search criteria",
        ));
    }
    let mut parsed = parse(rtype, params, Unknown::Refuse)?;
    // Two hits are enough to tell "one" from "many".
    parsed.query.count = 2;
    parsed.query.after_rid = None;
    parsed.query.before_rid = None;
    Ok(parsed.query)
}

/// The key under which concurrent conditional interactions with the same criteria serialise.
pub fn criteria_key(rtype: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    format!("{rtype}?{}", sorted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_commas_do_not_split() {
        assert_eq!(
            split_or(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn tokens_take_the_system_before_the_bar() {
        assert_eq!(
            token("identifier", "http://x|1"),
            Predicate::Token {
                param: "identifier".into(),
                system: TokenSystem::Is("http://x".into()),
                code: Some("1".into())
            }
        );
        assert_eq!(
            token("code", "|1"),
            Predicate::Token {
                param: "code".into(),
                system: TokenSystem::None,
                code: Some("1".into())
            }
        );
        assert_eq!(
            token("code", "http://x|"),
            Predicate::Token {
                param: "code".into(),
                system: TokenSystem::Is("http://x".into()),
                code: None
            }
        );
    }
}
