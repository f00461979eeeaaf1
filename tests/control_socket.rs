//! The control socket of a running mount shows only snapshots that the
//! store's authenticated config records, and checks the names it is given
//! before it builds a path from them.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

fn request(f: &Fixture, req: &serde_json::Value) -> serde_json::Value {
    let mut conn = UnixStream::connect(f.store.join("control.sock")).expect("connect");
    conn.write_all(format!("{req}\n").as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).expect("reply");
    serde_json::from_str(&line).expect("JSON reply")
}

fn show(f: &Fixture, disk: &str, name: &str) -> serde_json::Value {
    request(
        f,
        &serde_json::json!({ "op": "show-snapshot", "disk": disk, "name": name }),
    )
}

#[test]
fn show_snapshot_serves_only_what_the_config_records() {
    let f = Fixture::new("general");
    let store = f.store.to_str().expect("utf-8").to_string();
    let m = f.mount();
    std::fs::write(f.disk("data").join("secret"), b"live data").expect("write");
    // A copy of the disk's tree dropped under snapshots/ by hand: the same
    // ciphertext the live keys open, recorded nowhere.
    let planted = f.store.join("snapshots").join("data").join("planted");
    std::fs::create_dir_all(planted.parent().expect("parent")).expect("mkdir");
    let st = Command::new("cp")
        .arg("-a")
        .arg(f.backing("data"))
        .arg(&planted)
        .status()
        .expect("cp");
    assert!(st.success());
    let r = show(&f, "data", "planted");
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("records no snapshot planted of disk data"),
        "{r}"
    );
    assert!(!f.mnt.join(".snapshots/data/planted").exists());

    // Names that are not names are refused before they reach a path.
    for (disk, name) in [
        ("../disks", "data"),
        ("data/..", "x"),
        ("", "x"),
        ("data", "../x"),
    ] {
        let r = show(&f, disk, name);
        assert_eq!(r["ok"], false, "{r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap_or("")
                .contains("invalid disk or snapshot name"),
            "{disk:?}/{name:?}: {r}"
        );
        let r = request(
            &f,
            &serde_json::json!({ "op": "snapshot", "disk": disk, "name": name }),
        );
        assert_eq!(r["ok"], false, "{r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap_or("")
                .contains("invalid disk or snapshot name"),
            "{disk:?}/{name:?}: {r}"
        );
    }

    // A config rolled back under the mount, or edited, is not believed.
    assert_ok(
        &f.cli(&["snapshot", "create", &store, "data", "s1"], true),
        "online snapshot",
    );
    assert_eq!(
        std::fs::read(f.mnt.join(".snapshots/data/s1/secret")).expect("shown"),
        b"live data"
    );
    let conf = f.config();
    let good = std::fs::read(&conf).expect("config");
    let mut edited: serde_json::Value = serde_json::from_slice(&good).expect("json");
    let mut fake = edited["snapshots"][0].clone();
    fake["name"] = "planted".into();
    edited["snapshots"]
        .as_array_mut()
        .expect("snapshots")
        .push(fake);
    std::fs::write(&conf, serde_json::to_vec_pretty(&edited).expect("json")).expect("write");
    let r = show(&f, "data", "planted");
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap_or("").contains("tampered"),
        "{r}"
    );
    std::fs::write(
        &conf,
        std::fs::read(f.store.join("strata.conf.bak")).expect("bak"),
    )
    .expect("roll back");
    let r = show(&f, "data", "s1");
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap_or("").contains("rolled back"),
        "{r}"
    );
    std::fs::write(&conf, &good).expect("restore");
    assert!(!f.mnt.join(".snapshots/data/planted").exists());
    m.unmount();
}

#[test]
fn a_snapshot_taken_after_the_config_key_rotated_beside_the_mount_is_shown() {
    let f = Fixture::new("general");
    let store = f.store.to_str().expect("utf-8").to_string();
    let m = f.mount();
    std::fs::write(f.disk("data").join("a"), b"live data").expect("write");
    // `platform` tags the config: the rewrap beside the mount moves the
    // tag to platform@2.
    let out = assert_ok(
        &f.cli(
            &["vault", "key", "rotate", "platform", "--store", &store],
            true,
        ),
        "rotate beside the mount",
    );
    assert!(
        out.contains("config now tagged with platform version 2"),
        "{out}"
    );
    let out = assert_ok(
        &f.cli(&["snapshot", "create", &store, "data", "s1"], true),
        "online snapshot",
    );
    assert!(
        out.contains("the mount shows it under .snapshots/data/s1/"),
        "{out}\n{}",
        m.log()
    );
    assert_eq!(
        std::fs::read(f.mnt.join(".snapshots/data/s1/a")).expect("shown"),
        b"live data"
    );
    m.unmount();
}
