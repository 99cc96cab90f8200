//! Reading versions (RESTful API, "read" and "vread": https://hl7.org/fhir/R4/http.html#read)
//! and the current resources a page, an `_include` or a Patient compartment
//! (https://hl7.org/fhir/R4/compartmentdefinition.html) names.

use super::{Dialect, Sql};

/// Columns of a version row, in the order `row_to_version` of each store reads them.
pub const VERSION_COLUMNS: &str = "v.rtype, v.id, v.version, v.last_updated, v.method, v.content";

/// One version of a resource, or its newest (also a deletion) when `version` is `None`.
pub fn read_version(dialect: Dialect, rtype: &str, id: &str, version: Option<i64>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(VERSION_COLUMNS)
        .push(" FROM resource_version v WHERE v.rtype = ");
    sql.text(rtype).push(" AND v.id = ").text(id);
    match version {
        Some(version) => sql.push(" AND v.version = ").int(version),
        None => sql.push(" ORDER BY v.version DESC LIMIT 1"),
    };
    sql
}

/// The current, not deleted versions of the resources `keys` (type, id).
pub fn current_versions(dialect: Dialect, keys: &[(String, String)]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT r.rid, ").push(VERSION_COLUMNS).push(
        " FROM resource r JOIN resource_version v \
         ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (",
    );
    resources_by_key(&mut sql, "r.", keys);
    sql.push(") ORDER BY r.rid");
    sql
}

/// The condition that a row is one of the resources `keys` (type, id), on the columns `rtype`
/// and `id` after `alias` (`"r."`, or `""` for the table itself); never true when `keys` is
/// empty. Grouped by type into IN lists: a flat OR per key nests too deep for SQLite.
pub(super) fn resources_by_key(sql: &mut Sql, alias: &str, keys: &[(String, String)]) {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (rtype, id) in keys {
        by_type.entry(rtype).or_default().push(id);
    }
    for (i, (rtype, ids)) in by_type.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(")
            .push(alias)
            .push("rtype = ")
            .text(rtype)
            .push(" AND ")
            .push(alias)
            .push("id IN (");
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
}

/// The current version of every resource of `types` in a patient's compartment (the patient
/// included when `types` names Patient). Columns: `VERSION_COLUMNS`.
pub fn compartment(dialect: Dialect, patient: &str, types: &[&str]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(VERSION_COLUMNS)
        .push(
            " FROM resource r JOIN resource_version v \
             ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version \
             WHERE r.compartment = ",
        )
        .text(patient)
        .push(" AND r.rtype IN (");
    for (i, rtype) in types.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(rtype);
    }
    if types.is_empty() {
        sql.push("NULL");
    }
    sql.push(") AND NOT r.deleted ORDER BY r.rid");
    sql
}

/// Every patient id that has a compartment with something current in it. Column: compartment.
pub fn compartments(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "SELECT DISTINCT compartment FROM resource \
         WHERE compartment IS NOT NULL AND NOT deleted ORDER BY compartment",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;

    #[test]
    fn read_the_newest_version() {
        assert_sql(
            |d| read_version(d, "Patient", "p1", None),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = ? AND v.id = ? ORDER BY v.version DESC LIMIT 1"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = $1 AND v.id = $2 ORDER BY v.version DESC LIMIT 1"#,
            r#""Patient", "p1""#,
        );
    }

    #[test]
    fn vread_one_version() {
        assert_sql(
            |d| read_version(d, "Patient", "p1", Some(3)),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = ? AND v.id = ? AND v.version = ?"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = $1 AND v.id = $2 AND v.version = $3"#,
            r#""Patient", "p1", 3"#,
        );
    }

    #[test]
    fn current_versions_grouped_by_type() {
        assert_sql(
            |d| {
                current_versions(
                    d,
                    &[
                        ("Patient".into(), "p1".into()),
                        ("Observation".into(), "o1".into()),
                        ("Patient".into(), "p2".into()),
                    ],
                )
            },
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = ? AND r.id IN (?)) OR (r.rtype = ? AND r.id IN (?, ?))) ORDER BY r.rid"#,
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = $1 AND r.id IN ($2)) OR (r.rtype = $3 AND r.id IN ($4, $5))) ORDER BY r.rid"#,
            r#""Observation", "o1", "Patient", "p1", "p2""#,
        );
    }

    #[test]
    fn current_versions_of_nothing() {
        assert_sql(
            |d| current_versions(d, &[]),
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (1 = 0) ORDER BY r.rid"#,
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (1 = 0) ORDER BY r.rid"#,
            r#""#,
        );
    }

    /// The same IN lists on the table itself: the rows a write locks (`write::lock_rows`).
    #[test]
    fn locked_rows_grouped_by_type() {
        let keys = [
            ("Patient".into(), "p1".into()),
            ("Observation".into(), "o1".into()),
            ("Patient".into(), "p2".into()),
        ];
        assert_sql(
            |d| lock_rows(d, &keys, " FOR UPDATE"),
            r#"SELECT rtype, id, version, last_updated, deleted FROM resource WHERE (rtype = ? AND id IN (?)) OR (rtype = ? AND id IN (?, ?)) ORDER BY rtype, id FOR UPDATE"#,
            r#"SELECT rtype, id, version, last_updated, deleted FROM resource WHERE (rtype = $1 AND id IN ($2)) OR (rtype = $3 AND id IN ($4, $5)) ORDER BY rtype, id FOR UPDATE"#,
            r#""Observation", "o1", "Patient", "p1", "p2""#,
        );
        assert_sql(
            |d| lock_rows(d, &[], ""),
            r#"SELECT rtype, id, version, last_updated, deleted FROM resource WHERE 1 = 0 ORDER BY rtype, id"#,
            r#"SELECT rtype, id, version, last_updated, deleted FROM resource WHERE 1 = 0 ORDER BY rtype, id"#,
            r#""#,
        );
    }

    #[test]
    fn a_compartment_of_some_types() {
        assert_sql(
            |d| compartment(d, "p1", &["Patient", "Observation"]),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = ? AND r.rtype IN (?, ?) AND NOT r.deleted ORDER BY r.rid"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = $1 AND r.rtype IN ($2, $3) AND NOT r.deleted ORDER BY r.rid"#,
            r#""p1", "Patient", "Observation""#,
        );
    }

    #[test]
    fn a_compartment_of_no_types() {
        assert_sql(
            |d| compartment(d, "p1", &[]),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = ? AND r.rtype IN (NULL) AND NOT r.deleted ORDER BY r.rid"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = $1 AND r.rtype IN (NULL) AND NOT r.deleted ORDER BY r.rid"#,
            r#""p1""#,
        );
    }

    #[test]
    fn every_compartment() {
        assert_sql(
            compartments,
            r#"SELECT DISTINCT compartment FROM resource WHERE compartment IS NOT NULL AND NOT deleted ORDER BY compartment"#,
            r#"SELECT DISTINCT compartment FROM resource WHERE compartment IS NOT NULL AND NOT deleted ORDER BY compartment"#,
            r#""#,
        );
    }
}
