//! The audit log: one compact row per request (`audit_log`), appended in batches by the audit
//! writer (`auth::audit`) and read back as AuditEvent resources. It never goes through the
//! resource tables or the resource writer.
//!
//! On SQLite the log is a database file of its own beside the resource database
//! (`{path}-audit`), with its own one-connection writer: audit writes never wait for the
//! resource writer and the other way round. On PostgreSQL it is a table partitioned by day in
//! the same database, on a small pool of its own; retention drops whole days.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::Pool;

use super::backend::{pool_options, Column, Columns, Sqlx};
use super::sql::{Dialect, Sql};
use super::{StoreError, StoreResult};

/// Who made a request, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A client with an access token (`AuditEntry::client`).
    Client = 0,
    /// Anyone, on an open server.
    Anonymous = 1,
    /// A request without a valid access token (refused, or the public CapabilityStatement).
    Unauthenticated = 2,
}

/// What kind of event a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A request to the FHIR API (audit-event-type `rest`).
    Rest = 0,
    /// A request to the token endpoint (DICOM 110114 User Authentication, subtype Login).
    Login = 1,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The row's position in the log (0 before it is written).
    pub seq: i64,
    /// When the request came in (ms).
    pub recorded: i64,
    pub event: EventKind,
    pub actor: Actor,
    /// The HTTP status answered.
    pub status: i64,
    /// AuditEvent.action: C, R, U, D or E.
    pub action: String,
    pub method: String,
    /// The restful-interaction code (`AuditEvent.subtype`) of a REST request.
    pub interaction: Option<String>,
    /// The client: its id, or `{issuer}|{id}` for a client of a trusted issuer.
    pub client: Option<String>,
    /// The Patient the request was bound to or named.
    pub patient: Option<String>,
    /// `Type/id` of the resource named by the path, unless it is `Patient/{patient}`.
    pub entity: Option<String>,
    /// The path below the FHIR base, when `entity` (or the patient) does not tell it.
    pub path: Option<String>,
    pub query: Option<String>,
    pub request_id: Option<String>,
    /// Why a token request was refused.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// The id the entry is served under as an AuditEvent: `{recorded}-{seq}`, so that a read
    /// finds the row (and on PostgreSQL its day's partition) by index.
    pub fn id(&self) -> String {
        format!("{}-{}", self.recorded, self.seq)
    }

    /// The `(recorded, seq)` of an AuditEvent id; `None` for an id the log never made.
    pub fn parse_id(id: &str) -> Option<(i64, i64)> {
        let (recorded, seq) = id.split_once('-')?;
        Some((recorded.parse().ok()?, seq.parse().ok()?))
    }
}

/// A comparison of `recorded` with an instant (the `date` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Ge,
}

/// One condition of a log search; the conditions of a search are AND-ed, the values within
/// one are OR-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditFilter {
    Recorded(Cmp, i64),
    Client(Vec<String>),
    /// Events about these Patients: bound to them, or naming `Patient/{id}`.
    Patient(Vec<String>),
    /// Events naming these `Type/id` (a `Patient/{id}` also matches events bound to it).
    Entity(Vec<String>),
    /// Status ranges `[lo, hi)`.
    Status(Vec<(i64, i64)>),
    Event(Vec<EventKind>),
    Interaction(Vec<String>),
    Action(Vec<String>),
    /// A value nothing in the log can have (a code of another system).
    Nothing,
}

/// A search of the log: newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filters: Vec<AuditFilter>,
    /// The page size; one more row is read to tell whether there is a next page.
    pub count: usize,
    /// Only rows older than this `(recorded, seq)` (the cursor of the next page).
    pub before: Option<(i64, i64)>,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends entries in one transaction, numbering them (`seq`).
    async fn append(&self, entries: &mut [AuditEntry]) -> StoreResult<()>;
    /// The entry `(recorded, seq)`.
    async fn get(&self, recorded: i64, seq: i64) -> StoreResult<Option<AuditEntry>>;
    /// At most `count + 1` entries matching the query, newest first.
    async fn search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
    /// Removes every entry recorded before `cutoff` (ms).
    async fn forget_before(&self, cutoff: i64) -> StoreResult<()>;
    /// Closes the log's connections.
    async fn close(&self);
}

/// Opens the audit log of the database named by `url` (see the module documentation).
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn AuditLog>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(open_sqlite(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(open_postgres(url).await?))
    } else {
        Err(StoreError::Database(format!(
            "unsupported database URL scheme '{}': use sqlite://PATH or postgres://…",
            url.split(':').next().unwrap_or("")
        )))
    }
}

/// The SQLite URL of the audit file beside the database of `url`: `{path}-audit`, with the
/// same query options.
pub fn sqlite_audit_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, options)) => format!("{path}-audit?{options}"),
        None => format!("{url}-audit"),
    }
}

async fn open_sqlite(url: &str) -> StoreResult<SqlAuditLog<sqlx::Sqlite>> {
    let options = SqliteConnectOptions::from_str(&sqlite_audit_url(url))
        .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let writer = pool_options::<sqlx::Sqlite>()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("migrations/sqlite-audit")
        .run(&writer)
        .await?;
    let reader = pool_options::<sqlx::Sqlite>()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.read_only(true))
        .await?;
    Ok(SqlAuditLog {
        dialect: Dialect::Sqlite,
        writer,
        reader,
        days: Mutex::new(HashSet::new()),
    })
}

async fn open_postgres(url: &str) -> StoreResult<SqlAuditLog<sqlx::Postgres>> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
    // The resource store runs the migrations (0016 creates the table) before this opens.
    let pool = pool_options::<sqlx::Postgres>()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(SqlAuditLog {
        dialect: Dialect::Postgres,
        writer: pool.clone(),
        reader: pool,
        days: Mutex::new(HashSet::new()),
    })
}

/// The audit log on an sqlx database.
pub struct SqlAuditLog<DB: sqlx::Database> {
    dialect: Dialect,
    writer: Pool<DB>,
    reader: Pool<DB>,
    /// The days (PostgreSQL partitions) known to exist.
    days: Mutex<HashSet<i64>>,
}

const DAY_MS: i64 = 86_400_000;

/// The columns every statement reads and writes, in this order.
const COLUMNS: &str = "recorded, seq, event, actor, status, action, method, interaction, client, \
                       patient, entity, path, query, request_id, detail";

/// The columns as read (small integers widened, so that both databases answer BIGINT).
const SELECT_COLUMNS: &str = "recorded, seq, CAST(event AS BIGINT), CAST(actor AS BIGINT), \
     CAST(status AS BIGINT), action, method, interaction, client, patient, entity, path, query, \
     request_id, detail";

/// The multi-row INSERT of `entries`.
pub fn insert(dialect: Dialect, entries: &[AuditEntry]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO audit_log (")
        .push(COLUMNS)
        .push(") VALUES ");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .int(e.recorded)
            .push(", ")
            .int(e.seq)
            .push(", ")
            .int(e.event as i64)
            .push(", ")
            .int(e.actor as i64)
            .push(", ")
            .int(e.status)
            .push(", ")
            .text(&e.action)
            .push(", ")
            .text(&e.method);
        for value in [
            &e.interaction,
            &e.client,
            &e.patient,
            &e.entity,
            &e.path,
            &e.query,
            &e.request_id,
            &e.detail,
        ] {
            sql.push(", ").opt(value.as_deref());
        }
        sql.push(")");
    }
    sql
}

/// The statement giving the first of `n` new sequence numbers (in the writer's transaction:
/// on SQLite the one writer of the file, on PostgreSQL the sequence).
fn next_seqs(dialect: Dialect, n: usize) -> Sql {
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Sqlite => sql.push("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log"),
        Dialect::Postgres => sql
            .push("SELECT nextval('audit_log_seq') FROM generate_series(1, ")
            .int(n as i64)
            .push(")"),
    };
    sql
}

/// The statement reading one entry.
pub fn select_one(dialect: Dialect, recorded: i64, seq: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(SELECT_COLUMNS)
        .push(" FROM audit_log WHERE recorded = ")
        .int(recorded)
        .push(" AND seq = ")
        .int(seq);
    sql
}

fn in_list(sql: &mut Sql, column: &str, values: &[String]) {
    sql.push(column).push(" IN (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(v);
    }
    sql.push(")");
}

fn filter(sql: &mut Sql, filter: &AuditFilter) {
    let patients_of = |references: &[String]| -> Vec<String> {
        references
            .iter()
            .filter_map(|r| r.strip_prefix("Patient/").map(str::to_owned))
            .collect()
    };
    match filter {
        AuditFilter::Recorded(Cmp::Lt, at) => {
            sql.push("recorded < ").int(*at);
        }
        AuditFilter::Recorded(Cmp::Ge, at) => {
            sql.push("recorded >= ").int(*at);
        }
        AuditFilter::Client(values) => in_list(sql, "client", values),
        AuditFilter::Patient(ids) => {
            let references: Vec<String> = ids.iter().map(|id| format!("Patient/{id}")).collect();
            sql.push("(");
            in_list(sql, "patient", ids);
            sql.push(" OR ");
            in_list(sql, "entity", &references);
            sql.push(")");
        }
        AuditFilter::Entity(references) => {
            let patients = patients_of(references);
            sql.push("(");
            in_list(sql, "entity", references);
            if !patients.is_empty() {
                sql.push(" OR ");
                in_list(sql, "patient", &patients);
            }
            sql.push(")");
        }
        AuditFilter::Status(ranges) => {
            sql.push("(");
            for (i, (lo, hi)) in ranges.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(status >= ")
                    .int(*lo)
                    .push(" AND status < ")
                    .int(*hi)
                    .push(")");
            }
            sql.push(")");
        }
        AuditFilter::Event(kinds) => {
            sql.push("event IN (");
            for (i, kind) in kinds.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.int(*kind as i64);
            }
            sql.push(")");
        }
        AuditFilter::Interaction(codes) => in_list(sql, "interaction", codes),
        AuditFilter::Action(codes) => in_list(sql, "action", codes),
        AuditFilter::Nothing => {
            sql.push("1 = 0");
        }
    }
}

/// The search statement: the filters, the cursor, newest first, `count + 1` rows.
pub fn select(dialect: Dialect, query: &AuditQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(SELECT_COLUMNS)
        .push(" FROM audit_log WHERE 1 = 1");
    for f in &query.filters {
        sql.push(" AND ");
        filter(&mut sql, f);
    }
    if let Some((recorded, seq)) = query.before {
        sql.push(" AND (recorded < ")
            .int(recorded)
            .push(" OR (recorded = ")
            .int(recorded)
            .push(" AND seq < ")
            .int(seq)
            .push("))");
    }
    sql.push(" ORDER BY recorded DESC, seq DESC LIMIT ")
        .int(query.count as i64 + 1);
    sql
}

/// The name of a day's partition (PostgreSQL): `audit_log_d{days since the epoch}`.
fn partition(day: i64) -> String {
    format!("audit_log_d{day}")
}

fn entry_at(row: &impl Columns) -> Result<AuditEntry, sqlx::Error> {
    let event: i64 = row.at(2)?;
    let actor: i64 = row.at(3)?;
    Ok(AuditEntry {
        recorded: row.at(0)?,
        seq: row.at(1)?,
        event: if event == 1 {
            EventKind::Login
        } else {
            EventKind::Rest
        },
        actor: match actor {
            0 => Actor::Client,
            1 => Actor::Anonymous,
            _ => Actor::Unauthenticated,
        },
        status: row.at(4)?,
        action: row.at(5)?,
        method: row.at(6)?,
        interaction: row.at(7)?,
        client: row.at(8)?,
        patient: row.at(9)?,
        entity: row.at(10)?,
        path: row.at(11)?,
        query: row.at(12)?,
        request_id: row.at(13)?,
        detail: row.at(14)?,
    })
}

/// The most rows of one INSERT (15 values each, well below the databases' bind limits).
const ROWS_PER_INSERT: usize = 1_000;

impl<DB: Sqlx> SqlAuditLog<DB> {
    /// Creates the partitions of the days `entries` fall on that are not known yet.
    async fn ensure_partitions(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let missing: Vec<i64> = {
            let known = self.days.lock().expect("audit days");
            let mut days: Vec<i64> = entries
                .iter()
                .map(|e| e.recorded.div_euclid(DAY_MS))
                .filter(|d| !known.contains(d))
                .collect();
            days.sort_unstable();
            days.dedup();
            days
        };
        for day in missing {
            // Another server on the database may create the same day at the same moment: the
            // loser's error is retried by the writer, and then the partition exists.
            let text = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF audit_log FOR VALUES FROM ({}) TO ({})",
                partition(day),
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            DB::query(&text).execute(DB::pool(&self.writer)).await?;
            self.days.lock().expect("audit days").insert(day);
        }
        Ok(())
    }
}

#[async_trait]
impl<DB: Sqlx> AuditLog for SqlAuditLog<DB>
where
    SqlAuditLog<DB>: Send + Sync,
{
    async fn append(&self, entries: &mut [AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ensure_partitions(entries).await?;
        let mut tx = self.writer.begin().await?;
        let sql = next_seqs(self.dialect, entries.len());
        let rows = DB::prepare(&sql).fetch_all(DB::connection(&mut tx)).await?;
        match self.dialect {
            Dialect::Sqlite => {
                let first: i64 = Column::<i64>::at(&rows[0], 0)?;
                for (i, e) in entries.iter_mut().enumerate() {
                    e.seq = first + i as i64;
                }
            }
            Dialect::Postgres => {
                for (e, row) in entries.iter_mut().zip(&rows) {
                    e.seq = Column::<i64>::at(row, 0)?;
                }
            }
        }
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let sql = insert(self.dialect, chunk);
            DB::prepare(&sql).execute(DB::connection(&mut tx)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, recorded: i64, seq: i64) -> StoreResult<Option<AuditEntry>> {
        let sql = select_one(self.dialect, recorded, seq);
        let row = DB::prepare(&sql)
            .fetch_optional(DB::pool(&self.reader))
            .await?;
        Ok(row.map(|r| entry_at(&r)).transpose()?)
    }

    async fn search(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let sql = select(self.dialect, query);
        super::sql::check(&sql)?;
        let rows = DB::prepare(&sql).fetch_all(DB::pool(&self.reader)).await?;
        Ok(rows.iter().map(entry_at).collect::<Result<_, _>>()?)
    }

    async fn forget_before(&self, cutoff: i64) -> StoreResult<()> {
        if self.dialect == Dialect::Postgres {
            // Whole days before the cutoff's day go at once.
            let rows = DB::query(
                "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit_log'",
            )
            .fetch_all(DB::pool(&self.writer))
            .await?;
            let cutoff_day = cutoff.div_euclid(DAY_MS);
            for row in rows {
                let name: String = Column::<String>::at(&row, 0)?;
                let Some(day) = name
                    .strip_prefix("audit_log_d")
                    .and_then(|d| d.parse::<i64>().ok())
                else {
                    continue;
                };
                if day < cutoff_day {
                    DB::query(&format!("DROP TABLE IF EXISTS {}", partition(day)))
                        .execute(DB::pool(&self.writer))
                        .await?;
                    self.days.lock().expect("audit days").remove(&day);
                }
            }
        }
        let mut sql = Sql::new(self.dialect);
        sql.push("DELETE FROM audit_log WHERE recorded < ")
            .int(cutoff);
        DB::prepare(&sql).execute(DB::pool(&self.writer)).await?;
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        if self.dialect == Dialect::Sqlite {
            if let Err(e) = DB::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(DB::pool(&self.writer))
                .await
            {
                tracing::warn!(error = %e, "closing: the audit log could not be checkpointed");
            }
        }
        self.writer.close().await;
    }
}
