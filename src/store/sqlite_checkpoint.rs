//! Checkpoints of SQLite's write-ahead log, run beside the writer instead of inside its commits
//! (decision 0049).
//!
//! In WAL mode a commit appends the pages it changed to the log, and a *checkpoint* copies them
//! back into the database file and fsyncs it. SQLite's automatic checkpoint runs inside the
//! commit that took the log past its threshold: on the writer's connection, while the group
//! commit (`store::group_commit`) holds the writer and before its members are answered. It
//! copies some 16 MB of pages at random places and fsyncs the database, so every few dozen
//! commits every writer stood still for it (the long tail of a create's latency).
//!
//! Here the writer connection reports the log's size after each commit (`sqlite3_wal_hook`,
//! which also replaces the automatic checkpoint), and once the log is past [`WAL_PAGES`] a task
//! runs a `PASSIVE` checkpoint on a connection of its own. A passive checkpoint never blocks
//! the writer nor the readers, and the writer restarts the log from its beginning once it has
//! all been copied back. Under writes back to back that moment rarely comes (the log grew to
//! 74 MB in 150 s of load), so past twice the threshold the writer checkpoints itself after its
//! commit, as SQLite's own hook would, and the log restarts. Durability is unchanged: a commit is durable once its log frames are
//! fsynced (`synchronous=FULL`), which the checkpoint does not touch.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::sqlite::SqliteConnection;
use sqlx::SqlitePool;
use tokio::sync::Notify;

/// The size of the log (in pages) past which it is checkpointed: SQLite's default
/// `wal_autocheckpoint` is 1,000; 4,000 (16 MB of 4 KiB pages) copies the hot index pages
/// that many commits rewrite back once.
pub const WAL_PAGES: c_int = 4000;

/// The size of the log (in pages) past which the writer checkpoints it itself: the
/// checkpointer fell behind.
const WRITER_CHECKPOINTS_AT: c_int = 2 * WAL_PAGES;

/// What the writer's log hook wakes: the checkpointer.
pub struct Checkpoints {
    due: Notify,
}

impl Checkpoints {
    pub fn new() -> Arc<Self> {
        Arc::new(Checkpoints { due: Notify::new() })
    }

    /// Makes `connection` (the writer) report the log's size after each of its commits, and
    /// stops its automatic checkpoints. A connection where this fails keeps checkpointing
    /// itself (`wal_autocheckpoint`), as before.
    pub async fn watch(
        self: &Arc<Self>,
        connection: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        let mut handle = connection.lock_handle().await?;
        // The hook's context is one reference to `self`, held for as long as the connection
        // lives (connections are few and long-lived: one writer, reopened only after a
        // failure; the reference is not given back).
        let context = Arc::into_raw(self.clone()) as *mut c_void;
        // SAFETY: the handle is locked (no other thread uses the connection meanwhile), and
        // `context` points to a `Checkpoints` kept alive by the reference leaked above, for
        // every later call of the hook on this connection.
        unsafe {
            ffi::sqlite3_wal_hook(handle.as_raw_handle().as_ptr(), Some(logged), context);
        }
        Ok(())
    }

    /// Runs the checkpoints on `pool` (one connection of its own, not read-only) until the
    /// pool is closed.
    pub fn start(self: &Arc<Self>, pool: SqlitePool) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.due.notified().await;
                if pool.is_closed() {
                    return;
                }
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "the write-ahead log could not be checkpointed");
                }
            }
        });
    }

    /// Wakes the checkpointer (to end it once its pool is closed).
    pub fn wake(&self) {
        self.due.notify_one();
    }
}

/// The writer's log hook: called by SQLite on the writer's thread after each commit, with the
/// number of pages in the log.
unsafe extern "C" fn logged(
    context: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    if pages >= WRITER_CHECKPOINTS_AT {
        // The log restarts from its beginning only when a write transaction begins after it was
        // all copied back; under writes back to back the checkpointer's copy rarely ends inside
        // that gap, and the log would grow on. Past twice the threshold the writer checkpoints
        // itself here, between its commit and its next transaction, as SQLite's own hook
        // does: the pages the checkpointer already copied are not copied again, and the next
        // write restarts the log.
        // SAFETY: called by SQLite on the writer's connection `db` for its database `name`,
        // which is what SQLite's default hook passes to the same call.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    } else if pages >= WAL_PAGES {
        // SAFETY: `context` is the reference to `Checkpoints` leaked in `watch`, never freed.
        let checkpoints = unsafe { &*(context as *const Checkpoints) };
        checkpoints.due.notify_one();
    }
    ffi::SQLITE_OK
}
