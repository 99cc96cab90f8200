//! The writer's write-ahead log frames written in a few large writes per commit instead of two
//! per frame (decision 0059).
//!
//! SQLite writes each frame of its log in two calls (the 24-byte frame header, then the page),
//! about 50 frames a create: ~100 `pwrite`s on the writer's thread for every create, the serial
//! part of every write. This module is a VFS (SQLite's OS layer, <https://www.sqlite.org/vfs.html>)
//! registered once under [`VFS_NAME`], not as the default, over the default VFS
//! (`sqlite3_vfs_find(NULL)`). Every method goes to the default VFS and its files, except that a
//! log (a file opened with `SQLITE_OPEN_WAL`) keeps writes that append to the previous one in a
//! buffer of its own and writes them out as one call when it holds [`BUFFER_BYTES`] (the most the
//! default VFS writes at once: up to 31 frames) or something else needs the file.
//!
//! What keeps it as safe as writing each frame at once:
//!
//! - The buffer reaches the file before any other call on the log: `xSync`, `xRead`,
//!   `xTruncate`, `xFileSize`, `xClose`, `xFileControl`, the lock calls, and a write that does
//!   not append to the buffer (an overwritten frame, the log restarted at offset 0). A failed
//!   write-out is the error of the call that caused it (`SQLITE_IOERR_WRITE`, or `SQLITE_FULL`).
//!   A read of frames spilled mid-transaction therefore sees them.
//! - A commit's frames reach the file inside the commit: the page of the frame that ends a
//!   transaction (its header's "database size after commit" is not zero, as the WAL format
//!   documents) writes the buffer out in its own `xWrite`, whose error fails the commit. That
//!   holds at every `synchronous` level (decision 0063): under `NORMAL` no `xSync` follows.
//! - No other connection can see a log index that points at buffered frames: a commit becomes
//!   visible when wal.c writes the new index header into the shared memory, with an
//!   `xShmBarrier` of the *database* file between its two copies, and a write lock is released
//!   with `xShmLock`. The database file of a connection is opened through this VFS too and knows
//!   its log: its `xShmLock`, `xShmBarrier` and `xShmUnmap` write the log's buffer out first
//!   (what a rolled-back transaction spilled, the buffer is otherwise empty there).
//! - A failed write-out is kept. The VFS contract does not say which return codes SQLite acts
//!   on (an unlock's, `xClose`'s and `xShmUnmap`'s it drops; `xShmBarrier` has none), so no
//!   call is trusted to have reported it: every later call on the log that can answer an error
//!   (`xSync` at a commit, `xRead`, `xWrite`, `xFileSize`, ...) answers the failed write's code
//!   until its lost bytes no longer count: the log restarts (its header written at offset 0,
//!   with new salts that make every later frame invalid), is cut at or below where they began
//!   (`xTruncate`), or is closed. No commit is acknowledged over lost frames.
//! - A log is linked to its database through the database's file name (`sqlite3_filename_database`
//!   of the log's name, the pointer SQLite passed to the database's `xOpen`), in a table of the
//!   registration. A log whose database is not found is not buffered.
//! - No state but the registration is global; a file's buffer lives in its file object, which
//!   SQLite uses from one thread at a time. No panic crosses into SQLite (each entry point is
//!   guarded), and a buffer that cannot be allocated means writing through.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Mutex, OnceLock};

use libsqlite3_sys as ffi;

/// The name the VFS is registered under (`SqliteConnectOptions::vfs`).
pub const VFS_NAME: &str = "signaal-wal-buffer";
const VFS_NAME_C: &CStr = c"signaal-wal-buffer";

/// The most a log keeps before writing it out: the most the default (unix) VFS writes in one
/// call. Its `xWrite` takes at most 128 KiB − 1 bytes (it masks the length to 17 bits: SQLite
/// itself never writes more than a frame at once), so a commit's frames (~200 KB a create) go
/// out in pieces of up to 31 frames of 4 KiB pages, instead of two calls per frame.
pub const BUFFER_BYTES: usize = 0x1_ffff;

/// A private `xFileControl` opcode on a database file: writes its log's `[appends, writes]`
/// (writes taken into the buffer, calls that wrote to the file) into a `[u64; 2]`. For tests.
pub const FCNTL_COUNTS: c_int = 0x5347_0001;

/// The WAL file format (<https://www.sqlite.org/fileformat2.html#walformat>): the log's header,
/// then frames of a 24-byte header and a page. Bytes 4..8 of a frame header, big-endian, are
/// the database's size in pages after the commit for the frame that ends a transaction, and
/// zero for every other.
const LOG_HEADER_BYTES: i64 = 32;
const FRAME_HEADER_BYTES: usize = 24;

/// A private `xFileControl` opcode on a database file: its log's next write-out fails, as a
/// `pwrite` that failed (the bytes are not written). For tests.
#[cfg(test)]
const FCNTL_FAIL_WRITE_OUT: c_int = 0x5347_0002;

/// The VFS, the one it wraps, and the databases open through it (their file name pointer →
/// their `Shim`), to link each log to its database.
struct Registration {
    base: *mut ffi::sqlite3_vfs,
    databases: Mutex<HashMap<usize, usize>>,
}

// SAFETY: `base` points to SQLite's default VFS, which lives as long as the process and is
// safe to call from any thread; the table is behind a mutex.
unsafe impl Send for Registration {}
unsafe impl Sync for Registration {}

/// Whether the VFS was registered (the registration itself is leaked: SQLite keeps it).
static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();

/// Registers the VFS (once per process) and answers its name, or SQLite's error code.
pub fn register() -> Result<&'static str, c_int> {
    match REGISTERED.get_or_init(register_once) {
        Ok(_) => Ok(VFS_NAME),
        Err(code) => Err(*code),
    }
}

fn register_once() -> Result<(), c_int> {
    // SAFETY: initialising SQLite and finding its default VFS are safe at any time.
    let base = unsafe {
        let rc = ffi::sqlite3_initialize();
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
        ffi::sqlite3_vfs_find(ptr::null())
    };
    if base.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    // SAFETY: `base` is SQLite's default VFS, never freed.
    let base_ref = unsafe { &*base };
    let registration: &'static Registration = Box::leak(Box::new(Registration {
        base,
        databases: Mutex::new(HashMap::new()),
    }));
    let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
        iVersion: base_ref.iVersion.min(3),
        szOsFile: (SHIM_BYTES + base_ref.szOsFile as usize) as c_int,
        mxPathname: base_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME_C.as_ptr(),
        pAppData: registration as *const Registration as *mut c_void,
        xOpen: Some(open),
        xDelete: Some(delete),
        xAccess: Some(access),
        xFullPathname: Some(full_pathname),
        xDlOpen: Some(dl_open),
        xDlError: Some(dl_error),
        xDlSym: Some(dl_sym),
        xDlClose: Some(dl_close),
        xRandomness: Some(randomness),
        xSleep: Some(sleep),
        xCurrentTime: Some(current_time),
        xGetLastError: Some(get_last_error),
        xCurrentTimeInt64: Some(current_time_int64),
        xSetSystemCall: Some(set_system_call),
        xGetSystemCall: Some(get_system_call),
        xNextSystemCall: Some(next_system_call),
    }));
    // SAFETY: `vfs` is leaked (lives for ever), as SQLite requires of a registered VFS.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Files

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Database,
    Log,
}

/// A database or log file opened through this VFS: the default VFS's file follows it in the
/// same allocation (at `SHIM_BYTES`).
#[repr(C)]
struct Shim {
    /// What SQLite sees: `pMethods` is [`METHODS`]. First, so a `*mut sqlite3_file` is a
    /// `*mut Shim`.
    file: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    registration: *const Registration,
    kind: Kind,
    /// A database: the file name pointer it is known by in the registration's table (0: none).
    name: usize,
    /// A database: its log; a log: its database. Null: not linked (a log is then not buffered).
    peer: *mut Shim,
    /// A log: the bytes to write at `start`, appended one write after the other.
    buffer: Vec<u8>,
    start: i64,
    /// Writes taken into the buffer, and calls that wrote to the file (a log's).
    appends: u64,
    writes: u64,
    /// A log: the last write was the header of a frame that ends a transaction; the buffer
    /// is written out with its page.
    commit: bool,
    /// A log: the error of a write-out that failed (`SQLITE_OK`: none), answered by every call
    /// that can until the log restarts or is cut to `lost_from` (where the lost bytes began).
    failed: c_int,
    lost_from: i64,
    /// A log: its next write-out fails ([`FCNTL_FAIL_WRITE_OUT`], tests only).
    fail_write_out: bool,
}

const SHIM_BYTES: usize = std::mem::size_of::<Shim>().next_multiple_of(16);

/// Runs an entry point, answering `SQLITE_IOERR` instead of unwinding into SQLite.
fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(ffi::SQLITE_IOERR)
}

/// The `Shim` of a file SQLite opened with [`open`] and gave [`METHODS`].
///
/// # Safety
/// `file` must be such a file, not closed, used by this thread only.
unsafe fn shim<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Shim {
    // SAFETY: by the caller's promise.
    unsafe { &mut *(file as *mut Shim) }
}

impl Shim {
    /// The default VFS's methods of the file under this one.
    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: `real` was opened by the default VFS (its `pMethods` is set while open).
        unsafe { &*(*self.real).pMethods }
    }

    /// Writes the buffer out (a log's; nothing for a database). The buffer is emptied either
    /// way: what a failed write left in the file is what SQLite would have after its own
    /// failed write. A failure is also kept (`failed`): the call that wrote the buffer out may
    /// be one whose error SQLite drops or cannot turn into a failed commit (an unlock, the
    /// barrier), so every later call on the log that can report an error answers it
    /// ([`Shim::ready`]) until the frames it lost no longer count.
    fn flush(&mut self) -> c_int {
        if self.buffer.is_empty() {
            return ffi::SQLITE_OK;
        }
        let fail = std::mem::take(&mut self.fail_write_out);
        let rc = match self.methods().xWrite {
            _ if fail => ffi::SQLITE_IOERR_WRITE,
            // SAFETY: `real` is open; the buffer holds `len` initialised bytes (≤ BUFFER_BYTES,
            // which fits a c_int).
            Some(write) => unsafe {
                write(
                    self.real,
                    self.buffer.as_ptr() as *const c_void,
                    self.buffer.len() as c_int,
                    self.start,
                )
            },
            None => ffi::SQLITE_IOERR_WRITE,
        };
        self.writes += 1;
        let rc = match rc {
            ffi::SQLITE_OK | ffi::SQLITE_FULL => rc,
            _ => ffi::SQLITE_IOERR_WRITE,
        };
        if rc != ffi::SQLITE_OK {
            self.lost_from = if self.failed == ffi::SQLITE_OK {
                self.start
            } else {
                self.lost_from.min(self.start)
            };
            self.failed = rc;
        }
        self.buffer.clear();
        rc
    }

    /// A log before any call but a write: its buffer written out, and the error of a
    /// write-out that failed before, if one did.
    fn ready(&mut self) -> c_int {
        match self.flush() {
            ffi::SQLITE_OK => self.failed,
            rc => rc,
        }
    }

    /// Writes the log's buffer out: its own for a log, its log's for a database.
    fn flush_log(&mut self) -> c_int {
        match self.kind {
            Kind::Log => self.flush(),
            Kind::Database if !self.peer.is_null() => {
                // SAFETY: a linked log is open (it unlinks itself when closed) and belongs to
                // the same connection, used by this thread.
                unsafe { (*self.peer).flush() }
            }
            Kind::Database => ffi::SQLITE_OK,
        }
    }

    /// A log's write: appended to the buffer when it continues it, otherwise the buffer is
    /// written out first and the write starts a new one. The page of a frame that ends a
    /// transaction writes the buffer out at once: its error is the commit's, whether or not
    /// an `xSync` follows (`synchronous` below `FULL`).
    ///
    /// After a failed write-out only the log's restart is written: its header at offset 0,
    /// whose new salts make every frame after it invalid (the WAL format), lost ones too.
    fn write(&mut self, data: *const c_void, amount: c_int, offset: i64) -> c_int {
        let restarts = self.kind == Kind::Log && offset == 0;
        if self.failed != ffi::SQLITE_OK && !restarts {
            return self.failed;
        }
        let len = amount.max(0) as usize;
        let buffers = self.kind == Kind::Log && !self.peer.is_null() && len <= BUFFER_BYTES;
        let continues = !self.buffer.is_empty()
            && offset == self.start + self.buffer.len() as i64
            && self.buffer.len() + len <= BUFFER_BYTES;
        if !(continues && buffers) {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK && !restarts {
                return rc;
            }
        }
        if restarts {
            self.failed = ffi::SQLITE_OK;
        }
        if buffers
            && (self.buffer.capacity() >= BUFFER_BYTES
                || self.buffer.try_reserve_exact(BUFFER_BYTES).is_ok())
        {
            if self.buffer.is_empty() {
                self.start = offset;
            }
            // SAFETY: SQLite passes `amount` readable bytes at `data`.
            let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
            // Within the capacity reserved: never reallocates.
            self.buffer.extend_from_slice(bytes);
            self.appends += 1;
            let ends_transaction = std::mem::replace(
                &mut self.commit,
                len == FRAME_HEADER_BYTES && offset >= LOG_HEADER_BYTES && bytes[4..8] != [0; 4],
            );
            return if ends_transaction {
                self.flush()
            } else {
                ffi::SQLITE_OK
            };
        }
        match self.methods().xWrite {
            // SAFETY: passing SQLite's own arguments to the file under this one.
            Some(write) => unsafe { write(self.real, data, amount, offset) },
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

/// Calls the default VFS file's method `$m` with `$args` after the log's buffer is written out
/// (a log: its own; a database: nothing), answering the write's error if it failed, or a
/// failed write-out's that is still kept ([`Shim::ready`]).
macro_rules! through {
    ($file:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: `$file` is a file of this VFS (SQLite calls its methods with it).
        let shim = unsafe { shim($file) };
        let rc = if shim.kind == Kind::Log { shim.ready() } else { ffi::SQLITE_OK };
        if rc != ffi::SQLITE_OK {
            rc
        } else {
            match shim.methods().$m {
                // SAFETY: SQLite's own arguments, passed to the file under this one.
                Some(method) => unsafe { method(shim.real $(, $arg)*) },
                None => $missing,
            }
        }
    }};
}

mod passthrough;

use passthrough::{
    access, check_reserved_lock, current_time, current_time_int64, delete, device_characteristics,
    dl_close, dl_error, dl_open, dl_sym, fetch, file_size, full_pathname, get_last_error,
    get_system_call, lock, next_system_call, randomness, read, sector_size, set_system_call,
    shm_map, sleep, sync, unfetch, unlock,
};

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(|| {
        // SAFETY: `vfs` is ours: its `pAppData` is the leaked registration.
        let registration = unsafe { &*((*vfs).pAppData as *const Registration) };
        // SAFETY: the default VFS lives for ever.
        let base = unsafe { &*registration.base };
        let Some(base_open) = base.xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let kind = if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            Kind::Database
        } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
            Kind::Log
        } else {
            // Journals, temporary files: the default VFS's own file, in the space SQLite gave
            // (larger than it needs).
            // SAFETY: SQLite's arguments, with the default VFS.
            return unsafe { base_open(registration.base, name, file, flags, out_flags) };
        };
        // SAFETY: SQLite gave `szOsFile` bytes at `file`: the shim, then the default's file.
        let real = unsafe { (file as *mut u8).add(SHIM_BYTES) } as *mut ffi::sqlite3_file;
        // SAFETY: as above; a failed open must leave `pMethods` null, or SQLite closes it.
        unsafe {
            (*file).pMethods = ptr::null();
            (*real).pMethods = ptr::null();
        }
        // SAFETY: SQLite's arguments, with the default VFS and its file's space.
        let rc = unsafe { base_open(registration.base, name, real, flags, out_flags) };
        // SAFETY: `real` was just opened (or failed, leaving `pMethods` as the VFS decided).
        let real_methods = unsafe { (*real).pMethods };
        if rc != ffi::SQLITE_OK || real_methods.is_null() {
            if !real_methods.is_null() {
                // SAFETY: the default VFS asked for its file to be closed despite the failure.
                if let Some(close) = unsafe { (*real_methods).xClose } {
                    unsafe { close(real) };
                }
            }
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        // SAFETY: `file` has room for a Shim (SHIM_BYTES ≥ its size, aligned as SQLite aligns
        // file objects: 8 bytes, all this struct needs).
        unsafe {
            ptr::write(
                file as *mut Shim,
                Shim {
                    file: ffi::sqlite3_file { pMethods: &METHODS },
                    real,
                    registration,
                    kind,
                    name: 0,
                    peer: ptr::null_mut(),
                    buffer: Vec::new(),
                    start: 0,
                    appends: 0,
                    writes: 0,
                    commit: false,
                    failed: ffi::SQLITE_OK,
                    lost_from: 0,
                    fail_write_out: false,
                },
            );
        }
        // SAFETY: just written.
        let this = unsafe { shim(file) };
        let mut databases = registration
            .databases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match kind {
            Kind::Database if !name.is_null() => {
                this.name = name as usize;
                databases.insert(this.name, this as *mut Shim as usize);
            }
            Kind::Database => {}
            Kind::Log if name.is_null() => {}
            Kind::Log => {
                // SAFETY: `name` is the log's name as SQLite passed it to xOpen.
                let database = unsafe { ffi::sqlite3_filename_database(name) } as usize;
                if let Some(&database) = databases.get(&database) {
                    let database = database as *mut Shim;
                    this.peer = database;
                    // SAFETY: a database in the table is open (it leaves the table when
                    // closed), and is this log's connection's, on this thread.
                    unsafe { (*database).peer = this };
                }
            }
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(|| {
        // SAFETY: SQLite closes a file of this VFS once.
        let this = unsafe { shim(file) };
        let flushed = match this.kind {
            Kind::Log => this.ready(),
            Kind::Database => {
                // SAFETY: the registration is leaked.
                let registration = unsafe { &*this.registration };
                let mut databases = registration
                    .databases
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if databases.get(&this.name) == Some(&(this as *mut Shim as usize)) {
                    databases.remove(&this.name);
                }
                // A log still open (SQLite closes it first) is written out and unlinked.
                this.flush_log()
            }
        };
        if !this.peer.is_null() {
            // SAFETY: the peer is open (see `flush_log`).
            unsafe { (*this.peer).peer = ptr::null_mut() };
            this.peer = ptr::null_mut();
        }
        let closed = match this.methods().xClose {
            // SAFETY: the file under this one is closed once, here.
            Some(close) => unsafe { close(this.real) },
            None => ffi::SQLITE_OK,
        };
        // SAFETY: the Shim was written by `open` and is not used after this.
        unsafe { ptr::drop_in_place(file as *mut Shim) };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    })
}

/// Cutting the log: a failed write-out stops counting once the log is cut at or below where
/// its bytes began (a truncating checkpoint, the log cut to `journal_size_limit`).
unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        // A failure is kept in `failed`, answered below unless the cut leaves it behind.
        this.flush();
        let rc = match this.methods().xTruncate {
            // SAFETY: SQLite's arguments, to the file under this one.
            Some(method) => unsafe { method(this.real, size) },
            None => ffi::SQLITE_IOERR_TRUNCATE,
        };
        if rc == ffi::SQLITE_OK && this.failed != ffi::SQLITE_OK && size <= this.lost_from {
            this.failed = ffi::SQLITE_OK;
        }
        if rc != ffi::SQLITE_OK {
            rc
        } else {
            this.failed
        }
    })
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls its file's method with the file.
    guard(|| unsafe { shim(file) }.write(data, amount, offset))
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    guard(|| {
        if op == FCNTL_COUNTS {
            // SAFETY: SQLite calls its file's method with the file.
            let this = unsafe { shim(file) };
            if this.kind != Kind::Database || this.peer.is_null() || arg.is_null() {
                return ffi::SQLITE_NOTFOUND;
            }
            // SAFETY: the linked log is open; the caller of this private opcode passes a
            // `[u64; 2]`.
            unsafe {
                let log = &*this.peer;
                *(arg as *mut [u64; 2]) = [log.appends, log.writes];
            }
            return ffi::SQLITE_OK;
        }
        #[cfg(test)]
        if op == FCNTL_FAIL_WRITE_OUT {
            // SAFETY: SQLite calls its file's method with the file.
            let this = unsafe { shim(file) };
            if this.kind != Kind::Database || this.peer.is_null() {
                return ffi::SQLITE_NOTFOUND;
            }
            // SAFETY: the linked log is open, on this thread.
            unsafe { (*this.peer).fail_write_out = true };
            return ffi::SQLITE_OK;
        }
        through!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
    })
}

/// Taking or releasing a lock of the log index: the log's buffer is written out first, so no
/// other connection is let in while a frame the index may name is still in memory. An unlock
/// is done even when that write failed (its error is answered).
unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        let flushed = this.flush_log();
        if flushed != ffi::SQLITE_OK && flags & ffi::SQLITE_SHM_UNLOCK == 0 {
            return flushed;
        }
        let rc = match this.methods().xShmLock {
            // SAFETY: SQLite's arguments, to the file under this one.
            Some(method) => unsafe { method(this.real, offset, n, flags) },
            None => ffi::SQLITE_IOERR_SHMLOCK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    })
}

/// wal.c's barrier between the two copies of a new index header: the log's frames are written
/// out before it (a commit's already were, with the page of its last frame).
unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        // No way to report a failure here: it is kept, and answered by the log's next call.
        this.flush_log();
        if let Some(method) = this.methods().xShmBarrier {
            // SAFETY: the file under this one.
            unsafe { method(this.real) };
        }
        ffi::SQLITE_OK
    });
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        let flushed = this.flush_log();
        let rc = match this.methods().xShmUnmap {
            // SAFETY: SQLite's arguments, to the file under this one.
            Some(method) => unsafe { method(this.real, delete) },
            None => ffi::SQLITE_OK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    })
}

#[cfg(test)]
mod tests;
