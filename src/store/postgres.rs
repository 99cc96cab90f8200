//! The production store: PostgreSQL.
//!
//! Writers lock the resource row they change (`SELECT … FOR UPDATE`) so concurrent updates queue
//! instead of losing a version; conditional interactions take a transaction-scoped advisory lock
//! on their criteria so racing conditional creates make exactly one resource.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row, Transaction};

use super::backend::{pool_options, Backend};
use super::sql::{Dialect, Sql};
use super::sql_store::SqlStore;
use super::time_budget::Limit;
use super::{StoreError, StoreResult};

pub type PostgresStore = SqlStore<Postgres>;

/// A PostgreSQL database: one pool for reads and writes.
pub struct Postgres {
    pool: PgPool,
    /// The scoring queue's `LISTEN` task.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[async_trait]
impl Backend for Postgres {
    type Db = sqlx::Postgres;
    const DIALECT: Dialect = Dialect::Postgres;
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const NOTIFY_QUEUED: Option<&'static str> = Some("NOTIFY signaal_scoring_queue");
    const NOTIFY_REGISTRY: Option<&'static str> = Some("NOTIFY signaal_registry");

    async fn open(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        // Statements are prepared once per connection and reused. After five runs PostgreSQL
        // may switch a prepared search to a generic plan that ignores the values, and for a
        // search by one patient among thousands such a plan reads far too much: plan each run
        // with its values instead (planning these statements costs well under a millisecond).
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        // Room for the multi-row INSERT texts of the writes (`sql::write`) beside the searches.
        let options = options.statement_cache_capacity(256);
        let pool = pool_options::<sqlx::Postgres>()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            // A statement whose request went away is stopped by closing its connection
            // (`store::time_budget`); from PostgreSQL 14 on, the server checks for that while
            // the statement runs, and stops it within a second.
            .after_connect(|connection, _| {
                Box::pin(async move {
                    if connection
                        .server_version_num()
                        .is_some_and(|v| v >= 140_000)
                    {
                        sqlx::query("SET client_connection_check_interval = 1000")
                            .execute(connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Postgres {
            pool,
            listener: Default::default(),
        })
    }

    /// A task holding one connection that `LISTEN`s for the scoring queue and the registry; it
    /// reconnects after a lost connection (waking both once, in case a notification was
    /// missed) and ends when the store is dropped or closed.
    async fn listen(
        &self,
        queued: std::sync::Weak<tokio::sync::Notify>,
        registry: std::sync::Weak<tokio::sync::Notify>,
    ) {
        let pool = self.pool.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "scoring queue: LISTEN not connected; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let channels = ["signaal_scoring_queue", "signaal_registry"];
                if let Err(e) = listener.listen_all(channels).await {
                    tracing::debug!(error = %e, "scoring queue: LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    // `None`: the connection was lost; the listener reconnects (and listens
                    // again) on the next call. Wake the worker then too: a notification may
                    // have been missed.
                    let received = listener.try_recv().await;
                    let (Some(queued), Some(registry)) = (queued.upgrade(), registry.upgrade())
                    else {
                        return;
                    };
                    match &received {
                        Ok(Some(n)) if n.channel() == "signaal_registry" => registry.notify_one(),
                        Ok(Some(_)) => queued.notify_one(),
                        _ => {
                            queued.notify_one();
                            registry.notify_one();
                        }
                    }
                    if let Err(e) = received {
                        tracing::debug!(error = %e, "scoring queue: LISTEN lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        });
        // Ended before the pool closes: it holds one of the pool's connections.
        *self.listener.lock().expect("listener lock") = Some(task);
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A transaction-scoped advisory lock on the key's 64-bit hash.
    fn lock_key(key: &str) -> Option<Sql> {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("SELECT pg_advisory_xact_lock(hashtextextended(")
            .text(key)
            .push(", 0))");
        Some(sql)
    }

    /// `statement_timeout`, in whole milliseconds (rounded up): set for the session, or for
    /// the rest of a write transaction, which undoes it when it rolls back.
    async fn arm(connection: &mut PgConnection, limit: &Limit) -> Result<(), sqlx::Error> {
        let ms = limit.left.as_micros().div_ceil(1000).max(1);
        sqlx::query("SELECT set_config('statement_timeout', $1, false)")
            .bind(ms.to_string())
            .execute(connection)
            .await?;
        Ok(())
    }

    async fn disarm(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("RESET statement_timeout")
            .execute(connection)
            .await?;
        Ok(())
    }

    /// query_canceled (statement_timeout).
    fn stopped(error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
    }

    /// `EXPLAIN` rows: one line of text each.
    fn plan(rows: &[PgRow]) -> Result<Vec<String>, sqlx::Error> {
        rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
    }

    async fn close(&self) {
        let task = self.listener.lock().expect("listener lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.pool.close().await;
    }
}
