//! Logical ids: `[A-Za-z0-9\-\.]{1,64}` (FHIR datatype `id`).

/// Whether `id` is a valid FHIR logical id.
pub fn is_valid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A new server-assigned id: a random UUID, valid as a FHIR id and unguessable.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether a version id (`_history/{vid}`, `W/"{vid}"`) is a positive integer of ours.
pub fn parse_version(vid: &str) -> Option<i64> {
    if vid.is_empty() || vid.len() > 18 || !vid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    vid.parse().ok().filter(|v| *v > 0)
}
