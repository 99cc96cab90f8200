//! The conformance resources clients store (StructureDefinition, ValueSet, CodeSystem,
//! Questionnaire; `fhir::canonical::DEFINITION_TYPES`) as definitions the validator uses, and
//! what a write of one is told (decision 0051):
//! - one whose url the server holds built in (core R4, Signaal's, a loaded package's) is stored
//!   but not used: the built-in one wins, as in search's terminology (decision 0019); a warning
//!   in `$validate` says so (Signaal's own urls are left to `fhir::canonical::check_writable`).
//!   The official examples include the core definitions themselves, which clients may store;
//! - a profile whose snapshot cannot be made (its base unknown, its differential naming an
//!   element the base does not have, a cycle of bases) could never be used: it is refused (422
//!   on write, an error in `$validate`);
//! - a logical model (`kind` logical) or a new type (`derivation` specialization) is stored and
//!   not used (information in `$validate`).

use serde_json::Value;

use super::outcome::Outcome;
use super::Definitions;
use crate::fhir::canonical::{ships_url, DEFINITION_TYPES};

/// Whether the stored resource `r` is added to the definitions over `base`: one of the
/// definition types, with a url `base` does not hold, and not a logical model or a new type.
pub fn usable(base: &Definitions, r: &Value) -> bool {
    let field = |name: &str| r.get(name).and_then(Value::as_str);
    let (Some(rtype), Some(url)) = (field("resourceType"), field("url")) else {
        return false;
    };
    DEFINITION_TYPES.contains(&rtype) && !base.holds(rtype, url) && unused_kind(r).is_none()
}

/// The stored resource `r` as the definitions take it: a StructureDefinition without
/// `derivation` (it is optional) is a profile of its base, `constraint`.
pub fn as_used(mut r: Value) -> Value {
    if r.get("resourceType").and_then(Value::as_str) == Some("StructureDefinition")
        && r.get("derivation").is_none()
    {
        if let Some(object) = r.as_object_mut() {
            object.insert("derivation".into(), Value::String("constraint".into()));
        }
    }
    r
}

/// Why a StructureDefinition is not used whatever its content: a logical model or a new type.
fn unused_kind(r: &Value) -> Option<&'static str> {
    if r.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
        return None;
    }
    if r.get("kind").and_then(Value::as_str) == Some("logical") {
        return Some("a logical model (kind logical)");
    }
    // `derivation` is optional: a definition without one that names a base is a profile.
    if matches!(
        r.get("derivation").and_then(Value::as_str),
        Some("specialization")
    ) {
        return Some("a new type (derivation specialization), not a profile");
    }
    None
}

/// What the validator says about a definition about to be stored (`rtype` one of the
/// definition types): `base` the built-in and package definitions, `defs` the live ones.
pub fn check(base: &Definitions, defs: &Definitions, r: &Value, rtype: &str, out: &mut Outcome) {
    if !DEFINITION_TYPES.contains(&rtype) {
        return;
    }
    let Some(url) = r.get("url").and_then(Value::as_str) else {
        return;
    };
    // Signaal's own canonical urls: `fhir::canonical::check_writable` decides (403 for the
    // shipped version; another version is stored, and not used here as the built-in one wins).
    if ships_url(rtype, url) {
        return;
    }
    if base.holds(rtype, url) {
        out.warning(
            "business-rule",
            &format!("{rtype}.url"),
            format!(
                "This server holds the {rtype} {url} built in (FHIR R4, Signaal's own or a \
                 loaded package), and that one is used for validation; this one is stored but \
                 not used"
            ),
        );
        return;
    }
    if let Some(kind) = unused_kind(r) {
        out.push(
            "information",
            "informational",
            rtype,
            format!(
                "The StructureDefinition {url} is {kind}: it is stored but not used for validation"
            ),
        );
        return;
    }
    if rtype == "StructureDefinition" {
        if let Err(e) = defs.compile_one(&as_used(r.clone())) {
            out.error(
                "processing",
                rtype,
                format!("{e}, so it cannot be used for validation"),
            );
        }
    }
}
