//! Exact decimal numbers for FHIRPath.
//!
//! FHIR decimals carry their precision in their text (`1.50` is not `1.5` for
//! equivalence, and `0.1 + 0.2` must be `0.3`), and the crate keeps JSON numbers
//! as their original text (`arbitrary_precision`). A binary `f64` would lose
//! both, so values are kept as an `i128` mantissa with a decimal scale. Only the
//! transcendental functions (`sqrt`, `exp`, `ln`, `log`, `power`) go through
//! `f64`, where exactness is impossible anyway.

use std::cmp::Ordering;
use std::fmt;

/// Largest scale kept; results of division are rounded to this many places.
const MAX_SCALE: u32 = 28;
/// Scale used for the quotient of `/` when the operands do not need more.
const DIV_SCALE: u32 = 8;

/// An exact decimal: `mantissa * 10^-scale`.
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    /// Builds a decimal from an integer (scale 0).
    pub fn from_i64(v: i64) -> Decimal {
        Decimal {
            mantissa: v as i128,
            scale: 0,
        }
    }

    /// Parses decimal text as found in JSON (`-12.50`, `1e3`, `1.5E-2`).
    /// Returns `None` for malformed text or values that do not fit.
    pub fn parse(text: &str) -> Option<Decimal> {
        let t = text.trim();
        let (neg, rest) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (num, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int_part, frac_part) = match num.find('.') {
            Some(i) => (&num[..i], &num[i + 1..]),
            None => (num, ""),
        };
        if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if num.contains('.') && frac_part.is_empty() {
            return None;
        }
        if !frac_part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let mut scale = frac_part.len() as i64 - exp as i64;
        if scale < 0 {
            mantissa = mantissa.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?;
            scale = 0;
        }
        let scale = u32::try_from(scale).ok()?;
        if scale > 60 {
            return None;
        }
        Some(Decimal {
            mantissa: if neg { -mantissa } else { mantissa },
            scale,
        })
    }

    /// Converts from `f64` through its shortest round-trip text.
    pub fn from_f64(v: f64) -> Option<Decimal> {
        if !v.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{v}"))
    }

    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// Number of digits after the decimal point (the precision of the literal).
    pub fn scale(self) -> u32 {
        self.scale
    }

    pub fn is_integer(self) -> bool {
        self.frac_is_zero()
    }

    fn frac_is_zero(self) -> bool {
        match pow10(self.scale) {
            Some(p) => self.mantissa % p == 0,
            None => self.mantissa == 0,
        }
    }

    /// The integer part when it fits in an `i64` (truncating toward zero).
    pub fn trunc_i64(self) -> Option<i64> {
        let p = pow10(self.scale)?;
        i64::try_from(self.mantissa / p).ok()
    }

    fn rescale(self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            Some(Decimal {
                mantissa: self.mantissa.checked_mul(pow10(scale - self.scale)?)?,
                scale,
            })
        } else {
            Some(self.round(scale))
        }
    }

    /// Rounds half away from zero to `places` digits after the point.
    pub fn round(self, places: u32) -> Decimal {
        if places >= self.scale {
            return self;
        }
        let Some(p) = pow10(self.scale - places) else {
            return Decimal {
                mantissa: 0,
                scale: places,
            };
        };
        let q = self.mantissa / p;
        let r = self.mantissa % p;
        let q = if r.abs() * 2 >= p {
            q + self.mantissa.signum()
        } else {
            q
        };
        Decimal {
            mantissa: q,
            scale: places,
        }
    }

    /// Removes trailing zero digits after the point.
    pub fn normalized(self) -> Decimal {
        let mut d = self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    pub fn checked_add(self, o: Decimal) -> Option<Decimal> {
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale: s,
        })
    }

    pub fn checked_sub(self, o: Decimal) -> Option<Decimal> {
        self.checked_add(o.negated())
    }

    pub fn checked_mul(self, o: Decimal) -> Option<Decimal> {
        let d = Decimal {
            mantissa: self.mantissa.checked_mul(o.mantissa)?,
            scale: self.scale + o.scale,
        };
        Some(if d.scale > MAX_SCALE {
            d.round(MAX_SCALE)
        } else {
            d
        })
    }

    /// Division rounded to at least [`DIV_SCALE`] places, trailing zeros
    /// dropped (`2 / 2` is `1`); `None` on division by zero.
    pub fn checked_div(self, o: Decimal) -> Option<Decimal> {
        if o.mantissa == 0 {
            return None;
        }
        let target = DIV_SCALE.max(self.scale).max(o.scale).min(MAX_SCALE);
        // self / o = (m1 / m2) * 10^(s2 - s1); compute with one guard digit.
        let shift = target as i64 + 1 + o.scale as i64 - self.scale as i64;
        let (num, den) = if shift >= 0 {
            (self.mantissa.checked_mul(pow10(shift as u32)?)?, o.mantissa)
        } else {
            (
                self.mantissa,
                o.mantissa.checked_mul(pow10((-shift) as u32)?)?,
            )
        };
        let q = Decimal {
            mantissa: num / den,
            scale: target + 1,
        };
        Some(q.round(target).normalized())
    }

    /// Integer division (`div`), truncating toward zero.
    pub fn checked_div_trunc(self, o: Decimal) -> Option<Decimal> {
        if o.mantissa == 0 {
            return None;
        }
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Some(Decimal {
            mantissa: a.mantissa / b.mantissa,
            scale: 0,
        })
    }

    /// Remainder (`mod`), with the sign of the dividend.
    pub fn checked_rem(self, o: Decimal) -> Option<Decimal> {
        if o.mantissa == 0 {
            return None;
        }
        let s = self.scale.max(o.scale);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Some(Decimal {
            mantissa: a.mantissa % b.mantissa,
            scale: s,
        })
    }

    pub fn negated(self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            scale: self.scale,
        }
    }

    pub fn abs(self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.abs(),
            scale: self.scale,
        }
    }

    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    pub fn floor(self) -> Option<Decimal> {
        let p = pow10(self.scale)?;
        let q = self.mantissa.div_euclid(p);
        Some(Decimal {
            mantissa: q,
            scale: 0,
        })
    }

    pub fn ceiling(self) -> Option<Decimal> {
        Some(self.negated().floor()?.negated())
    }

    pub fn truncate(self) -> Option<Decimal> {
        let p = pow10(self.scale)?;
        Some(Decimal {
            mantissa: self.mantissa / p,
            scale: 0,
        })
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        let s = a.scale.max(b.scale);
        match (a.rescale(s), b.rescale(s)) {
            (Some(x), Some(y)) => x.mantissa.cmp(&y.mantissa),
            _ => a.to_f64().total_cmp(&b.to_f64()),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (i, fr) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{i}.{fr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_precision_and_prints_it_back() {
        for t in [
            "1.50",
            "0.001",
            "-3.0",
            "12",
            "0.00000001",
            "1234567890987654321.0",
        ] {
            assert_eq!(Decimal::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(Decimal::parse("1e3").unwrap().to_string(), "1000");
        assert_eq!(Decimal::parse("1.5E-2").unwrap().to_string(), "0.015");
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse("abc").is_none());
    }

    #[test]
    fn arithmetic_is_exact() {
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap(), d("0.3"));
        assert_eq!(
            d("1").checked_div(d("3")).unwrap().to_string(),
            "0.33333333"
        );
        assert_eq!(d("2").checked_div(d("2")).unwrap().to_string(), "1");
        assert_eq!(d("1.2").checked_div(d("1.8")).unwrap().round(2), d("0.67"));
        assert_eq!(d("-5.5").checked_rem(d("2")).unwrap(), d("-1.5"));
        assert_eq!(d("-1.5").floor().unwrap(), d("-2"));
        assert_eq!(d("1.10"), d("1.1"));
    }
}
