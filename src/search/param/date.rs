//! date (search page, "date"): a prefix (`eq`, `ne`, `gt`, `lt`, `ge`, `le`, `sa`, `eb`, `ap`)
//! and a date, dateTime or instant, which stands for the range its precision implies; also
//! `_lastUpdated`. Values are date, dateTime, instant, Period and Timing, indexed as the range
//! `[lo, hi)` they cover (ms).

use serde_json::Value;

use crate::error::FhirError;
use crate::fhir::datetime::parse_range;
use crate::fhirpath::Item;
use crate::search::index::{DateEntry, IndexEntries};
use crate::search::query::{Predicate, Prefix, RangeTarget};

/// The modifiers of date parameters.
pub const MODIFIERS: &[&str] = &["missing"];

/// `[prefix]date` compared with the ranges of `target`.
pub fn value(target: RangeTarget, code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, date) = Prefix::split(value);
    let (lo, hi) = parse_range(date).map_err(|e| FhirError::invalid(format!("{code}: {e}")))?;
    Ok(Predicate::Range {
        target,
        prefix,
        lo,
        hi,
    })
}

/// The index entry of one date value.
pub(super) fn index(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    if let Some((lo, hi)) = range(item) {
        entries.dates.push(DateEntry {
            param: code.to_owned(),
            lo,
            hi,
        });
    }
}

/// The first and last instants a date, Period or Timing covers.
fn range(item: &Item<'_>) -> Option<(i64, i64)> {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Date(s) | Item::DateTime(s) | Item::String(s) => return parse_range(s).ok(),
        _ => return None,
    };
    match value {
        Value::String(s) => parse_range(s).ok(),
        Value::Object(o) => {
            if o.contains_key("start") || o.contains_key("end") {
                // Period: an open end is unbounded.
                let lo = o
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_range(s).ok())
                    .map_or(i64::MIN, |r| r.0);
                let hi = o
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_range(s).ok())
                    .map_or(i64::MAX, |r| r.1);
                Some((lo, hi))
            } else if let Some(Value::Array(events)) = o.get("event") {
                // Timing: from the first to the last event.
                let ranges: Vec<(i64, i64)> = events
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|s| parse_range(s).ok())
                    .collect();
                Some((
                    ranges.iter().map(|r| r.0).min()?,
                    ranges.iter().map(|r| r.1).max()?,
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::param::tests::indexed;
    use serde_json::json;

    fn day(date: &str) -> (i64, i64) {
        parse_range(date).unwrap()
    }

    #[test]
    fn a_prefix_comes_before_the_date_and_eq_is_the_default() {
        let target = || RangeTarget::Date("birthdate".into());
        let (lo, hi) = day("2021-03");
        assert_eq!(
            value(target(), "birthdate", "ge2021-03").unwrap(),
            Predicate::Range {
                target: target(),
                prefix: Prefix::Ge,
                lo,
                hi
            }
        );
        let Predicate::Range { prefix, .. } = value(target(), "birthdate", "2021").unwrap() else {
            panic!("not a range");
        };
        assert_eq!(prefix, Prefix::Eq);
        assert!(value(target(), "birthdate", "xx2021").is_err());
    }

    #[test]
    fn a_period_with_an_open_end_is_unbounded() {
        let entries = indexed(
            "Encounter",
            json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                "period": {"start": "2022-05-01"}}),
        );
        let date = entries.dates.iter().find(|d| d.param == "date").unwrap();
        assert_eq!((date.lo, date.hi), (day("2022-05-01").0, i64::MAX));
    }

    #[test]
    fn a_date_is_indexed_as_the_range_of_its_precision() {
        let entries = indexed(
            "Patient",
            json!({"resourceType": "Patient", "birthDate": "1970-02"}),
        );
        let birthdate = entries
            .dates
            .iter()
            .find(|d| d.param == "birthdate")
            .unwrap();
        assert_eq!((birthdate.lo, birthdate.hi), day("1970-02"));
    }
}
