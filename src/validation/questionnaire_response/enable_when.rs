//! `enableWhen` (questionnaire.html#enableWhen): whether a Questionnaire item is enabled by
//! the answers given elsewhere in the response, its conditions combined by `enableBehavior`.

use std::cmp::Ordering;

use serde_json::Value;

use super::{
    answers, choice, compare_dates, compare_quantities, items, link_id, same_value, Check,
};

impl Check<'_> {
    /// Whether the item `d` is enabled: no `enableWhen`, or its conditions hold as
    /// `enableBehavior` (`all` or `any`) combines them (questionnaire.html#enableWhen).
    pub(super) fn enabled(&self, d: &Value) -> bool {
        let conditions = d
            .get("enableWhen")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if conditions.is_empty() {
            return true;
        }
        let mut results = conditions.iter().filter_map(|c| self.condition(c));
        match d.get("enableBehavior").and_then(Value::as_str) {
            Some("any") => results.any(|r| r),
            _ => results.all(|r| r),
        }
    }

    /// One `enableWhen`; `None` when it cannot be evaluated (a condition we do not
    /// understand never disables an item).
    fn condition(&self, c: &Value) -> Option<bool> {
        let question = c.get("question")?.as_str()?;
        let operator = c.get("operator")?.as_str()?;
        let (suffix, expected) = choice(c.as_object()?, "answer")?;
        let mut given = Vec::new();
        collect_answers(items(self.qr), question, &mut given);
        if operator == "exists" {
            return Some(expected.as_bool()? != given.is_empty());
        }
        let values: Vec<&Value> = given
            .iter()
            .filter_map(|a| {
                let (s, v) = choice(a.as_object()?, "value")?;
                (s == suffix).then_some(v)
            })
            .collect();
        Some(match operator {
            "=" => values.iter().any(|v| same_value(suffix, expected, v)),
            "!=" => !values.is_empty() && !values.iter().any(|v| same_value(suffix, expected, v)),
            ">" | "<" | ">=" | "<=" => values.iter().any(|v| {
                order_of(suffix, v, expected).is_some_and(|o| match operator {
                    ">" => o == Ordering::Greater,
                    "<" => o == Ordering::Less,
                    ">=" => o != Ordering::Less,
                    _ => o != Ordering::Greater,
                })
            }),
            _ => return None,
        })
    }
}

/// Orders an answer against an enableWhen answer of the same type.
fn order_of(suffix: &str, v: &Value, expected: &Value) -> Option<Ordering> {
    match suffix {
        "Integer" | "Decimal" => v.as_f64()?.partial_cmp(&expected.as_f64()?),
        "Date" | "DateTime" | "Time" => compare_dates(v.as_str()?, expected.as_str()?),
        "Quantity" => compare_quantities(v, expected),
        _ => None,
    }
}

/// The answers of every response item with `linkId` `id`, at any depth.
fn collect_answers<'a>(items_: &'a [Value], id: &str, into: &mut Vec<&'a Value>) {
    for item in items_ {
        if link_id(item) == Some(id) {
            into.extend(answers(item));
        }
        collect_answers(items(item), id, into);
        for a in answers(item) {
            collect_answers(items(a), id, into);
        }
    }
}
