//! The daemon's life: a background mount returns only once it serves and
//! `strata umount` ends it; a small block cache still serves the right data.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// Unmounts a background mount however the test ends.
struct BackgroundMount<'a>(&'a Path);

impl Drop for BackgroundMount<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = run(strata([OsStr::new("umount"), self.0.as_os_str()]));
            if !poll_until(EXIT_TIMEOUT, || !is_mounted(self.0)) {
                lazy_unmount(self.0);
            }
        }
    }
}

/// Pids of live (not zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmdline.contains(needle) && !zombie && pid != std::process::id() {
            out.push(pid);
        }
    }
    out
}

#[test]
fn background_mount_returns_once_serving_and_umount_ends_the_daemon() {
    let f = Fixture::new("general");
    let log = f.path().join("daemon.log");
    let mut cmd = strata([
        OsStr::new("mount"),
        f.store.as_os_str(),
        f.mnt.as_os_str(),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
        OsStr::new("--log-file"),
        log.as_os_str(),
    ]);
    let _cleanup = BackgroundMount(&f.mnt);
    let out = run_for(&mut cmd, MOUNT_TIMEOUT);
    assert_ok(&out, "strata mount (background)");
    // No polling: the command returned, so the mount must already serve.
    assert!(
        f.disk("os").is_dir(),
        "strata mount returned before the mount was up"
    );
    assert_eq!(list(&f.mnt), vec!["data", "os", "temp"]);
    fs::write(f.disk("data").join("bg"), b"from a background mount").expect("write");
    let mnt = f.mnt.to_string_lossy().into_owned();
    let daemons = processes_mentioning(&mnt);
    assert!(!daemons.is_empty(), "no daemon process found serving {mnt}");

    assert_ok(
        &run(strata([OsStr::new("umount"), f.mnt.as_os_str()])),
        "strata umount",
    );
    assert!(
        !is_mounted(&f.mnt),
        "still mounted after strata umount returned"
    );
    let gone = poll_until(EXIT_TIMEOUT, || processes_mentioning(&mnt).is_empty());
    assert!(gone, "daemon {daemons:?} still running after strata umount");
    assert!(log.is_file(), "--log-file was not created");

    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("bg")).expect("read"),
        b"from a background mount"
    );
    m.unmount();
}

#[test]
fn tiny_block_cache_serves_the_right_data() {
    for preset in ["general", "max"] {
        let f = Fixture::new(preset);
        let m = f.mount_with(&["--cache-size", "65536"]);
        let data = pattern(77, 4 << 20);
        let path = f.disk("data").join("big");
        fs::write(&path, &data).expect("write");
        let file = fs::File::open(&path).expect("open");
        let mut rng = Rng::new(5);
        for _ in 0..300 {
            let off = rng.below(data.len() as u64) as usize;
            let len = (1 + rng.below(3 * BLOCK as u64) as usize).min(data.len() - off);
            let got = read_at(&file, off as u64, len).expect("pread");
            assert_bytes_eq(&got, &data[off..off + len], "read through a tiny cache");
        }
        // Overwrites interleaved with reads must never serve a stale block.
        let patch = pattern(78, 10_000);
        write_at(&open_rw(&path), 1_000_000, &patch).expect("pwrite");
        let got = read_at(&file, 1_000_000, 10_000).expect("pread");
        assert_bytes_eq(&got, &patch, "read after overwrite");
        drop(file);
        m.unmount();
        let m = f.mount_with(&["--cache-size", "65536"]);
        let mut want = data.clone();
        want[1_000_000..1_010_000].copy_from_slice(&patch);
        assert_bytes_eq(&fs::read(&path).expect("read"), &want, "after remount");
        m.unmount();
    }
}
