//! The entry points of the VFS that only hand SQLite's call to the default VFS (decision
//! 0059): a file's, after its log's buffer is written out and any failed write-out answered
//! (`through!`), and the VFS's own, called with the default VFS. What the buffer does is in the
//! parent module.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use libsqlite3_sys as ffi;

use super::{guard, shim, Kind, Registration};

pub(super) unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    guard(|| through!(file, xRead, ffi::SQLITE_IOERR_READ, data, amount, offset))
}

pub(super) unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    guard(|| through!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags))
}

pub(super) unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    guard(|| through!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size))
}

pub(super) unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(|| through!(file, xLock, ffi::SQLITE_IOERR_LOCK, level))
}

pub(super) unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(|| through!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level))
}

pub(super) unsafe extern "C" fn check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    guard(|| {
        through!(
            file,
            xCheckReservedLock,
            ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
            out
        )
    })
}

pub(super) unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        match this.methods().xSectorSize {
            // SAFETY: the file under this one.
            Some(method) => unsafe { method(this.real) },
            None => 4096,
        }
    })
}

pub(super) unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls its file's method with the file.
        let this = unsafe { shim(file) };
        match this.methods().xDeviceCharacteristics {
            // SAFETY: the file under this one.
            Some(method) => unsafe { method(this.real) },
            None => 0,
        }
    })
}

pub(super) unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    guard(|| {
        through!(
            file,
            xShmMap,
            ffi::SQLITE_IOERR_SHMMAP,
            page,
            page_size,
            extend,
            out
        )
    })
}

pub(super) unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: SQLite's out pointer; "no mapping" is a valid answer.
        unsafe { *out = ptr::null_mut() };
        through!(file, xFetch, ffi::SQLITE_OK, offset, amount, out)
    })
}

pub(super) unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    guard(|| through!(file, xUnfetch, ffi::SQLITE_OK, offset, page))
}

// ---------------------------------------------------------------------------------------------
// The VFS's own methods: the default VFS's, called with the default VFS.

/// The default VFS under `vfs` (ours).
///
/// # Safety
/// `vfs` must be this module's registered VFS.
unsafe fn base<'a>(vfs: *mut ffi::sqlite3_vfs) -> (&'a ffi::sqlite3_vfs, *mut ffi::sqlite3_vfs) {
    // SAFETY: by the caller's promise, `pAppData` is the leaked registration.
    unsafe {
        let base = (*((*vfs).pAppData as *const Registration)).base;
        (&*base, base)
    }
}

macro_rules! vfs_through {
    ($vfs:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: SQLite calls our VFS's methods with our VFS; its arguments go to the default.
        unsafe {
            let (base, pointer) = base($vfs);
            match base.$m {
                Some(method) => method(pointer $(, $arg)*),
                None => $missing,
            }
        }
    }};
}

pub(super) unsafe extern "C" fn delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    vfs_through!(vfs, xDelete, ffi::SQLITE_IOERR_DELETE, name, sync_dir)
}

pub(super) unsafe extern "C" fn access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    vfs_through!(vfs, xAccess, ffi::SQLITE_IOERR_ACCESS, name, flags, out)
}

pub(super) unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    vfs_through!(vfs, xFullPathname, ffi::SQLITE_CANTOPEN, name, size, out)
}

pub(super) unsafe extern "C" fn dl_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
) -> *mut c_void {
    vfs_through!(vfs, xDlOpen, ptr::null_mut(), name)
}

pub(super) unsafe extern "C" fn dl_error(
    vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) {
    vfs_through!(vfs, xDlError, (), size, out)
}

type Symbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

pub(super) unsafe extern "C" fn dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Symbol {
    vfs_through!(vfs, xDlSym, None, handle, symbol)
}

pub(super) unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    vfs_through!(vfs, xDlClose, (), handle)
}

pub(super) unsafe extern "C" fn randomness(
    vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    vfs_through!(vfs, xRandomness, 0, size, out)
}

pub(super) unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    vfs_through!(vfs, xSleep, 0, micros)
}

pub(super) unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    vfs_through!(vfs, xCurrentTime, ffi::SQLITE_ERROR, out)
}

pub(super) unsafe extern "C" fn get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    vfs_through!(vfs, xGetLastError, 0, size, out)
}

pub(super) unsafe extern "C" fn current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut i64,
) -> c_int {
    vfs_through!(vfs, xCurrentTimeInt64, ffi::SQLITE_ERROR, out)
}

pub(super) unsafe extern "C" fn set_system_call(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    call: ffi::sqlite3_syscall_ptr,
) -> c_int {
    vfs_through!(vfs, xSetSystemCall, ffi::SQLITE_NOTFOUND, name, call)
}

pub(super) unsafe extern "C" fn get_system_call(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
) -> ffi::sqlite3_syscall_ptr {
    vfs_through!(vfs, xGetSystemCall, None, name)
}

pub(super) unsafe extern "C" fn next_system_call(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
) -> *const c_char {
    vfs_through!(vfs, xNextSystemCall, ptr::null(), name)
}
