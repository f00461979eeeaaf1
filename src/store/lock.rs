//! The store lock: one exclusive `flock` on `STORE/strata.lock` says that
//! the store is in use, by a mount's daemon for its whole life or by an
//! offline command (re-encryption, restore, repair…) for its run. One
//! store, one writer: a second mount or an offline command on a store in
//! use is refused with one line naming the holder.
//!
//! * The lock belongs to the open file, not to a path or a PID: the kernel
//!   drops it when the holder exits, however it exits (SIGKILL included),
//!   so a stale lock cannot outlive its process. The file itself stays
//!   (removing it would let a late locker lock a deleted inode); a lock file
//!   without a lock on it means nothing.
//! * A daemon takes the lock before it touches the store (rotation, temp
//!   emptying) and forks with it: parent and child share the open file, so
//!   the lock stays with the daemon when the parent exits. The file is
//!   opened close-on-exec, so no program the daemon starts inherits it.
//! * The file holds one line of JSON naming the holder (`{"pid":…,
//!   "mount":…}` or `{"pid":…,"command":…}`), rewritten by the holder after
//!   it locks and read by whoever is refused. It is informational only: the
//!   `flock` decides.
//! * Work a running mount does for others (an online snapshot through the
//!   control socket) runs inside the daemon, under its lock.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, StoreError};

/// The lock file's name in the store directory.
pub const LOCK_NAME: &str = "strata.lock";

/// Who holds a store's lock, as its holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// The mountpoint, when the holder is a mount's daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<PathBuf>,
    /// The command, when the holder is an offline command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.mount, &self.command) {
            (Some(m), _) => write!(f, "mounted on {} (daemon pid {})", m.display(), self.pid),
            (None, Some(c)) => write!(f, "in use by `strata {c}` (pid {})", self.pid),
            (None, None) => write!(f, "in use by strata process {}", self.pid),
        }
    }
}

/// The held lock of one store; released when dropped (or when the process
/// ends). It never unlocks explicitly: after a fork, parent and child share
/// the lock, and an unlock by the exiting parent would take it from the
/// daemon; closing one copy does not.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

/// What a command that a running mount allows (an online snapshot, an
/// image of a snapshot, deleting an image) may do: work with the store to
/// itself, or alongside the mount that serves it.
#[derive(Debug)]
pub enum Access {
    /// Nobody else uses the store; the lock is held until this drops.
    Offline(StoreLock),
    /// A mount's daemon holds the store.
    Mounted,
}

/// The lock file of `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    store.join(LOCK_NAME)
}

fn open_lock(store: &Path) -> Result<File, StoreError> {
    if !Config::path(store).is_file() {
        return Err(ConfigError::NotAStore(store.to_path_buf()).into());
    }
    let path = lock_path(store);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(crate::platform::oflags::O_NOFOLLOW)
        .open(&path)
        .map_err(super::io(&path))?;
    // The holder line is written into this file, by root too: never into a
    // file that is also another name (a hard link planted in the store).
    let meta = file.metadata().map_err(super::io(&path))?;
    if !meta.is_file() || std::os::unix::fs::MetadataExt::nlink(&meta) != 1 {
        return Err(StoreError::Invalid(format!(
            "{} is not a plain file of its own (a link or special file): remove it",
            path.display()
        )));
    }
    Ok(file)
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| {
            !matches!(
                rustix::process::test_kill_process(p),
                Err(rustix::io::Errno::SRCH)
            )
        })
}

/// The holder of a lock someone else holds. The holder writes its line
/// just after it locks, so a line that is missing or names a process that
/// is gone (left by an earlier holder) is read again for a moment.
fn current_holder(file: &mut File) -> Option<Holder> {
    let mut last = None;
    for _ in 0..25 {
        let _ = std::io::Seek::rewind(file);
        last = read_holder(file);
        if last.as_ref().is_some_and(|h| alive(h.pid)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    last
}

/// Reads the holder line; `None` if it is missing or not understood.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

impl StoreLock {
    /// Takes the lock of `store` without waiting, for a mount's daemon
    /// (`holder.mount`) or an offline command (`holder.command`). When
    /// someone else holds it, the error names the holder and says that
    /// `what` needs the store to itself.
    pub fn acquire(store: &Path, holder: Holder, what: &str) -> Result<StoreLock, StoreError> {
        let mut file = open_lock(store)?;
        let path = lock_path(store);
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let by = current_holder(&mut file);
                return Err(StoreError::InUse {
                    store: store.to_path_buf(),
                    mounted: by.as_ref().is_some_and(|h| h.mount.is_some()),
                    by: by
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "in use by another strata process".into()),
                    what: what.to_string(),
                });
            }
            Err(e) => return Err(super::io(&path)(e.into())),
        }
        let lock = StoreLock { file, path };
        lock.note(&holder)?;
        Ok(lock)
    }

    /// Takes the lock for an offline command named `command` (e.g.
    /// `disk rekey`), refused with `what` while anyone holds it.
    pub fn offline(store: &Path, command: &str, what: &str) -> Result<StoreLock, StoreError> {
        Self::acquire(
            store,
            Holder {
                pid: std::process::id(),
                mount: None,
                command: Some(command.to_string()),
            },
            what,
        )
    }

    /// Like [`StoreLock::offline`], except that a store held by a mount is
    /// [`Access::Mounted`] instead of an error (a store held by another
    /// offline command is still refused).
    pub fn offline_or_mounted(
        store: &Path,
        command: &str,
        what: &str,
    ) -> Result<Access, StoreError> {
        match Self::offline(store, command, what) {
            Ok(lock) => Ok(Access::Offline(lock)),
            Err(StoreError::InUse { mounted: true, .. }) => Ok(Access::Mounted),
            Err(e) => Err(e),
        }
    }

    /// Rewrites the holder line (a daemon does so after forking, to name
    /// its own PID).
    pub fn note(&self, holder: &Holder) -> Result<(), StoreError> {
        let io = super::io(&self.path);
        let mut line = serde_json::to_string(holder)
            .map_err(|e| StoreError::Invalid(format!("holder line: {e}")))?;
        line.push('\n');
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(line.as_bytes(), 0))
            .map_err(io)
    }
}

/// Who holds the lock of `store` now: `None` when it is free (or the store
/// has no lock file yet). Looks without taking the lock for longer than the
/// look itself.
pub fn holder(store: &Path) -> Result<Option<Holder>, StoreError> {
    let path = lock_path(store);
    let mut file = match File::options()
        .read(true)
        .custom_flags(crate::platform::oflags::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(super::io(&path)(e)),
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        // Free: the shared lock taken for the look drops with the file.
        Ok(()) => Ok(None),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(Some(read_holder(&mut file).unwrap_or(Holder {
            pid: 0,
            mount: None,
            command: None,
        }))),
        Err(e) => Err(super::io(&path)(e.into())),
    }
}

/// Whether a mount's daemon serves `store` now: its lock is held, by a
/// holder that names a mountpoint. (A store held by an offline command,
/// this process's own included, is not mounted.)
pub fn held_by_mount(store: &Path) -> bool {
    matches!(holder(store), Ok(Some(h)) if h.mount.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join(super::super::config::CONFIG_NAME), b"{}").expect("conf");
        d
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let d = store();
        let first = StoreLock::acquire(
            d.path(),
            Holder {
                pid: 42,
                mount: Some("/mnt/one".into()),
                command: None,
            },
            "mounting",
        )
        .expect("first");
        let e = StoreLock::offline(d.path(), "disk rekey", "re-encryption is offline")
            .expect_err("second");
        assert_eq!(
            e.to_string(),
            format!(
                "store {} is mounted on /mnt/one (daemon pid 42): re-encryption is offline; unmount it first",
                d.path().display()
            )
        );
        assert_eq!(
            holder(d.path()).expect("look").and_then(|h| h.mount),
            Some(PathBuf::from("/mnt/one"))
        );
        drop(first);
        assert_eq!(holder(d.path()).expect("look"), None);
        let again = StoreLock::offline(d.path(), "disk rekey", "x").expect("free again");
        let e = StoreLock::offline(
            d.path(),
            "snapshot delete",
            "deleting a snapshot is offline",
        )
        .expect_err("held by a command");
        assert!(
            e.to_string().ends_with(&format!(
                "is in use by `strata disk rekey` (pid {}): deleting a snapshot is offline; try again when it has finished",
                std::process::id()
            )),
            "{e}"
        );
        drop(again);
    }

    #[test]
    fn a_store_counts_as_mounted_only_while_a_mount_holds_its_lock() {
        let d = store();
        assert!(!held_by_mount(d.path()), "no lock file yet");
        let mount = StoreLock::acquire(
            d.path(),
            Holder {
                pid: 42,
                mount: Some("/mnt/one".into()),
                command: None,
            },
            "mounting",
        )
        .expect("mount");
        assert!(held_by_mount(d.path()));
        assert!(super::super::rekey::store_mounted(d.path()));
        drop(mount);
        assert!(
            !held_by_mount(d.path()),
            "the lock file stays, the lock goes"
        );
        // An offline command (this process's own) is not a mount.
        let offline = StoreLock::offline(d.path(), "disk rekey", "x").expect("offline");
        assert!(!held_by_mount(d.path()));
        assert!(!super::super::rekey::store_mounted(d.path()));
        drop(offline);
        assert!(!held_by_mount(&d.path().join("not-a-store")));
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_refused() {
        let d = store();
        let other = d.path().join("other");
        std::fs::write(&other, b"precious").expect("write");
        std::fs::hard_link(&other, lock_path(d.path())).expect("link");
        let e = StoreLock::offline(d.path(), "disk add", "x").expect_err("a link");
        assert!(
            e.to_string().contains("is not a plain file of its own"),
            "{e}"
        );
        assert_eq!(std::fs::read(&other).expect("read"), b"precious");
        std::fs::remove_file(lock_path(d.path())).expect("rm");
        std::os::unix::fs::symlink(&other, lock_path(d.path())).expect("symlink");
        assert!(StoreLock::offline(d.path(), "disk add", "x").is_err());
        assert_eq!(std::fs::read(&other).expect("read"), b"precious");
    }

    #[test]
    fn a_stale_lock_file_locks_nothing_and_garbage_in_it_is_harmless() {
        let d = store();
        std::fs::write(lock_path(d.path()), b"\x00garbage{").expect("write");
        assert_eq!(holder(d.path()).expect("look"), None);
        let l = StoreLock::offline(d.path(), "verify --repair", "x").expect("lock");
        let e = StoreLock::offline(d.path(), "disk add", "y").expect_err("held");
        assert!(e.to_string().contains("`strata verify --repair`"), "{e}");
        drop(l);
    }

    #[test]
    fn only_a_store_gets_a_lock_file() {
        let d = tempfile::tempdir().expect("tmp");
        let e = StoreLock::offline(d.path(), "disk add", "x").expect_err("no store");
        assert!(e.to_string().contains("is not a strata store"), "{e}");
        assert!(!lock_path(d.path()).exists());
    }
}
