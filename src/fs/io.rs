//! Open files and their handles: open, create, read, write, allocate,
//! fsync, release. Every handle of an inode, and every other operation on
//! its contents, shares the inode's one `EncFile`, so a file renamed over,
//! unlinked while open or truncated beside an open handle keeps one header
//! and one size.

use std::ffi::OsStr;
use std::sync::Arc;

use super::resolve::fuse_ino;
use super::{Attr, Caller, DirEntry, Errno, Fs, FsResult, Kind, ROOT_INO};
use crate::file::{EncFile, OpenSpec};
use crate::platform::{errno, oflags};

/// What a file handle refers to.
pub(super) enum Handle {
    /// An open regular file. `file` is `None` after its disk's keys were
    /// revoked; it is opened again on the next use once they are back.
    File {
        ino: u64,
        disk: usize,
        file: Option<Arc<EncFile>>,
        write: bool,
    },
    /// An open directory with its listing.
    Dir { entries: Arc<Vec<DirEntry>> },
}

impl Fs {
    pub(super) fn handles(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn handle_file(&self, fh: u64) -> Option<Arc<EncFile>> {
        match self.handles().get(&fh) {
            Some(Handle::File { file, .. }) => file.clone(),
            _ => None,
        }
    }

    /// The file of an open handle, once its disk is checked to be served
    /// (a revoked key stops open handles too), and whether it may write.
    /// A handle whose file a revocation dropped opens it again.
    fn served_file(&self, fh: u64) -> FsResult<(Arc<EncFile>, bool)> {
        let (file, ino, disk, write) = match self.handles().get(&fh) {
            Some(Handle::File {
                file,
                ino,
                disk,
                write,
            }) => (file.clone(), *ino, *disk, *write),
            _ => return Err(Errno::EBADF),
        };
        self.disk(disk)?.ciphers()?;
        if let Some(f) = file {
            return Ok((f, write));
        }
        let f = self.file_of(ino)?;
        if let Some(Handle::File { file, .. }) = self.handles().get_mut(&fh) {
            *file = Some(f.clone());
        }
        self.settle(disk)?;
        Ok((f, write))
    }

    /// After a file of `disk` was put in a handle: if the disk was revoked
    /// meanwhile (its revocation may have emptied the handles before this
    /// one was filled), take its open files out again and refuse.
    fn settle(&self, disk: usize) -> FsResult<()> {
        if let Err(e) = self.disk(disk)?.ciphers() {
            self.drop_open_files(disk);
            return Err(e);
        }
        Ok(())
    }

    /// Attaches a new handle to inode `ino` for `file` (its shared file).
    fn attach(&self, ino: u64, disk: usize, file: Arc<EncFile>, write: bool) -> FsResult<u64> {
        {
            let mut nodes = self.nodes();
            let n = nodes.get_mut(ino).ok_or(Errno::ENOENT)?;
            n.open_count += 1;
        }
        let fh = self.new_fh();
        self.handles().insert(
            fh,
            Handle::File {
                ino,
                disk,
                file: Some(file),
                write,
            },
        );
        if let Err(e) = self.settle(disk) {
            let _ = self.release(fh);
            return Err(e);
        }
        Ok(fh)
    }

    /// Opens a regular file.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let write = flags & oflags::O_ACCMODE != oflags::O_RDONLY;
        if write {
            self.writable_at(ino)?;
        }
        let (disk, kind) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.kind)
        };
        match kind {
            Kind::File => {}
            Kind::Dir => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        self.disk(disk)?.check()?;
        let file = self.file_of(ino)?;
        if write && !file.writable() {
            return Err(Errno(errno::EACCES));
        }
        if flags & oflags::O_TRUNC != 0 && write {
            file.truncate(0)?;
        }
        self.attach(ino, disk, file, write)
    }

    /// Creates and opens a regular file.
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        self.writable_at(parent)?;
        let ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        self.file_ctx(c.disk)?;
        let owner = self.owner_of_new(&c.dir, caller)?;
        c.write_sidecar()?;
        let fd = match c.dir.create_file(c.entry(), 0o600) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(errno::EEXIST) => {
                if flags & oflags::O_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                drop(ns);
                // Lost a race with another creator: open what is there.
                let attr = self.lookup(parent, name)?;
                let fh = match self.open(attr.ino, flags) {
                    Ok(fh) => fh,
                    Err(e) => {
                        self.forget(attr.ino, 1);
                        return Err(e);
                    }
                };
                return self.opened(attr.ino, fh);
            }
            Err(e) => {
                c.remove_sidecar();
                return Err(e.into());
            }
        };
        let registered = std::cell::Cell::new(None);
        let made = (|| -> FsResult<(u64, Arc<EncFile>)> {
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode((mode & 0o7777) as _))?;
            if let Some((uid, gid)) = owner {
                match rustix::fs::fchown(
                    &fd,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                ) {
                    Ok(()) | Err(rustix::io::Errno::PERM) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let ino = fuse_ino(rustix::fs::fstat(&fd)?.st_ino);
            let slot = {
                let mut nodes = self.nodes();
                nodes.fresh(ino);
                nodes.remember(ino, c.disk, Kind::File, c.parent, c.entry(), true);
                registered.set(Some(ino));
                nodes.get(ino).map(|n| n.file.clone()).ok_or(Errno::EIO)?
            };
            // The table is read before the slot is locked (lock order).
            let label = self.label_at(c.disk, c.parent, c.entry());
            let ctx = self.file_ctx(c.disk)?;
            let mut open = slot.open.lock().unwrap_or_else(|e| e.into_inner());
            let file = Arc::new(EncFile::create(
                OpenSpec {
                    fd,
                    label,
                    ino,
                    writable: true,
                    size_cell: Some(slot.size.clone()),
                },
                ctx,
                crate::format::FileType::Regular,
            )?);
            *open = Arc::downgrade(&file);
            Ok((ino, file))
        })();
        let (ino, file) = match made {
            Ok(x) => x,
            Err(e) => {
                let _ = c.dir.unlink(c.entry());
                c.remove_sidecar();
                let mut nodes = self.nodes();
                nodes.unlink(c.parent, c.entry());
                if let Some(ino) = registered.get() {
                    nodes.forget(ino, 1);
                }
                return Err(e);
            }
        };
        drop(ns);
        let fh = match self.attach(ino, c.disk, file, true) {
            Ok(fh) => fh,
            Err(e) => {
                self.forget(ino, 1);
                return Err(e);
            }
        };
        self.opened(ino, fh)
    }

    /// The reply to a create that opened `fh` on `ino`: its attributes, or,
    /// when they cannot be read (a revocation completed meanwhile), an
    /// error with the handle released and the lookup given back, as the
    /// kernel will never hear of either.
    fn opened(&self, ino: u64, fh: u64) -> FsResult<(Attr, u64)> {
        match self.attr_admitted(ino) {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                let _ = self.release(fh);
                self.forget(ino, 1);
                Err(e)
            }
        }
    }

    /// Reads from an open file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (f, _) = self.served_file(fh)?;
        let data = f.read(offset, size as usize)?;
        self.bytes_read
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(data)
    }

    /// Writes to an open file.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<usize> {
        let (f, write) = self.served_file(fh)?;
        if !write {
            return Err(Errno::EBADF);
        }
        let n = f.write(offset, data)?;
        self.bytes_written
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    /// Allocates space (fallocate modes 0 and, on Linux,
    /// FALLOC_FL_KEEP_SIZE).
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let (f, write) = self.served_file(fh)?;
        if !write {
            return Err(Errno::EBADF);
        }
        let keep_size =
            crate::platform::fallocate_keeps_size(mode).ok_or(Errno(errno::EOPNOTSUPP))?;
        Ok(f.allocate(offset, len, keep_size)?)
    }

    /// Copies `len` bytes from one open file to another (the kernel has
    /// flushed its cached pages of both ranges). Short at the source's end;
    /// at most 16 MiB per call.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> FsResult<usize> {
        const MAX_COPY: u64 = 16 << 20;
        const CHUNK: u64 = 1 << 20;
        let (src, _) = self.served_file(fh_in)?;
        let (dst, write) = self.served_file(fh_out)?;
        if !write {
            return Err(Errno::EBADF);
        }
        let len = len.min(MAX_COPY);
        if off_out
            .checked_add(len)
            .is_none_or(|end| end > crate::file::MAX_SIZE)
        {
            return Err(Errno(errno::EFBIG));
        }
        let mut done = 0u64;
        while done < len {
            let data = src.read(off_in + done, (len - done).min(CHUNK) as usize)?;
            if data.is_empty() {
                break;
            }
            dst.write(off_out + done, &data)?;
            done += data.len() as u64;
        }
        self.bytes_read
            .fetch_add(done, std::sync::atomic::Ordering::Relaxed);
        self.bytes_written
            .fetch_add(done, std::sync::atomic::Ordering::Relaxed);
        Ok(done as usize)
    }

    /// Makes an open file durable.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let (f, _) = self.served_file(fh)?;
        Ok(f.sync(datasync)?)
    }

    /// Closes a handle of a file or directory.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.handles().remove(&fh);
        if let Some(Handle::File { ino, file, .. }) = h {
            if let Some(f) = &file {
                f.settle_size_attr();
            }
            let mut nodes = self.nodes();
            if let Some(n) = nodes.get_mut(ino) {
                n.open_count = n.open_count.saturating_sub(1);
            }
            nodes.release_chain(ino);
            drop(nodes);
            // The shared file closes when its last holder lets go.
            drop(file);
        }
        Ok(())
    }

    /// Opens a directory, taking its listing.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let entries = Arc::new(self.list(ino)?);
        let fh = self.new_fh();
        self.handles().insert(fh, Handle::Dir { entries });
        Ok(fh)
    }

    /// The listing of open directory `fh` (inode `ino`). The listing was
    /// taken at opendir, but a disk whose keys were taken away since gives
    /// out no more of its names.
    pub fn dir_entries(&self, ino: u64, fh: u64) -> FsResult<Arc<Vec<DirEntry>>> {
        let entries = match self.handles().get(&fh) {
            Some(Handle::Dir { entries }) => entries.clone(),
            _ => return Err(Errno::EBADF),
        };
        if ino != ROOT_INO && !Self::is_virtual(ino) {
            let disk = self.nodes().get(ino).map(|n| n.disk);
            if let Some(disk) = disk {
                self.disk(disk)?.check()?;
            }
        }
        Ok(entries)
    }
}
