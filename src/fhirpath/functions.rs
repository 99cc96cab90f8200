//! The function library: existence, filtering, subsetting, combining,
//! conversion, string, math, utility, and the FHIR additions
//! (`extension()`, `resolve()`, `hasValue()`, `htmlChecks()`).
//!
//! [`arity`] is the single list of known functions; the parser uses it to
//! reject unknown names early. Functions that need terminology services or the
//! full type model are listed but fail with
//! [`FhirPathError::Unsupported`] when called, so a SearchParameter using them
//! is reported clearly instead of indexing wrong values.

mod math;
mod strings;

use std::slice;

use serde_json::Value;

use super::datetime::{now_text, Kind, PartialDt};
use super::decimal::Decimal;
use super::eval::{children, Env, Evaluator, Res};
use super::ops::{contains_item, prim, singleton, to_bool, union, Prim};
use super::parser::{is_calendar_unit, Expr};
use super::{FhirPathError, Item};

/// Known functions and their (min, max) argument counts.
pub(crate) fn arity(name: &str) -> Option<(usize, usize)> {
    Some(match name {
        "empty" | "allTrue" | "anyTrue" | "allFalse" | "anyFalse" | "count" | "distinct"
        | "isDistinct" | "first" | "last" | "tail" | "single" | "not" | "toBoolean"
        | "convertsToBoolean" | "toInteger" | "convertsToInteger" | "toDecimal"
        | "convertsToDecimal" | "toString" | "convertsToString" | "toDate" | "convertsToDate"
        | "toDateTime" | "convertsToDateTime" | "toTime" | "convertsToTime" | "upper" | "lower"
        | "length" | "toChars" | "trim" | "abs" | "ceiling" | "exp" | "floor" | "ln" | "sqrt"
        | "truncate" | "now" | "today" | "timeOfDay" | "children" | "descendants" | "hasValue"
        | "getValue" | "resolve" | "type" | "htmlChecks" | "elementDefinition"
        | "checkModifiers" => (0, 0),
        "exists" | "round" | "join" | "toQuantity" | "convertsToQuantity" => (0, 1),
        "all" | "subsetOf" | "supersetOf" | "where" | "select" | "repeat" | "skip" | "take"
        | "intersect" | "exclude" | "union" | "combine" | "indexOf" | "startsWith" | "endsWith"
        | "contains" | "matches" | "matchesFull" | "split" | "encode" | "decode" | "log"
        | "power" | "extension" | "hasExtension" | "memberOf" | "conformsTo" | "subsumes"
        | "subsumedBy" | "escape" | "unescape" => (1, 1),
        "substring" | "trace" | "aggregate" => (1, 2),
        "replace" | "replaceMatches" | "slice" => (2, 2),
        "iif" => (2, 3),
        _ => return None,
    })
}

fn b<'a>(v: bool) -> Vec<Item<'a>> {
    vec![Item::Boolean(v)]
}

fn one<'a>(it: Option<Item<'a>>) -> Vec<Item<'a>> {
    it.into_iter().collect()
}

/// The string value of a single item, if it is a string.
fn str_of<'x>(it: &'x Item<'_>) -> Option<&'x str> {
    match prim(it) {
        Prim::Str(s) | Prim::UntypedStr(s) => Some(s),
        _ => None,
    }
}

/// Evaluates an argument that must be a single string (or empty).
fn str_arg(ev: &Evaluator<'_>, arg: &Expr, env: &Env<'_, '_>, f: &str) -> Res<Option<String>> {
    let v = ev.eval_arg(arg, env)?;
    match singleton(&v, f)? {
        None => Ok(None),
        Some(it) => str_of(it)
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| FhirPathError::Type(format!("{f}() expects a string argument"))),
    }
}

fn int_arg(ev: &Evaluator<'_>, arg: &Expr, env: &Env<'_, '_>, f: &str) -> Res<Option<i64>> {
    let v = ev.eval_arg(arg, env)?;
    match singleton(&v, f)? {
        None => Ok(None),
        Some(it) => match prim(it) {
            Prim::Int(i) => Ok(Some(i)),
            _ => Err(FhirPathError::Type(format!(
                "{f}() expects an integer argument"
            ))),
        },
    }
}

/// Runs `body` once per item with `$this`/`$index` bound.
fn each<'a, T>(
    ev: &Evaluator<'a>,
    focus: &[Item<'a>],
    arg: &Expr,
    env: &Env<'_, 'a>,
    mut f: impl FnMut(&Item<'a>, Vec<Item<'a>>) -> Res<Option<T>>,
) -> Res<Option<T>> {
    for (i, it) in focus.iter().enumerate() {
        let scope = Env {
            this: it,
            index: Some(i as i64),
            total: env.total,
        };
        let r = ev.eval(arg, slice::from_ref(it), &scope)?;
        if let Some(t) = f(it, r)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

pub(crate) fn call<'a>(
    ev: &Evaluator<'a>,
    name: &str,
    focus: Vec<Item<'a>>,
    args: &[Expr],
    env: &Env<'_, 'a>,
) -> Res<Vec<Item<'a>>> {
    let unsupported = |why: &str| Err(FhirPathError::Unsupported(format!("{name}(): {why}")));
    Ok(match name {
        // --- existence
        "empty" => b(focus.is_empty()),
        "exists" => match args.first() {
            None => b(!focus.is_empty()),
            Some(a) => b(each(ev, &focus, a, env, |_, r| {
                Ok(to_bool(&r, "exists")?.filter(|x| *x))
            })?
            .is_some()),
        },
        "all" => b(each(ev, &focus, &args[0], env, |_, r| {
            Ok((to_bool(&r, "all")? != Some(true)).then_some(()))
        })?
        .is_none()),
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            let mut vals = vec![];
            for it in &focus {
                match prim(it) {
                    Prim::Bool(x) => vals.push(x),
                    _ => return Err(FhirPathError::Type(format!("{name}() needs booleans"))),
                }
            }
            b(match name {
                "allTrue" => vals.iter().all(|x| *x),
                "anyTrue" => vals.iter().any(|x| *x),
                "allFalse" => vals.iter().all(|x| !*x),
                _ => vals.iter().any(|x| !*x),
            })
        }
        "subsetOf" | "supersetOf" => {
            let other = ev.eval_arg(&args[0], env)?;
            let (small, big) = if name == "subsetOf" {
                (&focus, &other)
            } else {
                (&other, &focus)
            };
            b(small.iter().all(|x| contains_item(big, x)))
        }
        "count" => vec![Item::Integer(focus.len() as i64)],
        "distinct" => union(focus, vec![]),
        "isDistinct" => {
            let n = focus.len();
            b(union(focus, vec![]).len() == n)
        }
        // --- filtering and projection
        "where" => {
            let mut out = vec![];
            each(ev, &focus, &args[0], env, |it, r| {
                if to_bool(&r, "where")? == Some(true) {
                    out.push(it.clone());
                }
                Ok(None::<()>)
            })?;
            out
        }
        "select" => {
            let mut out = vec![];
            each(ev, &focus, &args[0], env, |_, r| {
                out.extend(r);
                Ok(None::<()>)
            })?;
            out
        }
        "repeat" => {
            let mut out: Vec<Item<'a>> = vec![];
            let mut frontier = focus;
            while !frontier.is_empty() {
                let mut next = vec![];
                each(ev, &frontier, &args[0], env, |_, r| {
                    next.extend(r);
                    Ok(None::<()>)
                })?;
                frontier = vec![];
                for it in next {
                    if !contains_item(&out, &it) {
                        out.push(it.clone());
                        frontier.push(it);
                    }
                }
            }
            out
        }
        "aggregate" => {
            let mut total = match args.get(1) {
                Some(init) => ev.eval_arg(init, env)?,
                None => vec![],
            };
            for (i, it) in focus.iter().enumerate() {
                let scope = Env {
                    this: it,
                    index: Some(i as i64),
                    total: Some(&total),
                };
                let r = ev.eval(&args[0], slice::from_ref(it), &scope)?;
                total = r;
            }
            total
        }
        // --- subsetting
        "first" => one(focus.into_iter().next()),
        "last" => one(focus.into_iter().last()),
        "tail" => focus.into_iter().skip(1).collect(),
        "single" => match focus.len() {
            0 | 1 => focus,
            n => {
                return Err(FhirPathError::NotSingleton {
                    what: "single()".into(),
                    count: n,
                })
            }
        },
        "skip" | "take" => {
            let n = int_arg(ev, &args[0], env, name)?.unwrap_or(0).max(0) as usize;
            if name == "skip" {
                focus.into_iter().skip(n).collect()
            } else {
                focus.into_iter().take(n).collect()
            }
        }
        "intersect" => {
            let other = ev.eval_arg(&args[0], env)?;
            let keep: Vec<_> = focus
                .into_iter()
                .filter(|x| contains_item(&other, x))
                .collect();
            union(keep, vec![])
        }
        "exclude" => {
            let other = ev.eval_arg(&args[0], env)?;
            focus
                .into_iter()
                .filter(|x| !contains_item(&other, x))
                .collect()
        }
        // --- combining
        "union" => union(focus, ev.eval_arg(&args[0], env)?),
        "combine" => {
            let mut f = focus;
            f.extend(ev.eval_arg(&args[0], env)?);
            f
        }
        "iif" => {
            // Arguments are evaluated on the (single) input item, if any.
            if focus.len() > 1 {
                return Err(FhirPathError::NotSingleton {
                    what: "iif()".into(),
                    count: focus.len(),
                });
            }
            let scope = Env {
                this: focus.first().unwrap_or(env.this),
                index: env.index,
                total: env.total,
            };
            let c = ev.eval_arg(&args[0], &scope)?;
            let cond = match singleton(&c, "iif")? {
                None => false,
                Some(it) => match prim(it) {
                    Prim::Bool(x) => x,
                    _ => {
                        return Err(FhirPathError::Type(
                            "iif() criterion must be a boolean".into(),
                        ))
                    }
                },
            };
            if cond {
                ev.eval_arg(&args[1], &scope)?
            } else if let Some(e) = args.get(2) {
                ev.eval_arg(e, &scope)?
            } else {
                vec![]
            }
        }
        // --- boolean
        "not" => match to_bool(&focus, "not")? {
            None => vec![],
            Some(x) => b(!x),
        },
        // --- conversion
        "toBoolean" | "convertsToBoolean" | "toInteger" | "convertsToInteger" | "toDecimal"
        | "convertsToDecimal" | "toString" | "convertsToString" | "toDate" | "convertsToDate"
        | "toDateTime" | "convertsToDateTime" | "toTime" | "convertsToTime" | "toQuantity"
        | "convertsToQuantity" => {
            let Some(it) = singleton(&focus, name)? else {
                return Ok(vec![]);
            };
            let target = name
                .trim_start_matches("convertsTo")
                .trim_start_matches("to");
            let r = convert(it, target)?;
            if name.starts_with("convertsTo") {
                b(r.is_some())
            } else {
                one(r)
            }
        }
        // --- strings
        "indexOf" | "substring" | "startsWith" | "endsWith" | "contains" | "upper" | "lower"
        | "replace" | "length" | "toChars" | "trim" | "split" | "encode" | "decode" | "escape"
        | "unescape" | "matches" | "matchesFull" | "replaceMatches" => {
            let Some(it) = singleton(&focus, name)? else {
                return Ok(vec![]);
            };
            let Some(s) = str_of(it).map(str::to_string) else {
                return Err(FhirPathError::Type(format!(
                    "{name}() needs a string input"
                )));
            };
            strings::call(ev, name, &s, args, env)?
        }
        "join" => {
            let sep = match args.first() {
                Some(a) => str_arg(ev, a, env, name)?.unwrap_or_default(),
                None => String::new(),
            };
            let parts: Option<Vec<&str>> = focus.iter().map(str_of).collect();
            let parts = parts.ok_or_else(|| FhirPathError::Type("join() needs strings".into()))?;
            vec![Item::String(parts.join(&sep))]
        }
        // --- math
        "abs" | "ceiling" | "exp" | "floor" | "ln" | "sqrt" | "truncate" | "round" | "log"
        | "power" => {
            let Some(it) = singleton(&focus, name)? else {
                return Ok(vec![]);
            };
            math::call(ev, name, it, args, env)?
        }
        // --- utility
        "trace" => focus,
        "now" => vec![Item::DateTime(now_text())],
        "today" => vec![Item::Date(now_text()[..10].to_string())],
        "timeOfDay" => vec![Item::Time(now_text()[11..23].to_string())],
        "children" => {
            let mut out = vec![];
            for it in &focus {
                all_children(it, &mut out);
            }
            out
        }
        "descendants" => {
            let mut out = vec![];
            let mut frontier = focus;
            while !frontier.is_empty() {
                let mut next = vec![];
                for it in &frontier {
                    all_children(it, &mut next);
                }
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        // --- FHIR additions
        "extension" | "hasExtension" => {
            let Some(url) = str_arg(ev, &args[0], env, name)? else {
                return Ok(if name == "extension" {
                    vec![]
                } else {
                    b(false)
                });
            };
            let mut out = vec![];
            for it in &focus {
                let mut exts = vec![];
                children(it, "extension", &mut exts)?;
                if let Item::Node(n) = it {
                    if let Some(x) = n.ext {
                        children(&Item::node(x, None, None), "extension", &mut exts)?;
                    }
                }
                out.extend(exts.into_iter().filter(|e| {
                    e.as_json()
                        .and_then(|v| v.get("url"))
                        .and_then(Value::as_str)
                        == Some(url.as_str())
                }));
            }
            if name == "extension" {
                out
            } else {
                b(!out.is_empty())
            }
        }
        "hasValue" => b(matches!(&focus[..], [Item::Node(n)] if !n.value.is_object())),
        // FHIR's addition for txt-1 and txt-2: the narrative rules on an XHTML `div`.
        "htmlChecks" => match singleton(&focus, "htmlChecks")? {
            None => vec![],
            Some(it) => match str_of(it) {
                Some(div) => b(html_checks(div)?),
                None => b(false),
            },
        },
        "getValue" => match &focus[..] {
            [Item::Node(n)] if !n.value.is_object() => focus,
            _ => vec![],
        },
        "resolve" => {
            let mut out = vec![];
            for it in &focus {
                if let Some(r) = resolve(ev.root, ev.root_resource, it) {
                    out.push(r);
                }
            }
            out
        }
        "type" => return unsupported("type reflection is not implemented"),
        _ => return unsupported("needs terminology services or the full FHIR type model"),
    })
}

/// `htmlChecks()` on a narrative `div` (FHIR's FHIRPath additions: the XHTML rules of the
/// narrative page, as the XML reader applies them). A `div` that is not well-formed XML fails;
/// one that uses an entity XML does not define (HTML's `&nbsp;`: the parser reads no DTD) is
/// not judged.
fn html_checks(div: &str) -> Res<bool> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    match roxmltree::Document::parse_with_options(div, options) {
        Ok(document) => Ok(crate::fhir::xml::narrative::check(document.root_element()).is_ok()),
        Err(roxmltree::Error::UnknownEntityReference(name, _)) => {
            Err(FhirPathError::Unsupported(format!(
                "htmlChecks(): the narrative uses the entity '&{name};', which XML does not define"
            )))
        }
        Err(_) => Ok(false),
    }
}

/// All child nodes of an object node, in document order.
fn all_children<'a>(it: &Item<'a>, out: &mut Vec<Item<'a>>) {
    if let Item::Node(n) = it {
        if let Value::Object(m) = n.value {
            for (k, v) in m {
                if k.starts_with('_') || k == "resourceType" {
                    continue;
                }
                let mut tmp = vec![];
                let _ = children(it, k, &mut tmp);
                let _ = v;
                out.extend(tmp);
            }
        }
    }
}

/// `resolve()` for one item: a contained resource (`#id`), a Bundle entry
/// with the same `fullUrl`, or else a [`Item::Resolved`] carrying the type
/// named by the reference text or `Reference.type`.
///
/// `#id` is looked up among the contained resources of `root_resource` (the container, when
/// `root` is itself contained: contained resources reference each other and the container
/// through it).
fn resolve<'a>(root: &'a Value, root_resource: &'a Value, it: &Item<'a>) -> Option<Item<'a>> {
    let Item::Node(n) = it else { return None };
    let (reference, ty) = match n.value {
        Value::String(s) => (Some(s.as_str()), None),
        Value::Object(o) => (
            o.get("reference").and_then(Value::as_str),
            o.get("type").and_then(Value::as_str),
        ),
        _ => return None,
    };
    if let Some(r) = reference {
        if let Some(id) = r.strip_prefix('#') {
            if id.is_empty() {
                return Some(Item::node(root_resource, None, None));
            }
            let contained = root_resource.get("contained")?.as_array()?;
            return contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                .map(|c| Item::node(c, None, None));
        }
        if root.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let entries = root.get("entry").and_then(Value::as_array);
            if let Some(e) = entries
                .into_iter()
                .flatten()
                .find(|e| e.get("fullUrl").and_then(Value::as_str) == Some(r))
            {
                if let Some(res) = e.get("resource") {
                    return Some(Item::node(res, None, None));
                }
            }
        }
        if let Some(t) = type_from_reference(r) {
            return Some(Item::Resolved {
                resource_type: t,
                reference: r,
            });
        }
    }
    ty.map(|t| Item::Resolved {
        resource_type: t,
        reference: reference.unwrap_or(t),
    })
}

/// The resource type in `Type/id`, `http://…/Type/id` or with `/_history/v`.
fn type_from_reference(r: &str) -> Option<&str> {
    let r = r.split(['?', '#']).next()?;
    let mut segs: Vec<&str> = r.split('/').collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    if segs.len() < 2 {
        return None;
    }
    let (t, id) = (segs[segs.len() - 2], segs[segs.len() - 1]);
    let type_ok = t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphabetic());
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (type_ok && id_ok).then_some(t)
}

/// Conversion to a System type; `Ok(None)` when not convertible.
fn convert<'a>(it: &Item<'a>, target: &str) -> Res<Option<Item<'a>>> {
    let p = prim(it);
    Ok(match target {
        "Boolean" => match p {
            Prim::Bool(x) => Some(Item::Boolean(x)),
            Prim::Int(1) => Some(Item::Boolean(true)),
            Prim::Int(0) => Some(Item::Boolean(false)),
            Prim::Dec(d) if d == Decimal::from_i64(1) => Some(Item::Boolean(true)),
            Prim::Dec(d) if d == Decimal::from_i64(0) => Some(Item::Boolean(false)),
            Prim::Str(s) | Prim::UntypedStr(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Boolean(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Boolean(false)),
                _ => None,
            },
            _ => None,
        },
        "Integer" => match p {
            Prim::Int(i) => Some(Item::Integer(i)),
            Prim::Bool(x) => Some(Item::Integer(x as i64)),
            Prim::Str(s) | Prim::UntypedStr(s) => {
                let t = s.strip_prefix('+').unwrap_or(s);
                let digits = t.strip_prefix('-').unwrap_or(t);
                (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| t.parse().ok().map(Item::Integer))
                    .flatten()
            }
            _ => None,
        },
        "Decimal" => match p {
            Prim::Int(i) => Some(Item::Decimal(Decimal::from_i64(i))),
            Prim::Dec(d) => Some(Item::Decimal(d)),
            Prim::Bool(x) => Some(Item::Decimal(Decimal::from_i64(x as i64))),
            Prim::Str(s) | Prim::UntypedStr(s) if !s.contains(['e', 'E']) => {
                Decimal::parse(s).map(Item::Decimal)
            }
            _ => None,
        },
        "String" => match p {
            Prim::Str(s) | Prim::UntypedStr(s) => Some(Item::String(s.to_string())),
            Prim::Bool(x) => Some(Item::String(x.to_string())),
            Prim::Int(i) => Some(Item::String(i.to_string())),
            Prim::Dec(d) => Some(Item::String(d.to_string())),
            Prim::Qty(v, u) => Some(Item::String(if is_calendar_unit(&u) {
                format!("{v} {u}")
            } else {
                format!("{v} '{u}'")
            })),
            Prim::Dt(d) => Some(Item::String(d.to_text())),
            _ => None,
        },
        "Date" | "DateTime" | "Time" => {
            let kind = match target {
                "Date" => Kind::Date,
                "DateTime" => Kind::DateTime,
                _ => Kind::Time,
            };
            let parsed = match p {
                Prim::Str(s) | Prim::UntypedStr(s) => PartialDt::parse(s, kind),
                Prim::Dt(d) if d.kind == kind => Some(d),
                Prim::Dt(d) if d.kind == Kind::Date && kind == Kind::DateTime => {
                    PartialDt::parse(&d.to_text(), kind)
                }
                Prim::Dt(d) if d.kind == Kind::DateTime && kind == Kind::Date => {
                    PartialDt::parse(d.to_text().split('T').next().unwrap_or(""), kind)
                }
                _ => None,
            };
            parsed.map(|d| match kind {
                Kind::Date => Item::Date(d.to_text()),
                Kind::DateTime => Item::DateTime(d.to_text()),
                Kind::Time => Item::Time(d.to_text()),
            })
        }
        "Quantity" => match p {
            Prim::Qty(v, u) => Some(Item::Quantity { value: v, unit: u }),
            Prim::Int(_) | Prim::Dec(_) | Prim::Bool(_) => {
                let Some(Item::Decimal(value)) = convert(it, "Decimal")? else {
                    return Ok(None);
                };
                Some(Item::Quantity {
                    value,
                    unit: "1".into(),
                })
            }
            Prim::Str(s) | Prim::UntypedStr(s) => parse_quantity(s),
            _ => None,
        },
        _ => None,
    })
}

/// Parses `1.5 'mg'`, `1 day` or a bare number as a quantity.
fn parse_quantity<'a>(s: &str) -> Option<Item<'a>> {
    let s = s.trim();
    let (num, rest) = match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    let value = Decimal::parse(num).filter(|_| !num.contains(['e', 'E']))?;
    let unit = if rest.is_empty() {
        "1".to_string()
    } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        u.to_string()
    } else if is_calendar_unit(rest) {
        rest.to_string()
    } else {
        return None;
    };
    Some(Item::Quantity { value, unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_types() {
        assert_eq!(type_from_reference("Patient/123"), Some("Patient"));
        assert_eq!(
            type_from_reference("http://example.org/fhir/Observation/1/_history/2"),
            Some("Observation")
        );
        assert_eq!(type_from_reference("urn:uuid:1234"), None);
        assert_eq!(type_from_reference("patient/1"), None);
    }
}
