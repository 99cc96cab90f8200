//! Search index entries: the typed values a resource version is found by.
//!
//! They are computed from the resource on every write (`extract.rs`, and each parameter type's
//! file in `param/`) and stored by the store in typed tables, in the same transaction as the
//! resource, so search never sees a resource without its index or an index without its resource.

/// A token value (`code`, `Coding`, `CodeableConcept`, `Identifier`, `boolean`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub param: String,
    pub system: Option<String>,
    pub code: Option<String>,
}

/// A string value, `normalized` for case- and accent-insensitive matching.
#[derive(Debug, Clone, PartialEq)]
pub struct StringEntry {
    pub param: String,
    pub normalized: String,
    pub exact: String,
}

/// A date, dateTime, instant, Period or Timing as the half-open range `[lo, hi)` in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct DateEntry {
    pub param: String,
    pub lo: i64,
    pub hi: i64,
}

/// A reference to another resource (`target_type/target_id`) or a URL it could not split.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEntry {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: Option<String>,
}

/// A uri, url or canonical value.
#[derive(Debug, Clone, PartialEq)]
pub struct UriEntry {
    pub param: String,
    pub value: String,
}

/// A number, kept with the range its precision implies.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberEntry {
    pub param: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A quantity as written (`system`, `code`, `unit`) and its value; a UCUM quantity also in
/// canonical base units, so searches in any commensurable unit find it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityEntry {
    pub param: String,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub canonical: Option<crate::ucum::Canonical>,
}

/// Everything one resource version is indexed by.
///
/// Besides the entries of each parameter (`param` = its code) there are entries the modifiers
/// match against, under names no parameter code can have: `code:text` (string entries of the
/// display texts of a token), `subject:identifier` (token entries of `Reference.identifier`).
/// Values that must come from one element (composite components `code$0`, `code$1`;
/// `identifier:of-type$0` for the type and `$1` for the value) are in `groups`, one per element.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexEntries {
    pub tokens: Vec<TokenEntry>,
    pub strings: Vec<StringEntry>,
    pub dates: Vec<DateEntry>,
    pub references: Vec<ReferenceEntry>,
    pub uris: Vec<UriEntry>,
    pub numbers: Vec<NumberEntry>,
    pub quantities: Vec<QuantityEntry>,
    /// Entries that belong together, one group per element (stored with the group's number).
    pub groups: Vec<IndexEntries>,
    /// The entries of each contained resource, in the order of the resource's `contained`
    /// (stored with that position), under [`contained_param`] names: contained resources are
    /// found through their container (search page, "Contained Resources").
    pub contained: Vec<IndexEntries>,
}

/// The name under which a contained resource of type `rtype` stores the entries of its
/// parameter `param`: `Medication#code`. No search parameter code has a `#`, so a search
/// without `_contained` never meets these entries and its index lookups stay as narrow.
pub fn contained_param(rtype: &str, param: &str) -> String {
    format!("{rtype}#{param}")
}

/// The parameter every contained resource has one token entry of, its local id as the code:
/// how the resources contained in a container are listed, and how `_id` finds one.
pub const CONTAINED_ID: &str = "_id";

impl IndexEntries {
    /// The number of entries, those of groups included.
    pub fn len(&self) -> usize {
        self.tokens.len()
            + self.strings.len()
            + self.dates.len()
            + self.references.len()
            + self.uris.len()
            + self.numbers.len()
            + self.quantities.len()
            + self.groups.iter().map(IndexEntries::len).sum::<usize>()
            + self.contained.iter().map(IndexEntries::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The longest text kept in an index entry, in bytes. PostgreSQL refuses B-tree index entries
/// over ~2,700 bytes; matching on the first kilobyte of a value loses next to nothing.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// Index text: without NUL (PostgreSQL text cannot hold it) and at most `MAX_INDEXED_BYTES`.
/// Search values compared with index text are cut the same way.
pub fn index_text(s: &str) -> String {
    let mut text = s.replace('\0', "");
    if text.len() > MAX_INDEXED_BYTES {
        let mut end = MAX_INDEXED_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl IndexEntries {
    /// The id of the Patient whose compartment holds this resource `rtype/id`, if any (see
    /// [`crate::fhir::compartment`]): the sharding key, and what patient-bound tokens allow.
    pub fn patient_compartment(&self, rtype: &str, id: &str) -> Option<String> {
        crate::fhir::compartment::patient(rtype, id, |param| {
            self.references.iter().find_map(|r| {
                (r.param == param && r.target_type.as_deref() == Some("Patient"))
                    .then(|| r.target_id.clone())
                    .flatten()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_text_drops_nul_and_cuts_at_a_character_boundary() {
        assert_eq!(index_text("a\0b"), "ab");
        let long = "é".repeat(MAX_INDEXED_BYTES);
        let cut = index_text(&long);
        assert!(cut.len() <= MAX_INDEXED_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_resource_is_in_the_compartment_of_the_patient_it_refers_to() {
        let entries = IndexEntries {
            references: vec![ReferenceEntry {
                param: "subject".into(),
                target_type: Some("Patient".into()),
                target_id: Some("p1".into()),
                url: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            entries.patient_compartment("Observation", "o").as_deref(),
            Some("p1")
        );
        assert_eq!(entries.patient_compartment("Organization", "o"), None);
    }
}
