//! The parsed form of a search: what the store must match, independent of any database.
//!
//! `params.rs` turns FHIR query strings into this; `store/sql.rs` turns this into SQL.

/// A search over one resource type: every filter must hold (AND); within a filter any predicate
/// may hold (OR, the comma of FHIR search).
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub rtype: String,
    pub filters: Vec<Vec<Predicate>>,
    /// Page size; the store returns at most `count + 1` hits so callers can tell if more exist.
    pub count: usize,
    /// Keyset cursor of the next page: only hits after this row key.
    pub after_rid: Option<i64>,
    /// Keyset cursor of the previous page: only hits before this row key (returned in order).
    pub before_rid: Option<i64>,
}

/// The comparison prefixes of FHIR search (`eq`, `ne`, `gt`, `lt`, `ge`, `le`, `sa`, `eb`, `ap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading two-letter prefix off a value (`ge2020-01-01`), defaulting to `eq`.
    pub fn split(value: &str) -> (Prefix, &str) {
        let prefix = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (prefix, &value[2..])
    }
}

/// Which system a token must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSystem {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

/// Where a range predicate looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeTarget {
    /// The resource's `meta.lastUpdated` (a column of the resource row).
    LastUpdated,
    /// A date search parameter's index entries.
    Date(String),
}

/// How a string parameter matches (search page, string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// Default: case- and accent-insensitive, starts with.
    StartsWith,
    /// `:contains`: case- and accent-insensitive, anywhere.
    Contains,
    /// `:exact`: the whole string, case and accents included.
    Exact,
}

/// How a uri parameter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    /// `:below`: the stored uri starts with the value.
    Below,
    /// `:above`: the value starts with the stored uri.
    Above,
}

/// The index table a parameter's values live in (for `:missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexTable {
    Token,
    String,
    Date,
    Reference,
    Uri,
    Number,
    Quantity,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `_id`.
    Id(String),
    /// A comparison of the target's range with the half-open search range `[lo, hi)` (ms).
    Range {
        target: RangeTarget,
        prefix: Prefix,
        lo: i64,
        hi: i64,
    },
    /// A token parameter; `code: None` matches any code of the system (`system|`).
    Token {
        param: String,
        system: TokenSystem,
        code: Option<String>,
    },
    String {
        param: String,
        value: String,
        mode: StringMatch,
    },
    /// A reference to `target_type/target_id` (type optional), or to an exact `url`.
    Reference {
        param: String,
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
    },
    Uri {
        param: String,
        value: String,
        mode: UriMatch,
    },
    /// A number compared with the search value `value` whose precision implies `[lo, hi)`.
    Number {
        param: String,
        prefix: Prefix,
        value: f64,
        lo: f64,
        hi: f64,
    },
    /// A quantity compared like a number, with the unit given as `system|code` or a code.
    Quantity {
        param: String,
        prefix: Prefix,
        value: f64,
        lo: f64,
        hi: f64,
        system: TokenSystem,
        code: Option<String>,
    },
    /// `:missing=true|false`: the parameter has no value, or has one.
    Missing {
        table: IndexTable,
        param: String,
        missing: bool,
    },
    /// `:not`: the resource has no value matching the inner predicate.
    Not(Box<Predicate>),
}
