//! Open files and their handles: open, create, read, write, flush, fsync,
//! release. All handles of one inode share one `EncFile`, so a file renamed
//! over or unlinked while open keeps working through its descriptors.

use std::ffi::OsStr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::Arc;

use super::dir::{fuse_ino, Caller};
use super::{Attr, DirEntry, Errno, Fs, FsResult, Kind};
use crate::file::EncFile;

/// What a file handle refers to.
pub(super) enum Handle {
    /// An open regular file.
    File {
        ino: u64,
        disk: usize,
        file: Arc<EncFile>,
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
            Some(Handle::File { file, .. }) => Some(file.clone()),
            _ => None,
        }
    }

    /// The file of an open handle, once its disk is checked to be served
    /// (a revoked key stops open handles too), and whether it may write.
    fn served_file(&self, fh: u64) -> FsResult<(Arc<EncFile>, bool)> {
        let (file, disk, write) = match self.handles().get(&fh) {
            Some(Handle::File {
                file, disk, write, ..
            }) => (file.clone(), *disk, *write),
            _ => return Err(Errno::EBADF),
        };
        self.disk(disk)?.check()?;
        Ok((file, write))
    }

    /// Attaches a new handle to inode `ino`, opening its file if needed.
    fn attach(&self, ino: u64, write: bool, fresh: Option<Arc<EncFile>>) -> FsResult<u64> {
        let (disk, path, existing) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            if n.kind != Kind::File {
                return Err(if n.kind == Kind::Dir {
                    Errno(libc::EISDIR)
                } else {
                    Errno::EINVAL
                });
            }
            (n.disk, n.paths.first().cloned(), n.open.clone())
        };
        let file = match (existing, fresh) {
            (Some(f), _) => f,
            (None, Some(f)) => f,
            (None, None) => self.open_enc(disk, &path.ok_or(Errno::ENOENT)?)?,
        };
        let mut nodes = self.nodes();
        let n = nodes.get_mut(ino).ok_or(Errno::ENOENT)?;
        // Another thread may have opened it meanwhile: keep the first.
        let file = n.open.get_or_insert(file).clone();
        n.open_count += 1;
        n.size = None;
        drop(nodes);
        let fh = self.new_fh();
        self.handles().insert(
            fh,
            Handle::File {
                ino,
                disk,
                file,
                write,
            },
        );
        Ok(fh)
    }

    /// Opens a regular file.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.writable_at(ino)?;
        }
        let disk = self.nodes().get(ino).map(|n| n.disk).ok_or(Errno::ENOENT)?;
        self.disk(disk)?.check()?;
        let fh = self.attach(ino, write, None)?;
        if flags & libc::O_TRUNC != 0 && write {
            if let Some(f) = self.handle_file(fh) {
                f.truncate(0)?;
            }
        }
        Ok(fh)
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
        let _ns = self.ns_lock.read().unwrap_or_else(|e| e.into_inner());
        let c = self.child(parent, name)?;
        let (pipeline, _) = self.disk(c.disk)?.check()?;
        let pipeline = pipeline.clone();
        c.write_sidecar()?;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&c.path);
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if flags & libc::O_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                drop(_ns);
                // Lost a race with another creator: open what is there.
                let attr = self.lookup(parent, name)?;
                let fh = self.open(attr.ino, flags)?;
                return Ok((self.getattr(attr.ino)?, fh));
            }
            Err(e) => {
                c.remove_sidecar();
                return Err(e.into());
            }
        };
        let setup = (|| -> FsResult<Arc<EncFile>> {
            fd.set_permissions(std::fs::Permissions::from_mode(
                mode & 0o7777 & !libc::S_ISVTX,
            ))?;
            let f = EncFile::open(fd, c.path.clone(), pipeline, self.cache.clone())?;
            Ok(Arc::new(f))
        })();
        let file = match setup {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&c.path);
                c.remove_sidecar();
                return Err(e);
            }
        };
        self.own(&c.path, &c.dir, caller)?;
        let m = std::fs::symlink_metadata(&c.path)?;
        let ino = fuse_ino(&m);
        {
            let mut nodes = self.nodes();
            nodes.fresh(ino);
            nodes.remember(ino, c.disk, &c.path, Kind::File, true);
        }
        let fh = self.attach(ino, true, Some(file))?;
        let attr = self.getattr(ino)?;
        Ok((attr, fh))
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

    /// Makes an open file durable.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let (f, _) = self.served_file(fh)?;
        Ok(f.sync(datasync)?)
    }

    /// Closes a handle of a file or directory.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.handles().remove(&fh);
        if let Some(Handle::File { ino, .. }) = h {
            let mut nodes = self.nodes();
            if let Some(n) = nodes.get_mut(ino) {
                n.open_count = n.open_count.saturating_sub(1);
                if n.open_count == 0 {
                    if let Some(f) = n.open.take() {
                        n.size = Some(f.size());
                    }
                }
            }
            nodes.drop_if_unused(ino);
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

    /// The listing of an open directory.
    pub fn dir_entries(&self, fh: u64) -> FsResult<Arc<Vec<DirEntry>>> {
        match self.handles().get(&fh) {
            Some(Handle::Dir { entries }) => Ok(entries.clone()),
            _ => Err(Errno::EBADF),
        }
    }
}
