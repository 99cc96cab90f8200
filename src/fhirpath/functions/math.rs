//! FHIRPath's math functions: `abs`, `ceiling`, `floor`,
//! `round`, `sqrt`, `exp`, `ln`, `log`, `power`, `truncate` on a single number.

use super::super::decimal::Decimal;
use super::super::eval::{Env, Evaluator, Res};
use super::super::ops::{prim, singleton, Prim};
use super::super::parser::Expr;
use super::super::{FhirPathError, Item};
use super::{int_arg, one};

/// One math function on a single number.
pub(super) fn call<'a>(
    ev: &Evaluator<'a>,
    name: &str,
    it: &Item<'a>,
    args: &[Expr],
    env: &Env<'_, 'a>,
) -> Res<Vec<Item<'a>>> {
    let p = prim(it);
    let d = match p {
        Prim::Int(i) => Decimal::from_i64(i),
        Prim::Dec(d) => d,
        Prim::Qty(v, ref u) if name == "abs" => {
            return Ok(vec![Item::Quantity {
                value: v.abs(),
                unit: u.clone(),
            }])
        }
        _ => return Err(FhirPathError::Type(format!("{name}() needs a number"))),
    };
    let int = |x: Option<Decimal>| one(x.and_then(|x| x.trunc_i64()).map(Item::Integer));
    let dec = |x: Option<Decimal>| one(x.map(Item::Decimal));
    let float = |x: f64| one(Decimal::from_f64(x).map(Item::Decimal));
    Ok(match name {
        "abs" => match p {
            Prim::Int(i) => one(i.checked_abs().map(Item::Integer)),
            _ => dec(Some(d.abs())),
        },
        "ceiling" => int(d.ceiling()),
        "floor" => int(d.floor()),
        "truncate" => int(d.truncate()),
        "round" => {
            let places = match args.first() {
                Some(a) => int_arg(ev, a, env, name)?.unwrap_or(0),
                None => 0,
            };
            if places < 0 {
                return Err(FhirPathError::Type("round() precision must be >= 0".into()));
            }
            dec(Some(d.round(places as u32)))
        }
        "sqrt" if d.is_negative() => vec![],
        "sqrt" => float(d.to_f64().sqrt()),
        "exp" => float(d.to_f64().exp()),
        "ln" => float(d.to_f64().ln()),
        "log" | "power" => {
            let a = ev.eval_arg(&args[0], env)?;
            let Some(base) = singleton(&a, name)? else {
                return Ok(vec![]);
            };
            let y = match prim(base) {
                Prim::Int(i) => i as f64,
                Prim::Dec(x) => x.to_f64(),
                _ => return Err(FhirPathError::Type(format!("{name}() needs a number"))),
            };
            if name == "log" {
                float(d.to_f64().ln() / y.ln())
            } else {
                match (p, prim(base)) {
                    (Prim::Int(x), Prim::Int(e)) if e >= 0 => one(u32::try_from(e)
                        .ok()
                        .and_then(|e| x.checked_pow(e))
                        .map(Item::Integer)),
                    _ => float(d.to_f64().powf(y)),
                }
            }
        }
        _ => vec![],
    })
}
