//! Storage: one trait, one implementation ([`sql_store::SqlStore`]) over a small per-database
//! [`backend::Backend`] (`sqlite.rs`, `postgres.rs`).
//!
//! The store knows rows, versions, index entries and transactions; it knows nothing of FHIR's
//! rules (which status code a conflict gets, what `If-Match` means). Interactions open a
//! [`Tx`], lock the resource they write, decide, write a version and commit, so every check and
//! its write happen atomically on both databases.
//!
//! Resource content is stored as the client's JSON text without `meta.versionId` and
//! `meta.lastUpdated`; those live in columns and are stamped back on when read, so the version
//! number can be decided inside the transaction without rewriting the body.

use async_trait::async_trait;

use crate::search::index::IndexEntries;
use crate::search::query::{Cursor, KeyValue, SearchQuery};

pub mod audit;
pub mod auth;
pub mod backend;
pub mod group_commit;
pub mod jobs;
pub mod pending;
pub mod postgres;
pub mod size;
pub mod sql;
pub mod sql_store;
mod sql_tx;
pub mod sqlite;
mod sqlite_checkpoint;
mod sqlite_read;
mod sqlite_wal_buffer;
pub mod subscription;
pub mod time_budget;
pub mod users;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A concurrent writer won (unique key or optimistic version check). Retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// The work was already done by another server's worker (an outbox entry handled by
    /// another subscription worker): unlike a [`StoreError::Conflict`], trying again cannot
    /// succeed.
    #[error("{0}")]
    HandledElsewhere(String),
    #[error("{0}")]
    Unavailable(String),
    /// The query would bind more values than the database takes in one statement.
    #[error("{0}")]
    TooComplex(String),
    /// The request's searches ran out of their time budget (`store::time_budget`).
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Database(String),
    /// The access token does not allow this (the authorization guard of `auth::guard`).
    #[error("{0}")]
    Forbidden(String),
    /// The access token may not create `Type/id` with a client-assigned id (update-as-create):
    /// the guard's answer for any id the token cannot see, so it reveals nothing (405).
    #[error("{0} cannot be created with a client-assigned id")]
    ClientIdNotAllowed(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("a concurrent request wrote the same resource".into())
            }
            // PostgreSQL deadlock_detected and serialization_failure: transactions that lock
            // several resources in different orders; retrying the loser succeeds.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                StoreError::Conflict("a concurrent transaction locked the same resources".into())
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable("the database is busy; try again".into())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {err}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How a version came to be: the HTTP verb of the interaction that wrote it (`Bundle.entry.request.method`
/// in a history bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => Method::Put,
        }
    }
}

/// The scoring queue at a moment (`Store::queue_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Patients the worker may score now.
    pub due: i64,
    /// Patients waiting for a retry's backoff or a time stamped later.
    pub waiting: i64,
    /// Patients parked after too many failed attempts.
    pub parked: i64,
    /// When the longest-waiting due patient was queued (ms), if any is due.
    pub oldest_due_queued_at: Option<i64>,
}

/// How one connection pool of a store is used now (`Store::pools`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// `reader`, `writer`, or `main` for a pool that does both.
    pub name: &'static str,
    /// Connections open, in use or idle.
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// A patient in the scoring queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub patient: String,
    /// Goes up each time the patient is queued again (see `Store::dequeue`).
    pub generation: i64,
    /// Failed scoring attempts since the patient was queued.
    pub attempts: i64,
    /// When the worker may try it (ms); `None`: parked after too many failures.
    pub next_attempt_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    /// Milliseconds since the Unix epoch, UTC.
    pub last_updated: i64,
    pub method: Method,
    /// JSON text without `meta.versionId`/`meta.lastUpdated`; `None` for a deletion.
    pub content: Option<String>,
}

impl Version {
    pub fn deleted(&self) -> bool {
        self.content.is_none()
    }
}

/// The current state of a resource as seen under the writer's lock.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
}

/// A version to be written.
pub struct NewVersion<'a> {
    pub rtype: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated: i64,
    pub method: Method,
    pub content: Option<&'a str>,
    /// The id of the Patient whose compartment holds the resource (sharding key), if any.
    pub compartment: Option<&'a str>,
    pub index: &'a IndexEntries,
    /// Whether the write goes to the subscription outbox in the same transaction
    /// (`write::outbox`), and who wrote it (the writer's `meta.source`).
    pub event: bool,
    pub source: Option<&'a str>,
}

/// What a history interaction asks for, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub rtype: Option<String>,
    pub id: Option<String>,
    /// Only versions written at or after this instant (ms).
    pub since: Option<i64>,
    /// Only versions that were current at some time within [start, end) (ms).
    pub at: Option<(i64, i64)>,
    /// Keyset cursor: only versions older than this sequence number.
    pub before_seq: Option<i64>,
    /// Keyset cursor for the previous page: only versions newer than this sequence number.
    pub after_seq: Option<i64>,
    pub count: usize,
    /// Only versions in this Patient's compartment (patient-bound access tokens).
    pub compartment: Option<String>,
}

/// A history row: the version and its position in the global write order.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: i64,
    pub version: Version,
}

/// A search hit: the current version and its row key (the keyset cursor of search paging).
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub rid: i64,
    pub version: Version,
    /// The hit's sort key values, for the cursor of the next or previous page.
    pub keys: Vec<KeyValue>,
    /// In a search with `_contained=true|both`: the position of the matching contained
    /// resource in `version`'s `contained`, or `query::HIT_RESOURCE` / `HIT_CONTAINER`.
    pub contained: Option<i64>,
}

/// One statement a search runs, named so that the store can explain its query plan
/// (`signaal bench --explain`): the same SQL as the real call, with the same arguments.
#[derive(Debug, Clone, Copy)]
pub enum Statement<'a> {
    /// [`Store::search`].
    Search(&'a SearchQuery),
    /// [`Store::count`].
    Count(&'a SearchQuery),
    /// [`Store::lastn`].
    Lastn {
        query: &'a SearchQuery,
        max: usize,
        limit: usize,
    },
    /// [`Store::include_targets`].
    IncludeTargets {
        rids: &'a [i64],
        params: Option<&'a [String]>,
        target_type: Option<&'a str>,
    },
    /// [`Store::read_current`].
    ReadCurrent(&'a [(String, String)]),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Opens a write transaction. Dropping it without `commit` rolls it back.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// The newest version, including a deletion marker.
    async fn read(&self, rtype: &str, id: &str) -> StoreResult<Option<Version>>;
    async fn vread(&self, rtype: &str, id: &str, version: i64) -> StoreResult<Option<Version>>;
    async fn history(&self, query: &HistoryQuery) -> StoreResult<Vec<HistoryEntry>>;
    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>>;
    async fn count(&self, query: &SearchQuery) -> StoreResult<u64>;
    /// `(type, id)` of the resources that rows `rids` reference through `params` (every
    /// reference parameter when `None`), optionally of one type only.
    async fn include_targets(
        &self,
        rids: &[i64],
        params: Option<&[String]>,
        target_type: Option<&str>,
    ) -> StoreResult<Vec<(String, String)>>;
    /// `$lastn`: the `max` newest matches per code (see `sql::lastn`), at most `limit + 1`.
    async fn lastn(
        &self,
        query: &SearchQuery,
        max: usize,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>>;
    /// The current versions of the resources `keys`, leaving out deleted and unknown ones.
    async fn read_current(&self, keys: &[(String, String)]) -> StoreResult<Vec<SearchHit>>;
    /// The current versions of the resources of `types` in a Patient's compartment (the
    /// scorer's input, the worklist's Flags): only what the caller reads, not the whole record.
    async fn compartment(&self, patient: &str, types: &[&str]) -> StoreResult<Vec<Version>>;
    /// The ids of every patient with a non-empty compartment.
    async fn compartments(&self) -> StoreResult<Vec<String>>;
    /// The oldest `limit` patients in the scoring queue that are due at `now` (neither waiting
    /// for a retry nor parked).
    async fn queued(&self, limit: usize, now: i64) -> StoreResult<Vec<Queued>>;
    /// Takes, or renews, the worker lease `name` for `holder` until `until` (ms): true when
    /// `holder` has it now (nobody else held it, or its holder let it lapse by `now`). Work one
    /// server does for all the servers on a database (the subscription worker) runs only while
    /// its server holds the lease.
    async fn take_lease(&self, name: &str, holder: &str, now: i64, until: i64)
        -> StoreResult<bool>;
    /// Gives up the lease `name`, if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
    /// Claims for this server, until `until` (ms), up to `limit` of the oldest patients due at
    /// `now` that no server holds (see `sql::claim`): servers on one database never score the
    /// same patient at once. `dequeue`, `reschedule` and `defer` end the claim; a claim whose
    /// server died lapses at `until`.
    async fn claim(&self, limit: usize, now: i64, until: i64) -> StoreResult<Vec<Queued>>;
    /// Records a failed scoring attempt: one more attempt, `error`, and the next attempt at
    /// `retry_at` (`None`: parked), unless the patient was queued again since `generation`
    /// (new data: it stays due).
    async fn defer(
        &self,
        patient: &str,
        generation: i64,
        retry_at: Option<i64>,
        error: &str,
    ) -> StoreResult<()>;
    /// The queued patients whose last scoring attempt failed (waiting for a retry or parked).
    async fn scoring_failures(&self) -> StoreResult<Vec<Queued>>;
    /// Takes a scored patient off the queue unless it was queued again since `generation`.
    async fn dequeue(&self, patient: &str, generation: i64) -> StoreResult<()>;
    /// Keeps a scored patient queued but due only at `at` (a measurement stamped for then),
    /// unless it was queued again since `generation` (new data: it stays due).
    async fn reschedule(&self, patient: &str, generation: i64, at: i64) -> StoreResult<()>;
    /// Settles scored patients together, each as [`Store::dequeue`] (`due` `None`) or
    /// [`Store::reschedule`] (`due` the instant) would: `(patient, generation, due)`. Where the
    /// database has one writer (SQLite) in one transaction; where rows are locked (PostgreSQL)
    /// each in a transaction of its own, which holds one row lock and so cannot take part in a
    /// deadlock with a client's write that queues several patients in another order.
    async fn settle_scored(&self, scored: &[(String, i64, Option<i64>)]) -> StoreResult<()>;
    /// Queues a patient for re-scoring outside any write (`signaal score`, the daily run).
    async fn queue_patient(&self, patient: &str, at: i64) -> StoreResult<()>;
    /// The database's query plan of `statement`, one line per plan node (SQLite
    /// `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN`), to check that searches stay on indexes.
    async fn explain(&self, statement: Statement<'_>) -> StoreResult<Vec<String>>;
    /// Whether the caller may run `$reindex`, asked before a run starts (an asynchronous one
    /// runs as the server, so the caller's grant must be checked up front). Anyone may on an
    /// open server; the authorization guard says otherwise.
    async fn may_reindex(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Notified when a committed write (or [`Store::queue_patient`]) queued a patient for
    /// scoring, so the scoring worker need not poll: by this server's commits, and on
    /// PostgreSQL by every server's on the database (`LISTEN`/`NOTIFY`). `None`: poll.
    fn queue_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Notified when another server's commit on the same database wrote a SearchParameter, a
    /// Basic or a definition the validator uses (PostgreSQL `LISTEN`/`NOTIFY`), so that every
    /// server reloads its search parameters, subscription topics and stored definitions.
    /// `None`: only one server uses the database.
    fn registry_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Checks that the database answers (for `/health`).
    async fn ping(&self) -> StoreResult<()>;
    /// The scoring queue at `now`, for `/metrics`. Only the database stores keep one.
    async fn queue_stats(&self, _now: i64) -> StoreResult<QueueStats> {
        Err(StoreError::Unavailable(
            "this store keeps no scoring queue".into(),
        ))
    }
    /// How the connection pools are used now, for `/metrics` (none outside the database stores).
    fn pools(&self) -> Vec<PoolUse> {
        Vec::new()
    }
    /// Closes connections, waiting for in-flight work.
    async fn close(&self);
}

#[async_trait]
pub trait Tx: Send {
    /// The current version of a resource, locked against other writers until commit.
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>>;
    /// Locks the resources `keys` (type, id) against other writers until commit, all at once
    /// and in one global order (type, then id), before a transaction that writes several of
    /// them decides anything: two such transactions then queue instead of deadlocking. Unknown
    /// keys lock nothing. Their current state is read with the locks, in the same statement,
    /// and kept for the `lock_current` of each that follows (one statement for all instead of
    /// one each); nothing is returned (so it reveals nothing to a guarded writer).
    async fn lock_all(&mut self, keys: &[(String, String)]) -> StoreResult<()>;
    /// Serialises transactions that use the same key until commit (conditional interactions
    /// with the same criteria), so that racing conditional creates make exactly one resource.
    async fn lock_key(&mut self, key: &str) -> StoreResult<()>;
    /// Search inside the transaction (conditional interactions), seeing its own writes.
    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>>;
    /// Writes a version. `previous` is the version it replaces (`None` for a new resource);
    /// a concurrent change since `lock_current` yields `StoreError::Conflict`.
    async fn write(&mut self, new: NewVersion<'_>, previous: Option<i64>) -> StoreResult<()>;
    /// Replaces the index entries of row `rid`, leaving the resource as it is (`$reindex`).
    async fn reindex(&mut self, rid: i64, index: &IndexEntries) -> StoreResult<()>;
    /// Whether the writer may `method` resources of `rtype` at all, asked by an interaction
    /// before it looks anything up, so that the answer depends on who asks and never on what
    /// exists. Stores allow everything; the authorization guard decides from the access token.
    async fn may_write(&mut self, _rtype: &str, _method: Method) -> StoreResult<()> {
        Ok(())
    }
    /// Queues for re-scoring the Patient whose compartment holds `rtype/id` as its row stands
    /// in this transaction (see `sql::queue_compartment`), committed or rolled back with it.
    async fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> StoreResult<()>;
    /// Settles a scored patient's entry in the scoring queue with this transaction (the
    /// scorer's, which writes what the scoring changed): off the queue (`due` `None`, as
    /// [`Store::dequeue`]) or kept for `due` (as [`Store::reschedule`]), unless it was queued
    /// again since `generation`; the server's claim on it ends. Only the database stores keep
    /// a queue.
    async fn settle_queued(
        &mut self,
        _patient: &str,
        _generation: i64,
        _due: Option<i64>,
    ) -> StoreResult<()> {
        Err(StoreError::Unavailable(
            "this transaction keeps no scoring queue".into(),
        ))
    }
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    /// The URI of the client writing in this transaction, recorded as `meta.source` of what it
    /// writes (set by `auth::provenance::traced` for a client's grant; `None` for the anonymous
    /// writes of an open server and for the scorer).
    fn source(&self) -> Option<&str> {
        None
    }
}

/// The current version of every resource `query` matches, read a page at a time in row order
/// with a keyset cursor (decision 0009): for work that needs all of them at once (loading the
/// stored SearchParameters or conformance resources). `query` is unsorted; its count and
/// cursors are this function's.
pub async fn search_all(store: &dyn Store, mut query: SearchQuery) -> StoreResult<Vec<Version>> {
    /// Rows read per query.
    const PAGE: usize = 500;
    query.count = PAGE;
    query.after = None;
    query.before = None;
    let mut all = Vec::new();
    loop {
        let mut hits = store.search(&query).await?;
        let more = hits.len() > PAGE;
        hits.truncate(PAGE);
        query.after = match hits.last() {
            Some(last) if more => Some(Cursor {
                keys: Vec::new(),
                rid: last.rid,
            }),
            _ => None,
        };
        all.extend(hits.into_iter().map(|hit| hit.version));
        if query.after.is_none() {
            return Ok(all);
        }
    }
}

/// Opens the store named by a database URL (`sqlite://PATH` or `postgres://…`) and migrates it.
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(open_with_auth(url).await?.0)
}

/// What a server opens: the store, its authorization tables, its subscription tables (outbox,
/// events) and its jobs.
pub type Opened = (
    std::sync::Arc<dyn Store>,
    std::sync::Arc<dyn auth::AuthStore>,
    std::sync::Arc<dyn subscription::SubscriptionStore>,
    std::sync::Arc<dyn jobs::JobStore>,
);

/// Opens the store, its authorization tables (clients, assertion ids, signing secret), its
/// subscription tables and its jobs (`crate::jobs`).
pub async fn open_all(url: &str) -> StoreResult<Opened> {
    if url.starts_with("sqlite:") {
        let store = std::sync::Arc::new(sqlite::SqliteStore::open(url).await?);
        Ok((store.clone(), store.clone(), store.clone(), store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = std::sync::Arc::new(postgres::PostgresStore::open(url).await?);
        Ok((store.clone(), store.clone(), store.clone(), store))
    } else {
        Err(unsupported(url))
    }
}

fn unsupported(url: &str) -> StoreError {
    StoreError::Database(format!(
        "unsupported database URL scheme '{}': use sqlite://PATH or postgres://…",
        url.split(':').next().unwrap_or("")
    ))
}

/// Opens the store and its authorization tables (clients, assertion ids, signing secret).
pub async fn open_with_auth(
    url: &str,
) -> StoreResult<(
    std::sync::Arc<dyn Store>,
    std::sync::Arc<dyn auth::AuthStore>,
)> {
    let (store, auth, _, _) = open_all(url).await?;
    Ok((store, auth))
}

/// A directory of its own under the system's temporary directory (named for `purpose`, the
/// process and the time) and the URL of a new SQLite database in it, for the unit tests that
/// need a store (they remove the directory when done).
#[cfg(test)]
pub fn scratch_sqlite(purpose: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "signaal-{purpose}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("s.db").display());
    (dir, url)
}
