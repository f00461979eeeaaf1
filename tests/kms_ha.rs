//! A key service that fails over: three OpenBao servers with Raft storage
//! on loopback. The leader's process is killed while one mount serves and
//! another is starting: the serving mount never stops, its checks go on
//! against the new leader, the starting mount comes up once a leader is
//! elected, and a rotation and a revocation made after the failover reach
//! both mounts.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bao::{self, Cluster};
use common::*;

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

fn create_key(f: &Fixture, addrs: &[String], token_file: &Path, manage: bool) -> Output {
    let mut args: Vec<String> = vec![
        "vault".into(),
        "key".into(),
        "create".into(),
        "fleet-cmk".into(),
    ];
    for a in addrs {
        args.push("--kms-address".into());
        args.push(a.clone());
    }
    args.extend([
        "--kms-key".to_string(),
        "fleet".to_string(),
        "--kms-token-file".to_string(),
        token_file.to_str().expect("utf-8").to_string(),
        "--kms-timeout-ms".to_string(),
        "1000".to_string(),
    ]);
    if manage {
        args.push("--kms-manage".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.cli(&args, true)
}

fn revoked<T>(r: std::io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(strata::platform::errno::REVOKED))
}

#[test]
fn killing_the_leader_stops_no_mount_and_later_changes_reach_every_mount() {
    let a = fixture("fleet");
    let b = fixture("fleet");
    let cluster = Cluster::start(a.path());
    let any = cluster.any();
    any.ok(
        &cluster.root,
        &["write", "-f", "transit/keys/fleet", "derived=true"],
    );
    bao::write_policy(any, &cluster.root, a.path(), "strata", "fleet", true);
    let (_, token) = bao::token_file(any, &cluster.root, a.path(), "strata");
    let addrs = cluster.addresses();
    assert_ok(&create_key(&a, &addrs, &token, true), "key on a");
    assert_ok(&create_key(&b, &addrs, &token, false), "key on b");
    for f in [&a, &b] {
        let store = f.store.to_str().expect("utf-8");
        assert_ok(
            &f.cli(
                &["init", store, "--preset", "fleet", "--cmk", "fleet-cmk"],
                true,
            ),
            "init",
        );
    }
    let ma = a.mount_with(&["--key-check-interval", "1", "--key-grace", "60"]);
    let fa = a.disk("data").join("f");
    fs::write(&fa, b"on a").expect("write");

    // Mount a reads without a pause while the leader goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, failures, reads, fa) =
            (stop.clone(), failures.clone(), reads.clone(), fa.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match fs::read(&fa) {
                    Ok(b) if b == b"on a" => reads.fetch_add(1, Ordering::SeqCst),
                    _ => failures.fetch_add(1, Ordering::SeqCst),
                };
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let leader = cluster.leader().expect("a leader");
    let mut cluster = cluster;
    let killed_at = Instant::now();
    cluster.nodes[leader].kill();
    // Mount b starts while there is no leader yet.
    let mb = b.mount_with(&["--key-check-interval", "1", "--key-grace", "60"]);
    eprintln!(
        "MEASURED a mount started with the leader just killed came up after {:?}",
        killed_at.elapsed()
    );
    let fb = b.disk("data").join("f");
    fs::write(&fb, b"on b").expect("write b");
    let new_leader = poll_until(Duration::from_secs(30), || cluster.leader().is_some());
    assert!(new_leader, "no new leader");
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "mount a stopped serving during the failover ({} good reads)",
        reads.load(Ordering::SeqCst)
    );
    assert!(!ma.log().contains("unavailable"), "{}", ma.log());

    // A rotation after the failover reaches both stores (a rotates, b
    // rewraps) while both stay mounted.
    let sa = a.store.to_str().expect("utf-8").to_string();
    let sb = b.store.to_str().expect("utf-8").to_string();
    let out = assert_ok(
        &a.cli(
            &["vault", "key", "rotate", "fleet-cmk", "--store", &sa],
            true,
        ),
        "rotate after failover",
    );
    assert!(out.contains("version 2 created"), "{out}");
    assert_ok(
        &b.cli(
            &["vault", "key", "rotate", "fleet-cmk", "--store", &sb],
            true,
        ),
        "rewrap b",
    );
    for f in [&a, &b] {
        let conf = fs::read_to_string(f.config()).expect("config");
        assert!(conf.contains("\"version\": 2"), "{conf}");
    }
    assert_eq!(fs::read(&fa).expect("a"), b"on a");
    assert_eq!(fs::read(&fb).expect("b"), b"on b");

    // A revocation after the failover reaches both mounts, and the enable.
    assert_ok(
        &a.cli(&["vault", "key", "disable", "fleet-cmk"], true),
        "disable",
    );
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(&fa))
            && revoked(fs::read(&fb))),
        "revocation after failover not on both mounts within 10 s\na:\n{}\nb:\n{}",
        ma.log(),
        mb.log()
    );
    assert_ok(
        &a.cli(&["vault", "key", "enable", "fleet-cmk"], true),
        "enable",
    );
    assert!(
        poll_until(Duration::from_secs(10), || fs::read(&fa).is_ok()
            && fs::read(&fb).is_ok()),
        "enable after failover not on both mounts within 10 s"
    );
    ma.unmount();
    mb.unmount();
}
