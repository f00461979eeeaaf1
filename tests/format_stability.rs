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
