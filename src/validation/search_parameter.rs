//! SearchParameter.derivedFrom (R4): "If a derivedFrom is provided, then the details in the
//! search parameter must be consistent with the definition from which it is defined. i.e. the
//! parameter should have the same meaning, and (usually) the functionality should be a proper
//! subset of the underlying search parameter." Checked when `derivedFrom` names a parameter the
//! server knows (the official R4 ones and Signaal's): the derived parameter has the same `type`
//! (a string search is not a token search) and applies only to resource types the original
//! applies to (`base`). One the server does not know is not checked.

use serde_json::Value;

use super::array;
use super::outcome::Outcome;
use crate::fhir::resource_types;
use crate::search::definitions::Registry;

/// Checks the SearchParameter `sp` (at `at`).
pub fn check(sp: &Value, at: &str, out: &mut Outcome) {
    let Some(derived_from) = sp.get("derivedFrom").and_then(Value::as_str) else {
        return;
    };
    let url = derived_from.split('|').next().unwrap_or(derived_from);
    let registry = Registry::official();
    let mut original = None;
    let mut original_bases = Vec::new();
    for rtype in resource_types::all() {
        if let Some(param) = registry.params(rtype).find(|p| p.url == url) {
            original.get_or_insert(param.kind);
            original_bases.push(rtype.as_str());
        }
    }
    let Some(kind) = original else { return };
    let kind = serde_json::to_value(kind).unwrap_or_default();
    let kind = kind.as_str().unwrap_or("?");
    if let Some(own) = sp.get("type").and_then(Value::as_str) {
        if own != kind {
            out.error(
                "invalid",
                &format!("{at}.type"),
                format!(
                    "The type {own} is not consistent with the type {kind} of {url}, which this search parameter is derived from"
                ),
            );
        }
    }
    for (i, base) in array(sp, "base").iter().enumerate() {
        let Some(base) = base.as_str() else { continue };
        if resource_types::is_resource_type(base) && !original_bases.contains(&base) {
            out.error(
                "invalid",
                &format!("{at}.base[{i}]"),
                format!(
                    "{url}, which this search parameter is derived from, does not apply to {base}: a derived parameter applies to a subset of its resource types"
                ),
            );
        }
    }
}
