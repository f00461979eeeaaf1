//! Customer keys held by a key service (OpenBao Transit, started here on a
//! free loopback port): envelope encryption bound to each disk, one decrypt
//! per disk and layer at mount, rotation and rewrap in the service,
//! revocation reaching running mounts and lifted without a remount, the
//! grace period while the service is away, two machines in one scope, and
//! bad input (credentials, TLS, keys, a service answering garbage or too
//! slowly) getting one clear line. Secrets never show.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::bao::{self, Server, ROOT};
use common::*;

/// A fixture with a vault but no store yet.
fn fixture(preset: &str) -> Fixture {
    let f = Fixture::empty(preset);
    assert_ok(
        &f.cli(
            &[
                "vault",
                "create",
                "--kdf-memory",
                "1024",
                "--kdf-iterations",
                "1",
            ],
            true,
        ),
        "vault create",
    );
    f
}

/// `strata vault key create NAME` held by `server`'s Transit key `key`.
fn create_key(f: &Fixture, name: &str, addrs: &[String], key: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["vault".into(), "key".into(), "create".into(), name.into()];
    for a in addrs {
        args.push("--kms-address".into());
        args.push(a.clone());
    }
    args.extend(["--kms-key".to_string(), key.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.cli(&args, true)
}

/// `strata init` with `--cmk cmk`.
fn init(f: &Fixture, cmk: &str) {
    let store = f.store.to_str().expect("utf-8");
    assert_ok(
        &f.cli(&["init", store, "--preset", &f.preset, "--cmk", cmk], true),
        "strata init",
    );
}

fn revoked<T>(r: std::io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(strata::platform::errno::REVOKED))
}

fn config(f: &Fixture) -> serde_json::Value {
    serde_json::from_slice(&fs::read(f.config()).expect("config")).expect("config JSON")
}

/// Versions of every `storage-cmk` DEK in the config: disks, snapshots.
fn cmk_versions(f: &Fixture) -> Vec<u64> {
    let c = config(f);
    let mut holders: Vec<serde_json::Value> = c["disks"].as_array().cloned().unwrap_or_default();
    for s in c["snapshots"].as_array().into_iter().flatten() {
        holders.push(s["source"].clone());
    }
    holders
        .iter()
        .flat_map(|d| d["layers"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["layer"] == "storage-cmk")
        .map(|l| l["key"]["version"].as_u64().expect("version"))
        .collect()
}

/// The audit log's answered requests to `path_part`.
fn audited(log: &Path, path_part: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "response")
        .filter(|v| {
            v["request"]["path"]
                .as_str()
                .is_some_and(|p| p.contains(path_part))
        })
        .count()
}

fn audited_all(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"response\""))
        .count()
}

/// Every backing file's bytes, by path.
fn backing_bytes(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(store)
        .into_iter()
        // The config and the store's bookkeeping (lock holder, session
        // record) change; no backing data may.
        .filter(|p| {
            ![
                "strata.conf",
                "strata.conf.bak",
                "strata.lock",
                "strata.sessions",
            ]
            .iter()
            .any(|n| p.ends_with(n))
        })
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .map(|p| {
            let b = fs::read(&p).expect("read backing file");
            (p, b)
        })
        .collect()
}

/// A dev server with Transit key `key` made by strata (manage) through a
/// token of the smallest policy: the server, the token and its file.
fn served_key(f: &Fixture, key: &str, extra: &[&str]) -> (Server, String, PathBuf) {
    served_key_audited(f, key, extra, None)
}

fn served_key_audited(
    f: &Fixture,
    key: &str,
    extra: &[&str],
    audit: Option<&Path>,
) -> (Server, String, PathBuf) {
    let s = bao::dev_audited(f.path(), false, audit);
    bao::write_policy(&s, ROOT, f.path(), "strata", key, true);
    let (token, file) = bao::token_file(&s, ROOT, f.path(), "strata");
    let mut args = vec![
        "--kms-token-file",
        file.to_str().expect("utf-8"),
        "--kms-manage",
    ];
    args.extend(extra);
    assert_ok(
        &create_key(f, "ext", std::slice::from_ref(&s.addr), key, &args),
        "vault key create (service)",
    );
    (s, token, file)
}

#[test]
fn a_service_key_wraps_each_dek_bound_to_its_disk_with_one_decrypt_per_disk_layer_at_mount() {
    let f = fixture("max");
    let audit = f.path().join("audit.log");
    let (s, token, _) = served_key_audited(&f, "fleet", &[], Some(&audit));
    init(&f, "ext");
    assert_eq!(cmk_versions(&f), [1, 1], "os and data under fleet v1");
    let c = config(&f);
    assert!(
        c["scopes"][0]["key"] == "ext",
        "the max scope takes the service key: {c}"
    );

    let t = Instant::now();
    let m = f.mount_with(&["--key-check-interval", "1", "-v"]);
    eprintln!(
        "MEASURED mount with a service key (max preset): {:?}",
        t.elapsed()
    );
    let content = pattern(3, 300_000);
    fs::write(f.disk("data").join("file"), &content).expect("write");
    assert_bytes_eq(
        &fs::read(f.disk("data").join("file")).expect("read"),
        &content,
        "data through the service key",
    );
    assert_eq!(
        audited(&audit, "transit/decrypt/fleet"),
        2,
        "one decrypt per disk and layer at mount (os, data)"
    );
    // Re-validation never decrypts; count what it costs.
    let before = audited_all(&audit);
    std::thread::sleep(Duration::from_secs(6));
    let per_6s = audited_all(&audit) - before;
    eprintln!("MEASURED re-validation at a 1 s interval, token auth: {per_6s} requests in 6 s");
    assert!(per_6s >= 3, "the mount checks its key: {per_6s} requests");
    assert_eq!(
        audited(&audit, "transit/decrypt/fleet"),
        2,
        "no decrypt after mount"
    );
    m.unmount();

    // The service binds each wrapped DEK to its disk: data's DEK does not
    // decrypt with os's context, even for the root token.
    let c = config(&f);
    let store_id = c["store_id"].as_str().expect("store id");
    let wrapped = |disk: &str| -> String {
        c["disks"]
            .as_array()
            .expect("disks")
            .iter()
            .find(|d| d["name"] == disk)
            .and_then(|d| d["layers"].as_array())
            .and_then(|l| l.iter().find(|w| w["layer"] == "storage-cmk"))
            .and_then(|w| w["wrapped"].as_str())
            .expect("storage-cmk DEK")
            .to_string()
    };
    let ctx = |disk: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "strata dek v1\0{store_id}\0{disk}\0storage-cmk\01\0ext"
        ))
    };
    let own = s.cli(
        ROOT,
        &[
            "write",
            "transit/decrypt/fleet",
            &format!("ciphertext={}", wrapped("data")),
            &format!("context={}", ctx("data")),
        ],
    );
    assert!(own.status.success(), "{}", describe(&own));
    let moved = s.cli(
        ROOT,
        &[
            "write",
            "transit/decrypt/fleet",
            &format!("ciphertext={}", wrapped("data")),
            &format!("context={}", ctx("os")),
        ],
    );
    assert!(
        !moved.status.success(),
        "a DEK moved to another disk decrypted"
    );

    // The token shows nowhere.
    let list = assert_ok(&f.cli(&["vault", "list", "--json"], true), "vault list");
    let show = assert_ok(
        &f.cli(
            &[
                "disk",
                "show",
                f.store.to_str().expect("utf-8"),
                "data",
                "--json",
            ],
            true,
        ),
        "disk show",
    );
    let v: serde_json::Value = serde_json::from_str(&show).expect("json");
    let cmk = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["layer"] == "storage-cmk")
        .expect("cmk layer")
        .clone();
    assert_eq!(cmk["key_service"]["latest_version"], 1, "{show}");
    for text in [
        list,
        show,
        f.all_logs(),
        fs::read_to_string(f.config()).expect("conf"),
    ] {
        assert!(!text.contains(&token), "the token leaked: {text}");
    }
}

#[test]
fn rotation_in_the_service_rewraps_disks_and_snapshots_without_rewriting_a_block() {
    let f = fixture("compliance");
    let (s, _, _) = served_key(&f, "cmk-svc", &[]);
    init(&f, "ext");
    let store = f.store.to_str().expect("utf-8").to_string();
    let m = f.mount();
    fs::write(f.disk("data").join("f"), b"kept").expect("write");
    m.unmount();
    assert_ok(
        &f.cli(&["snapshot", "create", &store, "data", "s1"], true),
        "snapshot create",
    );
    let before = backing_bytes(&f.store);
    assert_eq!(cmk_versions(&f), [1, 1, 1]);
    let out = assert_ok(
        &f.cli(&["vault", "key", "rotate", "ext", "--store", &store], true),
        "rotate",
    );
    assert!(out.contains("version 2 created in"), "{out}");
    assert_eq!(
        cmk_versions(&f),
        [2, 2, 2],
        "disks and the snapshot rewrapped"
    );
    assert_eq!(
        backing_bytes(&f.store),
        before,
        "rotation rewrote backing data"
    );
    let show = assert_ok(&f.cli(&["disk", "show", &store, "data"], true), "disk show");
    assert!(
        show.contains("version 2") && show.contains("newest version 2"),
        "{show}"
    );

    // The service rotates by itself (its own period): the next mount moves
    // the DEKs to the newest version, and old versions may be retired.
    s.ok(ROOT, &["write", "-f", "transit/keys/cmk-svc/rotate"]);
    let m = f.mount();
    assert_eq!(fs::read(f.disk("data").join("f")).expect("read"), b"kept");
    assert_eq!(
        fs::read(f.mnt.join(".snapshots/data/s1/f")).expect("snapshot read"),
        b"kept"
    );
    m.unmount();
    assert_eq!(cmk_versions(&f), [3, 3, 3], "rewrapped at mount");
    s.ok(
        ROOT,
        &[
            "write",
            "transit/keys/cmk-svc/config",
            "min_decryption_version=3",
        ],
    );
    let m = f.mount();
    assert_eq!(fs::read(f.disk("data").join("f")).expect("read"), b"kept");
    m.unmount();
    assert_eq!(backing_bytes(&f.store), before);
}

#[test]
fn a_refusal_by_the_service_reaches_the_running_mount_and_an_allow_brings_it_back() {
    let f = fixture("compliance");
    let (s, token, token_file) = served_key(&f, "k", &[]);
    init(&f, "ext");
    let m = f.mount_with(&["--key-check-interval", "2"]);
    let file = f.disk("data").join("f");
    fs::write(&file, b"data").expect("write");
    let within = |what: &str, cond: &dyn Fn() -> bool| {
        assert!(
            poll_until(Duration::from_secs(10), cond),
            "{what} within 10 s; log:\n{}",
            m.log()
        );
    };

    // Disabled (soft-deleted) through strata, enabled again.
    assert_ok(&f.cli(&["vault", "key", "disable", "ext"], true), "disable");
    within("refused after disable", &|| revoked(fs::read(&file)));
    assert_ok(&f.cli(&["vault", "key", "enable", "ext"], true), "enable");
    within("served after enable", &|| fs::read(&file).is_ok());

    // min_decryption_version raised past the DEKs' version.
    s.ok(ROOT, &["write", "-f", "transit/keys/k/rotate"]);
    s.ok(
        ROOT,
        &["write", "transit/keys/k/config", "min_decryption_version=2"],
    );
    within("refused below min_decryption_version", &|| {
        revoked(fs::read(&file))
    });
    s.ok(
        ROOT,
        &["write", "transit/keys/k/config", "min_decryption_version=1"],
    );
    within("served again", &|| {
        fs::read(&file).is_ok_and(|b| b == b"data")
    });

    // The machine's token revoked; a new token in the file brings it back.
    s.ok(ROOT, &["token", "revoke", &token]);
    within("refused after the token is revoked", &|| {
        revoked(fs::read(&file))
    });
    let (new_token, new_file) = bao::token_file(&s, ROOT, f.path(), "strata");
    fs::copy(&new_file, &token_file).expect("new token in place");
    within("served with the new token", &|| fs::read(&file).is_ok());
    assert!(!m.log().contains(&new_token) && !m.log().contains(&token));

    // The key deleted: refused, and a new mount names it.
    s.ok(
        ROOT,
        &["write", "transit/keys/k/config", "deletion_allowed=true"],
    );
    s.ok(ROOT, &["delete", "transit/keys/k"]);
    within("refused after the key is deleted", &|| {
        revoked(fs::read(&file))
    });
    m.unmount();
    let m = f.mount();
    assert!(revoked(fs::read(&file)));
    assert!(m.log().contains("has no key k"), "{}", m.log());
    m.unmount();
}

#[test]
fn a_service_that_cannot_be_reached_is_served_from_memory_for_the_grace_period() {
    let f = fixture("compliance");
    let (s, _, _) = served_key(&f, "k", &["--kms-timeout-ms", "300"]);
    init(&f, "ext");
    let m = f.mount_with(&["--key-check-interval", "1", "--key-grace", "6"]);
    let file = f.disk("data").join("f");
    fs::write(&file, b"data").expect("write");
    s.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let early = fs::read(&file);
    let logged = m.log();
    let after_grace = poll_until(Duration::from_secs(15), || revoked(fs::read(&file)));
    let refused_at = stopped.elapsed();
    s.signal(libc::SIGCONT);
    assert_eq!(early.expect("served within the grace period"), b"data");
    assert!(
        logged.contains("key check failed"),
        "each failed check is logged:\n{logged}"
    );
    assert!(
        after_grace,
        "still served 15 s after the grace period began"
    );
    assert!(
        refused_at >= Duration::from_secs(6),
        "refused before the grace ran out: {refused_at:?}"
    );
    // Refused first while the mount flushes, then revoked with the reason.
    assert!(
        poll_until(Duration::from_secs(10), || m.log().contains("grace period")),
        "{}",
        m.log()
    );
    assert!(
        poll_until(Duration::from_secs(10), || fs::read(&file).is_ok()),
        "not served again 10 s after the service came back"
    );
    m.unmount();

    // A new mount while it is away fails with one line naming it.
    s.signal(libc::SIGSTOP);
    let t = Instant::now();
    let out = run(f.mount_command(&[]));
    s.signal(libc::SIGCONT);
    assert!(!out.status.success(), "mounted without its key service");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key service unreachable") && err.contains(&s.addr),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(!is_mounted(&f.mnt));
}

/// A server on a free port that answers every request with `reply`, or
/// never answers when `reply` is None; it serves until the test ends.
fn fake_service(reply: Option<&'static [u8]>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten().take(64) {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = conn.write_all(r);
                }
                None => held.push(conn),
            }
        }
    });
    addr
}

#[test]
fn bad_service_input_gets_one_clear_line_and_leaves_the_vault_as_it_was() {
    let f = fixture("compliance");
    let s = bao::dev(f.path(), true);
    bao::write_policy(&s, ROOT, f.path(), "strata", "k", true);
    let (token, good) = bao::token_file(&s, ROOT, f.path(), "strata");
    s.ok(ROOT, &["write", "-f", "transit/keys/plain"]);
    s.ok(ROOT, &["write", "transit/keys/signer", "type=ed25519"]);
    bao::write_policy(&s, ROOT, f.path(), "other", "plain", false);
    let ca = s.ca.clone().expect("TLS dev server has a CA");
    let ca = ca.to_str().expect("utf-8");
    let bogus = bao::secret_file(&f.path().join("bogus"), "s.not-a-real-token-value");
    let root = bao::secret_file(&f.path().join("root-token"), ROOT);
    let root = root.to_str().expect("utf-8");
    let loose = f.path().join("loose");
    fs::write(&loose, &token).expect("write");
    let good = good.to_str().expect("utf-8");
    let garbage = fake_service(Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!",
    ));
    let silent = fake_service(None);
    let vault_before = fs::read(&f.vault).expect("vault");
    let a = std::slice::from_ref(&s.addr);
    let cases: Vec<(Output, &str)> = vec![
        (
            create_key(&f, "e1", a, "k", &["--kms-token-file", good]),
            "certificate",
        ),
        (
            create_key(
                &f,
                "e2",
                a,
                "k",
                &[
                    "--kms-token-file",
                    bogus.to_str().expect("utf-8"),
                    "--kms-ca-file",
                    ca,
                ],
            ),
            "permission denied",
        ),
        (
            create_key(
                &f,
                "e3",
                a,
                "k",
                &[
                    "--kms-token-file",
                    loose.to_str().expect("utf-8"),
                    "--kms-ca-file",
                    ca,
                ],
            ),
            "mode 0644",
        ),
        (
            create_key(
                &f,
                "e4",
                a,
                "missing",
                &["--kms-token-file", root, "--kms-ca-file", ca],
            ),
            "has no key missing",
        ),
        (
            create_key(
                &f,
                "e5",
                a,
                "plain",
                &[
                    "--kms-token-file",
                    good,
                    "--kms-ca-file",
                    ca,
                    "--kms-manage",
                ],
            ),
            "permission denied",
        ),
        (
            create_key(
                &f,
                "e6",
                std::slice::from_ref(&garbage),
                "k",
                &["--kms-token-file", good],
            ),
            "answered garbage",
        ),
        (
            create_key(
                &f,
                "e7",
                std::slice::from_ref(&silent),
                "k",
                &["--kms-token-file", good, "--kms-timeout-ms", "200"],
            ),
            "key service unreachable",
        ),
        (
            create_key(
                &f,
                "e8",
                &["http://kms.example:8200".to_string()],
                "k",
                &["--kms-token-file", good],
            ),
            "plain http is accepted only on loopback",
        ),
        (
            create_key(
                &f,
                "e9",
                a,
                "k",
                &["--kms-token-file", good, "--kind", "host"],
            ),
            "only customer keys",
        ),
    ];
    for (i, (out, want)) in cases.iter().enumerate() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i}: {}", describe(out));
        assert!(err.contains(want), "case {i}: want {want:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "case {i}: one line: {err}");
        assert!(
            !err.contains(&token) && !err.contains("not-a-real"),
            "case {i}: {err}"
        );
    }
    assert_eq!(
        fs::read(&f.vault).expect("vault"),
        vault_before,
        "the vault was changed"
    );
    // A key of the wrong shape for strata (root may read them).
    for (key, want) in [
        ("plain", "without key derivation"),
        ("signer", "cannot encrypt and decrypt"),
    ] {
        let out = create_key(
            &f,
            "w",
            a,
            key,
            &["--kms-token-file", root, "--kms-ca-file", ca],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {}", describe(&out));
        assert!(err.contains(want), "{key}: {err}");
    }
    // With its CA, TLS works, and the key made there serves a store.
    assert_ok(
        &create_key(
            &f,
            "ext",
            a,
            "k",
            &[
                "--kms-token-file",
                good,
                "--kms-ca-file",
                ca,
                "--kms-manage",
            ],
        ),
        "create over TLS",
    );
    init(&f, "ext");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), b"over tls").expect("write");
    m.unmount();
}

#[test]
fn two_machines_in_one_scope_share_revocation_and_rotation() {
    let a = fixture("fleet");
    let b = fixture("fleet");
    let s = bao::dev(a.path(), false);
    s.ok(ROOT, &["write", "-f", "transit/keys/fleet", "derived=true"]);
    bao::write_policy(&s, ROOT, a.path(), "machine-a", "fleet", true);
    bao::write_policy(&s, ROOT, a.path(), "machine-b", "fleet", false);
    let (ra, sa, _) = bao::approle(&s, ROOT, a.path(), "a", "machine-a");
    let (rb, sb, b_secret) = bao::approle(&s, ROOT, b.path(), "b", "machine-b");
    let addr = std::slice::from_ref(&s.addr);
    let role = |r: &PathBuf, x: &PathBuf| -> Vec<String> {
        vec![
            "--kms-role-id-file".into(),
            r.to_str().expect("utf-8").into(),
            "--kms-secret-id-file".into(),
            x.to_str().expect("utf-8").into(),
        ]
    };
    let mut args_a = role(&ra, &sa);
    args_a.push("--kms-manage".into());
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b = role(&rb, &sb);
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    assert_ok(
        &create_key(&a, "fleet-cmk", addr, "fleet", &args_a),
        "key on a",
    );
    assert_ok(
        &create_key(&b, "fleet-cmk", addr, "fleet", &args_b),
        "key on b",
    );
    init(&a, "fleet-cmk");
    init(&b, "fleet-cmk");
    let ma = a.mount_with(&["--key-check-interval", "2"]);
    let mb = b.mount_with(&["--key-check-interval", "2"]);
    let fa = a.disk("data").join("f");
    let fb = b.disk("data").join("f");
    fs::write(&fa, b"on a").expect("write a");
    fs::write(&fb, b"on b").expect("write b");
    let both = |what: &str, cond: &dyn Fn(&Path) -> bool| {
        let t = Instant::now();
        assert!(
            poll_until(Duration::from_secs(10), || cond(&fa) && cond(&fb)),
            "{what}: not on both machines within 10 s\na:\n{}\nb:\n{}",
            ma.log(),
            mb.log()
        );
        eprintln!("MEASURED {what}: {:?}", t.elapsed());
    };
    assert_ok(
        &a.cli(&["vault", "key", "disable", "fleet-cmk"], true),
        "disable",
    );
    both("one revocation stops both mounts", &|p| {
        revoked(fs::read(p))
    });
    // Machine b may not administer the key.
    let out = b.cli(&["vault", "key", "enable", "fleet-cmk"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("administered there"));
    assert_ok(
        &a.cli(&["vault", "key", "enable", "fleet-cmk"], true),
        "enable",
    );
    both("one enable brings both back", &|p| fs::read(p).is_ok());

    let sa_path = a.store.to_str().expect("utf-8").to_string();
    let sb_path = b.store.to_str().expect("utf-8").to_string();
    let out = assert_ok(
        &a.cli(
            &["vault", "key", "rotate", "fleet-cmk", "--store", &sa_path],
            true,
        ),
        "rotate on a",
    );
    assert!(out.contains("version 2 created"), "{out}");
    let out = assert_ok(
        &b.cli(
            &["vault", "key", "rotate", "fleet-cmk", "--store", &sb_path],
            true,
        ),
        "rewrap on b",
    );
    assert!(out.contains("newest version there is 2"), "{out}");
    assert_eq!(cmk_versions(&a), [2, 2]);
    assert_eq!(cmk_versions(&b), [2, 2]);
    // Both mounts serve through the rewrap, and now depend on version 2.
    assert_eq!(fs::read(&fa).expect("a"), b"on a");
    assert_eq!(fs::read(&fb).expect("b"), b"on b");
    s.ok(
        ROOT,
        &[
            "write",
            "transit/keys/fleet/config",
            "min_decryption_version=2",
        ],
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        fs::read(&fa).is_ok() && fs::read(&fb).is_ok(),
        "version 2 is allowed"
    );

    // Machine b's secret id destroyed: b is cut off, a serves on.
    s.ok(
        ROOT,
        &[
            "write",
            "auth/approle/role/b/secret-id/destroy",
            &format!("secret_id={b_secret}"),
        ],
    );
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(&fb))),
        "b still served 10 s after its role's secret id was destroyed:\n{}",
        mb.log()
    );
    assert_eq!(fs::read(&fa).expect("a serves on"), b"on a");
    for log in [ma.log(), mb.log()] {
        assert!(!log.contains(&b_secret), "{log}");
    }
    ma.unmount();
    mb.unmount();
}

#[test]
fn the_mount_command_and_status_name_the_options() {
    // Options documented in --help.
    let out = run(strata([OsStr::new("mount"), OsStr::new("--help")]));
    let help = assert_ok(&out, "mount --help");
    assert!(help.contains("--key-check-interval") && help.contains("--key-grace"));
    assert!(help.contains("[default: 300]"), "{help}");
}

/// The bytes of the hex dump rows (`6869 2074 6865 …  hi the…`) in a log.
fn hex_dumped(log: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in log.lines() {
        for word in line.split(' ') {
            let ok = word.len() == 4 && word.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if !ok {
                continue;
            }
            for pair in [&word[..2], &word[2..]] {
                if let Ok(b) = u8::from_str_radix(pair, 16) {
                    out.push(b);
                }
            }
        }
    }
    out
}

#[test]
fn logs_at_trace_level_show_neither_the_token_nor_a_dek() {
    let f = fixture("compliance");
    let (s, token, _) = served_key(&f, "k", &[]);
    init(&f, "ext");
    // Whoever debugs a mount turns every log on.
    let m = f.mount_under(&[OsStr::new("env"), OsStr::new("RUST_LOG=trace")]);
    fs::write(f.disk("data").join("f"), b"data").expect("write");
    let c = config(&f);
    let store_id = c["store_id"].as_str().expect("store id").to_string();
    let wrapped = c["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["name"] == "data")
        .and_then(|d| d["layers"].as_array())
        .and_then(|l| l.iter().find(|w| w["layer"] == "storage-cmk"))
        .and_then(|w| w["wrapped"].as_str())
        .expect("storage-cmk DEK")
        .to_string();
    let ctx = base64::engine::general_purpose::STANDARD.encode(format!(
        "strata dek v1\0{store_id}\0data\0storage-cmk\01\0ext"
    ));
    let out = s.ok(
        ROOT,
        &[
            "write",
            "-field=plaintext",
            "transit/decrypt/k",
            &format!("ciphertext={wrapped}"),
            &format!("context={ctx}"),
        ],
    );
    let dek = out.trim().to_string();
    assert!(dek.len() > 40, "{dek}");
    m.unmount();
    let log = f.all_logs();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    let dumped = hex_dumped(&log);
    for (what, secret) in [("token", token.as_bytes()), ("DEK", dek.as_bytes())] {
        assert!(
            !log.as_bytes().windows(secret.len()).any(|w| w == secret)
                && !dumped.windows(secret.len()).any(|w| w == secret),
            "the {what} is in the daemon's trace log"
        );
    }
}

/// A server on a free port that answers every request with a status line
/// and headers at once, then one byte of body every 100 ms, for ever.
fn dribbling_service() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in l.incoming().flatten().take(64) {
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
                );
                for _ in 0..600 {
                    std::thread::sleep(Duration::from_millis(100));
                    if conn.write_all(b" ").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_service_that_answers_its_body_byte_by_byte_times_out() {
    let f = fixture("compliance");
    let token = bao::secret_file(&f.path().join("token"), "s.some-token");
    let slow = dribbling_service();
    let t = Instant::now();
    let token = token.to_str().expect("utf-8");
    let words = [
        "vault",
        "key",
        "create",
        "e",
        "--kms-address",
        &slow,
        "--kms-key",
        "k",
        "--kms-timeout-ms",
        "300",
        "--kms-token-file",
        token,
    ];
    let mut args: Vec<&OsStr> = words.iter().map(OsStr::new).collect();
    args.extend(f.vault_args());
    let out = run_for(&mut strata(args), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key service unreachable"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
