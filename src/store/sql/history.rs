//! The history interaction (RESTful API, "history": https://hl7.org/fhir/R4/http.html#history):
//! versions newest first, `_since` and `_at`, paged by the global write order.

use super::{Dialect, Sql, VERSION_COLUMNS};
use crate::store::HistoryQuery;

/// Versions for a history interaction, newest first (or oldest first when paging backwards).
pub fn history(dialect: Dialect, query: &HistoryQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT v.seq, ")
        .push(VERSION_COLUMNS)
        .push(" FROM resource_version v WHERE 1 = 1");
    if let Some(rtype) = &query.rtype {
        sql.push(" AND v.rtype = ").text(rtype);
    }
    if let Some(id) = &query.id {
        sql.push(" AND v.id = ").text(id);
    }
    if let Some(patient) = &query.compartment {
        sql.push(" AND v.compartment = ").text(patient);
    }
    if let Some(since) = query.since {
        sql.push(" AND v.last_updated >= ").int(since);
    }
    if let Some((start, end)) = query.at {
        // Current at some time in [start, end): written before the end, and not replaced by a
        // newer version before the start.
        sql.push(" AND v.last_updated < ").int(end);
        sql.push(
            " AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rtype = v.rtype \
             AND n.id = v.id AND n.version = v.version + 1 AND n.last_updated <= ",
        )
        .int(start)
        .push(")");
    }
    if let Some(after) = query.after_seq {
        sql.push(" AND v.seq > ")
            .int(after)
            .push(" ORDER BY v.seq ASC");
    } else {
        if let Some(before) = query.before_seq {
            sql.push(" AND v.seq < ").int(before);
        }
        sql.push(" ORDER BY v.seq DESC");
    }
    sql.push(" LIMIT ").int(query.count as i64 + 1);
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::store::HistoryQuery;

    #[test]
    fn history_of_a_type_since() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        rtype: Some("Patient".into()),
                        since: Some(1000),
                        count: 10,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = ? AND v.last_updated >= ? ORDER BY v.seq DESC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = $1 AND v.last_updated >= $2 ORDER BY v.seq DESC LIMIT $3"#,
            r#""Patient", 1000, 11"#,
        );
    }

    #[test]
    fn history_of_an_instance_at_before_a_cursor() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        rtype: Some("Patient".into()),
                        id: Some("p1".into()),
                        at: Some((1000, 2000)),
                        before_seq: Some(9),
                        count: 5,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = ? AND v.id = ? AND v.last_updated < ? AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rtype = v.rtype AND n.id = v.id AND n.version = v.version + 1 AND n.last_updated <= ?) AND v.seq < ? ORDER BY v.seq DESC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = $1 AND v.id = $2 AND v.last_updated < $3 AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rtype = v.rtype AND n.id = v.id AND n.version = v.version + 1 AND n.last_updated <= $4) AND v.seq < $5 ORDER BY v.seq DESC LIMIT $6"#,
            r#""Patient", "p1", 2000, 1000, 9, 6"#,
        );
    }

    #[test]
    fn history_of_a_compartment_after_a_cursor() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        compartment: Some("p1".into()),
                        after_seq: Some(9),
                        count: 5,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.compartment = ? AND v.seq > ? ORDER BY v.seq ASC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.compartment = $1 AND v.seq > $2 ORDER BY v.seq ASC LIMIT $3"#,
            r#""p1", 9, 6"#,
        );
    }
}
