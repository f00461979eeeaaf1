//! Where bytes live: durable small-file writes and the per-directory id
//! files of the backing store.

use std::io::Write;
use std::path::Path;

/// Name of the per-directory id file in every backing directory.
pub const DIRID_NAME: &str = ".dirid";

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, fsync the directory. On failure `path` is
/// untouched and the temp file removed.
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
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a fresh random directory id into backing directory `dir`.
pub fn write_dirid(dir: &Path) -> std::io::Result<[u8; 16]> {
    let id: [u8; 16] = crate::crypto::random_array();
    atomic_write(&dir.join(DIRID_NAME), &id)?;
    Ok(id)
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
}
