//! The parsed form of a search: what the store must match, independent of any database.
//!
//! `params.rs` (with each parameter type in `param/`) turns FHIR query strings into this; the
//! store turns this into SQL. Values arrive here as the index holds them: cut like index text,
//! strings normalised for the matches that ignore case and accents.

/// A search over one resource type: every filter must hold (AND); within a filter any predicate
/// may hold (OR, the comma of FHIR search).
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub rtype: String,
    pub filters: Vec<Vec<Predicate>>,
    /// Page size; the store returns at most `count + 1` hits so callers can tell if more exist.
    pub count: usize,
    /// Sort keys in order (`_sort`); the row key breaks ties, and orders when there are none.
    pub sort: Vec<SortKey>,
    /// Keyset cursor of the next page: only hits after this one.
    pub after: Option<Cursor>,
    /// Keyset cursor of the previous page: only hits before this one (returned in order).
    pub before: Option<Cursor>,
    /// `_contained`: whether the resources searched are those contained in other resources.
    pub contained: Contained,
    /// `_containedType`: what a search of contained resources returns.
    pub contained_type: ContainedType,
}

/// `_contained` (search page, "Contained Resources").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contained {
    /// Only resources that are not contained in another (the default).
    #[default]
    False,
    /// Only contained resources.
    True,
    /// Both.
    Both,
}

/// `_containedType`: whether a matching contained resource is returned as its container
/// (the default) or on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainedType {
    #[default]
    Container,
    Contained,
}

/// Where a hit of a search with `_contained=true|both` comes from (its `SearchHit::contained`,
/// the tie-breaker after the row key): a contained resource is its position (0, 1, …).
pub const HIT_RESOURCE: i64 = -1;
/// A container of a matching contained resource (`_containedType=container`).
pub const HIT_CONTAINER: i64 = -2;

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
    /// In this Patient's compartment (the stored compartment column): how patient-bound access
    /// tokens are confined; no search parameter makes it. A single one drives the search.
    Compartment(String),
    /// Of this resource type (in a search of contained resources: the container's type): how
    /// access tokens are kept from containers they may not see; no search parameter makes it.
    Type(String),
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
    /// A string parameter: `value` is normalised (`search::param::string::normalize`) for
    /// `StartsWith` and `Contains`, compared with the `normalized` entries; as written for
    /// `Exact`, compared with the `exact` ones.
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
    /// A UCUM unit is compared in canonical units instead (`canonical`), so any commensurable
    /// stored unit matches and an incommensurable one does not.
    Quantity {
        param: String,
        prefix: Prefix,
        value: f64,
        lo: f64,
        hi: f64,
        system: TokenSystem,
        code: Option<String>,
        canonical: Option<CanonicalQuantity>,
    },
    /// `:missing=true|false`: the parameter has no value, or has one.
    Missing {
        table: IndexTable,
        param: String,
        missing: bool,
    },
    /// Values read from one element (a composite parameter's components, an identifier's type
    /// and value for `:of-type`): every predicate matches an entry of the same group.
    Composite(Vec<Predicate>),
    /// A token modifier that needs the server's terminology (`:in`, `:below`, `:above`):
    /// replaced with `TokenIn` by `search::resolve` (asking the terminology) before the store
    /// runs the query.
    Terminology { param: String, op: TerminologyOp },
    /// A reference `:below` / `:above` (search page, "Searching Hierarchies"): a reference to
    /// `target_type/id` or to a resource below (above) it along the hierarchy that the target
    /// type's own reference parameter `via` (its `partOf`) makes; replaced with `Reference`s by
    /// `search::hierarchy::resolve` before the store runs the query.
    Hierarchy {
        param: String,
        target_type: String,
        id: String,
        via: String,
        above: bool,
    },
    /// A token whose `system|code` is one of `codes` (system, its codes).
    TokenIn {
        param: String,
        codes: Vec<(String, Vec<String>)>,
    },
    /// `:not`: the resource has no value matching the inner predicate.
    Not(Box<Predicate>),
    /// A chained parameter: the reference `param` points at a `target_type` resource that
    /// matches every filter (an AND of ORs).
    Chain {
        param: String,
        target_type: String,
        filters: Vec<Vec<Predicate>>,
    },
    /// `_has`: a `source_type` resource that references this one (of `target_type`) through
    /// `param` matches every filter.
    Has {
        source_type: String,
        param: String,
        target_type: String,
        filters: Vec<Vec<Predicate>>,
    },
}

/// A UCUM search quantity in canonical base units: `value` and its precision range `[lo, hi)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalQuantity {
    pub unit: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The codes a terminology modifier stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TerminologyOp {
    /// `:in` (and `:not-in`): the codes of the value set with this url.
    In(String),
    /// `:below`: the code and every code below it in its code system.
    Below { system: String, code: String },
    /// `:above`: the code and every code above it.
    Above { system: String, code: String },
}

impl TerminologyOp {
    /// The modifier and value, for error messages.
    pub fn describe(&self) -> String {
        match self {
            TerminologyOp::In(url) => format!(":in={url}"),
            TerminologyOp::Below { system, code } => format!(":below={system}|{code}"),
            TerminologyOp::Above { system, code } => format!(":above={system}|{code}"),
        }
    }
}

/// What a sort key orders by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortColumn {
    Id,
    LastUpdated,
    /// A search parameter's indexed values: the smallest ascending, the largest descending.
    Index {
        table: IndexTable,
        param: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: SortColumn,
    pub descending: bool,
}

/// The SQL type of a sort key's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Text,
    Int,
    Float,
}

impl SortKey {
    pub fn kind(&self) -> KeyKind {
        match &self.column {
            SortColumn::Id => KeyKind::Text,
            SortColumn::LastUpdated => KeyKind::Int,
            SortColumn::Index { table, .. } => match table {
                IndexTable::Date => KeyKind::Int,
                IndexTable::Number | IndexTable::Quantity => KeyKind::Float,
                _ => KeyKind::Text,
            },
        }
    }
}

/// A sort key's value on one hit (`Null` when the resource has no value: sorted last).
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
}

/// A position in a sorted result: the sort key values and row key of a hit (encoded in paging
/// links by `search::sort`). In a search with `_contained=true|both` one more key follows the
/// sort keys: the hit's contained position (`SearchHit::contained`), which breaks ties after
/// the row key.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub keys: Vec<KeyValue>,
    pub rid: i64,
}
