//! Attributes as the core reports them, built from backing metadata and
//! the logical size sealed in a file's header.
//!
//! A backing regular file holds a regular file or a symlink target; its
//! header says which. The backing sticky bit marks the ones that may be
//! symlinks (every symlink has it), so only those need their header read to
//! tell: a regular file may carry the sticky bit too, and keeps it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, Stat};

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
    /// Generation of the inode number: it changes when the number is given
    /// to a new object while the kernel may still hold the old one, so that
    /// the kernel never takes one for the other.
    pub generation: u64,
}

/// Mode bit a backing regular file carries when it holds a symlink target
/// (also carried by regular files whose mode has it; their header tells).
pub const SYMLINK_MARK: u32 = crate::platform::mode::S_ISVTX;

/// What the backing metadata alone says about an object's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// The type is known.
    Is(Kind),
    /// A backing regular file with the sticky bit: a symlink or a sticky
    /// regular file; its header tells.
    FileOrSymlink,
}

/// The type of a backing object from its mode.
pub fn backing_kind(mode: u32) -> Backing {
    match FileType::from_raw_mode(mode as _) {
        FileType::Directory => Backing::Is(Kind::Dir),
        FileType::RegularFile if mode & SYMLINK_MARK != 0 => Backing::FileOrSymlink,
        FileType::RegularFile => Backing::Is(Kind::File),
        FileType::Fifo => Backing::Is(Kind::Fifo),
        FileType::Socket => Backing::Is(Kind::Socket),
        FileType::CharacterDevice => Backing::Is(Kind::CharDev),
        FileType::BlockDevice => Backing::Is(Kind::BlockDev),
        // A backing symlink is not something strata writes; show it as a
        // file so that it cannot redirect anything (opening it fails).
        _ => Backing::Is(Kind::File),
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

/// Builds attributes from backing metadata, an inode number, the type and
/// the logical size (for directories and special files, `None`: their
/// backing size).
#[allow(clippy::unnecessary_cast)]
pub fn from_stat(ino: u64, st: &Stat, kind: Kind, size: Option<u64>) -> Attr {
    let mode = crate::platform::mode::of(st);
    let perm = match kind {
        Kind::Symlink => 0o777,
        _ => (mode & 0o7777) as u16,
    };
    Attr {
        ino,
        size: size.unwrap_or(if kind == Kind::Dir {
            4096
        } else {
            st.st_size as u64
        }),
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: time(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        kind,
        perm,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: u32::try_from(st.st_rdev).unwrap_or(0),
        generation: 0,
    }
}

/// Attributes of a virtual directory of `.snapshots` (read-only).
pub fn virtual_dir(ino: u64, subdirs: usize, st: &Stat) -> Attr {
    let mut a = from_stat(ino, st, Kind::Dir, Some(4096));
    a.perm = 0o555;
    a.nlink = 2 + u32::try_from(subdirs).unwrap_or(0);
    a
}

/// Attributes of the virtual mount root.
pub fn root(ndisks: usize, st: &Stat) -> Attr {
    let mut a = from_stat(super::ROOT_INO, st, Kind::Dir, Some(4096));
    a.perm = 0o755;
    a.nlink = 2 + u32::try_from(ndisks).unwrap_or(0);
    a
}
