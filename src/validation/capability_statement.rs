//! CapabilityStatement rules of R4 that no invariant expresses:
//! `rest.resource.searchParam.type` "SHALL be the same as the type in the search parameter
//! definition" (its comment: it is there for convenience, and can be looked up from the
//! definition). Checked when `definition` names a search parameter the server knows for the
//! resource's type (the official R4 ones and Signaal's); one it does not know is not checked.

use serde_json::Value;

use super::array;
use super::outcome::Outcome;
use crate::search::definitions::Registry;

/// Checks the search parameters of `statement` (at `at`).
pub fn check(statement: &Value, at: &str, out: &mut Outcome) {
    let registry = Registry::official();
    for (r, rest) in array(statement, "rest").iter().enumerate() {
        for (s, resource) in array(rest, "resource").iter().enumerate() {
            let Some(rtype) = resource.get("type").and_then(Value::as_str) else {
                continue;
            };
            for (p, param) in array(resource, "searchParam").iter().enumerate() {
                let (Some(definition), Some(kind)) = (
                    param.get("definition").and_then(Value::as_str),
                    param.get("type").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let url = definition.split('|').next().unwrap_or(definition);
                let Some(defined) = registry.params(rtype).find(|d| d.url == url) else {
                    continue;
                };
                let defined_kind = serde_json::to_value(defined.kind).unwrap_or_default();
                if defined_kind.as_str() != Some(kind) {
                    out.error(
                        "invalid",
                        &format!("{at}.rest[{r}].resource[{s}].searchParam[{p}].type"),
                        format!(
                            "The search parameter {definition} is of type {}, but this searchParam says {kind}: the type SHALL be the same as the definition's",
                            defined_kind.as_str().unwrap_or("?")
                        ),
                    );
                }
            }
        }
    }
}
