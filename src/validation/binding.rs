//! Terminology bindings: a code, Coding or CodeableConcept against the ValueSet its element is
//! bound to. Required: a code outside the value set is an error; extensible and preferred: a
//! warning; example: nothing. A value set the server cannot expand exactly (a code system it
//! does not hold, such as SNOMED CT or LOINC) is said plainly as not checked. And a Coding of a
//! code system the server holds completely should use one of its codes (a warning).

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::Binding;
use super::Definitions;

/// The codings of a value of type `type_code` (`code` has no system).
fn codings<'a>(type_code: &str, value: &'a Value) -> Vec<(Option<&'a str>, &'a str)> {
    let one = |c: &'a Value| {
        Some((
            c.get("system").and_then(Value::as_str),
            c.get("code")?.as_str()?,
        ))
    };
    match type_code {
        "code" => value.as_str().map(|c| vec![(None, c)]).unwrap_or_default(),
        "Coding" => one(value).into_iter().collect(),
        // A Quantity's unit code and its system (UCUM, usually).
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity"
        | "MoneyQuantity" => one(value).into_iter().collect(),
        "CodeableConcept" => value
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(one)
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks the value at `at` against its element's binding.
pub fn check(
    defs: &Definitions,
    binding: &Binding,
    type_code: &str,
    value: &Value,
    at: &str,
    out: &mut Outcome,
) {
    let severity = match binding.strength.as_str() {
        "required" => "error",
        "extensible" | "preferred" => "warning",
        _ => return,
    };
    let found = codings(type_code, value);
    if found.is_empty() {
        return;
    }
    let url = binding
        .value_set
        .split('|')
        .next()
        .unwrap_or(&binding.value_set);
    let codes = match defs.expansion(url) {
        Ok(codes) => codes,
        Err(reason) => {
            out.not_checked(
                format!("binding {url}"),
                at,
                format!(
                    "The {} binding to the value set {url} was not checked: {reason}",
                    binding.strength
                ),
            );
            return;
        }
    };
    let in_set = |(system, code): &(Option<&str>, &str)| match system {
        Some(system) => codes.get(*system).is_some_and(|set| set.contains(*code)),
        None => codes.values().any(|set| set.contains(*code)),
    };
    if found.iter().any(in_set) {
        return;
    }
    let shown: Vec<String> = found
        .iter()
        .map(|(s, c)| match s {
            Some(s) => format!("{s}#{c}"),
            None => (*c).to_owned(),
        })
        .collect();
    let must = if severity == "error" {
        "must"
    } else {
        "should"
    };
    out.push(
        severity,
        "code-invalid",
        at,
        format!(
            "{} is not in the value set {url}, and the {} binding says a code {must} come from it",
            shown.join(", "),
            binding.strength
        ),
    );
}

/// A Coding (`system`, `code`) of a code system the server holds completely should use one of
/// its codes: a warning. Where it matters more the binding says so — under a required binding
/// a code outside the value set is already an error ([`check`]); under extensible and preferred
/// ones a warning, as here. A sender's stray code in a category (`vital-sign` for
/// `vital-signs`) does not cost the whole upload.
pub fn check_coding(defs: &Definitions, value: &Value, at: &str, out: &mut Outcome) {
    super::coding_system::check(defs, value, at, out);
    let (Some(system), Some(code)) = (
        value.get("system").and_then(Value::as_str),
        value.get("code").and_then(Value::as_str),
    ) else {
        return;
    };
    if defs.terminology().has_code(system, code) == Some(false) {
        out.warning(
            "code-invalid",
            &format!("{at}.code"),
            format!("'{code}' is not a code of the code system {system}"),
        );
    }
}
