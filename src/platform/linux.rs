//! Linux: renameat2, mknodat, chmod of special files through an
//! `O_PATH` descriptor, and syncfs.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, RenameFlags};

use super::Rename;

pub const ERRNO_REVOKED: i32 = libc::EKEYREVOKED;

pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    how: Rename,
) -> std::io::Result<()> {
    let flags = match how {
        Rename::Replace => RenameFlags::empty(),
        Rename::NoReplace => RenameFlags::NOREPLACE,
        Rename::Exchange => RenameFlags::EXCHANGE,
    };
    Ok(rfs::renameat_with(from_dir, from, to_dir, to, flags)?)
}

pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    kind: FileType,
    mode: u32,
    dev: u64,
) -> std::io::Result<()> {
    Ok(rfs::mknodat(
        dir,
        name,
        kind,
        Mode::from_raw_mode(mode),
        dev,
    )?)
}

/// fchmodat() cannot refuse symlinks on Linux (no AT_SYMLINK_NOFOLLOW
/// before fchmodat2), and a FIFO or device cannot be opened to fchmod it
/// without side effects. An `O_PATH` descriptor opens nothing; after
/// checking it is not a symlink, chmod through its /proc/self/fd link acts
/// on exactly that inode (the same technique gocryptfs uses).
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
    }
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    Ok(rfs::chmod(link.as_str(), Mode::from_raw_mode(mode))?)
}

pub fn sync_filesystem(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    Ok(rustix::fs::syncfs(dir)?)
}
