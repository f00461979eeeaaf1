//! A daemon killed with SIGKILL loses nothing that was committed or
//! fsynced: SQLite transactions committed with synchronous=FULL, and plain
//! files after fsync, are all there after the dead mount is detached and the
//! store is mounted again, and an open transaction is rolled back cleanly.

#[macro_use]
mod common;

use common::*;
use rusqlite::{params, Connection};
use std::fs::{self, File};
use std::path::Path;

const TXS: i64 = 30;
const ROWS_PER_TX: i64 = 400;
const UNCOMMITTED: i64 = 1_000_000;

#[test]
fn general_delete_journal_commits_survive_kill9() {
    sqlite_commits_survive_kill9("general", "DELETE");
}

#[test]
fn general_wal_commits_survive_kill9() {
    sqlite_commits_survive_kill9("general", "WAL");
}

#[test]
fn max_delete_journal_commits_survive_kill9() {
    sqlite_commits_survive_kill9("max", "DELETE");
}

#[test]
fn max_wal_commits_survive_kill9() {
    sqlite_commits_survive_kill9("max", "WAL");
}

fn open(db: &Path, journal: &str) -> Connection {
    let conn = Connection::open(db).expect("open database");
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = 20;")
        .expect("pragmas");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal}"), [], |r| {
            r.get(0)
        })
        .expect("journal_mode");
    assert_eq!(mode.to_uppercase(), journal);
    conn
}

fn value(i: i64) -> String {
    format!("committed-{i}-{}", "v".repeat((i % 50) as usize))
}

fn sqlite_commits_survive_kill9(preset: &str, journal: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let db = f.disk("data").join("crash.db");
    let conn = open(&db, journal);
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, pad BLOB)")
        .expect("create table");
    for tx in 0..TXS {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut ins = conn
                .prepare_cached("INSERT INTO t (id, v, pad) VALUES (?1, ?2, randomblob(200))")
                .expect("prepare");
            for i in tx * ROWS_PER_TX..(tx + 1) * ROWS_PER_TX {
                ins.execute(params![i, value(i)]).expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    // A large transaction left open: with a 20-page cache it spills pages
    // to the database (rollback journal) or the WAL before the crash.
    conn.execute_batch(&format!(
        "BEGIN; INSERT INTO t (id, v, pad) SELECT id + {UNCOMMITTED}, v, pad FROM t;"
    ))
    .expect("uncommitted insert");
    m.kill9();
    // Closing on the dead mount fails quietly; nothing of it reaches the store.
    drop(conn);

    let m = f.mount();
    {
        let conn = open(&db, journal);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok", "database damaged by the crash");
        let (count, max): (i64, i64) = conn
            .query_row("SELECT count(*), max(id) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert!(
            max < UNCOMMITTED,
            "rows of the uncommitted transaction survived"
        );
        assert_eq!(count, TXS * ROWS_PER_TX, "committed rows lost");
        let mut stmt = conn
            .prepare("SELECT id, v FROM t ORDER BY id")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .expect("query");
        for (expected, row) in (0..).zip(rows) {
            let (id, v) = row.expect("row");
            assert_eq!(id, expected, "committed row missing");
            assert_eq!(v, value(id), "committed row changed");
        }
        drop(stmt);
        // The recovered database takes new commits.
        conn.execute(
            "INSERT INTO t (id, v) VALUES (?1, 'after')",
            [TXS * ROWS_PER_TX],
        )
        .expect("insert after recovery");
    }
    m.unmount();
}

per_preset!(fsynced_files_survive_kill9, sigterm_unmounts_cleanly);

/// A signal that finds the mount busy (a file open under it) unmounts once
/// the file is closed: the daemon keeps trying, it does not go on serving.
#[test]
fn sigterm_on_a_busy_mount_unmounts_when_it_frees() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["-v"]);
    let path = f.disk("data").join("held");
    fs::write(&path, pattern(7, 20_000)).expect("write");
    let held = File::open(&path).expect("open");
    m.signal(libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        is_mounted(&f.mnt),
        "a busy mount went away on a signal while a file was open"
    );
    drop(held);
    let (status, left_mounted, report) = m.wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!("daemon had not exited {EXIT_TIMEOUT:?} after the file closed; {report}")
    });
    assert!(status.success(), "daemon exited with {status}; {report}");
    assert!(!left_mounted, "mount left behind; {report}");
}

/// A mount that stays busy past the first seconds is never detached: the
/// open file keeps reading, writing and syncing through it, each further
/// signal says why the daemon is still there, and the unmount goes
/// through once the file is closed; what was written is in the store.
#[test]
fn sigterm_on_a_mount_that_stays_busy_waits_for_it() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let f = Fixture::new("general");
    let m = f.mount_with(&["-v"]);
    let path = f.disk("data").join("held");
    let first = pattern(8, 30_000);
    fs::write(&path, &first).expect("write");
    let mut held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    m.signal(libc::SIGTERM);
    // Past the daemon's 10 s of quick retries and its warning.
    assert!(
        poll_until(std::time::Duration::from_secs(30), || m
            .log()
            .contains("the mount is busy")),
        "no warning that the mount is busy; log:\n{}",
        m.log()
    );
    m.signal(libc::SIGINT);
    assert!(
        poll_until(std::time::Duration::from_secs(10), || m
            .log()
            .matches("the mount is busy")
            .count()
            >= 2),
        "a second signal on a busy mount said nothing; log:\n{}",
        m.log()
    );
    assert!(is_mounted(&f.mnt), "a busy mount went away on a signal");
    let mut got = Vec::new();
    held.read_to_end(&mut got)
        .expect("read while the unmount waits");
    assert_bytes_eq(&got, &first, "held file while the unmount waits");
    let tail = pattern(9, 5_000);
    held.seek(SeekFrom::End(0)).expect("seek");
    held.write_all(&tail)
        .expect("write while the unmount waits");
    held.sync_all().expect("fsync while the unmount waits");
    drop(held);
    let (status, left_mounted, report) = m.wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!("daemon had not exited {EXIT_TIMEOUT:?} after the last file closed; {report}")
    });
    assert!(status.success(), "daemon exited with {status}; {report}");
    assert!(!left_mounted, "mount left behind; {report}");
    let m = f.mount();
    let mut want = first;
    want.extend_from_slice(&tail);
    assert_bytes_eq(
        &fs::read(f.disk("data").join("held")).expect("read again"),
        &want,
        "held file after remount",
    );
    m.unmount();
}

/// An automount point (autofs, as systemd's `x-systemd.automount` puts at
/// the mountpoint), unmounted when dropped. The pipe to the automounter is
/// held and never read: this process group is the automounter's, so its
/// own accesses trigger nothing.
#[cfg(target_os = "linux")]
struct Autofs {
    dir: std::path::PathBuf,
    _pipe: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
}

#[cfg(target_os = "linux")]
impl Autofs {
    fn mount(dir: &Path) -> Autofs {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: both descriptors were just made and are owned here only.
        let pipe = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        // SAFETY: getpgrp(2) cannot fail.
        let pgrp = unsafe { libc::getpgrp() };
        let opts = std::ffi::CString::new(format!(
            "fd={},pgrp={pgrp},minproto=5,maxproto=5,direct",
            pipe.1.as_raw_fd()
        ))
        .expect("options");
        let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path");
        // SAFETY: every argument is a valid NUL-terminated string.
        let rc = unsafe {
            libc::mount(
                c"strata-test".as_ptr(),
                target.as_ptr(),
                c"autofs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount autofs: {}", std::io::Error::last_os_error());
        Autofs {
            dir: dir.to_path_buf(),
            _pipe: pipe,
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Autofs {
    fn drop(&mut self) {
        if top_mount_type(&self.dir).as_deref() == Some("autofs") {
            lazy_unmount(&self.dir);
        }
    }
}

/// Whether the running kernel has filesystem `name` (/proc/filesystems).
#[cfg(target_os = "linux")]
fn kernel_has_filesystem(name: &str) -> bool {
    fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next_back() == Some(name))
    })
}

/// A mount beneath the daemon's survives its unmount by `strata umount`
/// and by a signal: nothing unmounts the mountpoint a second time once the
/// daemon's mount is gone. Beneath is an automount point, where fstab's
/// `x-systemd.automount` has strata mount (over it, as here); strata
/// mounts over no other mount, so on a kernel built without autofs there
/// is nothing to test.
#[cfg(target_os = "linux")]
#[test]
fn unmounting_leaves_a_mount_beneath_alone() {
    if !kernel_has_filesystem("autofs") {
        eprintln!("skipped: this kernel has no autofs");
        return;
    }
    let f = Fixture::new("general");
    let beneath = Autofs::mount(&f.mnt);
    for signal in [None, Some(libc::SIGTERM)] {
        let m = f.mount();
        assert_eq!(
            top_mount_type(&f.mnt).as_deref(),
            Some("fuse.strata"),
            "the daemon's mount is not over the automount point"
        );
        match signal {
            None => m.unmount(),
            Some(signal) => {
                let (status, left_mounted, report) = m.signal_and_wait(signal);
                assert!(
                    status.is_some_and(|s| s.success()) && !left_mounted,
                    "daemon did not unmount and exit on signal {signal}; {report}"
                );
            }
        }
        assert_eq!(
            top_mount_type(&f.mnt).as_deref(),
            Some("autofs"),
            "the mount beneath went with the daemon's ({signal:?})"
        );
    }
    drop(beneath);
}

/// `strata umount` unmounts only a strata mount: another filesystem at
/// the path (an automount point left after --idle, say) stays.
#[test]
fn strata_umount_leaves_other_mounts_alone() {
    let f = Fixture::new("general");
    let other = Tmpfs::mount(&f.mnt, "1m");
    let out = run(strata([std::ffi::OsStr::new("umount"), f.mnt.as_os_str()]));
    assert!(!out.status.success(), "strata umount took a tmpfs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a strata mount"),
        "unclear refusal: {}",
        describe(&out)
    );
    assert_eq!(top_mount_type(&f.mnt).as_deref(), Some("tmpfs"));
    drop(other);
}

/// A signal never unmounts what was mounted over the daemon's mount (an
/// unmount by the path would take the newest mount there): the daemon
/// waits, says why at the next signal, and unmounts its own once the
/// other is gone.
#[test]
fn sigterm_leaves_a_mount_put_over_the_daemons_alone() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["-v"]);
    let over = Tmpfs::mount(&f.mnt, "1m");
    m.signal(libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(500));
    m.signal(libc::SIGTERM);
    assert!(
        poll_until(std::time::Duration::from_secs(20), || m
            .log()
            .contains("no longer this daemon's")),
        "the daemon did not say why it waits; log:\n{}",
        m.log()
    );
    assert_eq!(
        top_mount_type(&f.mnt).as_deref(),
        Some("tmpfs"),
        "the mount over the daemon's is gone"
    );
    drop(over);
    let (status, left_mounted, report) = m.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()) && !left_mounted,
        "the daemon did not unmount its own mount once the other was gone; {report}"
    );
}

/// Puts a directory back where a test moved it, and removes the symbolic
/// link left in its place, on every way out of the test.
#[cfg(target_os = "linux")]
struct MovedBack {
    moved: std::path::PathBuf,
    home: std::path::PathBuf,
}

#[cfg(target_os = "linux")]
impl Drop for MovedBack {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.home).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = fs::remove_file(&self.home);
        }
        if self.moved.exists() && !self.home.exists() {
            let _ = fs::rename(&self.moved, &self.home);
        }
    }
}

/// While a busy mount waits to be unmounted (by `strata umount`, or by the
/// daemon on a signal), a directory above the mountpoint is renamed and a
/// symbolic link to another mount's parent is put in its place: the
/// unmount, once the mount is free, takes the strata mount (where it now
/// is) and never the mount the old path leads to.
#[cfg(target_os = "linux")]
#[test]
fn a_waiting_unmount_follows_no_path_planted_meanwhile() {
    for by_signal in [false, true] {
        let mut f = Fixture::new("general");
        let home = f.path().join("a");
        let moved = f.path().join("a-moved");
        f.mnt = home.join("mnt");
        fs::create_dir_all(&f.mnt).expect("mountpoint");
        let decoy = f.path().join("decoy");
        let other = Tmpfs::mount(&decoy.join("mnt"), "1m");
        let m = f.mount_with(&["-v"]);
        let path = f.disk("data").join("held");
        fs::write(&path, pattern(11, 5_000)).expect("write");
        let held = File::open(&path).expect("open");
        let mut umount = None;
        if by_signal {
            m.signal(libc::SIGTERM);
        } else {
            let mut cmd = strata([std::ffi::OsStr::new("umount"), f.mnt.as_os_str()]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            umount = Some(cmd.spawn().expect("spawn strata umount"));
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
        let back = MovedBack {
            moved: moved.clone(),
            home: home.clone(),
        };
        fs::rename(&home, &moved).expect("rename the mountpoint's parent");
        std::os::unix::fs::symlink(&decoy, &home).expect("plant the link");
        drop(held);
        let said = umount.map(|u| u.wait_with_output().expect("strata umount"));
        let gone = poll_until(EXIT_TIMEOUT, || !fuse_mounted(&moved.join("mnt")));
        let decoy_kept = top_mount_type(&decoy.join("mnt")).as_deref() == Some("tmpfs");
        // Put back before anything unmounts by the fixture's path.
        drop(back);
        let (status, _, report) = m.wait_exit(EXIT_TIMEOUT);
        if let Some(out) = said {
            assert!(out.status.success(), "strata umount: {}", describe(&out));
        }
        assert!(
            decoy_kept,
            "the unmount took the mount the planted link leads to (signal: {by_signal}); {report}"
        );
        assert!(
            gone,
            "the strata mount stayed (signal: {by_signal}); {report}"
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon did not exit cleanly (signal: {by_signal}); {report}"
        );
        drop(other);
    }
}

/// Plain files: contents, an in-place overwrite, a sparse tail and an
/// atomic rename, each made durable with fsync before the kill.
fn fsynced_files_survive_kill9(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let a = pattern(1, 300 * 1024 + 7);
    {
        let file = File::create(d.join("a")).expect("create");
        write_at(&file, 0, &a).expect("write");
        file.sync_all().expect("fsync");
    }
    let mut b = pattern(2, 5 * BLOCK);
    {
        let file = File::create(d.join("b")).expect("create");
        write_at(&file, 0, &b).expect("write");
        file.sync_all().expect("fsync");
        let patch = pattern(3, 3_000);
        write_at(&file, 2 * BLOCK as u64 + 2_000, &patch).expect("overwrite");
        b[2 * BLOCK + 2_000..2 * BLOCK + 5_000].copy_from_slice(&patch);
        file.sync_data().expect("fdatasync");
    }
    {
        let file = File::create(d.join("sparse")).expect("create");
        write_at(&file, 10 << 20, b"far").expect("write");
        file.sync_all().expect("fsync");
    }
    fs::write(d.join("config"), b"old").expect("write");
    {
        let file = File::create(d.join("config.tmp")).expect("create");
        write_at(&file, 0, b"new contents").expect("write");
        file.sync_all().expect("fsync");
    }
    fs::rename(d.join("config.tmp"), d.join("config")).expect("rename");
    File::open(&d)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
    fs::create_dir(f.disk("os").join("dir")).expect("mkdir");
    File::open(f.disk("os"))
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
    fs::write(f.disk("temp").join("scratch"), b"scratch").expect("write temp");
    m.kill9();

    let m = f.mount();
    assert_bytes_eq(&fs::read(d.join("a")).expect("read a"), &a, "a after crash");
    assert_bytes_eq(&fs::read(d.join("b")).expect("read b"), &b, "b after crash");
    let sparse = fs::read(d.join("sparse")).expect("read sparse");
    assert_eq!(sparse.len(), (10 << 20) + 3);
    assert_eq!(&sparse[10 << 20..], b"far");
    assert!(
        sparse[..10 << 20].iter().all(|&x| x == 0),
        "hole not zero after crash"
    );
    assert_eq!(
        fs::read(d.join("config")).expect("read config"),
        b"new contents"
    );
    assert!(!d.join("config.tmp").exists());
    assert!(f.disk("os").join("dir").is_dir());
    assert!(
        list(&f.disk("temp")).is_empty(),
        "temp not emptied after a crash"
    );
    m.unmount();
}

/// SIGTERM to a foreground daemon unmounts cleanly and exits 0 (SIGINT,
/// SIGHUP and SIGQUIT in the rounds after), and everything written is
/// there at the next mount.
fn sigterm_unmounts_cleanly(preset: &str) {
    let f = Fixture::new(preset);
    let signals = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];
    for (round, signal) in (0u64..).zip(signals) {
        // -v: the log says when the signal came and the unmount began.
        let m = f.mount_with(&["-v"]);
        fs::write(
            f.disk("data").join(format!("file-{round}")),
            pattern(round, 50_000),
        )
        .expect("write");
        let (status, left_mounted, report) = m.signal_and_wait(signal);
        let status = status.unwrap_or_else(|| {
            panic!("daemon had not exited {EXIT_TIMEOUT:?} after signal {signal}; {report}")
        });
        assert!(
            status.success(),
            "daemon exited with {status} on signal {signal}; {report}"
        );
        assert!(
            !left_mounted,
            "mount left behind after signal {signal}; {report}"
        );
    }
    let m = f.mount();
    for round in (0u64..).take(signals.len()) {
        let got = fs::read(f.disk("data").join(format!("file-{round}"))).expect("read");
        assert_bytes_eq(
            &got,
            &pattern(round, 50_000),
            "file written before the signal",
        );
    }
    m.unmount();
}
