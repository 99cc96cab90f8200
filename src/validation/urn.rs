//! URIs in the URN namespace of UUIDs (datatypes.html: `uuid` is "A UUID, represented as a
//! URI (RFC 4122)": `urn:uuid:` then 8-4-4-4-12 hexadecimal digits). A `uri` (or `url`,
//! `canonical`) that uses the `urn:uuid:` namespace follows its syntax (RFC 4122 §3):
//! `urn:uuid:c757873d-ec9a-4326-a141-556f43239520asdf` is no UUID. (The `uuid` type's own
//! regex is checked with the structure.) `urn:oid:` is not checked here: R4's own examples
//! use the placeholder `urn:oid:X.Y.Z` (Library/zika-virus-intervention-logic), and no case
//! calls for it.

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

/// Checks a uri-like value (at `at`).
pub fn check(value: &Value, at: &str, out: &mut Outcome) {
    let Some(uri) = value.as_str() else { return };
    let Some(uuid) = strip_prefix_ignore_case(uri, "urn:uuid:") else {
        return;
    };
    if !is_uuid(uuid) {
        out.error(
            "invalid",
            at,
            format!("'{uri}' is not a valid URN: what follows urn:uuid: must be a UUID (8-4-4-4-12 hexadecimal digits, RFC 4122)"),
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
    use super::is_uuid;

    #[test]
    fn uuids_have_their_syntax() {
        assert!(is_uuid("c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!is_uuid("c757873d-ec9a-4326-a141-556f43239520asdf"));
        assert!(!is_uuid("c757873d-ec9a-4326-a141"));
    }
}
