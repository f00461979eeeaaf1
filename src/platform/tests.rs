//! The platform API held to what its documentation promises, through the
//! public functions only, so that the same tests hold on every system
//! strata runs on (what only one system promises is tested in that
//! system's own tests). Real files, directories, sockets and the mount
//! table of the machine that runs them.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use rustix::fs::FileType;

use crate::platform::{self, errno, xattr, Allocated, Rename, Unmount, UnmountError};

fn dir_fd(d: &tempfile::TempDir) -> File {
    File::open(d.path()).expect("open dir")
}

fn raw(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ------------------------------------------------------------- renames

#[test]
fn one_fuse_rename_flag_each_means_no_replace_and_exchange_and_the_rest_is_refused() {
    assert_eq!(Rename::from_fuse_flags(0), Ok(Rename::Replace));
    let (mut no_replace, mut exchange) = (Vec::new(), Vec::new());
    for bit in 0..32 {
        let flag = 1u32 << bit;
        match Rename::from_fuse_flags(flag) {
            Ok(Rename::NoReplace) => no_replace.push(flag),
            Ok(Rename::Exchange) => exchange.push(flag),
            Ok(Rename::Replace) => panic!("flag {flag:#x} was dropped"),
            Err(e) => assert_eq!(e, errno::EINVAL, "flag {flag:#x}"),
        }
    }
    assert_eq!((no_replace.len(), exchange.len()), (1, 1));
    // Both at once are contradictory, and any extra bit is refused.
    assert_eq!(
        Rename::from_fuse_flags(no_replace[0] | exchange[0]),
        Err(errno::EINVAL)
    );
    assert_eq!(
        Rename::from_fuse_flags(no_replace[0] | 1 << 31),
        Err(errno::EINVAL)
    );
    assert_eq!(Rename::from_fuse_flags(u32::MAX), Err(errno::EINVAL));
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
    assert_eq!(raw(&e), Some(errno::EEXIST));
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"A");
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"B");

    platform::renameat(fd.as_fd(), a, fd.as_fd(), b, Rename::Exchange).expect("exchange");
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"B");
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"A");

    // An exchange needs both names: never a plain rename instead.
    let e = platform::renameat(fd.as_fd(), a, fd.as_fd(), OsStr::new("c"), Rename::Exchange)
        .expect_err("exchange with a missing name");
    assert_eq!(raw(&e), Some(errno::ENOENT));
    assert!(d.path().join("a").exists());
    assert!(!d.path().join("c").exists());

    platform::renameat(fd.as_fd(), a, fd.as_fd(), b, Rename::Replace).expect("replace");
    assert!(!d.path().join("a").exists());
    assert_eq!(std::fs::read(d.path().join("b")).expect("b"), b"B");

    platform::renameat(fd.as_fd(), b, fd.as_fd(), a, Rename::NoReplace).expect("no-replace");
    assert_eq!(std::fs::read(d.path().join("a")).expect("a"), b"B");
    assert!(!d.path().join("b").exists());
}

#[test]
fn renameat_moves_between_directories_and_exchanges_a_file_with_a_directory() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(d.path().join("x")).expect("x");
    std::fs::create_dir(d.path().join("y")).expect("y");
    std::fs::write(d.path().join("x/f"), b"F").expect("f");
    std::fs::create_dir(d.path().join("y/sub")).expect("sub");
    let x = File::open(d.path().join("x")).expect("open x");
    let y = File::open(d.path().join("y")).expect("open y");

    platform::renameat(
        x.as_fd(),
        OsStr::new("f"),
        y.as_fd(),
        OsStr::new("sub"),
        Rename::Exchange,
    )
    .expect("exchange across directories");
    assert!(d.path().join("x/f").is_dir());
    assert_eq!(std::fs::read(d.path().join("y/sub")).expect("sub"), b"F");

    platform::renameat(
        y.as_fd(),
        OsStr::new("sub"),
        x.as_fd(),
        OsStr::new("g"),
        Rename::NoReplace,
    )
    .expect("move");
    assert_eq!(std::fs::read(d.path().join("x/g")).expect("g"), b"F");
}

// ------------------------------------------------------- special files

#[test]
fn mknodat_makes_a_fifo_with_its_mode_and_refuses_an_existing_name() {
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    platform::mknodat(fd.as_fd(), OsStr::new("p"), FileType::Fifo, 0o640, 0).expect("fifo");
    let m = std::fs::symlink_metadata(d.path().join("p")).expect("p");
    assert!(m.file_type().is_fifo());
    // The umask may take bits away, never add any.
    assert_eq!(m.permissions().mode() & 0o7777 & !0o640, 0);
    let e = platform::mknodat(fd.as_fd(), OsStr::new("p"), FileType::Fifo, 0o600, 0)
        .expect_err("exists");
    assert_eq!(raw(&e), Some(errno::EEXIST));
}

#[test]
fn mknodat_makes_a_character_device_with_the_number_makedev_gives() {
    assert!(
        is_root(),
        "device nodes need root (the test suite runs as root)"
    );
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    let dev = platform::makedev(1, 3);
    platform::mknodat(
        fd.as_fd(),
        OsStr::new("null"),
        FileType::CharacterDevice,
        0o600,
        dev,
    )
    .expect("mknod");
    let st = rustix::fs::lstat(d.path().join("null")).expect("stat");
    assert_eq!(
        FileType::from_raw_mode(st.st_mode),
        FileType::CharacterDevice
    );
    assert_eq!(
        (
            rustix::fs::major(st.st_rdev as _),
            rustix::fs::minor(st.st_rdev as _)
        ),
        (1, 3)
    );
    // Distinct numbers stay distinct.
    assert_ne!(platform::makedev(1, 3), platform::makedev(3, 1));
    assert_ne!(platform::makedev(1, 3), platform::makedev(1, 5));
}

#[test]
fn chmod_nofollow_sets_every_mode_bit_and_refuses_a_symlink_leaving_its_target_alone() {
    let d = tempfile::tempdir().expect("tmp");
    let fd = dir_fd(&d);
    std::fs::write(d.path().join("f"), b"x").expect("f");
    platform::chmod_nofollow(fd.as_fd(), OsStr::new("f"), 0o2751).expect("chmod file");
    let mode = |n: &str| {
        std::fs::symlink_metadata(d.path().join(n))
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("f"), 0o2751);

    platform::mknodat(fd.as_fd(), OsStr::new("p"), FileType::Fifo, 0o600, 0).expect("fifo");
    platform::chmod_nofollow(fd.as_fd(), OsStr::new("p"), 0o604).expect("chmod fifo");
    assert_eq!(mode("p"), 0o604);

    std::os::unix::fs::symlink("f", d.path().join("l")).expect("symlink");
    let e = platform::chmod_nofollow(fd.as_fd(), OsStr::new("l"), 0o600).expect_err("symlink");
    assert_eq!(raw(&e), Some(errno::ELOOP));
    assert_eq!(mode("f"), 0o2751, "the target kept its mode");

    let e = platform::chmod_nofollow(fd.as_fd(), OsStr::new("gone"), 0o600).expect_err("gone");
    assert_eq!(raw(&e), Some(errno::ENOENT));
}

#[test]
fn mode_of_a_stat_has_the_type_and_every_permission_bit() {
    let d = tempfile::tempdir().expect("tmp");
    let f = d.path().join("f");
    std::fs::write(&f, b"").expect("f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o1644)).expect("chmod");
    let st = rustix::fs::stat(&f).expect("stat");
    let m = platform::mode::of(&st);
    assert_eq!(m & platform::mode::S_IFMT, platform::mode::S_IFREG);
    assert_eq!(m & 0o7777, 0o1644);
    assert_ne!(m & platform::mode::S_ISVTX, 0);
    assert_eq!(m & platform::mode::S_ISGID, 0);
    let st = rustix::fs::stat(d.path()).expect("stat dir");
    assert_ne!(
        platform::mode::of(&st) & platform::mode::S_IFMT,
        platform::mode::S_IFREG
    );
}

// ---------------------------------------------------------- durability

#[test]
fn syncs_of_files_directories_and_filesystems_succeed_and_a_pipe_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    let mut f = File::create(d.path().join("f")).expect("f");
    f.write_all(b"durable").expect("write");
    platform::sync_data(&f).expect("data");
    platform::sync_all(&f).expect("all");
    let dir = dir_fd(&d);
    platform::sync_all(&dir).expect("directory");
    platform::sync_filesystem(dir.as_fd()).expect("filesystem");
    assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"durable");
    // Nothing durable behind a pipe: an error, never a silent success.
    let (r, _w) = std::io::pipe().expect("pipe");
    assert!(platform::sync_data(&r).is_err());
    assert!(platform::sync_all(&r).is_err());
}

// --------------------------------------------------------- allocation

const MIB: u64 = 1 << 20;

#[test]
fn preallocate_keeps_the_size_or_grows_the_file_to_the_end_and_never_shrinks_it() {
    let d = tempfile::tempdir().expect("tmp");
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(d.path().join("f"))
        .expect("f");
    let len = || f.metadata().expect("meta").len();

    assert_eq!(
        platform::preallocate(&f, 0, MIB, true).expect("keep size"),
        Allocated::Reserved
    );
    assert_eq!(len(), 0, "keep_size leaves the size alone");

    assert_eq!(
        platform::preallocate(&f, 0, 2 * MIB, false).expect("grow"),
        Allocated::Reserved
    );
    assert_eq!(len(), 2 * MIB, "the size reaches the end");

    // A range inside the file never shrinks it, and an empty range asks
    // nothing at all.
    platform::preallocate(&f, 2 * MIB, 2 * MIB, false).expect("empty");
    platform::preallocate(&f, 5 * MIB, 3 * MIB, false).expect("reversed");
    assert_eq!(len(), 2 * MIB);
    platform::preallocate(&f, 2 * MIB, 3 * MIB, true).expect("keep size past the end");
    assert_eq!(len(), 2 * MIB);

    // What is written in the reserved range reads back.
    f.write_all_at(b"end", 2 * MIB - 3).expect("write");
    let mut back = [0u8; 3];
    f.read_exact_at(&mut back, 2 * MIB - 3).expect("read");
    assert_eq!(&back, b"end");
}

#[test]
fn preallocate_after_a_gap_either_reserves_and_sizes_or_changes_nothing() {
    let d = tempfile::tempdir().expect("tmp");
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(d.path().join("f"))
        .expect("f");
    f.write_all_at(b"head", 0).expect("write");
    match platform::preallocate(&f, 8 * MIB, 9 * MIB, false).expect("past a gap") {
        Allocated::Reserved => assert_eq!(f.metadata().expect("meta").len(), 9 * MIB),
        Allocated::Unsupported => assert_eq!(f.metadata().expect("meta").len(), 4),
    }
}

#[test]
fn preallocate_on_a_read_only_descriptor_is_an_error() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("f"), b"").expect("f");
    let f = File::open(d.path().join("f")).expect("open");
    let e = platform::preallocate(&f, 0, MIB, false).expect_err("read-only");
    assert_eq!(raw(&e), Some(errno::EBADF));
    assert_eq!(f.metadata().expect("meta").len(), 0);
}

#[test]
fn fuse_fallocate_mode_zero_grows_and_unknown_modes_are_refused() {
    assert_eq!(platform::fallocate_keeps_size(0), Some(false));
    for bit in 4..31 {
        assert_eq!(platform::fallocate_keeps_size(1 << bit), None, "bit {bit}");
    }
    assert_eq!(platform::fallocate_keeps_size(-1), None);
}

// ---------------------------------------------------------------- copies

fn pattern(n: u32) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn copy_file_copies_the_whole_file_wherever_its_offset_stands_into_a_writable_new_file() {
    let d = tempfile::tempdir().expect("tmp");
    let data = pattern(300_000);
    std::fs::write(d.path().join("src"), &data).expect("src");
    let dir = dir_fd(&d);
    let mut src = File::open(d.path().join("src")).expect("open");
    // A source already read half-way is still copied from its start.
    src.seek(std::io::SeekFrom::Start(100_000)).expect("seek");
    let (mut copy, cloned) =
        platform::copy_file(&mut src, dir.as_fd(), OsStr::new("dst")).expect("copy");
    assert_eq!(std::fs::read(d.path().join("dst")).expect("dst"), data);
    if !cloned {
        // A byte copy is created private; its mode is the caller's to set.
        let mode = std::fs::metadata(d.path().join("dst"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }

    // The returned file is open for reading and writing, and changing the
    // copy leaves the source alone.
    copy.rewind().expect("rewind");
    let mut back = Vec::new();
    copy.read_to_end(&mut back).expect("read copy");
    assert_eq!(back, data);
    copy.write_all_at(b"changed", 0).expect("write copy");
    assert_eq!(
        &std::fs::read(d.path().join("dst")).expect("dst")[..7],
        b"changed"
    );
    assert_eq!(std::fs::read(d.path().join("src")).expect("src"), data);
}

#[test]
fn copy_file_refuses_an_existing_name_and_leaves_it_as_it_was() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("src"), b"new").expect("src");
    std::fs::write(d.path().join("dst"), b"old").expect("dst");
    let dir = dir_fd(&d);
    let mut src = File::open(d.path().join("src")).expect("open");
    let e = platform::copy_file(&mut src, dir.as_fd(), OsStr::new("dst")).expect_err("exists");
    assert_eq!(raw(&e), Some(errno::EEXIST));
    assert_eq!(std::fs::read(d.path().join("dst")).expect("dst"), b"old");
}

#[test]
fn copy_file_that_fails_leaves_no_file_behind() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("src"), pattern(10_000)).expect("src");
    let dir = dir_fd(&d);
    // A source that cannot be read.
    let mut src = File::options()
        .write(true)
        .open(d.path().join("src"))
        .expect("open");
    platform::copy_file(&mut src, dir.as_fd(), OsStr::new("dst")).expect_err("unreadable");
    assert!(!d.path().join("dst").exists());
}

// --------------------------------------------------------------- sockets

#[test]
fn peer_uid_names_the_user_at_the_other_end_and_refuses_what_is_not_a_socket() {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(platform::peer_uid(a.as_fd()).expect("peer"), me);
    assert_eq!(platform::peer_uid(b.as_fd()).expect("peer"), me);

    // The control socket's way: a listener and a connection.
    let d = tempfile::tempdir().expect("tmp");
    let path = d.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let _client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    let (conn, _) = listener.accept().expect("accept");
    assert_eq!(platform::peer_uid(conn.as_fd()).expect("peer"), me);

    let f = tempfile::tempfile().expect("file");
    assert!(platform::peer_uid(f.as_fd()).is_err(), "not a socket");
}

// ---------------------------------------------------------------- mounts

#[test]
fn the_mount_table_has_the_root_and_not_a_fresh_directory() {
    let all = platform::mounts();
    assert!(all.iter().any(|m| m.point == Path::new("/")), "{all:?}");
    assert!(platform::is_mountpoint(Path::new("/")));
    let d = tempfile::tempdir().expect("tmp");
    let canon = d.path().canonicalize().expect("canon");
    assert!(!platform::is_mountpoint(&canon));
}

#[test]
fn unmounting_what_is_not_mounted_says_so() {
    let d = tempfile::tempdir().expect("tmp");
    let canon = d.path().canonicalize().expect("canon");
    let r = platform::unmount(&canon, Unmount::Plain);
    match r {
        Err(UnmountError::NotMounted) => {}
        // Linux without root asks fusermount3, which says it in words.
        Err(UnmountError::Helper(_)) if !is_root() => {}
        other => panic!("{other:?}"),
    }
    let r = platform::unmount(&canon.join("gone"), Unmount::Dead);
    match r {
        Err(UnmountError::NoSuchPath) => {}
        Err(UnmountError::Helper(_)) if !is_root() => {}
        other => panic!("{other:?}"),
    }
    assert!(canon.is_dir(), "the directory is left alone");
}

#[test]
fn the_open_file_ceiling_is_one_the_system_lets_a_process_raise_itself_to() {
    for hard in [64u64, 4096, 1 << 20] {
        let c = platform::open_files_ceiling(Some(hard)).expect("a ceiling under a hard limit");
        assert!(c <= hard && c >= hard.min(4096), "{hard} -> {c}");
    }
    // Really raising this process's soft limit there works.
    use rustix::process::{getrlimit, setrlimit, Resource};
    let before = getrlimit(Resource::Nofile);
    if let Some(c) = platform::open_files_ceiling(before.maximum) {
        let mut raised = before;
        raised.current = Some(c);
        setrlimit(Resource::Nofile, raised).expect("raise to the ceiling");
        assert_eq!(getrlimit(Resource::Nofile).current, Some(c));
        setrlimit(Resource::Nofile, before).expect("restore");
    }
}

// ------------------------------------------------------------ the mount

#[test]
fn serving_refuses_zero_threads_and_gives_each_of_several_its_descriptor() {
    assert!(platform::serving(Some(0)).is_err());
    let one = platform::serving(Some(1)).expect("one");
    assert_eq!((one.threads, one.clone_fd), (1, false));
    let default = platform::serving(None).expect("default");
    assert!(default.threads >= 1);
    assert_eq!(default.clone_fd, default.threads > 1);
}

#[test]
fn mount_options_name_the_store_as_the_source() {
    let o = platform::mount_options(Path::new("/srv/store"));
    assert_eq!(
        o.first(),
        Some(&fuser::MountOption::FSName("strata:/srv/store".into()))
    );
}

// -------------------------------------------------------------- xattrs

#[test]
fn every_stored_xattr_name_is_user_and_shows_again_as_the_name_given() {
    let long = format!("user.{}", "n".repeat(240));
    let names: [&[u8]; 8] = [
        b"user.a",
        b"user.user.a",
        b"user.com.apple.FinderInfo",
        long.as_bytes(),
        b"com.apple.FinderInfo",
        b"com.apple.quarantine",
        b"org.example.tag",
        "user.caf\u{e9}".as_bytes(),
    ];
    let mut stored_names = std::collections::HashSet::new();
    for name in names {
        let shown = String::from_utf8_lossy(name);
        match xattr::stored_name(name) {
            Ok(stored) => {
                assert!(
                    stored.starts_with("user.") && stored.len() > "user.".len(),
                    "{shown} -> {stored}"
                );
                assert_eq!(
                    xattr::visible_name(&stored).map(str::as_bytes),
                    Some(name),
                    "{shown} round trip"
                );
                assert!(stored_names.insert(stored), "{shown} collides");
            }
            Err(e) => {
                assert!(
                    [errno::ENOTSUP, errno::EINVAL, errno::EPERM].contains(&e),
                    "{shown}: {e}"
                );
                // On macOS no name may be ENOTSUP: the kernel would keep the
                // attribute in an AppleDouble file instead.
                assert!(platform::SYSTEM != "macOS" || e != errno::ENOTSUP);
            }
        }
    }
    // Every `user.` name is stored on every system.
    for name in [
        &b"user.a"[..],
        long.as_bytes(),
        b"user.com.apple.FinderInfo",
    ] {
        assert!(xattr::stored_name(name).is_ok());
    }
    // Names that are not text, or empty, are never stored.
    assert!(xattr::stored_name(b"user.\xff").is_err());
    assert!(xattr::stored_name(b"").is_err());
}

#[test]
fn xattr_set_flags_map_to_the_backing_stores_and_unknown_ones_are_refused() {
    use xattr::SetMode;
    assert_eq!(xattr::set_mode(0, 0), Ok(SetMode::Any));
    assert_eq!(xattr::set_mode(libc::XATTR_CREATE, 0), Ok(SetMode::Create));
    assert_eq!(
        xattr::set_mode(libc::XATTR_REPLACE, 0),
        Ok(SetMode::Replace)
    );
    assert_eq!(
        xattr::set_mode(libc::XATTR_CREATE | libc::XATTR_REPLACE, 0),
        Err(errno::EINVAL)
    );
    assert_eq!(xattr::set_mode(1 << 30, 0), Err(errno::EINVAL));
    assert_eq!(
        xattr::set_mode(libc::XATTR_CREATE | 1 << 30, 0),
        Err(errno::EINVAL)
    );

    // The backing store honours what each mode maps to.
    let f = tempfile::tempfile().expect("file");
    let set = |m: SetMode, v: &[u8]| rustix::fs::fsetxattr(&f, "user.t", v, m.backing_flags());
    assert_eq!(
        set(SetMode::Replace, b"1").map_err(|e| e.raw_os_error()),
        Err(errno::ENOATTR)
    );
    set(SetMode::Create, b"2").expect("create");
    assert_eq!(
        set(SetMode::Create, b"3").map_err(|e| e.raw_os_error()),
        Err(errno::EEXIST)
    );
    set(SetMode::Replace, b"4").expect("replace");
    set(SetMode::Any, b"5").expect("any");
    let mut v = [0u8; 8];
    let n = rustix::fs::fgetxattr(&f, "user.t", &mut v).expect("get");
    assert_eq!(&v[..n], b"5");
}

#[test]
fn a_bundle_version_is_read_from_its_info_plist() {
    let plist = |key: &str, v: &str| {
        format!(
            "<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict>\n\t<key>CFBundleIdentifier</key>\n\t<string>io.macfuse.filesystems.macfuse</string>\n\t<key>{key}</key>\n\t<string>{v}</string>\n</dict></plist>\n"
        )
    };
    assert_eq!(
        platform::bundle_major_version(&plist("CFBundleShortVersionString", "4.10.2")),
        Some(4)
    );
    assert_eq!(
        platform::bundle_major_version(&plist("CFBundleVersion", "5.0.1")),
        Some(5)
    );
    assert_eq!(
        platform::bundle_major_version(&plist("CFBundleShortVersionString", "beta")),
        None
    );
    assert_eq!(platform::bundle_major_version("not a plist"), None);
}
