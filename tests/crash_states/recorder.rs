//! A recording passthrough filesystem: a small FUSE filesystem, served by a
//! thread of the test process, that forwards every request to a real
//! directory and logs, in the order it answered them, every operation that
//! changes what a power cut could leave there (creates, directory changes,
//! renames, links, writes with their data, size and mode changes) and every
//! fsync, fdatasync and directory fsync.
//!
//! Why FUSE and not strace (ALICE's way): the recorder sees exactly the
//! requests the kernel forwards for the backing store, with their data and
//! the inode they act on, one at a time on one thread, so the order is total
//! and nothing has to be parsed back out of a trace of a multithreaded
//! daemon (interleaved "unfinished/resumed" lines, hex dumps, paths decoded
//! after the fact). Every request is answered from the real directory at
//! once, so the recording is bounded by the workload, not by timeouts.
//! The recorder runs in a process of its own (see [`Recorder`]) and writes
//! its log to a file before it answers each request, so the log position
//! read after a workload's call returned covers every operation the call
//! caused.
//! One limit: the kernel forwards no `syncfs` to a FUSE server (only
//! virtiofs gets FUSE_SYNCFS), so a syncfs of the store is not in the log;
//! the harness adds it where it is known to happen (see `Op::SyncAll`).
//!
//! Files are opened with direct I/O: no page cache of this mount sits
//! between the daemon's writes and the log, and attributes are never
//! cached, so the daemon always sees the real sizes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata::platform::{Allocated, Rename, Unmount, UnmountError};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// The mount root's inode: the recorded directory itself.
pub const ROOT: u64 = 1;
const TTL: Duration = Duration::ZERO;

/// One operation that reached the recorded directory.
#[derive(Debug, Clone)]
pub enum Op {
    /// A regular file `id` was created as `name` in directory `parent`.
    Create {
        parent: u64,
        name: OsString,
        id: u64,
        mode: u32,
    },
    /// A directory `id` was created.
    Mkdir {
        parent: u64,
        name: OsString,
        id: u64,
        mode: u32,
    },
    /// A non-directory entry was removed.
    Unlink { parent: u64, name: OsString },
    /// An empty directory was removed.
    Rmdir { parent: u64, name: OsString },
    /// An entry was renamed (over whatever had the new name), or two
    /// entries were exchanged.
    Rename {
        parent: u64,
        name: OsString,
        newparent: u64,
        newname: OsString,
        exchange: bool,
    },
    /// A hard link to `id` was made.
    Link {
        id: u64,
        parent: u64,
        name: OsString,
    },
    /// Bytes were written.
    Write { id: u64, offset: u64, data: Vec<u8> },
    /// The size was set (truncate, or an allocation that grew the file).
    SetSize { id: u64, size: u64 },
    /// The permission bits were set.
    Chmod { id: u64, mode: u32 },
    /// fsync (or fdatasync) of a file returned.
    Fsync { id: u64, datasync: bool },
    /// fsync of a directory returned.
    FsyncDir { id: u64 },
    /// Everything before is durable: a syncfs of the store, which the
    /// kernel does not forward (added by the harness, never recorded).
    SyncAll,
}

/// What an object of the recorded directory held when recording began.
#[derive(Debug, Clone)]
pub struct InitialEntry {
    pub id: u64,
    pub parent: u64,
    pub name: OsString,
    pub dir: bool,
    pub mode: u32,
    pub data: Vec<u8>,
}

struct Node {
    /// Its directory and name (the last one seen, for a hard-linked file);
    /// `parent` 0 once no name is known to lead to it.
    parent: u64,
    name: OsString,
}

/// What a setattr changes.
struct Change {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

struct Handle {
    ino: u64,
    file: Option<File>,
}

struct State {
    nodes: HashMap<u64, Node>,
    by_real: HashMap<(u64, u64), u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

struct RecFs {
    root: PathBuf,
    state: Mutex<State>,
    /// The log file, appended to (one write per record) before each reply.
    log: Mutex<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn kind_of(m: &fs::Metadata) -> FileType {
    let t = m.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn attr(ino: u64, m: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time_of(m.atime(), m.atime_nsec()),
        mtime: time_of(m.mtime(), m.mtime_nsec()),
        ctime: time_of(m.ctime(), m.ctime_nsec()),
        crtime: time_of(m.ctime(), m.ctime_nsec()),
        kind: kind_of(m),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl State {
    fn path(&self, root: &Path, ino: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let n = self.nodes.get(&at)?;
            if n.parent == 0 {
                return None;
            }
            names.push(n.name.clone());
            at = n.parent;
        }
        let mut p = root.to_path_buf();
        for n in names.into_iter().rev() {
            p.push(n);
        }
        Some(p)
    }

    /// The inode number of the real object `m`, named `name` in `parent`.
    fn intern(&mut self, m: &fs::Metadata, parent: u64, name: &OsStr) -> u64 {
        let key = (m.dev(), m.ino());
        let ino = match self.by_real.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.next_ino;
                self.next_ino += 1;
                self.by_real.insert(key, i);
                i
            }
        };
        if ino != ROOT {
            self.nodes.insert(
                ino,
                Node {
                    parent,
                    name: name.to_os_string(),
                },
            );
        }
        ino
    }

    /// Like [`State::intern`] for an object just created: always a new
    /// number, since the real filesystem reuses the inode numbers of
    /// objects deleted before.
    fn intern_new(&mut self, m: &fs::Metadata, parent: u64, name: &OsStr) -> u64 {
        self.by_real.remove(&(m.dev(), m.ino()));
        self.intern(m, parent, name)
    }

    fn forget_name(&mut self, parent: u64, name: &OsStr) {
        for n in self.nodes.values_mut() {
            if n.parent == parent && n.name == name {
                n.parent = 0;
            }
        }
    }
}

impl RecFs {
    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn record(&self, op: Op) {
        let mut buf = Vec::new();
        encode(&op, &mut buf);
        lock(&self.log)
            .write_all(&buf)
            .expect("append to the recorder log");
    }

    fn path_of(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.st().path(&self.root, ino).ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path_of(parent)?.join(name))
    }

    /// Removes file (or, with `dir`, directory) `name` of `parent` and
    /// records the removal.
    fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let p = self.child(parent, name)?;
        if dir {
            fs::remove_dir(&p)
        } else {
            fs::remove_file(&p)
        }
        .map_err(|e| errno(&e))?;
        self.st().forget_name(parent, name);
        let name = name.to_os_string();
        self.record(if dir {
            Op::Rmdir { parent, name }
        } else {
            Op::Unlink { parent, name }
        });
        Ok(())
    }

    fn entry_of(&self, parent: u64, name: &OsStr) -> Result<(u64, fs::Metadata), Errno> {
        let p = self.child(parent, name)?;
        let m = fs::symlink_metadata(&p).map_err(|e| errno(&e))?;
        let ino = self.st().intern(&m, parent, name);
        Ok((ino, m))
    }

    fn meta(&self, ino: u64, fh: Option<FileHandle>) -> Result<fs::Metadata, Errno> {
        if let Some(fh) = fh {
            if let Some(Handle { file: Some(f), .. }) = self.st().handles.get(&fh.0) {
                return f.metadata().map_err(|e| errno(&e));
            }
        }
        fs::symlink_metadata(self.path_of(ino)?).map_err(|e| errno(&e))
    }

    fn with_file<T>(
        &self,
        fh: FileHandle,
        f: impl FnOnce(u64, &File) -> std::io::Result<T>,
    ) -> Result<T, Errno> {
        let st = self.st();
        match st.handles.get(&fh.0) {
            Some(Handle {
                ino,
                file: Some(file),
            }) => f(*ino, file).map_err(|e| errno(&e)),
            _ => Err(Errno::EBADF),
        }
    }

    fn open_handle(&self, ino: u64, file: Option<File>) -> u64 {
        let mut st = self.st();
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Handle { ino, file });
        fh
    }

    fn setattr_inner(
        &self,
        ino: u64,
        c: Change,
        fh: Option<FileHandle>,
    ) -> Result<fs::Metadata, Errno> {
        let Change {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = c;
        let path = self.st().path(&self.root, ino);
        let open_file = || -> Result<File, Errno> {
            if let Some(fh) = fh {
                if let Some(Handle { file: Some(f), .. }) = self.st().handles.get(&fh.0) {
                    return f.try_clone().map_err(|e| errno(&e));
                }
            }
            let p = path.clone().ok_or(Errno::ENOENT)?;
            OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| errno(&e))
        };
        if let Some(size) = size {
            open_file()?.set_len(size).map_err(|e| errno(&e))?;
            self.record(Op::SetSize { id: ino, size });
        }
        if let Some(mode) = mode {
            let p = path.clone().ok_or(Errno::ENOENT)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| errno(&e))?;
            self.record(Op::Chmod {
                id: ino,
                mode: mode & 0o7777,
            });
        }
        if uid.is_some() || gid.is_some() {
            let p = path.clone().ok_or(Errno::ENOENT)?;
            std::os::unix::fs::lchown(&p, uid, gid).map_err(|e| errno(&e))?;
        }
        if atime.is_some() || mtime.is_some() {
            let p = path.clone().ok_or(Errno::ENOENT)?;
            let ts = |t: Option<TimeOrNow>| match t {
                None => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                Some(TimeOrNow::Now) => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                Some(TimeOrNow::SpecificTime(s)) => {
                    let d = s.duration_since(UNIX_EPOCH).unwrap_or_default();
                    rustix::fs::Timespec {
                        tv_sec: d.as_secs() as i64,
                        tv_nsec: i64::from(d.subsec_nanos()),
                    }
                }
            };
            let t = rustix::fs::Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &p,
                &t,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Errno::from_i32(e.raw_os_error()))?;
        }
        self.meta(ino, fh)
    }
}

impl Filesystem for RecFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry_of(parent.0, name) {
            Ok((ino, m)) => reply.entry(&TTL, &attr(ino, &m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.meta(ino.0, fh) {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
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
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let c = Change {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        match self.setattr_inner(ino.0, c, fh) {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let p = self.child(parent.0, name)?;
            fs::DirBuilder::new()
                .mode(mode & 0o7777)
                .create(&p)
                .map_err(|e| errno(&e))?;
            let m = fs::symlink_metadata(&p).map_err(|e| errno(&e))?;
            let ino = self.st().intern_new(&m, parent.0, name);
            self.record(Op::Mkdir {
                parent: parent.0,
                name: name.to_os_string(),
                id: ino,
                mode: m.mode() & 0o7777,
            });
            Ok((ino, m))
        })();
        match r {
            Ok((ino, m)) => reply.entry(&TTL, &attr(ino, &m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
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
        let r = (|| {
            let from = self.child(parent.0, name)?;
            let to = self.child(newparent.0, newname)?;
            let (src, _) = self.entry_of(parent.0, name)?;
            let dst = self.entry_of(newparent.0, newname).ok().map(|(i, _)| i);
            let how = Rename::from_fuse_flags(flags.bits()).map_err(Errno::from_i32)?;
            strata::platform::renameat(
                rustix::fs::CWD,
                from.as_os_str(),
                rustix::fs::CWD,
                to.as_os_str(),
                how,
            )
            .map_err(|e| errno(&e))?;
            let exchange = how == Rename::Exchange;
            let mut st = self.st();
            if let Some(d) = dst.filter(|&d| d != src) {
                let n = st.nodes.entry(d).or_insert(Node {
                    parent: 0,
                    name: OsString::new(),
                });
                if exchange {
                    n.parent = parent.0;
                    n.name = name.to_os_string();
                } else {
                    n.parent = 0;
                }
            }
            st.nodes.insert(
                src,
                Node {
                    parent: newparent.0,
                    name: newname.to_os_string(),
                },
            );
            drop(st);
            self.record(Op::Rename {
                parent: parent.0,
                name: name.to_os_string(),
                newparent: newparent.0,
                newname: newname.to_os_string(),
                exchange,
            });
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let from = self.path_of(ino.0)?;
            let to = self.child(newparent.0, newname)?;
            fs::hard_link(&from, &to).map_err(|e| errno(&e))?;
            let m = fs::symlink_metadata(&to).map_err(|e| errno(&e))?;
            self.record(Op::Link {
                id: ino.0,
                parent: newparent.0,
                name: newname.to_os_string(),
            });
            Ok(m)
        })();
        match r {
            Ok(m) => reply.entry(&TTL, &attr(ino.0, &m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let p = self.path_of(ino.0)?;
            let acc = flags.0 & libc::O_ACCMODE;
            let file = OpenOptions::new()
                .read(acc != libc::O_WRONLY)
                .write(acc != libc::O_RDONLY)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(|e| errno(&e))?;
            Ok(self.open_handle(ino.0, Some(file)))
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let p = self.child(parent.0, name)?;
            let existed = fs::symlink_metadata(&p).is_ok();
            let acc = flags & libc::O_ACCMODE;
            let file = OpenOptions::new()
                .read(acc != libc::O_WRONLY)
                .write(true)
                .create(true)
                .custom_flags(flags & (libc::O_EXCL | libc::O_NOFOLLOW))
                .mode(mode & 0o7777)
                .open(&p)
                .map_err(|e| errno(&e))?;
            let m = fs::symlink_metadata(&p).map_err(|e| errno(&e))?;
            let ino = if existed {
                self.st().intern(&m, parent.0, name)
            } else {
                self.st().intern_new(&m, parent.0, name)
            };
            if !existed {
                self.record(Op::Create {
                    parent: parent.0,
                    name: name.to_os_string(),
                    id: ino,
                    mode: m.mode() & 0o7777,
                });
            }
            if flags & libc::O_TRUNC != 0 && existed && m.size() != 0 {
                file.set_len(0).map_err(|e| errno(&e))?;
                self.record(Op::SetSize { id: ino, size: 0 });
            }
            let m = file.metadata().map_err(|e| errno(&e))?;
            Ok((ino, m, self.open_handle(ino, Some(file))))
        })();
        match r {
            Ok((ino, m, fh)) => reply.created(
                &TTL,
                &attr(ino, &m),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.with_file(fh, |_, f| {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                let n = f.read_at(&mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            Ok(buf)
        });
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.with_file(fh, |ino, f| {
            f.write_all_at(data, offset)?;
            Ok(ino)
        });
        match r {
            Ok(ino) => {
                self.record(Op::Write {
                    id: ino,
                    offset,
                    data: data.to_vec(),
                });
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.st().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.with_file(fh, |ino, f| {
            if datasync {
                f.sync_data()?;
            } else {
                f.sync_all()?;
            }
            Ok(ino)
        });
        match r {
            Ok(ino) => {
                self.record(Op::Fsync { id: ino, datasync });
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.path_of(ino.0) {
            Ok(_) => reply.opened(
                FileHandle(self.open_handle(ino.0, None)),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = (|| {
            let p = self.path_of(ino.0)?;
            let mut out = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (ino.0, FileType::Directory, OsString::from("..")),
            ];
            for e in fs::read_dir(&p).map_err(|e| errno(&e))? {
                let e = e.map_err(|e| errno(&e))?;
                let name = e.file_name();
                let Ok(m) = fs::symlink_metadata(e.path()) else {
                    continue;
                };
                let i = self.st().intern(&m, ino.0, &name);
                out.push((i, kind_of(&m), name));
            }
            Ok(out)
        })();
        match r {
            Ok(entries) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, (ino, kind, name)) in entries.iter().enumerate().skip(start) {
                    if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.st().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            let p = self.path_of(ino.0)?;
            File::open(&p)
                .and_then(|d| d.sync_all())
                .map_err(|e| errno(&e))
        })();
        match r {
            Ok(()) => {
                self.record(Op::FsyncDir { id: ino.0 });
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Only allocation (growing the size or not) is forwarded: the other
        // modes change contents, which the log does not model.
        let Some(keep_size) = strata::platform::fallocate_keeps_size(mode) else {
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
            return;
        };
        let r = self.with_file(fh, |ino, f| {
            let before = f.metadata()?.len();
            let end = offset.saturating_add(length);
            match strata::platform::preallocate(f, offset, end, keep_size)? {
                Allocated::Reserved => {}
                Allocated::Unsupported => {
                    return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
                }
            }
            let after = f.metadata()?.len();
            Ok((ino, before, after))
        });
        match r {
            Ok((ino, before, after)) => {
                if after != before {
                    self.record(Op::SetSize {
                        id: ino,
                        size: after,
                    });
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }
}

// ------------------------------------------------------------ the log file
//
// Records, one after another: a tag byte, then the fields as u64 LE, byte
// strings as a u64 LE length and the bytes.

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn b(&mut self, v: &[u8]) -> &mut Self {
        self.u(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
}

fn encode(op: &Op, out: &mut Vec<u8>) {
    use std::os::unix::ffi::OsStrExt;
    let mut e = Enc(out);
    match op {
        Op::Create {
            parent,
            name,
            id,
            mode,
        } => {
            e.0.push(0);
            e.u(*parent).b(name.as_bytes()).u(*id).u(u64::from(*mode));
        }
        Op::Mkdir {
            parent,
            name,
            id,
            mode,
        } => {
            e.0.push(1);
            e.u(*parent).b(name.as_bytes()).u(*id).u(u64::from(*mode));
        }
        Op::Unlink { parent, name } => {
            e.0.push(2);
            e.u(*parent).b(name.as_bytes());
        }
        Op::Rmdir { parent, name } => {
            e.0.push(3);
            e.u(*parent).b(name.as_bytes());
        }
        Op::Rename {
            parent,
            name,
            newparent,
            newname,
            exchange,
        } => {
            e.0.push(4);
            e.u(*parent)
                .b(name.as_bytes())
                .u(*newparent)
                .b(newname.as_bytes())
                .u(u64::from(*exchange));
        }
        Op::Link { id, parent, name } => {
            e.0.push(5);
            e.u(*id).u(*parent).b(name.as_bytes());
        }
        Op::Write { id, offset, data } => {
            e.0.push(6);
            e.u(*id).u(*offset).b(data);
        }
        Op::SetSize { id, size } => {
            e.0.push(7);
            e.u(*id).u(*size);
        }
        Op::Chmod { id, mode } => {
            e.0.push(8);
            e.u(*id).u(u64::from(*mode));
        }
        Op::Fsync { id, datasync } => {
            e.0.push(9);
            e.u(*id).u(u64::from(*datasync));
        }
        Op::FsyncDir { id } => {
            e.0.push(10);
            e.u(*id);
        }
        Op::SyncAll => e.0.push(11),
    }
}

fn encode_initial(i: &InitialEntry, out: &mut Vec<u8>) {
    use std::os::unix::ffi::OsStrExt;
    let mut e = Enc(out);
    e.u(i.id)
        .u(i.parent)
        .b(i.name.as_bytes())
        .u(u64::from(i.dir))
        .u(u64::from(i.mode))
        .b(&i.data);
}

struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Dec<'_> {
    fn u(&mut self) -> u64 {
        let v = u64::from_le_bytes(self.buf[self.at..self.at + 8].try_into().expect("8 bytes"));
        self.at += 8;
        v
    }
    fn b(&mut self) -> Vec<u8> {
        let n = self.u() as usize;
        let v = self.buf[self.at..self.at + n].to_vec();
        self.at += n;
        v
    }
    fn name(&mut self) -> OsString {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(self.b())
    }
    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }
}

fn decode(d: &mut Dec<'_>) -> Op {
    let tag = d.buf[d.at];
    d.at += 1;
    match tag {
        0 | 1 => {
            let parent = d.u();
            let name = d.name();
            let id = d.u();
            let mode = d.u() as u32;
            if tag == 0 {
                Op::Create {
                    parent,
                    name,
                    id,
                    mode,
                }
            } else {
                Op::Mkdir {
                    parent,
                    name,
                    id,
                    mode,
                }
            }
        }
        2 => Op::Unlink {
            parent: d.u(),
            name: d.name(),
        },
        3 => Op::Rmdir {
            parent: d.u(),
            name: d.name(),
        },
        4 => Op::Rename {
            parent: d.u(),
            name: d.name(),
            newparent: d.u(),
            newname: d.name(),
            exchange: d.u() != 0,
        },
        5 => Op::Link {
            id: d.u(),
            parent: d.u(),
            name: d.name(),
        },
        6 => Op::Write {
            id: d.u(),
            offset: d.u(),
            data: d.b(),
        },
        7 => Op::SetSize {
            id: d.u(),
            size: d.u(),
        },
        8 => Op::Chmod {
            id: d.u(),
            mode: d.u() as u32,
        },
        9 => Op::Fsync {
            id: d.u(),
            datasync: d.u() != 0,
        },
        10 => Op::FsyncDir { id: d.u() },
        11 => Op::SyncAll,
        t => panic!("recorder log: unknown record {t}"),
    }
}

// ------------------------------------------------------------ the process

/// Environment of the recorder process: the directory to record, where to
/// serve it, and where to write the log.
const ENV_REAL: &str = "STRATA_CRASH_RECORD_REAL";
const ENV_MNT: &str = "STRATA_CRASH_RECORD_MNT";
const ENV_LOG: &str = "STRATA_CRASH_RECORD_LOG";
/// The test of this binary that runs the recorder process.
pub const PROCESS_TEST: &str = "recorder_process";

fn walk_initial(
    st: &mut State,
    dir: &Path,
    parent: u64,
    out: &mut Vec<InitialEntry>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = fs::symlink_metadata(e.path())?;
        let name = e.file_name();
        let id = st.intern(&m, parent, &name);
        let dir_like = m.is_dir();
        assert!(
            dir_like || m.is_file(),
            "the recorder models files and directories only: {}",
            e.path().display()
        );
        out.push(InitialEntry {
            id,
            parent,
            name,
            dir: dir_like,
            mode: m.mode() & 0o7777,
            data: if dir_like {
                Vec::new()
            } else {
                fs::read(e.path())?
            },
        });
        if dir_like {
            walk_initial(st, &e.path(), id, out)?;
        }
    }
    Ok(())
}

/// The recorder process: when started by [`Recorder::start`], serves the
/// recorded directory until it is unmounted. Returns at once otherwise.
pub fn serve_from_env() {
    let (Some(real), Some(mnt), Some(logdir)) = (
        std::env::var_os(ENV_REAL),
        std::env::var_os(ENV_MNT),
        std::env::var_os(ENV_LOG),
    ) else {
        return;
    };
    let (real, mnt, logdir) = (
        PathBuf::from(real),
        PathBuf::from(mnt),
        PathBuf::from(logdir),
    );
    let root_meta = fs::metadata(&real).expect("recorded directory");
    let mut st = State {
        nodes: HashMap::new(),
        by_real: HashMap::from([((root_meta.dev(), root_meta.ino()), ROOT)]),
        next_ino: ROOT + 1,
        handles: HashMap::new(),
        next_fh: 1,
    };
    let mut initial = Vec::new();
    walk_initial(&mut st, &real, ROOT, &mut initial).expect("read the recorded directory");
    let mut buf = Vec::new();
    for i in &initial {
        encode_initial(i, &mut buf);
    }
    fs::write(logdir.join("initial"), &buf).expect("write the initial tree");
    let log = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(logdir.join("log"))
        .expect("create the log");
    let fs = RecFs {
        root: real,
        state: Mutex::new(st),
        log: Mutex::new(log),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("strata-recorder".into()),
        fuser::MountOption::NoDev,
    ];
    fuser::Session::new(fs, &mnt, &config)
        .expect("mount the recorder")
        .run()
        .expect("serve the recorder");
}

/// A recorder running in its own process (a FUSE server must not share a
/// process with a client of the files it serves: a client unmapping a
/// shared mapping of a file on a mount above it, as SQLite does with its
/// WAL index, waits for writeback while holding the process's memory map
/// lock, which the server's own page faults then wait for).
pub struct Recorder {
    child: Option<Child>,
    mnt: PathBuf,
    dir: PathBuf,
}

/// What a recording holds once it is over.
pub struct Recorded {
    /// What the recorded directory held when recording began.
    pub initial: Vec<InitialEntry>,
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// The log length (a mark) at the end of each operation.
    pub ends: Vec<usize>,
}

impl Recorder {
    /// Serves `real` at `mnt` (an empty directory), logging into `dir`.
    pub fn start(real: &Path, mnt: &Path, dir: &Path) -> Recorder {
        fs::create_dir_all(dir).expect("recorder directory");
        let out = File::create(dir.join("output")).expect("recorder output");
        let err = out.try_clone().expect("recorder output");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                PROCESS_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ENV_REAL, real)
            .env(ENV_MNT, mnt)
            .env(ENV_LOG, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the recorder process");
        let mut r = Recorder {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        let up = crate::common::poll_until(crate::common::MOUNT_TIMEOUT, || {
            r.failure().is_some() || crate::common::is_mounted(mnt)
        });
        if let Some(why) = r.failure() {
            panic!("the recorder did not start: {why}");
        }
        assert!(up, "the recorder did not mount: {}", r.output());
        r
    }

    fn output(&self) -> String {
        fs::read_to_string(self.dir.join("output")).unwrap_or_default()
    }

    /// The log position now: every operation answered so far is before it.
    pub fn mark(&self) -> usize {
        fs::metadata(self.dir.join("log")).map_or(0, |m| m.len() as usize)
    }

    /// Why the recorder process ended, if it has.
    pub fn failure(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("exited with {status}: {}", self.output())),
            _ => None,
        }
    }

    /// Unmounts, waits for the process and reads the recording.
    pub fn finish(mut self) -> Recorded {
        let mut gone = false;
        for _ in 0..100 {
            match strata::platform::unmount(&self.mnt, Unmount::Plain) {
                Ok(()) => {
                    gone = true;
                    break;
                }
                Err(UnmountError::Busy) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("unmount the recorder: {e}"),
            }
        }
        assert!(gone, "the recorder stayed busy");
        let mut child = self.child.take().expect("recorder process");
        let status = crate::common::wait_deadline(&mut child, crate::common::EXIT_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.success()),
            "the recorder process ended with {status:?}: {}",
            self.output()
        );
        let raw = fs::read(self.dir.join("initial")).expect("initial tree");
        let mut d = Dec { buf: &raw, at: 0 };
        let mut initial = Vec::new();
        while !d.done() {
            initial.push(InitialEntry {
                id: d.u(),
                parent: d.u(),
                name: d.name(),
                dir: d.u() != 0,
                mode: d.u() as u32,
                data: d.b(),
            });
        }
        let raw = fs::read(self.dir.join("log")).expect("recorder log");
        let mut d = Dec { buf: &raw, at: 0 };
        let mut ops = Vec::new();
        let mut ends = Vec::new();
        while !d.done() {
            ops.push(decode(&mut d));
            ends.push(d.at);
        }
        Recorded { initial, ops, ends }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if crate::common::is_mounted(&self.mnt) {
                crate::common::lazy_unmount(&self.mnt);
            }
            if crate::common::wait_deadline(&mut child, crate::common::EXIT_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
