//! A config write interrupted at any step leaves no window in which an
//! older config is accepted: the new config is staged, the vault records its
//! generation, and only then does it replace `strata.conf`. The crash points
//! are reached through the debug build's fault injection
//! (`STRATA_TEST_CRASH_AT`).

mod common;

use common::*;
use std::fs;

fn generation(conf: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(conf).expect("config JSON");
    v["generation"].as_u64().expect("generation")
}

/// A compliance store two writes old (init, scope create) with a file on
/// its data disk; returns the fixture and the configs of generations 1, 2.
fn store_with_history() -> (Fixture, Vec<u8>, Vec<u8>) {
    let f = Fixture::new("compliance");
    let m = f.mount();
    fs::write(f.disk("data").join("kept"), b"kept through the crash").expect("write");
    m.unmount();
    let store = f.store.to_str().expect("utf-8").to_string();
    assert_ok(
        &f.cli(&["scope", "create", &store, "sc", "--key", "sck"], true),
        "scope create",
    );
    let g2 = fs::read(f.config()).expect("config");
    let g1 = fs::read(f.store.join("strata.conf.bak")).expect("backup");
    assert_eq!((generation(&g1), generation(&g2)), (1, 2));
    (f, g1, g2)
}

/// `vault key rotate cmk --store S` (a config write), crashed at `point`.
fn rotate_crashing_at(f: &Fixture, point: &str) {
    let mut cmd = strata(["vault", "key", "rotate", "cmk", "--store"]);
    cmd.arg(&f.store).args(f.vault_args());
    cmd.env("STRATA_TEST_CRASH_AT", point);
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(99),
        "no crash at {point}: {}",
        describe(&out)
    );
}

#[track_caller]
fn assert_refused_as_rollback(f: &Fixture) {
    let out = run(f.mount_command(&[]));
    if out.status.success() || is_mounted(&f.mnt) {
        lazy_unmount(&f.mnt);
    }
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back"), "{err}");
}

#[test]
fn crash_after_staging_keeps_the_old_config_and_refuses_anything_older() {
    let (f, g1, g2) = store_with_history();
    rotate_crashing_at(&f, "config-staged");
    assert_eq!(
        fs::read(f.config()).expect("config"),
        g2,
        "strata.conf untouched"
    );
    // The vault recorded nothing new: generation 2 is in force, 1 is not.
    fs::write(f.config(), &g1).expect("roll back to 1");
    assert_refused_as_rollback(&f);
    fs::write(f.config(), &g2).expect("put 2 back");
    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("kept")).expect("read"),
        b"kept through the crash"
    );
    m.unmount();
}

#[test]
fn crash_after_the_vault_recorded_the_write_cannot_roll_back_one_generation() {
    let (f, _, g2) = store_with_history();
    rotate_crashing_at(&f, "config-generation-recorded");
    assert_eq!(
        fs::read(f.config()).expect("config"),
        g2,
        "strata.conf is one step behind"
    );
    let staged_path = f.store.join("strata.conf.next");
    let staged = fs::read(&staged_path).expect("the staged config");
    assert_eq!(generation(&staged), 3);

    // Without the staged write, the previous config is a rollback: refused.
    fs::rename(&staged_path, f.path().join("saved-next")).expect("hide");
    assert_refused_as_rollback(&f);
    fs::rename(f.path().join("saved-next"), &staged_path).expect("restore");

    // With it, the mount finishes the interrupted write and serves.
    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("kept")).expect("read"),
        b"kept through the crash"
    );
    assert!(m
        .log()
        .contains("finished a config write that a crash had interrupted"));
    m.unmount();
    assert_eq!(generation(&fs::read(f.config()).expect("config")), 3);
    assert!(!staged_path.exists());
    let show = f.cli(
        &[
            "disk",
            "show",
            f.store.to_str().expect("utf-8"),
            "data",
            "--json",
        ],
        true,
    );
    let v: serde_json::Value = serde_json::from_str(&assert_ok(&show, "disk show")).expect("json");
    let cmk = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["key"] == "cmk")
        .expect("cmk layer");
    assert_eq!(
        cmk["key_version"], 2,
        "the rewrap the crash interrupted is in force"
    );

    // And generation 2 is now refused.
    fs::write(f.config(), &g2).expect("roll back to 2");
    assert_refused_as_rollback(&f);
}

#[test]
fn a_write_on_top_of_an_interrupted_one_finishes_it_first() {
    let (f, _, g2) = store_with_history();
    rotate_crashing_at(&f, "config-generation-recorded");
    // Another offline write, crashed just after staging its own config:
    // the interrupted write it found (generation 3) must not be lost.
    let mut cmd = strata(["scope", "create"]);
    cmd.arg(&f.store)
        .args(["sc2", "--key", "sck2"])
        .args(f.vault_args())
        .env("STRATA_TEST_CRASH_AT", "config-staged");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(99), "{}", describe(&out));
    let conf = fs::read(f.config()).expect("config");
    assert_eq!(
        generation(&conf),
        3,
        "the recorded write was put in place first"
    );
    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("kept")).expect("read"),
        b"kept through the crash"
    );
    m.unmount();
    fs::write(f.config(), &g2).expect("roll back to 2");
    assert_refused_as_rollback(&f);
}
