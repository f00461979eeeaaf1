//! Where bytes live: backing directories reached by descriptor (and a
//! bounded cache of them), durable small-file writes and the per-directory
//! id files of the backing store.

mod dir;
mod dircache;
pub mod walk;
pub mod xattrs;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

pub use dir::{Dir, Entry};
pub use dircache::{DirCache, DEFAULT_CAPACITY as DIR_CACHE_CAPACITY};

/// Name of the per-directory id file in every backing directory.
pub const DIRID_NAME: &str = ".dirid";
/// Name of its backup copy beside it (`verify --repair` restores either from
/// the other).
pub const DIRID_BACKUP: &str = ".dirid.bak";

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, fsync the directory. On failure `path` is
/// untouched and the temp file removed. The temp file is always a new one
/// (whatever had its name is removed first, and it is created exclusively,
/// never through a symlink): a symlink planted under its name in a store
/// cannot make the write land elsewhere.
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(crate::platform::oflags::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        crate::platform::sync_all(&f)?;
        std::fs::rename(&tmp, path)?;
        crate::platform::sync_all(std::fs::File::open(dir)?)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a fresh random directory id into backing directory `dir`, and its
/// backup copy.
pub fn write_dirid(dir: &Path) -> std::io::Result<[u8; 16]> {
    let id: [u8; 16] = crate::crypto::random_array();
    atomic_write(&dir.join(DIRID_BACKUP), &id)?;
    atomic_write(&dir.join(DIRID_NAME), &id)?;
    Ok(id)
}

/// Writes a given directory id (both copies) into backing directory `dir`.
pub fn write_dirid_value(dir: &Path, id: &[u8; 16]) -> std::io::Result<()> {
    atomic_write(&dir.join(DIRID_BACKUP), id)?;
    atomic_write(&dir.join(DIRID_NAME), id)
}

/// Gives the new, empty backing directory `dir` a fresh random id and its
/// backup copy, both durable before this returns: entries created in the
/// directory later are only readable with the id.
pub fn init_dirid(dir: &Dir) -> std::io::Result<[u8; 16]> {
    let id: [u8; 16] = crate::crypto::random_array();
    for name in [DIRID_BACKUP, DIRID_NAME] {
        let mut f = dir.create_file(OsStr::new(name), 0o600)?;
        f.write_all(&id)?;
        crate::platform::sync_data(&f)?;
    }
    dir.sync()?;
    Ok(id)
}

/// Reads the directory id of the open backing directory `dir`, falling
/// back to the backup copy when the primary is missing or not 16 bytes.
pub fn read_dirid_at(dir: &Dir) -> std::io::Result<([u8; 16], DirIdSource)> {
    let read = |name: &str| -> std::io::Result<[u8; 16]> {
        let raw = dir.read_small(OsStr::new(name), 16)?;
        <[u8; 16]>::try_from(raw.as_slice()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name} is not 16 bytes"),
            )
        })
    };
    match read(DIRID_NAME) {
        Ok(id) => Ok((id, DirIdSource::Primary)),
        Err(primary) => match read(DIRID_BACKUP) {
            Ok(id) => Ok((id, DirIdSource::Backup)),
            Err(_) => Err(primary),
        },
    }
}

/// Which copy a directory id was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirIdSource {
    /// The primary `.dirid`.
    Primary,
    /// The backup `.dirid.bak` (the primary is missing or damaged).
    Backup,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        atomic_write(&p, b"one").expect("write");
        atomic_write(&p, b"two").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
    }

    #[test]
    fn atomic_write_never_writes_through_a_planted_temp_symlink() {
        let d = tempfile::tempdir().expect("tmp");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, d.path().join(".f.tmp")).expect("symlink");
        atomic_write(&d.path().join("f"), b"data").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"data");
    }

    #[test]
    fn lost_dirid_is_read_from_its_backup() {
        let d = tempfile::tempdir().expect("tmp");
        let id = write_dirid(d.path()).expect("write");
        let read_dirid = |p: &Path| read_dirid_at(&Dir::open(p).expect("open"));
        assert_eq!(
            read_dirid(d.path()).expect("read"),
            (id, DirIdSource::Primary)
        );
        std::fs::remove_file(d.path().join(DIRID_NAME)).expect("rm");
        assert_eq!(
            read_dirid(d.path()).expect("read"),
            (id, DirIdSource::Backup)
        );
        std::fs::write(d.path().join(DIRID_NAME), b"short").expect("write");
        assert_eq!(
            read_dirid(d.path()).expect("read"),
            (id, DirIdSource::Backup)
        );
        std::fs::remove_file(d.path().join(DIRID_BACKUP)).expect("rm");
        assert!(read_dirid(d.path()).is_err());
    }
}
