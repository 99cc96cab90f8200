//! What differs between the databases, and what the one store implementation asks of sqlx.
//!
//! [`SqlStore`](super::sql_store::SqlStore) implements [`Store`](super::Store),
//! [`Tx`](super::Tx) and [`AuthStore`](super::auth::AuthStore) once, over a [`Backend`]: the
//! few things that really differ per database (opening it, its pools, how a write transaction
//! begins, how a writer locks a row and a key, how a query plan reads). The SQL text itself is
//! the same on both, built by `store::sql` for the backend's [`Dialect`].
//!
//! The sqlx bounds the generic code needs (executors, bindable and decodable types) are stated
//! once, on the blanket implementations of [`Sqlx`] and [`Column`] below. Rust hands a trait's
//! supertraits and the bounds of its associated types on to code generic over it, but not its
//! other `where` clauses, so the bounds reach that code as these traits' methods.

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type,
};

use super::sql::{Bind, Dialect, Sql};
use super::time_budget::Limit;
use super::StoreResult;

/// One database: everything [`SqlStore`](super::sql_store::SqlStore) does not do the same way
/// on all of them.
#[async_trait]
pub trait Backend: Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Db: Sqlx;
    /// How `store::sql` writes this database's SQL.
    const DIALECT: Dialect;
    /// What `Tx::lock_current` appends to its `SELECT` so that the row stays locked against
    /// other writers until commit (empty where the writer already holds the database's lock).
    const LOCK_ROW: &'static str;
    /// Whether write transactions commit in groups, many with one fsync
    /// (`store::group_commit`): where one writer commits at a time.
    const GROUP_COMMIT: bool = false;
    /// Whether statements without rows to return may be sent together, as one text of
    /// statements separated by `;` with their values in order (`Sql::join`): SQLite runs them
    /// one after the other in one call, where each call is a round trip to the thread of the
    /// connection. (PostgreSQL's protocol takes one statement with values per message.)
    const JOINS_STATEMENTS: bool = false;

    /// Opens the database named by `url`, creating and migrating it as needed.
    async fn open(url: &str) -> StoreResult<Self>;
    /// The statement a transaction that queued a patient for scoring runs before it commits,
    /// to wake the other servers on the database (PostgreSQL `NOTIFY`); `None` where only one
    /// server uses the database.
    const NOTIFY_QUEUED: Option<&'static str> = None;
    /// The statement a transaction that wrote a SearchParameter or a Basic runs before it
    /// commits, to make the other servers reload them (PostgreSQL `NOTIFY`).
    const NOTIFY_REGISTRY: Option<&'static str> = None;
    /// Starts waking `queued` whenever another server's commit queued a patient, and
    /// `registry` when one wrote a SearchParameter or a Basic (PostgreSQL `LISTEN`), until they
    /// are dropped. Nothing to do where one server has the database.
    async fn listen(
        &self,
        _queued: std::sync::Weak<tokio::sync::Notify>,
        _registry: std::sync::Weak<tokio::sync::Notify>,
    ) {
    }
    /// A read by id (the newest version, or `version`) answered at once on the caller's
    /// thread, where the database allows it (SQLite, `store::sqlite_read`); `None`: read
    /// through the [`reader`](Backend::reader) pool.
    fn read_now(
        &self,
        _rtype: &str,
        _id: &str,
        _version: Option<i64>,
    ) -> Option<Option<super::Version>> {
        None
    }
    /// The pool reads run on.
    fn reader(&self) -> &Pool<Self::Db>;
    /// The pool writes outside a [`Tx`](super::Tx) run on (the scoring queue, authorization
    /// state).
    fn writer(&self) -> &Pool<Self::Db>;
    /// Begins a write transaction.
    async fn begin(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
    /// The statement `Tx::lock_key` runs to serialise transactions using `key` until commit,
    /// or `None` where writers are serialised anyway.
    fn lock_key(key: &str) -> Option<Sql>;
    /// Makes the database stop the statements run next on `connection` once `limit` is up or
    /// its request went away (`store::time_budget`), until [`Backend::disarm`].
    async fn arm(
        connection: &mut <Self::Db as Database>::Connection,
        limit: &Limit,
    ) -> Result<(), sqlx::Error>;
    /// Lifts what [`Backend::arm`] set.
    async fn disarm(connection: &mut <Self::Db as Database>::Connection)
        -> Result<(), sqlx::Error>;
    /// Whether `error` is the database stopping a statement as [`Backend::arm`] asked.
    fn stopped(error: &sqlx::Error) -> bool;
    /// The query plan from the rows of `sql::explain`, one line per plan node.
    fn plan(rows: &[<Self::Db as Database>::Row]) -> Result<Vec<String>, sqlx::Error>;
    /// Closes the pools, waiting for in-flight work.
    async fn close(&self);
}

/// What the store does with an sqlx database: bind `sql::Bind` values, run statements on a
/// pool or in a transaction, read columns by position. Implemented for every sqlx database
/// that can.
pub trait Sqlx: Database<Row: Columns> {
    /// A statement without values.
    fn query(text: &str) -> Query<'_, Self, impl IntoArguments<'_, Self>>;
    /// `sql` with its values bound.
    fn prepare(sql: &Sql) -> Query<'_, Self, impl IntoArguments<'_, Self>>;
    /// The statement `text` with the values `binds` moved in rather than copied (sqlx copies
    /// borrowed values again to send them to SQLite's connection thread).
    fn prepare_owned(text: &str, binds: Vec<Bind>)
        -> Query<'_, Self, impl IntoArguments<'_, Self>>;
    /// A pool, to run statements on.
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self>;
    /// A connection (a transaction's), to run statements on.
    fn connection(connection: &mut Self::Connection) -> impl Executor<'_, Database = Self>;
}

impl<DB: Database<Row: Columns>> Sqlx for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    fn query(text: &str) -> Query<'_, Self, impl IntoArguments<'_, Self>> {
        sqlx::query(text)
    }

    fn prepare(sql: &Sql) -> Query<'_, Self, impl IntoArguments<'_, Self>> {
        let mut query = sqlx::query(&sql.text);
        for bind in &sql.binds {
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

    fn prepare_owned(
        text: &str,
        binds: Vec<Bind>,
    ) -> Query<'_, Self, impl IntoArguments<'_, Self>> {
        let mut query = sqlx::query(text);
        for bind in binds {
            query = match bind {
                Bind::Text(s) => query.bind(s),
                Bind::OptText(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
                Bind::Float(f) => query.bind(f),
                Bind::Bool(b) => query.bind(b),
                Bind::OptInt(i) => query.bind(i),
            };
        }
        query
    }

    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self> {
        pool
    }

    fn connection(connection: &mut Self::Connection) -> impl Executor<'_, Database = Self> {
        connection
    }
}

/// Reads column `i` of a row as a `T` (sqlx's `Row::try_get`).
pub trait Column<T>: Row {
    fn at(&self, i: usize) -> Result<T, sqlx::Error>;
}

impl<R: Row, T> Column<T> for R
where
    T: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    fn at(&self, i: usize) -> Result<T, sqlx::Error> {
        self.try_get(i)
    }
}

/// The types the store reads from its rows.
pub trait Columns:
    Column<i64>
    + Column<Option<i64>>
    + Column<Option<f64>>
    + Column<bool>
    + Column<String>
    + Column<Option<String>>
{
}

impl<R> Columns for R where
    R: Column<i64>
        + Column<Option<i64>>
        + Column<Option<f64>>
        + Column<bool>
        + Column<String>
        + Column<Option<String>>
{
}

/// The options every pool of the server starts from: sqlx's defaults without its background
/// reaper (an idle timeout of 10 minutes and a lifetime of 30 make sqlx sweep each pool's idle
/// connections on a timer). That sweep loops over a count of idle connections that a race in
/// sqlx 0.8 can wrap below zero, and then spins without yielding, at 100% of a core, starving
/// the runtime thread it runs on (sqlx issue 3645, fixed upstream after 0.8.6). The server
/// needs no reaping: SQLite's connections are files, and PostgreSQL connections are tested
/// before use (sqlx's `test_before_acquire`) and replaced when they fail.
pub fn pool_options<DB: Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
}

#[cfg(test)]
mod pool_tests {
    use super::pool_options;

    #[test]
    fn pools_run_without_the_idle_reaper() {
        let sqlite = pool_options::<sqlx::Sqlite>();
        assert_eq!(sqlite.get_idle_timeout(), None);
        assert_eq!(sqlite.get_max_lifetime(), None);
        assert_eq!(sqlite.get_min_connections(), 0);
        let postgres = pool_options::<sqlx::Postgres>();
        assert_eq!(postgres.get_idle_timeout(), None);
        assert_eq!(postgres.get_max_lifetime(), None);
    }
}
