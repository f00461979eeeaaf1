//! Other Unix systems (macOS): placeholders with the portable calls until
//! the native ones are wired in.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use super::Rename;

pub const ERRNO_REVOKED: i32 = libc::EACCES;

pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    how: Rename,
) -> std::io::Result<()> {
    match how {
        Rename::Replace => Ok(rfs::renameat(from_dir, from, to_dir, to)?),
        _ => Err(std::io::Error::from_raw_os_error(libc::ENOTSUP)),
    }
}

pub fn mknodat(
    _dir: BorrowedFd<'_>,
    _name: &OsStr,
    _kind: FileType,
    _mode: u32,
    _dev: u64,
) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOTSUP))
}

pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
    Ok(rfs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode as _),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub fn sync_filesystem(_dir: BorrowedFd<'_>) -> std::io::Result<()> {
    rustix::fs::sync();
    Ok(())
}
