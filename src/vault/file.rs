//! Reading and writing the vault file: a size-capped read, crash-safe
//! replacement (temporary file, fsync, backup, rename, directory fsync) and
//! exclusive creation. Files are 0600, directories this code creates 0700.
//!
//! Writers take an exclusive `flock` on `PATH.lock` for the whole sequence,
//! so two processes saving at once cannot interleave their writes to the
//! shared temporary names and put a torn file in place. A running mount
//! holds a shared `flock` on `PATH.inuse` for its life; a change of the
//! master key takes it exclusively and is refused while any mount holds it.
//! Lock files are never removed (removing one would let a late locker lock
//! a deleted inode); they hold no data.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::VaultError;
use super::format::MAX_FILE_LEN;
use crate::platform::{errno, oflags};

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads the whole vault file, refusing anything larger than a vault can be.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, VaultError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => VaultError::NotFound(path.to_path_buf()),
        _ => VaultError::io(path, e),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| VaultError::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(VaultError::corrupt(
            path,
            format!("the file is larger than {MAX_FILE_LEN} bytes, far more than any vault"),
        ));
    }
    Ok(bytes)
}

/// Writes `bytes` to `tmp` (mode 0600, truncating any leftover) and fsyncs it.
fn write_synced(tmp: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io = |e| VaultError::io(tmp, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io)?;
    // A leftover file keeps its old mode through `open`; set it outright.
    f.set_permissions(Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    crate::platform::sync_all(&f).map_err(io)
}

/// Takes the writers' lock for `path`, blocking until it is free. Released
/// when the returned file is dropped.
fn lock(path: &Path) -> Result<File, VaultError> {
    let lock_path = with_suffix(path, ".lock");
    let io = |e| VaultError::io(&lock_path, e);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io(e.into()))?;
    Ok(f)
}

/// The lock that says running mounts hold this vault's master key: taken
/// shared by each mount for its life (non-blocking: refused only while a
/// master-key change runs) and exclusively by a master-key change (refused
/// while any mount holds it). Released when the file is closed, which the
/// kernel does when the process dies however it dies.
///
/// A mount whose vault sits in a directory it cannot write (read-only
/// media) takes no hold when the lock file does not exist: nobody can
/// change that vault's master key either, since a change renames files in
/// that directory.
pub(crate) fn lock_in_use(path: &Path, exclusive: bool) -> Result<Option<File>, VaultError> {
    use rustix::fs::FlockOperation;
    let lock_path = with_suffix(path, ".inuse");
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(oflags::O_NOFOLLOW)
        .open(&lock_path);
    let read_only_dir = |e: &std::io::Error| {
        matches!(
            e.raw_os_error(),
            Some(errno::EROFS | errno::EACCES | errno::EPERM)
        )
    };
    let f = match opened {
        Ok(f) => f,
        Err(e) if !exclusive && read_only_dir(&e) => {
            match OpenOptions::new()
                .read(true)
                .custom_flags(oflags::O_NOFOLLOW)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e2) if e2.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e2) => return Err(VaultError::io(&lock_path, e2)),
            }
        }
        Err(e) => return Err(VaultError::io(&lock_path, e)),
    };
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match rustix::fs::flock(&f, op) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) if exclusive => {
            Err(VaultError::InUse(path.to_path_buf()))
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Err(VaultError::BeingChanged(path.to_path_buf())),
        Err(e) => Err(VaultError::io(&lock_path, e.into())),
    }
}

/// Fsyncs the directory holding `path`, so that a rename in it is durable.
fn sync_dir(path: &Path) -> Result<(), VaultError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| crate::platform::sync_all(&d))
        .map_err(|e| VaultError::io(dir, e))
}

/// The current file at `path`, if there is one, read under the writers'
/// lock for a writer's check.
fn current(path: &Path) -> Result<Option<Vec<u8>>, VaultError> {
    match fs::read(path) {
        Ok(old) => Ok(Some(old)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VaultError::io(path, e)),
    }
}

/// Replaces the file at `path` with `bytes` so that a failure at any point
/// leaves `path` as it was: under the writers' lock, `unchanged` looks at
/// the current file (and refuses when another writer changed it since the
/// caller read it), then `PATH.tmp` is written and fsynced, the current
/// file copied to `PATH.bak` (through `PATH.bak.tmp`), `PATH.tmp` renamed
/// over `PATH` and the directory fsynced.
pub(crate) fn replace(
    path: &Path,
    bytes: &[u8],
    unchanged: impl FnOnce(&[u8]) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let tmp = with_suffix(path, ".tmp");
    let bak = with_suffix(path, ".bak");
    let bak_tmp = with_suffix(path, ".bak.tmp");
    let _lock = lock(path)?;
    let old = current(path)?;
    if let Some(old) = &old {
        unchanged(old)?;
    }
    let result = (|| {
        write_synced(&tmp, bytes)?;
        if let Some(old) = &old {
            write_synced(&bak_tmp, old)?;
            fs::rename(&bak_tmp, &bak).map_err(|e| VaultError::io(&bak, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| VaultError::io(path, e))?;
        sync_dir(path)
    })();
    if result.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&bak_tmp);
    }
    result
}

/// Replaces the file at `path` and its backup `PATH.bak` both with `bytes`,
/// for a change of the master key: no copy that an old secret opens is
/// left under any name this code writes. Each name is still replaced
/// atomically, the backup first: a crash before the last rename leaves
/// `PATH` as it was (the change did not happen, and the old secret still
/// opens it), after it both names hold the new file. Leftover temporary
/// files are overwritten on the way. (Blocks the filesystem freed are not
/// wiped: a copy on the raw device, in a filesystem snapshot or in a
/// backup of the directory outlives this.) `unchanged` looks at the current
/// file first, as for [`replace`].
pub(crate) fn replace_with_backup(
    path: &Path,
    bytes: &[u8],
    unchanged: impl FnOnce(&[u8]) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let tmp = with_suffix(path, ".tmp");
    let bak = with_suffix(path, ".bak");
    let bak_tmp = with_suffix(path, ".bak.tmp");
    let _lock = lock(path)?;
    if let Some(old) = current(path)? {
        unchanged(&old)?;
    }
    let result = (|| {
        write_synced(&tmp, bytes)?;
        write_synced(&bak_tmp, bytes)?;
        fs::rename(&bak_tmp, &bak).map_err(|e| VaultError::io(&bak, e))?;
        // The backup's rename is durable before the file's: a power loss can
        // never keep the new file and lose the new backup (leaving the old
        // one, which the old secret opens).
        sync_dir(path)?;
        crate::faults::crash_point("vault-backup-replaced");
        fs::rename(&tmp, path).map_err(|e| VaultError::io(path, e))?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&bak_tmp);
    }
    result
}

/// Creates the file at `path` holding `bytes`, refusing to replace an
/// existing one, with parent directories created 0700. The content appears
/// whole or not at all: it is written to `PATH.tmp`, fsynced, then linked
/// into place (which fails if `PATH` exists).
pub(crate) fn create(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(VaultError::Exists(path.to_path_buf()));
    }
    let dir = parent_dir(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| VaultError::io(dir, e))?;
    let tmp = with_suffix(path, ".tmp");
    let _lock = lock(path)?;
    let result = (|| {
        write_synced(&tmp, bytes)?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(VaultError::Exists(path.to_path_buf()))
            }
            // Filesystems without hard links: check, then rename.
            Err(_) => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(VaultError::Exists(path.to_path_buf()));
                }
                fs::rename(&tmp, path).map_err(|e| VaultError::io(path, e))?;
            }
        }
        // A vault that may not survive a crash is not handed out: its
        // recovery key would be shown for a file that might vanish.
        sync_dir(path).inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
    })();
    // After a link the temporary name is a second name for the vault; after a
    // rename or a failure it is gone or garbage. Remove it either way.
    let _ = fs::remove_file(&tmp);
    result
}
