//! UCUM, the Unified Code for Units of Measure (<https://ucum.org>): units parsed by UCUM's
//! grammar and reduced to base units with a factor, so quantities in commensurable units
//! (`5.4 mmol/L`, `5400 umol/L`) can be compared and converted.
//!
//! The unit table is `profiles/ucum.json`, generated from the official `ucum-essence.xml` by
//! `scripts/generate_ucum.py`. Special units are non-linear: the temperatures `Cel`, `[degF]`
//! and `[degRe]` are converted (affine, to kelvin) when used alone; the logarithmic and other
//! special units (`[pH]`, `B`, `Np`, `[hp'_X]`, ...) are refused. Arbitrary units (`[IU]`,
//! `[arb'U]`) are each a dimension of their own: `[IU]/L` converts to `[IU]/mL`, never to `g/L`.
//! Mass and amount of substance are different dimensions: `mg/dL` and `mmol/L` are not
//! commensurable (that takes a molar mass, which UCUM does not define).

mod parse;
mod term;

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use parse::AtomInfo;
use term::{Dim, Term};

/// The FHIR `system` of UCUM codes.
pub const SYSTEM: &str = "http://unitsofmeasure.org";

/// A value in canonical base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub value: f64,
    /// The canonical base-unit string (`g`, `m-3.g`, `1`): equal dimensions give equal strings.
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UcumError {
    #[error("'{unit}' is not a valid UCUM unit: {reason}")]
    Malformed { unit: String, reason: String },
    #[error("'{0}' is not a UCUM unit")]
    Unknown(String),
    #[error("'{unit}': {reason}")]
    Special { unit: String, reason: String },
    #[error("'{from}' and '{to}' are not commensurable")]
    Incommensurable { from: String, to: String },
    #[error("{0} is not a finite number")]
    NotFinite(f64),
}

/// Converts `value` in `unit` to canonical base units.
pub fn canonical(value: f64, unit: &str) -> Result<Canonical, UcumError> {
    let unit = Unit::interpret(unit)?;
    Ok(Canonical {
        value: finite(unit.to_base(value)?)?,
        unit: unit.scale().symbol(),
    })
}

/// Converts `value` from unit `from` to unit `to`; an error when they are not commensurable.
pub fn convert(value: f64, from: &str, to: &str) -> Result<f64, UcumError> {
    let (source, target) = (Unit::interpret(from)?, Unit::interpret(to)?);
    if source.scale().dims != target.scale().dims {
        return Err(UcumError::Incommensurable {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    finite(target.from_base(source.to_base(value)?)?)
}

/// Rounds to 12 significant digits. Factors are multiplied in binary floating point, so
/// `5400 umol/L` and `5.4 mmol/L` could differ in their last bits; measured values never
/// carry 12 significant digits, so rounding makes equal quantities compare equal.
fn finite(value: f64) -> Result<f64, UcumError> {
    if !value.is_finite() {
        return Err(UcumError::NotFinite(value));
    }
    if value == 0.0 {
        return Ok(0.0);
    }
    Ok(format!("{value:.11e}").parse().unwrap_or(value))
}

/// A unit ready to convert: linear (a factor) or one of the affine temperature scales.
enum Unit {
    Linear(Term),
    Special {
        code: String,
        function: String,
        scale: Term,
    },
}

impl Unit {
    fn interpret(unit: &str) -> Result<Unit, UcumError> {
        let essence = &*ESSENCE;
        // A special unit stands alone, at most with an annotation (`Cel{body}`).
        let bare = match unit.rfind('{') {
            Some(i) if unit.ends_with('}') => &unit[..i],
            _ => unit,
        };
        if let Some(AtomInfo {
            term,
            special: Some(function),
            ..
        }) = essence.atoms.get(bare)
        {
            return match function.as_str() {
                "Cel" | "degF" | "degRe" => Ok(Unit::Special {
                    code: bare.to_owned(),
                    function: function.clone(),
                    scale: term.clone(),
                }),
                _ => Err(UcumError::Special {
                    unit: unit.to_owned(),
                    reason: format!(
                        "{bare} is a special unit on a non-linear scale ({function}); \
                         it is not converted"
                    ),
                }),
            };
        }
        let parsed = parse::parse(unit, &essence.prefixes, &mut |code: &str| {
            Ok(essence.atoms.get(code).cloned())
        })?;
        if parsed.special {
            return Err(UcumError::Special {
                unit: unit.to_owned(),
                reason: "special units (Cel, [degF], [pH], ...) are only converted alone, \
                         without prefix, exponent or other units"
                    .to_owned(),
            });
        }
        Ok(Unit::Linear(parsed.term))
    }

    fn scale(&self) -> &Term {
        match self {
            Unit::Linear(term) | Unit::Special { scale: term, .. } => term,
        }
    }

    fn to_base(&self, value: f64) -> Result<f64, UcumError> {
        if !value.is_finite() {
            return Err(UcumError::NotFinite(value));
        }
        Ok(match self {
            Unit::Linear(term) => value * term.factor,
            Unit::Special {
                function, scale, ..
            } => match function.as_str() {
                "degF" => (value + 459.67) * scale.factor,
                _ => value * scale.factor + 273.15,
            },
        })
    }

    fn from_base(&self, value: f64) -> Result<f64, UcumError> {
        Ok(match self {
            Unit::Linear(term) => value / term.factor,
            Unit::Special {
                function, scale, ..
            } => match function.as_str() {
                "degF" => value / scale.factor - 459.67,
                _ => (value - 273.15) / scale.factor,
            },
        })
    }
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unit::Linear(term) => write!(f, "{} {}", term.factor, term.symbol()),
            Unit::Special { code, .. } => write!(f, "{code}"),
        }
    }
}

#[derive(Deserialize)]
struct Table {
    base: Vec<String>,
    prefixes: HashMap<String, String>,
    units: HashMap<String, UnitDef>,
}

#[derive(Deserialize)]
struct UnitDef {
    value: String,
    unit: String,
    #[serde(default)]
    metric: bool,
    #[serde(default)]
    arbitrary: bool,
    special: Option<String>,
}

/// Every atom reduced to base units, and the prefixes.
struct Essence {
    prefixes: HashMap<String, f64>,
    atoms: HashMap<String, AtomInfo>,
}

static ESSENCE: LazyLock<Essence> = LazyLock::new(|| {
    let table: Table = serde_json::from_str(include_str!("../../profiles/ucum.json"))
        .expect("profiles/ucum.json is valid");
    let prefixes: HashMap<String, f64> = table
        .prefixes
        .iter()
        .map(|(code, value)| (code.clone(), value.parse().expect("prefix value")))
        .collect();
    let mut resolver = Resolver {
        table: &table,
        prefixes: &prefixes,
        done: HashMap::new(),
        stack: Vec::new(),
    };
    for code in table.base.iter().chain(table.units.keys()) {
        if let Err(e) = resolver.atom(code) {
            // Kept out of the table: such a unit is reported as unknown.
            tracing::warn!(unit = code, error = %e, "UCUM unit definition not resolved");
        }
    }
    Essence {
        atoms: resolver.done,
        prefixes,
    }
});

/// Reduces atoms to base units by parsing their definitions, depth first.
struct Resolver<'t> {
    table: &'t Table,
    prefixes: &'t HashMap<String, f64>,
    done: HashMap<String, AtomInfo>,
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn atom(&mut self, code: &str) -> Result<Option<AtomInfo>, UcumError> {
        if let Some(info) = self.done.get(code) {
            return Ok(Some(info.clone()));
        }
        let info = if let Some(order) = self.table.base.iter().position(|b| b == code) {
            AtomInfo {
                term: Term::base(Dim {
                    order,
                    symbol: code.to_owned(),
                }),
                metric: true,
                special: None,
            }
        } else {
            let Some(def) = self.table.units.get(code) else {
                return Ok(None);
            };
            if self.stack.iter().any(|c| c == code) {
                return Err(UcumError::Malformed {
                    unit: code.to_owned(),
                    reason: "defined in terms of itself".to_owned(),
                });
            }
            let value: f64 = def.value.parse().map_err(|_| UcumError::Malformed {
                unit: code.to_owned(),
                reason: format!("bad value '{}'", def.value),
            })?;
            let term = if def.arbitrary && def.unit == "1" {
                Term::base(Dim {
                    order: self.table.base.len(),
                    symbol: code.to_owned(),
                })
            } else {
                self.stack.push(code.to_owned());
                let prefixes = self.prefixes;
                let parsed = parse::parse(&def.unit, prefixes, &mut |c: &str| self.atom(c));
                self.stack.pop();
                let parsed = parsed?;
                if parsed.special {
                    return Err(UcumError::Special {
                        unit: code.to_owned(),
                        reason: "defined by a special unit".to_owned(),
                    });
                }
                parsed.term.scaled(value)
            };
            AtomInfo {
                term,
                metric: def.metric,
                special: def.special.clone(),
            }
        };
        self.done.insert(code.to_owned(), info.clone());
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests;
