//! The one implementation of [`Store`] and [`Tx`], for every [`Backend`].
//!
//! Reads run on the backend's reader pool, writes outside a transaction (the scoring queue) on
//! its writer pool, and a [`Tx`] holds one transaction begun the backend's way; what differs
//! per database is in `sqlite.rs` and `postgres.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Transaction};
use tokio::sync::Notify;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::group_commit::{GroupCommit, Writer};
use super::pending::{Batch, Held, Pending};
use super::sql::{self, Sql};
use super::time_budget;
use super::{
    Current, HistoryEntry, HistoryQuery, Method, NewVersion, PoolUse, QueueStats, Queued,
    SearchHit, Statement, Store, StoreError, StoreResult, Tx, Version,
};
use crate::search::index::IndexEntries;
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
    /// joined was rolled back for another member, decision 0055), at most [`OWN_TRIES`] times.
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
        SqlTx::<B> {
            tx: Writer::unbegun(self.backend.clone(), self.group.as_ref()),
            queued: self.queued.clone(),
            queues: false,
            registry: false,
            pending: Pending::default(),
            locked: HashMap::new(),
        }
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
type Row<B> = <<B as Backend>::Db as Database>::Row;

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
async fn timed_rows<B: Backend>(
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

fn hits(rows: Vec<impl Columns>, sort: &[SortKey], contained: bool) -> StoreResult<Vec<SearchHit>> {
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

/// The most writes whose rows a transaction sends as one text of statements
/// (`Backend::JOINS_STATEMENTS`): a request's few writes (a resource and its Provenance, a
/// small Bundle). The text is prepared once and kept; larger batches vary too much in shape
/// for that, and send their statements one by one.
const JOINED_WRITES: usize = 8;

/// A write transaction on the database `B`.
pub(super) struct SqlTx<B: Backend> {
    tx: Writer<B>,
    queued: Arc<Notify>,
    /// Whether the transaction queued a patient for scoring.
    queues: bool,
    /// Whether it wrote a SearchParameter, a Basic or a definition the validator uses (what the
    /// other servers must reload).
    registry: bool,
    /// Its writes not yet sent (`store::pending`).
    pending: Pending,
    /// The current state of the resources `lock_all` locked, as it read them (`None`: no
    /// row), which their `lock_current` answers with; a resource's is dropped when the
    /// transaction writes it.
    locked: HashMap<(String, String), Option<Current>>,
}

impl<B: Backend> SqlTx<B> {
    /// The transaction's connection: the transaction begins (or joins the group) at its first
    /// statement.
    /// (A member's savepoint not opened yet is opened first, on its own.)
    async fn connection(&mut self) -> StoreResult<impl Executor<'_, Database = B::Db>> {
        self.tx.connection().await?;
        if let Some(lead) = self.tx.lead() {
            B::Db::query(lead)
                .execute(B::Db::connection(self.tx.connection().await?))
                .await?;
        }
        Ok(B::Db::connection(self.tx.connection().await?))
    }

    /// Begins the transaction (or joins the group) if it has not, and returns `sql` with the
    /// member's savepoint opened in front of it when that is still to be done
    /// (`Writer::lead`): one call instead of two. `None`: run `sql` as it is.
    async fn led(&mut self, sql: &Sql) -> StoreResult<Option<Sql>> {
        self.tx.connection().await?;
        Ok(self.tx.lead().and_then(|lead| {
            let mut first = Sql::new(B::DIALECT);
            first.push(lead);
            Sql::join(vec![first, sql.clone()])
        }))
    }

    /// The rows `sql` returns, run in the transaction (after the member's savepoint, in the
    /// same call, when that is still to be opened).
    pub(super) async fn fetch_all(&mut self, sql: &Sql) -> StoreResult<Vec<Row<B>>> {
        let led = self.led(sql).await?;
        Ok(B::Db::prepare(led.as_ref().unwrap_or(sql))
            .fetch_all(self.connection().await?)
            .await?)
    }

    /// Runs `statements` (none returning rows) in the transaction, in order: in one call
    /// where the backend takes several statements at once (`Backend::JOINS_STATEMENTS`) and
    /// `joined`, else one by one.
    async fn execute_all(&mut self, statements: Vec<Sql>, joined: bool) -> StoreResult<()> {
        if statements.is_empty() {
            return Ok(());
        }
        if B::JOINS_STATEMENTS && joined {
            let mut statements = statements;
            self.tx.connection().await?;
            if let Some(lead) = self.tx.lead() {
                let mut first = Sql::new(B::DIALECT);
                first.push(lead);
                statements.insert(0, first);
            }
            if let Some(statement) = Sql::join(statements) {
                B::Db::prepare(&statement)
                    .execute(self.connection().await?)
                    .await?;
            }
            return Ok(());
        }
        for Sql { text, binds, .. } in statements {
            B::Db::prepare_owned(&text, binds)
                .execute(self.connection().await?)
                .await?;
        }
        Ok(())
    }

    /// Runs `statements` in the transaction, in one call where the backend allows it.
    pub(super) async fn execute(&mut self, statements: Vec<Sql>) -> StoreResult<()> {
        self.execute_all(statements, true).await
    }

    /// The statements that replace the index entries of the resource rows `rids` by `rows`:
    /// their old rows removed from every index table, then the new ones inserted.
    fn replace_index(rids: &[i64], rows: &[sql::IndexRows<'_>]) -> Vec<Sql> {
        let mut statements = Vec::new();
        if !rids.is_empty() {
            for table in sql::INDEX_TABLES {
                statements.extend(sql::delete_index(B::DIALECT, table, rids));
            }
        }
        statements.extend(sql::insert_index(B::DIALECT, rows));
        statements
    }

    /// Sends the writes held (`store::pending`), in multi-row statements: the rows of the new
    /// resources (learning their row keys), the version rows in the order written, the outbox
    /// rows, the index rows (the old ones of updated resources removed first), and the patients
    /// the new resources queue for scoring.
    /// `last`: nothing follows before the commit, so the member's savepoint is released with
    /// these statements (`Writer::release`).
    async fn flush(&mut self, last: bool) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if last {
            // Begun by these statements (nothing was sent before): all it writes.
            self.tx.writes_once();
        }
        let Batch { mut writes, queue } = self.pending.take();
        let replaced: Vec<i64> = writes.iter().filter_map(|w| w.rid).collect();
        let created: Vec<NewVersion<'_>> = writes
            .iter()
            .filter(|w| w.rid.is_none())
            .map(Held::as_new)
            .collect();
        let mut rids: HashMap<(String, String), i64> = HashMap::with_capacity(created.len());
        for statement in sql::insert_resources(B::DIALECT, &created) {
            for row in self.fetch_all(&statement).await? {
                rids.insert((row.at(1)?, row.at(2)?), row.at(0)?);
            }
        }
        drop(created);
        for write in writes.iter_mut().filter(|w| w.rid.is_none()) {
            let key = (
                std::mem::take(&mut write.rtype),
                std::mem::take(&mut write.id),
            );
            write.rid = rids.remove(&key);
            (write.rtype, write.id) = key;
            if write.rid.is_none() {
                return Err(StoreError::Database(format!(
                    "the new row of {}/{} was not returned",
                    write.rtype, write.id
                )));
            }
        }
        // Everything else needs no answer: one call where the backend takes several
        // statements, for the few writes of a request (a large batch's statements are kept
        // apart, so that their texts, a few per table, stay prepared).
        let joined = writes.len() <= JOINED_WRITES;
        let versions: Vec<NewVersion<'_>> = writes.iter().map(Held::as_new).collect();
        let mut statements = sql::insert_versions(B::DIALECT, &versions);
        let events: Vec<NewVersion<'_>> = writes
            .iter()
            .filter(|w| w.event)
            .map(Held::as_new)
            .collect();
        statements.extend(super::subscription::insert_outbox(B::DIALECT, &events));
        let rows: Vec<sql::IndexRows<'_>> = writes
            .iter()
            .filter_map(|w| Some((w.rid?, w.rtype.as_str(), &w.index)))
            .collect();
        statements.extend(Self::replace_index(&replaced, &rows));
        for (patient, at) in queue {
            statements.push(sql::queue_patient(B::DIALECT, &patient, at));
        }
        if last {
            self.tx.connection().await?;
            if let Some(release) = self.tx.release() {
                let mut sql = Sql::new(B::DIALECT);
                sql.push(release);
                statements.push(sql);
            }
        }
        self.execute_all(statements, joined).await
    }
}

#[async_trait]
impl<B: Backend> Tx for SqlTx<B> {
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>> {
        if !self.locked.is_empty() {
            if let Some(current) = self.locked.get(&(rtype.to_owned(), id.to_owned())) {
                return Ok(*current);
            }
        }
        if self.pending.holds(rtype, id) {
            self.flush(false).await?;
        }
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT version, last_updated, deleted FROM resource WHERE rtype = ")
            .text(rtype)
            .push(" AND id = ")
            .text(id)
            .push(B::LOCK_ROW);
        let led = self.led(&sql).await?;
        let row = B::Db::prepare(led.as_ref().unwrap_or(&sql))
            .fetch_optional(self.connection().await?)
            .await?;
        Ok(row
            .map(|r| -> Result<Current, sqlx::Error> {
                Ok(Current {
                    version: r.at(0)?,
                    last_updated: r.at(1)?,
                    deleted: r.at(2)?,
                })
            })
            .transpose()?)
    }

    /// Also reads the current state of every row it locks (without a row lock clause the
    /// writer holds the database's lock already): the `lock_current` of these resources that
    /// follows answers from it, one statement for all of them instead of one each.
    async fn lock_all(&mut self, keys: &[(String, String)]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        // A new resource held here has no row yet: sent first, so that it is read.
        if keys.iter().any(|(rtype, id)| self.pending.holds(rtype, id)) {
            self.flush(false).await?;
        }
        let sql = sql::lock_rows(B::DIALECT, keys, B::LOCK_ROW);
        sql::check(&sql)?;
        let led = self.led(&sql).await?;
        // Kept prepared, as every statement: its text depends only on how many keys of each
        // type it has (an import's batches of one type share one).
        let rows = B::Db::prepare(led.as_ref().unwrap_or(&sql))
            .fetch_all(self.connection().await?)
            .await?;
        self.locked.reserve(keys.len());
        for key in keys {
            self.locked.insert(key.clone(), None);
        }
        for row in rows {
            let current = Current {
                version: row.at(2)?,
                last_updated: row.at(3)?,
                deleted: row.at(4)?,
            };
            self.locked.insert((row.at(0)?, row.at(1)?), Some(current));
        }
        Ok(())
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        if let Some(sql) = B::lock_key(key) {
            B::Db::prepare(&sql)
                .execute(self.connection().await?)
                .await?;
        }
        Ok(())
    }

    /// Under the request's time budget, as [`Store::search`] (a statement stopped by it
    /// leaves the transaction to be rolled back).
    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        self.flush(false).await?;
        let sql = sql::search(B::DIALECT, query);
        sql::check(&sql)?;
        let rows = match time_budget::current() {
            None => {
                B::Db::prepare(&sql)
                    .fetch_all(self.connection().await?)
                    .await?
            }
            Some(clock) => {
                let limit = clock.start()?;
                timed_rows::<B>(self.tx.connection().await?, &sql, &clock, &limit)
                    .await
                    .0?
            }
        };
        hits(rows, &query.sort, query.contained != Contained::False)
    }

    /// The resource row of an existing resource moves to the new version at once (its
    /// optimistic check decides now); everything else is held and sent in batches (`flush`).
    async fn write(&mut self, new: NewVersion<'_>, previous: Option<i64>) -> StoreResult<()> {
        if !self.locked.is_empty() {
            self.locked
                .remove(&(new.rtype.to_owned(), new.id.to_owned()));
        }
        if self.pending.holds(new.rtype, new.id) {
            self.flush(false).await?;
        }
        let rid = match previous {
            None => None,
            Some(previous) => {
                let row_sql = sql::update_resource(B::DIALECT, &new, previous);
                match B::Db::prepare(&row_sql)
                    .fetch_optional(self.connection().await?)
                    .await?
                {
                    Some(row) => Some(row.at(0)?),
                    None => {
                        return Err(StoreError::Conflict(format!(
                            "{}/{} was changed by a concurrent request",
                            new.rtype, new.id
                        )))
                    }
                }
            }
        };
        if matches!(new.rtype, "SearchParameter" | "Basic")
            || crate::fhir::canonical::DEFINITION_TYPES.contains(&new.rtype)
        {
            self.registry = true;
        }
        self.pending.push(&new, rid);
        if self.pending.is_full() {
            self.flush(false).await?;
        }
        Ok(())
    }

    async fn reindex(&mut self, rid: i64, index: &IndexEntries) -> StoreResult<()> {
        self.flush(false).await?;
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT rtype FROM resource WHERE rid = ").int(rid);
        let rtype: String = match B::Db::prepare(&sql)
            .fetch_optional(self.connection().await?)
            .await?
        {
            Some(row) => row.at(0)?,
            None => {
                return Err(StoreError::Database(format!(
                    "no resource row {rid} to reindex"
                )))
            }
        };
        // One by one: a reindex runs over many resources of many shapes.
        let statements = Self::replace_index(&[rid], &[(rid, &rtype, index)]);
        self.execute_all(statements, false).await
    }

    async fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> StoreResult<()> {
        self.queues = true;
        // A new resource held here has no row yet: its patient is queued with the batch.
        if self.pending.queue_compartment(rtype, id, at) {
            return Ok(());
        }
        let sql = sql::queue_compartment(B::DIALECT, rtype, id, at);
        B::Db::prepare(&sql)
            .execute(self.connection().await?)
            .await?;
        Ok(())
    }

    async fn settle_queued(
        &mut self,
        patient: &str,
        generation: i64,
        due: Option<i64>,
    ) -> StoreResult<()> {
        let settle = match due {
            None => sql::dequeue(B::DIALECT, patient, generation),
            Some(at) => sql::reschedule(B::DIALECT, patient, generation, at),
        };
        self.execute(vec![settle, sql::release(B::DIALECT, patient)])
            .await
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.flush(true).await?;
        // Delivered to the listening servers when (and only if) the transaction commits.
        if self.queues {
            if let Some(notify) = B::NOTIFY_QUEUED {
                B::Db::query(notify)
                    .execute(self.connection().await?)
                    .await?;
            }
        }
        if self.registry {
            if let Some(notify) = B::NOTIFY_REGISTRY {
                B::Db::query(notify)
                    .execute(self.connection().await?)
                    .await?;
            }
        }
        let SqlTx {
            tx, queued, queues, ..
        } = *self;
        tx.commit(queues, &queued).await
    }
}

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
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
