//! Writing a version (RESTful API, "create", "update", "delete":
//! https://hl7.org/fhir/R4/http.html): the resource row, the version row, and the index rows the
//! search parameters read (one table per parameter type of the search page,
//! https://hl7.org/fhir/R4/search.html).

use super::{Bind, Dialect, Sql};
use crate::search::index::IndexEntries;
use crate::store::NewVersion;

/// Creates the row of a new resource, returning its row key; a unique violation means a
/// concurrent writer created it first.
pub fn insert_resource(dialect: Dialect, new: &NewVersion<'_>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES (",
    )
    .text(new.rtype)
    .push(", ")
    .text(new.id)
    .push(", ")
    .int(new.version)
    .push(", ")
    .int(new.last_updated)
    .push(", ")
    .bind(Bind::Bool(new.content.is_none()))
    .push(", ")
    .opt(&new.compartment.map(str::to_owned))
    .push(") RETURNING rid");
    sql
}

/// Moves a resource row to a new version if it is still at `previous` (optimistic check),
/// returning its row key; no row means a concurrent writer got there first.
pub fn update_resource(dialect: Dialect, new: &NewVersion<'_>, previous: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE resource SET version = ")
        .int(new.version)
        .push(", last_updated = ")
        .int(new.last_updated)
        .push(", deleted = ")
        .bind(Bind::Bool(new.content.is_none()))
        .push(", compartment = ")
        .opt(&new.compartment.map(str::to_owned))
        .push(" WHERE rtype = ")
        .text(new.rtype)
        .push(" AND id = ")
        .text(new.id)
        .push(" AND version = ")
        .int(previous)
        .push(" RETURNING rid");
    sql
}

/// Inserts a version. A deletion has no content to take a compartment from: it gets the
/// compartment of the version it deletes, so that history confined to a patient's compartment
/// shows the patient's deletions (and no other patient's).
pub fn insert_version(dialect: Dialect, new: &NewVersion<'_>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (",
    )
    .text(new.rtype)
    .push(", ")
    .text(new.id)
    .push(", ")
    .int(new.version)
    .push(", ")
    .int(new.last_updated)
    .push(", ")
    .text(new.method.as_str())
    .push(", ");
    if new.content.is_none() {
        sql.push("(SELECT d.compartment FROM resource_version d WHERE d.rtype = ")
            .text(new.rtype)
            .push(" AND d.id = ")
            .text(new.id)
            .push(" AND d.version = ")
            .int(new.version - 1)
            .push(")");
    } else {
        sql.opt(&new.compartment.map(str::to_owned));
    }
    sql.push(", ")
        .opt(&new.content.map(str::to_owned))
        .push(")");
    sql
}

/// The index tables, for clearing a resource's entries before writing new ones.
pub const INDEX_TABLES: [&str; 7] = [
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_uri",
    "idx_number",
    "idx_quantity",
];

pub fn delete_index(dialect: Dialect, table: &str, rid: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .push(table)
        .push(" WHERE rid = ")
        .int(rid);
    sql
}

/// Rows per multi-row INSERT: keeps the placeholder count far below both databases' limits.
const ROWS_PER_INSERT: usize = 200;

/// Multi-row INSERTs of the index entries of resource row `rid` of type `rtype`, one or more
/// per non-empty table. Token rows carry the type (a search driven by a token looks up only its
/// type's rows); a contained resource's rows carry its container's, as they carry its `rid`.
pub fn insert_index(dialect: Dialect, rid: i64, rtype: &str, entries: &IndexEntries) -> Vec<Sql> {
    let mut out = Vec::new();
    let row = (rid, rtype);
    insert_resource_entries(&mut out, dialect, row, entries, None);
    for (position, contained) in entries.contained.iter().enumerate() {
        insert_resource_entries(&mut out, dialect, row, contained, Some(position as i64));
    }
    out
}

/// The entries of a resource or of one resource it contains (at `contained`), groups included.
fn insert_resource_entries(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    row: (i64, &str),
    entries: &IndexEntries,
    contained: Option<i64>,
) {
    insert_entries(out, dialect, row, entries, None, contained);
    for (grp, group) in entries.groups.iter().enumerate() {
        insert_entries(out, dialect, row, group, Some(grp as i64), contained);
    }
}

/// The entries of a resource, or of one group of it (`grp`: values that come from one element).
/// The `contained` column is only written for a contained resource's entries.
fn insert_entries(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    (rid, rtype): (i64, &str),
    entries: &IndexEntries,
    grp: Option<i64>,
    contained: Option<i64>,
) {
    let grp = Bind::OptInt(grp);
    let columns = |table: &str| match contained {
        Some(_) => table.replacen("(grp, ", "(contained, grp, ", 1),
        None => table.to_owned(),
    };
    let start = |sql: &mut Sql| {
        if let Some(position) = contained {
            sql.int(position).push(", ");
        }
        sql.bind(grp.clone());
    };
    inserts(
        out,
        dialect,
        &columns("idx_token (grp, rid, rtype, param, system, code)"),
        &entries.tokens,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(rtype)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .opt(&e.system)
                .push(", ")
                .opt(&e.code);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_string (grp, rid, param, normalized, exact)"),
        &entries.strings,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .text(&e.normalized)
                .push(", ")
                .text(&e.exact);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_date (grp, rid, param, lo, hi)"),
        &entries.dates,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .int(e.lo)
                .push(", ")
                .int(e.hi);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_reference (grp, rid, param, target_type, target_id, url)"),
        &entries.references,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .opt(&e.target_type)
                .push(", ");
            sql.opt(&e.target_id).push(", ").opt(&e.url);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_uri (grp, rid, param, value)"),
        &entries.uris,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .text(&e.value);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_number (grp, rid, param, value, lo, hi)"),
        &entries.numbers,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .float(e.value)
                .push(", ");
            sql.float(e.lo).push(", ").float(e.hi);
        },
    );
    inserts(
        out,
        dialect,
        &columns("idx_quantity (grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit)"),
        &entries.quantities,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
                .push(", ")
                .text(&e.param)
                .push(", ")
                .opt(&e.system)
                .push(", ");
            sql.opt(&e.code)
                .push(", ")
                .opt(&e.unit)
                .push(", ")
                .float(e.value)
                .push(", ");
            sql.float(e.lo).push(", ").float(e.hi).push(", ");
            match &e.canonical {
                Some(c) => sql.float(c.value).push(", ").text(&c.unit),
                None => sql.push("NULL, NULL"),
            };
        },
    );
}

fn inserts<T>(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    table_and_columns: &str,
    rows: &[T],
    mut values: impl FnMut(&mut Sql, &T),
) {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new(dialect);
        sql.push("INSERT INTO ")
            .push(table_and_columns)
            .push(" VALUES ");
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            values(&mut sql, row);
            sql.push(")");
        }
        out.push(sql);
    }
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;

    #[test]
    fn insert_a_resource_row() {
        assert_sql(
            |d| {
                insert_resource(
                    d,
                    &new_version(Some("{}"), Some("p1"), &IndexEntries::default()),
                )
            },
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES (?, ?, ?, ?, ?, ?) RETURNING rid"#,
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES ($1, $2, $3, $4, $5, $6) RETURNING rid"#,
            r#""Patient", "p1", 3, 1000, false, Some("p1")"#,
        );
    }

    #[test]
    fn update_a_resource_row_at_its_previous_version() {
        assert_sql(
            |d| update_resource(d, &new_version(None, None, &IndexEntries::default()), 2),
            r#"UPDATE resource SET version = ?, last_updated = ?, deleted = ?, compartment = ? WHERE rtype = ? AND id = ? AND version = ? RETURNING rid"#,
            r#"UPDATE resource SET version = $1, last_updated = $2, deleted = $3, compartment = $4 WHERE rtype = $5 AND id = $6 AND version = $7 RETURNING rid"#,
            r#"3, 1000, true, None, "Patient", "p1", 2"#,
        );
    }

    #[test]
    fn insert_a_version() {
        assert_sql(
            |d| {
                insert_version(
                    d,
                    &new_version(Some("{}"), Some("p1"), &IndexEntries::default()),
                )
            },
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (?, ?, ?, ?, ?, ?, ?)"#,
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
            r#""Patient", "p1", 3, 1000, "PUT", Some("p1"), Some("{}")"#,
        );
    }

    #[test]
    fn a_deletion_takes_the_compartment_of_the_version_it_deletes() {
        assert_sql(
            |d| insert_version(d, &new_version(None, None, &IndexEntries::default())),
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (?, ?, ?, ?, ?, (SELECT d.compartment FROM resource_version d WHERE d.rtype = ? AND d.id = ? AND d.version = ?), ?)"#,
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES ($1, $2, $3, $4, $5, (SELECT d.compartment FROM resource_version d WHERE d.rtype = $6 AND d.id = $7 AND d.version = $8), $9)"#,
            r#""Patient", "p1", 3, 1000, "DELETE", "Patient", "p1", 2, None"#,
        );
    }

    #[test]
    fn delete_index_rows() {
        assert_sql(
            |d| delete_index(d, "idx_token", 5),
            r#"DELETE FROM idx_token WHERE rid = ?"#,
            r#"DELETE FROM idx_token WHERE rid = $1"#,
            r#"5"#,
        );
    }

    #[test]
    fn index_rows_of_every_table_of_groups_and_of_contained_resources() {
        assert_sql(
            |d| joined(d, insert_index(d, 5, "Observation", &entries())),
            r#"INSERT INTO idx_token (grp, rid, rtype, param, system, code) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_string (grp, rid, param, normalized, exact) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_date (grp, rid, param, lo, hi) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_reference (grp, rid, param, target_type, target_id, url) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_uri (grp, rid, param, value) VALUES (?, ?, ?, ?); INSERT INTO idx_number (grp, rid, param, value, lo, hi) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_quantity (grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL); INSERT INTO idx_token (grp, rid, rtype, param, system, code) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_token (contained, grp, rid, rtype, param, system, code) VALUES (?, ?, ?, ?, ?, ?, ?)"#,
            r#"INSERT INTO idx_token (grp, rid, rtype, param, system, code) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_string (grp, rid, param, normalized, exact) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_date (grp, rid, param, lo, hi) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_reference (grp, rid, param, target_type, target_id, url) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_uri (grp, rid, param, value) VALUES ($1, $2, $3, $4); INSERT INTO idx_number (grp, rid, param, value, lo, hi) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_quantity (grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), ($12, $13, $14, $15, $16, $17, $18, $19, $20, NULL, NULL); INSERT INTO idx_token (grp, rid, rtype, param, system, code) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_token (contained, grp, rid, rtype, param, system, code) VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
            r#"None, 5, "Observation", "code", Some("http://loinc.org"), Some("1234-5"), None, 5, "name", "eve", "Ève", None, 5, "date", 1000, 2000, None, 5, "subject", Some("Patient"), Some("p1"), None, None, 5, "url", "http://example.org", None, 5, "probability", 0.25, 0.245, 0.255, None, 5, "value-quantity", Some("http://unitsofmeasure.org"), Some("mg"), Some("mg"), 5.0, 4.95, 5.05, 0.005, "g", None, 5, "value-quantity", None, None, Some("puffs"), 2.0, 1.5, 2.5, Some(0), 5, "Observation", "code-value-quantity$0", None, Some("c0"), 0, None, 5, "Observation", "Medication#_id", None, Some("c0")"#,
        );
    }

    #[test]
    fn index_rows_are_inserted_two_hundred_to_a_statement() {
        let entries = IndexEntries {
            tokens: tokens("code", 401),
            ..Default::default()
        };
        let statements = insert_index(Dialect::Sqlite, 5, "Observation", &entries);
        let rows: Vec<usize> = statements
            .iter()
            .map(|s| s.text.matches("), (").count() + 1)
            .collect();
        assert_eq!(rows, [200, 200, 1]);
        assert_eq!(statements[2].binds.len(), 6);
    }
}

/// Locks the rows of the resources `keys` (type, id) against other writers until commit, in one
/// global order (type, then id), so that transactions writing the same resources never wait
/// for each other in a circle (a deadlock). The rows are locked as the sorted result is
/// produced; `lock_clause` is the backend's `FOR UPDATE`. Grouped by type into IN lists, as
/// `read::current_versions` does.
pub fn lock_rows(dialect: Dialect, keys: &[(String, String)], lock_clause: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT rid FROM resource WHERE ");
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (rtype, id) in keys {
        by_type.entry(rtype).or_default().push(id);
    }
    for (i, (rtype, ids)) in by_type.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(rtype = ").text(rtype).push(" AND id IN (");
        for (j, id) in ids.iter().enumerate() {
            if j > 0 {
                sql.push(", ");
            }
            sql.text(id);
        }
        sql.push("))");
    }
    if keys.is_empty() {
        sql.push("1 = 0");
    }
    sql.push(" ORDER BY rtype, id").push(lock_clause);
    sql
}
