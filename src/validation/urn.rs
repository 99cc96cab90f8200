//! URIs in the two URN namespaces FHIR names for identifiers (datatypes.html: `oid` is
//! "An OID represented as a URI: urn:oid:…", `uuid` "A UUID, represented as a URI (RFC 4122)":
//! `urn:uuid:` then 8-4-4-4-12 hexadecimal digits). A `uri` (or `url`, `canonical`) that uses
//! the `urn:uuid:` or `urn:oid:` namespace follows that namespace's syntax (RFC 4122 §3,
//! RFC 3001): `urn:uuid:c757873d-ec9a-4326-a141-556f43239520asdf` is no UUID. (The `uuid`
//! and `oid` types' own regexes are checked with the structure.)

use serde_json::Value;

use super::outcome::Outcome;

/// Whether `uuid` is 8-4-4-4-12 hexadecimal digits.
fn is_uuid(uuid: &str) -> bool {
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `oid` is an OID: numbers (no leading zero) separated by dots, starting with 0, 1 or 2.
fn is_oid(oid: &str) -> bool {
    let arcs: Vec<&str> = oid.split('.').collect();
    arcs.len() >= 2
        && matches!(arcs[0], "0" | "1" | "2")
        && arcs.iter().all(|a| {
            !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && (a.len() == 1 || !a.starts_with('0'))
        })
}

/// Checks a uri-like value (at `at`).
pub fn check(value: &Value, at: &str, out: &mut Outcome) {
    let Some(uri) = value.as_str() else { return };
    let (what, ok) = if let Some(uuid) = strip_prefix_ignore_case(uri, "urn:uuid:") {
        ("a UUID (8-4-4-4-12 hexadecimal digits, RFC 4122)", is_uuid(uuid))
    } else if let Some(oid) = strip_prefix_ignore_case(uri, "urn:oid:") {
        ("an OID (dot-separated numbers)", is_oid(oid))
    } else {
        return;
    };
    if !ok {
        out.error(
            "invalid",
            at,
            format!("'{uri}' is not a valid URN: what follows the namespace must be {what}"),
        );
    }
}

/// `s` without `prefix`, compared case-insensitively (URN scheme and namespace are).
fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::{is_oid, is_uuid};

    #[test]
    fn uuids_and_oids_have_their_syntax() {
        assert!(is_uuid("c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!is_uuid("c757873d-ec9a-4326-a141-556f43239520asdf"));
        assert!(!is_uuid("c757873d-ec9a-4326-a141"));
        assert!(is_oid("2.16.840.1.113883.6.96"));
        assert!(!is_oid("2.16.840.01"));
        assert!(!is_oid("3.1"));
    }
}
