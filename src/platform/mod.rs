//! What differs between the operating systems strata runs on, behind one
//! small API: everything above this module is free of `cfg`.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as imp;

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Replace it (plain rename).
    Replace,
    /// Fail with EEXIST if it exists.
    NoReplace,
    /// Swap the two entries atomically; both must exist.
    Exchange,
}

/// The errno a revoked key answers with: EKEYREVOKED on Linux; systems
/// without it get EACCES.
pub const ERRNO_REVOKED: i32 = imp::ERRNO_REVOKED;

/// Renames entry `from` of `from_dir` to `to` in `to_dir`.
pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    how: Rename,
) -> std::io::Result<()> {
    imp::renameat(from_dir, from, to_dir, to, how)
}

/// Creates a FIFO, socket or device node.
pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    kind: rustix::fs::FileType,
    mode: u32,
    dev: u64,
) -> std::io::Result<()> {
    imp::mknodat(dir, name, kind, mode, dev)
}

/// Changes the permission bits of entry `name` of `dir` without following
/// a symlink (used for special files, which cannot be opened safely).
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
    imp::chmod_nofollow(dir, name, mode)
}

/// Makes everything written to the filesystem holding `dir` durable
/// (syncfs on Linux; elsewhere a whole-system sync).
pub fn sync_filesystem(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    imp::sync_filesystem(dir)
}

/// File mode bits as `u32` on every system (`mode_t` is `u16` on macOS):
/// the one place where the conversion happens.
#[allow(clippy::unnecessary_cast)]
pub mod mode {
    /// Mask of the file type bits.
    pub const S_IFMT: u32 = libc::S_IFMT as u32;
    /// Regular file.
    pub const S_IFREG: u32 = libc::S_IFREG as u32;
    /// Set-group-id bit.
    pub const S_ISGID: u32 = libc::S_ISGID as u32;
    /// Sticky bit.
    pub const S_ISVTX: u32 = libc::S_ISVTX as u32;

    /// The mode of a stat result.
    pub fn of(st: &rustix::fs::Stat) -> u32 {
        st.st_mode as u32
    }
}
