//! Namespace operations: lookup, attributes, directories, names, links,
//! renames and special files, all by descriptor.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{FileType, Stat, Timestamps};

use super::attr::{self, Attr, Kind, SYMLINK_MARK};
use super::resolve::fuse_ino;
use super::{
    nodes, Errno, Fs, FsResult, ROOT_INO, SNAPSHOTS_DIR, SNAPSHOTS_INO, SNAPSHOT_DISK_INO,
};
use crate::backing::Dir;
use crate::file::{EncFile, OpenSpec};
use crate::names;
use crate::platform::{errno, oflags};
use crate::platform::{mode as fmode, Rename};

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Type.
    pub kind: Kind,
    /// Plaintext name.
    pub name: OsString,
    /// Its backing name in the listed directory (`None` for `.`, `..` and
    /// the entries of the mount root and `.snapshots`).
    backing: Option<OsString>,
}

impl DirEntry {
    fn new(ino: u64, kind: Kind, name: OsString) -> Self {
        DirEntry {
            ino,
            kind,
            name,
            backing: None,
        }
    }

    /// `.` or `..`, for which a listing with attributes counts no lookup.
    pub fn is_dot(&self) -> bool {
        self.name.as_bytes() == b"." || self.name.as_bytes() == b".."
    }
}

/// An empty directory cleared of its ids for its removal: the id to put
/// back if the removal fails, and the directory-id lock, held while this
/// lives (see `Fs::dir_ids`).
struct Cleared<'a> {
    id: Option<[u8; 16]>,
    _ids: std::sync::MutexGuard<'a, ()>,
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

/// The backing object of an inode, as an operation acts on it: its open
/// file, its own directory descriptor, or its name in a parent directory.
enum Target {
    File(Arc<EncFile>),
    Dir(Arc<Dir>),
    At(Arc<Dir>, OsString),
    Kept(Arc<std::fs::File>),
}

impl Fs {
    /// Attributes of backing entry `name` of `dir`, as inode `ino` of
    /// disk `disk`, remembering them in its node.
    fn attr_at(
        &self,
        ino: u64,
        disk: usize,
        dir: &Dir,
        name: &OsStr,
        st: &Stat,
        kind: Kind,
    ) -> Attr {
        let size = match kind {
            Kind::File | Kind::Symlink => Some(self.logical_size(ino, disk, dir, name, st)),
            _ => None,
        };
        self.note_attr(attr::from_stat(ino, st, kind, size))
    }

    /// Remembers attributes `a` in their node, and gives them the node's
    /// generation (what the kernel is told with a new entry).
    fn note_attr(&self, mut a: Attr) -> Attr {
        if let Some(n) = self.nodes().get_mut(a.ino) {
            a.generation = n.generation;
            n.attr = Some(a);
        }
        a
    }

    /// The root node of slot `idx`, registered (a kernel lookup when
    /// `count`), and its attributes.
    fn disk_root(&self, idx: usize, count: bool) -> FsResult<Attr> {
        let d = self.open_root(idx)?;
        let st = d.stat()?;
        let ino = fuse_ino(st.st_ino);
        self.nodes().root(idx, ino, count);
        self.dirs.put(ino, Arc::new(d));
        Ok(attr::from_stat(ino, &st, Kind::Dir, None))
    }

    /// Looks up `name` in `parent`, counting a kernel lookup.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        self.lookup_or_absent(parent, name)?.ok_or(Errno::ENOENT)
    }

    /// Looks up `name` in `parent`, counting a kernel lookup when found.
    /// `None` only when the parent's backing directory, reached, has no such
    /// entry: an answer the kernel may remember (a negative entry). Every
    /// other failure, an ENOENT for a parent gone meanwhile included, is an
    /// error.
    pub fn lookup_or_absent(&self, parent: u64, name: &OsStr) -> FsResult<Option<Attr>> {
        if parent == ROOT_INO && name.as_bytes() == SNAPSHOTS_DIR.as_bytes() && self.has_snapshots()
        {
            return self.getattr(SNAPSHOTS_INO).map(Some);
        }
        if parent == SNAPSHOTS_INO {
            let (idx, _) = self
                .live_disks()
                .find(|(_, d)| d.name.as_bytes() == name.as_bytes())
                .ok_or(Errno::ENOENT)?;
            return self.getattr(SNAPSHOT_DISK_INO + idx as u64).map(Some);
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
            return self.disk_root(idx, true).map(Some);
        }
        let c = self.child(parent, name)?;
        match self.lookup_at(c.disk, c.parent, &c.dir, c.entry()) {
            Ok(a) => Ok(Some(a)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up entry `e` of the listing of directory `parent`, counting a
    /// kernel lookup (a listing with attributes: READDIRPLUS). The entry is
    /// reached by the backing name the listing read, so its name is not
    /// encrypted again; `.` and `..` are not looked up.
    pub fn lookup_listed(&self, parent: u64, e: &DirEntry) -> FsResult<Attr> {
        if e.is_dot() {
            return Err(Errno::EINVAL);
        }
        let Some(backing) = &e.backing else {
            return self.lookup(parent, &e.name);
        };
        let disk = self
            .nodes()
            .get(parent)
            .map(|n| n.disk)
            .ok_or(Errno::ENOENT)?;
        self.disk(disk)?.check()?;
        let dir = self.dir_fd(parent)?;
        self.lookup_at(disk, parent, &dir, backing)
    }

    /// Counts a kernel lookup of entry `e` of the listing of directory
    /// `parent` whose lookup failed otherwise than by its absence, so that
    /// a listing with attributes can still carry it under its inode number
    /// (the kernel then asks again before using it, and gets the error);
    /// `None` when it cannot be counted (`.`, `..`, the entries of the mount
    /// root and `.snapshots`, or an inode number taken by another kind).
    pub fn count_listed_failure(&self, parent: u64, e: &DirEntry) -> Option<u64> {
        if e.is_dot() || e.backing.is_none() {
            return None;
        }
        let mut nodes = self.nodes();
        let disk = nodes.get(parent)?.disk;
        nodes.count_unnamed(e.ino, disk, e.kind).then_some(e.ino)
    }

    /// Looks up backing entry `entry` of `dir` (directory inode `parent` of
    /// disk `disk`), counting a kernel lookup.
    fn lookup_at(&self, disk: usize, parent: u64, dir: &Dir, entry: &OsStr) -> FsResult<Attr> {
        // What the name holds and what the table records for it look as one
        // to a rename: a lookup the kernel sends to revalidate a name (which
        // it does without the directory's lock) could otherwise stat the
        // object a rename is replacing and record it under the name after
        // the rename, and the kernel would keep using it there (ENOENT on
        // its next open).
        let ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let st = dir.stat_at(entry)?;
        self.on_device(&st, || self.label_at(disk, parent, entry))?;
        let ino = fuse_ino(st.st_ino);
        let (kind, size) = self.probe(disk, dir, entry, &st);
        self.nodes().remember(ino, disk, kind, parent, entry, true);
        drop(ns);
        if let Some(size) = size {
            if let Some(n) = self.nodes().get(ino) {
                let _ = n.file.size.compare_exchange(
                    crate::file::SIZE_UNKNOWN,
                    size,
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                );
            }
        }
        let a = self.attr_at(ino, disk, dir, entry, &st, kind);
        // Keys taken away during the lookup leave a size that could not be
        // read: the kernel must not be given it (with the writeback cache
        // it keeps a file's size as first told).
        if let Err(e) = self.disk(disk)?.ciphers() {
            self.forget(ino, 1);
            return Err(e);
        }
        self.note_reply(disk);
        Ok(a)
    }

    /// Drops kernel lookups.
    pub fn forget(&self, ino: u64, count: u64) {
        self.nodes().forget(ino, count);
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == ROOT_INO {
            let st = rustix::fs::stat(&self.store)?;
            let n = self.live_disks().count() + usize::from(self.has_snapshots());
            return Ok(attr::root(n, &st));
        }
        if ino == SNAPSHOTS_INO {
            let st = rustix::fs::stat(&self.store)?;
            let n = self
                .live_disks()
                .filter(|(_, d)| self.snapshots_of(&d.name).next().is_some())
                .count();
            return Ok(attr::virtual_dir(ino, n, &st));
        }
        if Fs::is_virtual(ino) {
            let disk = self.disk((ino - SNAPSHOT_DISK_INO) as usize)?;
            let st = rustix::fs::stat(&self.store)?;
            return Ok(attr::virtual_dir(
                ino,
                self.snapshots_of(&disk.name).count(),
                &st,
            ));
        }
        self.attr_of_named(ino, false)
    }

    /// The attributes a request already admitted (a create, a change
    /// through an open handle) answers with: while a revocation flushes,
    /// they are still read (see [`Fs::close_disks`]).
    pub(super) fn attr_admitted(&self, ino: u64) -> FsResult<Attr> {
        self.attr_of_named(ino, true)
    }

    fn attr_of_named(&self, ino: u64, admitted: bool) -> FsResult<Attr> {
        let r = match self.attr_of(ino, admitted) {
            // A rename between reading the name and using it: again, with
            // renames held off (the name and the store then agree).
            Err(e) if e == Errno::ENOENT => {
                let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
                self.attr_of(ino, admitted)
            }
            r => r,
        };
        if admitted && r.is_ok() {
            let disk = self.nodes().get(ino).map(|n| n.disk);
            if let Some(disk) = disk {
                self.note_reply(disk);
            }
        }
        r
    }

    /// Attributes of backing inode `ino` (not the root or a virtual one),
    /// for a request `admitted` before a revocation began to flush.
    fn attr_of(&self, ino: u64, admitted: bool) -> FsResult<Attr> {
        let (disk, kind, root, link, slot, last, kept) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (
                n.disk,
                n.kind,
                n.root,
                n.links.first().cloned(),
                n.file.clone(),
                n.attr,
                n.kept.as_ref().map(|k| k.fd.clone()),
            )
        };
        // A disk whose keys were taken away answers nothing about its
        // objects, whatever the kernel still holds (it may cache entries
        // for a long time; their attributes it was told to drop).
        self.disk(disk)?.serving(admitted)?;
        // The slot's lock is taken only after the node table's is released:
        // opening a file holds the slot and then reads the table.
        let open = slot
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        if let Some(f) = open {
            let st = rustix::fs::fstat(f.fd())?;
            return Ok(self.note_attr(attr::from_stat(ino, &st, kind, Some(f.size()))));
        }
        if root {
            let st = self.dir_fd(ino)?.stat()?;
            return Ok(attr::from_stat(ino, &st, Kind::Dir, None));
        }
        let Some(link) = link else {
            if let Some(fd) = kept {
                // Renamed over: the object, through the descriptor kept.
                let st = rustix::fs::fstat(&*fd)?;
                let size = match slot.size.load(std::sync::atomic::Ordering::Acquire) {
                    crate::file::SIZE_UNKNOWN => last.map(|a| a.size).unwrap_or(0),
                    s => s,
                };
                return Ok(attr::from_stat(ino, &st, kind, Some(size)));
            }
            // Unlinked and closed while the kernel still holds it: what it
            // was when last seen, with no name left.
            return match last {
                Some(mut a) => {
                    a.nlink = 0;
                    Ok(a)
                }
                None => Err(Errno::ENOENT),
            };
        };
        let dir = self.dir_fd(link.parent)?;
        let st = dir.stat_at(&link.name)?;
        if fuse_ino(st.st_ino) != ino {
            return Err(Errno::ENOENT);
        }
        Ok(self.attr_at(ino, disk, &dir, &link.name, &st, kind))
    }

    /// How an operation reaches inode `ino`'s backing object (`None` when
    /// nothing does: unlinked and closed). A name it returns stays right
    /// only while the caller holds the namespace lock shared.
    fn target(&self, ino: u64, kind: Kind) -> FsResult<Option<Target>> {
        let (root, link, slot, kept) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (
                n.root,
                n.links.first().cloned(),
                n.file.clone(),
                n.kept.as_ref().map(|k| k.fd.clone()),
            )
        };
        // Not under the node table's lock: see `getattr`.
        let open = slot
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        if let Some(f) = open {
            return Ok(Some(Target::File(f)));
        }
        if kind == Kind::Dir && (root || link.is_some()) {
            return Ok(Some(Target::Dir(self.dir_fd(ino)?)));
        }
        match (link, kept) {
            (Some(l), _) => Ok(Some(Target::At(self.dir_fd(l.parent)?, l.name))),
            (None, Some(fd)) => Ok(Some(Target::Kept(fd))),
            (None, None) => Ok(None),
        }
    }

    /// Changes attributes.
    pub fn setattr(&self, ino: u64, fh: Option<u64>, s: SetAttr) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Err(Errno::EPERM);
        }
        self.writable_at(ino)?;
        let (disk, kind) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.kind)
        };
        // A change through an open handle (the kernel writing back the
        // times of a file it cached writes of) goes on while a revocation
        // flushes, as the handle's writes do.
        let admitted = fh.is_some();
        self.disk(disk)?.serving(admitted)?;
        if let Some(size) = s.size {
            match kind {
                Kind::Dir => return Err(Errno::EISDIR),
                Kind::File => {}
                _ => return Err(Errno::EINVAL),
            }
            let f = match fh.and_then(|fh| self.handle_file(fh)) {
                Some(f) => f,
                None => self.file_of(ino)?,
            };
            f.truncate(size)?;
        }
        let changes = s.mode.is_some()
            || s.uid.is_some()
            || s.gid.is_some()
            || s.atime.is_some()
            || s.mtime.is_some();
        if !changes {
            return self.attr_of_named(ino, admitted);
        }
        // Held while the change goes through a name, so that a rename
        // cannot give the name to another object in between; released
        // before the attributes are read back (which may take it again).
        let ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let Some(target) = self.target(ino, kind)? else {
            drop(ns);
            // Nothing reaches the object any more (the kernel flushing the
            // times of a file unlinked and closed): the change applies to
            // what it was.
            let mut a = self.attr_of_named(ino, admitted)?;
            if let Some(m) = s.mode {
                a.perm = (m & 0o7777) as u16;
            }
            a.uid = s.uid.unwrap_or(a.uid);
            a.gid = s.gid.unwrap_or(a.gid);
            return Ok(a);
        };
        if let Some(mode) = s.mode {
            if kind != Kind::Symlink {
                let bits = rustix::fs::Mode::from_raw_mode((mode & 0o7777) as _);
                match &target {
                    Target::File(f) => rustix::fs::fchmod(f.fd(), bits)?,
                    Target::Dir(d) => rustix::fs::fchmod(d.fd(), bits)?,
                    Target::At(d, name) => d.chmod_at(name, mode & 0o7777)?,
                    Target::Kept(fd) => rustix::fs::fchmod(&**fd, bits)?,
                }
            }
        }
        if s.uid.is_some() || s.gid.is_some() {
            let uid = s.uid.map(rustix::fs::Uid::from_raw);
            let gid = s.gid.map(rustix::fs::Gid::from_raw);
            match &target {
                Target::File(f) => rustix::fs::fchown(f.fd(), uid, gid)?,
                Target::Dir(d) => rustix::fs::fchown(d.fd(), uid, gid)?,
                Target::At(d, name) => d.chown_at(name, s.uid, s.gid)?,
                Target::Kept(fd) => rustix::fs::fchown(&**fd, uid, gid)?,
            }
        }
        if s.atime.is_some() || s.mtime.is_some() {
            let ts = Timestamps {
                last_access: timestamp(s.atime),
                last_modification: timestamp(s.mtime),
            };
            match &target {
                Target::File(f) => {
                    rustix::fs::futimens(f.fd(), &ts)?;
                    // The size attribute is bound to the modification time.
                    f.refresh_size_attr();
                }
                Target::Dir(d) => rustix::fs::futimens(d.fd(), &ts)?,
                Target::At(d, name) => d.utimens_at(name, &ts)?,
                Target::Kept(fd) => rustix::fs::futimens(&**fd, &ts)?,
            }
        }
        drop(ns);
        self.attr_of_named(ino, admitted)
    }

    /// Reads a symlink's target.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let kind = self.nodes().get(ino).map(|n| n.kind).ok_or(Errno::ENOENT)?;
        if kind != Kind::Symlink {
            return Err(Errno::EINVAL);
        }
        let f = self.file_of(ino)?;
        Ok(crate::file::read_symlink(&f)?)
    }

    /// The owner and group a new object made by `caller` in `dir` gets
    /// (setgid directories pass their group on), if they differ from the
    /// daemon's.
    pub(super) fn owner_of_new(&self, dir: &Dir, caller: Caller) -> FsResult<Option<(u32, u32)>> {
        let parent = dir.stat()?;
        let setgid = fmode::of(&parent) & fmode::S_ISGID != 0;
        let gid = if setgid { parent.st_gid } else { caller.gid };
        // The object already belongs to the daemon's ids: nothing to change.
        if caller.uid == rustix::process::geteuid().as_raw()
            && gid == rustix::process::getegid().as_raw()
            && !setgid
        {
            return Ok(None);
        }
        Ok(Some((caller.uid, gid)))
    }

    /// Gives new entry `name` of `dir` to `owner` (see [`Self::owner_of_new`]).
    fn own_at(&self, dir: &Dir, name: &OsStr, owner: Option<(u32, u32)>) -> FsResult<()> {
        let Some((uid, gid)) = owner else {
            return Ok(());
        };
        match dir.chown_at(name, Some(uid), Some(gid)) {
            Ok(()) => Ok(()),
            // An unprivileged daemon can only own what it creates itself.
            Err(e) if e.raw_os_error() == Some(errno::EPERM) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers a new object named `name` in `parent` and returns its
    /// attributes.
    fn register_new(
        &self,
        disk: usize,
        parent: u64,
        dir: &Dir,
        name: &OsStr,
        kind: Kind,
    ) -> FsResult<Attr> {
        let st = dir.stat_at(name)?;
        let ino = fuse_ino(st.st_ino);
        {
            let mut nodes = self.nodes();
            nodes.fresh(ino);
            nodes.remember(ino, disk, kind, parent, name, true);
        }
        Ok(self.attr_at(ino, disk, dir, name, &st, kind))
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, caller: Caller) -> FsResult<Attr> {
        self.writable_at(parent)?;
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let owner = self.owner_of_new(&c.dir, caller)?;
        let parent_mode = fmode::of(&c.dir.stat()?);
        let mut bits = mode & 0o7777;
        if parent_mode & fmode::S_ISGID != 0 {
            bits |= fmode::S_ISGID;
        }
        c.write_sidecar()?;
        if let Err(e) = c.dir.mkdir(c.entry(), 0o700) {
            if e.raw_os_error() != Some(errno::EEXIST) {
                c.remove_sidecar();
            }
            return Err(e.into());
        }
        let made = (|| -> FsResult<Dir> {
            let d = c.dir.open_dir(c.entry())?;
            if self.disk(c.disk)?.ciphers()?.1.is_encrypted() {
                crate::backing::init_dirid(&d)?;
            }
            if let Some((uid, gid)) = owner {
                match rustix::fs::fchown(
                    d.fd(),
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                ) {
                    Ok(()) | Err(rustix::io::Errno::PERM) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            rustix::fs::fchmod(d.fd(), rustix::fs::Mode::from_raw_mode(bits as _))?;
            Ok(d)
        })();
        let d = match made {
            Ok(d) => d,
            Err(e) => {
                if let Ok(d) = c.dir.open_dir(c.entry()) {
                    let _ = d.unlink(OsStr::new(crate::backing::DIRID_NAME));
                    let _ = d.unlink(OsStr::new(crate::backing::DIRID_BACKUP));
                }
                let _ = c.dir.rmdir(c.entry());
                c.remove_sidecar();
                return Err(e);
            }
        };
        let st = d.stat()?;
        let ino = fuse_ino(st.st_ino);
        {
            let mut nodes = self.nodes();
            nodes.fresh(ino);
            nodes.remember(ino, c.disk, Kind::Dir, c.parent, c.entry(), true);
        }
        self.dirs.put(ino, Arc::new(d));
        Ok(self.note_attr(attr::from_stat(ino, &st, Kind::Dir, None)))
    }

    /// Creates a FIFO, socket, device node or (as `create` without opening)
    /// a regular file.
    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable_at(parent)?;
        let kind = mode & fmode::S_IFMT;
        if kind == fmode::S_IFREG || kind == 0 {
            let (attr, fh) = self.create(
                parent,
                name,
                mode,
                oflags::O_WRONLY | oflags::O_EXCL,
                caller,
            )?;
            self.release(fh)?;
            return Ok(attr);
        }
        let (ft, k) = match FileType::from_raw_mode(kind as _) {
            FileType::Fifo => (FileType::Fifo, Kind::Fifo),
            FileType::Socket => (FileType::Socket, Kind::Socket),
            FileType::CharacterDevice => (FileType::CharacterDevice, Kind::CharDev),
            FileType::BlockDevice => (FileType::BlockDevice, Kind::BlockDev),
            _ => return Err(Errno::EINVAL),
        };
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let owner = self.owner_of_new(&c.dir, caller)?;
        c.write_sidecar()?;
        if let Err(e) = c.dir.mknod(c.entry(), ft, 0o600, u64::from(rdev)) {
            if e.raw_os_error() != Some(errno::EEXIST) {
                c.remove_sidecar();
            }
            return Err(e.into());
        }
        let done = self
            .own_at(&c.dir, c.entry(), owner)
            .and_then(|()| Ok(c.dir.chmod_at(c.entry(), mode & 0o7777)?));
        if let Err(e) = done {
            let _ = c.dir.unlink(c.entry());
            c.remove_sidecar();
            return Err(e);
        }
        self.register_new(c.disk, c.parent, &c.dir, c.entry(), k)
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
            return Err(Errno(errno::ENOENT));
        }
        if target.len() >= crate::platform::PATH_MAX {
            return Err(Errno(errno::ENAMETOOLONG));
        }
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let ctx = self.file_ctx(c.disk)?;
        let owner = self.owner_of_new(&c.dir, caller)?;
        c.write_sidecar()?;
        // Marked from its creation: a power cut must not leave a symlink
        // header in a backing file without the mark (that reads as damage).
        let fd = match c.dir.create_file(c.entry(), 0o600 | SYMLINK_MARK) {
            Ok(fd) => fd,
            Err(e) => {
                if e.raw_os_error() != Some(errno::EEXIST) {
                    c.remove_sidecar();
                }
                return Err(e.into());
            }
        };
        let written = (|| -> FsResult<()> {
            rustix::fs::fchmod(
                &fd,
                rustix::fs::Mode::from_raw_mode((0o600 | SYMLINK_MARK) as _),
            )?;
            let ino = fuse_ino(rustix::fs::fstat(&fd)?.st_ino);
            crate::file::write_symlink(
                OpenSpec {
                    fd,
                    label: self.label_at(c.disk, c.parent, c.entry()),
                    ino,
                    writable: true,
                    size_cell: None,
                },
                ctx,
                target,
            )?
            // On a disk a symlink's target is part of its entry: an fsync
            // of the directory makes both durable. Here the target is the
            // backing file's contents, so it is made durable now.
            .sync(true)?;
            self.own_at(&c.dir, c.entry(), owner)
        })();
        if let Err(e) = written {
            let _ = c.dir.unlink(c.entry());
            c.remove_sidecar();
            return Err(e);
        }
        self.register_new(c.disk, c.parent, &c.dir, c.entry(), Kind::Symlink)
    }

    /// Removes a non-directory.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable_at(parent)?;
        // Held from the check to the table's update, so that a lookup
        // revalidating the name cannot record it again in between.
        let _ns = self.ns_lock.write().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let st = c.dir.stat_at(c.entry())?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        let ino = fuse_ino(st.st_ino);
        // What the object was, for the kernel's later questions about an
        // inode it still holds once nothing names it.
        if let Some(n) = self.nodes().get_mut(ino) {
            let kind = n.kind;
            let mut a = attr::from_stat(ino, &st, kind, n.attr.map(|a| a.size));
            a.nlink = a.nlink.saturating_sub(1);
            n.attr = Some(a);
        }
        // The kernel may still use the inode (an operation in flight that
        // resolved the name before this unlink, a later fstat): as on a
        // local filesystem the object lives on until it lets go, so its
        // backing file is kept open in the node meanwhile. Freed at once,
        // its inode number would go to the next new file and the kernel,
        // told of a new object under a number it holds, would answer EIO
        // on the old one.
        let keep = self.keep_replaced(ino, &c);
        c.dir.unlink(c.entry())?;
        c.remove_sidecar();
        let mut nodes = self.nodes();
        if let Some((ino, kept)) = keep {
            nodes.keep(ino, kept);
        }
        nodes.unlink(c.parent, c.entry());
        Ok(())
    }

    /// Empties backing directory `dir` of strata's own files if it holds
    /// nothing else; ENOTEMPTY otherwise. The directory-id lock stays held
    /// while the result lives, so that the caller removes the directory (or
    /// puts its id back) before any read of it can mint new ids.
    fn clear_if_empty(&self, disk: usize, dir: &Dir) -> FsResult<Cleared<'_>> {
        let ids = self.dir_ids.lock().unwrap_or_else(|e| e.into_inner());
        let (_, codec) = self.disk(disk)?.check()?;
        let entries = dir.entries()?;
        // A long name's sidecar without its entry is what a crash between
        // removing the two leaves: strata's own, removed with the ids.
        if entries.iter().any(|e| !codec.is_reserved(&e.name)) {
            return Err(Errno::ENOTEMPTY);
        }
        let id = crate::backing::read_dirid_at(dir).ok().map(|(id, _)| id);
        for e in entries {
            dir.unlink(&e.name)?;
        }
        crate::faults::pause_point("ids-cleared");
        Ok(Cleared { id, _ids: ids })
    }

    /// Puts a directory id back after a removal that did not happen.
    fn restore_dirid(dir: &Dir, id: Option<[u8; 16]>) {
        let id = id.unwrap_or_else(crate::crypto::random_array);
        let _ = dir.replace(OsStr::new(crate::backing::DIRID_BACKUP), &id);
        let _ = dir.replace(OsStr::new(crate::backing::DIRID_NAME), &id);
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable_at(parent)?;
        let _ns = self.ns_lock.write().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let st = c.dir.stat_at(c.entry())?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let victim = c.dir.open_dir(c.entry())?;
        let cleared = self.clear_if_empty(c.disk, &victim)?;
        if let Err(e) = c.dir.rmdir(c.entry()) {
            // Put the id back so that the directory stays readable.
            if self.disk(c.disk)?.ciphers()?.1.is_encrypted() {
                Self::restore_dirid(&victim, cleared.id);
            }
            return Err(e.into());
        }
        c.remove_sidecar();
        let ino = fuse_ino(st.st_ino);
        self.dirs.remove(ino);
        if let Some(n) = self.nodes().get_mut(ino) {
            let mut a = attr::from_stat(ino, &st, Kind::Dir, None);
            a.nlink = 0;
            n.attr = Some(a);
        }
        self.nodes().unlink(c.parent, c.entry());
        Ok(())
    }

    /// Renames, with no-replace and exchange (RENAME_NOREPLACE and
    /// RENAME_EXCHANGE on Linux, RENAME_EXCL and RENAME_SWAP on macOS).
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
        let how = Rename::from_fuse_flags(flags).map_err(Errno)?;
        let _ns = self.ns_lock.write().unwrap_or_else(|e| e.into_inner());
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        if from.disk != to.disk {
            return Err(Errno(errno::EXDEV));
        }
        let src = from.dir.stat_at(from.entry())?;
        let dst = match to.dir.stat_at(to.entry()) {
            Ok(st) => Some(st),
            Err(e) if e.raw_os_error() == Some(errno::ENOENT) => None,
            Err(e) => return Err(e.into()),
        };
        if from.parent == to.parent && from.entry() == to.entry() {
            return Ok(());
        }
        let is_dir = |st: &Stat| FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        let mut cleared: Option<(Dir, Cleared<'_>)> = None;
        match (&dst, how) {
            (None, Rename::Exchange) => return Err(Errno::ENOENT),
            (Some(_), Rename::NoReplace) => return Err(Errno::EEXIST),
            (Some(d), Rename::Replace) => {
                if d.st_ino == src.st_ino {
                    // Two names of one inode: POSIX says do nothing.
                    return Ok(());
                }
                if is_dir(d) {
                    if !is_dir(&src) {
                        return Err(Errno::EISDIR);
                    }
                    let victim = to.dir.open_dir(to.entry())?;
                    let ids = self.clear_if_empty(to.disk, &victim)?;
                    cleared = Some((victim, ids));
                } else if is_dir(&src) {
                    return Err(Errno::ENOTDIR);
                }
            }
            _ => {}
        }
        let keep = match &dst {
            Some(d) if how == Rename::Replace && !is_dir(d) => {
                self.keep_replaced(fuse_ino(d.st_ino), &to)
            }
            _ => None,
        };
        to.write_sidecar()?;
        if let Err(e) = from.dir.rename(from.entry(), &to.dir, to.entry(), how) {
            if dst.is_none() {
                to.remove_sidecar();
            }
            if let Some((victim, ids)) = cleared {
                if self.disk(to.disk)?.ciphers()?.1.is_encrypted() {
                    Self::restore_dirid(&victim, ids.id);
                }
            }
            return Err(e.into());
        }
        if let Some(d) = &dst {
            if how == Rename::Replace && is_dir(d) {
                self.dirs.remove(fuse_ino(d.st_ino));
            }
        }
        let mut nodes = self.nodes();
        if let Some((ino, kept)) = keep {
            nodes.keep(ino, kept);
        }
        if how == Rename::Exchange {
            nodes.exchange(from.parent, from.entry(), to.parent, to.entry());
        } else {
            from.remove_sidecar();
            nodes.rename(from.parent, from.entry(), to.parent, to.entry());
        }
        Ok(())
    }

    /// A descriptor of the file or symlink `ino`, named `to` (about to be
    /// renamed over or unlinked), if the kernel holds its node and the
    /// table knows no other name of it: the node keeps it, so that an open
    /// or a change the kernel resolved before the rename or unlink still
    /// reaches the object, and its inode number is not reused meanwhile.
    fn keep_replaced(&self, ino: u64, to: &super::Child) -> Option<(u64, nodes::Kept)> {
        {
            let nodes = self.nodes();
            let n = nodes.get(ino)?;
            let only_this = n
                .links
                .iter()
                .all(|l| l.parent == to.parent && l.name == to.entry());
            if !matches!(n.kind, Kind::File | Kind::Symlink) || !only_this || n.kept.is_some() {
                return None;
            }
        }
        let label = self.label_at(to.disk, to.parent, to.entry());
        let mut writable = self.disk_writable(to.disk);
        let fd = match to.dir.open_file(to.entry(), writable) {
            Err(e) if writable && e.raw_os_error() == Some(errno::EACCES) => {
                writable = false;
                to.dir.open_file(to.entry(), false)
            }
            r => r,
        }
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if fuse_ino(st.st_ino) != ino {
            return None;
        }
        Some((
            ino,
            nodes::Kept {
                fd: Arc::new(fd),
                writable,
                label,
            },
        ))
    }

    /// Makes a hard link.
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Attr> {
        self.writable_at(ino)?;
        self.writable_at(newparent)?;
        let (disk, kind, src) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.kind, n.links.first().cloned())
        };
        if kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        let src = src.ok_or(Errno::ENOENT)?;
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let src_dir = self.dir_fd(src.parent)?;
        let to = self.child(newparent, newname)?;
        if to.disk != disk {
            return Err(Errno(errno::EXDEV));
        }
        to.write_sidecar()?;
        if let Err(e) = src_dir.link(&src.name, &to.dir, to.entry()) {
            if e.raw_os_error() != Some(errno::EEXIST) {
                to.remove_sidecar();
            }
            return Err(e.into());
        }
        let st = to.dir.stat_at(to.entry())?;
        if fuse_ino(st.st_ino) != ino {
            return Err(Errno::EIO);
        }
        self.nodes()
            .remember(ino, disk, kind, to.parent, to.entry(), true);
        // The kernel takes the attributes of a link's reply as they come.
        self.note_reply(disk);
        Ok(self.attr_at(ino, disk, &to.dir, to.entry(), &st, kind))
    }

    /// Lists a directory (the whole listing, taken at opendir).
    pub fn list(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry::new(ino, Kind::Dir, ".".into()),
            DirEntry::new(ROOT_INO, Kind::Dir, "..".into()),
        ];
        if ino == ROOT_INO {
            for (i, d) in self.live_disks() {
                let st = self.open_root(i)?.stat()?;
                out.push(DirEntry::new(
                    fuse_ino(st.st_ino),
                    Kind::Dir,
                    d.name.clone().into(),
                ));
            }
            if self.has_snapshots() {
                out.push(DirEntry::new(
                    SNAPSHOTS_INO,
                    Kind::Dir,
                    SNAPSHOTS_DIR.into(),
                ));
            }
            return Ok(out);
        }
        if ino == SNAPSHOTS_INO {
            for (i, d) in self.live_disks() {
                if self.snapshots_of(&d.name).next().is_some() {
                    out.push(DirEntry::new(
                        SNAPSHOT_DISK_INO + i as u64,
                        Kind::Dir,
                        d.name.clone().into(),
                    ));
                }
            }
            return Ok(out);
        }
        if Fs::is_virtual(ino) {
            out[1].ino = SNAPSHOTS_INO;
            let disk = self.disk((ino - SNAPSHOT_DISK_INO) as usize)?;
            for (i, d) in self.snapshots_of(&disk.name) {
                let st = self.open_root(i)?.stat()?;
                out.push(DirEntry::new(
                    fuse_ino(st.st_ino),
                    Kind::Dir,
                    d.snapshot.clone().unwrap_or_default().into(),
                ));
            }
            return Ok(out);
        }
        let disk = self.nodes().get(ino).map(|n| n.disk).ok_or(Errno::ENOENT)?;
        let (_, codec) = self.disk(disk)?.check()?;
        let dir = self.dir_fd(ino)?;
        let id = self.cached_dir_id(ino, disk, &dir)?;
        for e in dir.entries()? {
            if codec.is_reserved(&e.name) {
                continue;
            }
            let plain = if codec.is_encrypted() && names::is_long(&e.name) {
                let side = dir
                    .read_small(&names::sidecar_name(&e.name), names::SIDECAR_MAX)
                    .map_err(|err| err.to_string())
                    .and_then(|b| String::from_utf8(b).map_err(|err| err.to_string()));
                match side {
                    Ok(s) => codec.decrypt_long(&id, &e.name, &s),
                    Err(err) => {
                        tracing::error!(dir = %self.label_at(disk, ino, OsStr::new("")), "long-name sidecar unreadable: {err}");
                        continue;
                    }
                }
            } else {
                codec.decrypt(&id, &e.name)
            };
            let plain = match plain {
                Ok(p) => p,
                Err(err) => {
                    tracing::error!(dir = %self.label_at(disk, ino, OsStr::new("")), "skipping an entry whose name does not decrypt: {err}");
                    continue;
                }
            };
            let kind = match e.file_type {
                FileType::Directory => Kind::Dir,
                FileType::Fifo => Kind::Fifo,
                FileType::Socket => Kind::Socket,
                FileType::CharacterDevice => Kind::CharDev,
                FileType::BlockDevice => Kind::BlockDev,
                _ => match dir.stat_at(&e.name) {
                    Ok(st) => self.probe(disk, &dir, &e.name, &st).0,
                    Err(_) => continue,
                },
            };
            out.push(DirEntry {
                ino: fuse_ino(e.ino),
                kind,
                name: plain,
                backing: Some(e.name),
            });
        }
        Ok(out)
    }

    /// Filesystem statistics of the backing store.
    pub fn statfs(&self) -> FsResult<rustix::fs::StatVfs> {
        Ok(rustix::fs::statvfs(&self.store)?)
    }

    /// Flushes a directory's entries to the backing store.
    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        if ino == ROOT_INO || Fs::is_virtual(ino) {
            return Ok(());
        }
        self.dir_fd(ino)?.sync()?;
        Ok(())
    }
}
