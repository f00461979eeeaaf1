//! `strata mount --idle DURATION`: a mount nobody uses unmounts itself and
//! its daemon exits; a mount in use — an open file, a file mapped into
//! memory after its descriptor closed, a process whose working directory is
//! inside — stays mounted however long it is idle otherwise, and what was
//! written through it is there at the next mount.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const IDLE: &str = "1s";
const IDLE_TIME: Duration = Duration::from_secs(1);
/// How long past the idle time the unmount may take (a loaded machine).
const SLACK: Duration = Duration::from_secs(10);

/// Whether process `pid` has exited (a zombie counts: the test has not
/// reaped it).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn an_unused_mount_unmounts_after_the_idle_time_and_its_daemon_exits() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["--idle", IDLE]);
    let pid = m.pid();
    std::fs::write(f.disk("data").join("kept"), b"written before idling").expect("write");
    let last_use = Instant::now();
    let gone = poll_until(IDLE_TIME + SLACK, || !is_mounted(&f.mnt) && exited(pid));
    let after = last_use.elapsed();
    let log = m.log();
    drop(m);
    assert!(
        gone,
        "still mounted {after:?} after the last use; log:\n{log}"
    );
    assert!(
        after + Duration::from_millis(50) >= IDLE_TIME,
        "unmounted {after:?} after the last use, before the idle time"
    );
    assert!(log.contains("idle"), "no idle line in the log:\n{log}");
    // Nothing written was lost by the unmount.
    let m = f.mount();
    assert_eq!(
        std::fs::read(f.disk("data").join("kept")).expect("read"),
        b"written before idling"
    );
    m.unmount();
}

#[test]
fn an_open_file_keeps_an_idle_mount_mounted() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["--idle", IDLE]);
    let path = f.disk("data").join("open");
    let mut file = File::create(&path).expect("create");
    file.write_all(b"first ").expect("write");
    // Three idle times with the file open and no request at all.
    std::thread::sleep(IDLE_TIME * 3);
    assert!(
        is_mounted(&f.mnt),
        "unmounted with a file open; log:\n{}",
        m.log()
    );
    file.write_all(b"second")
        .expect("write after the idle time");
    file.sync_all().expect("fsync");
    drop(file);
    let pid = m.pid();
    assert!(
        poll_until(IDLE_TIME + SLACK, || !is_mounted(&f.mnt) && exited(pid)),
        "not unmounted after the file was closed; log:\n{}",
        m.log()
    );
    drop(m);
    let m = f.mount();
    assert_eq!(std::fs::read(&path).expect("read"), b"first second");
    m.unmount();
}

#[test]
fn a_file_mapped_after_its_descriptor_closed_keeps_the_mount() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["--idle", IDLE]);
    let path = f.disk("data").join("mapped");
    std::fs::write(&path, vec![b'a'; BLOCK]).expect("write");
    let file = open_rw(&path);
    // SAFETY: a shared writable mapping of a file we own, of its length;
    // unmapped below before the file is touched again.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BLOCK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED, "mmap failed");
    drop(file);
    std::thread::sleep(IDLE_TIME * 3);
    let still = is_mounted(&f.mnt);
    // SAFETY: addr maps BLOCK writable bytes (checked above).
    unsafe {
        std::ptr::write_bytes(addr.cast::<u8>(), b'm', 4);
        libc::msync(addr, BLOCK, libc::MS_SYNC);
        libc::munmap(addr, BLOCK);
    }
    assert!(
        still,
        "unmounted while a file was mapped; log:\n{}",
        m.log()
    );
    let pid = m.pid();
    assert!(
        poll_until(IDLE_TIME + SLACK, || !is_mounted(&f.mnt) && exited(pid)),
        "not unmounted after munmap; log:\n{}",
        m.log()
    );
    drop(m);
    let m = f.mount();
    let data = std::fs::read(&path).expect("read");
    assert_eq!(&data[..5], b"mmmma");
    m.unmount();
}

#[test]
fn a_working_directory_inside_keeps_an_idle_mount_mounted() {
    let f = Fixture::new("general");
    let m = f.mount_with(&["--idle", IDLE]);
    // No file is open: only the kernel knows the mount is in use, and the
    // idle unmount asks it (never a lazy detach).
    let mut sleeper = Command::new("sleep")
        .arg("4")
        .current_dir(f.disk("data"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    std::thread::sleep(IDLE_TIME * 3);
    let still = is_mounted(&f.mnt);
    let _ = sleeper.wait();
    assert!(
        still,
        "unmounted under a working directory; log:\n{}",
        m.log()
    );
    let pid = m.pid();
    assert!(
        poll_until(IDLE_TIME * 2 + SLACK, || !is_mounted(&f.mnt) && exited(pid)),
        "not unmounted once the process left; log:\n{}",
        m.log()
    );
    drop(m);
}

#[test]
fn requests_keep_resetting_the_idle_time() {
    let f = Fixture::new("general");
    // Two seconds of idle time against a read every 300 ms: room for a
    // loaded machine's scheduling delays.
    let m = f.mount_with(&["--idle", "2s"]);
    let file = f.disk("data").join("read");
    std::fs::write(&file, b"x").expect("write");
    let start = Instant::now();
    // A read every 300 ms for three seconds (each open reaches the daemon;
    // a stat could be answered from the kernel's cache and would not
    // count): never idle long enough.
    while start.elapsed() < IDLE_TIME * 3 {
        assert!(
            std::fs::read(&file).is_ok() && is_mounted(&f.mnt),
            "unmounted while in use after {:?}; log:\n{}",
            start.elapsed(),
            m.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    m.unmount();
}

#[test]
fn a_bad_idle_duration_is_a_usage_error() {
    let f = Fixture::new("general");
    let out = run(f.mount_command(&["--idle", "soon"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a duration"),
        "{}",
        describe(&out)
    );
    assert!(!is_mounted(&f.mnt));
}
