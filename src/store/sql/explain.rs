//! The plan of a statement (`EXPLAIN`), for the benchmark and the performance notes: the SQL of
//! a store method, exactly as it builds it, under the dialect's plan command.

use super::{count, current_versions, include_targets, lastn, search, Dialect, Sql};
use crate::store::Statement;

/// The SQL of `statement`, exactly as the store method it names builds it.
pub fn statement(dialect: Dialect, statement: &Statement<'_>) -> Sql {
    match *statement {
        Statement::Search(query) => search(dialect, query),
        Statement::Count(query) => count(dialect, query),
        Statement::Lastn { query, max, limit } => lastn(dialect, query, max, limit),
        Statement::IncludeTargets {
            rids,
            params,
            target_type,
        } => include_targets(dialect, rids, params, target_type),
        Statement::ReadCurrent(keys) => current_versions(dialect, keys),
    }
}

/// `statement` under the dialect's plan command: SQLite `EXPLAIN QUERY PLAN` (rows of id,
/// parent, notused, detail), PostgreSQL `EXPLAIN` (one text row per plan line).
pub fn explain(dialect: Dialect, statement: &Statement<'_>) -> Sql {
    let mut sql = self::statement(dialect, statement);
    let prefix = match dialect {
        Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
        Dialect::Postgres => "EXPLAIN ",
    };
    sql.text.insert_str(0, prefix);
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::store::Statement;

    #[test]
    fn explain_a_count() {
        assert_sql(
            |d| {
                explain(
                    d,
                    &Statement::Count(&one("Patient", token("gender", "female"))),
                )
            },
            r#"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = ? AND t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"EXPLAIN SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = $1 AND t.param = $2 AND t.code = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted"#,
            r#""Patient", "gender", "female", "Patient""#,
        );
    }

    #[test]
    fn explain_reading_current_versions() {
        assert_sql(
            |d| {
                explain(
                    d,
                    &Statement::ReadCurrent(&[("Patient".into(), "p1".into())]),
                )
            },
            r#"EXPLAIN QUERY PLAN SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = ? AND r.id IN (?))) ORDER BY r.rid"#,
            r#"EXPLAIN SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = $1 AND r.id IN ($2))) ORDER BY r.rid"#,
            r#""Patient", "p1""#,
        );
    }
}
