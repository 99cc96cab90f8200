//! Fixed and pattern values (ElementDefinition.fixed[x], pattern[x]): a fixed value must be
//! matched exactly, a pattern by every element it has (arrays: each pattern item by some item).

use serde_json::Value;

use super::outcome::Outcome;

/// Whether `actual` has everything `pattern` has (pattern semantics).
pub fn matches_pattern(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| a.get(k).is_some_and(|av| matches_pattern(av, pv))),
        (Value::Array(a), Value::Array(p)) => p
            .iter()
            .all(|pv| a.iter().any(|av| matches_pattern(av, pv))),
        // A single item against a one-item pattern array (a repeating element's value).
        (a, Value::Array(p)) if p.len() == 1 => matches_pattern(a, &p[0]),
        _ => same_primitive(actual, pattern),
    }
}

/// Whether `actual` is exactly `fixed`.
pub fn matches_fixed(actual: &Value, fixed: &Value) -> bool {
    match (actual, fixed) {
        (Value::Object(a), Value::Object(f)) => {
            a.len() == f.len()
                && f.iter()
                    .all(|(k, fv)| a.get(k).is_some_and(|av| matches_fixed(av, fv)))
        }
        (Value::Array(a), Value::Array(f)) => {
            a.len() == f.len() && a.iter().zip(f).all(|(av, fv)| matches_fixed(av, fv))
        }
        _ => same_primitive(actual, fixed),
    }
}

fn same_primitive(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.to_string() == y.to_string()
                || x.to_string().parse::<f64>().ok() == y.to_string().parse::<f64>().ok()
        }
        _ => a == b,
    }
}

fn short(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Checks `actual` (the value of the element at `at`) against the element's fixed and pattern
/// values.
pub fn check(
    actual: Option<&Value>,
    fixed: Option<&Value>,
    pattern: Option<&Value>,
    at: &str,
    out: &mut Outcome,
) {
    if let Some(fixed) = fixed {
        match actual {
            Some(a) if matches_fixed(a, fixed) => {}
            Some(a) => out.error(
                "value",
                at,
                format!(
                    "The value must be exactly {} (fixed by the profile), found {}",
                    short(fixed),
                    short(a)
                ),
            ),
            None => out.error(
                "value",
                at,
                format!(
                    "The value {} is fixed by the profile, but the element has no value",
                    short(fixed)
                ),
            ),
        }
    }
    if let Some(pattern) = pattern {
        match actual {
            Some(a) if matches_pattern(a, pattern) => {}
            Some(_) | None => out.error(
                "value",
                at,
                format!(
                    "The value must match the profile's pattern {}",
                    short(pattern)
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pattern_is_matched_by_more() {
        let p = json!({"coding": [{"system": "http://loinc.org", "code": "29463-7"}]});
        let a = json!({"coding": [{"system": "x", "code": "y"},
            {"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}], "text": "w"});
        assert!(matches_pattern(&a, &p));
        assert!(!matches_fixed(&a, &p));
        assert!(!matches_pattern(
            &json!({"coding": [{"system": "http://loinc.org", "code": "1"}]}),
            &p
        ));
    }

    #[test]
    fn fixed_is_exact() {
        assert!(matches_fixed(&json!("kg"), &json!("kg")));
        assert!(!matches_fixed(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
    }
}
