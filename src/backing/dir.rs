//! A backing directory reached by descriptor.
//!
//! Every operation names one entry relative to an open directory (the
//! `*at()` calls), so no backing path longer than one name is ever handed to
//! the kernel: a plaintext path of PATH_MAX-1 bytes, whose backing path is
//! much longer, works at any depth. A rename elsewhere in the backing tree
//! cannot redirect an operation either, since nothing is resolved through a
//! path. Entries are never followed through backing symlinks (strata writes
//! none; one planted in the store is treated as an unknown object).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::platform::errno;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timestamps};

/// An open backing directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// One entry of a backing directory as the kernel lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its backing name.
    pub name: OsString,
    /// Its inode number.
    pub ino: u64,
    /// Its type, if the backing filesystem reports one (`Unknown` otherwise).
    pub file_type: FileType,
}

fn io(e: rustix::io::Errno) -> std::io::Error {
    e.into()
}

impl Dir {
    /// Opens the directory at `path` (a store, disk or snapshot root: short
    /// paths the user gave or strata built from a store path).
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Dir { fd })
    }

    /// Opens the directory `rel` below the directory at `base`: `base` as
    /// given (a path the user chose may pass through symlinks), each name of
    /// `rel` relative to the one before and never through a symlink, so that
    /// a symlink planted in a store cannot take a disk's root out of it.
    pub fn open_below(base: &Path, rel: &Path) -> std::io::Result<Dir> {
        let mut d = Dir::open(base)?;
        for c in rel.components() {
            match c {
                std::path::Component::Normal(name) => d = d.open_dir(name)?,
                std::path::Component::CurDir => {}
                _ => {
                    return Err(std::io::Error::from_raw_os_error(
                        crate::platform::errno::EINVAL,
                    ))
                }
            }
        }
        Ok(d)
    }

    /// Opens the subdirectory `name` (never through a symlink).
    pub fn open_dir(&self, name: &OsStr) -> std::io::Result<Dir> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Dir { fd })
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Metadata of the directory itself.
    pub fn stat(&self) -> std::io::Result<Stat> {
        rfs::fstat(&self.fd).map_err(io)
    }

    /// Metadata of entry `name` (not following a symlink).
    pub fn stat_at(&self, name: &OsStr) -> std::io::Result<Stat> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)
    }

    /// Opens the regular file `name` for reading, and writing if `write`.
    /// Anything but a regular file is refused (ENOENT for a symlink planted
    /// in the store, EISDIR/ENXIO style errors for others).
    pub fn open_file(&self, name: &OsStr, write: bool) -> std::io::Result<File> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        // NONBLOCK: an entry replaced by a FIFO must not hang the daemon;
        // it has no effect on regular files.
        let fd = rfs::openat(
            &self.fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(io)?;
        let st = rfs::fstat(&fd).map_err(io)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(std::io::Error::from_raw_os_error(errno::EINVAL));
        }
        Ok(File::from(fd))
    }

    /// Creates the regular file `name` (which must not exist) with mode
    /// `mode`, open for reading and writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> std::io::Result<File> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as _),
        )
        .map_err(io)?;
        Ok(File::from(fd))
    }

    /// Creates the directory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> std::io::Result<()> {
        rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode as _)).map_err(io)
    }

    /// Creates a FIFO, socket or device node `name`.
    pub fn mknod(&self, name: &OsStr, kind: FileType, mode: u32, dev: u64) -> std::io::Result<()> {
        crate::platform::mknodat(self.fd(), name, kind, mode, dev)
    }

    /// Removes the non-directory `name`.
    pub fn unlink(&self, name: &OsStr) -> std::io::Result<()> {
        rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(io)
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&self, name: &OsStr) -> std::io::Result<()> {
        rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(io)
    }

    /// Renames `name` to `to_name` in `to` (with RENAME_EXCHANGE or
    /// RENAME_NOREPLACE when asked).
    pub fn rename(
        &self,
        name: &OsStr,
        to: &Dir,
        to_name: &OsStr,
        how: crate::platform::Rename,
    ) -> std::io::Result<()> {
        crate::platform::renameat(self.fd(), name, to.fd(), to_name, how)
    }

    /// Makes `to_name` in `to` a hard link of entry `name`.
    pub fn link(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> std::io::Result<()> {
        rfs::linkat(&self.fd, name, &to.fd, to_name, AtFlags::empty()).map_err(io)
    }

    /// Changes the owner of entry `name` (not through a symlink).
    pub fn chown_at(
        &self,
        name: &OsStr,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> std::io::Result<()> {
        let uid = uid.map(rustix::fs::Uid::from_raw);
        let gid = gid.map(rustix::fs::Gid::from_raw);
        rfs::chownat(&self.fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(io)
    }

    /// Changes the permission bits of entry `name` (not through a symlink;
    /// for special files, which cannot be opened safely).
    pub fn chmod_at(&self, name: &OsStr, mode: u32) -> std::io::Result<()> {
        crate::platform::chmod_nofollow(self.fd(), name, mode)
    }

    /// Sets the times of entry `name` (not through a symlink).
    pub fn utimens_at(&self, name: &OsStr, ts: &Timestamps) -> std::io::Result<()> {
        rfs::utimensat(&self.fd, name, ts, AtFlags::SYMLINK_NOFOLLOW).map_err(io)
    }

    /// Reads the small file `name` whole, refusing one longer than `max`
    /// bytes (a damaged or planted file cannot make the daemon allocate
    /// without bound).
    pub fn read_small(&self, name: &OsStr, max: usize) -> std::io::Result<Vec<u8>> {
        let mut f = self.open_file(name, false)?;
        let mut buf = Vec::new();
        (&mut f).take(max as u64 + 1).read_to_end(&mut buf)?;
        if buf.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is longer than {max} bytes", name.to_string_lossy()),
            ));
        }
        Ok(buf)
    }

    /// Replaces (or creates) the small file `name` atomically: a temp file
    /// beside it, fsync, rename over `name`, fsync this directory. On
    /// failure `name` is untouched and the temp file removed.
    pub fn replace(&self, name: &OsStr, data: &[u8]) -> std::io::Result<()> {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(".tmp");
        let result = (|| {
            let _ = self.unlink(&tmp);
            let mut f = self.create_file(&tmp, 0o600)?;
            f.write_all(data)?;
            crate::platform::sync_all(&f)?;
            self.rename(&tmp, self, name, crate::platform::Rename::Replace)?;
            self.sync()
        })();
        if result.is_err() {
            let _ = self.unlink(&tmp);
        }
        result
    }

    /// Removes entry `name` and, for a directory, everything below it, by
    /// descriptor: a symlink is removed, never followed, and no path longer
    /// than one name reaches the kernel. At most two directories are open
    /// at a time, however deep the tree (it climbs back through `..`).
    pub fn remove_tree(&self, name: &OsStr) -> std::io::Result<()> {
        let st = self.stat_at(name)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return self.unlink(name);
        }
        // Names from `name` down to the directory `cur` being emptied.
        let mut below: Vec<OsString> = Vec::new();
        let mut cur = self.open_dir(name)?;
        loop {
            let mut subdir = None;
            for e in cur.entries()? {
                let is_dir = match e.file_type {
                    FileType::Directory => true,
                    FileType::Unknown => {
                        FileType::from_raw_mode(cur.stat_at(&e.name)?.st_mode)
                            == FileType::Directory
                    }
                    _ => false,
                };
                if is_dir {
                    subdir = Some(e.name);
                    break;
                }
                cur.unlink(&e.name)?;
            }
            if let Some(sub) = subdir {
                cur = cur.open_dir(&sub)?;
                below.push(sub);
                continue;
            }
            let Some(done) = below.pop() else {
                break;
            };
            let parent = cur.open_dir(OsStr::new(".."))?;
            cur = parent;
            cur.rmdir(&done)?;
        }
        drop(cur);
        self.rmdir(name)
    }

    /// Every entry but `.` and `..`.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let d = rfs::Dir::read_from(&self.fd).map_err(io)?;
        let mut out = Vec::new();
        for e in d {
            let e = e.map_err(io)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(Entry {
                name: OsStr::from_bytes(name).to_os_string(),
                ino: e.ino(),
                file_type: e.file_type(),
            });
        }
        Ok(out)
    }

    /// Makes the directory's entries durable.
    pub fn sync(&self) -> std::io::Result<()> {
        crate::platform::sync_all(&self.fd)
    }

    /// Statistics of the filesystem the directory is on.
    pub fn statvfs(&self) -> std::io::Result<rfs::StatVfs> {
        rfs::fstatvfs(&self.fd).map_err(io)
    }

    /// A second descriptor of the same directory.
    pub fn try_clone(&self) -> std::io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_deeper_than_path_max_is_walked_by_descriptor() {
        let t = tempfile::tempdir().expect("tmp");
        let mut d = Dir::open(t.path()).expect("open");
        let name = OsString::from("d".repeat(200));
        // 40 levels of 200-byte names: 8 KB of path, twice PATH_MAX.
        for _ in 0..40 {
            d.mkdir(&name, 0o700).expect("mkdir");
            d = d.open_dir(&name).expect("open_dir");
        }
        let mut f = d.create_file(OsStr::new("f"), 0o600).expect("create");
        f.write_all(b"deep").expect("write");
        assert_eq!(
            d.read_small(OsStr::new("f"), 16).expect("read"),
            b"deep".to_vec()
        );
        assert!(d.read_small(OsStr::new("f"), 3).is_err());
        d.replace(OsStr::new("f"), b"deeper").expect("replace");
        assert_eq!(d.entries().expect("ls").len(), 1);
    }

    #[test]
    fn a_root_below_a_store_is_never_reached_through_a_symlink() {
        let t = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(t.path().join("disks/data")).expect("mkdir");
        std::fs::create_dir_all(outside.path().join("temp")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), t.path().join("disks/os")).expect("symlink");
        std::os::unix::fs::symlink(outside.path(), t.path().join("linked")).expect("symlink");
        assert!(Dir::open_below(t.path(), Path::new("disks/data")).is_ok());
        for rel in ["disks/os", "linked/temp", "disks/../disks/data"] {
            assert!(
                Dir::open_below(t.path(), Path::new(rel)).is_err(),
                "{rel} was opened"
            );
        }
    }

    #[test]
    fn remove_tree_removes_a_planted_symlink_not_what_it_points_to() {
        let t = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::write(outside.path().join("precious"), b"keep").expect("write");
        std::fs::create_dir_all(t.path().join("temp/a/b")).expect("mkdir");
        std::fs::write(t.path().join("temp/a/b/f"), b"x").expect("write");
        std::os::unix::fs::symlink(outside.path(), t.path().join("temp/a/l")).expect("symlink");
        // Deeper than PATH_MAX, and deeper than the descriptors a process
        // may hold by default.
        let mut deep = Dir::open(&t.path().join("temp")).expect("open");
        for _ in 0..1500 {
            deep.mkdir(OsStr::new("dd"), 0o700).expect("mkdir");
            deep = deep.open_dir(OsStr::new("dd")).expect("open_dir");
        }
        deep.create_file(OsStr::new("f"), 0o600).expect("create");
        drop(deep);
        let d = Dir::open(t.path()).expect("open");
        d.remove_tree(OsStr::new("temp")).expect("remove");
        assert!(d.entries().expect("ls").is_empty());
        assert_eq!(
            std::fs::read(outside.path().join("precious")).expect("read"),
            b"keep"
        );
    }

    #[test]
    fn entries_are_never_followed_through_a_symlink() {
        let t = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink("/etc", t.path().join("l")).expect("symlink");
        std::fs::write(t.path().join("x"), b"").expect("write");
        std::os::unix::fs::symlink(t.path().join("x"), t.path().join("lf")).expect("symlink");
        let d = Dir::open(t.path()).expect("open");
        assert!(d.open_dir(OsStr::new("l")).is_err());
        assert!(d.open_file(OsStr::new("lf"), false).is_err());
        assert_eq!(
            FileType::from_raw_mode(d.stat_at(OsStr::new("l")).expect("stat").st_mode),
            FileType::Symlink
        );
    }
}
