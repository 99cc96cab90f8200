//! An element's value limits (ElementDefinition `minValue[x]`, `maxValue[x]`, `maxLength`):
//! "The minimum allowed value for the element. The value is inclusive", the maximum likewise,
//! and "the maximum length in characters that is permitted to be present in conformant
//! instances". Compared: numbers (`decimal`, `integer`, `positiveInt`, `unsignedInt`), a
//! Quantity's value against a Quantity limit of the same unit (`system` and `code`), dates of
//! the same precision (`2026`, `2026-03`, `2026-03-04`: a shorter and a longer one are not
//! compared, as FHIRPath leaves them unordered), and the length of a string in characters.
//! A limit of another kind (a dateTime with a time zone, a Quantity in another unit) is not
//! compared here.
//!
//! And the limit of every string: "Note that FHIR strings SHALL NOT exceed 1MB in size" (R4
//! `string`'s definition), for `string` and its specializations (`code`, `id`, `markdown`) and
//! element ids (1MB taken as 1,048,576 bytes of UTF-8).

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::ElementDefinition;

/// Checks `value` (at `at`) against the limits of `def`.
pub fn check(def: &ElementDefinition, value: &Value, at: &str, out: &mut Outcome) {
    if let Some(max_length) = def.max_length {
        if let Some(s) = value.as_str() {
            let n = s.chars().count() as u64;
            if n > max_length {
                out.error(
                    "value",
                    at,
                    format!(
                        "The value has {n} characters; {} allows at most {max_length} (maxLength)",
                        def.path
                    ),
                );
            }
        }
    }
    for (limit, is_max) in [(&def.min_value, false), (&def.max_value, true)] {
        let Some(limit) = limit else { continue };
        let Some(ordering) = compare(value, limit) else {
            continue;
        };
        let beyond = if is_max {
            ordering == std::cmp::Ordering::Greater
        } else {
            ordering == std::cmp::Ordering::Less
        };
        if beyond {
            let (word, name) = if is_max {
                ("greater", "maxValue")
            } else {
                ("less", "minValue")
            };
            out.error(
                "value",
                at,
                format!(
                    "The value {} is {word} than {} allows ({name} {})",
                    shown(value),
                    def.path,
                    shown(limit)
                ),
            );
        }
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Object(q) => format!(
            "{} {}",
            q.get("value").map(Value::to_string).unwrap_or_default(),
            q.get("code").and_then(Value::as_str).unwrap_or("")
        ),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The size limit of a FHIR string.
pub const STRING_LIMIT: usize = 1024 * 1024;

/// Whether an item of type `type_code` is a FHIR string (its size is limited).
pub fn is_string(type_code: &str) -> bool {
    matches!(
        type_code,
        "string" | "code" | "id" | "markdown" | "http://hl7.org/fhirpath/System.String"
    )
}

/// Checks a string's size (at `at`).
pub fn check_string_size(value: &Value, at: &str, out: &mut Outcome) {
    if let Some(s) = value.as_str() {
        if s.len() > STRING_LIMIT {
            out.error(
                "too-long",
                at,
                format!(
                    "The string has {} bytes: FHIR strings SHALL NOT exceed 1MB ({STRING_LIMIT} bytes)",
                    s.len()
                ),
            );
        }
    }
}

/// `value` against `limit`, when they can be compared.
fn compare(value: &Value, limit: &Value) -> Option<std::cmp::Ordering> {
    match (value, limit) {
        (Value::Number(v), Value::Number(l)) => v.as_f64()?.partial_cmp(&l.as_f64()?),
        (Value::Object(v), Value::Object(l)) => {
            let same_unit = v.get("system") == l.get("system") && v.get("code") == l.get("code");
            if !same_unit {
                return None;
            }
            compare(v.get("value")?, l.get("value")?)
        }
        (Value::String(v), Value::String(l)) => {
            let plain_date = |s: &str| {
                matches!(s.len(), 4 | 7 | 10) && s.chars().all(|c| c.is_ascii_digit() || c == '-')
            };
            (v.len() == l.len() && plain_date(v) && plain_date(l)).then(|| v.cmp(l))
        }
        _ => None,
    }
}
