//! Namespace operations: lookup, attributes, directories, names, links,
//! renames and special files.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::attr::{self, Attr, Kind, SYMLINK_MARK};
use super::{Errno, Fs, FsResult, ROOT_INO, SNAPSHOTS_DIR, SNAPSHOTS_INO, SNAPSHOT_DISK_INO};
use crate::names::{self, BackingName};

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Type.
    pub kind: Kind,
    /// Plaintext name.
    pub name: OsString,
}

/// How to set a time.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    /// The current time.
    Now,
    /// A given time.
    At(SystemTime),
}

/// The changes of a setattr call.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New logical size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// Who asks: the caller's ids, for ownership of new objects.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

pub(super) fn fuse_ino(m: &std::fs::Metadata) -> u64 {
    match m.ino() {
        ROOT_INO => u64::MAX - 1,
        i => i,
    }
}

fn timestamp(t: Option<SetTime>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(SetTime::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(SetTime::At(t)) => {
            let (sec, nsec) = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
                Err(e) => {
                    let d = e.duration();
                    let mut s = -(d.as_secs() as i64);
                    let mut n = i64::from(d.subsec_nanos());
                    if n > 0 {
                        s -= 1;
                        n = 1_000_000_000 - n;
                    }
                    (s, n)
                }
            };
            rustix::fs::Timespec {
                tv_sec: sec,
                tv_nsec: nsec as _,
            }
        }
    }
}

impl Fs {
    /// The logical size of a regular file or symlink node, from its open
    /// file, its cached size or its header.
    pub(super) fn logical_size(&self, ino: u64, disk: usize, path: &Path) -> FsResult<u64> {
        {
            let nodes = self.nodes();
            if let Some(n) = nodes.get(ino) {
                if let Some(f) = &n.open {
                    return Ok(f.size());
                }
                if let Some(s) = n.size {
                    return Ok(s);
                }
            }
        }
        let (pipeline, _) = self.disk(disk)?.check()?;
        let fd = std::fs::File::open(path)?;
        let size = crate::file::read_header(&fd, path, pipeline)?
            .map(|(_, s)| s)
            .unwrap_or(0);
        self.nodes().set_size(ino, Some(size));
        Ok(size)
    }

    fn attr_at(&self, ino: u64, disk: usize, path: &Path, m: &std::fs::Metadata) -> FsResult<Attr> {
        let kind = attr::kind_of(m.mode());
        let size = match kind {
            Kind::File | Kind::Symlink => Some(self.logical_size(ino, disk, path)?),
            _ => None,
        };
        Ok(attr::from_meta(ino, m, size))
    }

    /// Looks up `name` in `parent`, counting a kernel lookup.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        if parent == ROOT_INO && name.as_bytes() == SNAPSHOTS_DIR.as_bytes() && self.has_snapshots()
        {
            return self.getattr(SNAPSHOTS_INO);
        }
        if parent == SNAPSHOTS_INO {
            let (idx, _) = self
                .live_disks()
                .find(|(_, d)| d.name.as_bytes() == name.as_bytes())
                .ok_or(Errno::ENOENT)?;
            return self.getattr(SNAPSHOT_DISK_INO + idx as u64);
        }
        if Fs::is_virtual(parent) || parent == ROOT_INO {
            let idx = if parent == ROOT_INO {
                self.live_disks()
                    .find(|(_, d)| d.name.as_bytes() == name.as_bytes())
                    .map(|(i, _)| i)
            } else {
                let disk = self.disk((parent - SNAPSHOT_DISK_INO) as usize)?;
                self.snapshots_of(&disk.name)
                    .find(|(_, d)| {
                        d.snapshot.as_deref().map(str::as_bytes) == Some(name.as_bytes())
                    })
                    .map(|(i, _)| i)
            }
            .ok_or(Errno::ENOENT)?;
            let root = &self.disk(idx)?.root;
            let m = std::fs::symlink_metadata(root)?;
            let ino = fuse_ino(&m);
            let mut nodes = self.nodes();
            nodes.remember(ino, idx, root, Kind::Dir, true);
            nodes.roots[idx] = ino;
            drop(nodes);
            return Ok(attr::from_meta(ino, &m, None));
        }
        let c = self.child(parent, name)?;
        let m = std::fs::symlink_metadata(&c.path)?;
        let ino = fuse_ino(&m);
        let kind = attr::kind_of(m.mode());
        self.nodes().remember(ino, c.disk, &c.path, kind, true);
        match self.attr_at(ino, c.disk, &c.path, &m) {
            Ok(a) => Ok(a),
            Err(e) => {
                self.nodes().forget(ino, 1);
                Err(e)
            }
        }
    }

    /// Drops kernel lookups.
    pub fn forget(&self, ino: u64, count: u64) {
        self.nodes().forget(ino, count);
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == ROOT_INO {
            let m = std::fs::metadata(&self.store)?;
            let n = self.live_disks().count() + usize::from(self.has_snapshots());
            return Ok(attr::root(n, &m));
        }
        if ino == SNAPSHOTS_INO {
            let m = std::fs::metadata(&self.store)?;
            let n = self
                .live_disks()
                .filter(|(_, d)| self.snapshots_of(&d.name).next().is_some())
                .count();
            return Ok(attr::virtual_dir(ino, n, &m));
        }
        if Fs::is_virtual(ino) {
            let disk = self.disk((ino - SNAPSHOT_DISK_INO) as usize)?;
            let m = std::fs::metadata(&self.store)?;
            return Ok(attr::virtual_dir(
                ino,
                self.snapshots_of(&disk.name).count(),
                &m,
            ));
        }
        let (disk, open, paths) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.open.clone(), n.paths.clone())
        };
        if let Some(f) = open {
            let m = f.fd().metadata()?;
            return Ok(attr::from_meta(ino, &m, Some(f.size())));
        }
        let mut last = Errno::ENOENT;
        for p in &paths {
            match std::fs::symlink_metadata(p) {
                Ok(m) if fuse_ino(&m) == ino => return self.attr_at(ino, disk, p, &m),
                Ok(_) => last = Errno::ENOENT,
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }

    /// Changes attributes.
    pub fn setattr(&self, ino: u64, fh: Option<u64>, s: SetAttr) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Err(Errno::EPERM);
        }
        self.writable_at(ino)?;
        let (disk, open, path, kind) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.open.clone(), n.paths.first().cloned(), n.kind)
        };
        self.disk(disk)?.check()?;
        let open = match fh.and_then(|fh| self.handle_file(fh)) {
            Some(f) => Some(f),
            None => open,
        };
        if let Some(size) = s.size {
            if kind == Kind::Dir {
                return Err(Errno(libc::EISDIR));
            }
            match &open {
                Some(f) => f.truncate(size)?,
                None => {
                    let p = path.as_ref().ok_or(Errno::ENOENT)?;
                    let f = self.open_enc(disk, p)?;
                    f.truncate(size)?;
                }
            }
            self.nodes().set_size(ino, Some(size));
        }
        if let Some(mode) = s.mode {
            let mut bits = mode & 0o7777;
            if kind == Kind::File {
                bits &= !SYMLINK_MARK;
            }
            match (&open, &path) {
                (Some(f), _) => f
                    .fd()
                    .set_permissions(std::fs::Permissions::from_mode(bits))?,
                (None, Some(p)) => {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(bits))?
                }
                _ => return Err(Errno::ENOENT),
            }
        }
        if s.uid.is_some() || s.gid.is_some() {
            match (&open, &path) {
                (Some(f), _) => std::os::unix::fs::fchown(f.fd(), s.uid, s.gid)?,
                (None, Some(p)) => std::os::unix::fs::lchown(p, s.uid, s.gid)?,
                _ => return Err(Errno::ENOENT),
            }
        }
        if s.atime.is_some() || s.mtime.is_some() {
            let ts = rustix::fs::Timestamps {
                last_access: timestamp(s.atime),
                last_modification: timestamp(s.mtime),
            };
            match (&open, &path) {
                (Some(f), _) => rustix::fs::futimens(f.fd(), &ts)?,
                (None, Some(p)) => rustix::fs::utimensat(
                    rustix::fs::CWD,
                    p,
                    &ts,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?,
                _ => return Err(Errno::ENOENT),
            }
        }
        self.getattr(ino)
    }

    /// Reads a symlink's target.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let (disk, path) = self.dir_of(ino)?;
        let (pipeline, _) = self.disk(disk)?.check()?;
        let fd = std::fs::File::open(&path)?;
        Ok(crate::file::read_symlink(
            fd,
            path,
            pipeline.clone(),
            self.cache.clone(),
        )?)
    }

    /// Applies owner and setgid inheritance to a new backing object.
    pub(super) fn own(&self, path: &Path, dir: &Path, caller: Caller) -> FsResult<()> {
        let parent = std::fs::metadata(dir)?;
        let setgid = parent.mode() & libc::S_ISGID != 0;
        let gid = if setgid { parent.gid() } else { caller.gid };
        // The object already belongs to the daemon's ids: nothing to change.
        if caller.uid == rustix::process::geteuid().as_raw()
            && gid == rustix::process::getegid().as_raw()
            && !setgid
        {
            return Ok(());
        }
        match std::os::unix::fs::lchown(path, Some(caller.uid), Some(gid)) {
            Ok(()) => Ok(()),
            // An unprivileged daemon can only own what it creates itself.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn register_new(&self, disk: usize, path: &Path) -> FsResult<Attr> {
        let m = std::fs::symlink_metadata(path)?;
        let ino = fuse_ino(&m);
        let kind = attr::kind_of(m.mode());
        let mut nodes = self.nodes();
        nodes.fresh(ino);
        nodes.remember(ino, disk, path, kind, true);
        drop(nodes);
        self.attr_at(ino, disk, path, &m)
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, caller: Caller) -> FsResult<Attr> {
        self.writable_at(parent)?;
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        if std::fs::symlink_metadata(&c.path).is_ok() {
            return Err(Errno::EEXIST);
        }
        c.write_sidecar()?;
        let parent_mode = std::fs::metadata(&c.dir)?.mode();
        let mut bits = mode & 0o7777;
        if parent_mode & libc::S_ISGID != 0 {
            bits |= libc::S_ISGID;
        }
        if let Err(e) = rustix::fs::mkdir(&c.path, rustix::fs::Mode::from_raw_mode(0o700)) {
            c.remove_sidecar();
            return Err(e.into());
        }
        let done = (|| -> FsResult<()> {
            if !matches!(
                self.disk(c.disk)?.names,
                Some(crate::names::NameCodec::Plain)
            ) {
                crate::backing::write_dirid(&c.path)?;
            }
            self.own(&c.path, &c.dir, caller)?;
            std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(bits))?;
            Ok(())
        })();
        if let Err(e) = done {
            let _ = std::fs::remove_file(c.path.join(crate::backing::DIRID_NAME));
            let _ = std::fs::remove_file(c.path.join(crate::backing::DIRID_BACKUP));
            let _ = std::fs::remove_dir(&c.path);
            c.remove_sidecar();
            return Err(e);
        }
        self.register_new(c.disk, &c.path)
    }

    /// Creates a FIFO, socket or (as `create` without opening) a regular file.
    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable_at(parent)?;
        let kind = mode & libc::S_IFMT;
        if kind == libc::S_IFREG || kind == 0 {
            let (attr, fh) = self.create(parent, name, mode, libc::O_WRONLY, caller)?;
            self.release(fh)?;
            return Ok(attr);
        }
        if kind != libc::S_IFIFO
            && kind != libc::S_IFSOCK
            && kind != libc::S_IFCHR
            && kind != libc::S_IFBLK
        {
            return Err(Errno::EINVAL);
        }
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        c.write_sidecar()?;
        let ft = rustix::fs::FileType::from_raw_mode(kind);
        if let Err(e) = rustix::fs::mknodat(
            rustix::fs::CWD,
            &c.path,
            ft,
            rustix::fs::Mode::from_raw_mode(mode & 0o7777),
            u64::from(rdev),
        ) {
            c.remove_sidecar();
            return Err(e.into());
        }
        self.own(&c.path, &c.dir, caller)?;
        std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        self.register_new(c.disk, &c.path)
    }

    /// Creates a symlink whose target is stored encrypted.
    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable_at(parent)?;
        let target = target.as_os_str().as_bytes();
        if target.is_empty() {
            return Err(Errno(libc::ENOENT));
        }
        if target.len() >= libc::PATH_MAX as usize {
            return Err(Errno(libc::ENAMETOOLONG));
        }
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let (pipeline, _) = self.disk(c.disk)?.check()?;
        c.write_sidecar()?;
        let fd = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&c.path)
        {
            Ok(fd) => fd,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    c.remove_sidecar();
                }
                return Err(e.into());
            }
        };
        let written = (|| -> FsResult<()> {
            fd.set_permissions(std::fs::Permissions::from_mode(0o600 | SYMLINK_MARK))?;
            let fd2 = fd.try_clone()?;
            crate::file::write_symlink(
                fd2,
                c.path.clone(),
                pipeline.clone(),
                self.cache.clone(),
                target,
            )?;
            self.own(&c.path, &c.dir, caller)?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&c.path);
            c.remove_sidecar();
            return Err(e);
        }
        self.register_new(c.disk, &c.path)
    }

    /// Removes a non-directory.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable_at(parent)?;
        let c = self.child(parent, name)?;
        let m = std::fs::symlink_metadata(&c.path)?;
        if m.is_dir() {
            return Err(Errno(libc::EISDIR));
        }
        std::fs::remove_file(&c.path)?;
        c.remove_sidecar();
        let ino = fuse_ino(&m);
        let mut nodes = self.nodes();
        nodes.unlinked(&c.path);
        nodes.set_size(ino, None);
        Ok(())
    }

    /// Empties a backing directory of strata's own files if it holds
    /// nothing else; ENOTEMPTY otherwise.
    fn clear_if_empty(&self, disk: usize, dir: &Path) -> FsResult<()> {
        let (_, codec) = self.disk(disk)?.check()?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let n = e.file_name();
            if !codec.is_reserved(&n) || names::is_sidecar(&n) {
                return Err(Errno::ENOTEMPTY);
            }
        }
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            std::fs::remove_file(e.path())?;
        }
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable_at(parent)?;
        let _ns = self.ns_lock.write().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let m = std::fs::symlink_metadata(&c.path)?;
        if !m.is_dir() {
            return Err(Errno(libc::ENOTDIR));
        }
        let id = crate::backing::read_dirid(&c.path).ok();
        self.clear_if_empty(c.disk, &c.path)?;
        if let Err(e) = std::fs::remove_dir(&c.path) {
            // Put the id back so that the directory stays readable.
            if let Some((id, _)) = id {
                let _ =
                    crate::backing::atomic_write(&c.path.join(crate::backing::DIRID_BACKUP), &id);
                let _ = crate::backing::atomic_write(&c.path.join(crate::backing::DIRID_NAME), &id);
            }
            return Err(e.into());
        }
        c.remove_sidecar();
        self.nodes().unlinked(&c.path);
        Ok(())
    }

    /// Renames, with RENAME_NOREPLACE and RENAME_EXCHANGE.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.writable_at(parent)?;
        self.writable_at(newparent)?;
        let _ns = self.ns_lock.write().unwrap_or_else(|e| e.into_inner());
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        if from.disk != to.disk {
            return Err(Errno(libc::EXDEV));
        }
        let src = std::fs::symlink_metadata(&from.path)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 {
            return Err(Errno::EINVAL);
        }
        let dst = std::fs::symlink_metadata(&to.path).ok();
        if from.path == to.path {
            return Ok(());
        }
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if noreplace && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if let (Some(d), false) = (&dst, exchange) {
            if fuse_ino(d) == fuse_ino(&src) {
                // Two names of one inode: POSIX says do nothing.
                return Ok(());
            }
            if d.is_dir() {
                if !src.is_dir() {
                    return Err(Errno(libc::EISDIR));
                }
                self.clear_if_empty(to.disk, &to.path)?;
            } else if src.is_dir() {
                return Err(Errno(libc::ENOTDIR));
            }
        }
        to.write_sidecar()?;
        let rflags = if exchange {
            rustix::fs::RenameFlags::EXCHANGE
        } else {
            rustix::fs::RenameFlags::empty()
        };
        if let Err(e) = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &from.path,
            rustix::fs::CWD,
            &to.path,
            rflags,
        ) {
            if dst.is_none() {
                to.remove_sidecar();
            }
            if let Some(d) = &dst {
                if d.is_dir() && !exchange {
                    // The emptied target keeps a fresh id so it stays usable.
                    let _ = crate::backing::write_dirid(&to.path);
                }
            }
            return Err(e.into());
        }
        let mut nodes = self.nodes();
        if exchange {
            nodes.exchanged(
                &from.path,
                &to.path,
                src.is_dir(),
                dst.as_ref().map(|d| d.is_dir()).unwrap_or(false),
            );
        } else {
            from.remove_sidecar();
            nodes.renamed(&from.path, &to.path, src.is_dir());
        }
        Ok(())
    }

    /// Makes a hard link.
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Attr> {
        self.writable_at(ino)?;
        self.writable_at(newparent)?;
        let (disk, src) = self.dir_of(ino)?;
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let to = self.child(newparent, newname)?;
        if to.disk != disk {
            return Err(Errno(libc::EXDEV));
        }
        to.write_sidecar()?;
        if let Err(e) = std::fs::hard_link(&src, &to.path) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                to.remove_sidecar();
            }
            return Err(e.into());
        }
        self.register_new(disk, &to.path)
    }

    /// Lists a directory (the whole listing, taken at opendir).
    pub fn list(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: ROOT_INO,
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        if ino == ROOT_INO {
            out[1].ino = ROOT_INO;
            for (_, d) in self.live_disks() {
                let m = std::fs::symlink_metadata(&d.root)?;
                out.push(DirEntry {
                    ino: fuse_ino(&m),
                    kind: Kind::Dir,
                    name: d.name.clone().into(),
                });
            }
            if self.has_snapshots() {
                out.push(DirEntry {
                    ino: SNAPSHOTS_INO,
                    kind: Kind::Dir,
                    name: SNAPSHOTS_DIR.into(),
                });
            }
            return Ok(out);
        }
        if ino == SNAPSHOTS_INO {
            for (i, d) in self.live_disks() {
                if self.snapshots_of(&d.name).next().is_some() {
                    out.push(DirEntry {
                        ino: SNAPSHOT_DISK_INO + i as u64,
                        kind: Kind::Dir,
                        name: d.name.clone().into(),
                    });
                }
            }
            return Ok(out);
        }
        if Fs::is_virtual(ino) {
            out[1].ino = SNAPSHOTS_INO;
            let disk = self.disk((ino - SNAPSHOT_DISK_INO) as usize)?;
            for (_, d) in self.snapshots_of(&disk.name) {
                let m = std::fs::symlink_metadata(&d.root)?;
                out.push(DirEntry {
                    ino: fuse_ino(&m),
                    kind: Kind::Dir,
                    name: d.snapshot.clone().unwrap_or_default().into(),
                });
            }
            return Ok(out);
        }
        let (disk, dir) = self.dir_of(ino)?;
        let (_, codec) = self.disk(disk)?.check()?;
        let id = self.cached_dir_id(ino, disk, &dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let bname = e.file_name();
            if codec.is_reserved(&bname) {
                continue;
            }
            let plain = if codec.is_encrypted() && names::is_long(&bname) {
                let side = match std::fs::read_to_string(dir.join(names::sidecar_name(&bname))) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::error!(dir = %dir.display(), "long-name sidecar unreadable: {err}");
                        continue;
                    }
                };
                codec.decrypt_long(&id, &bname, &side)
            } else {
                codec.decrypt(&id, &bname)
            };
            let plain = match plain {
                Ok(p) => p,
                Err(err) => {
                    tracing::error!(dir = %dir.display(), "skipping an entry whose name does not decrypt: {err}");
                    continue;
                }
            };
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            out.push(DirEntry {
                ino: fuse_ino(&m),
                kind: attr::kind_of(m.mode()),
                name: plain,
            });
        }
        Ok(out)
    }

    /// Filesystem statistics of the backing store, in 4 KiB blocks.
    pub fn statfs(&self) -> FsResult<rustix::fs::StatVfs> {
        Ok(rustix::fs::statvfs(&self.store)?)
    }

    /// Flushes a directory's entries to the backing store.
    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        if ino == ROOT_INO {
            return Ok(());
        }
        let (_, dir) = self.dir_of(ino)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    }

    pub(super) fn open_enc(&self, disk: usize, path: &Path) -> FsResult<Arc<crate::file::EncFile>> {
        let (pipeline, _) = self.disk(disk)?.check()?;
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(!self.opts.read_only)
            .open(path)?;
        Ok(Arc::new(crate::file::EncFile::open(
            fd,
            path.to_path_buf(),
            pipeline.clone(),
            self.cache.clone(),
        )?))
    }

    /// Whether a child name would need a long-name sidecar.
    pub fn is_long_name(b: &BackingName) -> bool {
        matches!(b, BackingName::Long { .. })
    }
}
