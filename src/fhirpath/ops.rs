//! Operator semantics: equality/equivalence, ordering, arithmetic, boolean
//! logic, union and membership.
//!
//! Operands are brought to FHIRPath System values first ([`Prim`]): a JSON
//! node becomes Boolean/Integer/Decimal/String, or Date/DateTime/Time when
//! its choice type says so, or Quantity when typed as one. A string node of
//! unknown type compared with a date literal is read as a date, since the
//! JSON cannot say whether it was `string` or `date`.

use std::cmp::Ordering;

use serde_json::Value;

use super::datetime::{Kind, PartialDt};
use super::decimal::Decimal;
use super::eval::{Env, Evaluator, Res};
use super::model::fhir_type_matches;
use super::parser::{BinOp, Expr};
use super::{FhirPathError, Item, Node};

/// A System-typed view of an item.
#[derive(Clone, Debug)]
pub(crate) enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'x str),
    /// A string node whose FHIR type is unknown (may be a date).
    UntypedStr(&'x str),
    Dt(PartialDt),
    Qty(Decimal, String),
    /// An object node (compared structurally).
    Obj(&'x Value),
    Other,
}

pub(crate) fn number_prim<'x>(n: &serde_json::Number) -> Prim<'x> {
    let t = n.to_string();
    if !t.contains(['.', 'e', 'E']) {
        if let Ok(i) = t.parse::<i64>() {
            return Prim::Int(i);
        }
    }
    Decimal::parse(&t).map(Prim::Dec).unwrap_or(Prim::Other)
}

pub(crate) fn prim<'x>(it: &'x Item<'_>) -> Prim<'x> {
    match it {
        Item::Boolean(b) => Prim::Bool(*b),
        Item::Integer(i) => Prim::Int(*i),
        Item::Decimal(d) => Prim::Dec(*d),
        Item::String(s) => Prim::Str(s),
        Item::Date(s) => dt(s, Kind::Date),
        Item::DateTime(s) => dt(s, Kind::DateTime),
        Item::Time(s) => dt(s, Kind::Time),
        Item::Quantity { value, unit } => Prim::Qty(*value, unit.clone()),
        Item::Node(n) => node_prim(n),
        Item::Resolved { .. } => Prim::Other,
    }
}

fn dt<'x>(s: &str, k: Kind) -> Prim<'x> {
    PartialDt::parse(s, k).map(Prim::Dt).unwrap_or(Prim::Other)
}

fn node_prim<'x>(n: &'x Node<'_>) -> Prim<'x> {
    match n.value {
        Value::Bool(b) => Prim::Bool(*b),
        Value::Number(num) => match (n.type_name, number_prim(num)) {
            (Some("decimal"), Prim::Int(i)) => Prim::Dec(Decimal::from_i64(i)),
            (_, p) => p,
        },
        Value::String(s) => match n.type_name {
            Some("date") => dt(s, Kind::Date),
            Some("dateTime") | Some("instant") => dt(s, Kind::DateTime),
            Some("time") => dt(s, Kind::Time),
            Some(_) => Prim::Str(s),
            None => Prim::UntypedStr(s),
        },
        Value::Object(o) => match n.type_name {
            Some(t) if fhir_type_matches(t, false, "Quantity") => {
                let v = o.get("value").and_then(|v| match v {
                    Value::Number(x) => Decimal::parse(&x.to_string()),
                    _ => None,
                });
                let unit = o
                    .get("code")
                    .or_else(|| o.get("unit"))
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                match v {
                    Some(v) => Prim::Qty(v, unit.to_string()),
                    None => Prim::Obj(n.value),
                }
            }
            _ => Prim::Obj(n.value),
        },
        _ => Prim::Other,
    }
}

/// The single item of a collection, `None` when empty, error when several.
pub(crate) fn singleton<'c, 'a>(c: &'c [Item<'a>], what: &str) -> Res<Option<&'c Item<'a>>> {
    match c {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => Err(FhirPathError::NotSingleton {
            what: what.to_string(),
            count: c.len(),
        }),
    }
}

/// Singleton evaluation of a collection as a Boolean (empty → `None`).
pub(crate) fn to_bool(c: &[Item<'_>], what: &str) -> Res<Option<bool>> {
    Ok(match singleton(c, what)? {
        None => None,
        Some(it) => match prim(it) {
            Prim::Bool(b) => Some(b),
            _ => Some(true),
        },
    })
}

fn to_dec(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

/// Units with a fixed factor to a base unit, for comparing quantities.
const UNITS: &[(&str, &str, &str)] = &[
    ("kg", "g", "1000"),
    ("g", "g", "1"),
    ("mg", "g", "0.001"),
    ("ug", "g", "0.000001"),
    ("[lb_av]", "g", "453.59237"),
    ("[oz_av]", "g", "28.349523125"),
    ("km", "m", "1000"),
    ("m", "m", "1"),
    ("cm", "m", "0.01"),
    ("mm", "m", "0.001"),
    ("L", "L", "1"),
    ("dL", "L", "0.1"),
    ("mL", "L", "0.001"),
    ("wk", "s", "604800"),
    ("d", "s", "86400"),
    ("h", "s", "3600"),
    ("min", "s", "60"),
    ("s", "s", "1"),
    ("ms", "s", "0.001"),
];

/// Calendar keywords equal to a UCUM unit for comparison (not year/month).
fn canonical_unit(u: &str) -> &str {
    match u {
        "week" | "weeks" => "wk",
        "day" | "days" => "d",
        "hour" | "hours" => "h",
        "minute" | "minutes" => "min",
        "second" | "seconds" => "s",
        "millisecond" | "milliseconds" => "ms",
        "years" => "year",
        "months" => "month",
        other => other,
    }
}

/// Both quantities in a common unit, or `None` when not comparable.
pub(crate) fn align_qty(a: Decimal, ua: &str, b: Decimal, ub: &str) -> Option<(Decimal, Decimal)> {
    let (ua, ub) = (canonical_unit(ua), canonical_unit(ub));
    if ua == ub {
        return Some((a, b));
    }
    let f = |u: &str| {
        UNITS
            .iter()
            .find(|(n, _, _)| *n == u)
            .map(|(_, base, fac)| (*base, Decimal::parse(fac).unwrap()))
    };
    let ((ba, fa), (bb, fb)) = (f(ua)?, f(ub)?);
    if ba != bb {
        return None;
    }
    Some((a.checked_mul(fa)?, b.checked_mul(fb)?))
}

/// True when both units are in [`UNITS`] but measure different things.
fn different_dimensions(ua: &str, ub: &str) -> bool {
    let base = |u: &str| {
        UNITS
            .iter()
            .find(|(n, _, _)| *n == canonical_unit(u))
            .map(|(_, b, _)| *b)
    };
    matches!((base(ua), base(ub)), (Some(x), Some(y)) if x != y)
}

/// Date-ish values of both sides, reading an untyped string as a date when
/// the other side is one.
fn dt_pair(a: &Prim<'_>, b: &Prim<'_>) -> Option<(PartialDt, PartialDt)> {
    let as_kind = |s: &str, other: &PartialDt| {
        let k = if other.kind == Kind::Time {
            Kind::Time
        } else {
            Kind::DateTime
        };
        PartialDt::parse(s, k)
    };
    match (a, b) {
        (Prim::Dt(x), Prim::Dt(y)) => {
            let compatible = (x.kind == Kind::Time) == (y.kind == Kind::Time);
            compatible.then_some((*x, *y))
        }
        (Prim::UntypedStr(s), Prim::Dt(y)) => Some((as_kind(s, y)?, *y)),
        (Prim::Dt(x), Prim::UntypedStr(s)) => Some((*x, as_kind(s, x)?)),
        // Two values of unknown type that both read as dates with a time part (a Period's
        // `start` and `end` reached without their types): compared as instants, so the
        // offsets count (`01:46-04:00` is before `01:31-05:00`), not as text.
        (Prim::UntypedStr(x), Prim::UntypedStr(y)) if x.contains('T') && y.contains('T') => Some((
            PartialDt::parse(x, Kind::DateTime)?,
            PartialDt::parse(y, Kind::DateTime)?,
        )),
        _ => None,
    }
}

/// `=` on two items: `None` means unknown (empty result).
pub(crate) fn item_eq(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    let (pa, pb) = (prim(a), prim(b));
    if let Some((x, y)) = dt_pair(&pa, &pb) {
        return x.compare(&y).map(|o| o == Ordering::Equal);
    }
    Some(match (&pa, &pb) {
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Str(x) | Prim::UntypedStr(x), Prim::Str(y) | Prim::UntypedStr(y)) => x == y,
        (Prim::Qty(x, ux), Prim::Qty(y, uy)) => match align_qty(*x, ux, *y, uy) {
            Some((x, y)) => x == y,
            // Known units of different dimensions are simply unequal.
            None if different_dimensions(ux, uy) => false,
            None => return None,
        },
        (Prim::Obj(x), Prim::Obj(y)) => x == y,
        (Prim::Obj(x), Prim::Qty(..)) | (Prim::Qty(..), Prim::Obj(x)) => {
            let _ = x;
            false
        }
        _ => match (to_dec(&pa), to_dec(&pb)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    })
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `~` on two items.
pub(crate) fn item_equiv(a: &Item<'_>, b: &Item<'_>) -> bool {
    let (pa, pb) = (prim(a), prim(b));
    if let Some((x, y)) = dt_pair(&pa, &pb) {
        return x.precision() == y.precision() && x.compare(&y) == Some(Ordering::Equal);
    }
    match (&pa, &pb) {
        (Prim::Str(x) | Prim::UntypedStr(x), Prim::Str(y) | Prim::UntypedStr(y)) => {
            norm_ws(x) == norm_ws(y)
        }
        (Prim::Qty(x, ux), Prim::Qty(y, uy)) => match align_qty(*x, ux, *y, uy) {
            Some((x, y)) => dec_equiv(x, y),
            None => false,
        },
        _ => match (to_dec(&pa), to_dec(&pb)) {
            (Some(x), Some(y)) => dec_equiv(x, y),
            _ => item_eq(a, b) == Some(true),
        },
    }
}

/// Decimal equivalence: equal when rounded to the lesser precision.
fn dec_equiv(x: Decimal, y: Decimal) -> bool {
    let (x, y) = (x.normalized(), y.normalized());
    let s = x.scale().min(y.scale());
    x.round(s) == y.round(s)
}

/// Ordering of two items for `<` etc.; `Ok(None)` means unknown.
pub(crate) fn item_cmp(a: &Item<'_>, b: &Item<'_>) -> Res<Option<Ordering>> {
    let (pa, pb) = (prim(a), prim(b));
    if let Some((x, y)) = dt_pair(&pa, &pb) {
        return Ok(x.compare(&y));
    }
    match (&pa, &pb) {
        (Prim::Str(x) | Prim::UntypedStr(x), Prim::Str(y) | Prim::UntypedStr(y)) => {
            Ok(Some(x.cmp(y)))
        }
        (Prim::Qty(x, ux), Prim::Qty(y, uy)) => {
            Ok(align_qty(*x, ux, *y, uy).map(|(x, y)| x.cmp(&y)))
        }
        _ => match (to_dec(&pa), to_dec(&pb)) {
            (Some(x), Some(y)) => Ok(Some(x.cmp(&y))),
            _ => Err(FhirPathError::Type(format!(
                "cannot compare {pa:?} with {pb:?}"
            ))),
        },
    }
}

/// `=` on collections (ordered, item-wise).
pub(crate) fn coll_eq(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match item_eq(x, y) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    (!unknown).then_some(true)
}

/// `~` on collections (order-independent).
pub(crate) fn coll_equiv(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| item_equiv(x, y)))
}

/// Membership by equality (used by `in`, `contains`, union de-duplication).
pub(crate) fn contains_item(c: &[Item<'_>], it: &Item<'_>) -> bool {
    c.iter().any(|x| item_eq(x, it) == Some(true))
}

/// Appends items of `b` to `a`, dropping duplicates (`|` / `union()`).
pub(crate) fn union<'a>(a: Vec<Item<'a>>, b: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut out: Vec<Item<'a>> = Vec::with_capacity(a.len() + b.len());
    for it in a.into_iter().chain(b) {
        if !contains_item(&out, &it) {
            out.push(it);
        }
    }
    out
}

pub(crate) fn negate<'a>(it: &Item<'a>) -> Res<Item<'a>> {
    Ok(match prim(it) {
        Prim::Int(i) => Item::Integer(
            i.checked_neg()
                .ok_or_else(|| FhirPathError::Type("integer overflow".into()))?,
        ),
        Prim::Dec(d) => Item::Decimal(d.negated()),
        Prim::Qty(v, u) => Item::Quantity {
            value: v.negated(),
            unit: u,
        },
        p => return Err(FhirPathError::Type(format!("cannot negate {p:?}"))),
    })
}

fn bool_item<'a>(b: Option<bool>) -> Vec<Item<'a>> {
    b.map(Item::Boolean).into_iter().collect()
}

pub(crate) fn binary<'a>(
    ev: &Evaluator<'a>,
    op: BinOp,
    l: &Expr,
    r: &Expr,
    input: &[Item<'a>],
    env: &Env<'_, 'a>,
) -> Res<Vec<Item<'a>>> {
    let lv = ev.eval(l, input, env)?;
    // Short-circuit the boolean operators where the left side decides.
    match op {
        BinOp::And if to_bool(&lv, "and")? == Some(false) => return Ok(bool_item(Some(false))),
        BinOp::Or if to_bool(&lv, "or")? == Some(true) => return Ok(bool_item(Some(true))),
        BinOp::Implies if to_bool(&lv, "implies")? == Some(false) => {
            return Ok(bool_item(Some(true)))
        }
        _ => {}
    }
    let rv = ev.eval(r, input, env)?;
    use BinOp::*;
    Ok(match op {
        Union => union(lv, rv),
        Eq => bool_item(coll_eq(&lv, &rv)),
        Ne => bool_item(coll_eq(&lv, &rv).map(|b| !b)),
        Equiv => bool_item(Some(coll_equiv(&lv, &rv))),
        NotEquiv => bool_item(Some(!coll_equiv(&lv, &rv))),
        Lt | Gt | Le | Ge => {
            let (Some(a), Some(b)) = (singleton(&lv, "comparison")?, singleton(&rv, "comparison")?)
            else {
                return Ok(vec![]);
            };
            bool_item(item_cmp(a, b)?.map(|o| match op {
                Lt => o == Ordering::Less,
                Gt => o == Ordering::Greater,
                Le => o != Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        In | Contains => {
            let (elem, coll) = if op == In { (&lv, &rv) } else { (&rv, &lv) };
            match singleton(elem, "membership")? {
                None => vec![],
                Some(e) => bool_item(Some(contains_item(coll, e))),
            }
        }
        And | Or | Xor | Implies => {
            let (a, b) = (
                to_bool(&lv, "boolean operator")?,
                to_bool(&rv, "boolean operator")?,
            );
            bool_item(match op {
                And => match (a, b) {
                    (Some(true), Some(true)) => Some(true),
                    (_, Some(false)) => Some(false),
                    _ => None,
                },
                Or => match (a, b) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
                Xor => a.zip(b).map(|(x, y)| x != y),
                _ => match (a, b) {
                    (Some(true), b) => b,
                    (None, Some(true)) => Some(true),
                    _ => None,
                },
            })
        }
        Concat => {
            let s = |c: &[Item<'_>]| -> Res<String> {
                Ok(match singleton(c, "&")? {
                    None => String::new(),
                    Some(it) => match prim(it) {
                        Prim::Str(s) | Prim::UntypedStr(s) => s.to_string(),
                        p => {
                            return Err(FhirPathError::Type(format!("& needs strings, got {p:?}")))
                        }
                    },
                })
            };
            vec![Item::String(s(&lv)? + &s(&rv)?)]
        }
        Add | Sub | Mul | Div | IntDiv | Mod => {
            let (Some(a), Some(b)) = (singleton(&lv, "arithmetic")?, singleton(&rv, "arithmetic")?)
            else {
                return Ok(vec![]);
            };
            arith(op, a, b)?.into_iter().collect()
        }
    })
}

/// Arithmetic on two single items; `Ok(None)` for empty results (overflow,
/// division by zero).
fn arith<'a>(op: BinOp, a: &Item<'a>, b: &Item<'a>) -> Res<Option<Item<'a>>> {
    use BinOp::*;
    let (pa, pb) = (prim(a), prim(b));
    let type_err = || FhirPathError::Type(format!("cannot apply {op:?} to {pa:?} and {pb:?}"));
    match (&pa, &pb) {
        (Prim::Int(x), Prim::Int(y)) if op != Div => {
            return Ok(match op {
                Add => x.checked_add(*y),
                Sub => x.checked_sub(*y),
                Mul => x.checked_mul(*y),
                IntDiv => (*y != 0).then(|| x.checked_div(*y)).flatten(),
                _ => (*y != 0).then(|| x.checked_rem(*y)).flatten(),
            }
            .map(Item::Integer));
        }
        (Prim::Str(x) | Prim::UntypedStr(x), Prim::Str(y) | Prim::UntypedStr(y)) if op == Add => {
            return Ok(Some(Item::String(format!("{x}{y}"))));
        }
        (Prim::Dt(d), Prim::Qty(v, u)) if op == Add || op == Sub => {
            let v = if op == Sub { v.negated() } else { *v };
            let r = d.add(v, u).map_err(FhirPathError::Type)?;
            let text = r.to_text();
            return Ok(Some(match r.kind {
                Kind::Date => Item::Date(text),
                Kind::DateTime => Item::DateTime(text),
                Kind::Time => Item::Time(text),
            }));
        }
        (Prim::Qty(x, ux), Prim::Qty(y, uy)) if op == Add || op == Sub => {
            let Some((x2, y2)) = align_qty(*x, ux, *y, uy) else {
                return Ok(None);
            };
            if canonical_unit(ux) != canonical_unit(uy) {
                return Err(FhirPathError::Unsupported(
                    "quantity arithmetic across units".into(),
                ));
            }
            let v = if op == Add {
                x2.checked_add(y2)
            } else {
                x2.checked_sub(y2)
            };
            return Ok(v.map(|value| Item::Quantity {
                value,
                unit: ux.clone(),
            }));
        }
        (Prim::Qty(x, u), _) if matches!(op, Mul | Div) => {
            let y = to_dec(&pb).ok_or_else(type_err)?;
            let v = if op == Mul {
                x.checked_mul(y)
            } else {
                x.checked_div(y)
            };
            return Ok(v.map(|value| Item::Quantity {
                value,
                unit: u.clone(),
            }));
        }
        _ => {}
    }
    let (Some(x), Some(y)) = (to_dec(&pa), to_dec(&pb)) else {
        return Err(type_err());
    };
    Ok(match op {
        Add => x.checked_add(y),
        Sub => x.checked_sub(y),
        Mul => x.checked_mul(y),
        Div => x.checked_div(y),
        IntDiv => {
            return Ok(x
                .checked_div_trunc(y)
                .and_then(|d| d.trunc_i64())
                .map(Item::Integer))
        }
        _ => x.checked_rem(y),
    }
    .map(Item::Decimal))
}
