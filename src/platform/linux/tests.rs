//! The Linux half of the platform API, each function exercised on real
//! files, sockets and the mount table of this machine.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use rustix::fs::FileType;

use crate::platform::{self, errno, xattr, Allocated, Rename, Unmount, UnmountError};

fn dir_fd(d: &tempfile::TempDir) -> File {
    File::open(d.path()).expect("open dir")
}

fn raw(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error()
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
fn fuse_rename_flags_decode_and_unknown_ones_are_refused() {
    assert_eq!(Rename::from_fuse_flags(0), Ok(Rename::Replace));
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
        Rename::from_fuse_flags(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE),
        Err(libc::EINVAL)
    );
}

#[test]
fn renameat_replaces_refuses_to_replace_and_exchanges() {
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    std::fs::write(d.path().join("a"), b"A").expect("a");
    std::fs::write(d.path().join("b"), b"B").expect("b");
    let (a, b) = (OsStr::new("a"), OsStr::new("b"));

    let e = platform::renameat(fd.as_fd(), a, fd.as_fd(), b, Rename::NoReplace)
        .expect_err("no-replace over an existing name");
    assert_eq!(raw(&e), Some(libc::EEXIST));
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"A");

    platform::renameat(fd.as_fd(), a, fd.as_fd(), b, Rename::Exchange).expect("exchange");
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"B");
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"A");

    let e = platform::renameat(fd.as_fd(), a, fd.as_fd(), OsStr::new("c"), Rename::Exchange)
        .expect_err("exchange with a missing name");
    assert_eq!(raw(&e), Some(libc::ENOENT));

    platform::renameat(fd.as_fd(), a, fd.as_fd(), b, Rename::Replace).expect("replace");
    assert!(!d.path().join("a").exists());
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"B");

    platform::renameat(fd.as_fd(), b, fd.as_fd(), a, Rename::NoReplace).expect("no-replace");
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"B");
}

#[test]
fn mknodat_makes_fifos_and_sockets_and_chmod_nofollow_refuses_symlinks() {
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    platform::mknodat(fd.as_fd(), OsStr::new("p"), FileType::Fifo, 0o600, 0).expect("fifo");
    platform::mknodat(fd.as_fd(), OsStr::new("s"), FileType::Socket, 0o600, 0).expect("socket");
    let p = std::fs::symlink_metadata(d.path().join("p")).expect("p");
    assert!(p.file_type().is_fifo());
    assert!(std::fs::symlink_metadata(d.path().join("s"))
        .expect("s")
        .file_type()
        .is_socket());
    let e = platform::mknodat(fd.as_fd(), OsStr::new("p"), FileType::Fifo, 0o600, 0)
        .expect_err("exists");
    assert_eq!(raw(&e), Some(libc::EEXIST));

    platform::chmod_nofollow(fd.as_fd(), OsStr::new("p"), 0o640).expect("chmod fifo");
    let p = std::fs::symlink_metadata(d.path().join("p")).expect("p");
    assert_eq!(p.permissions().mode() & 0o7777, 0o640);

    std::os::unix::fs::symlink("p", d.path().join("l")).expect("symlink");
    let e = platform::chmod_nofollow(fd.as_fd(), OsStr::new("l"), 0o600).expect_err("symlink");
    assert_eq!(raw(&e), Some(libc::ELOOP));
    // The target kept its mode.
    let p = std::fs::symlink_metadata(d.path().join("p")).expect("p");
    assert_eq!(p.permissions().mode() & 0o7777, 0o640);
}

#[test]
fn mode_bits_come_out_as_u32() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("f"), b"").expect("f");
    let st = rustix::fs::stat(d.path().join("f")).expect("stat");
    assert_eq!(
        platform::mode::of(&st) & platform::mode::S_IFMT,
        platform::mode::S_IFREG
    );
    assert_eq!(platform::mode::S_ISVTX, 0o1000);
    assert_eq!(platform::mode::S_ISGID, 0o2000);
}

#[test]
fn syncs_of_files_directories_and_filesystems_succeed_and_keep_the_data() {
    let d = tempfile::tempdir().expect("tmp");
    let mut f = File::create(d.path().join("f")).expect("f");
    f.write_all(b"durable").expect("write");
    platform::sync_data(&f).expect("fdatasync");
    platform::sync_all(&f).expect("fsync");
    let dir = dir_fd(&d);
    platform::sync_all(&dir).expect("fsync dir");
    platform::sync_filesystem(dir.as_fd()).expect("syncfs");
    assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"durable");
    // A descriptor that is not open for anything durable fails as the
    // kernel says, never silently.
    let (r, _w) = std::io::pipe().expect("pipe");
    assert!(platform::sync_data(&r).is_err());
}

#[test]
fn preallocate_reserves_space_with_and_without_keeping_the_size() {
    let d = tempfile::tempdir().expect("tmp");
    let f = File::create(d.path().join("f")).expect("f");
    const MIB: u64 = 1 << 20;
    assert_eq!(
        platform::preallocate(&f, 0, MIB, true).expect("keep size"),
        Allocated::Reserved
    );
    let m = f.metadata().expect("meta");
    assert_eq!(m.len(), 0, "the size is kept");
    assert!(
        m.blocks() * 512 >= MIB,
        "space is reserved: {} blocks",
        m.blocks()
    );

    assert_eq!(
        platform::preallocate(&f, MIB, 2 * MIB, false).expect("grow"),
        Allocated::Reserved
    );
    let m = f.metadata().expect("meta");
    assert_eq!(m.len(), 2 * MIB, "the size reaches the end");
    assert!(m.blocks() * 512 >= 2 * MIB);

    // An empty range asks nothing of the filesystem.
    assert_eq!(
        platform::preallocate(&f, 5 * MIB, 5 * MIB, false).expect("empty"),
        Allocated::Reserved
    );
    assert_eq!(f.metadata().expect("meta").len(), 2 * MIB);
}

#[test]
fn fuse_fallocate_modes_are_plain_and_keep_size_only() {
    assert_eq!(platform::fallocate_keeps_size(0), Some(false));
    assert_eq!(
        platform::fallocate_keeps_size(libc::FALLOC_FL_KEEP_SIZE),
        Some(true)
    );
    assert_eq!(
        platform::fallocate_keeps_size(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE),
        None
    );
    assert_eq!(
        platform::fallocate_keeps_size(libc::FALLOC_FL_ZERO_RANGE),
        None
    );
}

#[test]
fn copy_file_copies_into_a_new_name_only() {
    let d = tempfile::tempdir().expect("tmp");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.path().join("src"), &data).expect("src");
    let dir = dir_fd(&d);
    let mut src = File::open(d.path().join("src")).expect("open");
    let (mut copy, _cloned) =
        platform::copy_file(&mut src, dir.as_fd(), OsStr::new("dst")).expect("copy");
    let mut back = Vec::new();
    std::io::Seek::rewind(&mut copy).expect("rewind");
    copy.read_to_end(&mut back).expect("read copy");
    assert_eq!(back, data);
    assert_eq!(std::fs::read(d.path().join("dst")).expect("dst"), data);
    // The new file is the caller's to give a mode: created private.
    let mode = std::fs::metadata(d.path().join("dst"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);

    let mut src = File::open(d.path().join("src")).expect("open");
    let e = platform::copy_file(&mut src, dir.as_fd(), OsStr::new("dst")).expect_err("exists");
    assert_eq!(raw(&e), Some(libc::EEXIST));
}

#[test]
fn peer_uid_names_the_user_at_the_other_end() {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(platform::peer_uid(a.as_fd()).expect("peer"), me);
    assert_eq!(platform::peer_uid(b.as_fd()).expect("peer"), me);
    let f = tempfile::tempfile().expect("file");
    assert!(platform::peer_uid(f.as_fd()).is_err(), "not a socket");
}

#[test]
fn the_mount_table_has_the_root_and_not_a_fresh_directory() {
    let all = platform::mounts();
    assert!(
        all.iter().any(|m| m.point == std::path::Path::new("/")),
        "{all:?}"
    );
    assert!(platform::is_mountpoint(std::path::Path::new("/")));
    let d = tempfile::tempdir().expect("tmp");
    let canon = d.path().canonicalize().expect("canon");
    assert!(!platform::is_mountpoint(&canon));
}

#[test]
fn mountinfo_escapes_are_undone() {
    assert_eq!(super::unescape_mountinfo("/a\\040b"), "/a b");
    assert_eq!(super::unescape_mountinfo("/t\\011ab\\134"), "/t\tab\\");
    assert_eq!(super::unescape_mountinfo("/trailing\\04"), "/trailing\\04");
}

#[test]
fn unmounting_what_is_not_mounted_says_so() {
    let d = tempfile::tempdir().expect("tmp");
    let r = platform::unmount(d.path(), Unmount::Plain);
    if rustix::process::geteuid().is_root() {
        assert!(matches!(r, Err(UnmountError::NotMounted)), "{r:?}");
        let gone = d.path().join("gone");
        let r = platform::unmount(&gone, Unmount::Plain);
        assert!(matches!(r, Err(UnmountError::NoSuchPath)), "{r:?}");
    } else {
        assert!(matches!(r, Err(UnmountError::Helper(_))), "{r:?}");
    }
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
    // What a daemon of this process could raise itself to.
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert_eq!(platform::open_files_ceiling(l.maximum), l.maximum);
}

#[test]
fn makedev_and_copy_file_range_are_the_kernel_ones() {
    assert_eq!(platform::makedev(1, 3), rustix::fs::makedev(1, 3));
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("a"), b"0123456789").expect("a");
    let a = File::open(d.path().join("a")).expect("open a");
    let b = File::create(d.path().join("b")).expect("create b");
    let (mut off_in, mut off_out) = (2u64, 0u64);
    let n = platform::copy_file_range(&a, &mut off_in, &b, &mut off_out, 5).expect("copy");
    assert_eq!(n, 5);
    assert_eq!((off_in, off_out), (7, 5));
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"23456");
}

#[test]
fn serving_defaults_to_several_threads_each_with_its_descriptor() {
    let s = platform::serving(None).expect("default");
    assert!(s.threads >= 2);
    assert!(s.clone_fd);
    let one = platform::serving(Some(1)).expect("one");
    assert_eq!((one.threads, one.clone_fd), (1, false));
    let four = platform::serving(Some(4)).expect("four");
    assert_eq!((four.threads, four.clone_fd), (4, true));
}

#[test]
fn mount_options_name_the_store_and_the_type() {
    let o = platform::mount_options(std::path::Path::new("/srv/store"));
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
    assert_eq!(xattr::stored_name(b"user."), Err(libc::ENOTSUP));
    assert_eq!(xattr::stored_name(b"trusted.a"), Err(libc::ENOTSUP));
    assert_eq!(xattr::stored_name(b"security.selinux"), Err(libc::ENOTSUP));
    assert_eq!(
        xattr::stored_name(b"com.apple.FinderInfo"),
        Err(libc::ENOTSUP)
    );
    assert_eq!(xattr::stored_name(b"user.\xff"), Err(libc::ENOTSUP));
    assert_eq!(xattr::visible_name("user.a"), Some("user.a"));
}

#[test]
fn xattr_set_flags_decode_and_unknown_ones_are_refused() {
    use xattr::SetMode;
    assert_eq!(xattr::set_mode(0, 0), Ok(SetMode::Any));
    assert_eq!(xattr::set_mode(libc::XATTR_CREATE, 0), Ok(SetMode::Create));
    assert_eq!(
        xattr::set_mode(libc::XATTR_REPLACE, 0),
        Ok(SetMode::Replace)
    );
    assert_eq!(
        xattr::set_mode(libc::XATTR_CREATE | libc::XATTR_REPLACE, 0),
        Err(libc::EINVAL)
    );
    assert_eq!(xattr::set_mode(0x100, 0), Err(libc::EINVAL));
    assert_eq!(
        SetMode::Create.backing_flags(),
        rustix::fs::XattrFlags::CREATE
    );
    assert_eq!(
        SetMode::Replace.backing_flags(),
        rustix::fs::XattrFlags::REPLACE
    );
    assert!(SetMode::Any.backing_flags().is_empty());

    // The backing store honours them.
    let f = tempfile::tempfile().expect("file");
    let set = |m: SetMode| rustix::fs::fsetxattr(&f, "user.t", b"v", m.backing_flags());
    assert_eq!(set(SetMode::Replace), Err(rustix::io::Errno::NODATA));
    set(SetMode::Create).expect("create");
    assert_eq!(set(SetMode::Create), Err(rustix::io::Errno::EXIST));
    set(SetMode::Replace).expect("replace");
    set(SetMode::Any).expect("any");
}
