//! `Coding.system`: "the identification of the code system that defines the meaning of the
//! symbol in the code" (datatypes.html, R4). A url the server knows as a ValueSet and not as a
//! CodeSystem names no code system. A supplement (a CodeSystem whose `content` is `supplement`,
//! or that names the code system it `supplements`) only adds "designations and properties" to
//! another code system and defines the meaning of no code, so it is no Coding's system either.

use serde_json::Value;

use super::outcome::Outcome;
use super::Definitions;

/// Checks the `system` of the Coding `value` at `at`.
pub fn check(defs: &Definitions, value: &Value, at: &str, out: &mut Outcome) {
    let Some(system) = value.get("system").and_then(Value::as_str) else {
        return;
    };
    let terminology = defs.terminology();
    match terminology.is_supplement(system) {
        Some(true) => out.error(
            "code-invalid",
            &format!("{at}.system"),
            format!(
                "{system} is a code system supplement: it defines no codes, so it cannot be a Coding's system (use the code system it supplements)"
            ),
        ),
        Some(false) => {}
        None if terminology.is_value_set(system) => out.error(
            "code-invalid",
            &format!("{at}.system"),
            format!(
                "{system} is a value set, not a code system: Coding.system identifies the code system that defines the code"
            ),
        ),
        None => {}
    }
}
