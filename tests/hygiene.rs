//! What strata leaves for other users and for crash handlers: a private
//! store directory, plaintext written by `inspect` readable by its owner
//! only, a daemon that cannot dump core, and long-name sidecars read only
//! up to the size a name can have.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// The backing file of plaintext `disk/path`, via `inspect --path`.
fn backing_of(f: &Fixture, plain: &str) -> PathBuf {
    let out = f.cli(
        &["inspect", f.store.to_str().expect("utf-8"), "--path", plain],
        true,
    );
    PathBuf::from(assert_ok(&out, "inspect --path").trim())
}

#[test]
fn a_new_store_directory_is_private_to_its_owner() {
    let f = Fixture::new("general");
    assert_eq!(mode(&f.store), 0o700);
    // An existing empty directory given to init is made private too.
    let g = Fixture::empty("general");
    fs::create_dir(&g.store).expect("mkdir");
    fs::set_permissions(&g.store, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_ok(&g.init(), "init in an existing directory");
    assert_eq!(mode(&g.store), 0o700);
}

#[test]
fn inspect_writes_plaintext_readable_by_its_owner_only() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(
        f.disk("data").join("secret.txt"),
        b"plaintext for the owner",
    )
    .expect("write");
    m.unmount();
    let backing = backing_of(&f, "data/secret.txt");
    let whole = f.path().join("whole");
    let block = f.path().join("block");
    // One of them exists already, world-readable: it is made private too.
    fs::write(&block, b"old").expect("write");
    fs::set_permissions(&block, fs::Permissions::from_mode(0o644)).expect("chmod");
    let b = backing.to_str().expect("utf-8");
    assert_ok(
        &f.cli(
            &["inspect", b, "--decrypt-to", whole.to_str().expect("utf-8")],
            true,
        ),
        "--decrypt-to",
    );
    assert_ok(
        &f.cli(
            &[
                "inspect",
                b,
                "--block",
                "0",
                "--out",
                block.to_str().expect("utf-8"),
            ],
            true,
        ),
        "--block --out",
    );
    assert_eq!(fs::read(&whole).expect("read"), b"plaintext for the owner");
    assert_eq!(mode(&whole), 0o600);
    assert_eq!(mode(&block), 0o600);
}

#[test]
fn the_daemon_cannot_dump_core() {
    let f = Fixture::new("full");
    let m = f.mount();
    let limits = fs::read_to_string(format!("/proc/{}/limits", m.pid())).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    let out = f.cli(&["status", f.mnt.to_str().expect("utf-8"), "--json"], false);
    let v: serde_json::Value = serde_json::from_str(&assert_ok(&out, "status")).expect("json");
    assert_eq!(v["may_dump_core"], false, "{v}");
    m.unmount();
}

#[test]
fn an_oversized_long_name_sidecar_is_refused_without_being_read() {
    let f = Fixture::new("general");
    let long = "L".repeat(200);
    let m = f.mount();
    fs::write(f.disk("data").join(&long), b"long").expect("write");
    fs::write(f.disk("data").join("short"), b"short").expect("write");
    m.unmount();
    let sidecar = fs::read_dir(f.backing("data"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".name"))
        .expect("a sidecar");
    // 1 GiB, sparse: reading it whole would cost the daemon that memory.
    fs::File::options()
        .write(true)
        .open(&sidecar)
        .expect("open")
        .set_len(1 << 30)
        .expect("grow");
    let out = f.cli(&["verify", f.store.to_str().expect("utf-8")], true);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("is longer than 1024 bytes"), "{report}");
    let m = f.mount();
    assert_eq!(list(&f.disk("data")), ["short"]);
    assert!(m.log().contains("is longer than 1024 bytes"), "{}", m.log());
    m.unmount();
}
