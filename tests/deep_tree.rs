//! The offline tools on a tree whose plaintext path is PATH_MAX-1 bytes
//! (4095: directories named with 255 and 127 bytes), whose backing path is
//! far longer than PATH_MAX: verify (clean, and a flipped bit deep down
//! reported exactly), scan, inspect --path, online and offline snapshots,
//! restore, an image and a disk made from it, rekey and guest encryption
//! (a snapshot copy and a rekey also killed half-way and run again), each
//! followed by reading the tree back byte for byte through a mount.
//! The test itself reaches deep objects by descriptor (openat chains), as
//! any program must once a path passes PATH_MAX.

#[macro_use]
mod common;

use common::*;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The deep file's name: with `data/` and the directories, the path is
/// exactly 4095 bytes.
const FILE_NAME_LEN: usize = 122;
const CONTENT_LEN: usize = 5 * BLOCK + 321;
const TARGET: &str = "../some/symlink/target";

/// Directory names: two of 255 bytes, 27 of 127 (mixed), as they nest.
fn dir_names() -> Vec<OsString> {
    (0..29u8)
        .map(|i| {
            let len = if i == 3 || i == 17 { 255 } else { 127 };
            let c = b'a' + i % 26;
            OsString::from(String::from_utf8(vec![c; len]).expect("ascii"))
        })
        .collect()
}

fn file_name() -> OsString {
    OsString::from("f".repeat(FILE_NAME_LEN))
}

/// The plaintext path `DISK/dirs…/file` below the mount.
fn plain_path(disk: &str) -> String {
    let mut p = disk.to_string();
    for n in dir_names() {
        p.push('/');
        p.push_str(&n.to_string_lossy());
    }
    p.push('/');
    p.push_str(&file_name().to_string_lossy());
    p
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the deepest directory below `top` by descriptor.
fn deep_dir(top: &Path) -> OwnedFd {
    let mut d = open_dir_at(rfs::CWD, top.as_os_str()).expect("open top");
    for n in dir_names() {
        d = open_dir_at(&d, &n).unwrap_or_else(|e| panic!("openat in {}: {e}", top.display()));
    }
    d
}

fn read_all_at(dir: impl AsFd, name: &OsStr) -> std::io::Result<Vec<u8>> {
    let fd = rfs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out)?;
    Ok(out)
}

/// Builds the tree through the mount at `top` (a disk's directory): the
/// deep file with an xattr and mode 0640, a hard link to it and a symlink.
fn build(top: &Path) {
    let mut d = open_dir_at(rfs::CWD, top.as_os_str()).expect("open disk");
    for n in dir_names() {
        rfs::mkdirat(&d, &n, Mode::from_raw_mode(0o755)).expect("mkdirat");
        d = open_dir_at(&d, &n).expect("openat");
    }
    let fd = rfs::openat(
        &d,
        file_name(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .expect("create the deep file");
    let f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut &f, &pattern(7, CONTENT_LEN)).expect("write");
    rfs::fsetxattr(&f, "user.deep", b"value", rfs::XattrFlags::empty()).expect("xattr");
    rfs::fchmod(&f, Mode::from_raw_mode(0o640)).expect("chmod");
    f.sync_all().expect("fsync");
    rfs::linkat(&d, file_name(), &d, "hard", AtFlags::empty()).expect("link");
    rfs::symlinkat(TARGET, &d, "sym").expect("symlink");
}

/// Reads the tree back through the mount at `top` and checks every byte
/// and attribute.
fn check(top: &Path, what: &str) {
    let d = deep_dir(top);
    assert_bytes_eq(
        &read_all_at(&d, &file_name()).unwrap_or_else(|e| panic!("{what}: read: {e}")),
        &pattern(7, CONTENT_LEN),
        what,
    );
    let st = rfs::statat(&d, file_name(), AtFlags::SYMLINK_NOFOLLOW).expect("stat");
    assert_eq!(st.st_mode & 0o7777, 0o640, "{what}: mode");
    assert_eq!(st.st_nlink, 2, "{what}: link count");
    let hard = rfs::statat(&d, "hard", AtFlags::SYMLINK_NOFOLLOW).expect("stat hard");
    assert_eq!(
        hard.st_ino, st.st_ino,
        "{what}: the hard link is the same file"
    );
    let target = rfs::readlinkat(&d, "sym", Vec::new()).expect("readlink");
    assert_eq!(target.as_bytes(), TARGET.as_bytes(), "{what}: symlink");
    let fd = rfs::openat(
        &d,
        file_name(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open");
    let mut v = [0u8; 64];
    let n = rfs::fgetxattr(&fd, "user.deep", &mut v[..]).expect("getxattr");
    assert_eq!(&v[..n], b"value", "{what}: xattr");
}

/// Mounts, checks the tree under each of `tops` (relative to the
/// mountpoint), unmounts.
fn check_mounted(f: &Fixture, tops: &[&str], what: &str) {
    let m = f.mount();
    for t in tops {
        check(&f.mnt.join(t), &format!("{what}: {t}"));
    }
    m.unmount();
}

fn store(f: &Fixture) -> String {
    f.store.to_string_lossy().into_owned()
}

fn verify(f: &Fixture) -> (i32, Value) {
    let out = f.cli(&["verify", &store(f), "--json"], true);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify JSON: {e}: {}", describe(&out)));
    (out.status.code().unwrap_or(-1), v)
}

/// Runs a strata command (with the vault) that ends itself at its `n`-th
/// crash point, as a kill would.
fn crash_after(f: &Fixture, args: &[&str], n: u32) {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(f.vault_args());
    let mut c = strata(all);
    c.env("STRATA_TEST_CRASH_AFTER", n.to_string());
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(99),
        "killed half-way: {}",
        describe(&out)
    );
}

/// `inspect STORE --path PLAIN`: the backing path.
fn inspect_path(f: &Fixture, plain: &str) -> PathBuf {
    let out = f.cli(&["inspect", &store(f), "--path", plain, "--json"], true);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    PathBuf::from(v["backing"].as_str().expect("backing"))
}

/// Opens a file of the store by its backing path, one name at a time.
fn open_backing(backing: &Path, f: &Fixture) -> std::fs::File {
    let rel = backing.strip_prefix(&f.store).expect("inside the store");
    let comps: Vec<&OsStr> = rel.iter().collect();
    let (name, dirs) = comps.split_last().expect("a file");
    let mut d = open_dir_at(rfs::CWD, f.store.as_os_str()).expect("store");
    for c in dirs {
        d = open_dir_at(&d, c).expect("backing dir");
    }
    std::fs::File::from(
        rfs::openat(&d, *name, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .expect("open backing file"),
    )
}

#[test]
fn offline_tools_work_on_a_tree_at_path_max() {
    require_fuse();
    let f = Fixture::new("general");
    assert_eq!(plain_path("data").len(), 4095);
    {
        let m = f.mount();
        build(&f.disk("data"));
        check(&f.disk("data"), "built");
        m.unmount();
    }

    // verify: clean, every file seen.
    let (code, r) = verify(&f);
    assert_eq!(code, 0, "{r:#}");
    assert!(r["issues"].as_array().expect("issues").is_empty(), "{r:#}");

    // scan reads the whole tree.
    let out = f.cli(
        &["scan", &store(&f), "--needle", "fffffffff", "--json"],
        false,
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("scan JSON");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        s["stats"]
            .as_array()
            .expect("stats")
            .iter()
            .any(|x| x["file"].as_str().is_some_and(|p| p.len() > 4096)),
        "scan reached the deep file: {s:#}"
    );

    // inspect --path maps the 4095-byte plaintext path to its backing file,
    // whose path is far longer than PATH_MAX.
    let plain = plain_path("data");
    let backing = inspect_path(&f, &plain);
    assert!(backing.as_os_str().len() > 4096, "{}", backing.display());

    // inspect of the backing file itself, named from a working directory
    // deep in the store (its absolute path is too long for the kernel):
    // the store, disk and plaintext path are still found.
    {
        let parent = backing.parent().expect("parent");
        let rel = parent.strip_prefix(&f.store).expect("inside the store");
        let mut d = open_dir_at(rfs::CWD, f.store.as_os_str()).expect("store");
        for c in rel {
            d = open_dir_at(&d, c).expect("backing dir");
        }
        // The name goes after `--`: a backing name may begin with `-`.
        let mut args: Vec<&OsStr> = vec![OsStr::new("inspect"), OsStr::new("--json")];
        args.extend(f.vault_args());
        args.extend([OsStr::new("--"), backing.file_name().expect("name")]);
        let mut c = strata(args);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&d);
        // SAFETY: fchdir is async-signal-safe and touches no memory of the
        // parent; the descriptor stays open in the child until exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                if libc::fchdir(raw) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
        assert_eq!(v["disk"], "data", "{v:#}");
        assert_eq!(v["plain_path"].as_str(), Some(plain.as_str()), "{v:#}");
        assert_eq!(v["size"], CONTENT_LEN as u64, "{v:#}");
        assert_eq!(v["bad_blocks"], serde_json::json!([]), "{v:#}");
    }

    // A flipped bit deep down is reported exactly, with its plaintext path,
    // and the mount answers EIO on that block only.
    let fd = open_backing(&backing, &f);
    let at = HEADER_LEN + STORED_BLOCK + 99;
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&fd, &mut b, at).expect("read");
    std::os::unix::fs::FileExt::write_all_at(&fd, &[b[0] ^ 4], at).expect("flip");
    let (code, r) = verify(&f);
    assert_eq!(code, 1, "{r:#}");
    let issues = r["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 1, "{r:#}");
    assert_eq!(issues[0]["kind"], "tag");
    assert_eq!(issues[0]["block"], 1);
    // A file with two names is reported once, under the name met first.
    let plain_hard = format!("{}/hard", plain.rsplit_once('/').expect("dir").0);
    let hard = inspect_path(&f, &plain_hard);
    let got = (
        issues[0]["backing"].as_str().map(PathBuf::from),
        issues[0]["path"].as_str(),
    );
    assert!(
        got == (Some(backing.clone()), Some(plain.as_str()))
            || got == (Some(hard), Some(plain_hard.as_str())),
        "{r:#}"
    );
    {
        let m = f.mount();
        let d = deep_dir(&f.disk("data"));
        let e = read_all_at(&d, &file_name()).expect_err("the flipped block must not read");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        drop(d);
        m.unmount();
    }
    std::os::unix::fs::FileExt::write_all_at(&fd, &b, at).expect("unflip");
    drop(fd);
    assert_eq!(verify(&f).0, 0);

    // An online snapshot (through the running mount), then an offline one.
    {
        let m = f.mount();
        assert_ok(
            &f.cli(&["snapshot", "create", &store(&f), "data", "online"], true),
            "online snapshot",
        );
        check(
            &f.mnt.join(".snapshots/data/online"),
            "online snapshot, live",
        );
        m.unmount();
    }
    // Killed half-way, then run again: the partial deep copy is cleared.
    crash_after(
        &f,
        &["snapshot", "create", &store(&f), "data", "offline"],
        2,
    );
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "offline"], true),
        "offline snapshot",
    );
    check_mounted(
        &f,
        &["data", ".snapshots/data/online", ".snapshots/data/offline"],
        "snapshots",
    );

    // Restore: the live file is overwritten, then brought back.
    {
        let m = f.mount();
        let d = deep_dir(&f.disk("data"));
        let fd = rfs::openat(
            &d,
            file_name(),
            OFlags::WRONLY | OFlags::TRUNC,
            Mode::empty(),
        )
        .expect("open for writing");
        std::io::Write::write_all(&mut std::fs::File::from(fd), b"changed").expect("write");
        drop(d);
        m.unmount();
    }
    assert_ok(
        &f.cli(
            &["snapshot", "restore", &store(&f), "data", "offline"],
            true,
        ),
        "restore",
    );
    check_mounted(&f, &["data"], "restored");

    // An image of the snapshot and a disk made from it (every name and
    // block re-encrypted under the new disk's keys).
    assert_ok(
        &f.cli(
            &[
                "image",
                "create",
                &store(&f),
                "img",
                "--from",
                "data@offline",
            ],
            true,
        ),
        "image create",
    );
    assert_ok(
        &f.cli(
            &["disk", "add", &store(&f), "d2", "--from-image", "img"],
            true,
        ),
        "disk add --from-image",
    );
    check_mounted(&f, &["data", "d2"], "disk from image");

    // Re-encryption: new storage DEKs, then the guest layer added.
    // Killed half-way, then resumed.
    let rekey = ["disk", "rekey", &store(&f), "data", "--layer", "storage"];
    crash_after(&f, &rekey, 2);
    assert_ok(&f.cli(&rekey, true), "rekey");
    check_mounted(&f, &["data"], "rekeyed");
    assert_ok(
        &f.cli(&["disk", "encrypt", &store(&f), "d2", "--guest"], true),
        "encrypt --guest",
    );
    check_mounted(
        &f,
        &["data", "d2", ".snapshots/data/offline"],
        "guest added",
    );

    // Everything, snapshots and image included, verifies clean.
    let (code, r) = verify(&f);
    assert_eq!(code, 0, "{r:#}");
    let disks: Vec<&str> = r["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        disks.contains(&"images/img") && disks.contains(&"d2"),
        "{r:#}"
    );
}
