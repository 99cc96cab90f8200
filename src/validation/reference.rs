//! References and their targets' types. R4 references.html: a literal reference is a relative
//! `Type/id` (optionally `/_history/vid`) or an absolute URL, which for a RESTful server ends
//! in the same `Type/id`; and `Reference(X|Y)` — the element's `targetProfile`s — says the
//! target "SHALL" be one of those types. The type a reference names is checked against them
//! when the reference names a resource type; a reference that names none (`urn:uuid:`, `#id`,
//! a URL that is not RESTful) is not checked here. When a target profile is a profile rather
//! than a core type, the reference is noted for [`target_profile`], which checks the target
//! once the caller has found it.

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::TypeRef;
use super::{target_profile, Definitions, CORE_PREFIX};

/// An absolute URI: a scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) and `:`.
pub fn is_absolute(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The resource type a literal reference names by its form: `Type` of `Type/id`,
/// `Type/id/_history/vid`, `…/Type/id` of an absolute URL, `Type?query` of a conditional one.
/// Not checked here whether it is a resource type.
pub fn type_of(reference: &str) -> Option<&str> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    if let Some((before, _)) = reference.split_once('?') {
        return (!before.contains('/'))
            .then_some(before)
            .filter(|t| !t.is_empty());
    }
    let path = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let mut segments = path.rsplit('/');
    let _id = segments.next()?;
    let t = segments.next()?;
    if !reference.contains("://") && segments.next().is_some() {
        return None;
    }
    Some(t)
}

/// Checks the Reference `value` (at `at`) of an element whose Reference type is `types`.
pub fn check(defs: &Definitions, types: &[TypeRef], value: &Value, at: &str, out: &mut Outcome) {
    let Some(reference) = value.get("reference").and_then(Value::as_str) else {
        return;
    };
    let targets: Vec<&str> = types
        .iter()
        .filter(|t| t.code == "Reference")
        .flat_map(|t| t.target_profiles.iter().map(String::as_str))
        .collect();
    if targets.is_empty() {
        return;
    }
    let mut allowed = Vec::new();
    // Whether a target profile is a profile (not a core type): the target is then checked
    // against it once found.
    let mut profiled = false;
    for url in &targets {
        // A profile's type: the type it constrains; an unknown profile: nothing can be said.
        let Some(sd) = url
            .strip_prefix(CORE_PREFIX)
            .and_then(|name| defs.core(name))
            .or_else(|| defs.get(url))
        else {
            return;
        };
        if matches!(sd.type_name.as_str(), "Resource" | "DomainResource") {
            return;
        }
        profiled |= sd.derivation != "specialization";
        allowed.push(sd.type_name.as_str());
    }
    let t = type_of(reference).filter(|t| defs.core(t).is_some_and(|sd| sd.kind == "resource"));
    // A reference that names no type (`urn:`) or an allowed one: its target may still have to
    // conform to a profile.
    if t.is_none_or(|t| allowed.contains(&t)) {
        if profiled {
            target_profile::collect(&targets, reference, at, out);
        }
    } else if let Some(t) = t {
        allowed.dedup();
        out.error(
            "structure",
            &format!("{at}.reference"),
            format!(
                "The reference {reference} is to a {t}, but this element may only refer to {}",
                allowed.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{is_absolute, type_of};

    #[test]
    fn absolute_uris_have_a_scheme() {
        assert!(is_absolute("http://x.org/Patient/1"));
        assert!(is_absolute("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"));
        assert!(!is_absolute("Patient/1"));
        assert!(!is_absolute("1:2"));
    }

    #[test]
    fn the_type_comes_from_the_reference_form() {
        assert_eq!(type_of("Patient/1"), Some("Patient"));
        assert_eq!(type_of("Patient/1/_history/2"), Some("Patient"));
        assert_eq!(type_of("http://x.org/fhir/Group/5"), Some("Group"));
        assert_eq!(type_of("Patient?identifier=a|b"), Some("Patient"));
        assert_eq!(
            type_of("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"),
            None
        );
        assert_eq!(type_of("#p1"), None);
        assert_eq!(type_of("a/b/c"), None);
    }
}
