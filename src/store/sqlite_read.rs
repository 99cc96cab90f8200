//! Point reads on SQLite answered on the caller's thread (decision 0046).
//!
//! sqlx runs every SQLite connection on a thread of its own: a statement is a message to that
//! thread and its rows are messages back, so a read by id costs several thread wake-ups, which
//! on two cores cost more than the read itself (futex and scheduler time were half of a read's
//! CPU). A read by id is a few microseconds of SQLite work on pages that are in memory, so it
//! is done here, directly on read-only connections of this module's own, with the two
//! statements prepared once per connection.
//!
//! Anything unusual (the database busy, an error, text that is not UTF-8) answers `None`, and
//! the store reads through its sqlx pool as before, which waits and reports errors its usual
//! way: this path never waits (busy timeout 0) and never decides an error.

use std::ffi::{c_int, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libsqlite3_sys as ffi;

use super::sql::{read_version, Dialect};
use super::{Method, Version};

/// Connections kept open between reads: more than the tokio worker threads that can read at
/// once is never needed.
const KEPT: usize = 16;

/// The read-only connections, opened on demand, reused.
pub struct DirectReader {
    path: CString,
    idle: Mutex<Vec<Connection>>,
    /// Set by `close`: no connection is opened or kept after it.
    closed: AtomicBool,
}

impl DirectReader {
    /// Reads the database file at `path`; opens nothing yet. `None` for a path that cannot be
    /// a C string.
    pub fn new(path: &Path) -> Option<Self> {
        let path = CString::new(path.to_str()?).ok()?;
        Some(DirectReader {
            path,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The newest version of `rtype/id` (also a deletion), or version `version` of it: `Some`
    /// with the answer, `None` when this path could not answer (read through the pool then).
    pub fn read(&self, rtype: &str, id: &str, version: Option<i64>) -> Option<Option<Version>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut connection = match self.idle.lock().ok()?.pop() {
            Some(connection) => connection,
            None => Connection::open(&self.path)?,
        };
        let answer = connection.read(rtype, id, version);
        if answer.is_some() {
            if let Ok(mut idle) = self.idle.lock() {
                // Checked under the lock `close` takes: a read that overlapped `close` drops
                // its connection instead of keeping it open past the checkpoint.
                if idle.len() < KEPT && !self.closed.load(Ordering::Acquire) {
                    idle.push(connection);
                }
            }
        }
        // A connection that failed is closed (dropped): the next read opens a fresh one.
        answer
    }

    /// Closes every connection (before the writer checkpoints and removes the WAL); reads
    /// after it go through the pool, which is closed too and answers its own error.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// One read-only connection and its two prepared statements.
struct Connection {
    db: *mut ffi::sqlite3,
    current: *mut ffi::sqlite3_stmt,
    at_version: *mut ffi::sqlite3_stmt,
}

// A connection is used by one thread at a time (it is taken out of the pool to be used), which
// is what SQLITE_OPEN_NOMUTEX asks.
unsafe impl Send for Connection {}

impl Connection {
    fn open(path: &CString) -> Option<Connection> {
        let mut db = std::ptr::null_mut();
        let flags =
            ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX | ffi::SQLITE_OPEN_PRIVATECACHE;
        // SAFETY: `path` is a NUL-terminated string; `db` receives the handle, which is closed
        // by `Drop` (also when opening failed, as SQLite asks).
        let rc = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut db, flags, std::ptr::null()) };
        let mut connection = Connection {
            db,
            current: std::ptr::null_mut(),
            at_version: std::ptr::null_mut(),
        };
        if rc != ffi::SQLITE_OK {
            return None;
        }
        // SAFETY: `db` is an open connection.
        unsafe { ffi::sqlite3_busy_timeout(db, 0) };
        connection.current =
            connection.prepare(&read_version(Dialect::Sqlite, "", "", None).text)?;
        connection.at_version =
            connection.prepare(&read_version(Dialect::Sqlite, "", "", Some(0)).text)?;
        Some(connection)
    }

    fn prepare(&self, sql: &str) -> Option<*mut ffi::sqlite3_stmt> {
        let mut statement = std::ptr::null_mut();
        // SAFETY: `sql` is valid for its length; the statement is finalized by `Drop`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                sql.as_ptr().cast(),
                c_int::try_from(sql.len()).ok()?,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut statement,
                std::ptr::null_mut(),
            )
        };
        (rc == ffi::SQLITE_OK && !statement.is_null()).then_some(statement)
    }

    fn read(&mut self, rtype: &str, id: &str, version: Option<i64>) -> Option<Option<Version>> {
        let statement = match version {
            None => self.current,
            Some(_) => self.at_version,
        };
        let run = Run(statement);
        run.bind_text(1, rtype)?;
        run.bind_text(2, id)?;
        if let Some(version) = version {
            // SAFETY: a prepared statement with a third parameter.
            let rc = unsafe { ffi::sqlite3_bind_int64(statement, 3, version) };
            (rc == ffi::SQLITE_OK).then_some(())?;
        }
        // SAFETY: a prepared statement with its parameters bound.
        match unsafe { ffi::sqlite3_step(statement) } {
            ffi::SQLITE_DONE => Some(None),
            ffi::SQLITE_ROW => {
                let method = run.text(4)?.unwrap_or_default();
                Some(Some(Version {
                    rtype: run.text(0)?.unwrap_or_default(),
                    id: run.text(1)?.unwrap_or_default(),
                    version: run.int(2),
                    last_updated: run.int(3),
                    method: Method::parse(&method),
                    content: run.text(5)?,
                }))
            }
            _ => None,
        }
    }
}

/// A statement being run: reset and its parameters cleared when dropped, so that it holds no
/// read snapshot (which would keep the writer's checkpoints from finishing) and no pointer to
/// the bound text after the read.
struct Run(*mut ffi::sqlite3_stmt);

impl Run {
    fn bind_text(&self, index: c_int, value: &str) -> Option<()> {
        // SAFETY: SQLITE_STATIC: SQLite keeps the pointer until the parameter is cleared,
        // which `Drop` does before `value` (borrowed for the whole read) goes away.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.0,
                index,
                value.as_ptr().cast(),
                c_int::try_from(value.len()).ok()?,
                ffi::SQLITE_STATIC(),
            )
        };
        (rc == ffi::SQLITE_OK).then_some(())
    }

    fn int(&self, column: c_int) -> i64 {
        // SAFETY: the statement is on a row.
        unsafe { ffi::sqlite3_column_int64(self.0, column) }
    }

    /// A text column: `Some(None)` for NULL, `None` when it is not UTF-8.
    fn text(&self, column: c_int) -> Option<Option<String>> {
        // SAFETY: the statement is on a row; the text pointer is valid for `bytes` bytes until
        // the next step or reset, and is copied before that.
        unsafe {
            if ffi::sqlite3_column_type(self.0, column) == ffi::SQLITE_NULL {
                return Some(None);
            }
            let text = ffi::sqlite3_column_text(self.0, column);
            let bytes = usize::try_from(ffi::sqlite3_column_bytes(self.0, column)).ok()?;
            if text.is_null() {
                return Some(Some(String::new()));
            }
            let slice = std::slice::from_raw_parts(text, bytes);
            String::from_utf8(slice.to_vec()).ok().map(Some)
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // SAFETY: a prepared statement of an open connection.
        unsafe {
            ffi::sqlite3_reset(self.0);
            ffi::sqlite3_clear_bindings(self.0);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the statements (null ones are a no-op) belong to `db`, finalized before it
        // is closed.
        unsafe {
            ffi::sqlite3_finalize(self.current);
            ffi::sqlite3_finalize(self.at_version);
            ffi::sqlite3_close(self.db);
        }
    }
}
