//! The production store: PostgreSQL.
//!
//! Writers lock the resource row they change (`SELECT … FOR UPDATE`) so concurrent updates queue
//! instead of losing a version; conditional interactions take a transaction-scoped advisory lock
//! on their criteria so racing conditional creates make exactly one resource.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{query::Query, PgPool, Postgres, Row, Transaction};

use super::sql::{self, Bind, Dialect, Sql};
use super::{
    Current, HistoryEntry, HistoryQuery, Method, NewVersion, Queued, SearchHit, Statement, Store,
    StoreError, StoreResult, Tx, Version,
};
use crate::search::index::IndexEntries;
use crate::search::query::{Contained, KeyKind, KeyValue, SearchQuery, SortKey};

const DIALECT: Dialect = Dialect::Postgres;

pub struct PostgresStore {
    pub(super) pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        // Statements are prepared once per connection and reused. After five runs PostgreSQL
        // may switch a prepared search to a generic plan that ignores the values, and for a
        // search by one patient among thousands such a plan reads far too much: plan each run
        // with its values instead (planning these statements costs well under a millisecond).
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

fn bind_all<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    binds: &'q [Bind],
) -> Query<'q, Postgres, PgArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::OptText(s) => query.bind(s.as_deref()),
            Bind::Int(i) => query.bind(*i),
            Bind::Float(f) => query.bind(*f),
            Bind::Bool(b) => query.bind(*b),
            Bind::OptInt(i) => query.bind(*i),
        };
    }
    query
}

pub(super) fn prepare(sql: &Sql) -> Query<'_, Postgres, PgArguments> {
    bind_all(sqlx::query(&sql.text), &sql.binds)
}

/// A `Queued` from a row of `sql::QUEUED_COLUMNS`.
fn queued_at(row: &PgRow) -> Result<Queued, sqlx::Error> {
    Ok(Queued {
        patient: row.try_get(0)?,
        generation: row.try_get(1)?,
        attempts: row.try_get(2)?,
        next_attempt_at: row.try_get(3)?,
        last_error: row.try_get(4)?,
    })
}

/// Reads the columns of `sql::VERSION_COLUMNS` starting at `offset`.
fn version_at(row: &PgRow, offset: usize) -> Result<Version, sqlx::Error> {
    Ok(Version {
        rtype: row.try_get(offset)?,
        id: row.try_get(offset + 1)?,
        version: row.try_get(offset + 2)?,
        last_updated: row.try_get(offset + 3)?,
        method: Method::parse(row.try_get::<&str, _>(offset + 4)?),
        content: row.try_get(offset + 5)?,
    })
}

fn hits(rows: Vec<PgRow>, sort: &[SortKey], contained: bool) -> StoreResult<Vec<SearchHit>> {
    rows.iter()
        .map(|row| {
            let keys = sort
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let at = 7 + i;
                    Ok(match key.kind() {
                        KeyKind::Text => row.try_get::<Option<String>, _>(at)?.map(KeyValue::Text),
                        KeyKind::Int => row.try_get::<Option<i64>, _>(at)?.map(KeyValue::Int),
                        KeyKind::Float => row.try_get::<Option<f64>, _>(at)?.map(KeyValue::Float),
                    }
                    .unwrap_or(KeyValue::Null))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            // A search with `_contained` has the hit's contained position last, also a key.
            let at = 7 + sort.len();
            let contained = if contained {
                Some(row.try_get::<i64, _>(at)?)
            } else {
                None
            };
            let mut keys = keys;
            keys.extend(contained.map(KeyValue::Int));
            Ok(SearchHit {
                rid: row.try_get(0)?,
                version: version_at(row, 1)?,
                keys,
                contained,
            })
        })
        .collect()
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PostgresTx { tx }))
    }

    async fn read(&self, rtype: &str, id: &str) -> StoreResult<Option<Version>> {
        let sql = sql::read_version(DIALECT, rtype, id, None);
        let row = prepare(&sql).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| version_at(&r, 0)).transpose()?)
    }

    async fn vread(&self, rtype: &str, id: &str, version: i64) -> StoreResult<Option<Version>> {
        let sql = sql::read_version(DIALECT, rtype, id, Some(version));
        let row = prepare(&sql).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| version_at(&r, 0)).transpose()?)
    }

    async fn history(&self, query: &HistoryQuery) -> StoreResult<Vec<HistoryEntry>> {
        let sql = sql::history(DIALECT, query);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    seq: row.try_get(0)?,
                    version: version_at(row, 1)?,
                })
            })
            .collect()
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let sql = sql::search(DIALECT, query);
        sql::check(&sql)?;
        hits(
            prepare(&sql).fetch_all(&self.pool).await?,
            &query.sort,
            query.contained != Contained::False,
        )
    }

    async fn count(&self, query: &SearchQuery) -> StoreResult<u64> {
        let sql = sql::count(DIALECT, query);
        sql::check(&sql)?;
        let n: i64 = prepare(&sql).fetch_one(&self.pool).await?.try_get(0)?;
        Ok(n as u64)
    }

    async fn include_targets(
        &self,
        rids: &[i64],
        params: Option<&[String]>,
        target_type: Option<&str>,
    ) -> StoreResult<Vec<(String, String)>> {
        if rids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = sql::include_targets(DIALECT, rids, params, target_type);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn lastn(
        &self,
        query: &SearchQuery,
        max: usize,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>> {
        let sql = sql::lastn(DIALECT, query, max, limit);
        sql::check(&sql)?;
        hits(prepare(&sql).fetch_all(&self.pool).await?, &[], false)
    }

    async fn read_current(&self, keys: &[(String, String)]) -> StoreResult<Vec<SearchHit>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = sql::current_versions(DIALECT, keys);
        hits(prepare(&sql).fetch_all(&self.pool).await?, &[], false)
    }

    async fn compartment(&self, patient: &str, types: &[&str]) -> StoreResult<Vec<Version>> {
        let sql = sql::compartment(DIALECT, patient, types);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| version_at(r, 0))
            .collect::<Result<_, _>>()?)
    }

    async fn compartments(&self) -> StoreResult<Vec<String>> {
        let sql = sql::compartments(DIALECT);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn queued(&self, limit: usize, now: i64) -> StoreResult<Vec<Queued>> {
        let sql = sql::queued(DIALECT, limit, now);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(queued_at).collect::<Result<_, _>>()?)
    }

    async fn defer(
        &self,
        patient: &str,
        generation: i64,
        retry_at: Option<i64>,
        error: &str,
    ) -> StoreResult<()> {
        prepare(&sql::defer(DIALECT, patient, generation, retry_at, error))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn scoring_failures(&self) -> StoreResult<Vec<Queued>> {
        let sql = sql::scoring_failures(DIALECT);
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(queued_at).collect::<Result<_, _>>()?)
    }

    async fn dequeue(&self, patient: &str, generation: i64) -> StoreResult<()> {
        prepare(&sql::dequeue(DIALECT, patient, generation))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reschedule(&self, patient: &str, generation: i64, at: i64) -> StoreResult<()> {
        prepare(&sql::reschedule(DIALECT, patient, generation, at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn queue_patient(&self, patient: &str, at: i64) -> StoreResult<()> {
        prepare(&sql::queue_patient(DIALECT, patient, at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn explain(&self, statement: Statement<'_>) -> StoreResult<Vec<String>> {
        let sql = sql::explain(DIALECT, &statement);
        sql::check(&sql)?;
        let rows = prepare(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

struct PostgresTx {
    tx: Transaction<'static, Postgres>,
}

impl PostgresTx {
    /// Writes the index entries of row `rid`, first removing its old ones if `replace`.
    async fn write_index(
        &mut self,
        rid: i64,
        index: &IndexEntries,
        replace: bool,
    ) -> StoreResult<()> {
        if replace {
            for table in sql::INDEX_TABLES {
                prepare(&sql::delete_index(DIALECT, table, rid))
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        for insert in sql::insert_index(DIALECT, rid, index) {
            prepare(&insert).execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Tx for PostgresTx {
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>> {
        let row = sqlx::query(
            "SELECT version, last_updated, deleted FROM resource WHERE rtype = $1 AND id = $2 \
             FOR UPDATE",
        )
        .bind(rtype)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row
            .map(|r| -> Result<Current, sqlx::Error> {
                Ok(Current {
                    version: r.try_get(0)?,
                    last_updated: r.try_get(1)?,
                    deleted: r.try_get(2)?,
                })
            })
            .transpose()?)
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let sql = sql::search(DIALECT, query);
        sql::check(&sql)?;
        hits(
            prepare(&sql).fetch_all(&mut *self.tx).await?,
            &query.sort,
            query.contained != Contained::False,
        )
    }

    async fn write(&mut self, new: NewVersion<'_>, previous: Option<i64>) -> StoreResult<()> {
        let row_sql = match previous {
            None => sql::insert_resource(DIALECT, &new),
            Some(previous) => sql::update_resource(DIALECT, &new, previous),
        };
        let rid: i64 = match prepare(&row_sql).fetch_optional(&mut *self.tx).await? {
            Some(row) => row.try_get(0)?,
            None => {
                return Err(StoreError::Conflict(format!(
                    "{}/{} was changed by a concurrent request",
                    new.rtype, new.id
                )))
            }
        };
        prepare(&sql::insert_version(DIALECT, &new))
            .execute(&mut *self.tx)
            .await?;
        self.write_index(rid, new.index, previous.is_some()).await
    }

    async fn reindex(&mut self, rid: i64, index: &IndexEntries) -> StoreResult<()> {
        self.write_index(rid, index, true).await
    }

    async fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> StoreResult<()> {
        prepare(&sql::queue_compartment(DIALECT, rtype, id, at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
