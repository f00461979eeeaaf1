//! The thin fuser adapter: each handler calls the core in `fs` and turns its
//! `Result` into a reply, inside a span naming the operation and inode.
//! Nothing here decides semantics. [`watch`] keeps what the daemon needs to
//! know of the requests: when the last came (idle unmount) and which failed
//! in a way the logs must show.

pub mod watch;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno as FErrno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, Caller, Errno, Fs, Kind, SetAttr, SetTime};

/// How long the kernel may cache the attributes, entries and absent names
/// of a disk's objects. strata is the only writer of its backing store while
/// mounted (the store lock keeps every other strata out), every change goes
/// through the kernel, which updates or drops what it cached, and a
/// revocation drops the cached attributes of the disk's inodes; the bound
/// only limits staleness after a change made behind strata's back.
const TTL: Duration = Duration::from_secs(60);

/// The same for the mount root and the `.snapshots` directories, whose
/// entries change without the kernel (a snapshot taken while mounted).
const VIRTUAL_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may remember that a name is absent. A revocation
/// cannot make it forget such names (it drops what strata can name: the
/// attributes of the disk's inodes), and until it does the kernel answers
/// ENOENT for them without asking, telling which names the disk lacks where
/// every other question is refused: so they are kept only as long as the
/// revocation's other effects take.
const ABSENT_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may cache what it learns about inode `ino` (or the
/// names in directory `ino`).
fn ttl(ino: u64) -> &'static Duration {
    if ino == crate::fs::ROOT_INO || Fs::is_virtual(ino) {
        &VIRTUAL_TTL
    } else {
        &TTL
    }
}

/// No time to live: what a reply tells about an object of a disk being
/// revoked is not to be kept (see [`StrataFuse::fresh_ttl`]).
const NO_TTL: Duration = Duration::ZERO;

/// A negative entry: a name known to be absent, remembered by the kernel
/// for the entry's time to live (node id 0).
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Largest request the kernel is asked to send.
pub const MAX_WRITE: u32 = 1 << 20;

/// Readahead the mount gets (Linux): four requests of the largest size, so
/// that while the daemon decrypts one the kernel has the next ones asked
/// for (a cold sequential read was about a quarter faster than with one).
pub const READAHEAD: u32 = 4 << 20;

/// The adapter.
pub struct StrataFuse {
    fs: Arc<Fs>,
    activity: Arc<watch::Activity>,
    failures: watch::Failures,
    /// Whether FLUSH is declined (see [`flush_is_optional`]).
    decline_flush: bool,
}

/// The first FUSE protocol version (7.35, Linux 5.16) whose kernel writes a
/// file's dirty pages back and reports their errors at every close even
/// after the daemon declined FLUSH. Older kernels (Debian 11's 5.10, for
/// one) skip that write-back once FLUSH is declined: a write error
/// (ENOSPC, EIO, a revoked key) is then reported by no close, the pages
/// being written only at the last release, whose errors nobody sees.
const FLUSH_OPTIONAL_FROM: fuser::Version = fuser::Version(7, 35);

/// Whether a kernel speaking FUSE protocol `abi` may be told that FLUSH is
/// not implemented without losing close's write-back and error report.
pub fn flush_is_optional(abi: fuser::Version) -> bool {
    abi.0 > FLUSH_OPTIONAL_FROM.0
        || (abi.0 == FLUSH_OPTIONAL_FROM.0 && abi.1 >= FLUSH_OPTIONAL_FROM.1)
}

impl StrataFuse {
    /// How long the kernel may keep attributes of `ino` that a request
    /// admitted before a revocation answers with while the revocation
    /// flushes: not at all, so that it asks before taking another write
    /// into its cache (and is refused).
    fn fresh_ttl(&self, ino: u64) -> &'static Duration {
        if self.fs.takes_no_requests(ino) {
            &NO_TTL
        } else {
            ttl(ino)
        }
    }

    /// Wraps the core; `activity` sees every request.
    pub fn new(fs: Arc<Fs>, activity: Arc<watch::Activity>) -> Self {
        StrataFuse {
            fs,
            activity,
            failures: watch::Failures::default(),
            decline_flush: false,
        }
    }
}

fn ferr(e: Errno) -> FErrno {
    FErrno::from_i32(e.0)
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn fattr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// What a listing with attributes carries for `.` and `..`: the kernel
/// takes neither as an entry, so only the inode number and type count.
fn dot_attr(e: &crate::fs::DirEntry) -> FileAttr {
    FileAttr {
        ino: INodeNo(e.ino),
        kind: file_type(e.kind),
        perm: 0o755,
        nlink: 2,
        ..absent()
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(s),
    })
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

macro_rules! op {
    ($this:ident, $name:literal, $ino:expr, $body:expr, $ok:expr, $reply:ident) => {{
        let _busy = $this.activity.begin();
        let span = tracing::debug_span!($name, ino = $ino);
        let _g = span.enter();
        match $body {
            Ok(v) => $ok(v),
            Err(e) => {
                tracing::debug!(errno = e.0, "failed");
                let ino: u64 = $ino;
                $this
                    .failures
                    .report($name, ino, e, || $this.fs.disk_label(ino));
                $reply.error(ferr(e))
            }
        }
    }};
}

impl Filesystem for StrataFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.decline_flush = flush_is_optional(config.kernel_abi());
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        // strata is the only writer of its backing store while mounted, so
        // the kernel's page cache stays coherent: let it cache writes (it
        // then sends large writes, handles O_APPEND and flushes on fsync and
        // close), run directory operations in parallel and issue direct I/O
        // asynchronously. Each capability is asked for only if offered.
        // Listings carry attributes (READDIRPLUS), when the kernel judges
        // that they will be used (AUTO: the first block of a listing, and
        // the rest once its entries are looked at, as by `ls -l`).
        for cap in [
            InitFlags::FUSE_WRITEBACK_CACHE,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        op!(
            self,
            "lookup",
            parent.0,
            self.fs.lookup_or_absent(parent.0, name),
            |a: Option<Attr>| match a {
                Some(a) => reply.entry(ttl(parent.0), &fattr(&a), Generation(a.generation)),
                None => reply.entry(&ABSENT_TTL, &absent(), Generation(0)),
            },
            reply
        )
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        op!(
            self,
            "getattr",
            ino.0,
            self.fs.getattr(ino.0),
            |a: Attr| reply.attr(ttl(ino.0), &fattr(&a)),
            reply
        )
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // BSD file flags (chflags(2), macOS only) are not stored: setting
        // any is refused rather than dropped, so that nobody believes a
        // file immutable or hidden when it is not. Clearing them is a no-op.
        if flags.is_some_and(|f| !f.is_empty()) {
            return reply.error(FErrno::from_i32(crate::platform::errno::ENOTSUP));
        }
        let _gate = self.fs.change_gate(ino.0);
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        op!(
            self,
            "setattr",
            ino.0,
            self.fs.setattr(ino.0, fh.map(|f| f.0), s),
            |a: Attr| reply.attr(self.fresh_ttl(ino.0), &fattr(&a)),
            reply
        )
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        op!(
            self,
            "readlink",
            ino.0,
            self.fs.readlink(ino.0),
            |d: Vec<u8>| reply.data(&d),
            reply
        )
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "mknod",
            parent.0,
            self.fs.mknod(parent.0, name, mode, rdev, caller(req)),
            |a: Attr| reply.entry(&TTL, &fattr(&a), Generation(a.generation)),
            reply
        )
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "mkdir",
            parent.0,
            self.fs.mkdir(parent.0, name, mode, caller(req)),
            |a: Attr| reply.entry(&TTL, &fattr(&a), Generation(a.generation)),
            reply
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "unlink",
            parent.0,
            self.fs.unlink(parent.0, name),
            |()| reply.ok(),
            reply
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "rmdir",
            parent.0,
            self.fs.rmdir(parent.0, name),
            |()| reply.ok(),
            reply
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "symlink",
            parent.0,
            self.fs.symlink(parent.0, link_name, target, caller(req)),
            |a: Attr| reply.entry(&TTL, &fattr(&a), Generation(a.generation)),
            reply
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "rename",
            parent.0,
            self.fs
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
            |()| reply.ok(),
            reply
        )
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "link",
            ino.0,
            self.fs.link(ino.0, newparent.0, newname),
            |a: Attr| reply.entry(self.fresh_ttl(a.ino), &fattr(&a), Generation(a.generation)),
            reply
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "open",
            ino.0,
            self.fs.open(ino.0, flags.0),
            |fh: u64| reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            reply
        )
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        op!(
            self,
            "read",
            ino.0,
            self.fs.read(fh.0, offset, size),
            |d: Vec<u8>| reply.data(&d),
            reply
        )
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (_writing, _gate) = self.fs.write_gate(ino.0);
        op!(
            self,
            "write",
            ino.0,
            self.fs.write(fh.0, offset, data),
            |n: usize| reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            reply
        )
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go straight to the backing file and strata keeps no POSIX
        // locks of its own (the kernel keeps them), so there is nothing to
        // do at close: where the kernel still writes back its dirty pages
        // and reports their errors at close without a FLUSH, ENOSYS tells
        // it to stop sending one (one request less per close); an older
        // kernel would skip that write-back too, so it gets an answer.
        if self.decline_flush {
            reply.error(FErrno::ENOSYS);
        } else {
            reply.ok();
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "release",
            ino.0,
            self.fs.release(fh.0),
            |()| reply.ok(),
            reply
        )
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "fsync",
            ino.0,
            self.fs.fsync(fh.0, datasync),
            |()| reply.ok(),
            reply
        )
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        op!(
            self,
            "opendir",
            ino.0,
            self.fs.opendir(ino.0),
            |fh: u64| reply.opened(FileHandle(fh), FopenFlags::empty()),
            reply
        )
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        op!(
            self,
            "readdir",
            ino.0,
            self.fs.dir_entries(ino.0, fh.0),
            |entries: Arc<Vec<crate::fs::DirEntry>>| {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, e) in entries.iter().enumerate().skip(start) {
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok()
            },
            reply
        )
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        op!(
            self,
            "readdirplus",
            ino.0,
            self.fs.dir_entries(ino.0, fh.0),
            |entries: Arc<Vec<crate::fs::DirEntry>>| {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, e) in entries.iter().enumerate().skip(start) {
                    // Every entry but `.` and `..` that the kernel receives
                    // counts as a lookup: an entry that does not fit the
                    // reply gives its lookup back.
                    let (attr, generation, counted, valid) = if e.is_dot() {
                        (dot_attr(e), 0, false, ttl(ino.0))
                    } else {
                        match self.fs.lookup_listed(ino.0, e) {
                            Ok(a) => (fattr(&a), a.generation, true, ttl(ino.0)),
                            // Gone since the listing: left out.
                            Err(err) if err == Errno::ENOENT => continue,
                            // Failed otherwise: listed all the same, under
                            // its inode number (an entry of node id 0 has
                            // inode number 0 too, which readdir(3) skips),
                            // valid for no time, so that every use of the
                            // name looks it up again and gets the error.
                            Err(_) => match self.fs.count_listed_failure(ino.0, e) {
                                Some(node) => (
                                    FileAttr {
                                        ino: INodeNo(node),
                                        kind: file_type(e.kind),
                                        nlink: 1,
                                        ..absent()
                                    },
                                    0,
                                    true,
                                    &Duration::ZERO,
                                ),
                                None => (
                                    FileAttr {
                                        kind: file_type(e.kind),
                                        ..absent()
                                    },
                                    0,
                                    false,
                                    ttl(ino.0),
                                ),
                            },
                        }
                    };
                    let full = reply.add(
                        attr.ino,
                        (i + 1) as u64,
                        &e.name,
                        valid,
                        &attr,
                        Generation(generation),
                    );
                    if full {
                        if counted {
                            self.fs.forget(attr.ino.0, 1);
                        }
                        break;
                    }
                }
                reply.ok()
            },
            reply
        )
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        op!(
            self,
            "releasedir",
            ino.0,
            self.fs.release(fh.0),
            |()| reply.ok(),
            reply
        )
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        op!(
            self,
            "fsyncdir",
            ino.0,
            self.fs.fsyncdir(ino.0),
            |()| reply.ok(),
            reply
        )
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        op!(
            self,
            "statfs",
            ino.0,
            self.fs.statfs(),
            |s: rustix::fs::StatVfs| {
                // Report in 4 KiB units of the backing filesystem's space.
                let scale = |n: u64| n.saturating_mul(s.f_frsize) / 4096;
                reply.statfs(
                    scale(s.f_blocks),
                    scale(s.f_bfree),
                    scale(s.f_bavail),
                    s.f_files,
                    s.f_ffree,
                    4096,
                    255,
                    4096,
                )
            },
            reply
        )
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "setxattr",
            ino.0,
            self.fs.setxattr(ino.0, name, value, flags, position),
            |()| reply.ok(),
            reply
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        op!(
            self,
            "getxattr",
            ino.0,
            self.fs.getxattr(ino.0, name),
            |v: Vec<u8>| xattr_reply(reply, size, &v),
            reply
        )
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        op!(
            self,
            "listxattr",
            ino.0,
            self.fs.listxattr(ino.0),
            |v: Vec<u8>| xattr_reply(reply, size, &v),
            reply
        )
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "removexattr",
            ino.0,
            self.fs.removexattr(ino.0, name),
            |()| reply.ok(),
            reply
        )
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _gate = self.fs.change_gate(ino.0);
        op!(
            self,
            "fallocate",
            ino.0,
            self.fs.fallocate(fh.0, offset, length, mode),
            |()| reply.ok(),
            reply
        )
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _gate = self.fs.change_gate(ino_out.0);
        op!(
            self,
            "copy_file_range",
            ino_out.0,
            self.fs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len),
            |n: usize| reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            reply
        )
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _gate = self.fs.change_gate(parent.0);
        op!(
            self,
            "create",
            parent.0,
            self.fs.create(parent.0, name, mode, flags, caller(req)),
            |(a, fh): (Attr, u64)| reply.created(
                self.fresh_ttl(a.ino),
                &fattr(&a),
                Generation(a.generation),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE
            ),
            reply
        )
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, v: &[u8]) {
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(FErrno::from_i32(crate::platform::errno::ERANGE));
    } else {
        reply.data(v);
    }
}

#[cfg(test)]
mod tests {
    use super::flush_is_optional;
    use fuser::Version;

    #[test]
    fn flush_is_declined_only_where_close_still_writes_back_without_it() {
        // Linux 5.10 (Debian 11) speaks 7.32: close skips the write-back
        // once FLUSH is declined there.
        for old in [
            Version(7, 19),
            Version(7, 31),
            Version(7, 32),
            Version(7, 34),
        ] {
            assert!(!flush_is_optional(old), "{old}");
        }
        for new in [
            Version(7, 35),
            Version(7, 41),
            Version(7, 45),
            Version(8, 0),
        ] {
            assert!(flush_is_optional(new), "{new}");
        }
    }
}
