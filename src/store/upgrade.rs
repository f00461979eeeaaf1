//! Bringing a store of an older format up to the current one at its first
//! read-write mount: from format 3 on, every backing file of a disk has a
//! header from its creation, so a file that a store before format 3 left
//! empty (never written) gets one now; then an empty backing file is
//! damage. Format 4 (size attributes) needs nothing of the files: the
//! config only records it, so that older strata leave the store alone.
//! Snapshots and images stay as they were taken.

use std::ffi::OsStr;
use std::sync::Arc;

use super::config::HEADERS_AT_CREATE;
use super::{Config, StoreError};
use crate::backing::walk::{self, Node, Visitor};
use crate::backing::Dir;
use crate::file::{EncFile, FileCtx, OpenSpec};
use crate::format::FileType;
use crate::layers::Pipeline;

/// One disk to bring up: its backing root and its ciphers.
pub struct DiskToUpgrade<'a> {
    /// The disk's name (for messages).
    pub name: &'a str,
    /// Its backing root.
    pub root: &'a std::path::Path,
    /// Its ciphers.
    pub pipeline: Arc<Pipeline>,
}

/// Whether `config` is of an older format than this strata writes.
pub fn needed(config: &Config) -> bool {
    config.format < super::config::STORE_FORMAT
}

/// Whether `config` is of a format before every file had a header (the
/// step that needs every disk's keys).
pub fn needs_headers(config: &Config) -> bool {
    config.format < HEADERS_AT_CREATE
}

/// Gives every empty regular backing file of `disks` (of the store at
/// `store`) a header. Returns how many files got one. Each disk's root is
/// reached from the store through no symlink.
pub fn give_headers(
    store: &std::path::Path,
    disks: &[DiskToUpgrade<'_>],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for d in disks {
        let rel = d.root.strip_prefix(store).map_err(|_| {
            StoreError::Invalid(format!("{} is not inside the store", d.root.display()))
        })?;
        let root = Dir::open_below(store, rel).map_err(super::io(d.root))?;
        let mut v = Headers { d, n: 0 };
        walk::walk(&root, d.root, (), &mut v)?;
        n += v.n;
    }
    Ok(n)
}

/// The walk of one disk (by descriptor: any depth).
struct Headers<'a, 'b> {
    d: &'a DiskToUpgrade<'b>,
    n: u64,
}

impl Visitor for Headers<'_, '_> {
    type Error = StoreError;
    type Scope = ();

    fn entry(&mut self, e: &Node<'_>, _: &mut ()) -> Result<Option<()>, StoreError> {
        if e.name.as_encoded_bytes().first() == Some(&b'.') {
            return Ok(None);
        }
        match e.kind() {
            rustix::fs::FileType::Directory => return Ok(Some(())),
            rustix::fs::FileType::RegularFile if e.stat.st_size == 0 => {
                header_for(e.parent, e.name, self.d)?;
                self.n += 1;
            }
            _ => {}
        }
        Ok(None)
    }
}

fn header_for(dir: &Dir, name: &OsStr, d: &DiskToUpgrade<'_>) -> Result<(), StoreError> {
    let fd = dir.open_file(name, true).map_err(super::io(d.root))?;
    let label = format!("{}/…/{}", d.root.display(), name.to_string_lossy());
    let f = EncFile::create(
        OpenSpec {
            fd,
            label,
            ino: 0,
            writable: true,
            size_cell: None,
        },
        FileCtx::offline(d.pipeline.clone(), Default::default()),
        FileType::Regular,
    )
    .map_err(|e| StoreError::Invalid(format!("disk {}: {e}", d.name)))?;
    f.sync(true)
        .map_err(|e| StoreError::Invalid(format!("disk {}: {e}", d.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key64;
    use crate::layers::{DiskKeys, Layer};

    #[test]
    fn empty_files_at_any_depth_get_a_header_and_others_are_left_alone() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/b/empty"), b"").expect("write");
        std::fs::write(root.join("empty"), b"").expect("write");
        std::fs::write(root.join("full"), b"not touched").expect("write");
        std::fs::write(root.join(".dirid"), b"").expect("write");
        let mut k = DiskKeys::default();
        k.set(Layer::StoragePmk, Key64::random(), 1);
        let p = Arc::new(Pipeline::new(&k, b"s"));
        let n = give_headers(
            root,
            &[DiskToUpgrade {
                name: "data",
                root,
                pipeline: p.clone(),
            }],
        )
        .expect("upgrade");
        assert_eq!(n, 2);
        for f in ["a/b/empty", "empty"] {
            let fd = std::fs::File::open(root.join(f)).expect("open");
            assert!(matches!(
                crate::file::read_header(&fd, f, &p),
                Ok(crate::file::Stored::Header(_, 0))
            ));
        }
        assert_eq!(
            std::fs::read(root.join("full")).expect("read"),
            b"not touched"
        );
        assert_eq!(std::fs::read(root.join(".dirid")).expect("read"), b"");
    }
}
