//! number (search page, "number"): a prefix and a decimal, which stands for the range its
//! precision implies (`100` is `[99.5, 100.5)`); values are integers and decimals, indexed with
//! the range of their own precision.

use serde_json::Value;

use crate::error::FhirError;
use crate::fhirpath::{Item, Node};
use crate::search::index::{IndexEntries, NumberEntry};
use crate::search::query::{Predicate, Prefix};

/// The modifiers of number parameters.
pub const MODIFIERS: &[&str] = &["missing"];

/// `[prefix]number`.
pub fn value(code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, number) = Prefix::split(value);
    let (value, lo, hi) = range(number)
        .ok_or_else(|| FhirError::invalid(format!("{code}: '{number}' is not a number")))?;
    Ok(Predicate::Number {
        param: code.to_owned(),
        prefix,
        value,
        lo,
        hi,
    })
}

/// The value of a decimal text and its implicit range, half a unit of its last digit around it.
pub fn range(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    // Clamped: f64 has no precision beyond these, and `0.5e-2147483648` must not overflow.
    let exponent: i64 = text
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(-400, 400);
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, f)| f.len())
        .min(400) as i64;
    let half = 0.5 * 10f64.powi((exponent - decimals) as i32);
    Some((value, value - half, value + half))
}

/// The index entry of one number value.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    let text = match item {
        Item::Node(Node {
            value: Value::Number(n),
            ..
        }) => n.to_string(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => d.to_string(),
        _ => return,
    };
    if let Some((value, lo, hi)) = range(&text) {
        entries.numbers.push(NumberEntry {
            param: code.to_owned(),
            value,
            lo,
            hi,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    #[test]
    fn huge_exponents_do_not_overflow() {
        assert!(range("0.5e-2147483648").is_some());
        assert!(range("1e999999999999").is_none());
    }

    #[test]
    fn numbers_carry_their_precision() {
        assert_eq!(range("1.5"), Some((1.5, 1.45, 1.55)));
        assert_eq!(range("100"), Some((100.0, 99.5, 100.5)));
    }

    #[test]
    fn a_search_number_takes_a_prefix() {
        let (v, lo, hi) = range("0.8").unwrap();
        assert_eq!(
            value("probability", "gt0.8").unwrap(),
            Predicate::Number {
                param: "probability".into(),
                prefix: Prefix::Gt,
                value: v,
                lo,
                hi,
            }
        );
        assert!(value("probability", "gtmany").is_err());
    }

    #[test]
    fn an_integer_is_indexed_with_its_precision() {
        let entries = indexed(
            "RiskAssessment",
            json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p"},
                "prediction": [{"probabilityDecimal": 0.25}]}),
        );
        let p = entries
            .numbers
            .iter()
            .find(|n| n.param == "probability")
            .unwrap();
        assert_eq!(Some((p.value, p.lo, p.hi)), range("0.25"));
    }
}
