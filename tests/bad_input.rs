//! What bad input gets from the CLI: one line on stderr starting
//! `strata: ` that says what is wrong, exit code 1 (2 for usage errors),
//! and no file changed: the vault, its backup and the store are
//! byte-identical before and after a failed command, and nothing is left
//! mounted.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every file below the fixture with its contents, but for the logs and the
/// lock files of the store and of the vault's mounts (they hold no data: a
/// refused mount may have taken its locks before it was refused).
fn state(f: &Fixture) -> BTreeMap<PathBuf, Node> {
    snapshot(f.path())
        .into_iter()
        .filter(|(p, _)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !p.starts_with("logs") && name != "strata.lock" && !name.ends_with(".inuse")
        })
        .collect()
}

/// Runs `cmd`, which must fail with exit 1 and one `strata: ` line that
/// contains every one of `needles` (case-insensitive). A mount that
/// unexpectedly succeeds is unmounted before the test fails.
#[track_caller]
fn assert_fails(f: &Fixture, cmd: Command, needles: &[&str]) -> String {
    let described = format!("{cmd:?}");
    let out = run(cmd);
    if out.status.success() && is_mounted(&f.mnt) {
        let _ = run(strata([OsStr::new("umount"), f.mnt.as_os_str()]));
        lazy_unmount(&f.mnt);
    }
    check_failure(&described, &out, 1, needles)
}

#[track_caller]
fn check_failure(described: &str, out: &Output, code: i32, needles: &[&str]) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{described}: wrong exit code; {}",
        describe(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if code == 1 {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{described}: expected one line on stderr, got:\n{stderr}"
        );
        assert!(
            lines[0].starts_with("strata: "),
            "{described}: stderr does not start with 'strata: ': {stderr}"
        );
        let lower = lines[0].to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "{described}: error line lacks {n:?}: {}",
                lines[0]
            );
        }
        assert!(!stderr.contains("panicked"), "{described}: panic: {stderr}");
    }
    stderr
}

/// `strata mount` without `-f`, as a user types it.
fn mount_cmd(store: &Path, mnt: &Path, vault: &Path, pass: &Path) -> Command {
    strata([
        OsStr::new("mount"),
        store.as_os_str(),
        mnt.as_os_str(),
        OsStr::new("--vault"),
        vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        pass.as_os_str(),
    ])
}

fn vault_cmd(sub: &[&str], vault: &Path, pass: &Path) -> Command {
    let mut c = strata(["vault"]);
    c.args(sub)
        .arg("--vault")
        .arg(vault)
        .arg("--passphrase-file")
        .arg(pass);
    c
}

fn init_cmd(store: &Path, vault: &Path, pass: &Path, preset: &str) -> Command {
    let mut c = strata(["init"]);
    c.arg(store)
        .arg("--vault")
        .arg(vault)
        .arg("--passphrase-file")
        .arg(pass)
        .args([
            "--preset",
            preset,
            "--kdf-memory",
            "1024",
            "--kdf-iterations",
            "1",
        ]);
    c
}

fn wrong_pass(f: &Fixture) -> PathBuf {
    let p = f.path().join("wrong-passphrase");
    fs::write(&p, "not-the-pass\n").expect("write wrong passphrase");
    p
}

#[test]
fn wrong_passphrase_is_refused_everywhere_and_changes_nothing() {
    let f = Fixture::new("general");
    let wrong = wrong_pass(&f);
    let before = state(&f);
    assert_fails(
        &f,
        mount_cmd(&f.store, &f.mnt, &f.vault, &wrong),
        &["wrong passphrase"],
    );
    assert_fails(
        &f,
        vault_cmd(&["list"], &f.vault, &wrong),
        &["wrong passphrase"],
    );
    assert_fails(
        &f,
        vault_cmd(&["list", "--json"], &f.vault, &wrong),
        &["wrong passphrase"],
    );
    assert_fails(
        &f,
        vault_cmd(&["key", "create", "k1"], &f.vault, &wrong),
        &["wrong passphrase"],
    );
    assert_fails(
        &f,
        vault_cmd(
            &["key", "create", "k2", "--kind", "customer"],
            &f.vault,
            &wrong,
        ),
        &["wrong passphrase"],
    );
    let store2 = f.path().join("store2");
    assert_fails(
        &f,
        init_cmd(&store2, &f.vault, &wrong, "general"),
        &["wrong passphrase"],
    );
    assert!(
        !store2.join("strata.conf").exists(),
        "failed init left a config behind"
    );
    assert!(
        !store2.exists() || list(&store2).is_empty(),
        "failed init left files behind: {:?}",
        walk(&store2)
    );
    if store2.exists() {
        fs::remove_dir(&store2).expect("remove empty store2");
    }
    assert!(
        state(&f) == before,
        "a command refused for a wrong passphrase changed files"
    );
    assert!(!is_mounted(&f.mnt));
    // The right passphrase still works afterwards.
    assert_ok(&run(vault_cmd(&["list"], &f.vault, &f.pass)), "vault list");
    f.mount().unmount();
}

#[test]
fn missing_vault_is_named_and_not_created() {
    let f = Fixture::new("general");
    let nope = f.path().join("no-such-vault");
    let before = state(&f);
    let path = nope.to_string_lossy().into_owned();
    assert_fails(
        &f,
        mount_cmd(&f.store, &f.mnt, &nope, &f.pass),
        &["not found", &path],
    );
    assert_fails(
        &f,
        vault_cmd(&["list"], &nope, &f.pass),
        &["not found", &path],
    );
    assert_fails(
        &f,
        vault_cmd(&["key", "create", "k"], &nope, &f.pass),
        &["not found", &path],
    );
    assert!(!nope.exists(), "a command created the missing vault");
    assert!(state(&f) == before);
}

#[test]
fn missing_passphrase_file_is_named() {
    let f = Fixture::new("general");
    let nope = f.path().join("no-such-passphrase");
    let before = state(&f);
    let path = nope.to_string_lossy().into_owned();
    assert_fails(&f, mount_cmd(&f.store, &f.mnt, &f.vault, &nope), &[&path]);
    assert_fails(&f, vault_cmd(&["list"], &f.vault, &nope), &[&path]);
    let vault2 = f.path().join("vault2");
    let mut create = vault_cmd(&["create"], &vault2, &nope);
    create.args(["--kdf-memory", "1024", "--kdf-iterations", "1"]);
    assert_fails(&f, create, &[&path]);
    assert!(!vault2.exists(), "vault created without a passphrase");
    assert!(state(&f) == before);
}

#[test]
fn store_of_another_vault_is_refused() {
    let f = Fixture::new("compliance");
    let other = f.path().join("other-vault");
    let mut create = vault_cmd(&["create"], &other, &f.pass);
    create.args(["--kdf-memory", "1024", "--kdf-iterations", "1"]);
    assert_ok(&run(create), "vault create");
    let before = state(&f);
    assert_fails(
        &f,
        mount_cmd(&f.store, &f.mnt, &other, &f.pass),
        &["another vault"],
    );
    assert!(
        state(&f) == before,
        "mount with another vault changed files"
    );
    f.mount().unmount();
}

#[test]
fn existing_vault_is_never_overwritten() {
    let f = Fixture::new("general");
    let before = state(&f);
    let mut create = vault_cmd(&["create"], &f.vault, &f.pass);
    create.args(["--kdf-memory", "1024", "--kdf-iterations", "1"]);
    assert_fails(&f, create, &[]);
    assert!(
        state(&f) == before,
        "vault create over an existing vault changed files"
    );
    f.mount().unmount();
}

/// Applies `edit` to the parsed config and writes it back.
fn edit_config(f: &Fixture, edit: impl FnOnce(&mut Value) -> bool) {
    let text = fs::read_to_string(f.config()).expect("read strata.conf");
    let mut v: Value = serde_json::from_str(&text).expect("strata.conf is JSON");
    assert!(
        v.get("tag").is_some(),
        "strata.conf has no \"tag\" field: {text}"
    );
    assert!(
        edit(&mut v),
        "the config has nothing to tamper with in this way:\n{text}"
    );
    fs::write(
        f.config(),
        serde_json::to_string_pretty(&v).expect("serialize"),
    )
    .expect("write strata.conf");
}

/// Sets every `"key": from` (at any depth) to `to`; whether any was found.
fn replace_field(v: &mut Value, key: &str, from: &Value, to: &Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut hit = false;
            for (k, child) in map.iter_mut() {
                if k == key && child == from {
                    *child = to.clone();
                    hit = true;
                } else {
                    hit |= replace_field(child, key, from, to);
                }
            }
            hit
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |hit, c| replace_field(c, key, from, to) | hit),
        _ => false,
    }
}

/// Removes the guest layer wherever a disk describes it, keeping the
/// config well-formed: a `"guest": true` becomes false, and a `"guest"`
/// entry (a string, or an object with such a layer, kind or name) leaves
/// its list.
fn drop_guest_layer(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut hit = false;
            if let Some(g) = map.get_mut("guest") {
                if *g == Value::Bool(true) {
                    *g = Value::Bool(false);
                    hit = true;
                }
            }
            for child in map.values_mut() {
                hit |= drop_guest_layer(child);
            }
            hit
        }
        Value::Array(items) => {
            let before = items.len();
            items.retain(|i| {
                let named_guest = |x: &Value| x.as_str() == Some("guest");
                !(named_guest(i)
                    || i.get("kind").is_some_and(named_guest)
                    || i.get("layer").is_some_and(named_guest)
                    || i.get("name").is_some_and(named_guest))
            });
            let mut hit = items.len() != before;
            for child in items.iter_mut() {
                hit |= drop_guest_layer(child);
            }
            hit
        }
        _ => false,
    }
}

/// Checks a tampered config is refused, that the failed mount changed no
/// file, and that the untouched config mounts (so the refusal was for the
/// tampering).
fn assert_tamper_refused(f: &Fixture, needles: &[&str], edit: impl FnOnce(&mut Value) -> bool) {
    let original = fs::read(f.config()).expect("read config");
    edit_config(f, edit);
    let before = state(f);
    assert_fails(f, mount_cmd(&f.store, &f.mnt, &f.vault, &f.pass), needles);
    assert!(state(f) == before, "refused mount changed files");
    fs::write(f.config(), original).expect("restore config");
    f.mount().unmount();
}

#[test]
fn config_with_host_encryption_turned_off_is_tampered() {
    let f = Fixture::new("full");
    assert_tamper_refused(&f, &["tampered"], |v| {
        replace_field(
            v,
            "host_encryption",
            &Value::Bool(true),
            &Value::Bool(false),
        )
    });
}

#[test]
fn config_with_a_layer_removed_is_tampered() {
    let f = Fixture::new("os-policy");
    assert_tamper_refused(&f, &["tampered"], drop_guest_layer);
}

#[test]
fn config_with_an_altered_tag_is_tampered() {
    let f = Fixture::new("general");
    assert_tamper_refused(&f, &["tampered"], |v| {
        let Some(Value::String(tag)) = v.get_mut("tag") else {
            return false;
        };
        let first = tag.chars().next().unwrap_or('0');
        let swapped = if first == 'a' { 'b' } else { 'a' };
        tag.replace_range(0..first.len_utf8(), &swapped.to_string());
        true
    });
}

#[test]
fn config_of_a_newer_format_is_refused_by_version() {
    let f = Fixture::new("general");
    assert_tamper_refused(&f, &["format version"], |v| {
        let Some(format) = v.get_mut("format") else {
            return false;
        };
        *format = Value::from(99);
        true
    });
}

#[test]
fn missing_mountpoint_is_named() {
    let f = Fixture::new("general");
    let nope = f.path().join("no-such-mountpoint");
    let before = state(&f);
    assert_fails(
        &f,
        mount_cmd(&f.store, &nope, &f.vault, &f.pass),
        &["does not exist"],
    );
    assert!(!nope.exists(), "mount created the missing mountpoint");
    assert!(state(&f) == before);
}

#[test]
fn busy_mountpoint_is_refused_and_the_first_mount_keeps_working() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("before"), b"written by the first mount").expect("write");
    let out = run(mount_cmd(&f.store, &f.mnt, &f.vault, &f.pass));
    let stderr = check_failure("second mount on the same mountpoint", &out, 1, &[]).to_lowercase();
    assert!(
        stderr.contains("already mounted") || stderr.contains("not empty"),
        "second mount: {stderr}"
    );
    // The first mount is untouched and still serves.
    assert_eq!(
        fs::read(f.disk("data").join("before")).expect("read"),
        b"written by the first mount"
    );
    fs::write(f.disk("data").join("after"), b"still serving").expect("write after refused mount");
    m.unmount();

    let busy = f.path().join("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("somebody's file"), b"x").expect("write");
    let out = run(mount_cmd(&f.store, &busy, &f.vault, &f.pass));
    if out.status.success() {
        let _ = run(strata([OsStr::new("umount"), busy.as_os_str()]));
        lazy_unmount(&busy);
    }
    let stderr = check_failure("mount on a non-empty directory", &out, 1, &[]).to_lowercase();
    assert!(
        stderr.contains("not empty") || stderr.contains("already mounted"),
        "{stderr}"
    );
    assert_eq!(list(&busy), vec!["somebody's file"]);
    let m = f.mount();
    assert_eq!(
        fs::read(f.disk("data").join("after")).expect("read"),
        b"still serving"
    );
    m.unmount();
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::empty("general");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec![],
        vec![OsStr::new("frobnicate")],
        vec![OsStr::new("mount")],
        vec![OsStr::new("mount"), f.store.as_os_str()],
        vec![
            OsStr::new("init"),
            f.store.as_os_str(),
            OsStr::new("--vault"),
            f.vault.as_os_str(),
            OsStr::new("--passphrase-file"),
            f.pass.as_os_str(),
            OsStr::new("--preset"),
            OsStr::new("bogus"),
        ],
        vec![
            OsStr::new("mount"),
            f.store.as_os_str(),
            f.mnt.as_os_str(),
            OsStr::new("--no-such-flag"),
        ],
    ];
    for case in cases {
        let described = format!("strata {case:?}");
        let out = run(strata(case));
        check_failure(&described, &out, 2, &[]);
    }
    assert!(
        !f.vault.exists() && !f.store.exists(),
        "a usage error created files"
    );
}

/// 48 digits in 8 groups of 6, each group a multiple of 11.
fn recovery_keys(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|w| {
            let groups: Vec<&str> = w.split('-').collect();
            groups.len() == 8 && groups.iter().all(|g| g.len() == 6)
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn init_prints_a_checkable_recovery_key_only_when_it_creates_the_vault() {
    let f = Fixture::new("general");
    let keys = recovery_keys(&f.init_stdout);
    assert_eq!(
        keys.len(),
        1,
        "init output should carry one recovery key:\n{}",
        f.init_stdout
    );
    for g in keys[0].split('-') {
        let n: u32 = g.parse().expect("digits");
        assert_eq!(n % 11, 0, "recovery key group {g} is not a multiple of 11");
    }
    let store2 = f.path().join("store2");
    let out = run(init_cmd(&store2, &f.vault, &f.pass, "max"));
    let stdout = assert_ok(&out, "second init with the same vault");
    assert!(
        recovery_keys(&stdout).is_empty(),
        "recovery key printed again:\n{stdout}"
    );
    assert!(store2.join("strata.conf").is_file());
    let json = assert_ok(
        &run(vault_cmd(&["list", "--json"], &f.vault, &f.pass)),
        "vault list --json",
    );
    serde_json::from_str::<Value>(&json)
        .unwrap_or_else(|e| panic!("vault list --json is not JSON ({e}):\n{json}"));
    assert_ok(
        &run(vault_cmd(
            &["key", "create", "cmk-extra", "--kind", "customer"],
            &f.vault,
            &f.pass,
        )),
        "key create",
    );
    let json = assert_ok(
        &run(vault_cmd(&["list", "--json"], &f.vault, &f.pass)),
        "vault list --json",
    );
    assert!(json.contains("cmk-extra"), "new key not listed:\n{json}");
}
