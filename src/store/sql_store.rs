//! The one implementation of [`Store`] and [`Tx`], for every [`Backend`].
//!
//! Reads run on the backend's reader pool, writes outside a transaction (the scoring queue) on
//! its writer pool, and a [`Tx`] (`SqlTx`, in `sql_tx.rs`) holds one transaction begun the
//! backend's way; what differs per database is in `sqlite.rs` and `postgres.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Transaction};
use tokio::sync::Notify;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::group_commit::{GroupCommit, Writer};
use super::sql::{self, Sql};
use super::sql_tx::SqlTx;
use super::time_budget;
use super::{
    HistoryEntry, HistoryQuery, Method, PoolUse, QueueStats, Queued, SearchHit, Statement, Store,
    StoreError, StoreResult, Tx, Version,
};
use crate::search::query::{Contained, KeyKind, KeyValue, SearchQuery, SortKey};

/// A store on the database `B`.
pub struct SqlStore<B: Backend> {
    /// Shared with the write transactions, which begin when they first need the database.
    backend: Arc<B>,
    /// Woken when a committed write queued a patient for scoring: by this store's own
    /// commits, and on PostgreSQL by every server's (`LISTEN`, see [`Backend::listen`]).
    queued: Arc<Notify>,
    /// Woken on PostgreSQL when any server's commit wrote a SearchParameter, a Basic (a
    /// subscription topic) or a definition the validator uses (StructureDefinition, ValueSet,
    /// CodeSystem, Questionnaire), so every server reloads them (`Store::registry_signal`).
    registry: Arc<Notify>,
    /// Where the database's writers commit together (`store::group_commit`), if they do.
    group: Option<GroupCommit<B>>,
}

impl<B: Backend> SqlStore<B> {
    /// Opens the database named by `url` (see [`Backend::open`]).
    pub async fn open(url: &str) -> StoreResult<Self> {
        let backend = Arc::new(B::open(url).await?);
        let queued = Arc::new(Notify::new());
        let registry = Arc::new(Notify::new());
        backend
            .listen(Arc::downgrade(&queued), Arc::downgrade(&registry))
            .await;
        let group = B::GROUP_COMMIT.then(|| GroupCommit::start(queued.clone()));
        Ok(SqlStore {
            backend,
            queued,
            registry,
            group,
        })
    }

    pub(super) fn reader(&self) -> impl Executor<'_, Database = B::Db> {
        B::Db::pool(self.backend.reader())
    }

    pub(super) fn writer(&self) -> impl Executor<'_, Database = B::Db> {
        B::Db::pool(self.backend.writer())
    }

    /// Ends this server's claim on a queued patient (`Store::claim`).
    async fn release(&self, patient: &str) -> StoreResult<()> {
        let sql = sql::release(B::DIALECT, patient);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    /// A write transaction begun the backend's way, for the store's own tables.
    /// Runs `attempt` in a write transaction of the store's own (the workers' bookkeeping),
    /// again when a concurrent writer won (`StoreError::Conflict`: on SQLite, the group it
    /// joined was rolled back for another member, decision 0055), at most [`OWN_TRIES`] times;
    /// not when the work was done elsewhere (`StoreError::HandledElsewhere`, decision 0063).
    pub(super) async fn in_own_transaction<T, F, Fut>(&self, mut attempt: F) -> StoreResult<T>
    where
        F: FnMut(Box<SqlTx<B>>) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt(Box::new(self.write_transaction())).await {
                Err(StoreError::Conflict(_)) if tries < OWN_TRIES => tries += 1,
                done => return done,
            }
        }
    }

    /// A write transaction, begun (or joining the group commit) at its first statement.
    fn write_transaction(&self) -> SqlTx<B> {
        SqlTx::new(
            Writer::unbegun(self.backend.clone(), self.group.as_ref()),
            self.queued.clone(),
        )
    }

    pub(super) async fn begin_raw(&self) -> Result<Transaction<'static, B::Db>, sqlx::Error> {
        self.backend.begin().await
    }
    /// The rows of a search statement, on a reader connection, under the request's time
    /// budget when it has one (`store::time_budget`).
    async fn search_rows(&self, sql: &Sql) -> StoreResult<Vec<Row<B>>> {
        let Some(clock) = time_budget::current() else {
            return Ok(B::Db::prepare(sql).fetch_all(self.reader()).await?);
        };
        let limit = clock.start()?;
        let mut running = Running::<B> {
            connection: self.backend.reader().acquire().await?,
            done: false,
        };
        let (rows, disarmed) = timed_rows::<B>(&mut running.connection, sql, &clock, &limit).await;
        // A connection that could not be disarmed is closed too.
        running.done = disarmed;
        rows
    }
}

/// A row of the database `B`.
pub(super) type Row<B> = <<B as Backend>::Db as Database>::Row;

/// A reader connection running a timed statement: closed rather than returned to the pool
/// when the statement's future is dropped before it ended (its request went away), so that
/// the database stops the statement and nothing armed stays behind on the connection.
struct Running<B: Backend> {
    connection: PoolConnection<B::Db>,
    done: bool,
}

impl<B: Backend> Drop for Running<B> {
    fn drop(&mut self) {
        if !self.done {
            self.connection.close_on_drop();
        }
    }
}

/// Runs `sql` on `connection` under `limit`: armed before, disarmed after, its time counted on
/// `clock`, and the database's stopping it reported as the budget spent; and whether the
/// connection was disarmed.
pub(super) async fn timed_rows<B: Backend>(
    connection: &mut <B::Db as Database>::Connection,
    sql: &Sql,
    clock: &time_budget::Clock,
    limit: &time_budget::Limit,
) -> (StoreResult<Vec<Row<B>>>, bool) {
    if let Err(e) = B::arm(connection, limit).await {
        return (Err(e.into()), false);
    }
    let rows = B::Db::prepare(sql)
        .fetch_all(B::Db::connection(connection))
        .await;
    clock.spend(limit);
    // Disarmed whatever the outcome. (In a PostgreSQL write transaction a failed statement
    // leaves the transaction aborted, disarming fails too, and the rollback undoes it.)
    let disarmed = B::disarm(connection).await;
    let rows = match rows {
        Ok(rows) => Ok(rows),
        Err(e) if B::stopped(&e) && limit.expired() => Err(clock.spent_error()),
        Err(e) => Err(e.into()),
    };
    (rows, disarmed.is_ok())
}

/// A `Queued` from a row of `sql::QUEUED_COLUMNS`.
fn queued_at(row: &impl Columns) -> Result<Queued, sqlx::Error> {
    Ok(Queued {
        patient: row.at(0)?,
        generation: row.at(1)?,
        attempts: row.at(2)?,
        next_attempt_at: row.at(3)?,
        last_error: row.at(4)?,
    })
}

/// Reads the columns of `sql::VERSION_COLUMNS` starting at `offset`.
fn version_at(row: &impl Columns, offset: usize) -> Result<Version, sqlx::Error> {
    let method: String = row.at(offset + 4)?;
    Ok(Version {
        rtype: row.at(offset)?,
        id: row.at(offset + 1)?,
        version: row.at(offset + 2)?,
        last_updated: row.at(offset + 3)?,
        method: Method::parse(&method),
        content: row.at(offset + 5)?,
    })
}

pub(super) fn hits(
    rows: Vec<impl Columns>,
    sort: &[SortKey],
    contained: bool,
) -> StoreResult<Vec<SearchHit>> {
    rows.iter()
        .map(|row| {
            let keys = sort
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let at = 7 + i;
                    Ok(match key.kind() {
                        KeyKind::Text => Column::<Option<String>>::at(row, at)?.map(KeyValue::Text),
                        KeyKind::Int => Column::<Option<i64>>::at(row, at)?.map(KeyValue::Int),
                        KeyKind::Float => Column::<Option<f64>>::at(row, at)?.map(KeyValue::Float),
                    }
                    .unwrap_or(KeyValue::Null))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            // A search with `_contained` has the hit's contained position last, also a key.
            let at = 7 + sort.len();
            let contained = if contained { Some(row.at(at)?) } else { None };
            let mut keys = keys;
            keys.extend(contained.map(KeyValue::Int));
            Ok(SearchHit {
                rid: row.at(0)?,
                version: version_at(row, 1)?,
                keys,
                contained,
            })
        })
        .collect()
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(self.write_transaction()))
    }

    async fn read(&self, rtype: &str, id: &str) -> StoreResult<Option<Version>> {
        if let Some(answer) = self.backend.read_now(rtype, id, None) {
            return Ok(answer);
        }
        let sql = sql::read_version(B::DIALECT, rtype, id, None);
        let row = B::Db::prepare(&sql).fetch_optional(self.reader()).await?;
        Ok(row.map(|r| version_at(&r, 0)).transpose()?)
    }

    async fn vread(&self, rtype: &str, id: &str, version: i64) -> StoreResult<Option<Version>> {
        if let Some(answer) = self.backend.read_now(rtype, id, Some(version)) {
            return Ok(answer);
        }
        let sql = sql::read_version(B::DIALECT, rtype, id, Some(version));
        let row = B::Db::prepare(&sql).fetch_optional(self.reader()).await?;
        Ok(row.map(|r| version_at(&r, 0)).transpose()?)
    }

    async fn history(&self, query: &HistoryQuery) -> StoreResult<Vec<HistoryEntry>> {
        let sql = sql::history(B::DIALECT, query);
        let rows = self.search_rows(&sql).await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    seq: row.at(0)?,
                    version: version_at(row, 1)?,
                })
            })
            .collect()
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let sql = sql::search(B::DIALECT, query);
        sql::check(&sql)?;
        hits(
            self.search_rows(&sql).await?,
            &query.sort,
            query.contained != Contained::False,
        )
    }

    async fn count(&self, query: &SearchQuery) -> StoreResult<u64> {
        let sql = sql::count(B::DIALECT, query);
        sql::check(&sql)?;
        let rows = self.search_rows(&sql).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        let n: i64 = row.at(0)?;
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
        let sql = sql::include_targets(B::DIALECT, rids, params, target_type);
        let rows = self.search_rows(&sql).await?;
        rows.iter()
            .map(|row| Ok((row.at(0)?, row.at(1)?)))
            .collect()
    }

    async fn lastn(
        &self,
        query: &SearchQuery,
        max: usize,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>> {
        let sql = sql::lastn(B::DIALECT, query, max, limit);
        sql::check(&sql)?;
        hits(self.search_rows(&sql).await?, &[], false)
    }

    async fn read_current(&self, keys: &[(String, String)]) -> StoreResult<Vec<SearchHit>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = sql::current_versions(B::DIALECT, keys);
        hits(self.search_rows(&sql).await?, &[], false)
    }

    async fn compartment(&self, patient: &str, types: &[&str]) -> StoreResult<Vec<Version>> {
        let sql = sql::compartment(B::DIALECT, patient, types);
        let rows = self.search_rows(&sql).await?;
        Ok(rows
            .iter()
            .map(|r| version_at(r, 0))
            .collect::<Result<_, _>>()?)
    }

    async fn compartments(&self) -> StoreResult<Vec<String>> {
        let sql = sql::compartments(B::DIALECT);
        let rows = self.search_rows(&sql).await?;
        Ok(rows.iter().map(|r| r.at(0)).collect::<Result<_, _>>()?)
    }

    async fn queued(&self, limit: usize, now: i64) -> StoreResult<Vec<Queued>> {
        let sql = sql::queued(B::DIALECT, limit, now);
        let rows = B::Db::prepare(&sql).fetch_all(self.reader()).await?;
        Ok(rows.iter().map(queued_at).collect::<Result<_, _>>()?)
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool> {
        let sql = sql::take_lease(B::DIALECT, name, holder, now, until);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let sql = sql::release_lease(B::DIALECT, name, holder);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn claim(&self, limit: usize, now: i64, until: i64) -> StoreResult<Vec<Queued>> {
        let sql = sql::claim(B::DIALECT, limit, now, until);
        // A write transaction like any other, so that on SQLite it joins the group commit and
        // shares the fsync of the writes committed with it (decision 0057): the scorer claims
        // once a round, and while clients write, a round is about one patient long.
        let mut claimed = self
            .in_own_transaction(|mut tx| async {
                let rows = tx.fetch_all(&sql).await?;
                let claimed = rows.iter().map(queued_at).collect::<Result<Vec<_>, _>>()?;
                tx.commit().await?;
                Ok(claimed)
            })
            .await?;
        // RETURNING keeps no order: the oldest first, as queued.
        claimed.sort_by_key(|q| q.next_attempt_at);
        Ok(claimed)
    }

    async fn defer(
        &self,
        patient: &str,
        generation: i64,
        retry_at: Option<i64>,
        error: &str,
    ) -> StoreResult<()> {
        let sql = sql::defer(B::DIALECT, patient, generation, retry_at, error);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        self.release(patient).await
    }

    async fn queue_stats(&self, now: i64) -> StoreResult<QueueStats> {
        let sql = sql::queue_stats(B::DIALECT, now);
        let row = B::Db::prepare(&sql).fetch_one(self.reader()).await?;
        Ok(QueueStats {
            due: row.at(0)?,
            waiting: row.at(1)?,
            parked: row.at(2)?,
            oldest_due_queued_at: row.at(3)?,
        })
    }

    fn pools(&self) -> Vec<PoolUse> {
        let use_of = |name, pool: &sqlx::Pool<B::Db>| PoolUse {
            name,
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        };
        let (reader, writer) = (self.backend.reader(), self.backend.writer());
        if std::ptr::eq(reader, writer) {
            vec![use_of("main", reader)]
        } else {
            vec![use_of("reader", reader), use_of("writer", writer)]
        }
    }

    async fn scoring_failures(&self) -> StoreResult<Vec<Queued>> {
        let sql = sql::scoring_failures(B::DIALECT);
        let rows = B::Db::prepare(&sql).fetch_all(self.reader()).await?;
        Ok(rows.iter().map(queued_at).collect::<Result<_, _>>()?)
    }

    async fn dequeue(&self, patient: &str, generation: i64) -> StoreResult<()> {
        self.settle_scored(&[(patient.to_owned(), generation, None)])
            .await
    }

    async fn reschedule(&self, patient: &str, generation: i64, at: i64) -> StoreResult<()> {
        self.settle_scored(&[(patient.to_owned(), generation, Some(at))])
            .await
    }

    async fn settle_scored(&self, scored: &[(String, i64, Option<i64>)]) -> StoreResult<()> {
        // One writer (SQLite): nothing to deadlock with, so one transaction (one group member)
        // for all; otherwise one each. A patient queued again meanwhile keeps its entry.
        let transactions: Vec<&[(String, i64, Option<i64>)]> = if B::GROUP_COMMIT {
            vec![scored]
        } else {
            scored.chunks(1).collect()
        };
        for settled in transactions {
            self.in_own_transaction(|mut tx| async move {
                for (patient, generation, due) in settled {
                    tx.settle_queued(patient, *generation, *due).await?;
                }
                tx.commit().await
            })
            .await?;
        }
        Ok(())
    }

    async fn queue_patient(&self, patient: &str, at: i64) -> StoreResult<()> {
        let sql = sql::queue_patient(B::DIALECT, patient, at);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        if let Some(notify) = B::NOTIFY_QUEUED {
            B::Db::query(notify).execute(self.writer()).await?;
        }
        self.queued.notify_one();
        Ok(())
    }

    async fn explain(&self, statement: Statement<'_>) -> StoreResult<Vec<String>> {
        let sql = sql::explain(B::DIALECT, &statement);
        sql::check(&sql)?;
        let rows = B::Db::prepare(&sql).fetch_all(self.reader()).await?;
        Ok(B::plan(&rows)?)
    }

    fn queue_signal(&self) -> Option<Arc<Notify>> {
        Some(self.queued.clone())
    }

    fn registry_signal(&self) -> Option<Arc<Notify>> {
        B::NOTIFY_REGISTRY.map(|_| self.registry.clone())
    }

    async fn ping(&self) -> StoreResult<()> {
        B::Db::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    async fn close(&self) {
        self.backend.close().await;
    }
}

/// How often [`SqlStore::in_own_transaction`] tries.
const OWN_TRIES: usize = 3;

#[cfg(test)]
mod tests {
    use super::super::sqlite::Sqlite;
    use super::*;

    /// The workers' own transactions are tried again when a concurrent writer wins (on SQLite:
    /// the group they joined was rolled back for another member), and give up after a few.
    #[tokio::test]
    async fn an_own_transaction_is_tried_again_when_a_concurrent_writer_wins() {
        let (dir, url) = crate::store::scratch_sqlite("own-transaction");
        let store = SqlStore::<Sqlite>::open(&url).await.unwrap();
        let tries = std::sync::atomic::AtomicUsize::new(0);
        let answer = store
            .in_own_transaction(|mut tx| {
                let tried = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                async move {
                    tx.execute(vec![sql::queue_patient(sql::Dialect::Sqlite, "p-own", 1)])
                        .await?;
                    if tried < 2 {
                        return Err(StoreError::Conflict("the group was rolled back".into()));
                    }
                    tx.commit().await?;
                    Ok(tried)
                }
            })
            .await
            .unwrap();
        assert_eq!(answer, 2, "the second try commits");
        let queued = store.queued(10, i64::MAX).await.unwrap();
        assert_eq!(queued.len(), 1, "the first try's write is gone: {queued:?}");

        tries.store(0, std::sync::atomic::Ordering::SeqCst);
        let failed = store
            .in_own_transaction(|_tx| {
                tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(StoreError::Conflict("always".into())) }
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), OWN_TRIES);

        // Work another worker did is not a lost race: given up after the first try.
        tries.store(0, std::sync::atomic::Ordering::SeqCst);
        let handled = store
            .in_own_transaction(|_tx| {
                tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(StoreError::HandledElsewhere("by another".into())) }
            })
            .await;
        assert!(
            matches!(handled, Err(StoreError::HandledElsewhere(_))),
            "{handled:?}"
        );
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
