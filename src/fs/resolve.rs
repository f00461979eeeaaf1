//! Finding backing objects: a directory by descriptor, opened one name at
//! a time from its disk's root (or its nearest cached ancestor); a child
//! name's backing entry; directory ids; an entry's type and logical size;
//! the one shared encrypted-file object of an inode; and how logs name a
//! backing file.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::fs::Stat;

use super::attr::{backing_kind, Backing};
use super::{Child, Errno, Fs, FsResult, Kind, ROOT_INO};
use crate::backing::{Dir, DirIdSource};
use crate::file::{EncFile, OpenSpec, Stored, SIZE_UNKNOWN};
use crate::format::{FileType, SizeAttr};
use crate::names::NameCodec;
use crate::platform::errno;

/// Deepest chain of directories walked (a PATH_MAX-long path has at most
/// 2048 components; this only stops a damaged table from looping).
const MAX_DEPTH: usize = 1 << 16;

/// What a backing regular file holds, as a lookup needs it.
enum Meta {
    /// A file of this type and logical size.
    Of(FileType, u64),
    /// Nothing (a file never written, in a store before format 3).
    Empty,
    /// A header region a crash left unwritten.
    NoHeader,
}

/// The inode number the kernel sees for backing inode `raw` (the backing
/// filesystem's own root inode number is taken by the mount root).
pub(super) fn fuse_ino(raw: u64) -> u64 {
    match raw {
        ROOT_INO => u64::MAX - 1,
        i => i,
    }
}

impl Fs {
    /// The open backing directory of directory inode `ino`.
    pub(super) fn dir_fd(&self, ino: u64) -> FsResult<Arc<Dir>> {
        if let Some(d) = self.dirs.get(ino) {
            return Ok(d);
        }
        enum Start {
            Root(usize, u64),
            Cached(Arc<Dir>),
        }
        let (start, chain) = {
            let nodes = self.nodes();
            let mut chain: Vec<(u64, OsString)> = Vec::new();
            let mut cur = ino;
            loop {
                let n = nodes.get(cur).ok_or(Errno::ENOENT)?;
                if n.kind != Kind::Dir {
                    return Err(Errno::ENOTDIR);
                }
                if n.root {
                    break (Start::Root(n.disk, cur), chain);
                }
                let l = n.links.first().ok_or(Errno::ENOENT)?;
                chain.push((cur, l.name.clone()));
                if let Some(d) = self.dirs.get(l.parent) {
                    break (Start::Cached(d), chain);
                }
                if chain.len() > MAX_DEPTH {
                    return Err(Errno(errno::ELOOP));
                }
                cur = l.parent;
            }
        };
        let mut dir = match start {
            Start::Cached(d) => d,
            Start::Root(slot, root_ino) => {
                let d = Arc::new(self.open_root(slot)?);
                if fuse_ino(d.stat()?.st_ino) != root_ino {
                    return Err(Errno::ENOENT);
                }
                self.dirs.put(root_ino, d.clone());
                d
            }
        };
        for (ino, name) in chain.into_iter().rev() {
            let next = dir.open_dir(&name)?;
            let st = next.stat()?;
            self.on_device(&st, || name.to_string_lossy().into_owned())?;
            if fuse_ino(st.st_ino) != ino {
                // Changed behind the daemon's back: the name is someone
                // else's now.
                return Err(Errno::ENOENT);
            }
            let next = Arc::new(next);
            self.dirs.put(ino, next.clone());
            dir = next;
        }
        Ok(dir)
    }

    /// The directory id of the open backing directory `dir` of disk `disk`.
    pub(super) fn dir_id(&self, disk: usize, dir: &Dir) -> FsResult<[u8; 16]> {
        let (_, names) = self.disk(disk)?.check()?;
        if matches!(*names, NameCodec::Plain) {
            return Ok([0; 16]);
        }
        match crate::backing::read_dirid_at(dir) {
            Ok((id, DirIdSource::Primary)) => Ok(id),
            Ok((id, DirIdSource::Backup)) => {
                tracing::warn!(disk = %self.disk(disk)?.name, "directory id read from its backup copy; `strata verify --repair` restores it");
                Ok(id)
            }
            Err(e) => match self.mint_dir_id(disk, dir)? {
                Some(id) => Ok(id),
                None => {
                    tracing::error!(disk = %self.disk(disk)?.name, "directory id unreadable: {e}");
                    Err(Errno::EIO)
                }
            },
        }
    }

    /// A new id for the backing directory `dir` whose two id copies are
    /// both missing or unusable, when it holds nothing but strata's own
    /// files: a directory whose creation a power cut cut short (the
    /// directory reached the disk, its ids did not). Without entries there
    /// is no name to decrypt, so any id serves; it is written (both
    /// copies, durably) unless the disk is read-only here. `None` when the
    /// directory has entries: then the loss is damage.
    fn mint_dir_id(&self, disk: usize, dir: &Dir) -> FsResult<Option<[u8; 16]>> {
        // One minting at a time, none while a removal has the ids cleared,
        // and a second look under the lock: two threads must not give one
        // directory two ids.
        let _ids = self.dir_ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok((id, _)) = crate::backing::read_dirid_at(dir) {
            return Ok(Some(id));
        }
        let (_, codec) = self.disk(disk)?.check()?;
        if dir
            .entries()?
            .iter()
            .any(|e| !codec.is_reserved(&e.name) || crate::names::is_sidecar(&e.name))
        {
            return Ok(None);
        }
        let id: [u8; 16] = crate::crypto::random_array();
        if self.disk_writable(disk) {
            for name in [crate::backing::DIRID_BACKUP, crate::backing::DIRID_NAME] {
                dir.replace(OsStr::new(name), &id)?;
            }
        }
        tracing::warn!(disk = %self.disk(disk)?.name, "an empty directory without its id (a creation cut short by a crash) was given a new one");
        Ok(Some(id))
    }

    /// The directory id of directory inode `ino`, cached in its node.
    pub(super) fn cached_dir_id(&self, ino: u64, disk: usize, dir: &Dir) -> FsResult<[u8; 16]> {
        if let Some(id) = self.nodes().get(ino).and_then(|n| n.dir_id) {
            return Ok(id);
        }
        let id = self.dir_id(disk, dir)?;
        if let Some(n) = self.nodes().get_mut(ino) {
            n.dir_id = Some(id);
        }
        Ok(id)
    }

    /// Resolves `name` in directory inode `parent`.
    pub(super) fn child(&self, parent: u64, name: &OsStr) -> FsResult<Child> {
        if parent == ROOT_INO {
            return Err(Errno::EPERM);
        }
        if Self::is_virtual(parent) {
            return Err(Errno::EROFS);
        }
        let disk = self
            .nodes()
            .get(parent)
            .map(|n| n.disk)
            .ok_or(Errno::ENOENT)?;
        let (_, names) = self.disk(disk)?.check()?;
        let dir = self.dir_fd(parent)?;
        let id = self.cached_dir_id(parent, disk, &dir)?;
        let bname = names.encrypt(&id, name)?;
        Ok(Child {
            disk,
            parent,
            dir,
            bname,
        })
    }

    /// The type of backing entry `name` of `dir` (on disk `disk`), and its
    /// logical size when its size attribute or header had to be read to
    /// tell the type.
    pub(super) fn probe(
        &self,
        disk: usize,
        dir: &Dir,
        name: &OsStr,
        st: &Stat,
    ) -> (Kind, Option<u64>) {
        match backing_kind(crate::platform::mode::of(st)) {
            Backing::Is(k) => (k, None),
            Backing::FileOrSymlink => match self.read_stored(disk, dir, name, st) {
                Ok(Meta::Of(FileType::Symlink, size)) => (Kind::Symlink, Some(size)),
                Ok(Meta::Of(FileType::Regular, size)) => (Kind::File, Some(size)),
                Ok(_) => (Kind::File, Some(0)),
                Err(e) => {
                    tracing::error!(errno = e.0, file = %self.label(disk, name), "header unreadable");
                    (Kind::File, None)
                }
            },
        }
    }

    /// What backing file `name` of `dir`, as `st` describes it, holds: its
    /// size attribute when that is believed (see `format::size_attr`), else
    /// its header.
    fn read_stored(&self, disk: usize, dir: &Dir, name: &OsStr, st: &Stat) -> FsResult<Meta> {
        // Reached by requests already admitted (see `Fs::close_disks`).
        let (pipeline, names) = self.disk(disk)?.ciphers()?;
        let trust = self.sessions.trust;
        if trust != 0 && names.is_encrypted() {
            if let Some((t, size)) = self.believed_size(dir, name, st, &pipeline, trust) {
                return Ok(Meta::Of(t, size));
            }
        }
        let fd = dir.open_file(name, false)?;
        Ok(
            match crate::file::read_header(&fd, &self.label(disk, name), &pipeline)? {
                Stored::Header(h, size) => Meta::Of(h.file_type, size),
                Stored::Empty => Meta::Empty,
                Stored::NoHeader { .. } => Meta::NoHeader,
            },
        )
    }

    /// The type and size in the size attribute of backing file `name` of
    /// `dir`, if it is believed: sealed by `pipeline` for the inode `st`
    /// describes (number and modification time) under trust id `trust`,
    /// and not recorded as stale by this session. An attribute read from
    /// another inode (the name replaced since `st` was taken) fails its tag.
    fn believed_size(
        &self,
        dir: &Dir,
        name: &OsStr,
        st: &Stat,
        pipeline: &crate::layers::Pipeline,
        trust: u64,
    ) -> Option<(FileType, u64)> {
        let mut buf = [0u8; crate::format::size_attr::SIZE_ATTR_LEN + 1];
        let n =
            crate::platform::getxattr_at(dir.fd(), name, crate::format::SIZE_ATTR_NAME, &mut buf)
                .ok()?;
        let a = SizeAttr::decode(buf.get(..n)?)?;
        let bound = crate::format::size_attr::Binding::of(st);
        if self.sessions.stale.contains(bound.ino) {
            return None;
        }
        pipeline
            .open_size_attr(&a, &bound, trust)
            .filter(|&(_, size)| size <= crate::file::MAX_SIZE)
    }

    /// The logical size of regular file or symlink inode `ino`, named `name`
    /// in `dir`: from its open file or its cached size, else its size
    /// attribute or header. A header that fails is logged and reported as
    /// size 0 (reading the file then fails), so that the file can still be
    /// listed and removed.
    pub(super) fn logical_size(
        &self,
        ino: u64,
        disk: usize,
        dir: &Dir,
        name: &OsStr,
        st: &Stat,
    ) -> u64 {
        let slot = self.nodes().get(ino).map(|n| n.file.clone());
        if let Some(slot) = &slot {
            let s = slot.size.load(Ordering::Acquire);
            if s != SIZE_UNKNOWN {
                return s;
            }
        }
        let size = match self.read_stored(disk, dir, name, st) {
            Ok(Meta::Of(_, size)) => size,
            Ok(Meta::Empty) => 0,
            Ok(Meta::NoHeader) => {
                tracing::warn!(file = %self.label(disk, name), "backing file has no header (a creation interrupted by a crash, or damage): shown as empty");
                0
            }
            Err(e) => {
                tracing::error!(errno = e.0, file = %self.label(disk, name), "size unreadable");
                return 0;
            }
        };
        if let Some(slot) = slot {
            let _ =
                slot.size
                    .compare_exchange(SIZE_UNKNOWN, size, Ordering::AcqRel, Ordering::Acquire);
        }
        size
    }

    /// The one encrypted-file object of regular file or symlink inode
    /// `ino`, opened through its current name (or, once a rename replaced
    /// that name, the descriptor its node kept) if nothing holds it yet.
    pub(super) fn file_of(&self, ino: u64) -> FsResult<Arc<EncFile>> {
        // A rename changes a name in the backing store and then in the
        // table, under the namespace lock held exclusively: held shared
        // here, the name read from the table is the one the store has.
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let (slot, disk, link, kept, kind) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            let kept = n
                .kept
                .as_ref()
                .map(|k| (k.fd.clone(), k.writable, k.label.clone()));
            (
                n.file.clone(),
                n.disk,
                n.links.first().cloned(),
                kept,
                n.kind,
            )
        };
        let expect = match kind {
            Kind::File => FileType::Regular,
            Kind::Symlink => FileType::Symlink,
            Kind::Dir => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        };
        // Lock order: the node table is never taken while a file slot is
        // held, so everything that reads the table comes first.
        let reach = link.map(|l| {
            let label = self.label_at(disk, l.parent, &l.name);
            (self.dir_fd(l.parent), l.name, label)
        });
        let mut open = slot.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.upgrade() {
            return Ok(f);
        }
        let ctx = self.file_ctx(disk)?;
        let (fd, writable, label) = match (reach, kept) {
            (Some((dir, name, label)), _) => {
                let dir = dir?;
                let mut writable = self.disk_writable(disk);
                let fd = match dir.open_file(&name, writable) {
                    Err(e) if writable && e.raw_os_error() == Some(errno::EACCES) => {
                        // A daemon without root cannot write a file its mode
                        // makes read-only: serve it read-only.
                        writable = false;
                        dir.open_file(&name, false)?
                    }
                    r => r?,
                };
                (fd, writable, label)
            }
            (None, Some((fd, writable, label))) => (fd.try_clone()?, writable, label),
            // Unlinked and closed: nothing reaches the object any more.
            (None, None) => return Err(Errno::ENOENT),
        };
        let st = rustix::fs::fstat(&fd)?;
        if fuse_ino(st.st_ino) != ino {
            return Err(Errno::ENOENT);
        }
        let f = Arc::new(EncFile::open(
            OpenSpec {
                fd,
                label,
                ino,
                writable,
                size_cell: Some(slot.size.clone()),
            },
            ctx,
            expect,
        )?);
        *open = Arc::downgrade(&f);
        Ok(f)
    }

    /// How logs name backing entry `name` of disk `disk` when its directory
    /// is not at hand.
    pub(super) fn label(&self, disk: usize, name: &OsStr) -> String {
        let root = self
            .disk(disk)
            .map(|d| d.root.display().to_string())
            .unwrap_or_default();
        format!("{root}/…/{}", name.to_string_lossy())
    }

    /// How logs name backing entry `name` in directory inode `parent`: its
    /// backing path from the disk root (names are encrypted; nothing plain).
    pub(super) fn label_at(&self, disk: usize, parent: u64, name: &OsStr) -> String {
        let mut parts = vec![name.to_string_lossy().into_owned()];
        {
            let nodes = self.nodes();
            let mut cur = parent;
            while let Some(n) = nodes.get(cur) {
                match n.links.first() {
                    Some(l) if !n.root && parts.len() < MAX_DEPTH => {
                        parts.push(l.name.to_string_lossy().into_owned());
                        cur = l.parent;
                    }
                    _ => break,
                }
            }
        }
        let root = self
            .disk(disk)
            .map(|d| d.root.display().to_string())
            .unwrap_or_default();
        parts.push(root);
        parts.reverse();
        parts.join("/")
    }
}
