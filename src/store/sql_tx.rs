//! The write transaction of [`SqlStore`](super::sql_store::SqlStore): [`Tx`] for every
//! [`Backend`], begun (or joining the group commit, `store::group_commit`) at its first
//! statement, its writes held and sent in batches (`store::pending`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Executor;
use tokio::sync::Notify;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::group_commit::Writer;
use super::pending::{Batch, Held, Pending};
use super::sql::{self, Sql};
use super::sql_store::{hits, timed_rows, Row};
use super::time_budget;
use super::{Current, NewVersion, SearchHit, StoreError, StoreResult, Tx};
use crate::search::index::IndexEntries;
use crate::search::query::{Contained, SearchQuery};

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
    /// A transaction on `tx` (not begun yet); `queued` is woken when its commit queued a
    /// patient for scoring.
    pub(super) fn new(tx: Writer<B>, queued: Arc<Notify>) -> Self {
        SqlTx {
            tx,
            queued,
            queues: false,
            registry: false,
            pending: Pending::default(),
            locked: HashMap::new(),
        }
    }

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
        Ok(row.map(|r| current_at(&r, 0)).transpose()?)
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
            let current = current_at(&row, 2)?;
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

/// A resource row's current state from its columns `version, last_updated, deleted`, the first
/// at `offset`.
fn current_at(row: &impl Columns, offset: usize) -> Result<Current, sqlx::Error> {
    Ok(Current {
        version: row.at(offset)?,
        last_updated: row.at(offset + 1)?,
        deleted: row.at(offset + 2)?,
    })
}
