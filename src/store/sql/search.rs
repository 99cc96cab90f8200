//! The search statement (search page, https://hl7.org/fhir/R4/search.html): the current
//! resources of a type that meet every filter, which filter drives the query, one page of them
//! read with their content, their count (`_summary=count`, `_total=accurate`), and `$lastn`
//! (https://hl7.org/fhir/R4/observation-operation-lastn.html).

use super::chain::{driving_chain, push_chain_rids};
use super::contained::{push_contained_hit_rows, push_contained_hits};
use super::filter::{index_of, push_any_of, push_condition, push_predicate, table_name, Row};
use super::page::{push_page, push_page_order, push_sort_value};
use super::{Dialect, Sql, VERSION_COLUMNS};
use crate::search::query::{Contained, IndexTable, Predicate, SearchQuery};

/// The current version of every resource matching a search, one page in sort order (row-key
/// order when unsorted). The page starts after `query.after`, or ends before `query.before`
/// (then read backwards). Columns: rid, `VERSION_COLUMNS`, then one per sort key (and in a
/// search of contained resources, cid).
pub fn search(dialect: Dialect, query: &SearchQuery) -> Sql {
    let contained = query.contained != Contained::False;
    let mut columns: Vec<String> = (0..query.sort.len()).map(|i| format!("t.k{i}")).collect();
    if contained {
        columns.push("t.cid".to_owned());
    }
    let mut sql = Sql::new(dialect);
    push_page_versions(
        &mut sql,
        &columns,
        |sql| {
            sql.push("SELECT * FROM (");
            if contained {
                push_contained_hit_rows(sql, query);
            } else {
                push_hit_rows(sql, query);
            }
            sql.push(") t");
            push_page(sql, query, contained);
        },
        |sql| push_page_order(sql, query, contained),
    );
    sql
}

/// What locates a hit's current version: selected by the page, read by [`push_page_versions`].
pub(super) const ROW_COLUMNS: &str = "r.rid, r.rtype, r.id, r.version";

/// `SELECT rid, VERSION_COLUMNS, columns… FROM (page) t …`: the versions of one page's rows.
/// The page (`page`, a query aliased `t` with `ROW_COLUMNS`) is chosen on resource and index
/// rows alone, filtered, sorted and cut to its LIMIT; only then is the content (the wide
/// `resource_version` rows) read, for the page only: joined before the sort, every match's
/// content is read to keep a handful. `order` repeats the page's order, which a join does not
/// keep; `CROSS JOIN` makes SQLite read the page first.
fn push_page_versions(
    sql: &mut Sql,
    columns: &[String],
    page: impl FnOnce(&mut Sql),
    order: impl FnOnce(&mut Sql),
) {
    sql.push("SELECT t.rid, ").push(VERSION_COLUMNS);
    for column in columns {
        sql.push(", ").push(column);
    }
    sql.push(" FROM (");
    page(sql);
    sql.push(
        ") t CROSS JOIN resource_version v \
         WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version",
    );
    order(sql);
}

/// `SELECT ROW_COLUMNS, k0, … FROM … WHERE …`: every current resource matching a search
/// (not `_contained`), with its value of each sort key.
fn push_hit_rows(sql: &mut Sql, query: &SearchQuery) {
    sql.push("SELECT ").push(ROW_COLUMNS);
    for (i, key) in query.sort.iter().enumerate() {
        sql.push(", ");
        push_sort_value(sql, key, None);
        sql.push(&format!(" AS k{i}"));
    }
    push_from_where(sql, query);
}

/// The number of resources matching a search (ignoring paging).
pub fn count(dialect: Dialect, query: &SearchQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT COUNT(*)");
    if query.contained != Contained::False {
        sql.push(" FROM (");
        push_contained_hits(&mut sql, query);
        sql.push(") h");
        return sql;
    }
    push_from_where(&mut sql, query);
    sql
}

/// ` FROM … WHERE …` of the current resources matching `query` (`r`).
///
/// The planner cannot tell which filter is selective (SQLite has no statistics unless
/// ANALYZE ran), and a correlated `EXISTS` per filter makes it walk every resource of the
/// type and probe each one: at a million resources that is seconds per search. So one filter
/// that looks a value up, a reference to one resource ("this patient's …") before a token, drives the
/// query: its index rows give the candidate row keys (`dr`), and only those resources are
/// read and probed for the other filters. A patient's compartment (`Predicate::Compartment`,
/// which the authorization guard adds for patient-bound tokens) drives before either.
/// `CROSS JOIN` makes SQLite keep that order;
/// PostgreSQL plans it by its statistics like any inner join.
pub(super) fn push_from_where(sql: &mut Sql, query: &SearchQuery) {
    let mut driver = driving_filter(&query.filters);
    sql.push(" FROM ");
    // A patient's compartment (a patient-bound token's) drives before anything else: the search
    // then costs what that compartment holds, whatever the other filters would find elsewhere.
    let compartment = (query.filters.iter())
        .position(|any_of| matches!(any_of.as_slice(), [Predicate::Compartment(_)]));
    if let Some(i) = compartment {
        sql.push("(SELECT c.rid FROM resource c WHERE ");
        push_predicate(sql, &query.filters[i][0], Row::of("c"));
        sql.push(") dr CROSS JOIN ");
        driver = Some(i);
    } else if let Some((i, chains)) = driving_chain(&query.filters, driver) {
        sql.push("(SELECT DISTINCT cr.rid FROM (");
        for (n, (param, target_type, filters)) in chains.into_iter().enumerate() {
            if n > 0 {
                sql.push(" UNION ALL ");
            }
            push_chain_rids(sql, param, target_type, filters, &format!("dr{n}c"));
        }
        sql.push(") cr) dr CROSS JOIN ");
        driver = Some(i);
    } else if let Some(i) = driver {
        let predicate = &query.filters[i][0];
        let (table, alias) = index_of(predicate).expect("a driving filter is indexed");
        sql.push(&format!(
            "(SELECT DISTINCT {alias}.rid FROM {} {alias} WHERE ",
            table_name(table)
        ));
        // Token rows carry their resource's type: a code many types share (`status=active`)
        // is looked up among the searched type's rows only (idx_token_type_lookup).
        if table == IndexTable::Token {
            sql.push(&format!("{alias}.rtype = "))
                .text(&query.rtype)
                .push(" AND ");
        }
        push_condition(sql, predicate, alias);
        sql.push(") dr CROSS JOIN ");
    }
    sql.push("resource r");
    sql.push(" WHERE ");
    if driver.is_some() {
        sql.push("r.rid = dr.rid AND ");
    }
    sql.push("r.rtype = ")
        .text(&query.rtype)
        .push(" AND NOT r.deleted");
    for (i, any_of) in query.filters.iter().enumerate() {
        if Some(i) != driver {
            sql.push(" AND ");
            push_any_of(sql, any_of, Row::of("r"));
        }
    }
}

/// The filter that drives a search (see [`push_from_where`]): the first one that is a single
/// reference to a given resource, else the first single token with a code; `None` when no
/// filter looks a value up (then every resource of the type is probed).
pub(super) fn driving_filter(filters: &[Vec<Predicate>]) -> Option<usize> {
    let single = |i: &usize| match filters[*i].as_slice() {
        [one] => Some(one),
        _ => None,
    };
    let reference = (0..filters.len()).find(|i| {
        matches!(
            single(i),
            Some(Predicate::Reference {
                target_id: Some(_),
                ..
            })
        )
    });
    reference.or_else(|| {
        (0..filters.len())
            .find(|i| matches!(single(i), Some(Predicate::Token { code: Some(_), .. })))
    })
}

/// `$lastn`: per distinct `code` (its smallest `system|code`), the `max` most recent matches by
/// the `date` parameter, newest first within a code; at most `limit + 1` rows in all. Chosen
/// on index rows, then only those versions are read (see [`push_page_versions`]).
pub fn lastn(dialect: Dialect, query: &SearchQuery, max: usize, limit: usize) -> Sql {
    let mut sql = Sql::new(dialect);
    push_page_versions(
        &mut sql,
        &[],
        |sql| {
            sql.push("SELECT * FROM (SELECT ").push(ROW_COLUMNS).push(
                ", ROW_NUMBER() OVER (PARTITION BY (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) \
                 FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') \
                 ORDER BY (SELECT MAX(d.hi) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date') \
                 DESC NULLS LAST, r.rid DESC) AS n, \
                 (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t \
                 WHERE t.rid = r.rid AND t.param = 'code') AS grp",
            );
            push_from_where(sql, query);
            sql.push(") t WHERE t.n <= ")
                .int(max as i64)
                .push(" ORDER BY t.grp, t.n LIMIT ")
                .int(limit as i64 + 1);
        },
        |sql| {
            sql.push(" ORDER BY t.grp, t.n");
        },
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;

    #[test]
    fn a_search_without_filters_reads_every_current_resource_of_the_type() {
        assert_sql(
            |d| search(d, &query("Patient", vec![])),
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT $2) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""Patient", 11"#,
        );
    }

    #[test]
    fn a_count_without_filters() {
        assert_sql(
            |d| count(d, &query("Patient", vec![])),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted"#,
            r#""Patient""#,
        );
    }

    #[test]
    fn lastn_keeps_the_newest_per_code() {
        assert_sql(
            |d| {
                lastn(
                    d,
                    &one("Observation", reference("subject", "Patient", "p1")),
                    3,
                    50,
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, ROW_NUMBER() OVER (PARTITION BY (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') ORDER BY (SELECT MAX(d.hi) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date') DESC NULLS LAST, r.rid DESC) AS n, (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') AS grp FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted) t WHERE t.n <= ? ORDER BY t.grp, t.n LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.grp, t.n"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, ROW_NUMBER() OVER (PARTITION BY (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') ORDER BY (SELECT MAX(d.hi) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date') DESC NULLS LAST, r.rid DESC) AS n, (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') AS grp FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted) t WHERE t.n <= $5 ORDER BY t.grp, t.n LIMIT $6) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.grp, t.n"#,
            r#""subject", "p1", "Patient", "Observation", 3, 51"#,
        );
    }
}
