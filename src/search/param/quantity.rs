//! quantity (search page, "quantity"): `[prefix]number|system|code`, `[prefix]number||code` or
//! `[prefix]number`, compared like a number, the unit by system and code (or code or `unit`
//! alone). A UCUM quantity is also compared in canonical base units, so a search in any
//! commensurable unit finds it. Values are Quantity (and its profiles) and Money.

use serde_json::Value;

use crate::error::FhirError;
use crate::fhirpath::Item;
use crate::search::index::{index_text, IndexEntries, QuantityEntry};
use crate::search::param::number;
use crate::search::query::{CanonicalQuantity, Predicate, Prefix, TokenSystem};
use crate::ucum;

/// The modifiers of quantity parameters.
pub const MODIFIERS: &[&str] = &["missing"];

/// The system of Money's `currency` (ISO 4217), as a quantity's unit system.
const MONEY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// `[prefix]number|system|code`, `[prefix]number||code` or `[prefix]number`.
pub fn value(code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, rest) = Prefix::split(value);
    let mut parts = rest.splitn(3, '|');
    let text = parts.next().unwrap_or("");
    let (value, lo, hi) = number::range(text)
        .ok_or_else(|| FhirError::invalid(format!("{code}: '{text}' is not a number")))?;
    let (system, unit) = match (parts.next(), parts.next()) {
        (None, _) => (TokenSystem::Any, None),
        (Some(unit), None) => (TokenSystem::Any, Some(unit)),
        (Some(""), Some(unit)) => (TokenSystem::None, Some(unit)),
        (Some(system), Some(unit)) => (TokenSystem::Is(system.to_owned()), Some(unit)),
    };
    let unit = unit.filter(|u| !u.is_empty());
    // A unit UCUM cannot convert (`[pH]`, a typo) is still matched as written.
    let canonical = match (&system, unit) {
        (TokenSystem::Is(system), Some(unit)) if system == ucum::SYSTEM => {
            canonical(value, lo, hi, unit)
        }
        _ => None,
    };
    Ok(Predicate::Quantity {
        param: code.to_owned(),
        prefix,
        value,
        lo,
        hi,
        system,
        code: unit.map(str::to_owned),
        canonical,
    })
}

/// The search value and its precision range in canonical UCUM units (conversions are
/// increasing, so the range stays a range).
fn canonical(value: f64, lo: f64, hi: f64, unit: &str) -> Option<CanonicalQuantity> {
    let at = |v: f64| ucum::canonical(v, unit).ok();
    let (value, lo, hi) = (at(value)?, at(lo)?, at(hi)?);
    Some(CanonicalQuantity {
        unit: value.unit,
        value: value.value,
        lo: lo.value,
        hi: hi.value,
    })
}

/// The index entry of one Quantity or Money value.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    if let Some(entry) = entry(item, code) {
        entries.quantities.push(entry);
    }
}

fn entry(item: &Item<'_>, code: &str) -> Option<QuantityEntry> {
    let Item::Node(node) = item else { return None };
    let o = node.value.as_object()?;
    let Value::Number(n) = o.get("value")? else {
        return None;
    };
    let (value, lo, hi) = number::range(&n.to_string())?;
    let str_of = |k: &str| o.get(k).and_then(Value::as_str).map(index_text);
    let (system, unit_code) = match str_of("currency") {
        Some(currency) => (Some(MONEY_SYSTEM.to_owned()), Some(currency)),
        None => (str_of("system"), str_of("code")),
    };
    let canonical = match (&system, &unit_code) {
        (Some(system), Some(unit)) if system == ucum::SYSTEM => ucum::canonical(value, unit).ok(),
        _ => None,
    };
    Some(QuantityEntry {
        param: code.to_owned(),
        system,
        code: unit_code,
        unit: str_of("unit"),
        value,
        lo,
        hi,
        canonical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    fn parts(predicate: Predicate) -> (Prefix, TokenSystem, Option<String>, bool) {
        let Predicate::Quantity {
            prefix,
            system,
            code,
            canonical,
            ..
        } = predicate
        else {
            panic!("not a quantity");
        };
        (prefix, system, code, canonical.is_some())
    }

    #[test]
    fn the_unit_is_given_with_its_system_without_or_not_at_all() {
        let ucum = TokenSystem::Is(ucum::SYSTEM.into());
        assert_eq!(
            parts(value("value-quantity", &format!("le5.4|{}|mmol/L", ucum::SYSTEM)).unwrap()),
            (Prefix::Le, ucum, Some("mmol/L".into()), true)
        );
        assert_eq!(
            parts(value("value-quantity", "5.4||mmol/L").unwrap()),
            (Prefix::Eq, TokenSystem::None, Some("mmol/L".into()), false)
        );
        assert_eq!(
            parts(value("value-quantity", "5.4|mg").unwrap()),
            (Prefix::Eq, TokenSystem::Any, Some("mg".into()), false)
        );
        assert_eq!(
            parts(value("value-quantity", "5.4").unwrap()),
            (Prefix::Eq, TokenSystem::Any, None, false)
        );
        assert!(value("value-quantity", "five|mg").is_err());
    }

    #[test]
    fn a_ucum_unit_ucum_cannot_convert_is_matched_as_written() {
        let (_, _, code, canonical) = parts(
            value(
                "value-quantity",
                &format!("7|{}|[no-such-unit]", ucum::SYSTEM),
            )
            .unwrap(),
        );
        assert_eq!(
            (code.as_deref(), canonical),
            (Some("[no-such-unit]"), false)
        );
    }

    #[test]
    fn a_ucum_quantity_is_indexed_also_in_canonical_units() {
        let entries = indexed(
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "w"},
                "valueQuantity": {"value": 72.5, "unit": "kg", "system": ucum::SYSTEM, "code": "kg"}}),
        );
        let q = entries
            .quantities
            .iter()
            .find(|q| q.param == "value-quantity")
            .unwrap();
        assert_eq!(
            (q.code.as_deref(), q.unit.as_deref(), q.value),
            (Some("kg"), Some("kg"), 72.5)
        );
        assert!(q.canonical.is_some());
    }
}
