//! Searching contained resources (search page, "Contained Resources", `_contained` and
//! `_containedType`, https://hl7.org/fhir/R4/search.html#contained): a contained resource is
//! found through its container's index rows (its parameters under `Type#param` names) and is a
//! hit of its own (row key and position) or its container.

use super::filter::{index_of, push_any_of, push_condition, table_name, Row};
use super::page::push_sort_value;
use super::search::{driving_filter, push_from_where, ROW_COLUMNS};
use super::Sql;
use crate::search::index::{contained_param, CONTAINED_ID};
use crate::search::query::{
    Contained, ContainedType, IndexTable, Predicate, SearchQuery, SortColumn, SortKey, TokenSystem,
    HIT_CONTAINER, HIT_RESOURCE,
};

/// `SELECT ROW_COLUMNS, k0, …, cid`: every hit of a search with `_contained=true|both`
/// (search page, "Contained Resources"), paged and sorted like the others by [`search`](super::search()). Its
/// hits are pairs (row key, `cid`): a contained resource at its position in the row's
/// `contained`, the row's resource itself (`HIT_RESOURCE`, `_contained=both`) or the row as the
/// container of matches (`HIT_CONTAINER`). A search without `_contained` never comes here.
pub(super) fn push_contained_hit_rows(sql: &mut Sql, query: &SearchQuery) {
    sql.push("SELECT ").push(ROW_COLUMNS);
    for (i, key) in query.sort.iter().enumerate() {
        sql.push(", ");
        push_hit_sort_value(sql, query, key);
        sql.push(&format!(" AS k{i}"));
    }
    sql.push(", h.cid FROM (");
    push_contained_hits(sql, query);
    sql.push(") h CROSS JOIN resource r WHERE r.rid = h.rid");
}

/// `SELECT rid, cid` of every hit of a search with `_contained=true|both` (see
/// [`push_contained_hit_rows`]): the resources themselves matching (`both`), and the contained
/// resources matching or their containers. A resource that is both a match and a container of
/// one is one hit, as itself.
pub(super) fn push_contained_hits(sql: &mut Sql, query: &SearchQuery) {
    let both = query.contained == Contained::Both;
    let containers = query.contained_type == ContainedType::Container;
    if both && containers {
        sql.push("SELECT u.rid, MAX(u.cid) AS cid FROM (");
    }
    if both {
        sql.push(&format!(
            "SELECT r.rid, CAST({HIT_RESOURCE} AS BIGINT) AS cid"
        ));
        push_from_where(sql, query);
        sql.push(" UNION ALL ");
    }
    push_contained_matches(sql, query);
    if both && containers {
        sql.push(") u GROUP BY u.rid");
    }
}

/// `SELECT DISTINCT rid, cid` of the contained resources of type `query.rtype` that match every
/// filter (all of them the same contained resource), or of their containers with
/// `_containedType=container`. As in [`push_from_where`](super::search::push_from_where), one filter drives: its index rows
/// (`cu`) are the candidates; without one, every contained resource of the type is, by its
/// local id entry. The container must be current; its compartment is the one that counts.
fn push_contained_matches(sql: &mut Sql, query: &SearchQuery) {
    let filters: Vec<Vec<Predicate>> = query
        .filters
        .iter()
        .map(|any_of| {
            any_of
                .iter()
                .map(|p| p.in_contained(&query.rtype))
                .collect()
        })
        .collect();
    let every = Predicate::Token {
        param: contained_param(&query.rtype, CONTAINED_ID),
        system: TokenSystem::Any,
        code: None,
    };
    let driver = driving_filter(&filters);
    let predicate = driver.map_or(&every, |i| &filters[i][0]);
    let (table, _) = index_of(predicate).expect("a driving filter is indexed");
    let cid = match query.contained_type {
        ContainedType::Contained => "cu.contained".to_owned(),
        ContainedType::Container => format!("CAST({HIT_CONTAINER} AS BIGINT)"),
    };
    sql.push(&format!(
        "SELECT DISTINCT cu.rid, {cid} AS cid FROM {} cu JOIN resource r ON r.rid = cu.rid WHERE ",
        table_name(table)
    ));
    // A contained resource's token rows have no type (`rtype` NULL): they are looked up in
    // idx_token_type_lookup under it, whatever their container's type (decision 0056).
    if table == IndexTable::Token {
        sql.push("cu.rtype IS NULL AND ");
    }
    push_condition(sql, predicate, "cu");
    sql.push(" AND NOT r.deleted");
    let row = Row {
        alias: "r",
        unit: Some("cu"),
    };
    for (i, any_of) in filters.iter().enumerate() {
        if Some(i) != driver {
            sql.push(" AND ");
            push_any_of(sql, any_of, row);
        }
    }
}

/// A hit's value of a sort key (see [`push_contained_hit_rows`]): a contained resource's own,
/// for a container the extreme over its contained resources of the type (but its own id), and
/// with `_contained=both` a resource's own for a resource itself.
fn push_hit_sort_value(sql: &mut Sql, query: &SearchQuery, key: &SortKey) {
    let both = query.contained == Contained::Both;
    if both {
        sql.push(&format!("CASE WHEN h.cid = {HIT_RESOURCE} THEN "));
        push_sort_value(sql, key, None);
        sql.push(" ELSE ");
    }
    match (query.contained_type, &key.column) {
        (ContainedType::Container, SortColumn::Id) => push_sort_value(sql, key, None),
        (ContainedType::Container, _) => {
            push_sort_value(sql, &key.in_contained(&query.rtype), None)
        }
        (ContainedType::Contained, _) => {
            push_sort_value(sql, &key.in_contained(&query.rtype), Some("h.cid"))
        }
    }
    if both {
        sql.push(" END");
    }
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn contained_true_returns_containers() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Container,
                        vec![vec![token("code", "abc")]],
                        vec![],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND cu.code = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $1 AND cu.code = $2 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.rid ASC, t.cid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#""Medication#code", "abc", 11"#,
        );
    }

    #[test]
    fn contained_true_returns_contained_resources_sorted() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Contained,
                        vec![vec![token("code", "abc")]],
                        vec![sort(
                            SortColumn::Index {
                                table: IndexTable::String,
                                param: "name".into(),
                            },
                            false,
                        )],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.normalized) FROM idx_string s WHERE s.rid = r.rid AND s.contained = h.cid AND s.param = ?) AS k0, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND cu.code = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.normalized) FROM idx_string s WHERE s.rid = r.rid AND s.contained = h.cid AND s.param = $1) AS k0, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $2 AND cu.code = $3 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#""Medication#name", "Medication#code", "abc", 11"#,
        );
    }

    #[test]
    fn contained_both_returns_resources_and_containers() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::Both,
                        ContainedType::Container,
                        vec![],
                        vec![sort(SortColumn::Id, true)],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, CASE WHEN h.cid = -1 THEN r.id ELSE r.id END AS k0, h.cid FROM (SELECT u.rid, MAX(u.cid) AS cid FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = ? AND NOT r.deleted UNION ALL SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND NOT r.deleted) u GROUP BY u.rid) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, CASE WHEN h.cid = -1 THEN r.id ELSE r.id END AS k0, h.cid FROM (SELECT u.rid, MAX(u.cid) AS cid FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = $1 AND NOT r.deleted UNION ALL SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $2 AND NOT r.deleted) u GROUP BY u.rid) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#""Medication", "Medication#_id", 11"#,
        );
    }

    #[test]
    fn contained_both_counts_resources_and_contained_resources() {
        assert_sql(
            |d| {
                count(
                    d,
                    &contained(
                        Contained::Both,
                        ContainedType::Contained,
                        vec![vec![Predicate::Id("m1".into())]],
                        vec![],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (r.id = ?) UNION ALL SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND cu.code = ? AND NOT r.deleted) h"#,
            r#"SELECT COUNT(*) FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (r.id = $2) UNION ALL SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $3 AND cu.code = $4 AND NOT r.deleted) h"#,
            r#""Medication", "m1", "Medication#_id", "m1""#,
        );
    }

    #[test]
    fn a_chain_from_a_contained_resource_follows_its_own_references() {
        assert_sql(
            |d| {
                count(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Contained,
                        vec![
                            vec![token("code", "abc")],
                            vec![chain("manufacturer", "Organization", "name", "acme")],
                            vec![Predicate::Has {
                                source_type: "MedicationRequest".into(),
                                param: "medication".into(),
                                target_type: "Medication".into(),
                                filters: vec![],
                            }],
                        ],
                        vec![],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND cu.code = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE rcx.rid = r.rid AND rcx.contained = cu.contained AND NOT rc.deleted AND rcx.param = ? AND rc.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')))) AND (1 = 0)) h"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $1 AND cu.code = $2 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE rcx.rid = r.rid AND rcx.contained = cu.contained AND NOT rc.deleted AND rcx.param = $3 AND rc.rtype = $4 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = $5 AND s.normalized LIKE $6 ESCAPE '\')))) AND (1 = 0)) h"#,
            r#""Medication#code", "abc", "Medication#manufacturer", "Organization", "name", "acme%""#,
        );
    }

    #[test]
    fn contained_after_a_cursor_breaks_ties_by_position() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        after: Some(Cursor {
                            keys: vec![KeyValue::Int(2)],
                            rid: 40,
                        }),
                        ..contained(Contained::True, ContainedType::Contained, vec![], vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t WHERE (((t.rid > ? OR (t.rid = ? AND t.cid > ?)))) ORDER BY t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.rtype IS NULL AND cu.param = $1 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t WHERE (((t.rid > $2 OR (t.rid = $3 AND t.cid > $4)))) ORDER BY t.rid ASC, t.cid ASC LIMIT $5) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#""Medication#_id", 40, 40, 2, 11"#,
        );
    }
}
