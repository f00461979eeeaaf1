//! Snapshots, images and the control socket, through real mounts: status
//! of a running mount, an online snapshot taken while SQLite commits, the
//! read-only `.snapshots` view, restore byte for byte, a disk made from an
//! image sharing no ciphertext and no DEK, interrupted snapshots never
//! listed, and keys that follow (rotation, revocation, rekey).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn store(f: &Fixture) -> String {
    f.store.to_string_lossy().into_owned()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("JSON: {e}\n{out}"))
}

/// A small tree with every kind of object.
fn fill(dir: &Path, seed: u64) {
    fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    fs::write(dir.join("big"), pattern(seed, 300_000)).expect("write big");
    fs::write(dir.join("sub/small"), b"small file").expect("write small");
    fs::write(
        dir.join("sub/deeper").join("n".repeat(200)),
        pattern(seed + 1, 5000),
    )
    .expect("write long name");
    std::os::unix::fs::symlink("big", dir.join("link")).expect("symlink");
    fs::hard_link(dir.join("big"), dir.join("sub/hard")).expect("hard link");
    set_xattr(&dir.join("big"), "user.tag", b"xattr value").expect("xattr");
}

/// Every backing file's bytes below `root`, by relative path.
fn backing_bytes(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(root)
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .map(|p| {
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            (rel, fs::read(&p).expect("read backing"))
        })
        .collect()
}

#[test]
fn status_reports_a_running_mount_and_refuses_bad_requests() {
    let f = Fixture::new("max");
    let m = f.mount();
    fs::write(f.disk("data/a"), pattern(1, 1 << 20)).expect("write");
    let back = fs::read(f.disk("data/a")).expect("read");
    assert_eq!(back.len(), 1 << 20);
    let keep = fs::File::open(f.disk("data/a")).expect("hold a file open");
    let out = assert_ok(
        &f.cli(&["status", &f.mnt.to_string_lossy(), "--json"], false),
        "status",
    );
    let v = json(&out);
    let fsv = &v["fs"];
    let names: Vec<&str> = fsv["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["os", "data", "temp"]);
    assert!(
        fsv["bytes_written"].as_u64().expect("bytes_written") >= 1 << 20,
        "{v:#}"
    );
    assert!(
        fsv["open_handles"].as_u64().expect("open handles") >= 1,
        "{v:#}"
    );
    assert_eq!(fsv["cache"]["capacity_bytes"], 64 << 20);
    assert!(fsv["cache"]["hit_rate"].is_number());
    assert_eq!(
        fsv["disks"][1]["layers"],
        serde_json::json!(["guest", "host", "storage-cmk", "storage-pmk"])
    );
    drop(keep);
    // The socket: in the store, mode 0600.
    let sock = PathBuf::from(v["socket"].as_str().expect("socket"));
    let mode = fs::metadata(&sock).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.expect("socket exists"), 0o600);
    // The text form names the same.
    let text = assert_ok(&f.cli(&["status", &store(&f)], false), "status STORE");
    assert!(
        text.contains("hit rate") && text.contains("disk data"),
        "{text}"
    );

    // Malformed requests get one clear error line each, and the connection
    // stays usable.
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    for bad in [
        "not json",
        "{\"op\":\"format-disk\"}",
        "{\"op\":\"status\",\"x\":1}",
    ] {
        conn.write_all(format!("{bad}\n").as_bytes()).expect("send");
        let mut line = String::new();
        reader.read_line(&mut line).expect("reply");
        let r = json(&line);
        assert_eq!(r["ok"], false, "{bad}: {line}");
        assert!(
            r["error"]
                .as_str()
                .expect("error")
                .contains("malformed request"),
            "{line}"
        );
    }
    conn.write_all(b"{\"op\":\"status\"}\n").expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    assert_eq!(json(&line)["ok"], true);

    // Another user cannot use it: the store directory (0700) keeps them
    // out, and with it opened up the socket still refuses them.
    let nobody_status = || {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                strata_bin(),
                "status",
            ])
            .arg(&f.store)
            .output()
            .expect("run setpriv")
    };
    let out = nobody_status();
    assert!(!out.status.success(), "another user got a status");
    std::fs::set_permissions(&f.store, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = nobody_status();
    assert!(!out.status.success(), "another user got a status");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("permission denied"), "{err}");
    m.unmount();
    assert!(!sock.exists(), "the socket goes with the mount");
    let out = f.cli(&["status", &store(&f)], false);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no running mount"),
        "{}",
        describe(&out)
    );
}

#[test]
fn online_snapshot_during_sqlite_commits_holds_a_prefix() {
    let f = Fixture::new("max");
    let m = f.mount();
    let db = f.disk("data/db.sqlite");
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, committed, stop) = (db.clone(), committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).expect("open db");
            c.execute_batch(
                "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;
                 CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB);",
            )
            .expect("schema");
            let mut i = 0u64;
            while stop.load(Ordering::SeqCst) == 0 || i < 50 {
                i += 1;
                c.execute(
                    "INSERT INTO t(i, pad) VALUES (?1, randomblob(3000))",
                    [i as i64],
                )
                .expect("insert");
                committed.store(i, Ordering::SeqCst);
            }
            i
        })
    };
    assert!(poll_until(Duration::from_secs(30), || committed
        .load(Ordering::SeqCst)
        >= 20));
    // Written, never fsynced and still open (its pages may be dirty in the
    // kernel): the snapshot command syncs the mount first.
    let mut unsynced = fs::File::create(f.disk("data/unsynced")).expect("create unsynced");
    std::io::Write::write_all(&mut unsynced, &pattern(9, 100_000)).expect("write unsynced");
    let before = committed.load(Ordering::SeqCst);
    let out = f.cli(&["snapshot", "create", &store(&f), "data", "s1"], true);
    let after = committed.load(Ordering::SeqCst);
    assert_ok(&out, "online snapshot");
    drop(unsynced);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(1, Ordering::SeqCst);
    let total = writer.join().expect("writer");
    assert!(total > after, "writes went on after the snapshot");

    // The snapshot is shown read-only at once.
    let snap = f.mnt.join(".snapshots/data/s1");
    assert_eq!(
        fs::read(snap.join("unsynced")).expect("unsynced file in the snapshot"),
        pattern(9, 100_000)
    );
    assert!(snap.join("db.sqlite").is_file());
    assert_errno(
        fs::write(snap.join("x"), b"y"),
        &[libc::EROFS],
        "create in a snapshot",
    );
    assert_errno(
        fs::remove_file(snap.join("db.sqlite")),
        &[libc::EROFS],
        "unlink in a snapshot",
    );
    assert_errno(
        fs::create_dir(f.mnt.join(".snapshots/new")),
        &[libc::EROFS],
        "mkdir in .snapshots",
    );
    assert_errno(
        fs::OpenOptions::new()
            .write(true)
            .open(snap.join("db.sqlite")),
        &[libc::EROFS],
        "open a snapshot file for writing",
    );

    // Open it as after a crash: a copy, where SQLite may roll back a hot journal.
    let check = |label: &str| -> u64 {
        let dir = f.path().join(format!("check-{label}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for e in fs::read_dir(&snap).expect("list snapshot") {
            let e = e.expect("entry");
            if !e.file_name().to_string_lossy().starts_with("db.sqlite") {
                continue;
            }
            fs::copy(e.path(), dir.join(e.file_name())).expect("copy out");
        }
        let c = rusqlite::Connection::open(dir.join("db.sqlite")).expect("open copy");
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(ok, "ok");
        let (n, max): (i64, i64) = c
            .query_row("SELECT count(*), coalesce(max(i), 0) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert_eq!(n, max, "rows 1..n, no gap: a prefix of the commits");
        n as u64
    };
    let n = check("first");
    assert!(
        (before..=after).contains(&n),
        "snapshot holds {n} commits; {before} were committed before it began, {after} when it ended"
    );
    m.unmount();
    // Remounted, the snapshot is the same: later writes never show in it.
    let m = f.mount();
    assert_eq!(check("second"), n);
    m.unmount();
    let list = assert_ok(
        &f.cli(&["snapshot", "list", &store(&f), "--json"], false),
        "list",
    );
    assert_eq!(json(&list).as_array().expect("list").len(), 1);
}

#[test]
fn restore_brings_the_disk_back_byte_for_byte() {
    let f = Fixture::new("full");
    let m = f.mount();
    fill(&f.disk("data"), 1);
    let tree = snapshot(&f.disk("data"));
    m.unmount();
    let backing_then = backing_bytes(&f.backing("data"));
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "before"], true),
        "snapshot",
    );
    assert_eq!(
        backing_bytes(&f.store.join("snapshots/data/before")),
        backing_then,
        "a snapshot copies the ciphertext as it is"
    );
    let m = f.mount();
    fs::write(f.disk("data/big"), b"overwritten").expect("overwrite");
    fs::remove_file(f.disk("data/sub/small")).expect("remove");
    fs::write(f.disk("data/new"), b"new").expect("new file");
    assert_eq!(
        fs::read(f.mnt.join(".snapshots/data/before/big")).expect("snapshot file"),
        pattern(1, 300_000),
        "writes after the snapshot never show in it"
    );
    // Restore is offline.
    let out = f.cli(&["snapshot", "restore", &store(&f), "data", "before"], true);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("mounted"));
    m.unmount();
    // Re-key the disk: the snapshot keeps its own keys.
    assert_ok(
        &f.cli(
            &["disk", "rekey", &store(&f), "data", "--layer", "storage"],
            true,
        ),
        "rekey",
    );
    assert_ok(
        &f.cli(&["snapshot", "restore", &store(&f), "data", "before"], true),
        "restore",
    );
    assert_eq!(
        backing_bytes(&f.backing("data")),
        backing_then,
        "byte for byte"
    );
    let m = f.mount();
    assert_eq!(snapshot(&f.disk("data")), tree);
    m.unmount();
    let (code, _) = verify_code(&f);
    assert_eq!(code, 0);
    assert_ok(
        &f.cli(&["snapshot", "delete", &store(&f), "data", "before"], true),
        "delete",
    );
    assert!(!f.store.join("snapshots/data/before").exists());
}

fn verify_code(f: &Fixture) -> (i32, String) {
    let out = f.cli(&["verify", &store(f), "--json"], true);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_disk_from_an_image_reads_the_same_and_shares_no_ciphertext_or_key() {
    let f = Fixture::new("max");
    let m = f.mount();
    fill(&f.disk("data"), 7);
    let tree = snapshot(&f.disk("data"));
    m.unmount();
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "s"], true),
        "snapshot",
    );
    assert_ok(
        &f.cli(
            &["image", "create", &store(&f), "img", "--from", "data@s"],
            true,
        ),
        "image",
    );
    assert_ok(
        &f.cli(
            &["scope", "create", &store(&f), "other", "--key", "other-cmk"],
            true,
        ),
        "scope",
    );
    assert_ok(
        &f.cli(
            &[
                "disk",
                "add",
                &store(&f),
                "copy",
                "--from-image",
                "img",
                "--guest",
                "--scope",
                "other",
            ],
            true,
        ),
        "disk from image",
    );
    let m = f.mount();
    assert_eq!(
        snapshot(&f.disk("copy")),
        tree,
        "the new disk reads what the image holds"
    );
    m.unmount();
    // No stored block of the new disk equals one of the image's.
    let blocks = |root: &Path| -> std::collections::HashSet<Vec<u8>> {
        backing_bytes(root)
            .into_values()
            .filter(|b| b.len() as u64 > HEADER_LEN)
            .flat_map(|b| {
                b[HEADER_LEN as usize..]
                    .chunks(STORED_BLOCK as usize)
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let image_blocks = blocks(&f.store.join("images/img"));
    assert!(!image_blocks.is_empty());
    assert!(blocks(&f.backing("copy")).is_disjoint(&image_blocks));
    // Its own DEKs, wrapped by its scope's key, none shared with the image.
    let config = json(&fs::read_to_string(f.config()).expect("config"));
    let copy = config["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["name"] == "copy")
        .expect("copy disk");
    let image = &config["images"][0]["source"];
    for w in copy["layers"].as_array().expect("layers") {
        let same = image["layers"]
            .as_array()
            .expect("image layers")
            .iter()
            .any(|i| i["wrapped"] == w["wrapped"]);
        assert!(!same, "a wrapped DEK is shared: {w}");
    }
    let cmk = copy["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|w| w["layer"] == "storage-cmk")
        .expect("cmk layer");
    assert_eq!(cmk["key"]["name"], "other-cmk");
    assert_eq!(image["name"], "data");
    let (code, out) = verify_code(&f);
    assert_eq!(code, 0, "disks, snapshots and images verify: {out}");
    let v = json(&out);
    let checked: Vec<&str> = v["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d.as_str().expect("name"))
        .collect();
    assert!(
        checked.contains(&".snapshots/data/s") && checked.contains(&"images/img"),
        "{v:#}"
    );
    let list = assert_ok(
        &f.cli(&["image", "list", &store(&f), "--json"], false),
        "image list",
    );
    assert_eq!(json(&list)[0]["from"], "data@s");
    assert_ok(
        &f.cli(&["image", "delete", &store(&f), "img"], true),
        "image delete",
    );
    assert!(!f.store.join("images/img").exists());
}

#[test]
fn an_interrupted_snapshot_is_never_listed() {
    let f = Fixture::new("general");
    let m = f.mount();
    fill(&f.disk("data"), 3);
    m.unmount();
    let mut c = strata([
        OsStr::new("snapshot"),
        OsStr::new("create"),
        f.store.as_os_str(),
        OsStr::new("data"),
        OsStr::new("half"),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-file"),
        f.pass.as_os_str(),
    ]);
    c.env("STRATA_TEST_CRASH_AFTER", "3");
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(99),
        "killed half-way: {}",
        describe(&out)
    );
    let list = assert_ok(
        &f.cli(&["snapshot", "list", &store(&f), "--json"], false),
        "list",
    );
    assert_eq!(json(&list), serde_json::json!([]));
    let m = f.mount();
    assert!(!f.mnt.join(".snapshots").exists(), "no half snapshot shown");
    m.unmount();
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "half"], true),
        "again",
    );
    assert!(!f.store.join("snapshots/data/.tmp-half").exists());
    let m = f.mount();
    assert_eq!(
        snapshot(&f.mnt.join(".snapshots/data/half")),
        snapshot(&f.disk("data"))
    );
    m.unmount();
}

#[test]
fn snapshot_and_image_keys_follow_rotation_and_revocation() {
    let f = Fixture::new("max");
    let m = f.mount();
    fs::write(f.disk("data/f"), b"snapshotted").expect("write");
    m.unmount();
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "s"], true),
        "snapshot",
    );
    assert_ok(
        &f.cli(
            &["image", "create", &store(&f), "img", "--from", "data"],
            true,
        ),
        "image",
    );
    assert_ok(
        &f.cli(
            &["vault", "key", "rotate", "max-cmk", "--store", &store(&f)],
            true,
        ),
        "rotate",
    );
    let config = json(&fs::read_to_string(f.config()).expect("config"));
    for holder in [
        &config["snapshots"][0]["source"],
        &config["images"][0]["source"],
    ] {
        let cmk = holder["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .find(|w| w["layer"] == "storage-cmk")
            .expect("cmk");
        assert_eq!(cmk["key"]["version"], 2, "rewrapped: {holder}");
    }
    assert_ok(
        &f.cli(&["vault", "key", "disable", "max-cmk"], true),
        "disable",
    );
    let m = f.mount();
    let r = fs::read(f.mnt.join(".snapshots/data/s/f"));
    assert!(
        matches!(&r, Err(e) if e.raw_os_error() == Some(strata::platform::errno::REVOKED)),
        "a revoked snapshot: {r:?}"
    );
    m.unmount();
    let out = f.cli(
        &["disk", "add", &store(&f), "d2", "--from-image", "img"],
        true,
    );
    assert!(
        !out.status.success(),
        "an image under a revoked key cannot be used"
    );
    assert_ok(
        &f.cli(&["vault", "key", "enable", "max-cmk"], true),
        "enable",
    );
    let m = f.mount();
    assert_eq!(
        fs::read(f.mnt.join(".snapshots/data/s/f")).expect("back"),
        b"snapshotted"
    );
    m.unmount();
}
