//! macOS with macFUSE (through fuser's libfuse 2 path): renameatx_np,
//! mknodat/mkfifoat (macOS 13 and later, looked up at run time),
//! F_FULLFSYNC, sync_volume_np, F_PREALLOCATE, clonefile, getpeereid,
//! getfsstat, unmount(2), syslogd's socket, and what macFUSE's mount
//! options are. The semantics are those documented in `mod.rs`; where
//! macOS cannot give them, this file says what it does instead.
//!
//! References: Apple's man pages rename(2) (renamex_np, renameatx_np),
//! mknod(2), mkfifo(2), fcntl(2) (F_FULLFSYNC, F_PREALLOCATE), fsync(2),
//! clonefile(2), getpeereid(3), getfsstat(2), unmount(2), setxattr(2) and
//! getxattr(2); macFUSE's mount options (wiki "Mount Options":
//! noappledouble, volname, allow_other) and its libfuse's mount_darwin.c
//! for the options the mount tool accepts.

use std::ffi::{c_char, c_int, c_void, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, CloneFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{Allocated, MountEntry, Rename, Serving, Unmount, UnmountError};

pub const SYSTEM: &str = "macOS";
pub const ENOATTR: i32 = libc::ENOATTR;
pub const ERRNO_REVOKED: i32 = libc::EACCES;
pub const REVOKED_IS_DISTINCT: bool = false;
pub const HAS_JOURNAL: bool = false;
pub const SYSLOG_SOCKET: &str = "/var/run/syslog";

fn cstring(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

// ------------------------------------------------------------- renames

/// renamex_np(2) flags as macFUSE hands them over (its extended
/// `fuse_rename_in`): RENAME_SWAP and RENAME_EXCL. fuser 0.18 does not
/// negotiate them and passes 0 (macOS then answers renamex_np with those
/// flags itself, ENOTSUP for a swap on a volume that does not announce
/// VOL_CAP_INT_RENAME_SWAP); should a later fuser pass them, they mean what
/// renamex_np(2) says, and anything else is refused. fuser 0.18 reads
/// macFUSE's extended `fuse_rename_in` (with these flags) without
/// negotiating FUSE_RENAME_SWAP/EXCL: macFUSE 4 sends that layout anyway,
/// macFUSE 5 does not, and its renames arrive misread (README: macOS).
pub fn rename_from_flags(flags: u32) -> Result<Rename, i32> {
    match flags {
        0 => Ok(Rename::Replace),
        f if f == libc::RENAME_EXCL => Ok(Rename::NoReplace),
        f if f == libc::RENAME_SWAP => Ok(Rename::Exchange),
        _ => Err(libc::EINVAL),
    }
}

/// renameatx_np(2) (rustix): RENAME_EXCL for no-replace, RENAME_SWAP for
/// exchange, both atomic on APFS and HFS+; a backing filesystem without
/// them answers ENOTSUP ("the underlying filesystem does not support the
/// flag"), which is passed on.
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

// ------------------------------------------------------- special files

/// A libSystem function that older macOS releases lack, looked up once at
/// run time (a direct reference would keep strata from starting there).
fn weak_symbol(cell: &OnceLock<usize>, name: &std::ffi::CStr) -> Option<*mut c_void> {
    let addr = *cell.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
        // looks the symbol up in the loaded images; it returns null when
        // there is none.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
    });
    (addr != 0).then_some(addr as *mut c_void)
}

type MknodatFn = unsafe extern "C" fn(c_int, *const c_char, libc::mode_t, libc::dev_t) -> c_int;
type MkfifoatFn = unsafe extern "C" fn(c_int, *const c_char, libc::mode_t) -> c_int;

static MKNODAT: OnceLock<usize> = OnceLock::new();
static MKFIFOAT: OnceLock<usize> = OnceLock::new();

/// FIFOs through mkfifoat(2), device nodes through mknodat(2) (root only,
/// as everywhere), both macOS 13 and later; earlier releases answer
/// ENOTSUP. A socket cannot be made by mknod on macOS (mknod(2) takes
/// character and block devices only): ENOTSUP.
pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    kind: FileType,
    mode: u32,
    dev: u64,
) -> std::io::Result<()> {
    let c = cstring(name)?;
    // mode_t is 16 bits here; only the permission bits are passed.
    let perm = (mode & 0o7777) as libc::mode_t;
    let r = match kind {
        FileType::Fifo => {
            let Some(f) = weak_symbol(&MKFIFOAT, c"mkfifoat") else {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP));
            };
            // SAFETY: the symbol is libSystem's mkfifoat, whose C signature
            // is `int mkfifoat(int, const char *, mode_t)`.
            let f: MkfifoatFn = unsafe { std::mem::transmute::<*mut c_void, MkfifoatFn>(f) };
            // SAFETY: a valid descriptor, a NUL-terminated name that lives
            // for the call, plain mode bits.
            unsafe { f(dir.as_raw_fd(), c.as_ptr(), perm) }
        }
        FileType::CharacterDevice | FileType::BlockDevice => {
            let Some(f) = weak_symbol(&MKNODAT, c"mknodat") else {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP));
            };
            let ifmt = if kind == FileType::CharacterDevice {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            // macFUSE passes the device number as dev_t's 32 bits.
            let dev = dev as u32 as libc::dev_t;
            // SAFETY: the symbol is libSystem's mknodat, whose C signature
            // is `int mknodat(int, const char *, mode_t, dev_t)`.
            let f: MknodatFn = unsafe { std::mem::transmute::<*mut c_void, MknodatFn>(f) };
            // SAFETY: a valid descriptor, a NUL-terminated name that lives
            // for the call, plain integers.
            unsafe { f(dir.as_raw_fd(), c.as_ptr(), ifmt | perm, dev) }
        }
        _ => return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP)),
    };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// makedev(3): major in the top 8 bits, minor in the low 24, as dev_t's
/// 32 bits.
pub fn makedev(major: u32, minor: u32) -> u64 {
    u64::from(rfs::makedev(major, minor) as u32)
}

/// fchmodat(2) with AT_SYMLINK_NOFOLLOW, which macOS supports (it would
/// change a symlink's own mode: refused first with ELOOP, as on Linux).
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(rfs::chmodat(
        dir,
        name,
        Mode::from_raw_mode((mode & 0o7777) as libc::mode_t),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

// ---------------------------------------------------------- durability

static FULLFSYNC_WARNED: AtomicBool = AtomicBool::new(false);

/// fcntl(F_FULLFSYNC): fsync(2) on macOS "does not guarantee that the data
/// is on the physical media" (the drive may cache it); F_FULLFSYNC asks
/// the drive to flush (fcntl(2), fsync(2)). Filesystems that cannot (some
/// network filesystems) answer ENOTSUP, EINVAL or ENOTTY: fsync(2) then,
/// as SQLite does, with one warning. Any other error (EIO…) is returned,
/// never hidden behind a successful fsync.
fn full_sync(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    match rfs::fcntl_fullfsync(fd) {
        Ok(()) => Ok(()),
        Err(e)
            if e == Errno::NOTSUP
                || e == Errno::OPNOTSUPP
                || e == Errno::INVAL
                || e == Errno::NOTTY =>
        {
            if !FULLFSYNC_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the backing filesystem does not support F_FULLFSYNC ({e}): fsync is as durable as that filesystem's fsync(2)"
                );
            }
            Ok(rfs::fsync(fd)?)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn sync_data(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    full_sync(fd)
}

pub fn sync_all(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    full_sync(fd)
}

extern "C" {
    /// `int fsync_volume_np(int fd, int flags)` (<unistd.h>, macOS 10.8):
    /// syncs the volume holding the open file `fd`; returns 0 or an errno
    /// (Libc's gen/sync_volume_np.c: a wrapper of
    /// `ffsctl(fd, FSCTL_SYNC_VOLUME, ...)` that returns the errno rather
    /// than setting it).
    fn fsync_volume_np(fd: c_int, flags: c_int) -> c_int;
}
/// Flush data and metadata to the medium, not just to the drive's cache.
const SYNC_VOLUME_FULLSYNC: c_int = 0x01;
/// Wait for the volume's sync to complete.
const SYNC_VOLUME_WAIT: c_int = 0x02;

static VOLUME_FLUSH_WARNED: AtomicBool = AtomicBool::new(false);

/// fsync_volume_np(SYNC_VOLUME_FULLSYNC | SYNC_VOLUME_WAIT) on the
/// descriptor itself (no path is looked up again): macOS has no syncfs(2).
/// The kernel (xnu, vfs_syscalls.c `handle_sync_volume`) first syncs the
/// whole volume and waits (MNT_WAIT; errors of that sync are dropped, not
/// returned, unlike Linux's syncfs), then asks the volume's root for
/// F_FULLFSYNC, the drive's cache flush; the result of that flush is what
/// the call returns. A volume that cannot flush a drive (a macFUSE mount,
/// whose every dirty vnode the sync has pushed to its daemon; a network
/// filesystem) answers ENOTSUP, EINVAL or ENOTTY for the flush alone: the
/// sync is done then, and that is success with one warning. Asking again
/// without SYNC_VOLUME_FULLSYNC would not help: current xnu tests the
/// flush flag against its MNT_WAIT argument (both bit 0), so a waiting
/// sync always asks for the flush.
pub fn sync_filesystem(dir: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: a descriptor borrowed for the call and two integers; the
    // function touches no memory of ours.
    let r = unsafe { fsync_volume_np(dir.as_raw_fd(), SYNC_VOLUME_FULLSYNC | SYNC_VOLUME_WAIT) };
    match r {
        0 => Ok(()),
        libc::ENOTSUP | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY => {
            if !VOLUME_FLUSH_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the volume cannot flush its drive's cache (errno {r}): a volume sync is as durable as its own"
                );
            }
            Ok(())
        }
        -1 => Err(std::io::Error::last_os_error()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// The entry is opened (non-blocking: a FIFO put in the file's place must
/// not hang) and its attribute read by descriptor.
pub fn getxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    attr: &str,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    Ok(rfs::fgetxattr(&fd, attr, buf)?)
}

// --------------------------------------------------------- allocation

/// fcntl(F_PREALLOCATE) with F_PEOFPOSMODE: fcntl(2) says "Allocate from
/// the physical end of file. In this case, fst_length indicates the number
/// of newly allocated bytes desired", and the kernel refuses any
/// fst_offset but 0 (EINVAL). So space can only be reserved right after
/// the blocks the file has, never at an offset of our choosing:
///
/// - `from` at or before the file's size (an append, a growing write):
///   `to - size` bytes are asked beyond the physical end, which covers
///   `[size, to)` (the physical end is at or past the size unless the
///   file ends in a hole), all of it or nothing (F_ALLOCATEALL),
///   contiguous first (F_ALLOCATECONTIG) and in pieces if that fails.
///   ENOSPC is returned as such.
/// - `from` past the size (a write after a gap): space reserved at the
///   physical end would not be where the write lands, and reserving up to
///   `to` would allocate the whole gap (a write at 1 TiB would ask for
///   1 TiB): nothing is reserved, [`Allocated::Unsupported`], as on a
///   Linux filesystem without fallocate.
///
/// The space lies past the end of file and is released at the last
/// close(2) (no F_ALLOCATEPERSIST): strata writes through the same
/// descriptor right after reserving. Unless `keep_size`, ftruncate to `to`
/// then makes it part of the file (F_PREALLOCATE never changes the size).
pub fn preallocate(
    fd: BorrowedFd<'_>,
    from: u64,
    to: u64,
    keep_size: bool,
) -> std::io::Result<Allocated> {
    let size = u64::try_from(rfs::fstat(fd)?.st_size).unwrap_or(0);
    if from > size {
        return Ok(Allocated::Unsupported);
    }
    if to > size {
        let length = libc::off_t::try_from(to - size)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut last = Errno::NOTSUP;
        let mut reserved = false;
        for flags in [
            libc::F_ALLOCATECONTIG | libc::F_ALLOCATEALL,
            libc::F_ALLOCATEALL,
        ] {
            let mut store = libc::fstore_t {
                fst_flags: flags,
                fst_posmode: libc::F_PEOFPOSMODE,
                fst_offset: 0,
                fst_length: length,
                fst_bytesalloc: 0,
            };
            // SAFETY: F_PREALLOCATE copies in and back out exactly one
            // fstore_t (xnu kern_descrip.c), passed by pointer to a local
            // that lives for the call; libc's fstore_t has <sys/fcntl.h>'s
            // layout (unsigned int, int, then three off_t).
            let r = unsafe {
                libc::fcntl(
                    fd.as_raw_fd(),
                    libc::F_PREALLOCATE,
                    &mut store as *mut libc::fstore_t,
                )
            };
            if r != -1 {
                reserved = true;
                break;
            }
            last = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
        }
        if !reserved {
            if last == Errno::NOTSUP
                || last == Errno::OPNOTSUPP
                || last == Errno::INVAL
                || last == Errno::NOTTY
            {
                return Ok(Allocated::Unsupported);
            }
            return Err(last.into());
        }
        if !keep_size {
            rfs::ftruncate(fd, to)?;
        }
    }
    Ok(Allocated::Reserved)
}

/// macOS has no fallocate modes (macFUSE's own allocate request is not
/// negotiated by fuser): only the plain allocation.
pub fn fallocate_keeps_size(mode: i32) -> Option<bool> {
    (mode == 0).then_some(false)
}

// ---------------------------------------------------------------- copies

/// fclonefileat(2) (rustix), with CLONE_NOFOLLOW and CLONE_NOOWNERCOPY: an
/// APFS clone shares the source's blocks and has its own copy of the
/// attributes and extended attributes. A volume that cannot clone
/// (ENOTSUP), or a destination on another volume (EXDEV), gets a new file
/// and a byte copy.
pub fn copy_file(
    src: &mut File,
    dst_dir: BorrowedFd<'_>,
    name: &OsStr,
) -> std::io::Result<(File, bool)> {
    let open = |flags: OFlags| {
        rfs::openat(
            dst_dir,
            name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | flags,
            Mode::from_raw_mode(0o600),
        )
    };
    match rfs::fclonefileat(
        &*src,
        dst_dir,
        name,
        CloneFlags::NOFOLLOW | CloneFlags::NOOWNERCOPY,
    ) {
        Ok(()) => return Ok((File::from(open(OFlags::empty())?), true)),
        Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP || e == Errno::XDEV => {}
        Err(e) => return Err(e.into()),
    }
    let mut dst = File::from(open(OFlags::CREATE | OFlags::EXCL)?);
    super::copy_bytes(src, &mut dst, dst_dir, name)?;
    Ok((dst, false))
}

/// macOS has no copy_file_range(2).
pub fn copy_file_range(
    _src: BorrowedFd<'_>,
    _off_in: &mut u64,
    _dst: BorrowedFd<'_>,
    _off_out: &mut u64,
    _len: usize,
) -> std::io::Result<usize> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

// --------------------------------------------------------------- sockets

/// getpeereid(3): the effective ids the peer had when it connected
/// (LOCAL_PEERCRED underneath).
pub fn peer_uid(sock: BorrowedFd<'_>) -> std::io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: a valid socket descriptor and two pointers to locals that
    // live for the call.
    let r = unsafe { libc::getpeereid(sock.as_raw_fd(), &mut uid, &mut gid) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(uid)
}

// ---------------------------------------------------------------- mounts

/// A NUL-terminated `char` array of a statfs, as bytes.
fn field(chars: &[c_char]) -> Vec<u8> {
    chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}

/// getfsstat(2) with MNT_NOWAIT: the cached statfs of every mount, without
/// asking any filesystem (a hung FUSE daemon cannot block it); used rather
/// than getmntinfo(3), whose buffer is shared by the whole process. A
/// strata mount's f_mntfromname is its `fsname`, f_fstypename `macfuse`.
pub fn mounts() -> Vec<MountEntry> {
    // SAFETY: a null buffer asks only for the number of mounts.
    let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
    let Ok(n) = usize::try_from(n) else {
        return Vec::new();
    };
    // Room for mounts that appear between the two calls.
    let cap = n + 16;
    let mut buf: Vec<libc::statfs> = Vec::with_capacity(cap);
    let Ok(bytes) = c_int::try_from(cap * std::mem::size_of::<libc::statfs>()) else {
        return Vec::new();
    };
    // SAFETY: the buffer has room for `cap` statfs records, `bytes` long;
    // getfsstat writes at most `bytes` and returns how many it wrote.
    let got = unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
    let Ok(got) = usize::try_from(got) else {
        return Vec::new();
    };
    // SAFETY: getfsstat initialised the first `got` records, and `got` is
    // at most `cap` since it wrote at most `bytes`.
    unsafe { buf.set_len(got.min(cap)) };
    buf.iter()
        .map(|s| {
            let fstype = field(&s.f_fstypename);
            MountEntry {
                point: PathBuf::from(OsStr::from_bytes(&field(&s.f_mntonname))),
                id: None,
                device: None,
                source: String::from_utf8_lossy(&field(&s.f_mntfromname)).into_owned(),
                fuse: fstype.starts_with(b"macfuse") || fstype.starts_with(b"osxfuse"),
                // Not told apart: the session's own unmount at its end
                // (macFUSE's library) goes by path and would take an
                // automount point beneath.
                automount: false,
            }
        })
        .collect()
}

/// unmount(2): the user who mounted a macFUSE volume may unmount it
/// (unmount(2): EPERM only for others). A dead mount is forced
/// (MNT_FORCE), as `umount -f` does.
pub fn unmount(path: &Path, how: Unmount) -> Result<(), UnmountError> {
    let c = cstring(path.as_os_str()).map_err(UnmountError::Other)?;
    let flags = match how {
        Unmount::Plain => 0,
        Unmount::Dead => libc::MNT_FORCE,
    };
    // SAFETY: a NUL-terminated path that lives for the call.
    let r = unsafe { libc::unmount(c.as_ptr(), flags) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EBUSY) => UnmountError::Busy,
        // unmount(2): "The requested directory is not in the mount table."
        Some(libc::EINVAL) => UnmountError::NotMounted,
        Some(libc::ENOENT) => UnmountError::NoSuchPath,
        Some(libc::ENOTCONN) | Some(libc::ENXIO) => UnmountError::Dead,
        _ => UnmountError::Other(e),
    })
}

pub fn mount_device(_path: &Path) -> Option<String> {
    None
}

pub fn mount_listed(_id: u64, _device: &str) -> Option<bool> {
    None
}

/// macOS has no mount IDs: the site is its path.
pub struct MountSite(PathBuf);

impl MountSite {
    pub fn open(path: &Path) -> std::io::Result<MountSite> {
        Ok(MountSite(path.to_path_buf()))
    }

    pub fn top_id(&self) -> Option<u64> {
        None
    }

    pub fn unmount(&self, how: Unmount) -> Result<(), UnmountError> {
        unmount(&self.0, how)
    }
}

pub fn tune_readahead(mountpoint: &Path, _bytes: u32) {
    tracing::info!(
        mountpoint = %mountpoint.display(),
        "readahead left to macFUSE (macOS has no per-mount readahead setting)"
    );
}

/// F_NOCACHE ("turns data caching off", fcntl(2)) on the descriptor:
/// reads through it go to the filesystem rather than the unified buffer
/// cache where they can (page-aligned ones). macOS has no call that drops
/// one file's cached pages, so this is best effort.
pub fn uncache(fd: BorrowedFd<'_>) {
    let _ = rfs::fcntl_nocache(fd, true);
}

/// macFUSE's bundle, whose Info.plist names the installed version.
const MACFUSE_INFO: &str = "/Library/Filesystems/macfuse.fs/Contents/Info.plist";

pub fn check_fuse() -> Result<(), String> {
    // No bundle: the mount itself then says what is missing.
    let Ok(plist) = std::fs::read_to_string(MACFUSE_INFO) else {
        return Ok(());
    };
    match super::bundle_major_version(&plist) {
        Some(major) if major >= 5 => Err(format!(
            "macFUSE {major} is installed ({MACFUSE_INFO}): strata needs macFUSE 4 until its FUSE library reads macFUSE 5's rename requests (README, \"macOS\")"
        )),
        _ => Ok(()),
    }
}

/// OPEN_MAX of <sys/syslimits.h>.
const OPEN_MAX: u64 = 10240;

/// setrlimit(2), COMPATIBILITY: RLIMIT_NOFILE no longer takes
/// `rlim_cur = RLIM_INFINITY`; "use rlim_cur = min(OPEN_MAX, rlim_max)".
pub fn open_files_ceiling(hard: Option<u64>) -> Option<u64> {
    Some(hard.map_or(OPEN_MAX, |h| h.min(OPEN_MAX)))
}

/// fuser serves a macFUSE mount with a single thread (its Session refuses
/// more than one outside Linux, and /dev/macfuse has no FUSE_DEV_IOC_CLONE).
pub fn serving(requested: Option<usize>) -> Result<Serving, String> {
    match requested {
        None | Some(1) => Ok(Serving {
            threads: 1,
            clone_fd: false,
        }),
        Some(0) => Err("--threads 0: a mount needs at least one FUSE thread".into()),
        Some(n) => Err(format!(
            "--threads {n}: on macOS a mount is served by one FUSE thread; leave --threads out"
        )),
    }
}

/// A value for macFUSE's option list, which libfuse splits at commas and
/// where a backslash takes the next character as it is.
fn escape_option(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `fsname=strata:<store>` (the volume's f_mntfromname, shown by mount(8)
/// and df), `volname=strata` (the name the Finder shows), and
/// `noappledouble`: macFUSE then refuses `._*` AppleDouble files and
/// `.DS_Store` files (they can be neither created nor found), so copying
/// in the Finder leaves none in the backing store. There is no subtype on
/// macOS (macFUSE's libfuse ignores `subtype=`).
pub fn mount_options(store: &Path) -> Vec<fuser::MountOption> {
    vec![
        fuser::MountOption::FSName(escape_option(&format!("strata:{}", store.display()))),
        fuser::MountOption::CUSTOM("volname=strata".into()),
        fuser::MountOption::CUSTOM("noappledouble".into()),
    ]
}

/// RLIMIT_CORE at 0 (set by the caller) keeps cores from being written;
/// nothing else is needed to keep other users out (macOS gives task ports
/// of a non-debuggable process to root only). PT_DENY_ATTACH would stop
/// debuggers, not root, and is not used.
pub fn forbid_dumping() -> std::io::Result<()> {
    Ok(())
}

pub fn dumpable() -> bool {
    false
}

const USER: &str = "user.";
/// The resource fork: read and written in pieces at a position, and fuser
/// does not pass getxattr's position on; a fork read past its first piece
/// would come back wrong, so strata does not store one.
const RESOURCE_FORK: &str = "com.apple.ResourceFork";

/// Every macOS name `N` is stored as `user.N`, except the resource fork
/// (EPERM: "the named attribute is not permitted", setxattr(2); not
/// ENOTSUP, which would send the kernel to an AppleDouble file).
pub fn xattr_stored_name(name: &[u8]) -> Result<String, i32> {
    let s = std::str::from_utf8(name).map_err(|_| libc::EINVAL)?;
    if s.is_empty() {
        return Err(libc::EINVAL);
    }
    if s == RESOURCE_FORK {
        return Err(libc::EPERM);
    }
    Ok(format!("{USER}{s}"))
}

pub fn xattr_visible_name(stored: &str) -> Option<&str> {
    let name = stored.strip_prefix(USER).filter(|n| !n.is_empty())?;
    (name != RESOURCE_FORK).then_some(name)
}

/// setxattr(2) options: XATTR_CREATE, XATTR_REPLACE (not both); the others
/// macOS may pass are about how the call reaches the file and mean nothing
/// here (XATTR_NOFOLLOW: the kernel resolved the path; XATTR_NOSECURITY;
/// XATTR_NODEFAULT: strata never uses AppleDouble files;
/// XATTR_SHOWCOMPRESSION). `position` is for the resource fork only and
/// must otherwise be 0 (EINVAL).
pub fn xattr_set_mode(flags: i32, position: u32) -> Result<super::xattr::SetMode, i32> {
    use super::xattr::SetMode;
    if position != 0 {
        return Err(libc::EINVAL);
    }
    let ignored = libc::XATTR_NOFOLLOW
        | libc::XATTR_NOSECURITY
        | libc::XATTR_NODEFAULT
        | libc::XATTR_SHOWCOMPRESSION;
    if flags & !(ignored | libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
        return Err(libc::EINVAL);
    }
    match (
        flags & libc::XATTR_CREATE != 0,
        flags & libc::XATTR_REPLACE != 0,
    ) {
        (false, false) => Ok(SetMode::Any),
        (true, false) => Ok(SetMode::Create),
        (false, true) => Ok(SetMode::Replace),
        (true, true) => Err(libc::EINVAL),
    }
}
