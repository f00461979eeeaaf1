//! One store, one writer: a store is served by one daemon at a time and the
//! offline commands do not run beside it, through one lock on the store
//! (not the mount table), which a daemon holds for its life, which a
//! daemonized mount holds in the daemon and which a killed daemon leaves
//! free.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts (lazily) every path it was given when dropped, whatever the
/// test did.
struct Unmounter(Vec<PathBuf>);

impl Drop for Unmounter {
    fn drop(&mut self) {
        for p in &self.0 {
            if is_mounted(p) {
                let _ = run(strata([OsStr::new("umount"), p.as_os_str()]));
                lazy_unmount(p);
            }
        }
    }
}

/// `strata mount STORE MNT` without `-f`: it daemonizes once the mount is up.
fn daemonized(f: &Fixture, store: &Path, mnt: &Path) -> Command {
    let mut c = strata([OsStr::new("mount"), store.as_os_str(), mnt.as_os_str()]);
    c.args(f.vault_args());
    c
}

fn one_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("strata: "), "{err}");
    lines[0].to_string()
}

/// The daemon PID the store's lock file names.
fn lock_holder_pid(store: &Path) -> u32 {
    let text = fs::read_to_string(store.join("strata.lock")).expect("lock file");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("holder line");
    u32::try_from(v["pid"].as_u64().expect("pid")).expect("pid fits")
}

#[test]
fn a_second_mount_of_a_mounted_store_is_refused_naming_the_first_and_keeps_its_temp() {
    let f = Fixture::new("full");
    let m = f.mount();
    fs::write(f.disk("temp").join("scratch"), b"still here").expect("write temp");
    let mnt2 = f.path().join("mnt2");
    fs::create_dir(&mnt2).expect("mkdir");
    let _cleanup = Unmounter(vec![mnt2.clone()]);
    let out = run(daemonized(&f, &f.store, &mnt2));
    assert!(!is_mounted(&mnt2), "a second daemon serves the same store");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = one_line(&out);
    let first = f.mnt.canonicalize().expect("canonical");
    assert!(
        line.contains(&format!(
            "is mounted on {} (daemon pid {})",
            first.display(),
            m.pid()
        )),
        "{line}"
    );
    assert!(line.contains("one mount at a time"), "{line}");
    assert_eq!(
        fs::read(f.disk("temp").join("scratch")).expect("temp file"),
        b"still here",
        "the refused mount emptied the first mount's temp disk"
    );
    m.unmount();
}

#[test]
fn two_mounts_racing_for_one_store_give_exactly_one_daemon() {
    let f = Fixture::new("general");
    let points: Vec<PathBuf> = (0..2)
        .map(|i| {
            let p = f.path().join(format!("race{i}"));
            fs::create_dir(&p).expect("mkdir");
            p
        })
        .collect();
    let _cleanup = Unmounter(points.clone());
    let children: Vec<_> = points
        .iter()
        .map(|p| {
            let mut c = daemonized(&f, &f.store, p);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let won: Vec<usize> = (0..2).filter(|&i| outs[i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "{} / {}",
        describe(&outs[0]),
        describe(&outs[1])
    );
    let (w, l) = (won[0], 1 - won[0]);
    assert!(is_mounted(&points[w]) && !is_mounted(&points[l]));
    let line = one_line(&outs[l]);
    let winner = points[w].canonicalize().expect("canonical");
    assert!(
        line.contains(&format!("is mounted on {}", winner.display())),
        "{line}"
    );
    assert_ok(
        &run(strata([OsStr::new("umount"), points[w].as_os_str()])),
        "umount",
    );
}

#[test]
fn a_daemonized_mount_holds_the_lock_in_the_daemon_and_sigkill_frees_it() {
    let f = Fixture::new("general");
    let _cleanup = Unmounter(vec![f.mnt.clone()]);
    assert_ok(&run(daemonized(&f, &f.store, &f.mnt)), "mount");
    assert!(is_mounted(&f.mnt));
    // The parent exited; the lock is the daemon's, and it names itself.
    let pid = lock_holder_pid(&f.store);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "holder {pid} is not running"
    );
    let out = f.cli(
        &["disk", "add", f.store.to_str().expect("utf-8"), "d2"],
        true,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = one_line(&out);
    assert!(
        line.contains(&format!("(daemon pid {pid})")) && line.contains("unmount it first"),
        "{line}"
    );
    // A crash of the daemon takes its lock with it.
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(poll_until(EXIT_TIMEOUT, || !Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
    lazy_unmount(&f.mnt);
    assert!(poll_until(EXIT_TIMEOUT, || !is_mounted(&f.mnt)));
    assert_ok(
        &f.cli(
            &["disk", "add", f.store.to_str().expect("utf-8"), "d2"],
            true,
        ),
        "disk add after the daemon died",
    );
    let m = f.mount();
    assert!(f.disk("d2").is_dir());
    m.unmount();
}

#[test]
fn umount_returns_once_the_daemon_has_let_go_of_the_store() {
    let f = Fixture::new("general");
    let _cleanup = Unmounter(vec![f.mnt.clone()]);
    let store = f.store.to_str().expect("utf-8");
    for round in 0..3 {
        assert_ok(&run(daemonized(&f, &f.store, &f.mnt)), "mount");
        assert_ok(
            &run(strata([OsStr::new("umount"), f.mnt.as_os_str()])),
            "umount",
        );
        // Straight after umount, an offline command finds the store free.
        assert_ok(
            &f.cli(
                &[
                    "scope",
                    "create",
                    store,
                    &format!("s{round}"),
                    "--key",
                    &format!("k{round}"),
                ],
                true,
            ),
            "scope create right after umount",
        );
    }
}

#[test]
fn offline_commands_are_refused_while_mounted_even_through_another_path() {
    let f = Fixture::new("compliance");
    let store = f.store.to_str().expect("utf-8").to_string();
    assert_ok(
        &f.cli(&["snapshot", "create", &store, "data", "s0"], true),
        "snapshot",
    );
    // The same store seen through a bind mount: another path, same files.
    let alias = f.path().join("alias");
    fs::create_dir(&alias).expect("mkdir");
    let st = Command::new("mount")
        .arg("--bind")
        .arg(&f.store)
        .arg(&alias)
        .status()
        .expect("mount --bind");
    assert!(st.success(), "bind mount");
    let _cleanup = Unmounter(vec![alias.clone()]);
    let m = f.mount();
    let a = alias.to_str().expect("utf-8").to_string();
    let before = fs::read(f.config()).expect("config");
    let mounted_on = "is mounted on";
    for (args, says) in [
        (
            vec!["disk", "add", &a, "d2"],
            [mounted_on, "adding a disk is offline"],
        ),
        (
            vec!["disk", "rekey", &a, "data", "--layer", "storage"],
            [mounted_on, "re-encryption is offline"],
        ),
        (
            vec!["disk", "encrypt", &a, "data", "--guest"],
            [mounted_on, "re-encryption is offline"],
        ),
        (
            vec!["snapshot", "restore", &a, "data", "s0"],
            [mounted_on, "restoring a snapshot is offline"],
        ),
        (
            vec!["snapshot", "delete", &a, "data", "s0"],
            [mounted_on, "deleting a snapshot is offline"],
        ),
        (
            vec!["scope", "create", &a, "sc", "--key", "sck"],
            [mounted_on, "creating a scope is offline"],
        ),
        (
            vec!["image", "create", &a, "img", "--from", "data"],
            ["is mounted", "make an image from a snapshot"],
        ),
    ] {
        let out = f.cli(&args, true);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} ran beside the mount: {}",
            describe(&out)
        );
        let line = one_line(&out);
        for needle in says {
            assert!(line.contains(needle), "{args:?}: {line}");
        }
    }
    let out = f.cli(&["verify", &a, "--repair"], true);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(one_line(&out).contains("repair is offline"));
    assert_eq!(
        fs::read(f.config()).expect("config"),
        before,
        "the config changed under the mount"
    );
    // What a running mount allows still works beside it.
    assert_ok(
        &f.cli(&["snapshot", "create", &a, "data", "s1"], true),
        "online snapshot",
    );
    assert_ok(
        &f.cli(&["image", "create", &a, "img", "--from", "data@s1"], true),
        "image of a snapshot",
    );
    assert_ok(
        &f.cli(&["image", "delete", &a, "img"], true),
        "image delete",
    );
    // A rewrap beside the mount: the running mount follows the new config.
    assert_ok(
        &f.cli(&["vault", "key", "rotate", "cmk", "--store", &a], true),
        "rotate --store beside the mount",
    );
    fs::write(f.disk("data").join("after-rewrap"), b"kept").expect("write after the rewrap");
    m.unmount();
    assert_ok(
        &f.cli(&["snapshot", "delete", &a, "data", "s0"], true),
        "offline once unmounted",
    );
}
