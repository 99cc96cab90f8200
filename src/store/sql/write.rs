//! Writing versions (RESTful API, "create", "update", "delete":
//! https://hl7.org/fhir/R4/http.html): the resource rows, the version rows, and the index rows the
//! search parameters read (one table per parameter type of the search page,
//! https://hl7.org/fhir/R4/search.html).
//!
//! The rows of many writes go in together: multi-row `INSERT`s of the resource rows, the
//! version rows and the index rows of every write a transaction holds (`SqlTx` writes them as
//! one batch, see `sql_store`), the same statements on both databases. A statement takes 256,
//! 64 or 16 rows (as many of the largest as fit, then the next), and the fewer than 16 left over
//! go in one statement of exactly that many: the few rows of one request's write are one
//! statement per table (one round trip to the database each), and a database prepares at most
//! eighteen statement texts per table and reuses them, whatever the batch size.

use super::{Bind, Dialect, Sql};
use crate::search::index::IndexEntries;
use crate::store::NewVersion;

/// Rows per multi-row statement, largest first: a batch of n rows is cut greedily into these,
/// and what is left (fewer than the smallest) goes in one statement (e.g. 100 = 64 + 16 + 16 +
/// 4). 256 rows of the widest table (12 columns) bind 3,072 values, far below both databases'
/// limits.
const ROWS_PER_STATEMENT: [usize; 3] = [256, 64, 16];

/// `rows` cut into chunks of the sizes of [`ROWS_PER_STATEMENT`], and one of the rest.
fn chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    for size in ROWS_PER_STATEMENT {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            out.push(chunk);
            rest = tail;
        }
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Multi-row statements `head VALUES (…), (…) tail`, one per chunk of `rows`, each row's
/// values written by `values`.
pub fn multi_row<T>(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    head: &str,
    rows: &[T],
    tail: &str,
    mut values: impl FnMut(&mut Sql, &T),
) {
    for chunk in chunks(rows) {
        let mut sql = Sql::new(dialect);
        sql.push(head).push(" VALUES ");
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            values(&mut sql, row);
            sql.push(")");
        }
        sql.push(tail);
        out.push(sql);
    }
}

/// Creates the rows of new resources, returning `rid, rtype, id` of each (the order of the
/// returned rows is not promised); a unique violation means a concurrent writer created one of
/// them first.
pub fn insert_resources(dialect: Dialect, new: &[NewVersion<'_>]) -> Vec<Sql> {
    let mut out = Vec::new();
    multi_row(
        &mut out,
        dialect,
        "INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment)",
        new,
        " RETURNING rid, rtype, id",
        |sql, new| {
            sql.text(new.rtype)
                .push(", ")
                .text(new.id)
                .push(", ")
                .int(new.version)
                .push(", ")
                .int(new.last_updated)
                .push(", ")
                .bind(Bind::Bool(new.content.is_none()))
                .push(", ")
                .opt(new.compartment);
        },
    );
    out
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
        .opt(new.compartment)
        .push(" WHERE rtype = ")
        .text(new.rtype)
        .push(" AND id = ")
        .text(new.id)
        .push(" AND version = ")
        .int(previous)
        .push(" RETURNING rid");
    sql
}

/// Inserts versions. A deletion has no content to take a compartment from: it gets the
/// compartment of the version it deletes, so that history confined to a patient's compartment
/// shows the patient's deletions (and no other patient's).
pub fn insert_versions(dialect: Dialect, new: &[NewVersion<'_>]) -> Vec<Sql> {
    let mut out = Vec::new();
    multi_row(
        &mut out,
        dialect,
        "INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content)",
        new,
        "",
        |sql, new| {
            sql.text(new.rtype)
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
                sql.opt(new.compartment);
            }
            sql.push(", ").opt(new.content);
        },
    );
    out
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

/// Removes the index rows of the resource rows `rids` from `table`, in statements of at most
/// 256 rows.
pub fn delete_index(dialect: Dialect, table: &str, rids: &[i64]) -> Vec<Sql> {
    chunks(rids)
        .into_iter()
        .map(|chunk| {
            let mut sql = Sql::new(dialect);
            sql.push("DELETE FROM ").push(table).push(" WHERE rid IN (");
            sql.ints(chunk);
            sql.push(")");
            sql
        })
        .collect()
}

/// One resource row's index entries to insert: its row key, its type, its entries.
pub type IndexRows<'a> = (i64, &'a str, &'a IndexEntries);

/// Where an index row belongs: the resource row, its type, the group and the contained
/// resource its entry comes from.
#[derive(Clone, Copy)]
struct Owner<'a> {
    rid: i64,
    rtype: &'a str,
    grp: Option<i64>,
    contained: Option<i64>,
}

/// The entries of many resources, table by table, each with its owner.
#[derive(Default)]
struct Tables<'a> {
    tokens: Vec<(Owner<'a>, &'a crate::search::index::TokenEntry)>,
    strings: Vec<(Owner<'a>, &'a crate::search::index::StringEntry)>,
    dates: Vec<(Owner<'a>, &'a crate::search::index::DateEntry)>,
    references: Vec<(Owner<'a>, &'a crate::search::index::ReferenceEntry)>,
    uris: Vec<(Owner<'a>, &'a crate::search::index::UriEntry)>,
    numbers: Vec<(Owner<'a>, &'a crate::search::index::NumberEntry)>,
    quantities: Vec<(Owner<'a>, &'a crate::search::index::QuantityEntry)>,
}

impl<'a> Tables<'a> {
    /// The entries of a resource or of one resource it contains, groups included.
    fn add_resource(&mut self, owner: Owner<'a>, entries: &'a IndexEntries) {
        self.add(owner, entries);
        for (grp, group) in entries.groups.iter().enumerate() {
            self.add(
                Owner {
                    grp: Some(grp as i64),
                    ..owner
                },
                group,
            );
        }
    }

    /// The entries of a resource or of one group of it (without its groups).
    fn add(&mut self, owner: Owner<'a>, entries: &'a IndexEntries) {
        self.tokens
            .extend(entries.tokens.iter().map(|e| (owner, e)));
        self.strings
            .extend(entries.strings.iter().map(|e| (owner, e)));
        self.dates.extend(entries.dates.iter().map(|e| (owner, e)));
        self.references
            .extend(entries.references.iter().map(|e| (owner, e)));
        self.uris.extend(entries.uris.iter().map(|e| (owner, e)));
        self.numbers
            .extend(entries.numbers.iter().map(|e| (owner, e)));
        self.quantities
            .extend(entries.quantities.iter().map(|e| (owner, e)));
    }
}

/// Multi-row INSERTs of the index entries of the resource rows `rows`, the rows of all of them
/// together, table by table. Token rows carry the type (a search driven by a token looks up only
/// its type's rows); a contained resource's token rows carry none (NULL: searches of contained
/// resources look them up under it, whatever the container), its container's `rid`, and its
/// position in `contained` (NULL for the resource's own entries).
///
/// On SQLite the statements are `INSERT OR FAIL`: a multi-row `INSERT` that could abort half
/// way (a `NOT NULL` column, under the default `ABORT`) makes SQLite open a statement journal
/// and copy every page it changes into it first, so that the statement alone can be undone —
/// about a tenth of a create's work on the writer's thread. No index row can violate a
/// constraint (the columns that must not be NULL are always bound), and if one did, the error
/// still fails the write, whose savepoint or transaction is rolled back as a whole: nothing
/// relies on undoing one statement (decision 0053).
pub fn insert_index(dialect: Dialect, rows: &[IndexRows<'_>]) -> Vec<Sql> {
    let mut tables = Tables::default();
    for &(rid, rtype, entries) in rows {
        let owner = Owner {
            rid,
            rtype,
            grp: None,
            contained: None,
        };
        tables.add_resource(owner, entries);
        for (position, contained) in entries.contained.iter().enumerate() {
            tables.add_resource(
                Owner {
                    contained: Some(position as i64),
                    ..owner
                },
                contained,
            );
        }
    }
    let start = |sql: &mut Sql, owner: &Owner<'_>| {
        sql.bind(Bind::OptInt(owner.contained))
            .push(", ")
            .bind(Bind::OptInt(owner.grp))
            .push(", ")
            .int(owner.rid)
            .push(", ");
    };
    let insert = match dialect {
        Dialect::Sqlite => "INSERT OR FAIL INTO",
        Dialect::Postgres => "INSERT INTO",
    };
    let mut out = Vec::new();
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_token (contained, grp, rid, rtype, param, system, code)"),
        &tables.tokens,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            // A contained resource's rows carry no type: only searches of contained resources
            // read them, whatever the container's type (decision 0056).
            sql.bind(Bind::OptText(
                owner.contained.is_none().then(|| owner.rtype.to_owned()),
            ))
            .push(", ")
            .text(&e.param)
            .push(", ")
            .opt(e.system.as_deref())
            .push(", ")
            .opt(e.code.as_deref());
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_string (contained, grp, rid, param, normalized, exact)"),
        &tables.strings,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param)
                .push(", ")
                .text(&e.normalized)
                .push(", ")
                .text(&e.exact);
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_date (contained, grp, rid, param, lo, hi)"),
        &tables.dates,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param).push(", ").int(e.lo).push(", ").int(e.hi);
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!(
            "{insert} idx_reference (contained, grp, rid, param, target_type, target_id, url)"
        ),
        &tables.references,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param)
                .push(", ")
                .opt(e.target_type.as_deref())
                .push(", ")
                .opt(e.target_id.as_deref())
                .push(", ")
                .opt(e.url.as_deref());
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_uri (contained, grp, rid, param, value)"),
        &tables.uris,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param).push(", ").text(&e.value);
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_number (contained, grp, rid, param, value, lo, hi)"),
        &tables.numbers,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param)
                .push(", ")
                .float(e.value)
                .push(", ")
                .float(e.lo)
                .push(", ")
                .float(e.hi);
        },
    );
    multi_row(
        &mut out,
        dialect,
        &format!("{insert} idx_quantity (contained, grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit)"),
        &tables.quantities,
        "",
        |sql, (owner, e)| {
            start(sql, owner);
            sql.text(&e.param)
                .push(", ")
                .opt(e.system.as_deref())
                .push(", ")
                .opt(e.code.as_deref())
                .push(", ")
                .opt(e.unit.as_deref())
                .push(", ")
                .float(e.value)
                .push(", ")
                .float(e.lo)
                .push(", ")
                .float(e.hi)
                .push(", ");
            match &e.canonical {
                Some(c) => sql.float(c.value).push(", ").text(&c.unit),
                None => sql.push("NULL, NULL"),
            };
        },
    );
    out
}

/// Locks the rows of the resources `keys` (type, id) against other writers until commit, in one
/// global order (type, then id), so that transactions writing the same resources never wait
/// for each other in a circle (a deadlock), and reads their current state (`rtype, id,
/// version, last_updated, deleted`): the `Tx::lock_current` of each that follows needs no
/// statement of its own. The rows are locked as the sorted result is produced; `lock_clause` is
/// the backend's `FOR UPDATE` (empty on SQLite, whose writer holds the database's lock).
/// Grouped by type into IN lists (`read::resources_by_key`).
pub fn lock_rows(dialect: Dialect, keys: &[(String, String)], lock_clause: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT rtype, id, version, last_updated, deleted FROM resource WHERE ");
    super::read::resources_by_key(&mut sql, "", keys);
    sql.push(" ORDER BY rtype, id").push(lock_clause);
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use super::{chunks, insert_resources, insert_versions};
    use crate::search::index::IndexEntries;

    #[test]
    fn insert_resource_rows_returning_their_keys() {
        let none = IndexEntries::default();
        assert_sql(
            |d| {
                let rows = [
                    new_version(Some("{}"), Some("p1"), &none),
                    new_version(Some("{}"), None, &none),
                ];
                joined(d, insert_resources(d, &rows))
            },
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?) RETURNING rid, rtype, id"#,
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12) RETURNING rid, rtype, id"#,
            r#""Patient", "p1", 3, 1000, false, Some("p1"), "Patient", "p1", 3, 1000, false, None"#,
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
    fn insert_versions_a_deletion_taking_the_compartment_of_the_version_it_deletes() {
        let none = IndexEntries::default();
        assert_sql(
            |d| {
                let rows = [
                    new_version(Some("{}"), Some("p1"), &none),
                    new_version(None, None, &none),
                    new_version(Some("{}"), None, &none),
                    new_version(Some("{}"), None, &none),
                ];
                joined(d, insert_versions(d, &rows))
            },
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, (SELECT d.compartment FROM resource_version d WHERE d.rtype = ? AND d.id = ? AND d.version = ?), ?), (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)"#,
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, (SELECT d.compartment FROM resource_version d WHERE d.rtype = $13 AND d.id = $14 AND d.version = $15), $16), ($17, $18, $19, $20, $21, $22, $23), ($24, $25, $26, $27, $28, $29, $30)"#,
            r#""Patient", "p1", 3, 1000, "PUT", Some("p1"), Some("{}"), "Patient", "p1", 3, 1000, "DELETE", "Patient", "p1", 2, None, "Patient", "p1", 3, 1000, "PUT", None, Some("{}"), "Patient", "p1", 3, 1000, "PUT", None, Some("{}")"#,
        );
    }

    #[test]
    fn delete_the_index_rows_of_several_resources() {
        assert_sql(
            |d| joined(d, delete_index(d, "idx_token", &[5, 6, 7, 8])),
            r#"DELETE FROM idx_token WHERE rid IN (?, ?, ?, ?)"#,
            r#"DELETE FROM idx_token WHERE rid IN ($1, $2, $3, $4)"#,
            r#"5, 6, 7, 8"#,
        );
    }

    #[test]
    fn index_rows_of_every_table_of_groups_and_of_contained_resources() {
        assert_sql(
            |d| joined(d, insert_index(d, &[(5, "Observation", &entries())])),
            r#"INSERT OR FAIL INTO idx_token (contained, grp, rid, rtype, param, system, code) VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_string (contained, grp, rid, param, normalized, exact) VALUES (?, ?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_date (contained, grp, rid, param, lo, hi) VALUES (?, ?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_reference (contained, grp, rid, param, target_type, target_id, url) VALUES (?, ?, ?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_uri (contained, grp, rid, param, value) VALUES (?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_number (contained, grp, rid, param, value, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?); INSERT OR FAIL INTO idx_quantity (contained, grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)"#,
            r#"INSERT INTO idx_token (contained, grp, rid, rtype, param, system, code) VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14), ($15, $16, $17, $18, $19, $20, $21); INSERT INTO idx_string (contained, grp, rid, param, normalized, exact) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_date (contained, grp, rid, param, lo, hi) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_reference (contained, grp, rid, param, target_type, target_id, url) VALUES ($1, $2, $3, $4, $5, $6, $7); INSERT INTO idx_uri (contained, grp, rid, param, value) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_number (contained, grp, rid, param, value, lo, hi) VALUES ($1, $2, $3, $4, $5, $6, $7); INSERT INTO idx_quantity (contained, grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, NULL, NULL)"#,
            r#"None, None, 5, Some("Observation"), "code", Some("http://loinc.org"), Some("1234-5"), None, Some(0), 5, Some("Observation"), "code-value-quantity$0", None, Some("c0"), Some(0), None, 5, None, "Medication#_id", None, Some("c0"), None, None, 5, "name", "eve", "Ève", None, None, 5, "date", 1000, 2000, None, None, 5, "subject", Some("Patient"), Some("p1"), None, None, None, 5, "url", "http://example.org", None, None, 5, "probability", 0.25, 0.245, 0.255, None, None, 5, "value-quantity", Some("http://unitsofmeasure.org"), Some("mg"), Some("mg"), 5.0, 4.95, 5.05, 0.005, "g", None, None, 5, "value-quantity", None, None, Some("puffs"), 2.0, 1.5, 2.5"#,
        );
    }

    #[test]
    fn index_rows_of_several_resources_share_their_statements() {
        let (a, b) = (entries(), entries());
        let statements = insert_index(
            Dialect::Sqlite,
            &[(5, "Observation", &a), (6, "Observation", &b)],
        );
        // Three token rows each (own, group, contained), two of most other tables, four of
        // quantity: one statement per table.
        let rows: Vec<usize> = statements
            .iter()
            .map(|s| s.text.matches("), (").count() + 1)
            .collect();
        assert_eq!(rows, [6, 2, 2, 2, 2, 2, 4]);
        assert_eq!(statements[0].binds[2], Bind::Int(5));
        assert_eq!(statements[0].binds[3 * 7 + 2], Bind::Int(6));
        assert_eq!(statements[1].binds[6 + 2], Bind::Int(6));
    }

    #[test]
    fn rows_are_cut_into_statements_of_256_64_16_and_the_rest() {
        let sizes =
            |n: usize| -> Vec<usize> { chunks(&vec![0u8; n]).iter().map(|c| c.len()).collect() };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(3), [3]);
        assert_eq!(sizes(16), [16]);
        assert_eq!(sizes(31), [16, 15]);
        assert_eq!(sizes(100), [64, 16, 16, 4]);
        assert_eq!(sizes(401), [256, 64, 64, 16, 1]);
        let entries = IndexEntries {
            tokens: tokens("code", 401),
            ..Default::default()
        };
        let statements = insert_index(Dialect::Sqlite, &[(5, "Observation", &entries)]);
        assert_eq!(statements.len(), 5);
        assert_eq!(statements[4].binds.len(), 7);
    }
}
