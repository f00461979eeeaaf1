//! Linux: renameat2, mknodat, chmod of special files through an `O_PATH`
//! descriptor, fallocate, FICLONE, SO_PEERCRED, /proc/self/mountinfo,
//! umount2 or fusermount3, the bdi readahead knob, the journal, and the
//! dumpable mark. Everything through rustix: no unsafe code here.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FallocateFlags, FileType, Mode, OFlags, RenameFlags};

use super::{Allocated, MountEntry, Rename, Serving, Unmount, UnmountError};

pub const SYSTEM: &str = "Linux";
pub const ENOATTR: i32 = libc::ENODATA;
pub const ERRNO_REVOKED: i32 = libc::EKEYREVOKED;
pub const REVOKED_IS_DISTINCT: bool = true;
pub const HAS_JOURNAL: bool = true;
pub const SYSLOG_SOCKET: &str = "/dev/log";

pub fn rename_from_flags(flags: u32) -> Result<Rename, i32> {
    match flags {
        0 => Ok(Rename::Replace),
        f if f == libc::RENAME_NOREPLACE => Ok(Rename::NoReplace),
        f if f == libc::RENAME_EXCHANGE => Ok(Rename::Exchange),
        _ => Err(libc::EINVAL),
    }
}

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

pub fn makedev(major: u32, minor: u32) -> u64 {
    rfs::makedev(major, minor)
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

pub fn sync_data(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    Ok(rfs::fdatasync(fd)?)
}

pub fn sync_all(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    Ok(rfs::fsync(fd)?)
}

pub fn getxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    attr: &str,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    Ok(rfs::lgetxattr(&path, attr, buf)?)
}

pub fn sync_filesystem(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    Ok(rfs::syncfs(dir)?)
}

pub fn preallocate(
    fd: BorrowedFd<'_>,
    from: u64,
    to: u64,
    keep_size: bool,
) -> std::io::Result<Allocated> {
    let mode = if keep_size {
        FallocateFlags::KEEP_SIZE
    } else {
        FallocateFlags::empty()
    };
    match rfs::fallocate(fd, mode, from, to - from) {
        Ok(()) => Ok(Allocated::Reserved),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            Ok(Allocated::Unsupported)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn fallocate_keeps_size(mode: i32) -> Option<bool> {
    match mode {
        0 => Some(false),
        m if m == libc::FALLOC_FL_KEEP_SIZE => Some(true),
        _ => None,
    }
}

/// A new file, then FICLONE (btrfs, XFS, bcachefs… share the extents),
/// else a byte copy (std uses copy_file_range, itself a reflink or an
/// in-kernel copy where it can).
pub fn copy_file(
    src: &mut File,
    dst_dir: BorrowedFd<'_>,
    name: &OsStr,
) -> std::io::Result<(File, bool)> {
    let fd = rfs::openat(
        dst_dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut dst = File::from(fd);
    if rfs::ioctl_ficlone(&dst, &*src).is_ok() {
        return Ok((dst, true));
    }
    super::copy_bytes(src, &mut dst, dst_dir, name)?;
    Ok((dst, false))
}

pub fn copy_file_range(
    src: BorrowedFd<'_>,
    off_in: &mut u64,
    dst: BorrowedFd<'_>,
    off_out: &mut u64,
    len: usize,
) -> std::io::Result<usize> {
    Ok(rfs::copy_file_range(
        src,
        Some(off_in),
        dst,
        Some(off_out),
        len,
    )?)
}

pub fn peer_uid(sock: BorrowedFd<'_>) -> std::io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(sock)?.uid.as_raw())
}

/// Undoes the octal escapes (`\040` for a space…) of /proc/self/mountinfo.
pub fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// /proc/self/mountinfo, whose names the kernel does not check for UTF-8
/// (a mount of anyone's, named in other bytes, must not hide the table).
fn mountinfo() -> Option<String> {
    let bytes = std::fs::read("/proc/self/mountinfo").ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// One mountinfo line: (mount ID, mount point, major:minor, source,
/// fstype).
fn parse_mountinfo_line(l: &str) -> Option<(u64, PathBuf, &str, String, &str)> {
    let (head, tail) = l.split_once(" - ")?;
    let mut h = head.split(' ');
    let id = h.next()?.parse().ok()?;
    let dev = h.nth(1)?;
    let point = unescape_mountinfo(h.nth(1)?);
    let mut t = tail.split(' ');
    let fstype = t.next()?;
    let source = unescape_mountinfo(t.next()?);
    Some((id, PathBuf::from(point), dev, source, fstype))
}

pub fn mounts() -> Vec<MountEntry> {
    let Some(info) = mountinfo() else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (id, point, dev, source, fstype) = parse_mountinfo_line(l)?;
            Some(MountEntry {
                point,
                id: Some(id),
                device: Some(dev.to_string()),
                source,
                fuse: fstype.starts_with("fuse"),
                automount: fstype == "autofs" && direct_autofs(l),
            })
        })
        .collect()
}

/// Whether a mountinfo line's super options say "direct": an autofs that
/// stands for one filesystem at its own mountpoint (systemd's automount
/// units, the automounter's direct maps), not a directory of them.
fn direct_autofs(line: &str) -> bool {
    line.split_once(" - ")
        .and_then(|(_, tail)| tail.split(' ').nth(2))
        .is_some_and(|opts| opts.split(',').any(|o| o == "direct"))
}

/// The `major:minor` device of the last mount listed at `path` in
/// /proc/self/mountinfo (the newest: the top one unless mounts were moved).
/// An absolute `path` is taken as canonical and the mount itself is not
/// touched (resolving it would stat the mount's root, which a daemon that
/// does not serve yet cannot answer).
pub fn mount_device(path: &Path) -> Option<String> {
    let canon = if path.is_absolute() {
        path.to_path_buf()
    } else {
        path.canonicalize().ok()?
    };
    newest_listed_at(&canon).map(|(_, dev)| dev)
}

/// The ID and device of the newest mount the table lists at `path`.
fn newest_listed_at(path: &Path) -> Option<(u64, String)> {
    let info = mountinfo()?;
    info.lines().rev().find_map(|l| {
        let (id, point, dev, ..) = parse_mountinfo_line(l)?;
        (point == path).then(|| (id, dev.to_string()))
    })
}

/// Whether the mount with this ID and device is in the mount table
/// (anywhere: a directory above it may have been renamed); None if the
/// table cannot be read.
pub fn mount_listed(id: u64, device: &str) -> Option<bool> {
    let info = mountinfo()?;
    Some(
        info.lines().any(|l| {
            parse_mountinfo_line(l).is_some_and(|(i, _, dev, ..)| i == id && dev == device)
        }),
    )
}

/// A mountpoint held by a descriptor of its parent directory.
pub struct MountSite {
    parent: rustix::fd::OwnedFd,
    name: std::ffi::OsString,
    path: PathBuf,
}

impl MountSite {
    pub fn open(path: &Path) -> std::io::Result<MountSite> {
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} names no directory to mount on", path.display()),
            )
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let parent = rfs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(MountSite {
            parent,
            name: name.to_os_string(),
            path: path.to_path_buf(),
        })
    }

    /// The ID of the newest mount at the site, from the kernel's own
    /// walk (statx(2) STATX_MNT_ID without syncing: no request reaches a
    /// FUSE daemon, so a dead or not yet serving one is no obstacle).
    /// Before Linux 5.8, which has no STATX_MNT_ID, the newest mount the
    /// table lists at the site's path.
    pub fn top_id(&self) -> Option<u64> {
        // Nothing asked for: the kernel gives the mount ID regardless, and
        // FUSE answers a process it does not let in (root at a user's mount
        // without allow_other) only when nothing is asked.
        let st = rfs::statx(
            &self.parent,
            self.name.as_os_str(),
            rfs::AtFlags::SYMLINK_NOFOLLOW
                | rfs::AtFlags::NO_AUTOMOUNT
                | rfs::AtFlags::STATX_DONT_SYNC,
            rfs::StatxFlags::empty(),
        );
        match st {
            Ok(st) if st.stx_mask & rfs::StatxFlags::MNT_ID.bits() != 0 => Some(st.stx_mnt_id),
            _ => newest_listed_at(&self.path).map(|(id, _)| id),
        }
    }

    /// As root, umount2(2) of the site through the parent's descriptor
    /// (`/proc/self/fd/N/name`): a directory above it renamed, or a
    /// symbolic link put in its path since, leads nowhere else. Otherwise
    /// `fusermount3 -u` of the path, which unmounts only the user's own
    /// FUSE mounts.
    pub fn unmount(&self, how: Unmount) -> Result<(), UnmountError> {
        use rustix::fd::AsRawFd;
        let parent = PathBuf::from(format!("/proc/self/fd/{}", self.parent.as_raw_fd()));
        if !rustix::process::geteuid().is_root() {
            // From the held parent as its working directory (set in the
            // child before fusermount3 runs, the descriptor still open).
            let name = Path::new(".").join(&self.name);
            return fusermount(&name, how, Some(&parent));
        }
        umount2(&parent.join(&self.name), how)
    }
}

pub fn unmount(path: &Path, how: Unmount) -> Result<(), UnmountError> {
    if !rustix::process::geteuid().is_root() {
        return fusermount(path, how, None);
    }
    umount2(path, how)
}

fn umount2(path: &Path, how: Unmount) -> Result<(), UnmountError> {
    // A symbolic link planted at the mountpoint's place is not followed.
    let flags = match how {
        Unmount::Plain => rustix::mount::UnmountFlags::NOFOLLOW,
        Unmount::Dead => {
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW
        }
    };
    match rustix::mount::unmount(path, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Err(UnmountError::Busy),
        Err(rustix::io::Errno::INVAL) => Err(UnmountError::NotMounted),
        Err(rustix::io::Errno::NOENT) => Err(UnmountError::NoSuchPath),
        Err(rustix::io::Errno::NOTCONN) => Err(UnmountError::Dead),
        Err(e) => Err(UnmountError::Other(e.into())),
    }
}

/// `fusermount3 -u` (`-uz` for a dead mount), else the older `fusermount`:
/// the setuid helper that lets the user who mounted unmount.
fn fusermount(path: &Path, how: Unmount, dir: Option<&Path>) -> Result<(), UnmountError> {
    let flag = match how {
        Unmount::Plain => "-u",
        Unmount::Dead => "-uz",
    };
    let run = |prog: &str| {
        let mut cmd = std::process::Command::new(prog);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        cmd.arg(flag)
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
    };
    let out = run("fusermount3")
        .or_else(|_| run("fusermount"))
        .map_err(|e| UnmountError::Helper(format!("fusermount3 is not available: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.lines().next().unwrap_or("").trim();
    // "fusermount3: failed to unmount /m: Device or resource busy" (glibc;
    // musl's strerror says "Resource busy"; fusermount3 sets no locale).
    if said.ends_with(": Device or resource busy") || said.ends_with(": Resource busy") {
        return Err(UnmountError::Busy);
    }
    Err(UnmountError::Helper(if said.is_empty() {
        "fusermount3 -u failed".to_string()
    } else {
        said.to_string()
    }))
}

pub fn tune_readahead(mountpoint: &Path, bytes: u32) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let kb = bytes / 1024;
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, kb.to_string()) {
        Ok(()) => tracing::info!(read_ahead_kb = kb, "raised readahead"),
        Err(e) => tracing::info!("readahead left at the default: {e}"),
    }
}

pub fn uncache(fd: BorrowedFd<'_>) {
    let _ = rfs::fadvise(fd, 0, None, rfs::Advice::DontNeed);
}

pub fn check_fuse() -> Result<(), String> {
    Ok(())
}

pub fn open_files_ceiling(hard: Option<u64>) -> Option<u64> {
    hard
}

pub fn serving(requested: Option<usize>) -> Result<Serving, String> {
    if requested == Some(0) {
        return Err("--threads 0: a mount needs at least one FUSE thread".into());
    }
    // Four per CPU, 4 to 8: a request mostly waits (on the kernel, the
    // backing filesystem, the disk) rather than computes, and more threads
    // than CPUs measured faster for chains of small requests. On 2 CPUs,
    // 8 threads against 2 (bench/results/baselines/2026-12-01-threads.md):
    // cold stat 1.24x, create 1.18x, SQLite 1.17-1.19x, one job of random
    // 4 KiB reads 1.33x faster; two jobs of random 4 KiB writes to one file
    // 0.5x (still above the peers). Each thread's request buffer holds up
    // to ~3 MiB resident under large requests: 8 stay within the memory
    // bound (block cache + 64 MiB).
    let threads = requested.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .saturating_mul(4)
            .clamp(4, 8)
    });
    Ok(Serving {
        threads,
        clone_fd: threads > 1,
    })
}

/// The source `strata:<store>`, and the type `fuse.strata` in
/// /proc/mounts, findmnt and `df -T`. fuser hands its own `Subtype` only to
/// fusermount3; on the mount(2) path it takes as root it drops it, and the
/// type showed as plain `fuse`. The kernel reads `subtype=` among the
/// options of the FUSE filesystem itself, and fusermount3 accepts it too.
///
/// Root mounts with mount(2), which takes the source as it is; any other
/// user goes through fusermount3, which splits its option list at commas
/// and takes a backslash in `fsname=` as quoting the next character: there
/// a store path with a comma is escaped, else its tail would be read as
/// mount options of its own.
pub fn mount_options(store: &Path) -> Vec<fuser::MountOption> {
    mount_options_for(store, rustix::process::geteuid().is_root())
}

fn mount_options_for(store: &Path, by_mount_syscall: bool) -> Vec<fuser::MountOption> {
    let source = format!("strata:{}", store.display());
    let source = if by_mount_syscall {
        source
    } else {
        let mut escaped = String::with_capacity(source.len());
        for c in source.chars() {
            if c == ',' || c == '\\' {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped
    };
    vec![
        fuser::MountOption::FSName(source),
        fuser::MountOption::CUSTOM("subtype=strata".into()),
    ]
}

pub fn forbid_dumping() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

pub fn dumpable() -> bool {
    !matches!(
        rustix::process::dumpable_behavior(),
        Ok(rustix::process::DumpableBehavior::NotDumpable)
    )
}

const USER: &str = "user.";

/// `user.*` names only, as they are (the `trusted`, `security` and `system`
/// namespaces are not strata's to store).
pub fn xattr_stored_name(name: &[u8]) -> Result<String, i32> {
    let s = std::str::from_utf8(name).map_err(|_| libc::ENOTSUP)?;
    if s.starts_with(USER) && s.len() > USER.len() {
        Ok(s.to_string())
    } else {
        Err(libc::ENOTSUP)
    }
}

pub fn xattr_visible_name(stored: &str) -> Option<&str> {
    Some(stored)
}

/// setxattr(2): XATTR_CREATE, XATTR_REPLACE, or neither; Linux has no
/// position.
pub fn xattr_set_mode(flags: i32, _position: u32) -> Result<super::xattr::SetMode, i32> {
    use super::xattr::SetMode;
    match flags {
        0 => Ok(SetMode::Any),
        f if f == libc::XATTR_CREATE => Ok(SetMode::Create),
        f if f == libc::XATTR_REPLACE => Ok(SetMode::Replace),
        _ => Err(libc::EINVAL),
    }
}

#[cfg(test)]
mod tests;
