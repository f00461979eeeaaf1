//! POSIX corners through a real mount: plaintext paths up to PATH_MAX-1
//! bytes at any depth for every operation, the sticky bit on files that are
//! not directories, no writeback error after names change under dirty or
//! open files, and sizes past the limit answered with EFBIG.

#[macro_use]
mod common;

use common::*;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

/// A relative path of exactly `len` bytes made of `name_len`-byte names
/// (the last one shorter to fit), as its components.
fn components(len: usize, name_len: usize, tag: u8) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut used = 0;
    while used < len {
        let sep = usize::from(!out.is_empty());
        let room = len - used - sep;
        // Never leave a remainder too short for a separator and a name.
        let n = if room > name_len && room - name_len < 2 {
            name_len - 1
        } else {
            room.min(name_len)
        };
        let mut name = vec![b'a' + (out.len() % 26) as u8; n];
        name[0] = tag;
        out.push(OsString::from_vec(name));
        used += sep + n;
    }
    out
}

fn join(parts: &[OsString]) -> OsString {
    let mut s = OsString::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push("/");
        }
        s.push(p);
    }
    s
}

fn open_dir(p: &Path) -> OwnedFd {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open dir")
}

fn err_of(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

/// Every operation at the bottom of a tree whose plaintext path is
/// PATH_MAX-1 bytes, relative to a disk directory, then one byte more.
fn deep_tree_ops(preset: &str, name_len: usize) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let base = open_dir(&f.disk("data"));
    let parts = components(4095, name_len, b'd');
    let (dirs, leaf) = parts.split_at(parts.len() - 1);
    for i in 1..=dirs.len() {
        rustix::fs::mkdirat(
            &base,
            join(&dirs[..i]).as_os_str(),
            Mode::from_raw_mode(0o755),
        )
        .unwrap_or_else(|e| panic!("mkdir at depth {i}: {e}"));
    }
    let full = join(&parts);
    assert_eq!(full.len(), 4095);
    let dirpath = join(dirs);
    // A sibling leaf of the same length, for link and rename.
    let mut other = leaf[0].clone().into_vec();
    other[0] = b'o';
    let other = OsString::from_vec(other);
    let sibling = join(&[dirs.to_vec(), vec![other.clone()]].concat());
    assert_eq!(sibling.len(), 4095);

    // create, write, read, stat
    let fd = rustix::fs::openat(
        &base,
        full.as_os_str(),
        OFlags::CREATE | OFlags::RDWR | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .expect("create at PATH_MAX-1");
    let payload = pattern(7, 10_000);
    rustix::io::pwrite(&fd, &payload, 0).expect("write");
    rustix::fs::fsync(&fd).expect("fsync");
    drop(fd);
    let st = rustix::fs::statat(&base, full.as_os_str(), AtFlags::empty()).expect("stat");
    assert_eq!(st.st_size, 10_000);
    assert_eq!(st.st_mode & 0o7777, 0o640);
    // chmod, chown, utimens, truncate
    rustix::fs::chmodat(
        &base,
        full.as_os_str(),
        Mode::from_raw_mode(0o600),
        AtFlags::empty(),
    )
    .expect("chmod");
    rustix::fs::chownat(
        &base,
        full.as_os_str(),
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(5678)),
        AtFlags::empty(),
    )
    .expect("chown");
    let fd = rustix::fs::openat(
        &base,
        full.as_os_str(),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open");
    rustix::fs::ftruncate(&fd, 5000).expect("truncate");
    drop(fd);
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 2_000_000,
            tv_nsec: 5,
        },
    };
    rustix::fs::utimensat(&base, full.as_os_str(), &ts, AtFlags::empty()).expect("utimens");
    let st = rustix::fs::statat(&base, full.as_os_str(), AtFlags::empty()).expect("stat");
    assert_eq!(
        (
            st.st_size,
            st.st_mode & 0o7777,
            st.st_uid,
            st.st_gid,
            st.st_mtime
        ),
        (5000, 0o600, 1234, 5678, 2_000_000)
    );
    // link, rename both ways (deep -> shallow -> deep), unlink
    rustix::fs::linkat(
        &base,
        full.as_os_str(),
        &base,
        sibling.as_os_str(),
        AtFlags::empty(),
    )
    .expect("link");
    assert_eq!(
        rustix::fs::statat(&base, full.as_os_str(), AtFlags::empty())
            .expect("stat")
            .st_nlink,
        2
    );
    rustix::fs::unlinkat(&base, sibling.as_os_str(), AtFlags::empty()).expect("unlink link");
    rustix::fs::renameat(&base, full.as_os_str(), &base, "shallow").expect("rename up");
    rustix::fs::renameat(&base, "shallow", &base, full.as_os_str()).expect("rename down");
    let fd = rustix::fs::openat(
        &base,
        full.as_os_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open");
    let mut got = vec![0u8; 5000];
    assert_eq!(rustix::io::pread(&fd, &mut got, 0).expect("read"), 5000);
    assert_bytes_eq(&got, &payload[..5000], "deep file after renames");
    drop(fd);
    // symlink, fifo, device node, a directory: each at PATH_MAX-1
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::empty()).expect("unlink");
    rustix::fs::symlinkat("some/target", &base, full.as_os_str()).expect("symlink");
    assert_eq!(
        rustix::fs::readlinkat(&base, full.as_os_str(), Vec::new())
            .expect("readlink")
            .as_bytes(),
        b"some/target"
    );
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::empty()).expect("unlink symlink");
    strata::platform::mknodat(
        base.as_fd(),
        full.as_os_str(),
        rustix::fs::FileType::Fifo,
        0o644,
        0,
    )
    .expect("mkfifo");
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::empty()).expect("unlink fifo");
    strata::platform::mknodat(
        base.as_fd(),
        full.as_os_str(),
        rustix::fs::FileType::CharacterDevice,
        0o600,
        strata::platform::makedev(1, 3),
    )
    .expect("mknod");
    let st = rustix::fs::statat(&base, full.as_os_str(), AtFlags::empty()).expect("stat");
    assert_eq!(st.st_rdev, rustix::fs::makedev(1, 3));
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::empty()).expect("unlink node");
    rustix::fs::mkdirat(&base, full.as_os_str(), Mode::from_raw_mode(0o700)).expect("mkdir leaf");
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::REMOVEDIR).expect("rmdir leaf");

    // One byte more is ENAMETOOLONG, for a path and for a name.
    let mut long = full.clone();
    long.push("x");
    assert_eq!(
        rustix::fs::openat(
            &base,
            long.as_os_str(),
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600)
        )
        .map(drop)
        .map_err(err_of),
        Err(libc::ENAMETOOLONG)
    );
    let long_name = format!("{}/{}", dirpath.to_string_lossy(), "n".repeat(256));
    assert_eq!(
        rustix::fs::mkdirat(&base, long_name.as_str(), Mode::from_raw_mode(0o700)).map_err(err_of),
        Err(libc::ENAMETOOLONG)
    );

    // The tree survives a remount, and comes down again.
    let fd = rustix::fs::openat(
        &base,
        full.as_os_str(),
        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .expect("create again");
    rustix::io::pwrite(&fd, b"kept", 0).expect("write");
    drop(fd);
    drop(base);
    m.unmount();
    let m = f.mount();
    let base = open_dir(&f.disk("data"));
    let fd = rustix::fs::openat(
        &base,
        full.as_os_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open after remount");
    let mut got = [0u8; 8];
    assert_eq!(rustix::io::pread(&fd, &mut got, 0).expect("read"), 4);
    assert_eq!(&got[..4], b"kept");
    drop(fd);
    rustix::fs::unlinkat(&base, full.as_os_str(), AtFlags::empty()).expect("unlink");
    for i in (1..=dirs.len()).rev() {
        rustix::fs::unlinkat(&base, join(&dirs[..i]).as_os_str(), AtFlags::REMOVEDIR)
            .unwrap_or_else(|e| panic!("rmdir at depth {i}: {e}"));
    }
    drop(base);
    m.unmount();
}

#[test]
fn path_max_minus_one_with_127_byte_names_general() {
    deep_tree_ops("general", 127);
}

#[test]
fn path_max_minus_one_with_255_byte_names_max() {
    deep_tree_ops("max", 255);
}

#[test]
fn path_max_minus_one_with_short_names_os_policy() {
    // 2-byte names: 1365 levels deep.
    deep_tree_ops("os-policy", 2);
}

/// `chmod 01621` on a regular file, a FIFO, a socket and a device node
/// stores and reports 01621, also through a symlink, and a sticky regular
/// file stays a regular file everywhere (stat, readdir, open).
fn sticky_bit_on_non_directories(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let file = d.join("file");
    fs::write(&file, b"contents").expect("write");
    let fifo = d.join("fifo");
    mkfifo(&fifo, 0o644).expect("mkfifo");
    let sock = d.join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind socket");
    let dev = d.join("dev");
    strata::platform::mknodat(
        File::open(&d).expect("open dir").as_fd(),
        std::ffi::OsStr::new("dev"),
        rustix::fs::FileType::CharacterDevice,
        0o600,
        strata::platform::makedev(1, 5),
    )
    .expect("mknod");
    let via = d.join("via-link");
    std::os::unix::fs::symlink("file", &via).expect("symlink");
    for p in [&fifo, &sock, &dev] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o1621)).expect("chmod");
    }
    // Through the symlink: the file gets the mode, the link stays a link.
    fs::set_permissions(&via, fs::Permissions::from_mode(0o1621)).expect("chmod via symlink");
    let check = |when: &str| {
        for p in [&file, &fifo, &sock, &dev] {
            let mode = fs::symlink_metadata(p).expect("lstat").mode() & 0o7777;
            assert_eq!(mode, 0o1621, "{} {when}", p.display());
        }
        let meta = fs::symlink_metadata(&file).expect("lstat");
        assert!(meta.file_type().is_file(), "{when}");
        assert!(fs::symlink_metadata(&fifo)
            .expect("lstat")
            .file_type()
            .is_fifo());
        assert!(fs::symlink_metadata(&sock)
            .expect("lstat")
            .file_type()
            .is_socket());
        assert!(fs::symlink_metadata(&dev)
            .expect("lstat")
            .file_type()
            .is_char_device());
        assert!(fs::symlink_metadata(&via)
            .expect("lstat")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_link(&via).expect("readlink"), Path::new("file"));
        let kinds: Vec<(String, bool, bool)> = fs::read_dir(&d)
            .expect("readdir")
            .map(|e| {
                let e = e.expect("entry");
                let t = e.file_type().expect("type");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    t.is_file(),
                    t.is_symlink(),
                )
            })
            .collect();
        assert!(
            kinds.contains(&("file".into(), true, false)),
            "{kinds:?} {when}"
        );
        assert!(
            kinds.contains(&("via-link".into(), false, true)),
            "{kinds:?} {when}"
        );
    };
    check("after chmod");
    // A sticky regular file still reads, writes and grows as one.
    fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open")
        .write_all(b"+more")
        .expect("append");
    assert_eq!(fs::read(&file).expect("read"), b"contents+more");
    drop(listener);
    m.unmount();
    let m = f.mount();
    check("after remount");
    assert_eq!(fs::read(&file).expect("read"), b"contents+more");
    // Clearing the bit again gives back a plain mode.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(fs::metadata(&file).expect("stat").mode() & 0o7777, 0o644);
    m.unmount();
}

fn syncfs(dir: &Path) -> std::io::Result<()> {
    let d = File::open(dir)?;
    strata::platform::sync_filesystem(d.as_fd())?;
    Ok(())
}

/// Dirty data and times of files whose names are renamed away, replaced or
/// unlinked while open reach the store, and `syncfs` afterwards reports no
/// writeback error (an ENOENT there is kept by the kernel for the whole
/// mount).
fn renames_and_unlinks_under_dirty_files_leave_no_writeback_error(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    for round in 0..20 {
        let dir = d.join(format!("dir{round}"));
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let a = dir.join("sub").join("a");
        let mut fa = File::create(&a).expect("create");
        fa.write_all(&pattern(round, 9000)).expect("write");
        // The file's directory moves while the file is dirty.
        let moved = d.join(format!("moved{round}"));
        fs::rename(&dir, &moved).expect("rename dir");
        fa.write_all(b"tail").expect("write after move");
        // Replaced by a rename over it while open and dirty.
        let b = moved.join("sub").join("b");
        fs::write(&b, b"other").expect("write b");
        fs::rename(&b, moved.join("sub").join("a")).expect("rename over");
        fa.write_all(b"more").expect("write after replace");
        drop(fa);
        // Unlinked while open and dirty, then closed.
        let c = moved.join("c");
        let mut fc = File::create(&c).expect("create c");
        fc.write_all(&pattern(99, 5000)).expect("write c");
        fs::remove_file(&c).expect("unlink c");
        fc.write_all(b"after unlink").expect("write unlinked");
        fc.sync_all().expect("fsync unlinked");
        drop(fc);
        // Times set, then the name goes.
        let t = moved.join("t");
        fs::write(&t, b"t").expect("write t");
        File::options()
            .write(true)
            .open(&t)
            .expect("open")
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("set mtime");
        fs::remove_file(&t).expect("unlink t");
        if round % 2 == 0 {
            fs::remove_dir_all(&moved).expect("rm -r");
        }
    }
    syncfs(&d).expect("syncfs after renames and unlinks");
    assert!(
        !f.all_logs().contains("ENOENT"),
        "no operation went to a stale name"
    );
    m.unmount();
}

/// stress-ng's inotify and io stressors, run with their working directory
/// inside the mount, leave `syncfs` of the mount clean.
#[test]
fn stress_ng_create_rename_delete_mix_then_syncfs_is_clean() {
    let f = Fixture::new("general");
    let m = f.mount();
    let d = f.disk("data");
    for stressor in [["--inotify", "1"], ["--io", "1"], ["--rename", "1"]] {
        let work = d.join(stressor[0].trim_start_matches('-'));
        fs::create_dir(&work).expect("mkdir");
        let mut cmd = std::process::Command::new("stress-ng");
        cmd.args(stressor)
            .args(["--temp-path", "."])
            .args(["-t", "3"])
            .current_dir(&work);
        let out = run_for(&mut cmd, std::time::Duration::from_secs(60));
        assert_ok(&out, "stress-ng");
        syncfs(&d).unwrap_or_else(|e| panic!("syncfs after stress-ng {}: {e}", stressor[0]));
    }
    m.unmount();
}

fn efbig<T: std::fmt::Debug, E: Into<std::io::Error>>(r: Result<T, E>, what: &str) {
    match r.map_err(Into::into) {
        Err(e) if e.raw_os_error() == Some(libc::EFBIG) => {}
        other => panic!("{what}: expected EFBIG, got {other:?}"),
    }
}

/// fallocate, truncate and copy_file_range at offsets past the largest
/// size strata can store answer EFBIG and change nothing. (A plain write()
/// there is taken by the kernel's page cache, which strata uses as a
/// writeback cache, and refused when flushed: fsync and close report EFBIG;
/// README says so.)
fn sizes_past_the_limit_are_efbig(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let p = f.disk("data").join("big");
    fs::write(&p, b"small").expect("write");
    let file = File::options()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    let far = 1u64 << 62;
    efbig(
        strata::platform::preallocate(&file, far, far + 4096, false),
        "fallocate at 2^62",
    );
    efbig(
        strata::platform::preallocate(&file, far, far + 4096, true),
        "fallocate KEEP_SIZE at 2^62",
    );
    efbig(rustix::fs::ftruncate(&file, far), "truncate to 2^62");
    let src = f.disk("data").join("src");
    fs::write(&src, b"0123456789").expect("write src");
    let s = File::open(&src).expect("open src");
    let mut off_in = 0u64;
    let mut off_out = far;
    efbig(
        strata::platform::copy_file_range(&s, &mut off_in, &file, &mut off_out, 10),
        "copy_file_range to 2^62",
    );
    assert_eq!(fs::metadata(&p).expect("stat").len(), 5, "size unchanged");
    drop(s);
    drop(file);
    m.unmount();
    let m = f.mount();
    assert_eq!(fs::read(&p).expect("read"), b"small");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 5);
    m.unmount();
}

per_preset!(
    sticky_bit_on_non_directories,
    renames_and_unlinks_under_dirty_files_leave_no_writeback_error,
    sizes_past_the_limit_are_efbig,
);
