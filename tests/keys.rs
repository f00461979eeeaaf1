//! Key lifecycle through the CLI and real mounts: rotation rewraps without
//! rewriting a block, revocation blocks exactly the disks that depend on a
//! key (at mount and live) and enabling restores them, passphrase change and
//! recovery, rollback and region rules.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn vault_cmd(f: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&OsStr> = vec![OsStr::new("vault")];
    all.extend(args.iter().map(OsStr::new));
    all.extend([
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
    ]);
    run(strata(all))
}

/// Every backing file's bytes, by path.
fn backing_bytes(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(&store.join("disks"))
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .map(|p| {
            let b = fs::read(&p).expect("read backing file");
            (p, b)
        })
        .collect()
}

fn sqlite_rows(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).expect("open db");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

fn make_db(path: &Path, rows: i64) {
    let mut c = rusqlite::Connection::open(path).expect("open db");
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(a INTEGER, b TEXT);")
        .expect("schema");
    let tx = c.transaction().expect("tx");
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![i, format!("row {i}")],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
}

#[test]
fn rotation_rewraps_keys_and_rewrites_no_block() {
    let f = Fixture::new("max");
    let m = f.mount();
    fs::write(f.disk("data").join("file"), pattern(1, 50_000)).expect("write");
    make_db(&f.disk("os").join("db"), 2_000);
    m.unmount();
    let before = backing_bytes(&f.store);
    let conf_before = fs::read_to_string(f.config()).expect("config");
    for key in ["max-cmk", "guest-kek", "host", "platform"] {
        let out = vault_cmd(
            &f,
            &[
                "key",
                "rotate",
                key,
                "--store",
                f.store.to_str().expect("utf-8"),
            ],
        );
        let text = assert_ok(&out, "vault key rotate");
        assert!(text.contains("version 2"), "{text}");
    }
    assert_eq!(
        backing_bytes(&f.store),
        before,
        "rotation rewrote backing data"
    );
    let conf_after = fs::read_to_string(f.config()).expect("config");
    assert_ne!(conf_before, conf_after, "the config was rewrapped");
    assert!(
        !conf_after.contains("\"version\": 1"),
        "every key moved to version 2:\n{conf_after}"
    );
    let m = f.mount();
    assert_bytes_eq(
        &fs::read(f.disk("data").join("file")).expect("read"),
        &pattern(1, 50_000),
        "after rotation",
    );
    assert_eq!(sqlite_rows(&f.disk("os").join("db")), 2_000);
    m.unmount();
}

#[test]
fn rotation_without_store_rewraps_at_next_mount() {
    let f = Fixture::new("compliance");
    let m = f.mount();
    fs::write(f.disk("data").join("file"), b"kept").expect("write");
    m.unmount();
    assert_ok(&vault_cmd(&f, &["key", "rotate", "cmk"]), "rotate");
    let before = backing_bytes(&f.store);
    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("file")).expect("read"),
        b"kept"
    );
    m.unmount();
    let conf: serde_json::Value =
        serde_json::from_slice(&fs::read(f.config()).expect("config")).expect("json");
    let cmk_versions: Vec<u64> = conf["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .flat_map(|d| d["layers"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["key"]["name"] == "cmk")
        .map(|l| l["key"]["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(
        cmk_versions,
        [2, 2],
        "os and data rewrapped to cmk version 2 at mount"
    );
    assert_eq!(backing_bytes(&f.store), before);
}

fn revoked(r: std::io::Result<Vec<u8>>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(strata::platform::errno::REVOKED))
}

#[test]
fn revoking_the_scope_key_blocks_exactly_its_disks_live_and_at_mount() {
    let f = Fixture::new("max");
    let m = f.mount();
    let data = f.disk("data").join("db");
    make_db(&data, 1_000);
    fs::write(f.disk("temp").join("scratch"), b"temp data").expect("write temp");
    assert_ok(&vault_cmd(&f, &["key", "disable", "max-cmk"]), "disable");
    let blocked = poll_until(Duration::from_secs(10), || {
        revoked(fs::read(f.disk("data").join("db")))
    });
    assert!(blocked, "data disk still served 10 s after revocation");
    assert!(
        revoked(fs::read(f.disk("os").join("anything"))) || fs::read_dir(f.disk("os")).is_err()
    );
    assert_eq!(
        fs::read(f.disk("temp").join("scratch")).expect("temp still served"),
        b"temp data"
    );
    assert_ok(&vault_cmd(&f, &["key", "enable", "max-cmk"]), "enable");
    let back = poll_until(Duration::from_secs(10), || fs::read(&data).is_ok());
    assert!(back, "data disk not back 10 s after enabling");
    assert_eq!(sqlite_rows(&data), 1_000);
    m.unmount();

    assert_ok(
        &vault_cmd(&f, &["key", "disable", "max-cmk@1"]),
        "disable version 1",
    );
    let m = f.mount();
    assert!(revoked(fs::read(&data)), "refused at mount");
    assert!(
        m.log().contains("max-cmk"),
        "the refusal names the key: {}",
        m.log()
    );
    fs::write(f.disk("temp").join("x"), b"y").expect("temp serves");
    m.unmount();
    assert_ok(&vault_cmd(&f, &["key", "enable", "max-cmk@1"]), "enable");
    let m = f.mount();
    assert_eq!(sqlite_rows(&data), 1_000, "nothing lost by a revocation");
    m.unmount();
}

#[test]
fn passphrase_change_and_recovery_key() {
    let f = Fixture::new("general");
    let recovery = f
        .init_stdout
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 55 && l.chars().filter(|c| *c == '-').count() == 7)
        .expect("recovery key printed at init")
        .to_string();
    let newpass = f.path().join("newpass");
    fs::write(&newpass, "a new passphrase\n").expect("write");
    let rk = f.path().join("recovery");
    fs::write(&rk, &recovery).expect("write");
    let store_conf = fs::read(f.config()).expect("config");
    let out = vault_cmd(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            newpass.to_str().expect("utf-8"),
            "--keep-recovery-key",
            rk.to_str().expect("utf-8"),
        ],
    );
    assert_ok(&out, "passwd");
    assert_eq!(
        fs::read(f.config()).expect("config"),
        store_conf,
        "passwd touched the store"
    );
    let old = vault_cmd(&f, &["list"]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("wrong passphrase"));
    fs::copy(&newpass, &f.pass).expect("use the new passphrase");
    assert_ok(&vault_cmd(&f, &["list"]), "list with the new passphrase");
    let out = run(strata([
        OsStr::new("vault"),
        OsStr::new("list"),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--recovery-key-file"),
        rk.as_os_str(),
    ]));
    assert_ok(&out, "list with the recovery key");
}

#[test]
fn rolled_back_config_is_refused_as_tampering() {
    let f = Fixture::new("compliance");
    let old = fs::read(f.config()).expect("config");
    assert_ok(
        &vault_cmd(
            &f,
            &[
                "key",
                "rotate",
                "cmk",
                "--store",
                f.store.to_str().expect("utf-8"),
            ],
        ),
        "rotate",
    );
    fs::write(f.config(), &old).expect("roll back");
    let out = run(f.mount_command(&[]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rolled back") && err.contains("tampered"),
        "{err}"
    );
}

#[test]
fn guest_layer_key_from_another_region_is_refused() {
    let f = Fixture::empty("os-policy");
    let out = run(strata([
        OsStr::new("vault"),
        OsStr::new("create"),
        OsStr::new("--region"),
        OsStr::new("westeurope"),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
        OsStr::new("--kdf-memory"),
        OsStr::new("1024"),
        OsStr::new("--kdf-iterations"),
        OsStr::new("1"),
    ]));
    assert_ok(&out, "vault create");
    let mut cmd = strata([
        OsStr::new("init"),
        f.store.as_os_str(),
        OsStr::new("--preset"),
        OsStr::new("os-policy"),
        OsStr::new("--region"),
        OsStr::new("eastus"),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
    ]);
    let out = run_for(&mut cmd, COMMAND_TIMEOUT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guest layer's key vault must be in the store's region"),
        "{err}"
    );
    assert!(!f.config().exists(), "no config written");
}

#[test]
fn disks_and_scopes_follow_the_cloud_rules() {
    let f = Fixture::new("full");
    let s = f.store.to_str().expect("utf-8");
    assert_ok(
        &f.cli(&["scope", "create", s, "team", "--key", "team-cmk"], true),
        "scope create",
    );
    let out = f.cli(&["scope", "create", s, "other", "--key", "team-cmk"], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already bound to scope team"));
    let out = f.cli(
        &["disk", "add", s, "scratch", "--kind", "temp", "--guest"],
        true,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("guest layer never covers temp disks"));
    let out = f.cli(&["disk", "add", s, "x", "--host", "off"], true);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host encryption is chosen at `strata init`")
    );
    assert_ok(
        &f.cli(
            &["disk", "add", s, "data2", "--guest", "--scope", "team"],
            true,
        ),
        "disk add",
    );
    let show = assert_ok(
        &f.cli(&["disk", "show", s, "data2", "--json"], false),
        "disk show",
    );
    let v: serde_json::Value = serde_json::from_str(&show).expect("json");
    assert_eq!(v["scope"], "team");
    let keys: Vec<&str> = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["guest-kek", "host", "team-cmk"]);
    let m = f.mount();
    fs::write(f.disk("data2").join("f"), b"on the new disk").expect("write");
    assert_eq!(
        fs::read(f.disk("data2").join("f")).expect("read"),
        b"on the new disk"
    );
    assert_ok(&vault_cmd(&f, &["key", "disable", "team-cmk"]), "disable");
    assert!(poll_until(Duration::from_secs(10), || revoked(fs::read(
        f.disk("data2").join("f")
    ))));
    fs::write(f.disk("data").join("g"), b"other disks are served").expect("data still served");
    assert_ok(&vault_cmd(&f, &["key", "enable", "team-cmk"]), "enable");
    assert!(poll_until(Duration::from_secs(10), || fs::read(
        f.disk("data2").join("f")
    )
    .is_ok()));
    m.unmount();
}

/// Runs `strata disk …` with the vault, optionally crashing at a crash point.
fn disk_cmd(f: &Fixture, args: &[&str], crash_after: Option<u64>) -> std::process::Output {
    let mut all: Vec<&OsStr> = vec![OsStr::new("disk")];
    all.extend(args.iter().map(OsStr::new));
    all.extend([
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
    ]);
    let mut cmd = strata(all);
    if let Some(n) = crash_after {
        cmd.env("STRATA_TEST_CRASH_AFTER", n.to_string());
    }
    run_for(&mut cmd, COMMAND_TIMEOUT)
}

fn fill(f: &Fixture) -> BTreeMap<PathBuf, Node> {
    let d = f.disk("data");
    fs::create_dir_all(d.join("x/y")).expect("mkdir");
    for i in 0..6u64 {
        fs::write(
            d.join(format!("x/f{i}")),
            pattern(i, 10_000 + i as usize * 7_000),
        )
        .expect("write");
    }
    fs::write(d.join("x/y/deep"), b"deep").expect("write");
    std::os::unix::fs::symlink("x/f1", d.join("link")).expect("symlink");
    set_xattr(&d.join("x/f2"), "user.k", b"v").expect("xattr");
    make_db(&d.join("db"), 3_000);
    snapshot(&d)
}

fn rekey_resumes_after_crashes(args: &[&str], expect_generation: Option<u64>) {
    let f = Fixture::new("max");
    let m = f.mount();
    let before = fill(&f);
    m.unmount();
    let s = f.store.to_str().expect("utf-8").to_string();
    let mut full: Vec<&str> = args.to_vec();
    full.insert(1, &s);
    for crash in [1u64, 2, 3] {
        let out = disk_cmd(&f, &full, Some(crash));
        assert_eq!(
            out.status.code(),
            Some(99),
            "crash point {crash}: {}",
            describe(&out)
        );
        let m = f.mount();
        assert!(
            revoked(fs::read(f.disk("data").join("db"))),
            "a half re-encrypted disk is refused"
        );
        m.unmount();
    }
    assert_ok(&disk_cmd(&f, &full, None), "finish");
    let conf = fs::read_to_string(f.config()).expect("config");
    assert!(
        !conf.contains("pending"),
        "the old DEKs are retired at the end"
    );
    assert!(
        !f.store.join("disks/.rekey-old-data").exists()
            && !f.store.join("disks/.rekey-new-data").exists()
    );
    if let Some(g) = expect_generation {
        assert!(conf.contains(&format!("\"generation\": {g}")), "{conf}");
    }
    let m = f.mount();
    assert_eq!(
        snapshot(&f.disk("data")),
        before,
        "every file reads the same after the re-encryption"
    );
    assert_eq!(
        get_xattr(&f.disk("data").join("x/f2"), "user.k").expect("xattr"),
        b"v"
    );
    assert_eq!(sqlite_rows(&f.disk("data").join("db")), 3_000);
    m.unmount();
}

#[test]
fn rekey_of_the_storage_layers_resumes_after_crashes() {
    rekey_resumes_after_crashes(&["rekey", "data", "--layer", "storage"], Some(2));
}

#[test]
fn guest_encryption_of_a_disk_with_data_resumes_after_crashes() {
    let f = Fixture::new("general");
    let m = f.mount();
    let before = fill(&f);
    m.unmount();
    let s = f.store.to_str().expect("utf-8").to_string();
    let args = ["encrypt", s.as_str(), "data", "--guest"];
    let out = disk_cmd(&f, &args, Some(5));
    assert_eq!(out.status.code(), Some(99));
    assert_ok(&disk_cmd(&f, &args, None), "finish");
    let show = assert_ok(
        &disk_cmd(&f, &["show", s.as_str(), "data", "--json"], None),
        "show",
    );
    let v: serde_json::Value = serde_json::from_str(&show).expect("json");
    assert_eq!(v["guest"], true);
    let m = f.mount();
    assert_eq!(snapshot(&f.disk("data")), before);
    let again = disk_cmd(&f, &args, None);
    assert_eq!(
        again.status.code(),
        Some(1),
        "re-encryption refuses while mounted"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("mounted"));
    m.unmount();
}

/// The key version wrapping the storage-cmk DEK in `disk show --json`.
fn cmk_version(show: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(show).expect("disk show JSON");
    v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["layer"] == "storage-cmk")
        .and_then(|l| l["key_version"].as_u64())
        .expect("storage-cmk layer")
}

#[test]
fn rotating_a_revoked_key_does_not_lift_the_revocation() {
    let f = Fixture::new("max");
    let m = f.mount();
    let data = f.disk("data").join("db");
    make_db(&data, 500);
    m.unmount();
    assert_ok(&vault_cmd(&f, &["key", "disable", "max-cmk@1"]), "disable");
    let store = f.store.to_string_lossy().into_owned();
    assert_ok(
        &vault_cmd(&f, &["key", "rotate", "max-cmk", "--store", &store]),
        "rotate",
    );
    // The DEKs stay wrapped by the disabled version 1: no rewrap could
    // unwrap them, so the disks stay revoked, at mount as in the config.
    let m = f.mount();
    assert!(
        revoked(fs::read(&data)),
        "a rotation must not lift a revocation"
    );
    m.unmount();
    let show = assert_ok(
        &f.cli(&["disk", "show", &store, "data", "--json"], true),
        "disk show",
    );
    assert_eq!(cmk_version(&show), 1, "{show}");
    assert_ok(&vault_cmd(&f, &["key", "enable", "max-cmk@1"]), "enable");
    // Enabled again, the next mount rewraps to version 2 and serves.
    let m = f.mount();
    assert_eq!(sqlite_rows(&data), 500);
    m.unmount();
    let show = assert_ok(
        &f.cli(&["disk", "show", &store, "data", "--json"], true),
        "disk show",
    );
    assert_eq!(cmk_version(&show), 2, "{show}");
}

#[test]
fn a_key_of_the_wrong_kind_is_refused() {
    let f = Fixture::new("general");
    let store = f.store.to_string_lossy().into_owned();
    for (args, word) in [
        (
            vec!["disk", "add", &store, "d1", "--sse", "customer:platform"],
            "platform key",
        ),
        (
            vec!["disk", "add", &store, "d2", "--guest-key", "platform"],
            "platform key",
        ),
    ] {
        let out = f.cli(&args, true);
        assert!(
            !out.status.success(),
            "{args:?} accepted: {}",
            describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(word) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
