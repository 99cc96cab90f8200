//! FHIRPath's string manipulation functions: `indexOf`, `substring`,
//! `startsWith`, `matches`, `replaceMatches`, `split`… on a single string.

use super::super::eval::{Env, Evaluator, Res};
use super::super::parser::Expr;
use super::super::{FhirPathError, Item};
use super::{int_arg, one, str_arg};

/// A regular expression of an expression, compiled with a size bound (the expression may come
/// from a client's SearchParameter or profile).
/// Compiled once per pattern (up to a few hundred: invariants run on every write).
fn regex(pattern: &str) -> Res<regex::Regex> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<String, regex::Regex>>> = LazyLock::new(Default::default);
    if let Some(re) = CACHE.lock().expect("not poisoned").get(pattern) {
        return Ok(re.clone());
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            FhirPathError::Unsupported(format!(
                "the regular expression '{pattern}' cannot be used: {e}"
            ))
        })?;
    let mut cache = CACHE.lock().expect("not poisoned");
    if cache.len() < 512 {
        cache.insert(pattern.to_owned(), re.clone());
    }
    Ok(re)
}

pub(super) fn call<'a>(
    ev: &Evaluator<'a>,
    name: &str,
    s: &str,
    args: &[Expr],
    env: &Env<'_, 'a>,
) -> Res<Vec<Item<'a>>> {
    let sarg = |i: usize| str_arg(ev, &args[i], env, name);
    let chars: Vec<char> = s.chars().collect();
    Ok(match name {
        "indexOf" => match sarg(0)? {
            None => vec![],
            Some(sub) => vec![Item::Integer(match s.find(&sub) {
                Some(byte) => s[..byte].chars().count() as i64,
                None => -1,
            })],
        },
        "substring" => {
            let Some(start) = int_arg(ev, &args[0], env, name)? else {
                return Ok(vec![]);
            };
            if start < 0 || start as usize >= chars.len() {
                return Ok(vec![]);
            }
            let len = match args.get(1) {
                Some(a) => int_arg(ev, a, env, name)?.map(|l| l.max(0) as usize),
                None => None,
            }
            .unwrap_or(chars.len());
            vec![Item::String(
                chars.iter().skip(start as usize).take(len).collect(),
            )]
        }
        "startsWith" => one(sarg(0)?.map(|p| Item::Boolean(s.starts_with(&p)))),
        "endsWith" => one(sarg(0)?.map(|p| Item::Boolean(s.ends_with(&p)))),
        "contains" => one(sarg(0)?.map(|p| Item::Boolean(s.contains(&p)))),
        "upper" => vec![Item::String(s.to_uppercase())],
        "lower" => vec![Item::String(s.to_lowercase())],
        // FHIRPath: a match anywhere in the string (`matchesFull`: the whole string), in
        // single-line mode (`.` also matches a newline), case-sensitive.
        "matches" => match sarg(0)? {
            None => vec![],
            Some(re) => vec![Item::Boolean(regex(&format!("(?s){re}"))?.is_match(s))],
        },
        "matchesFull" => match sarg(0)? {
            None => vec![],
            Some(re) => vec![Item::Boolean(
                regex(&format!("(?s)^(?:{re})$"))?.is_match(s),
            )],
        },
        "replaceMatches" => match (sarg(0)?, sarg(1)?) {
            (Some(re), _) if re.is_empty() => vec![Item::String(s.to_owned())],
            (Some(re), Some(rep)) => {
                // FHIRPath substitutions are `$1`; the regex crate's `${1}` avoids `$1a` reading
                // as a group named `1a`.
                let rep = regex(r"\$(\d+)")?.replace_all(&rep, "$${${1}}");
                vec![Item::String(
                    regex(&re)?.replace_all(s, rep.as_ref()).into_owned(),
                )]
            }
            _ => vec![],
        },
        "replace" => match (sarg(0)?, sarg(1)?) {
            (Some(pat), Some(rep)) => vec![Item::String(if pat.is_empty() {
                let mut out = rep.clone();
                for c in &chars {
                    out.push(*c);
                    out.push_str(&rep);
                }
                out
            } else {
                s.replace(&pat, &rep)
            })],
            _ => vec![],
        },
        "length" => vec![Item::Integer(chars.len() as i64)],
        "toChars" => chars.iter().map(|c| Item::String(c.to_string())).collect(),
        "trim" => vec![Item::String(s.trim().to_string())],
        "split" => match sarg(0)? {
            None => vec![],
            Some(sep) => s
                .split(sep.as_str())
                .map(|p| Item::String(p.to_string()))
                .collect(),
        },
        _ => {
            return Err(FhirPathError::Unsupported(format!(
                "{name}() is not implemented"
            )))
        }
    })
}
