//! The example stores of format 1 (tests/fixtures/v1.tar.gz, one per preset,
//! passphrase `test`, made once by tests/fixtures/make-v1.sh and never
//! regenerated) must keep mounting and reading byte for byte.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Fixture, PRESETS};

fn extract_fixture(f: &mut Fixture, preset: &str) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.tar.gz");
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "-xzf"])
        .arg(&archive)
        .arg("-C")
        .arg(f.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "extracting {}", archive.display());
    f.store = f.path().join("v1").join(preset);
    f.vault = f.path().join("v1").join("vault");
    fs::write(&f.pass, "test").expect("write passphrase");
}

fn check_disk(d: &Path, preset: &str, disk: &str) {
    let hello = fs::read_to_string(d.join("hello.txt")).expect("hello.txt");
    assert_eq!(hello, format!("hello from {preset} on {disk}\n"));
    assert_eq!(
        fs::read(d.join("five-thousand")).expect("five-thousand"),
        vec![b'x'; 5000]
    );
    assert_eq!(
        fs::read_to_string(d.join("dir/sub/nested.txt")).expect("nested"),
        "nested\n"
    );
    assert_eq!(
        fs::read_link(d.join("dir/link")).expect("readlink"),
        Path::new("../hello.txt")
    );
    assert_eq!(
        fs::read_to_string(d.join("dir/link")).expect("through the link"),
        hello
    );
    let long = "L".repeat(200);
    assert_eq!(
        fs::read_to_string(d.join("dir").join(&long)).expect("long name"),
        "long\n"
    );
    let sparse = fs::read(d.join("sparse")).expect("sparse");
    assert_eq!(sparse.len(), 10_000_000);
    assert!(
        sparse[..9_999_997].iter().all(|&b| b == 0),
        "the hole reads as zeros"
    );
    assert_eq!(&sparse[9_999_997..], b"end");
    let mut names: Vec<String> = fs::read_dir(d)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "five-thousand", "hello.txt", "sparse"]);
    let value = xattr_get(&d.join("hello.txt"), "user.fixture");
    assert_eq!(value.as_deref(), Some(&b"value"[..]), "xattr survives");
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], sys.argv[2]))")
        .arg(path)
        .arg(name)
        .output()
        .expect("run python3");
    out.status.success().then_some(out.stdout)
}

#[test]
fn every_format_1_example_store_mounts_and_reads_byte_for_byte() {
    for preset in PRESETS {
        let mut f = Fixture::empty(preset);
        extract_fixture(&mut f, preset);
        let m = f.mount();
        for disk in ["os", "data"] {
            check_disk(&f.disk(disk), preset, disk);
        }
        assert_eq!(
            fs::read_dir(f.disk("temp")).expect("temp").count(),
            0,
            "temp is empty"
        );
        m.unmount();
    }
}

fn config_format(f: &Fixture) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(f.store.join("strata.conf")).expect("config"))
            .expect("config JSON");
    v["format"].as_u64().expect("format")
}

/// A read-only mount changes nothing; the first read-write mount brings the
/// store to format 3 (every backing file with a header), after which the
/// old files still read byte for byte, take writes (their headers move to
/// version 2) and the store verifies clean.
#[test]
fn a_format_1_store_is_brought_to_format_3_at_its_first_read_write_mount() {
    for preset in ["general", "max"] {
        let mut f = Fixture::empty(preset);
        extract_fixture(&mut f, preset);
        let m = f.mount_with(&["--ro"]);
        check_disk(&f.disk("data"), preset, "data");
        m.unmount();
        assert_eq!(
            config_format(&f),
            1,
            "{preset}: a read-only mount writes nothing"
        );
        // A file never written, as a store before format 3 left it: an
        // empty backing file.
        let out = f.cli(
            &[
                "inspect",
                &f.store.to_string_lossy(),
                "--path",
                "data/five-thousand",
            ],
            true,
        );
        let back = common::assert_ok(&out, "inspect --path");
        fs::OpenOptions::new()
            .write(true)
            .open(back.trim())
            .expect("open backing")
            .set_len(0)
            .expect("empty it");
        let m = f.mount();
        fs::write(f.disk("data").join("empty"), b"").expect("create an empty file");
        let sparse = f.disk("data").join("sparse");
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&sparse)
            .expect("open");
        std::os::unix::fs::FileExt::write_all_at(&file, b"mid", 5_000_000).expect("write");
        drop(file);
        m.unmount();
        assert_eq!(config_format(&f), 4, "{preset}");
        let m = f.mount();
        for disk in ["os", "data"] {
            let d = f.disk(disk);
            if disk == "data" {
                let s = fs::read(&sparse).expect("sparse");
                assert_eq!(&s[5_000_000..5_000_003], b"mid");
                assert!(s[..5_000_000].iter().all(|&b| b == 0));
                assert_eq!(&s[9_999_997..], b"end");
                assert_eq!(fs::read(d.join("empty")).expect("empty").len(), 0);
                assert_eq!(fs::read(d.join("five-thousand")).expect("read"), b"");
                assert!(
                    fs::metadata(back.trim()).expect("stat").len() > 0,
                    "the empty file got a header"
                );
            } else {
                check_disk(&d, preset, disk);
            }
        }
        m.unmount();
        let out = f.cli(&["verify", &f.store.to_string_lossy()], true);
        common::assert_ok(&out, "verify after the upgrade");
    }
}

/// In a store of format 1 an empty backing file is a file never written,
/// and every all-zero stored block is a hole: `verify` reports neither.
#[test]
fn format_1_stores_verify_clean_and_an_empty_file_there_is_not_damage() {
    let mut f = Fixture::empty("general");
    extract_fixture(&mut f, "general");
    let verify = |f: &Fixture| {
        let out = f.cli(&["verify", &f.store.to_string_lossy(), "--json"], true);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify JSON: {e}: {}", common::describe(&out)));
        (out.status.code(), v)
    };
    let (code, r) = verify(&f);
    assert_eq!(
        code,
        Some(0),
        "the sparse file's zero blocks are holes: {r:#}"
    );
    let out = f.cli(
        &[
            "inspect",
            &f.store.to_string_lossy(),
            "--path",
            "data/five-thousand",
        ],
        true,
    );
    let backing = common::assert_ok(&out, "inspect --path");
    fs::OpenOptions::new()
        .write(true)
        .open(backing.trim())
        .expect("open backing")
        .set_len(0)
        .expect("truncate");
    let (code, r) = verify(&f);
    assert_eq!(code, Some(0), "{r:#}");
}
