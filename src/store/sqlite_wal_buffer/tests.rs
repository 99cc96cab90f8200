use std::ffi::{c_char, CString};
use std::path::Path;

use super::*;

/// A connection through the C API, for the tests.
struct Connection(*mut ffi::sqlite3);

// SAFETY: a test connection is used by one thread at a time (moved, never shared).
unsafe impl Send for Connection {}

impl Connection {
    /// `vfs`: this module's VFS, or the default.
    fn open(path: &Path, buffered: bool) -> Connection {
        let vfs = if buffered {
            Some(CString::new(register().unwrap()).unwrap())
        } else {
            None
        };
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let mut db = ptr::null_mut();
        // SAFETY: valid C strings, an out pointer.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX,
                vfs.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        // SAFETY: an open connection.
        unsafe { ffi::sqlite3_busy_timeout(db, 10_000) };
        let connection = Connection(db);
        connection.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL");
        connection
    }

    fn exec(&self, sql: &str) {
        if let Err(code) = self.try_exec(sql) {
            panic!("{sql}: {} ({code})", self.error());
        }
    }

    /// Runs `sql`: its extended error code if it failed.
    fn try_exec(&self, sql: &str) -> Result<(), c_int> {
        let text = CString::new(sql).unwrap();
        // SAFETY: an open connection, a C string.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0,
                text.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            return Ok(());
        }
        // SAFETY: an open connection.
        Err(unsafe { ffi::sqlite3_extended_errcode(self.0) })
    }

    /// The log's next write-out fails.
    fn fail_next_write_out(&self) {
        // SAFETY: the private opcode takes no argument.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.0,
                c"main".as_ptr(),
                FCNTL_FAIL_WRITE_OUT,
                ptr::null_mut(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK, "the log is not buffered");
    }

    fn error(&self) -> String {
        // SAFETY: an open connection; SQLite's message is a C string.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: an open connection.
        format!("{message} ({})", unsafe {
            ffi::sqlite3_extended_errcode(self.0)
        })
    }

    /// The first column of the first row, as text.
    fn one(&self, sql: &str) -> String {
        let text = CString::new(sql).unwrap();
        let mut statement = ptr::null_mut();
        // SAFETY: an open connection, a C string, out pointers; the statement is finalized.
        unsafe {
            let rc =
                ffi::sqlite3_prepare_v2(self.0, text.as_ptr(), -1, &mut statement, ptr::null_mut());
            assert_eq!(rc, ffi::SQLITE_OK, "{sql}: {}", self.error());
            let rc = ffi::sqlite3_step(statement);
            assert_eq!(rc, ffi::SQLITE_ROW, "{sql}: {}", self.error());
            let value = ffi::sqlite3_column_text(statement, 0);
            let value = CStr::from_ptr(value as *const c_char)
                .to_string_lossy()
                .into_owned();
            ffi::sqlite3_finalize(statement);
            value
        }
    }

    /// The log's (writes taken into its buffer, writes to the file).
    fn counts(&self) -> [u64; 2] {
        let mut counts = [0u64; 2];
        // SAFETY: the private opcode writes a [u64; 2].
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.0,
                c"main".as_ptr(),
                FCNTL_COUNTS,
                &mut counts as *mut [u64; 2] as *mut c_void,
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK, "the log is not buffered");
        counts
    }

    fn intact(&self) {
        assert_eq!(self.one("PRAGMA integrity_check"), "ok");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: statements are finalized; closed once.
        let rc = unsafe { ffi::sqlite3_close(self.0) };
        if !std::thread::panicking() {
            assert_eq!(rc, ffi::SQLITE_OK);
        }
    }
}

fn scratch(purpose: &str) -> std::path::PathBuf {
    let (dir, _) = crate::store::scratch_sqlite(purpose);
    dir.join("s.db")
}

fn create(connection: &Connection) {
    connection.exec(
        "CREATE TABLE IF NOT EXISTS t(x INTEGER PRIMARY KEY, b BLOB); \
         CREATE INDEX IF NOT EXISTS t_b ON t(b)",
    );
}

/// generate_series is not in every SQLite build: a recursive CTE instead.
fn fill(connection: &Connection, from: i64, rows: i64, bytes: i64) {
    connection.exec(&format!(
        "WITH RECURSIVE n(v) AS (SELECT {from} UNION ALL SELECT v + 1 FROM n WHERE v < {}) \
         INSERT INTO t(x, b) SELECT v, randomblob({bytes}) FROM n",
        from + rows - 1
    ));
}

#[test]
fn a_commits_frames_reach_the_log_in_one_write() {
    let path = scratch("walbuf-one");
    {
        let writer = Connection::open(&path, true);
        create(&writer);
        let [appends, writes] = writer.counts();
        writer.exec("BEGIN IMMEDIATE");
        fill(&writer, 1, 20, 500);
        writer.exec("COMMIT");
        let [appends_after, writes_after] = writer.counts();
        // Several pages: a header and a page per frame.
        assert!(appends_after - appends >= 8, "{appends} → {appends_after}");
        assert_eq!(writes_after - writes, 1, "one write for the commit");
        // A larger commit (~60 frames): in pieces of at most BUFFER_BYTES.
        writer.exec("BEGIN IMMEDIATE");
        fill(&writer, 21, 80, 1000);
        writer.exec("COMMIT");
        let [appends_last, writes_last] = writer.counts();
        let frames = (appends_last - appends_after) / 2;
        let pieces = writes_last - writes_after;
        assert!(frames > 40, "{frames} frames");
        assert!(
            pieces <= frames * 4120 / BUFFER_BYTES as u64 + 1,
            "{frames} frames, {pieces} writes"
        );
        // A reader on the default VFS sees the commit.
        let reader = Connection::open(&path, false);
        assert_eq!(reader.one("SELECT count(*) FROM t"), "100");
    }
    // Reopened after every connection closed (the log checkpointed into the file).
    let again = Connection::open(&path, false);
    assert_eq!(again.one("SELECT count(*) FROM t"), "100");
    again.intact();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_reader_sees_each_commit_even_without_its_fsync() {
    // Without synchronous=FULL nothing syncs the log before the commit is published: the
    // frames must be written out before (with the page of the commit's last frame).
    let path = scratch("walbuf-normal");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA synchronous=NORMAL");
    create(&writer);
    let reader = Connection::open(&path, false);
    for i in 0..20 {
        writer.exec("BEGIN IMMEDIATE");
        fill(&writer, i * 10 + 1, 10, 3000);
        writer.exec("COMMIT");
        assert_eq!(
            reader.one("SELECT count(*) || ' ' || sum(length(b)) FROM t"),
            format!("{} {}", (i + 1) * 10, (i + 1) * 10 * 3000)
        );
    }
    reader.intact();
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_transaction_larger_than_the_cache_and_the_buffer_reads_its_spilled_pages() {
    let path = scratch("walbuf-spill");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA cache_size=20");
    create(&writer);
    let [_, writes] = writer.counts();
    writer.exec("BEGIN IMMEDIATE");
    fill(&writer, 1, 3000, 2000);
    // Read back (pages spilled to the log, some still in its buffer), then rewrite: a
    // frame of this transaction overwritten in place.
    assert_eq!(writer.one("SELECT sum(length(b)) FROM t"), "6000000");
    writer.exec("UPDATE t SET b = randomblob(1500) WHERE x % 7 = 0");
    assert_eq!(
        writer.one("SELECT count(*) FROM t WHERE length(b) = 1500"),
        "428"
    );
    writer.exec("COMMIT");
    let [_, writes_after] = writer.counts();
    assert!(
        writes_after - writes >= 2,
        "more than the buffer: written in pieces"
    );
    let reader = Connection::open(&path, false);
    assert_eq!(reader.one("SELECT count(*) FROM t"), "3000");
    reader.intact();
    writer.intact();
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn the_log_restarts_after_a_checkpoint_and_is_truncated_to_its_limit() {
    let path = scratch("walbuf-restart");
    let log = path.with_file_name("s.db-wal");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA journal_size_limit=0");
    create(&writer);
    fill(&writer, 1, 200, 1000);
    let before = std::fs::metadata(&log).unwrap().len();
    // Another connection copies the whole log back; the next write restarts it at 0.
    let checkpointer = Connection::open(&path, false);
    checkpointer.exec("PRAGMA wal_checkpoint(PASSIVE)");
    fill(&writer, 201, 10, 1000);
    let after = std::fs::metadata(&log).unwrap().len();
    assert!(
        after < before,
        "restarted (and cut to the limit): {before} → {after}"
    );
    writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    fill(&writer, 211, 10, 1000);
    assert_eq!(checkpointer.one("SELECT count(*) FROM t"), "220");
    checkpointer.intact();
    drop((checkpointer, writer));
    let again = Connection::open(&path, false);
    assert_eq!(again.one("SELECT count(*) FROM t"), "220");
    again.intact();
    drop(again);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn frames_of_a_rolled_back_spill_never_overwrite_another_writers_commit() {
    let path = scratch("walbuf-rollback");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA cache_size=20");
    create(&writer);
    // An empty log: the rollback reloads its pages from the database file, reading
    // nothing of the log (which would write the buffer out by itself).
    writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer.exec("BEGIN IMMEDIATE");
    fill(&writer, 1, 60, 2000);
    writer.exec("ROLLBACK");
    // Another writer appends where the rolled-back frames were: they must have been
    // written out when the rollback let go of the write lock, not after this.
    let other = Connection::open(&path, false);
    fill(&other, 1001, 100, 2000);
    fill(&writer, 2001, 50, 2000);
    fill(&other, 3001, 50, 2000);
    let fresh = Connection::open(&path, false);
    assert_eq!(fresh.one("SELECT count(*) FROM t"), "200");
    fresh.intact();
    drop(fresh);
    assert_eq!(other.one("SELECT count(*) FROM t"), "200");
    assert_eq!(writer.one("SELECT count(*) FROM t"), "200");
    other.intact();
    writer.intact();
    drop((other, writer));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_commit_without_its_fsync_fails_when_its_frames_cannot_be_written() {
    // Under synchronous=NORMAL no xSync follows the commit's frames: their write-out must
    // still be the error of a call that fails the commit, not of the barrier or lock that
    // publishes it (which cannot report one).
    let path = scratch("walbuf-normal-fails");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA synchronous=NORMAL");
    create(&writer);
    fill(&writer, 1, 10, 300);
    writer.exec("BEGIN IMMEDIATE");
    fill(&writer, 11, 10, 300);
    writer.fail_next_write_out();
    assert_eq!(writer.try_exec("COMMIT"), Err(ffi::SQLITE_IOERR_WRITE));
    let _ = writer.try_exec("ROLLBACK");
    let reader = Connection::open(&path, false);
    assert_eq!(
        reader.one("SELECT count(*) FROM t"),
        "10",
        "nothing published"
    );
    reader.intact();
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_write_out_that_failed_where_sqlite_could_not_hear_of_it_fails_the_next_calls() {
    let path = scratch("walbuf-sticky");
    let writer = Connection::open(&path, true);
    writer.exec("PRAGMA cache_size=20");
    create(&writer);
    fill(&writer, 1, 10, 300);
    // Frames of a transaction spilled into the buffer; their write-out fails when the
    // rollback lets go of the log index's write lock, an unlock whose error SQLite drops.
    writer.exec("BEGIN IMMEDIATE");
    fill(&writer, 11, 60, 2000);
    writer.fail_next_write_out();
    writer.exec("ROLLBACK");
    // Until the log restarts, every call that can answer says so.
    for _ in 0..2 {
        assert_eq!(
            writer.try_exec("INSERT INTO t(x, b) VALUES (100, x'00')"),
            Err(ffi::SQLITE_IOERR_WRITE)
        );
    }
    // Another connection copies the log back and empties it: the writer's next frames
    // start a new log (its header at offset 0), and it writes again.
    let other = Connection::open(&path, false);
    other.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer.exec("INSERT INTO t(x, b) VALUES (100, x'00')");
    assert_eq!(other.one("SELECT count(*) FROM t"), "11");
    other.intact();
    writer.intact();
    drop((other, writer));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn commits_beside_readers_and_checkpoints_leave_an_intact_database() {
    let path = scratch("walbuf-burst");
    let writer = Connection::open(&path, true);
    create(&writer);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others: Vec<_> = (0..3)
        .map(|n| {
            let path = path.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let connection = Connection::open(&path, false);
                let mut last = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if n == 0 {
                        connection.exec("PRAGMA wal_checkpoint(PASSIVE)");
                    }
                    let count: i64 = connection.one("SELECT count(*) FROM t").parse().unwrap();
                    assert!(count >= last, "a reader never goes back");
                    assert_eq!(count % 20, 0, "whole transactions only");
                    last = count;
                }
            })
        })
        .collect();
    for i in 0..150 {
        writer.exec("BEGIN IMMEDIATE");
        fill(&writer, i * 20 + 1, 20, 700);
        writer.exec("COMMIT");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for other in others {
        other.join().unwrap();
    }
    writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer.intact();
    assert_eq!(writer.one("SELECT count(*) FROM t"), "3000");
    drop(writer);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
