//! SQL text shared by both stores: the statements are the same on SQLite and PostgreSQL apart
//! from placeholder syntax, so they are built once here with a [`Dialect`] and bound by each
//! store with [`Bind`] values.

use crate::search::index::IndexEntries;
use crate::search::index::{contained_param, CONTAINED_ID};
use crate::search::query::{
    Contained, ContainedType, Cursor, IndexTable, KeyValue, Predicate, Prefix, RangeTarget,
    SearchQuery, SortColumn, SortKey, StringMatch, TokenSystem, UriMatch, HIT_CONTAINER,
    HIT_RESOURCE,
};
use crate::store::{HistoryQuery, NewVersion, Statement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Float(f64),
    Bool(bool),
    OptInt(Option<i64>),
}

/// SQL text with its bound values, placeholders numbered as the dialect wants.
pub struct Sql {
    dialect: Dialect,
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql {
            dialect,
            text: String::new(),
            binds: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    pub fn opt(&mut self, value: &Option<String>) -> &mut Self {
        self.bind(Bind::OptText(value.clone()))
    }

    pub fn float(&mut self, value: f64) -> &mut Self {
        self.bind(Bind::Float(value))
    }
}

/// The most values one statement binds: below both SQLite's (32,766) and PostgreSQL's (65,535)
/// limits. Long chains over many target types can go past it; they are refused, not sent.
pub const MAX_BINDS: usize = 30_000;

/// Refuses a statement with more bound values than `MAX_BINDS`.
pub fn check(sql: &Sql) -> Result<(), crate::store::StoreError> {
    if sql.binds.len() > MAX_BINDS {
        return Err(crate::store::StoreError::TooComplex(format!(
            "The search is too complex: it needs {} values in one query, at most {MAX_BINDS} are allowed",
            sql.binds.len()
        )));
    }
    Ok(())
}

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
const ROW_COLUMNS: &str = "r.rid, r.rtype, r.id, r.version";

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

/// ` WHERE … ORDER BY … LIMIT …` of one page of the hits `t` of a search: after (or before)
/// its cursor, in [`push_page_order`].
fn push_page(sql: &mut Sql, query: &SearchQuery, contained: bool) {
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
fn push_page_order(sql: &mut Sql, query: &SearchQuery, contained: bool) {
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
fn push_sort_value(sql: &mut Sql, key: &SortKey, contained: Option<&str>) {
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

/// `SELECT ROW_COLUMNS, k0, …, cid`: every hit of a search with `_contained=true|both`
/// (search page, "Contained Resources"), paged and sorted like the others by [`search`]. Its
/// hits are pairs (row key, `cid`): a contained resource at its position in the row's
/// `contained`, the row's resource itself (`HIT_RESOURCE`, `_contained=both`) or the row as the
/// container of matches (`HIT_CONTAINER`). A search without `_contained` never comes here.
fn push_contained_hit_rows(sql: &mut Sql, query: &SearchQuery) {
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
fn push_contained_hits(sql: &mut Sql, query: &SearchQuery) {
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
/// `_containedType=container`. As in [`push_from_where`], one filter drives: its index rows
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

/// ` FROM … WHERE …` of the current resources matching `query` (`r`).
///
/// The planner cannot tell which filter is selective (SQLite has no statistics unless
/// ANALYZE ran), and a correlated `EXISTS` per filter makes it walk every resource of the
/// type and probe each one: at a million resources that is seconds per search. So one filter
/// that looks a value up, a reference to one resource ("this patient's …") before a token, drives the
/// query: its index rows give the candidate row keys (`dr`), and only those resources are
/// read and probed for the other filters. `CROSS JOIN` makes SQLite keep that order;
/// PostgreSQL plans it by its statistics like any inner join.
fn push_from_where(sql: &mut Sql, query: &SearchQuery) {
    let mut driver = driving_filter(&query.filters);
    sql.push(" FROM ");
    if let Some((i, chains)) = driving_chain(&query.filters, driver) {
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
fn driving_filter(filters: &[Vec<Predicate>]) -> Option<usize> {
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

/// ` FROM … WHERE …` of the `param` references (`{c}x`) to a current `target_type` (`{c}`) that
/// meets `filters`; with `from`, only the references of that row (bound to its index row in a
/// search of contained resources).
fn push_references_to_matches(
    sql: &mut Sql,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    c: &str,
    from: Option<Row<'_>>,
) {
    let x = format!("{c}x");
    sql.push(&format!(
        " FROM idx_reference {x} JOIN resource {c} ON {c}.rtype = {x}.target_type \
         AND {c}.id = {x}.target_id WHERE "
    ));
    if let Some(a) = from {
        sql.push(&format!("{} AND ", a.same(&x)));
    }
    sql.push(&format!("NOT {c}.deleted AND {x}.param = "))
        .text(param)
        .push(&format!(" AND {c}.rtype = "))
        .text(target_type);
    push_filters(sql, filters, Row::of(c));
}

/// The rids of the resources a chain from a resource matches (`param` referencing a
/// `target_type` that meets `filters`; `c` names the aliases): one uncorrelated
/// `… UNION ALL …`, not two ORed EXISTS, so that the databases can start from the chain's
/// matches (at a million resources on PostgreSQL, ORed EXISTS made
/// `Encounter?subject:Patient.name=x` probe every Encounter: 3.5 ms became 2 s).
/// The chain is evaluated inside contained resources too (search page, "Contained
/// Resources"): the second branch finds the resources whose local reference `#id` names a
/// contained resource of the target type (its `Type#_id` entry) that matches.
fn push_chain_rids(
    sql: &mut Sql,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    c: &str,
) {
    let (x, l, i, o) = (
        format!("{c}x"),
        format!("{c}l"),
        format!("{c}i"),
        format!("{c}o"),
    );
    sql.push(&format!("SELECT {x}.rid"));
    push_references_to_matches(sql, param, target_type, filters, c, None);
    sql.push(&format!(
        " UNION ALL SELECT {l}.rid FROM idx_reference {l} JOIN resource {o} ON {o}.rid = {l}.rid \
         JOIN idx_token {i} ON {i}.rid = {l}.rid AND {i}.param = "
    ))
    .text(&contained_param(target_type, CONTAINED_ID))
    .push(&format!(
        " AND {l}.url = '#' || {i}.code WHERE {l}.param = "
    ))
    .text(param);
    let contained: Vec<Vec<Predicate>> = filters
        .iter()
        .map(|any_of| any_of.iter().map(|p| p.in_contained(target_type)).collect())
        .collect();
    // The container's row: the compartment and `_lastUpdated` are the container's.
    push_filters(
        sql,
        &contained,
        Row {
            alias: &o,
            unit: Some(&i),
        },
    );
}

/// A chain that drives the search instead of [`driving_filter`]'s token (a reference to one
/// resource still comes first): `CarePlan?patient.identifier=S|V&status=active` starts from the
/// patient's CarePlans, not from every active CarePlan. A chain names one resource more
/// often than a token does (`code=85354-9` is half of all Observations). The filter may be
/// several chains (`patient.identifier` goes to a Patient or a Group): their rids together.
#[allow(clippy::type_complexity)]
fn driving_chain(
    filters: &[Vec<Predicate>],
    driver: Option<usize>,
) -> Option<(usize, Vec<(&str, &str, &[Vec<Predicate>])>)> {
    if driver.is_some_and(|i| matches!(filters[i][0], Predicate::Reference { .. })) {
        return None;
    }
    filters.iter().enumerate().find_map(|(i, any_of)| {
        let chains: Option<Vec<_>> = any_of
            .iter()
            .map(|p| match p {
                Predicate::Chain {
                    param,
                    target_type,
                    filters,
                } => Some((param.as_str(), target_type.as_str(), filters.as_slice())),
                _ => None,
            })
            .collect();
        chains.filter(|c| !c.is_empty()).map(|c| (i, c))
    })
}

/// The resource row predicates apply to (its alias), and in a search of contained resources the
/// index row (`unit`) whose contained resource they are about: every index row a predicate
/// reads must then be of that same contained resource.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    alias: &'a str,
    unit: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn of(alias: &'a str) -> Self {
        Row { alias, unit: None }
    }

    /// The condition that index row `index` belongs to this row.
    fn same(&self, index: &str) -> String {
        let a = self.alias;
        match self.unit {
            None => format!("{index}.rid = {a}.rid"),
            Some(u) => format!("{index}.rid = {a}.rid AND {index}.contained = {u}.contained"),
        }
    }
}

impl std::fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.alias)
    }
}

/// ` AND (p OR p …)` for every filter, on the resource row aliased `a`.
fn push_filters(sql: &mut Sql, filters: &[Vec<Predicate>], a: Row<'_>) {
    for any_of in filters {
        sql.push(" AND ");
        push_any_of(sql, any_of, a);
    }
}

/// `(p OR p …)` as a balanced tree: SQLite refuses expressions nested 1,000 deep, which a flat
/// chain of a thousand ORs is.
fn push_any_of(sql: &mut Sql, any_of: &[Predicate], a: Row<'_>) {
    match any_of {
        [] => {
            sql.push("1 = 0");
        }
        [one] => {
            sql.push("(");
            push_predicate(sql, one, a);
            sql.push(")");
        }
        many => {
            let (left, right) = many.split_at(many.len() / 2);
            sql.push("(");
            push_any_of(sql, left, a);
            sql.push(" OR ");
            push_any_of(sql, right, a);
            sql.push(")");
        }
    }
}

fn push_predicate(sql: &mut Sql, predicate: &Predicate, a: Row<'_>) {
    match predicate {
        Predicate::Id(id) => {
            sql.push(&format!("{a}.id = ")).text(id);
        }
        Predicate::Compartment(patient) => {
            sql.push(&format!("{a}.compartment = ")).text(patient);
        }
        Predicate::Range {
            target: RangeTarget::LastUpdated,
            prefix,
            lo,
            hi,
        } => {
            // A point in time is the range [t, t + 1 ms).
            push_range(
                sql,
                &format!("{a}.last_updated"),
                &format!("({a}.last_updated + 1)"),
                *prefix,
                *lo,
                *hi,
            );
        }
        Predicate::Missing {
            table,
            param,
            missing,
        } => {
            sql.push(if *missing { "NOT EXISTS" } else { "EXISTS" });
            sql.push(" (SELECT 1 FROM ")
                .push(table_name(*table))
                .push(&format!(" m WHERE {} AND m.param = ", a.same("m")))
                .text(param)
                .push(")");
        }
        Predicate::Not(inner) => {
            sql.push("NOT (");
            push_predicate(sql, inner, a);
            sql.push(")");
        }
        Predicate::Chain {
            param,
            target_type,
            filters,
        } => {
            let c = format!("{a}c");
            // From a contained resource (a `_contained` search) the chain follows that
            // resource's own references, bound to its index row; its local references are
            // left unfollowed.
            if a.unit.is_some() {
                sql.push("EXISTS (SELECT 1");
                push_references_to_matches(sql, param, target_type, filters, &c, Some(a));
                sql.push(")");
                return;
            }
            sql.push(&format!("{a}.rid IN ("));
            push_chain_rids(sql, param, target_type, filters, &c);
            sql.push(")");
        }
        // Nothing outside a container references what it contains.
        Predicate::Has { .. } if a.unit.is_some() => {
            sql.push("1 = 0");
        }
        Predicate::Has {
            source_type,
            param,
            target_type,
            filters,
        } => {
            let h = format!("{a}h");
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM idx_reference {h}x JOIN resource {h} ON {h}.rid = {h}x.rid \
                 WHERE {h}x.target_id = {a}.id AND NOT {h}.deleted AND {h}x.target_type = "
            ))
            .text(target_type)
            .push(&format!(" AND {h}x.param = "))
            .text(param)
            .push(&format!(" AND {h}.rtype = "))
            .text(source_type);
            push_filters(sql, filters, Row::of(&h));
            sql.push(")");
        }
        Predicate::Composite(components) => push_composite(sql, components, a, None),
        // Resolved into `TokenIn` (`Reference`s) before a search reaches the store; unresolved,
        // nothing matches.
        Predicate::Terminology { .. } | Predicate::Hierarchy { .. } => {
            sql.push("1 = 0");
        }
        indexed => {
            let (table, alias) = index_of(indexed).expect("an index predicate");
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM {} {alias} WHERE {} AND ",
                table_name(table),
                a.same(alias)
            ));
            push_condition(sql, indexed, alias);
            sql.push(")");
        }
    }
}

/// The index table a predicate on one parameter's values looks in, and the alias it uses.
fn index_of(predicate: &Predicate) -> Option<(IndexTable, &'static str)> {
    Some(match predicate {
        Predicate::Range {
            target: RangeTarget::Date(_),
            ..
        } => (IndexTable::Date, "d"),
        Predicate::Token { .. } | Predicate::TokenIn { .. } => (IndexTable::Token, "t"),
        Predicate::String { .. } => (IndexTable::String, "s"),
        Predicate::Reference { .. } => (IndexTable::Reference, "x"),
        Predicate::Uri { .. } => (IndexTable::Uri, "u"),
        Predicate::Number { .. } => (IndexTable::Number, "n"),
        Predicate::Quantity { .. } => (IndexTable::Quantity, "q"),
        _ => return None,
    })
}

/// Composite: one EXISTS per component, each in the group (element) of the first.
fn push_composite(sql: &mut Sql, components: &[Predicate], a: Row<'_>, group_of: Option<&str>) {
    let Some((first, rest)) = components.split_first() else {
        sql.push("1 = 1");
        return;
    };
    let Some((table, _)) = index_of(first) else {
        sql.push("1 = 0");
        return;
    };
    let alias = format!("{a}g{}", components.len());
    sql.push(&format!(
        "EXISTS (SELECT 1 FROM {} {alias} WHERE {} AND ",
        table_name(table),
        a.same(&alias)
    ));
    match group_of {
        Some(g) => sql.push(&format!("{alias}.grp = {g}.grp AND ")),
        None => sql.push(&format!("{alias}.grp IS NOT NULL AND ")),
    };
    push_condition(sql, first, &alias);
    if !rest.is_empty() {
        sql.push(" AND ");
        push_composite(sql, rest, a, Some(&alias));
    }
    sql.push(")");
}

/// The condition on one index row (aliased `al`) of a predicate on a parameter's values.
fn push_condition(sql: &mut Sql, predicate: &Predicate, al: &str) {
    match predicate {
        Predicate::Range {
            prefix,
            lo,
            hi,
            target: RangeTarget::Date(param),
        } => {
            sql.push(&format!("{al}.param = "))
                .text(param)
                .push(" AND ");
            push_range(
                sql,
                &format!("{al}.lo"),
                &format!("{al}.hi"),
                *prefix,
                *lo,
                *hi,
            );
        }
        Predicate::Token {
            param,
            system,
            code,
        } => {
            sql.push(&format!("{al}.param = ")).text(param);
            if let Some(code) = code {
                sql.push(&format!(" AND {al}.code = ")).text(code);
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => {
                    sql.push(&format!(" AND {al}.system IS NULL"));
                }
                TokenSystem::Is(system) => {
                    sql.push(&format!(" AND {al}.system = ")).text(system);
                }
            }
        }
        Predicate::TokenIn { param, codes } => {
            sql.push(&format!("{al}.param = "))
                .text(param)
                .push(" AND (");
            if codes.is_empty() {
                sql.push("1 = 0");
            }
            for (i, (system, codes)) in codes.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                // A `code` element has no system of its own: its binding gives it one.
                sql.push(&format!("(({al}.system = "))
                    .text(system)
                    .push(&format!(" OR {al}.system IS NULL) AND {al}.code IN ("));
                for (j, code) in codes.iter().enumerate() {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.text(code);
                }
                sql.push("))");
            }
            sql.push(")");
        }
        Predicate::String { param, value, mode } => {
            sql.push(&format!("{al}.param = ")).text(param);
            match mode {
                StringMatch::Exact => sql.push(&format!(" AND {al}.exact = ")).text(value),
                StringMatch::StartsWith => sql
                    .push(&format!(" AND {al}.normalized LIKE "))
                    .text(&like_prefix(value))
                    .push(" ESCAPE '\\'"),
                StringMatch::Contains => sql
                    .push(&format!(" AND {al}.normalized LIKE "))
                    .text(&format!("%{}", like_prefix(value)))
                    .push(" ESCAPE '\\'"),
            };
        }
        Predicate::Reference {
            param,
            target_type,
            target_id,
            url,
        } => {
            sql.push(&format!("{al}.param = ")).text(param);
            if let Some(id) = target_id {
                sql.push(&format!(" AND {al}.target_id = ")).text(id);
            }
            if let Some(t) = target_type {
                sql.push(&format!(" AND {al}.target_type = ")).text(t);
            }
            if let Some(url) = url {
                sql.push(&format!(" AND {al}.url = ")).text(url);
            }
        }
        Predicate::Uri { param, value, mode } => {
            sql.push(&format!("{al}.param = ")).text(param);
            match mode {
                UriMatch::Exact => sql.push(&format!(" AND {al}.value = ")).text(value),
                // substr rather than LIKE: LIKE ignores ASCII case on SQLite, not on PostgreSQL.
                UriMatch::Below => sql
                    .push(&format!(" AND substr({al}.value, 1, CAST("))
                    .int(value.chars().count() as i64)
                    .push(" AS INTEGER)) = ")
                    .text(value),
                UriMatch::Above => sql
                    .push(" AND substr(")
                    .text(value)
                    .push(&format!(", 1, length({al}.value)) = {al}.value")),
            };
        }
        Predicate::Number {
            param,
            prefix,
            value,
            lo,
            hi,
        } => {
            sql.push(&format!("{al}.param = "))
                .text(param)
                .push(" AND ");
            push_number(sql, &format!("{al}.value"), *prefix, *value, *lo, *hi);
        }
        Predicate::Quantity {
            param,
            prefix,
            value,
            lo,
            hi,
            system,
            code,
            canonical,
        } => {
            sql.push(&format!("{al}.param = ")).text(param);
            if let Some(c) = canonical {
                sql.push(&format!(" AND {al}.canonical_unit = "))
                    .text(&c.unit)
                    .push(" AND ");
                push_number(
                    sql,
                    &format!("{al}.canonical_value"),
                    *prefix,
                    c.value,
                    c.lo,
                    c.hi,
                );
                return;
            }
            if let Some(code) = code {
                // The unit may be given by its code or, without a system, by its human form.
                match system {
                    TokenSystem::Is(system) => sql
                        .push(&format!(" AND {al}.system = "))
                        .text(system)
                        .push(&format!(" AND {al}.code = "))
                        .text(code),
                    TokenSystem::None | TokenSystem::Any => sql
                        .push(&format!(" AND ({al}.code = "))
                        .text(code)
                        .push(&format!(" OR {al}.unit = "))
                        .text(code)
                        .push(")"),
                };
            }
            sql.push(" AND ");
            push_number(sql, &format!("{al}.value"), *prefix, *value, *lo, *hi);
        }
        _ => {
            sql.push("1 = 0");
        }
    }
}

fn table_name(table: IndexTable) -> &'static str {
    match table {
        IndexTable::Token => "idx_token",
        IndexTable::String => "idx_string",
        IndexTable::Date => "idx_date",
        IndexTable::Reference => "idx_reference",
        IndexTable::Uri => "idx_uri",
        IndexTable::Number => "idx_number",
        IndexTable::Quantity => "idx_quantity",
    }
}

/// A LIKE pattern for "starts with" on normalized text, with LIKE's wildcards escaped.
fn like_prefix(value: &str) -> String {
    like_prefix_exact(&crate::search::extract::normalize(value))
}

fn like_prefix_exact(value: &str) -> String {
    let mut pattern = value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    pattern.push('%');
    pattern
}

/// Compares a stored number with a search number: `eq` when the value lies in the range the
/// search value's precision implies, the other prefixes against the value itself.
fn push_number(sql: &mut Sql, column: &str, prefix: Prefix, value: f64, lo: f64, hi: f64) {
    match prefix {
        Prefix::Eq => sql
            .push("(")
            .push(column)
            .push(" >= ")
            .float(lo)
            .push(" AND ")
            .push(column)
            .push(" < ")
            .float(hi)
            .push(")"),
        Prefix::Ne => sql
            .push("NOT (")
            .push(column)
            .push(" >= ")
            .float(lo)
            .push(" AND ")
            .push(column)
            .push(" < ")
            .float(hi)
            .push(")"),
        Prefix::Gt | Prefix::Sa => sql.push(column).push(" > ").float(value),
        Prefix::Lt | Prefix::Eb => sql.push(column).push(" < ").float(value),
        Prefix::Ge => sql.push(column).push(" >= ").float(value),
        Prefix::Le => sql.push(column).push(" <= ").float(value),
        Prefix::Ap => {
            // Approximately: within 10% of the value (search page, prefix ap).
            let margin = (value * 0.1).abs().max(hi - lo);
            sql.push("(")
                .push(column)
                .push(" >= ")
                .float(value - margin)
                .push(" AND ")
                .push(column)
                .push(" <= ")
                .float(value + margin)
                .push(")")
        }
    };
}

/// Compares a stored range `[rlo, rhi)` with the search range `[lo, hi)` as FHIR's prefixes
/// define it (search page, "prefixes").
fn push_range(sql: &mut Sql, rlo: &str, rhi: &str, prefix: Prefix, lo: i64, hi: i64) {
    let contained = |sql: &mut Sql| {
        sql.push("(")
            .push(rlo)
            .push(" >= ")
            .int(lo)
            .push(" AND ")
            .push(rhi)
            .push(" <= ")
            .int(hi);
        sql.push(")");
    };
    match prefix {
        Prefix::Eq => contained(sql),
        Prefix::Ne => {
            sql.push("NOT ");
            contained(sql);
        }
        Prefix::Gt => {
            sql.push(rhi).push(" > ").int(hi);
        }
        Prefix::Lt => {
            sql.push(rlo).push(" < ").int(lo);
        }
        Prefix::Ge => {
            sql.push("(").push(rhi).push(" > ").int(hi).push(" OR ");
            contained(sql);
            sql.push(")");
        }
        Prefix::Le => {
            sql.push("(").push(rlo).push(" < ").int(lo).push(" OR ");
            contained(sql);
            sql.push(")");
        }
        Prefix::Sa => {
            sql.push(rlo).push(" >= ").int(hi);
        }
        Prefix::Eb => {
            sql.push(rhi).push(" <= ").int(lo);
        }
        Prefix::Ap => {
            // Approximately: overlaps the search range widened by 10% of its distance from now
            // (the search page leaves the width to the server).
            let now = chrono::Utc::now().timestamp_millis();
            let margin = ((now - lo).abs() / 10).max(hi - lo);
            sql.push("(")
                .push(rlo)
                .push(" < ")
                .int(hi + margin)
                .push(" AND ")
                .push(rhi);
            sql.push(" > ").int(lo - margin).push(")");
        }
    }
}

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

/// Multi-row INSERTs of a resource's index entries, one or more per non-empty table.
pub fn insert_index(dialect: Dialect, rid: i64, entries: &IndexEntries) -> Vec<Sql> {
    let mut out = Vec::new();
    insert_resource_entries(&mut out, dialect, rid, entries, None);
    for (position, contained) in entries.contained.iter().enumerate() {
        insert_resource_entries(&mut out, dialect, rid, contained, Some(position as i64));
    }
    out
}

/// The entries of a resource or of one resource it contains (at `contained`), groups included.
fn insert_resource_entries(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    rid: i64,
    entries: &IndexEntries,
    contained: Option<i64>,
) {
    insert_entries(out, dialect, rid, entries, None, contained);
    for (grp, group) in entries.groups.iter().enumerate() {
        insert_entries(out, dialect, rid, group, Some(grp as i64), contained);
    }
}

/// The entries of a resource, or of one group of it (`grp`: values that come from one element).
/// The `contained` column is only written for a contained resource's entries.
fn insert_entries(
    out: &mut Vec<Sql>,
    dialect: Dialect,
    rid: i64,
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
        &columns("idx_token (grp, rid, param, system, code)"),
        &entries.tokens,
        |sql, e| {
            start(sql);
            sql.push(", ")
                .int(rid)
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

/// The resources referenced from rows `rids` through reference parameters `params` (all when
/// `None`), optionally only of one type: the targets of `_include`.
pub fn include_targets(
    dialect: Dialect,
    rids: &[i64],
    params: Option<&[String]>,
    target_type: Option<&str>,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN (");
    for (i, rid) in rids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.int(*rid);
    }
    sql.push(")");
    if let Some(params) = params {
        sql.push(" AND x.param IN (");
        for (i, param) in params.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.text(param);
        }
        sql.push(")");
    }
    if let Some(t) = target_type {
        sql.push(" AND x.target_type = ").text(t);
    }
    // Not the references of contained resources (`Medication#manufacturer`): `*` means the
    // resource's own reference parameters. A test on `param` keeps the lookup on the index.
    if params.is_none() {
        sql.push(" AND x.param NOT LIKE '%#%'");
    }
    sql
}

/// The current, not deleted versions of the resources `keys` (type, id).
pub fn current_versions(dialect: Dialect, keys: &[(String, String)]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT r.rid, ").push(VERSION_COLUMNS).push(
        " FROM resource r JOIN resource_version v \
         ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (",
    );
    // Grouped by type into IN lists: a flat OR per key nests too deep for SQLite.
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (rtype, id) in keys {
        by_type.entry(rtype).or_default().push(id);
    }
    for (i, (rtype, ids)) in by_type.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(r.rtype = ").text(rtype).push(" AND r.id IN (");
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
    sql.push(") ORDER BY r.rid");
    sql
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

/// Queues for re-scoring the Patient whose compartment holds `rtype/id` as its row stands now
/// (nothing when it is in none). Queued again while waiting, it keeps its place and its
/// generation goes up, so the worker does not drop a request that came in while it scored.
pub fn queue_compartment(dialect: Dialect, rtype: &str, id: &str, at: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    // The WHERE also tells SQLite that ON CONFLICT belongs to the INSERT, not to a join.
    sql.push(
        "INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) \
         SELECT compartment, ",
    )
    .int(at)
    .push(", 1, ")
    .int(at)
    .push(" FROM resource WHERE rtype = ")
    .text(rtype)
    .push(" AND id = ")
    .text(id)
    .push(" AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET ");
    requeue(&mut sql, at);
    sql
}

/// The update of a patient queued again: a new generation, and due now if it was parked (new
/// data may score); one waiting for a retry keeps its backoff.
fn requeue(sql: &mut Sql, at: i64) {
    sql.push(
        "generation = scoring_queue.generation + 1, \
         next_attempt_at = COALESCE(scoring_queue.next_attempt_at, ",
    )
    .int(at)
    .push(")");
}

/// Queues one patient for re-scoring (as `queue_compartment`).
pub fn queue_patient(dialect: Dialect, patient: &str, at: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES (",
    )
    .text(patient)
    .push(", ")
    .int(at)
    .push(", 1, ")
    .int(at)
    .push(") ON CONFLICT (patient) DO UPDATE SET ");
    requeue(&mut sql, at);
    sql
}

/// The columns of a `store::Queued`, in its field order.
pub const QUEUED_COLUMNS: &str = "patient, generation, attempts, next_attempt_at, last_error";

/// The oldest queued patients due at `now`. Columns: `QUEUED_COLUMNS`.
pub fn queued(dialect: Dialect, limit: usize, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(QUEUED_COLUMNS)
        .push(" FROM scoring_queue WHERE next_attempt_at <= ")
        .int(now)
        .push(" ORDER BY queued_at, patient LIMIT ")
        .int(limit as i64);
    sql
}

/// Records a failed attempt (see `Store::defer`).
pub fn defer(
    dialect: Dialect,
    patient: &str,
    generation: i64,
    retry_at: Option<i64>,
    error: &str,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE scoring_queue SET attempts = attempts + 1, last_error = ")
        .text(error)
        .push(", next_attempt_at = CASE WHEN generation = ")
        .int(generation)
        .push(" THEN ");
    match retry_at {
        Some(at) => sql.int(at),
        None => sql.push("NULL"),
    };
    sql.push(" ELSE next_attempt_at END WHERE patient = ")
        .text(patient);
    sql
}

/// The queued patients whose last attempt failed. Columns: `QUEUED_COLUMNS`.
pub fn scoring_failures(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(QUEUED_COLUMNS)
        .push(" FROM scoring_queue WHERE attempts > 0 ORDER BY patient");
    sql
}

/// Removes a patient from the queue if it was not queued again since `generation` was read.
pub fn dequeue(dialect: Dialect, patient: &str, generation: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM scoring_queue WHERE patient = ")
        .text(patient)
        .push(" AND generation = ")
        .int(generation);
    sql
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
mod golden;
#[cfg(test)]
mod golden_tests;
