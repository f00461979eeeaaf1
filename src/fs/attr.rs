//! Attributes as the core reports them, built from backing metadata and
//! the logical size sealed in a file's header.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// FIFO.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
}

/// Attributes of an inode.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Logical size.
    pub size: u64,
    /// 512-byte blocks allocated in the backing store.
    pub blocks: u64,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Change time.
    pub ctime: SystemTime,
    /// Type.
    pub kind: Kind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of device files.
    pub rdev: u32,
}

/// Mode bit marking a backing regular file as a symlink target.
pub const SYMLINK_MARK: u32 = libc::S_ISVTX;

/// The type of a backing object from its mode.
pub fn kind_of(mode: u32) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG if mode & SYMLINK_MARK != 0 => Kind::Symlink,
        libc::S_IFREG => Kind::File,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFCHR => Kind::CharDev,
        libc::S_IFBLK => Kind::BlockDev,
        // A backing symlink is not something strata writes; show it as a file
        // so that it cannot redirect anything.
        _ => Kind::File,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let ns = u32::try_from(nsecs).unwrap_or(0);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, ns)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(ns))
    }
}

/// Builds attributes from backing metadata, an inode number and the
/// logical size (for directories and special files, the backing size).
pub fn from_meta(ino: u64, m: &Metadata, size: Option<u64>) -> Attr {
    let kind = kind_of(m.mode());
    let perm = match kind {
        Kind::Symlink => 0o777,
        _ => (m.mode() & 0o7777) as u16,
    };
    Attr {
        ino,
        size: size.unwrap_or(if kind == Kind::Dir { 4096 } else { m.size() }),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        kind,
        perm,
        nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
        uid: m.uid(),
        gid: m.gid(),
        rdev: u32::try_from(m.rdev()).unwrap_or(0),
    }
}

/// Attributes of a virtual directory of `.snapshots` (read-only).
pub fn virtual_dir(ino: u64, subdirs: usize, m: &Metadata) -> Attr {
    let mut a = from_meta(ino, m, Some(4096));
    a.kind = Kind::Dir;
    a.perm = 0o555;
    a.nlink = 2 + u32::try_from(subdirs).unwrap_or(0);
    a
}

/// Attributes of the virtual mount root.
pub fn root(ndisks: usize, m: &Metadata) -> Attr {
    let mut a = from_meta(super::ROOT_INO, m, Some(4096));
    a.kind = Kind::Dir;
    a.perm = 0o755;
    a.nlink = 2 + u32::try_from(ndisks).unwrap_or(0);
    a
}
