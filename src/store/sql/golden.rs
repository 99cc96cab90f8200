//! Golden SQL for the unit tests of each file: the exact text a builder makes for SQLite and for
//! PostgreSQL and the values it binds, so that a change of the SQL shows up in a diff; and the
//! small queries and entries those tests build.

use super::{Bind, Dialect, Sql};
use crate::search::index::{IndexEntries, TokenEntry};
use crate::search::query::{
    CanonicalQuantity, Contained, ContainedType, Predicate, Prefix, RangeTarget, SearchQuery,
    SortColumn, SortKey, StringMatch, TokenSystem, UriMatch,
};
use crate::store::{Method, NewVersion};

/// Asserts the text `build` makes for each dialect and the values it binds (the same on both).
pub fn assert_sql(build: impl Fn(Dialect) -> Sql, sqlite: &str, postgres: &str, binds: &str) {
    let lite = build(Dialect::Sqlite);
    assert_eq!(lite.text, sqlite, "SQLite text");
    assert_eq!(show(&lite.binds), binds, "SQLite binds");
    let pg = build(Dialect::Postgres);
    assert_eq!(pg.text, postgres, "PostgreSQL text");
    assert_eq!(show(&pg.binds), binds, "PostgreSQL binds");
}

/// Bound values as a list: text `"x"`, optional text `Some("x")`/`None`, int `7`, float `7.0`.
pub fn show(binds: &[Bind]) -> String {
    binds
        .iter()
        .map(|b| match b {
            Bind::Text(s) => format!("{s:?}"),
            Bind::OptText(s) => format!("{s:?}"),
            Bind::Int(i) => i.to_string(),
            Bind::Float(f) => format!("{f:?}"),
            Bind::Bool(b) => b.to_string(),
            Bind::OptInt(i) => format!("{i:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Several statements as one, `; ` between them (binds in order).
pub fn joined(dialect: Dialect, statements: Vec<Sql>) -> Sql {
    let mut sql = Sql::new(dialect);
    for (i, statement) in statements.into_iter().enumerate() {
        if i > 0 {
            sql.push("; ");
        }
        sql.push(&statement.text);
        sql.binds.extend(statement.binds);
    }
    sql
}

/// A search of `rtype` with these filters (pages of 10).
pub fn query(rtype: &str, filters: Vec<Vec<Predicate>>) -> SearchQuery {
    SearchQuery {
        rtype: rtype.into(),
        filters,
        count: 10,
        ..Default::default()
    }
}

/// A search of `rtype` with one filter of one value.
pub fn one(rtype: &str, predicate: Predicate) -> SearchQuery {
    query(rtype, vec![vec![predicate]])
}

/// A search of contained Medications (`_contained`, `_containedType`).
pub fn contained(
    contained: Contained,
    contained_type: ContainedType,
    filters: Vec<Vec<Predicate>>,
    sort: Vec<SortKey>,
) -> SearchQuery {
    SearchQuery {
        contained,
        contained_type,
        sort,
        ..query("Medication", filters)
    }
}

pub fn sort(column: SortColumn, descending: bool) -> SortKey {
    SortKey { column, descending }
}

/// `param=code` (any system).
pub fn token(param: &str, code: &str) -> Predicate {
    Predicate::Token {
        param: param.into(),
        system: TokenSystem::Any,
        code: Some(code.into()),
    }
}

/// `param=target_type/id`.
pub fn reference(param: &str, target_type: &str, id: &str) -> Predicate {
    Predicate::Reference {
        param: param.into(),
        target_type: Some(target_type.into()),
        target_id: Some(id.into()),
        url: None,
    }
}

/// `date=[prefix]2020-01` as the range of that month, `[lo, hi)` in ms.
pub fn date(prefix: Prefix) -> Predicate {
    Predicate::Range {
        target: RangeTarget::Date("date".into()),
        prefix,
        lo: 1_577_836_800_000,
        hi: 1_580_515_200_000,
    }
}

/// `probability=[prefix]0.25`, precision `[0.245, 0.255)`.
pub fn number(prefix: Prefix) -> Predicate {
    Predicate::Number {
        param: "probability".into(),
        prefix,
        value: 0.25,
        lo: 0.245,
        hi: 0.255,
    }
}

/// `value-quantity=5.0|system|code`.
pub fn quantity(
    system: TokenSystem,
    code: Option<&str>,
    canonical: Option<CanonicalQuantity>,
) -> Predicate {
    Predicate::Quantity {
        param: "value-quantity".into(),
        prefix: Prefix::Eq,
        value: 5.0,
        lo: 4.95,
        hi: 5.05,
        system,
        code: code.map(str::to_owned),
        canonical,
    }
}

/// `url[:modifier]=http://example.org/fhir/ValueSet/a`.
pub fn uri(mode: UriMatch) -> Predicate {
    Predicate::Uri {
        param: "url".into(),
        value: "http://example.org/fhir/ValueSet/a".into(),
        mode,
    }
}

/// `param.name=value`: a chain to `target_type` on a string parameter.
pub fn chain(param: &str, target_type: &str, name: &str, value: &str) -> Predicate {
    Predicate::Chain {
        param: param.into(),
        target_type: target_type.into(),
        filters: vec![vec![Predicate::String {
            param: name.into(),
            value: value.into(),
            mode: StringMatch::StartsWith,
        }]],
    }
}

/// Version 3 of `Patient/p1`, written with PUT: with content (and a compartment), or a deletion.
pub fn new_version<'a>(
    content: Option<&'a str>,
    compartment: Option<&'a str>,
    index: &'a IndexEntries,
) -> NewVersion<'a> {
    NewVersion {
        rtype: "Patient",
        id: "p1",
        version: 3,
        last_updated: 1000,
        method: if content.is_some() {
            Method::Put
        } else {
            Method::Delete
        },
        content,
        compartment,
        index,
        event: false,
        source: None,
    }
}

/// `n` token entries of `param` (codes `c0`, `c1`, …).
pub fn tokens(param: &str, n: usize) -> Vec<TokenEntry> {
    (0..n)
        .map(|i| TokenEntry {
            param: param.into(),
            system: None,
            code: Some(format!("c{i}")),
        })
        .collect()
}

/// One entry of each table, a group of two and a contained resource with one token.
pub fn entries() -> IndexEntries {
    use crate::search::index::{
        DateEntry, NumberEntry, QuantityEntry, ReferenceEntry, StringEntry, UriEntry,
    };
    IndexEntries {
        tokens: vec![TokenEntry {
            param: "code".into(),
            system: Some("http://loinc.org".into()),
            code: Some("1234-5".into()),
        }],
        strings: vec![StringEntry {
            param: "name".into(),
            normalized: "eve".into(),
            exact: "Ève".into(),
        }],
        dates: vec![DateEntry {
            param: "date".into(),
            lo: 1000,
            hi: 2000,
        }],
        references: vec![ReferenceEntry {
            param: "subject".into(),
            target_type: Some("Patient".into()),
            target_id: Some("p1".into()),
            url: None,
        }],
        uris: vec![UriEntry {
            param: "url".into(),
            value: "http://example.org".into(),
        }],
        numbers: vec![NumberEntry {
            param: "probability".into(),
            value: 0.25,
            lo: 0.245,
            hi: 0.255,
        }],
        quantities: vec![
            QuantityEntry {
                param: "value-quantity".into(),
                system: Some("http://unitsofmeasure.org".into()),
                code: Some("mg".into()),
                unit: Some("mg".into()),
                value: 5.0,
                lo: 4.95,
                hi: 5.05,
                canonical: Some(crate::ucum::Canonical {
                    value: 0.005,
                    unit: "g".into(),
                }),
            },
            QuantityEntry {
                param: "value-quantity".into(),
                system: None,
                code: None,
                unit: Some("puffs".into()),
                value: 2.0,
                lo: 1.5,
                hi: 2.5,
                canonical: None,
            },
        ],
        groups: vec![IndexEntries {
            tokens: tokens("code-value-quantity$0", 1),
            quantities: vec![],
            ..Default::default()
        }],
        contained: vec![IndexEntries {
            tokens: tokens("Medication#_id", 1),
            ..Default::default()
        }],
    }
}
