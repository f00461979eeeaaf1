//! What differs between the operating systems strata runs on (Linux, and
//! macOS with macFUSE), behind one small API: everything above this module
//! is free of `cfg` and of direct `libc` use. One file per system,
//! `linux.rs` and `macos.rs`; the unsafe FFI that macOS needs lives in its
//! file, each block with its `// SAFETY:`.
//!
//! The semantics each function keeps are written here, once; each system's
//! file says how it gets them (and where it cannot, what it does instead).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;

#[cfg(test)]
mod tests;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("strata runs on Linux and on macOS (with macFUSE)");

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// The name of this system in messages ("Linux", "macOS").
pub const SYSTEM: &str = imp::SYSTEM;

/// Error numbers as this system numbers them: the portable ones re-exported,
/// and the two whose name differs.
pub mod errno {
    pub use libc::{
        EACCES, EBADF, EBUSY, EDQUOT, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ELOOP, ENAMETOOLONG,
        ENOENT, ENOSPC, ENOTCONN, ENOTDIR, ENOTEMPTY, ENOTSUP, EOPNOTSUPP, EPERM, ERANGE, EROFS,
        EXDEV,
    };

    /// "No such extended attribute": ENODATA on Linux, ENOATTR on macOS
    /// (where ENODATA is a STREAMS error and would mislead every caller).
    pub const ENOATTR: i32 = super::imp::ENOATTR;

    /// What an operation on a disk whose key is revoked answers: Linux's
    /// own EKEYREVOKED; macOS has no such errno and answers EACCES
    /// ("permission denied": access is refused, which is true, rather than
    /// EIO, which would say the data is damaged, or ENOENT, missing).
    pub const REVOKED: i32 = super::imp::ERRNO_REVOKED;

    /// Whether [`REVOKED`] means a revoked key and nothing else (true on
    /// Linux; on macOS EACCES is also the ordinary "permission denied").
    pub const REVOKED_IS_DISTINCT: bool = super::imp::REVOKED_IS_DISTINCT;
}

/// The errno a revoked key answers with (see [`errno::REVOKED`]).
pub const ERRNO_REVOKED: i32 = errno::REVOKED;

/// Open flags as this system numbers them (FUSE hands the caller's flags
/// over in the system's own encoding).
pub mod oflags {
    pub use libc::{O_ACCMODE, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_TRUNC, O_WRONLY};
}

/// Longest path the system's calls take, NUL included (symlink targets are
/// held to it).
pub const PATH_MAX: usize = libc::PATH_MAX as usize;

// ------------------------------------------------------------- renames

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Replace it (plain rename).
    Replace,
    /// Fail with EEXIST if it exists (Linux RENAME_NOREPLACE, macOS
    /// RENAME_EXCL).
    NoReplace,
    /// Swap the two entries atomically; both must exist (Linux
    /// RENAME_EXCHANGE, macOS RENAME_SWAP).
    Exchange,
}

impl Rename {
    /// The rename a FUSE request's flags ask for, in this system's encoding.
    /// Any flag not understood (RENAME_WHITEOUT, RENAME_RESERVED1, two at
    /// once…) is refused with EINVAL: a flag is never silently dropped.
    pub fn from_fuse_flags(flags: u32) -> Result<Rename, i32> {
        imp::rename_from_flags(flags)
    }
}

/// Renames entry `from` of `from_dir` to `to` in `to_dir`. The backing
/// filesystem does the no-replace or exchange itself, atomically; one that
/// cannot answers EINVAL (Linux) or ENOTSUP (macOS), which is passed on,
/// never replaced by a plain rename.
pub fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    how: Rename,
) -> std::io::Result<()> {
    imp::renameat(from_dir, from, to_dir, to, how)
}

// ------------------------------------------------------- special files

/// Creates a FIFO, socket or device node `name` in `dir`, with permission
/// bits `mode` and (for devices) device number `dev` as FUSE gives it.
pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    kind: rustix::fs::FileType,
    mode: u32,
    dev: u64,
) -> std::io::Result<()> {
    imp::mknodat(dir, name, kind, mode, dev)
}

/// The device number of `major`:`minor` in the form [`mknodat`] takes.
pub fn makedev(major: u32, minor: u32) -> u64 {
    imp::makedev(major, minor)
}

/// Changes the permission bits of entry `name` of `dir` without following
/// a symlink (used for special files, which cannot be opened safely).
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
    imp::chmod_nofollow(dir, name, mode)
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

// ---------------------------------------------------------- durability

/// Makes the data of the open file `fd` durable (what fdatasync promises on
/// Linux). On macOS, fsync(2) only hands the data to the drive, whose cache
/// may lose it at power loss: strata asks for `F_FULLFSYNC`, as SQLite's
/// `fullfsync` does, so that an fsync or fdatasync on a strata file means
/// the same on both systems. A backing filesystem without `F_FULLFSYNC`
/// (some network filesystems) gets fsync(2), with one warning in the log.
pub fn sync_data(fd: impl AsFd) -> std::io::Result<()> {
    imp::sync_data(fd.as_fd())
}

/// Makes the data and metadata of the open file or directory `fd` durable
/// (fsync on Linux; `F_FULLFSYNC` on macOS, as [`sync_data`]).
pub fn sync_all(fd: impl AsFd) -> std::io::Result<()> {
    imp::sync_all(fd.as_fd())
}

/// Makes everything written to the filesystem holding the open directory
/// `dir` durable, and waits: the backing store's filesystem at a clean
/// unmount, or a strata mount itself, whose dirty pages the kernel then
/// hands to the daemon. syncfs(2) on Linux, which also returns the write
/// errors of the sync; on macOS
/// `fsync_volume_np(SYNC_VOLUME_FULLSYNC | SYNC_VOLUME_WAIT)`, the volume's
/// sync and then its F_FULLFSYNC (a volume that cannot flush its drive's
/// cache, such as a macFUSE mount, gets the sync without it); the kernel
/// drops the errors of that sync, so only [`sync_all`] or [`sync_data`]
/// of each file reports them there.
pub fn sync_filesystem(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    imp::sync_filesystem(dir)
}

/// Reads extended attribute `attr` of entry `name` of `dir` into `buf`
/// (its length), never through a symlink, without opening the entry: on
/// Linux lgetxattr(2) through the directory's /proc/self/fd link; elsewhere
/// the entry is opened (O_NOFOLLOW) and read by descriptor. What it reads
/// may belong to another inode than an earlier stat of `name` saw, if the
/// name was replaced in between.
pub fn getxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    attr: &str,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    imp::getxattr_at(dir, name, attr, buf)
}

// --------------------------------------------------------- allocation

/// What [`preallocate`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocated {
    /// The space is reserved: writes there cannot fail for lack of space.
    Reserved,
    /// The backing filesystem cannot reserve space (or not for this
    /// range): nothing was done (the size was not changed either).
    Unsupported,
}

/// Reserves backing space for bytes `[from, to)` of the open file `fd`,
/// `from` at or beyond what the file holds now (the end of a growing file).
/// Unless `keep_size`, the file then reaches at least `to`. ENOSPC and
/// EDQUOT come back as errors. Linux: fallocate(2). macOS:
/// `fcntl(F_PREALLOCATE)`, which can only add space after the file's last
/// block (fcntl(2): F_PEOFPOSMODE): `[size, to)` is reserved, and a range
/// that starts past the size (after a gap) gets
/// [`Allocated::Unsupported`].
pub fn preallocate(
    fd: impl AsFd,
    from: u64,
    to: u64,
    keep_size: bool,
) -> std::io::Result<Allocated> {
    if to <= from {
        return Ok(Allocated::Reserved);
    }
    imp::preallocate(fd.as_fd(), from, to, keep_size)
}

/// The meaning of a FUSE fallocate request's `mode`: `Some(keep_size)` for
/// the plain allocation (0) and Linux's FALLOC_FL_KEEP_SIZE; `None` for
/// anything else (punching holes, zeroing, collapsing), which strata does
/// not do.
pub fn fallocate_keeps_size(mode: i32) -> Option<bool> {
    imp::fallocate_keeps_size(mode)
}

// ---------------------------------------------------------------- copies

/// Makes `name` in `dst_dir` (which must not exist: EEXIST) a copy of the
/// whole open regular file `src`, wherever its offset stands, sharing its
/// blocks where the filesystem can (FICLONE on btrfs, XFS…; clonefile(2)
/// on APFS), else by copying bytes. Returns the new file, open for reading
/// and writing, and whether it was cloned. A copy that fails half-way
/// leaves no file behind. The new file's owner, mode and times are the
/// caller's to set.
pub fn copy_file(
    src: &mut File,
    dst_dir: BorrowedFd<'_>,
    name: &OsStr,
) -> std::io::Result<(File, bool)> {
    std::io::Seek::rewind(src)?;
    imp::copy_file(src, dst_dir, name)
}

/// The byte copy both systems fall back to: `src` from its offset into the
/// new file `dst` (entry `name` of `dst_dir`), which is removed again if
/// the copy fails.
fn copy_bytes(
    src: &mut File,
    dst: &mut File,
    dst_dir: BorrowedFd<'_>,
    name: &OsStr,
) -> std::io::Result<()> {
    if let Err(e) = std::io::copy(src, dst) {
        let _ = rustix::fs::unlinkat(dst_dir, name, rustix::fs::AtFlags::empty());
        return Err(e);
    }
    Ok(())
}

/// copy_file_range(2) where the system has it (Linux: the kernel copies,
/// or clones, between two open files at the given offsets, which it
/// advances); ENOSYS on macOS, which has no such call (and macFUSE no such
/// request).
pub fn copy_file_range(
    src: impl AsFd,
    off_in: &mut u64,
    dst: impl AsFd,
    off_out: &mut u64,
    len: usize,
) -> std::io::Result<usize> {
    imp::copy_file_range(src.as_fd(), off_in, dst.as_fd(), off_out, len)
}

// --------------------------------------------------------------- sockets

/// The effective user id of the process at the other end of the connected
/// Unix socket `sock`: SO_PEERCRED on Linux, getpeereid(3) (LOCAL_PEERCRED)
/// on macOS. Both give the credentials the peer had when it connected.
pub fn peer_uid(sock: BorrowedFd<'_>) -> std::io::Result<u32> {
    imp::peer_uid(sock)
}

// ---------------------------------------------------------------- mounts

/// One mounted filesystem, as the system's mount table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub point: PathBuf,
    /// Which mount it is (Linux: its mount ID, mountinfo's first field,
    /// which statx(2) reports too); None on macOS.
    pub id: Option<u64>,
    /// Its device (Linux: mountinfo's `major:minor`, which no other mount
    /// has while this one's filesystem lives; mount IDs are reused at
    /// once); None on macOS.
    pub device: Option<String>,
    /// Its source (for a strata mount, `strata:<absolute store path>`).
    pub source: String,
    /// Whether it is a FUSE filesystem (fuse.* on Linux, macFUSE on macOS).
    pub fuse: bool,
    /// Whether it is a direct automount point (Linux: an autofs with the
    /// `direct` option), which the one filesystem it stands for is mounted
    /// over when first used (systemd's `x-systemd.automount`); always
    /// false on macOS.
    pub automount: bool,
}

/// Every mount this process sees, in mount order, read without touching any
/// of them (a dead or hung FUSE daemon cannot block it): /proc/self/mountinfo
/// on Linux; getfsstat(2) with MNT_NOWAIT on macOS (the f_mntonname and
/// f_mntfromname of each statfs).
pub fn mounts() -> Vec<MountEntry> {
    imp::mounts()
}

/// Whether `path` (absolute, canonical) is a mountpoint now.
pub fn is_mountpoint(path: &Path) -> bool {
    mounts().iter().any(|m| m.point == path)
}

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmount {
    /// Only if nothing uses the mount.
    Plain,
    /// A dead mount (its daemon gone): Linux detaches it (MNT_DETACH),
    /// macOS forces it (MNT_FORCE).
    Dead,
}

/// Why an unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// Something uses the mount.
    #[error("busy")]
    Busy,
    /// Nothing is mounted there.
    #[error("not mounted")]
    NotMounted,
    /// The path does not exist.
    #[error("does not exist")]
    NoSuchPath,
    /// The mount's daemon is gone (ENOTCONN).
    #[error("the mount's daemon is gone")]
    Dead,
    /// The unmount helper (fusermount3) failed or is missing.
    #[error("{0}")]
    Helper(String),
    /// Anything else.
    #[error(transparent)]
    Other(std::io::Error),
}

/// Unmounts the FUSE mount at `path`. Linux: umount2(2) as root, else
/// `fusermount3 -u` (`-uz` for a dead mount), neither lazy unless asked.
/// macOS: unmount(2), which the user who mounted may call (macFUSE mounts
/// belong to that user).
pub fn unmount(path: &Path, how: Unmount) -> Result<(), UnmountError> {
    imp::unmount(path, how)
}

/// Whether the mount with this ID and device (a [`MountEntry`]'s) is still
/// mounted, wherever it now is; None if the mount table cannot be read.
pub fn mount_listed(id: u64, device: &str) -> Option<bool> {
    imp::mount_listed(id, device)
}

/// A mountpoint held by a descriptor of its parent directory (Linux), so
/// that a directory above it renamed, or a symbolic link planted in its
/// path, after it was found leads nothing elsewhere: which mount is newest
/// there is asked of the kernel through that descriptor, and an unmount
/// as root goes through it too. macOS: the path (no mount IDs).
pub struct MountSite(imp::MountSite);

impl MountSite {
    /// Holds the parent directory of `path` (absolute and canonical,
    /// except that its last name may be a dead mount's).
    pub fn open(path: &Path) -> std::io::Result<MountSite> {
        imp::MountSite::open(path).map(MountSite)
    }

    /// The ID of the newest mount at the site, asked without a request to
    /// any FUSE daemon; None if it cannot be told (always on macOS).
    pub fn top_id(&self) -> Option<u64> {
        self.0.top_id()
    }

    /// Unmounts the newest mount at the site, as [`unmount`] does a path.
    pub fn unmount(&self, how: Unmount) -> Result<(), UnmountError> {
        self.0.unmount(how)
    }
}

/// Which mount is the newest at `path` (Linux: its `major:minor` from
/// /proc/self/mountinfo, read without touching the mount; an absolute
/// `path` is taken as canonical), for a daemon to tell its own mount from
/// one put over it later. macOS: None (not told apart).
pub fn mount_device(path: &Path) -> Option<String> {
    imp::mount_device(path)
}

/// Raises the kernel's readahead for the FUSE mount at `mountpoint` to
/// `bytes` (Linux: the mount's bdi read_ahead_kb, best effort, needs root).
/// macOS has no such knob (macFUSE sizes its reads itself): a log line says
/// so.
pub fn tune_readahead(mountpoint: &Path, bytes: u32) {
    imp::tune_readahead(mountpoint, bytes)
}

/// Makes the next reads of the open file `fd` ask its filesystem rather
/// than the page cache, best effort (what a check of the data a daemon
/// serves needs). Linux: posix_fadvise DONTNEED drops its clean cached
/// pages. macOS: F_NOCACHE on the descriptor, so reads through it skip the
/// cache (there is no call that drops one file's cached pages).
pub fn uncache(fd: impl AsFd) {
    imp::uncache(fd.as_fd())
}

/// Refuses, with one line, a FUSE installation strata cannot serve right.
/// Linux: every kernel FUSE is fine. macOS: macFUSE 5 and later are
/// refused (found by the version in macFUSE's bundle), since fuser reads
/// their rename requests at the wrong offsets (README, "macOS").
pub fn check_fuse() -> Result<(), String> {
    imp::check_fuse()
}

/// The major version an XML Info.plist gives its bundle: the string after
/// the CFBundleShortVersionString key, else after CFBundleVersion.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn bundle_major_version(plist: &str) -> Option<u32> {
    ["CFBundleShortVersionString", "CFBundleVersion"]
        .iter()
        .find_map(|key| {
            let after = plist.split(&format!("<key>{key}</key>")).nth(1)?;
            let value = after.split("<string>").nth(1)?.split("</string>").next()?;
            value.trim().split('.').next()?.parse().ok()
        })
}

/// The soft open-file limit a daemon can raise itself to, given the hard
/// limit (`None`: unlimited): the hard limit on Linux (unlimited: left
/// alone); on macOS at most OPEN_MAX (10240), since setrlimit(2) refuses a
/// soft RLIMIT_NOFILE above it ("use rlim_cur = min(OPEN_MAX, rlim_max)").
pub fn open_files_ceiling(hard: Option<u64>) -> Option<u64> {
    imp::open_files_ceiling(hard)
}

// ------------------------------------------------------------ the mount

/// How a mount is served on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// FUSE worker threads.
    pub threads: usize,
    /// Whether each worker gets its own /dev/fuse descriptor.
    pub clone_fd: bool,
}

/// The worker threads for `--threads` (`None`: the default). Linux: four
/// per CPU, 4 to 8, each with its own descriptor. macOS: fuser
/// serves a macFUSE mount with one thread, so the default is 1 and any
/// other number is refused with one line. 0 is refused everywhere.
pub fn serving(requested: Option<usize>) -> Result<Serving, String> {
    imp::serving(requested)
}

/// The mount options that differ between the systems: the source name
/// (`strata:<store>`, shown by mount(8), df and the mount table), the
/// filesystem's type or volume name, and on macOS `noappledouble` (macFUSE
/// then refuses `._*` AppleDouble files and `.DS_Store`, so the Finder
/// leaves none in the backing store; extended attributes are stored as
/// such, see [`xattr`]).
pub fn mount_options(store: &Path) -> Vec<fuser::MountOption> {
    imp::mount_options(store)
}

// ------------------------------------------------------------- logging

/// Whether the daemon tries the systemd journal before syslog (Linux).
pub const HAS_JOURNAL: bool = imp::HAS_JOURNAL;

/// The local syslog socket: `/dev/log` on Linux, `/var/run/syslog` on macOS
/// (syslogd hands what it receives there to the unified log: `log show
/// --predicate 'process == "syslogd" AND eventMessage CONTAINS "strata"'`).
pub const SYSLOG_SOCKET: &str = imp::SYSLOG_SOCKET;

// ---------------------------------------------------------- core dumps

/// Keeps this process out of reach of other processes of the same user
/// beyond what the core size limit does: Linux marks it not dumpable
/// (PR_SET_DUMPABLE 0: no core, no ptrace, /proc/PID/mem root-only).
/// macOS needs nothing more than RLIMIT_CORE 0 for cores, and already
/// refuses task_for_pid on a process to non-root users unless it is
/// debuggable; PT_DENY_ATTACH would not stop root.
pub fn forbid_dumping() -> std::io::Result<()> {
    imp::forbid_dumping()
}

/// Whether the system would dump this process (beyond the core limit):
/// Linux's dumpable mark; false on macOS.
pub fn dumpable() -> bool {
    imp::dumpable()
}

// -------------------------------------------------------------- xattrs

/// Extended attribute names and flags as FUSE hands them over, and their
/// one stored form (a store moves between the systems unchanged).
///
/// Linux names carry a namespace; strata stores `user.*` only (others are
/// ENOTSUP, as on most filesystems without a `trusted`/`security` policy).
/// macOS names have no namespace (`com.apple.FinderInfo`,
/// `com.apple.quarantine`, anything an application chooses): a macOS name
/// `N` is stored as `user.N`, so every macOS name has exactly one stored
/// name, no two collide, and on Linux the same attribute reads as
/// `user.N`. A stored name seen from macOS loses its `user.` prefix.
///
/// On macOS no name may be answered ENOTSUP: the kernel would then keep
/// the attribute in an AppleDouble `._` file beside the file (xnu's
/// fallback), which is exactly what strata keeps out of the backing store.
pub mod xattr {
    use super::imp;

    /// What a setxattr does to an existing attribute.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SetMode {
        /// Create or replace.
        Any,
        /// Fail with EEXIST if it exists.
        Create,
        /// Fail with ENOATTR if it does not exist.
        Replace,
    }

    impl SetMode {
        /// The flags for the backing store's own setxattr.
        pub fn backing_flags(self) -> rustix::fs::XattrFlags {
            match self {
                SetMode::Any => rustix::fs::XattrFlags::empty(),
                SetMode::Create => rustix::fs::XattrFlags::CREATE,
                SetMode::Replace => rustix::fs::XattrFlags::REPLACE,
            }
        }
    }

    /// The stored name (`user.…`) of the attribute a caller names `name`;
    /// an errno for a name strata does not store.
    pub fn stored_name(name: &[u8]) -> Result<String, i32> {
        imp::xattr_stored_name(name)
    }

    /// The name a caller sees for stored name `stored` (which begins with
    /// `user.`); `None` for one this system does not show.
    pub fn visible_name(stored: &str) -> Option<&str> {
        imp::xattr_visible_name(stored)
    }

    /// The set mode of a setxattr's `flags` and `position` (macOS passes
    /// its own XATTR_* options, and a position that only the resource fork
    /// may use). Unknown flags are EINVAL, never ignored.
    pub fn set_mode(flags: i32, position: u32) -> Result<SetMode, i32> {
        imp::xattr_set_mode(flags, position)
    }
}
