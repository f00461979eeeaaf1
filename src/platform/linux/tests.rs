//! What only the Linux half promises (the shared promises are in
//! `platform/tests.rs`): Linux's own errno and flag values, sockets by
//! mknod, the space fallocate reserves and its ENOSPC, the filesystems
//! without fallocate, copy_file_range, the page cache drop, and real
//! mounts in the mount table (tmpfs, as root: unmounted on every path).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::platform::{self, errno, xattr, Allocated, Rename, Unmount, UnmountError};

const MIB: u64 = 1 << 20;

fn dir_fd(d: &tempfile::TempDir) -> File {
    File::open(d.path()).expect("open dir")
}

fn raw(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error()
}

fn assert_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "mounting needs root (the test suite runs as root)"
    );
}

/// A tmpfs of `size` mounted at `point`, detached when dropped (also when
/// the test fails half-way).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(point: &Path, size: &str) -> Tmpfs {
        assert_root();
        rustix::mount::mount(
            "strata-test",
            point,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            std::ffi::CString::new(format!("size={size}"))
                .expect("no NUL")
                .as_c_str(),
        )
        .expect("mount tmpfs");
        Tmpfs(point.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn errnos_that_differ_by_system_are_linux_ones_here() {
    assert_eq!(errno::ENOATTR, libc::ENODATA);
    assert_eq!(errno::REVOKED, libc::EKEYREVOKED);
    assert_eq!(platform::ERRNO_REVOKED, libc::EKEYREVOKED);
    const { assert!(errno::REVOKED_IS_DISTINCT) };
    assert_eq!(platform::SYSTEM, "Linux");
    assert_eq!(platform::SYSLOG_SOCKET, "/dev/log");
    const { assert!(platform::HAS_JOURNAL) };
}

#[test]
fn fuse_rename_flags_are_renameat2s_and_whiteout_is_refused() {
    assert_eq!(
        Rename::from_fuse_flags(libc::RENAME_NOREPLACE),
        Ok(Rename::NoReplace)
    );
    assert_eq!(
        Rename::from_fuse_flags(libc::RENAME_EXCHANGE),
        Ok(Rename::Exchange)
    );
    assert_eq!(
        Rename::from_fuse_flags(libc::RENAME_WHITEOUT),
        Err(libc::EINVAL)
    );
    assert_eq!(
        Rename::from_fuse_flags(libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT),
        Err(libc::EINVAL)
    );
}

#[test]
fn mknodat_makes_sockets_too() {
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    platform::mknodat(fd.as_fd(), OsStr::new("s"), FileType::Socket, 0o600, 0).expect("socket");
    assert!(std::fs::symlink_metadata(d.path().join("s"))
        .expect("s")
        .file_type()
        .is_socket());
}

#[test]
fn makedev_is_the_kernels_encoding() {
    assert_eq!(platform::makedev(1, 3), rustix::fs::makedev(1, 3));
    // Beyond 8 bits of minor and 12 of major (the split encoding).
    assert_eq!(
        platform::makedev(4095, 1 << 20),
        rustix::fs::makedev(4095, 1 << 20)
    );
}

#[test]
fn mode_bits_are_the_usual_octal_ones() {
    assert_eq!(platform::mode::S_IFMT, 0o170000);
    assert_eq!(platform::mode::S_IFREG, 0o100000);
    assert_eq!(platform::mode::S_ISVTX, 0o1000);
    assert_eq!(platform::mode::S_ISGID, 0o2000);
}

#[test]
fn preallocate_reserves_the_blocks_of_the_range() {
    let d = tempfile::tempdir().expect("tmp");
    let f = File::create(d.path().join("f")).expect("f");
    platform::preallocate(&f, 0, MIB, true).expect("keep size");
    let m = f.metadata().expect("meta");
    assert_eq!(m.len(), 0);
    assert!(m.blocks() * 512 >= MIB, "{} blocks", m.blocks());
    platform::preallocate(&f, MIB, 3 * MIB, false).expect("grow");
    let m = f.metadata().expect("meta");
    assert_eq!(m.len(), 3 * MIB);
    assert!(m.blocks() * 512 >= 3 * MIB, "{} blocks", m.blocks());
}

#[test]
fn preallocate_where_the_filesystem_cannot_is_unsupported_and_changes_nothing() {
    // procfs has no fallocate (EOPNOTSUPP): a regular file that can be
    // opened for writing without writing anything.
    let f = File::options()
        .write(true)
        .open("/proc/self/comm")
        .expect("open comm");
    assert_eq!(
        platform::preallocate(&f, 0, 4096, false).expect("no error"),
        Allocated::Unsupported
    );
    assert_eq!(
        platform::preallocate(&f, 0, 4096, true).expect("no error"),
        Allocated::Unsupported
    );
}

#[test]
fn preallocate_beyond_the_free_space_is_enospc_and_leaves_the_size() {
    let d = tempfile::tempdir().expect("tmp");
    let _fs = Tmpfs::mount(d.path(), "1m");
    let f = File::create(d.path().join("f")).expect("f");
    for keep_size in [false, true] {
        let e = platform::preallocate(&f, 0, 8 * MIB, keep_size).expect_err("too big");
        assert_eq!(raw(&e), Some(errno::ENOSPC), "keep_size {keep_size}");
        assert_eq!(f.metadata().expect("meta").len(), 0);
    }
    // What fits is reserved.
    assert_eq!(
        platform::preallocate(&f, 0, 256 << 10, false).expect("fits"),
        Allocated::Reserved
    );
}

#[test]
fn fuse_fallocate_modes_are_plain_and_keep_size_only() {
    assert_eq!(
        platform::fallocate_keeps_size(libc::FALLOC_FL_KEEP_SIZE),
        Some(true)
    );
    for mode in [
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_ZERO_RANGE,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
        libc::FALLOC_FL_UNSHARE_RANGE,
    ] {
        assert_eq!(platform::fallocate_keeps_size(mode), None, "{mode:#x}");
    }
}

#[test]
fn copy_file_range_copies_at_the_offsets_and_advances_them() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("a"), b"0123456789").expect("a");
    let a = File::open(d.path().join("a")).expect("open a");
    let b = File::create(d.path().join("b")).expect("create b");
    let (mut off_in, mut off_out) = (2u64, 3u64);
    let n = platform::copy_file_range(&a, &mut off_in, &b, &mut off_out, 5).expect("copy");
    assert_eq!(n, 5);
    assert_eq!((off_in, off_out), (7, 8));
    assert_eq!(
        std::fs::read(d.path().join("b")).expect("b"),
        b"\x00\x00\x0023456"
    );
    // At the end of the source: nothing more, offsets stay.
    let (mut off_in, mut off_out) = (10u64, 0u64);
    let n = platform::copy_file_range(&a, &mut off_in, &b, &mut off_out, 5).expect("at end");
    assert_eq!((n, off_in, off_out), (0, 10, 0));
}

/// Bytes of `path` in the page cache, as fincore(1) counts them.
fn cached_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a byte count")
}

#[test]
fn uncache_drops_the_files_clean_pages_from_the_page_cache() {
    // On the disk the tests are built on, not /tmp (a tmpfs keeps its
    // pages).
    let exe = std::env::current_exe().expect("test binary");
    let d = tempfile::tempdir_in(exe.parent().expect("its directory")).expect("tmp");
    let path = d.path().join("f");
    std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
    let mut f = File::open(&path).expect("open");
    platform::sync_data(&f).expect("sync");
    let mut back = Vec::new();
    f.read_to_end(&mut back).expect("read");
    assert!(cached_bytes(&path) > 0, "a file just read is cached");
    platform::uncache(&f);
    assert_eq!(cached_bytes(&path), 0);
    // And reads through the same descriptor still work.
    let mut again = Vec::new();
    std::io::Seek::rewind(&mut f).expect("rewind");
    f.read_to_end(&mut again).expect("read again");
    assert_eq!(again, back);
}

#[test]
fn mountinfo_escapes_are_undone() {
    assert_eq!(super::unescape_mountinfo("/a\\040b"), "/a b");
    assert_eq!(super::unescape_mountinfo("/t\\011ab\\134"), "/t\tab\\");
    assert_eq!(super::unescape_mountinfo("/trailing\\04"), "/trailing\\04");
}

#[test]
fn a_mount_shows_in_the_table_with_its_source_until_it_is_unmounted() {
    let d = tempfile::tempdir().expect("tmp");
    // A space and a tab, which the mount table escapes.
    let point = d.path().canonicalize().expect("canon").join("a b\tc");
    std::fs::create_dir(&point).expect("mkdir");
    let _fs = Tmpfs::mount(&point, "1m");
    assert!(platform::is_mountpoint(&point));
    let entry = platform::mounts()
        .into_iter()
        .rfind(|m| m.point == point)
        .expect("in the table");
    assert_eq!(entry.source, "strata-test");
    assert!(!entry.fuse, "tmpfs is not FUSE");

    // Busy while a file is open there, and still mounted after.
    let open = File::create(point.join("f")).expect("create");
    let r = platform::unmount(&point, Unmount::Plain);
    assert!(matches!(r, Err(UnmountError::Busy)), "{r:?}");
    assert!(platform::is_mountpoint(&point));
    drop(open);

    platform::unmount(&point, Unmount::Plain).expect("unmount");
    assert!(!platform::is_mountpoint(&point));
    let r = platform::unmount(&point, Unmount::Plain);
    assert!(matches!(r, Err(UnmountError::NotMounted)), "{r:?}");
}

#[test]
fn a_mount_site_finds_and_unmounts_its_mount_after_its_parent_is_renamed() {
    let d = tempfile::tempdir().expect("tmp");
    let base = d.path().canonicalize().expect("canon");
    let point = base.join("a").join("mnt");
    std::fs::create_dir_all(&point).expect("mkdir");
    let fs = Tmpfs::mount(&point, "1m");
    let entry = platform::mounts()
        .into_iter()
        .rfind(|m| m.point == point)
        .expect("in the table");
    let (id, dev) = (entry.id.expect("an ID"), entry.device.expect("a device"));
    let site = platform::MountSite::open(&point).expect("hold the parent");
    assert_eq!(site.top_id(), Some(id));
    assert_eq!(platform::mount_listed(id, &dev), Some(true));
    assert_eq!(platform::mount_listed(id, "0:0"), Some(false));

    // Renamed: the table lists the mount elsewhere, the site still finds it.
    std::fs::rename(base.join("a"), base.join("b")).expect("rename");
    assert!(!platform::is_mountpoint(&point));
    assert_eq!(site.top_id(), Some(id));
    site.unmount(Unmount::Plain)
        .expect("unmount through the site");
    assert_eq!(platform::mount_listed(id, &dev), Some(false));
    assert_ne!(site.top_id(), Some(id));
    assert!(!platform::is_mountpoint(&base.join("b").join("mnt")));
    drop(fs);
}

#[test]
fn a_dead_unmount_detaches_even_a_busy_mount() {
    let d = tempfile::tempdir().expect("tmp");
    let point = d.path().canonicalize().expect("canon");
    let _fs = Tmpfs::mount(&point, "1m");
    let open = File::create(point.join("f")).expect("create");
    platform::unmount(&point, Unmount::Dead).expect("detach");
    assert!(!platform::is_mountpoint(&point));
    drop(open);
}

#[test]
fn readahead_of_what_is_not_a_mount_is_left_alone() {
    let d = tempfile::tempdir().expect("tmp");
    // No mount there: nothing to tune, nothing written, no panic.
    platform::tune_readahead(d.path(), 1 << 20);
}

#[test]
fn the_open_file_ceiling_is_the_hard_limit() {
    assert_eq!(platform::open_files_ceiling(Some(1 << 20)), Some(1 << 20));
    assert_eq!(platform::open_files_ceiling(None), None);
}

#[test]
fn serving_defaults_to_several_threads_each_with_its_descriptor() {
    let s = platform::serving(None).expect("default");
    assert!(s.threads >= 2);
    assert!(s.clone_fd);
    let four = platform::serving(Some(4)).expect("four");
    assert_eq!((four.threads, four.clone_fd), (4, true));
    let e = platform::serving(Some(0)).expect_err("zero");
    assert!(e.contains("--threads 0"), "{e}");
}

#[test]
fn mount_options_name_the_store_and_the_type() {
    let o = platform::mount_options(Path::new("/srv/store"));
    assert_eq!(
        o,
        vec![
            fuser::MountOption::FSName("strata:/srv/store".into()),
            fuser::MountOption::CUSTOM("subtype=strata".into()),
        ]
    );
}

#[test]
fn a_store_path_with_commas_is_escaped_for_fusermount3_only() {
    let store = std::path::Path::new("/srv/a,allow_other\\b");
    assert_eq!(
        super::mount_options_for(store, false)[0],
        fuser::MountOption::FSName("strata:/srv/a\\,allow_other\\\\b".into())
    );
    assert_eq!(
        super::mount_options_for(store, true)[0],
        fuser::MountOption::FSName("strata:/srv/a,allow_other\\b".into())
    );
}

#[test]
fn the_dumpable_mark_goes_off_and_is_seen() {
    assert!(platform::dumpable(), "a test process starts dumpable");
    platform::forbid_dumping().expect("forbid");
    let seen = platform::dumpable();
    // Put it back for the other tests of this process before asserting.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
        .expect("restore");
    assert!(!seen);
}

#[test]
fn xattr_names_are_the_user_namespace_as_it_is() {
    assert_eq!(xattr::stored_name(b"user.a"), Ok("user.a".to_string()));
    assert_eq!(xattr::visible_name("user.a"), Some("user.a"));
    for name in [
        &b"user."[..],
        b"trusted.a",
        b"security.selinux",
        b"system.posix_acl_access",
        b"com.apple.FinderInfo",
        b"user.\xff",
        b"",
    ] {
        assert_eq!(
            xattr::stored_name(name),
            Err(libc::ENOTSUP),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn xattr_set_flags_are_linuxs_and_the_position_is_ignored() {
    use xattr::SetMode;
    assert_eq!(xattr::set_mode(1, 0), Ok(SetMode::Create));
    assert_eq!(xattr::set_mode(2, 0), Ok(SetMode::Replace));
    assert_eq!(xattr::set_mode(4, 0), Err(libc::EINVAL));
    assert_eq!(xattr::set_mode(0, 7), Ok(SetMode::Any));
}

#[test]
fn the_default_is_four_threads_per_cpu_from_4_to_8_each_with_its_descriptor() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default = platform::serving(None).expect("default");
    assert_eq!(default.threads, (cpus * 4).clamp(4, 8));
    assert!(default.clone_fd);
    let asked = platform::serving(Some(3)).expect("three");
    assert_eq!((asked.threads, asked.clone_fd), (3, true));
}

#[test]
fn only_a_direct_autofs_counts_as_an_automount_point() {
    let direct = "42 27 0:39 / /srv/data rw,relatime shared:9 - autofs systemd-1 rw,fd=61,pgrp=1,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=1";
    let indirect = "43 27 0:40 / /net rw,relatime - autofs -hosts rw,fd=7,pgrp=9,timeout=300,minproto=5,maxproto=5,indirect,pipe_ino=2";
    let named =
        "44 27 0:41 / /m rw,relatime - autofs direct rw,fd=7,pgrp=9,minproto=5,maxproto=5,offset";
    assert!(super::direct_autofs(direct));
    assert!(!super::direct_autofs(indirect));
    assert!(
        !super::direct_autofs(named),
        "a source named direct is not the option"
    );
}
