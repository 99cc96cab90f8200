//! A unit reduced to UCUM's base units: a numeric factor times a product of base units with
//! integer exponents (its dimension).

use std::collections::BTreeMap;

/// One base unit of a dimension. Ordered by `order` (the essence's base-unit order: m, s, g,
/// rad, K, C, cd; arbitrary units after them), then symbol, so that canonical unit strings are
/// deterministic and equal dimensions give equal strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dim {
    pub order: usize,
    pub symbol: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub factor: f64,
    pub dims: BTreeMap<Dim, i32>,
}

impl Term {
    /// The dimensionless unit `1`.
    pub fn one() -> Term {
        Term::number(1.0)
    }

    pub fn number(factor: f64) -> Term {
        Term {
            factor,
            dims: BTreeMap::new(),
        }
    }

    pub fn base(dim: Dim) -> Term {
        Term {
            factor: 1.0,
            dims: BTreeMap::from([(dim, 1)]),
        }
    }

    pub fn scaled(mut self, by: f64) -> Term {
        self.factor *= by;
        self
    }

    pub fn mul(mut self, other: &Term, sign: i32) -> Term {
        self.factor = if sign < 0 {
            self.factor / other.factor
        } else {
            self.factor * other.factor
        };
        for (dim, exp) in &other.dims {
            let e = self.dims.entry(dim.clone()).or_insert(0);
            *e += sign * exp;
            if *e == 0 {
                self.dims.remove(dim);
            }
        }
        self
    }

    pub fn pow(mut self, exp: i32) -> Term {
        self.factor = self.factor.powi(exp);
        self.dims.values_mut().for_each(|e| *e *= exp);
        self.dims.retain(|_, e| *e != 0);
        self
    }

    /// The canonical unit string: base symbols in order joined by `.`, each followed by its
    /// exponent unless 1 (`m-3.g`); `1` when dimensionless.
    pub fn symbol(&self) -> String {
        if self.dims.is_empty() {
            return "1".to_owned();
        }
        self.dims
            .iter()
            .map(|(dim, exp)| match exp {
                1 => dim.symbol.clone(),
                e => format!("{}{e}", dim.symbol),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}
