//! Sorting and paging (search page, "Sorting" `_sort` and "Paging",
//! https://hl7.org/fhir/R4/search.html#sort): the value each hit sorts by, the order, and the
//! keyset condition that starts the next (or previous) page after (before) its cursor.

use super::filter::table_name;
use super::Sql;
use crate::search::query::{Cursor, IndexTable, KeyValue, SearchQuery, SortColumn, SortKey};

/// ` WHERE … ORDER BY … LIMIT …` of one page of the hits `t` of a search: after (or before)
/// its cursor, in [`push_page_order`].
pub(super) fn push_page(sql: &mut Sql, query: &SearchQuery, contained: bool) {
    let backwards = query.before.is_some();
    if let Some(cursor) = query.before.as_ref().or(query.after.as_ref()) {
        sql.push(" WHERE ");
        push_keyset(sql, &query.sort, cursor, backwards, contained);
    }
    push_page_order(sql, query, contained);
    sql.push(" LIMIT ").int(query.count as i64 + 1);
}

/// ` ORDER BY …` of a page of the hits `t`: in sort order, then by row key (and in a search of
/// contained resources, by contained position); reversed when the page is read backwards.
pub(super) fn push_page_order(sql: &mut Sql, query: &SearchQuery, contained: bool) {
    let backwards = query.before.is_some();
    sql.push(" ORDER BY ");
    for (i, key) in query.sort.iter().enumerate() {
        // Resources without a value sort last in either direction (read backwards: first).
        let descending = key.descending != backwards;
        let nulls = if backwards { "FIRST" } else { "LAST" };
        sql.push(&format!(
            "t.k{i} {} NULLS {nulls}, ",
            if descending { "DESC" } else { "ASC" }
        ));
    }
    let direction = if backwards { "DESC" } else { "ASC" };
    sql.push(&format!("t.rid {direction}"));
    if contained {
        sql.push(&format!(", t.cid {direction}"));
    }
}

/// The value a resource sorts by: its smallest indexed value ascending, largest descending;
/// with `contained`, the values of the contained resource at that position only.
pub(super) fn push_sort_value(sql: &mut Sql, key: &SortKey, contained: Option<&str>) {
    match &key.column {
        SortColumn::Id => {
            sql.push("r.id");
        }
        SortColumn::LastUpdated => {
            sql.push("r.last_updated");
        }
        SortColumn::Index { table, param } => {
            let (column, extreme) = match (table, key.descending) {
                (IndexTable::Token, d) => ("code", d),
                (IndexTable::String, d) => ("normalized", d),
                (IndexTable::Date, false) => ("lo", false),
                (IndexTable::Date, true) => ("hi", true),
                (IndexTable::Reference, d) => ("target_id", d),
                (IndexTable::Uri, d) => ("value", d),
                (IndexTable::Number | IndexTable::Quantity, d) => ("value", d),
            };
            let aggregate = if extreme { "MAX" } else { "MIN" };
            sql.push(&format!(
                "(SELECT {aggregate}(s.{column}) FROM {} s WHERE s.rid = r.rid AND ",
                table_name(*table)
            ));
            if let Some(position) = contained {
                sql.push(&format!("s.contained = {position} AND "));
            }
            sql.push("s.param = ").text(param).push(")");
        }
    }
}

fn push_key_value(sql: &mut Sql, value: &KeyValue) {
    match value {
        KeyValue::Null => sql.push("NULL"),
        KeyValue::Text(s) => sql.text(s),
        KeyValue::Int(i) => sql.int(*i),
        KeyValue::Float(f) => sql.float(*f),
    };
}

/// Rows strictly after (or, backwards, before) `cursor` in the order of `sort` then row key,
/// with resources lacking a value sorted last: the keyset condition of the next page.
///
/// In a search of contained resources (`contained`) the hit's contained position, the
/// cursor's last key, breaks ties after the row key.
fn push_keyset(sql: &mut Sql, sort: &[SortKey], cursor: &Cursor, backwards: bool, contained: bool) {
    sql.push("(");
    for i in 0..=sort.len() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        // Equal on every earlier key…
        for (j, value) in cursor.keys.iter().take(i).enumerate() {
            match value {
                KeyValue::Null => sql.push(&format!("k{j} IS NULL AND ")),
                v => {
                    sql.push(&format!("k{j} = "));
                    push_key_value(sql, v);
                    sql.push(" AND ")
                }
            };
        }
        // …and past the cursor on this one (or on the row key, after all of them).
        if i == sort.len() {
            let op = if backwards { "<" } else { ">" };
            sql.push(&format!("(t.rid {op} ")).int(cursor.rid);
            if let (true, Some(KeyValue::Int(position))) = (contained, cursor.keys.get(i)) {
                sql.push(" OR (t.rid = ")
                    .int(cursor.rid)
                    .push(&format!(" AND t.cid {op} "))
                    .int(*position)
                    .push(")");
            }
            sql.push(")");
        } else {
            let less = sort[i].descending != backwards;
            match (&cursor.keys[i], backwards) {
                // Nothing sorts after a missing value but other missing values.
                (KeyValue::Null, false) => {
                    sql.push("1 = 0");
                }
                // Going backwards, every present value comes before a missing one.
                (KeyValue::Null, true) => {
                    sql.push(&format!("k{i} IS NOT NULL"));
                }
                (value, _) => {
                    sql.push(&format!("(k{i} {} ", if less { "<" } else { ">" }));
                    push_key_value(sql, value);
                    if !backwards {
                        sql.push(&format!(" OR k{i} IS NULL"));
                    }
                    sql.push(")");
                }
            }
        }
        sql.push(")");
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn an_unsorted_page_is_in_row_key_order() {
        assert_sql(
            |d| search(d, &one("Observation", token("code", "1234-5"))),
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = ? AND t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = $1 AND t.param = $2 AND t.code = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT $5) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""Observation", "code", "1234-5", "Observation", 11"#,
        );
    }

    #[test]
    fn sort_keys_take_the_extreme_indexed_value() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Date,
                                    param: "date".into(),
                                },
                                true,
                            ),
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Date,
                                    param: "date".into(),
                                },
                                false,
                            ),
                            sort(SortColumn::LastUpdated, false),
                            sort(SortColumn::Id, true),
                        ],
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1, t.k2, t.k3 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MAX(s.hi) FROM idx_date s WHERE s.rid = r.rid AND s.param = ?) AS k0, (SELECT MIN(s.lo) FROM idx_date s WHERE s.rid = r.rid AND s.param = ?) AS k1, r.last_updated AS k2, r.id AS k3 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1, t.k2, t.k3 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MAX(s.hi) FROM idx_date s WHERE s.rid = r.rid AND s.param = $1) AS k0, (SELECT MIN(s.lo) FROM idx_date s WHERE s.rid = r.rid AND s.param = $2) AS k1, r.last_updated AS k2, r.id AS k3 FROM resource r WHERE r.rtype = $3 AND NOT r.deleted) t ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC"#,
            r#""date", "date", "Observation", 11"#,
        );
    }

    #[test]
    fn the_next_page_starts_after_the_cursor() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Token,
                                    param: "status".into(),
                                },
                                false,
                            ),
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Number,
                                    param: "probability".into(),
                                },
                                true,
                            ),
                        ],
                        after: Some(Cursor {
                            keys: vec![KeyValue::Text("final".into()), KeyValue::Float(0.5)],
                            rid: 7,
                        }),
                        ..query("RiskAssessment", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.code) FROM idx_token s WHERE s.rid = r.rid AND s.param = ?) AS k0, (SELECT MAX(s.value) FROM idx_number s WHERE s.rid = r.rid AND s.param = ?) AS k1 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((k0 > ? OR k0 IS NULL)) OR (k0 = ? AND (k1 < ? OR k1 IS NULL)) OR (k0 = ? AND k1 = ? AND (t.rid > ?))) ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.code) FROM idx_token s WHERE s.rid = r.rid AND s.param = $1) AS k0, (SELECT MAX(s.value) FROM idx_number s WHERE s.rid = r.rid AND s.param = $2) AS k1 FROM resource r WHERE r.rtype = $3 AND NOT r.deleted) t WHERE (((k0 > $4 OR k0 IS NULL)) OR (k0 = $5 AND (k1 < $6 OR k1 IS NULL)) OR (k0 = $7 AND k1 = $8 AND (t.rid > $9))) ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC LIMIT $10) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC"#,
            r#""status", "probability", "RiskAssessment", "final", "final", 0.5, "final", 0.5, 7, 11"#,
        );
    }

    #[test]
    fn the_previous_page_ends_before_the_cursor_read_backwards() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(SortColumn::LastUpdated, false)],
                        before: Some(Cursor {
                            keys: vec![KeyValue::Int(1000)],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, r.last_updated AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((k0 < ?)) OR (k0 = ? AND (t.rid < ?))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, r.last_updated AS k0 FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t WHERE (((k0 < $2)) OR (k0 = $3 AND (t.rid < $4))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT $5) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#""Observation", 1000, 1000, 7, 11"#,
        );
    }

    #[test]
    fn after_a_missing_value_only_missing_values_follow() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(
                            SortColumn::Index {
                                table: IndexTable::Reference,
                                param: "subject".into(),
                            },
                            false,
                        )],
                        after: Some(Cursor {
                            keys: vec![KeyValue::Null],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.target_id) FROM idx_reference s WHERE s.rid = r.rid AND s.param = ?) AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE ((1 = 0) OR (k0 IS NULL AND (t.rid > ?))) ORDER BY t.k0 ASC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.target_id) FROM idx_reference s WHERE s.rid = r.rid AND s.param = $1) AS k0 FROM resource r WHERE r.rtype = $2 AND NOT r.deleted) t WHERE ((1 = 0) OR (k0 IS NULL AND (t.rid > $3))) ORDER BY t.k0 ASC NULLS LAST, t.rid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC"#,
            r#""subject", "Observation", 7, 11"#,
        );
    }

    #[test]
    fn before_a_missing_value_every_present_value_comes() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(
                            SortColumn::Index {
                                table: IndexTable::Uri,
                                param: "url".into(),
                            },
                            false,
                        )],
                        before: Some(Cursor {
                            keys: vec![KeyValue::Null],
                            rid: 7,
                        }),
                        ..query("ValueSet", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.value) FROM idx_uri s WHERE s.rid = r.rid AND s.param = ?) AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE ((k0 IS NOT NULL) OR (k0 IS NULL AND (t.rid < ?))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.value) FROM idx_uri s WHERE s.rid = r.rid AND s.param = $1) AS k0 FROM resource r WHERE r.rtype = $2 AND NOT r.deleted) t WHERE ((k0 IS NOT NULL) OR (k0 IS NULL AND (t.rid < $3))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#""url", "ValueSet", 7, 11"#,
        );
    }

    #[test]
    fn an_unsorted_page_after_a_row_key() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        after: Some(Cursor {
                            keys: vec![],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((t.rid > ?))) ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t WHERE (((t.rid > $2))) ORDER BY t.rid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""Observation", 7, 11"#,
        );
    }
}
