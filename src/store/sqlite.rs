//! The embedded store: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection
//! and start with `BEGIN IMMEDIATE` (no lock upgrades, no `SQLITE_BUSY` between our own
//! writers); reads use a separate pool and run concurrently with the writer thanks to WAL.
//! `synchronous=FULL` makes every acknowledged commit survive a crash of the process or of the
//! machine.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool, Transaction};

use super::backend::{pool_options, Backend};
use super::sql::{Dialect, Sql};
use super::sql_store::SqlStore;
use super::sqlite_checkpoint::Checkpoints;
use super::sqlite_read::DirectReader;
use super::sqlite_wal_buffer;
use super::time_budget::Limit;
use super::{StoreError, StoreResult, Version};

pub type SqliteStore = SqlStore<Sqlite>;

/// A SQLite database: its one-connection writer pool and its read-only reader pool.
pub struct Sqlite {
    reader: SqlitePool,
    writer: SqlitePool,
    /// Reads by id, without the pool's connection threads (`store::sqlite_read`).
    direct: Option<DirectReader>,
    /// The connection that checkpoints the write-ahead log beside the writer
    /// (`store::sqlite_checkpoint`), and what wakes it.
    checkpointer: SqlitePool,
    checkpoints: Arc<Checkpoints>,
}

#[async_trait]
impl Backend for Sqlite {
    type Db = sqlx::Sqlite;
    const DIALECT: Dialect = Dialect::Sqlite;
    // The writer holds SQLite's write lock since BEGIN IMMEDIATE: reading is locking.
    const LOCK_ROW: &'static str = "";
    // One writer, one fsync per commit: commits are grouped.
    const GROUP_COMMIT: bool = true;
    // Each statement is a round trip to the connection's thread; several go in one.
    const JOINS_STATEMENTS: bool = true;

    async fn open(url: &str) -> StoreResult<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Database(
                "an in-memory SQLite database cannot be shared by the reader and writer pools; \
                 use a file"
                    .into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            // Statement journals (SQLite keeps one to undo a multi-row write inside a
            // transaction), savepoint journals and sorts stay in memory, not in temp files.
            .pragma("temp_store", "memory")
            // Checkpoint after about 16 MB of WAL instead of 4 MB: the hot index pages that
            // many commits rewrite are copied back once per checkpoint. (The writer leaves its
            // checkpoints to `store::sqlite_checkpoint`; this holds where that hook is not set.)
            .pragma("wal_autocheckpoint", "4000");
        // The writer's log frames of a commit reach the file in a few large writes
        // (`store::sqlite_wal_buffer`), written out before the commit ends at any
        // `synchronous` level.
        let wal_buffer = sqlite_wal_buffer::register().map_err(|code| {
            StoreError::Database(format!(
                "the SQLite VFS that buffers the writer's log could not be registered ({code})"
            ))
        })?;
        let checkpoints = Checkpoints::new();
        let watching = checkpoints.clone();
        let writer = pool_options::<sqlx::Sqlite>()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // No test query before each use (a round trip to the connection's thread, once per
            // group of writes): a file does not go away as a network peer does (0046, 0055).
            .test_before_acquire(false)
            // A search of a write transaction dropped while it ran (its request went away)
            // leaves its progress handler behind: the next writer starts without it. (A
            // reader connection in that case is closed instead.)
            //
            // A connection whose transaction sqlx still counts as open is closed, not reused:
            // when SQLite itself fails a COMMIT (disk full, I/O error) it rolls the transaction
            // back on its own, the ROLLBACK sqlx then sends fails, and its count stays at one,
            // so every later `BEGIN IMMEDIATE` would be refused. (Checked after `disarm`, which
            // waits for the connection's thread: a rollback queued when the transaction was
            // dropped has run by then.)
            .before_acquire(|connection, _| {
                Box::pin(async move {
                    Self::disarm(connection).await?;
                    if sqlx::Connection::is_in_transaction(connection) {
                        tracing::warn!(
                            "the writer's connection was left inside a transaction that could \
                             not be ended; it is closed and a new one opened"
                        );
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            // Its commits wake the checkpointer instead of checkpointing themselves.
            .after_connect(move |connection, _| {
                let watching = watching.clone();
                Box::pin(async move { watching.watch(connection).await })
            })
            // The writer's page cache holds the index pages a write touches (64 MiB instead of
            // SQLite's 2 MiB): a smaller cache spills dirty pages mid-transaction and re-reads
            // index pages for every insert.
            // Its statement cache keeps every multi-row INSERT text (`sql::write`) prepared.
            .connect_with(
                options
                    .clone()
                    .vfs(wal_buffer)
                    .pragma("cache_size", "-65536")
                    .statement_cache_capacity(512),
            )
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let checkpointer = pool_options::<sqlx::Sqlite>()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        checkpoints.start(checkpointer.clone());
        let direct = DirectReader::new(options.get_filename());
        let reader = pool_options::<sqlx::Sqlite>()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // No test query before each use: on SQLite it is one more round trip to the
            // connection's thread, and a file does not go away as a network peer does.
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Sqlite {
            reader,
            writer,
            direct,
            checkpointer,
            checkpoints,
        })
    }

    fn read_now(&self, rtype: &str, id: &str, version: Option<i64>) -> Option<Option<Version>> {
        self.direct.as_ref()?.read(rtype, id, version)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    fn lock_key(_key: &str) -> Option<Sql> {
        // Writers are already serialised by BEGIN IMMEDIATE.
        None
    }

    /// A progress handler, asked every thousand virtual machine steps, interrupts the
    /// statement once its time is up or its request went away.
    async fn arm(connection: &mut SqliteConnection, limit: &Limit) -> Result<(), sqlx::Error> {
        connection
            .lock_handle()
            .await?
            .set_progress_handler(1_000, limit.check());
        Ok(())
    }

    async fn disarm(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        connection.lock_handle().await?.remove_progress_handler();
        Ok(())
    }

    /// SQLITE_INTERRUPT.
    fn stopped(error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("9"))
    }

    /// `EXPLAIN QUERY PLAN` rows (id, parent, notused, detail) come in tree order; a node is
    /// indented one step deeper than its parent.
    fn plan(rows: &[SqliteRow]) -> Result<Vec<String>, sqlx::Error> {
        let mut depth: HashMap<i64, usize> = HashMap::new();
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                let parent: i64 = row.try_get(1)?;
                let detail: String = row.try_get(3)?;
                let d = depth.get(&parent).map_or(0, |d| d + 1);
                depth.insert(id, d);
                Ok(format!("{}{detail}", "  ".repeat(d)))
            })
            .collect()
    }

    /// Closes the readers first, then checkpoints the write-ahead log into the database and
    /// closes the writer: the last connection to close removes the `-wal` and `-shm` files,
    /// which a read-only connection cannot, so a stopped server leaves only the database file.
    async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.reader.close().await;
        self.checkpointer.close().await;
        self.checkpoints.wake();
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %e, "closing: the write-ahead log could not be checkpointed");
        }
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite rolls a transaction back by itself when its COMMIT fails for a full disk or an
    /// I/O error; a `ROLLBACK` inside the transaction leaves the connection in the same state.
    #[tokio::test]
    async fn a_transaction_that_sqlite_ended_by_itself_does_not_stop_later_writes() {
        let (dir, url) = crate::store::scratch_sqlite("sqlite-ended");
        let store = Sqlite::open(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
        assert!(tx.commit().await.is_err(), "the transaction is gone");
        for _ in 0..2 {
            let mut tx = store.begin().await.expect("a later write begins");
            sqlx::query("CREATE TABLE IF NOT EXISTS later (x INTEGER)")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("INSERT INTO later VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.expect("and commits");
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM later")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(n, 2);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
