//! The forensic commands on stores built by the tests: `verify` finds
//! exactly the damage done to a backing store (and nothing on a clean one),
//! reading through the mount fails on exactly that data, `--repair` mends
//! what it can without deleting, `inspect` decodes without keys and
//! decrypts with them, `scan` finds planted plaintext and none in a clean
//! store, and bad input exits 2 with one clear line.

#[macro_use]
mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

per_preset!(clean_store_verifies_and_scans_clean);

const LONG: usize = 200;

/// File `a.bin` on data: six blocks.
const A_BLOCKS: usize = 6;
/// File `b.bin` on data: four blocks.
const B_BLOCKS: usize = 4;
const NEEDLE: &str = "forensic-needle-7c1e";

fn long_name() -> String {
    "L".repeat(LONG)
}

/// Writes the test tree through a mount and unmounts.
fn populate(f: &Fixture) {
    let m = f.mount();
    let d = f.disk("data");
    fs::write(d.join("a.bin"), pattern(1, A_BLOCKS * BLOCK)).expect("write a.bin");
    fs::write(d.join("b.bin"), pattern(2, B_BLOCKS * BLOCK)).expect("write b.bin");
    fs::create_dir(d.join("dir")).expect("mkdir dir");
    fs::write(d.join("dir/c.txt"), format!("text with {NEEDLE} inside\n")).expect("write c.txt");
    fs::write(d.join("dir").join(long_name()), b"long").expect("write long name");
    std::os::unix::fs::symlink("a.bin", d.join("link")).expect("symlink");
    fs::write(f.disk("os").join("boot.img"), pattern(3, 2 * BLOCK + 100)).expect("write os file");
    m.unmount();
}

fn fixture(preset: &str) -> Fixture {
    let f = Fixture::new(preset);
    populate(&f);
    f
}

/// Runs a strata command; returns (exit code, stdout, stderr).
fn cmd(args: &[&OsStr]) -> (i32, String, String) {
    let out = run(strata(args));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "strata {args:?} panicked: {stderr}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// `strata verify STORE --json [--vault…] [extra]`: (exit code, report).
fn verify(f: &Fixture, with_vault: bool, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        OsStr::new("verify"),
        f.store.as_os_str(),
        OsStr::new("--json"),
    ];
    if with_vault {
        args.extend(f.vault_args());
    }
    args.extend(extra.iter().map(OsStr::new));
    let (code, out, err) = cmd(&args);
    assert!(
        code == 0 || code == 1,
        "verify could not run ({code}): {err}"
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify JSON: {e}\n{out}"));
    (code, v)
}

fn issues(report: &Value) -> Vec<Value> {
    report["issues"].as_array().expect("issues array").clone()
}

/// The backing path of plaintext `disk/path`, via `inspect --path`.
fn backing_of(f: &Fixture, plain: &str) -> PathBuf {
    let mut args = vec![
        OsStr::new("inspect"),
        f.store.as_os_str(),
        OsStr::new("--path"),
        OsStr::new(plain),
    ];
    args.extend(f.vault_args());
    let (code, out, err) = cmd(&args);
    assert_eq!(code, 0, "inspect --path {plain}: {err}");
    PathBuf::from(out.trim())
}

/// Asserts the report holds exactly one issue per `(kind, backing, block)`.
#[track_caller]
fn assert_exactly(report: &Value, expected: &[(&str, &Path, Option<u64>)]) {
    let got: Vec<(String, PathBuf, Option<u64>)> = issues(report)
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().expect("kind").to_string(),
                fs::canonicalize(i["backing"].as_str().expect("backing"))
                    .unwrap_or_else(|_| PathBuf::from(i["backing"].as_str().unwrap_or_default())),
                i["block"].as_u64(),
            )
        })
        .collect();
    let want: Vec<(String, PathBuf, Option<u64>)> = expected
        .iter()
        .map(|(k, p, b)| {
            (
                k.to_string(),
                fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
                *b,
            )
        })
        .collect();
    assert_eq!(got, want, "verify report: {report:#}");
}

fn stored_offset(i: u64) -> u64 {
    HEADER_LEN + i * STORED_BLOCK
}

fn read_stored(p: &Path, i: u64) -> Vec<u8> {
    let mut buf = vec![0u8; STORED_BLOCK as usize];
    File::open(p)
        .expect("open backing")
        .read_exact_at(&mut buf, stored_offset(i))
        .expect("read stored block");
    buf
}

fn write_stored(p: &Path, i: u64, data: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open backing rw")
        .write_all_at(data, stored_offset(i))
        .expect("write stored block");
}

fn flip_byte(p: &Path, at: u64) {
    let fd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .expect("open backing rw");
    let mut b = [0u8; 1];
    fd.read_exact_at(&mut b, at).expect("read byte");
    b[0] ^= 0x01;
    fd.write_all_at(&b, at).expect("write byte");
}

/// Through a mount: which blocks of `plain` (a file on data) read, and
/// which fail with EIO.
fn eio_blocks(f: &Fixture, plain: &str, blocks: usize, seed: u64) -> Vec<u64> {
    let m = f.mount();
    let want = pattern(seed, blocks * BLOCK);
    let file = File::open(f.disk("data").join(plain)).expect("open through the mount");
    let mut bad = Vec::new();
    for i in 0..blocks {
        let mut buf = vec![0u8; BLOCK];
        match file.read_exact_at(&mut buf, (i * BLOCK) as u64) {
            Ok(()) => assert_eq!(
                buf,
                want[i * BLOCK..(i + 1) * BLOCK],
                "block {i} of {plain} read wrong data"
            ),
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "block {i} of {plain}: {e}"
                );
                bad.push(i as u64);
            }
        }
    }
    drop(file);
    m.unmount();
    bad
}

fn clean_store_verifies_and_scans_clean(preset: &str) {
    let f = fixture(preset);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert!(issues(&r).is_empty(), "{r:#}");
    assert_eq!(r["with_vault"], Value::Bool(true));
    // a, b, c, the long name, the link, boot.img: every block checked.
    assert_eq!(r["files"].as_u64(), Some(6), "{r:#}");
    assert_eq!(
        r["blocks"].as_u64(),
        Some((A_BLOCKS + B_BLOCKS + 1 + 1 + 1 + 3) as u64),
        "{r:#}"
    );
    let (code, r) = verify(&f, false, &[]);
    assert_eq!(code, 0, "structure-only verify: {r:#}");
    assert_eq!(r["with_vault"], Value::Bool(false));
    let (code, out, err) = cmd(&[
        OsStr::new("scan"),
        f.store.as_os_str(),
        OsStr::new("--needle"),
        OsStr::new(NEEDLE),
        OsStr::new("--needle"),
        OsStr::new("a.bin"),
        OsStr::new("--json"),
    ]);
    assert_eq!(code, 0, "scan of a clean store: {out}{err}");
    let v: Value = serde_json::from_str(&out).expect("scan JSON");
    assert!(v["hits"].as_array().expect("hits").is_empty(), "{v:#}");
    assert!(v["files"].as_u64().expect("files") >= 6, "{v:#}");
}

#[test]
fn flipped_bit_in_a_block_is_that_block_only() {
    let f = fixture("max");
    let a = backing_of(&f, "data/a.bin");
    flip_byte(&a, stored_offset(3) + 17);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("tag", &a, Some(3))]);
    assert_eq!(
        issues(&r)[0]["path"],
        Value::String("data/a.bin".into()),
        "{r:#}"
    );
    assert_eq!(eio_blocks(&f, "a.bin", A_BLOCKS, 1), vec![3]);
    // Without the vault only structure is checked: a flipped bit is sound structure.
    assert_eq!(verify(&f, false, &[]).0, 0);
}

#[test]
fn swapped_blocks_inside_a_file_fail_both() {
    let f = fixture("general");
    let a = backing_of(&f, "data/a.bin");
    let (one, two) = (read_stored(&a, 1), read_stored(&a, 4));
    write_stored(&a, 1, &two);
    write_stored(&a, 4, &one);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("tag", &a, Some(1)), ("tag", &a, Some(4))]);
    assert_eq!(eio_blocks(&f, "a.bin", A_BLOCKS, 1), vec![1, 4]);
}

#[test]
fn block_copied_from_another_file_fails() {
    let f = fixture("fleet");
    let a = backing_of(&f, "data/a.bin");
    let b = backing_of(&f, "data/b.bin");
    write_stored(&a, 2, &read_stored(&b, 2));
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("tag", &a, Some(2))]);
    assert_eq!(eio_blocks(&f, "a.bin", A_BLOCKS, 1), vec![2]);
    assert_eq!(eio_blocks(&f, "b.bin", B_BLOCKS, 2), Vec::<u64>::new());
}

#[test]
fn damaged_header_fails_the_file_and_repair_moves_it_to_lost_found() {
    let f = fixture("max");
    let b = backing_of(&f, "data/b.bin");
    flip_byte(&b, 60);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("header", &b, None)]);
    {
        let m = f.mount();
        let e = fs::read(f.disk("data/b.bin")).expect_err("damaged header must not read");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        assert_eq!(
            fs::read(f.disk("data/a.bin")).expect("a.bin intact"),
            pattern(1, A_BLOCKS * BLOCK)
        );
        m.unmount();
    }
    let (code, r) = verify(&f, true, &["--repair"]);
    assert_eq!(code, 1, "repair reports what it found: {r:#}");
    let repairs = r["repairs"].as_array().expect("repairs");
    assert_eq!(repairs.len(), 1, "{r:#}");
    assert!(!b.exists(), "the damaged file moved away");
    // Nothing deleted: the file is in lost+found under a name saying where it was.
    let m = f.mount();
    let lf: Vec<String> = fs::read_dir(f.disk("data/lost+found"))
        .expect("lost+found exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(lf.len(), 1, "{lf:?}");
    assert!(
        lf[0].contains("b.bin") && lf[0].starts_with("header-lost"),
        "{lf:?}"
    );
    assert!(!f.disk("data/b.bin").exists());
    m.unmount();
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1, "the header stays damaged: {r:#}");
    assert_eq!(issues(&r).len(), 1, "{r:#}");
    assert_eq!(issues(&r)[0]["kind"], "header");
}

#[test]
fn damaged_name_is_reported_and_hidden() {
    let f = fixture("compliance");
    let c = backing_of(&f, "data/dir/c.txt");
    let name = c.file_name().expect("name").to_string_lossy().into_owned();
    let mut chars: Vec<char> = name.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let bad = c.with_file_name(chars.into_iter().collect::<String>());
    fs::rename(&c, &bad).expect("rename backing entry");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("name", &bad, None)]);
    let m = f.mount();
    let listed: Vec<String> = fs::read_dir(f.disk("data/dir"))
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed,
        vec![long_name()],
        "the undecryptable entry is skipped, the rest listed"
    );
    assert_eq!(
        fs::read(f.disk("data/dir").join(long_name())).expect("long name reads"),
        b"long"
    );
    m.unmount();
}

#[test]
fn truncated_file_reports_the_missing_blocks() {
    let f = fixture("os-policy");
    let a = backing_of(&f, "data/a.bin");
    OpenOptions::new()
        .write(true)
        .open(&a)
        .expect("open")
        .set_len(stored_offset(4))
        .expect("truncate");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("truncated", &a, Some(4))]);
    assert_eq!(eio_blocks(&f, "a.bin", A_BLOCKS, 1), vec![4, 5]);
    // A cut inside a block is a structure problem, seen without the vault.
    OpenOptions::new()
        .write(true)
        .open(&a)
        .expect("open")
        .set_len(stored_offset(3) + 100)
        .expect("truncate");
    let (code, r) = verify(&f, false, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("length", &a, None)]);
}

#[test]
fn lost_directory_id_is_rebuilt_from_its_copy() {
    let f = fixture("full");
    let dir = backing_of(&f, "data/dir");
    fs::remove_file(dir.join(".dirid")).expect("remove .dirid");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("missing-dirid", &dir, None)]);
    // The copy keeps the names readable through the mount.
    {
        let m = f.mount();
        assert_eq!(
            fs::read_to_string(f.disk("data/dir/c.txt")).expect("c.txt"),
            format!("text with {NEEDLE} inside\n")
        );
        m.unmount();
    }
    let (code, r) = verify(&f, true, &["--repair"]);
    assert_eq!(code, 1);
    assert_eq!(r["repairs"].as_array().expect("repairs").len(), 1, "{r:#}");
    assert!(dir.join(".dirid").is_file());
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 0, "clean after repair: {r:#}");
}

#[test]
fn both_directory_ids_lost_fail_that_directory_only() {
    let f = fixture("general");
    let dir = backing_of(&f, "data/dir");
    fs::remove_file(dir.join(".dirid")).expect("remove .dirid");
    fs::remove_file(dir.join(".dirid.bak")).expect("remove .dirid.bak");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("missing-dirid", &dir, None)]);
    let (code, r) = verify(&f, true, &["--repair"]);
    assert_eq!(code, 1);
    assert!(
        dir.read_dir().expect("still there").count() >= 2,
        "repair never deletes: {r:#}"
    );
    let m = f.mount();
    let e = fs::read_dir(f.disk("data/dir"))
        .and_then(|mut it| it.next().transpose())
        .expect_err("listing a directory without id");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(
        fs::read(f.disk("data/a.bin")).expect("a.bin"),
        pattern(1, A_BLOCKS * BLOCK)
    );
    m.unmount();
}

#[test]
fn orphan_sidecar_is_reported() {
    let f = fixture("general");
    let long = backing_of(&f, &format!("data/dir/{}", long_name()));
    fs::remove_file(&long).expect("remove the long-name entry");
    let sidecar = PathBuf::from(format!("{}.name", long.display()));
    assert!(sidecar.is_file(), "sidecar at {}", sidecar.display());
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("orphan-sidecar", &sidecar, None)]);
}

#[test]
fn inspect_decodes_without_keys_and_decrypts_with_them() {
    let f = fixture("max");
    let a = backing_of(&f, "data/a.bin");
    let (code, out, err) = cmd(&[OsStr::new("inspect"), a.as_os_str(), OsStr::new("--json")]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    assert_eq!(v["format"], 2);
    assert_eq!(v["file_type"], "regular");
    assert_eq!(v["file_id"].as_str().expect("file id").len(), 32);
    assert_eq!(v["blocks"], A_BLOCKS as u64);
    assert_eq!(
        v["size"],
        Value::Null,
        "the size is sealed without the vault"
    );
    assert_eq!(v["header_tag_present"], true);
    let layers: Vec<&str> = v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["layer"].as_str().expect("layer"))
        .collect();
    assert_eq!(layers, ["guest", "host", "storage-cmk", "storage-pmk"]);
    assert!(
        v["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .all(|l| l["key"].is_string() && l["key_version"] == 1),
        "{v:#}"
    );

    let plain = f.path().join("a.plain");
    let one = f.path().join("block3");
    let mut args = vec![
        OsStr::new("inspect"),
        a.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("--decrypt-to"),
        plain.as_os_str(),
        OsStr::new("--block"),
        OsStr::new("3"),
        OsStr::new("--out"),
        one.as_os_str(),
    ];
    args.extend(f.vault_args());
    let (code, out, err) = cmd(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    assert_eq!(v["size"], (A_BLOCKS * BLOCK) as u64);
    assert_eq!(v["header_ok"], true);
    assert_eq!(v["plain_path"], "data/a.bin");
    assert_eq!(v["bad_blocks"], serde_json::json!([]));
    let want = pattern(1, A_BLOCKS * BLOCK);
    assert_eq!(
        fs::read(&plain).expect("decrypted"),
        want,
        "--decrypt-to is byte for byte the plaintext"
    );
    assert_eq!(fs::read(&one).expect("block"), want[3 * BLOCK..4 * BLOCK]);

    // The same file with a damaged block: inspect names it and exits 1.
    flip_byte(&a, stored_offset(5) + 1);
    let mut args = vec![OsStr::new("inspect"), a.as_os_str(), OsStr::new("--json")];
    args.extend(f.vault_args());
    let (code, out, _) = cmd(&args);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    assert_eq!(v["bad_blocks"], serde_json::json!([5]));

    // A symlink's backing file is a symlink record.
    let link = backing_of(&f, "data/link");
    let (code, out, _) = cmd(&[
        OsStr::new("inspect"),
        link.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    assert_eq!(v["file_type"], "symlink");
}

#[test]
fn scan_finds_a_planted_needle_in_both_encodings() {
    let f = fixture("general");
    let dir = backing_of(&f, "data/dir");
    let mut body = b"some leaked text: ".to_vec();
    body.extend_from_slice(NEEDLE.as_bytes());
    body.extend(NEEDLE.encode_utf16().flat_map(|u| u.to_le_bytes()));
    body.extend(std::iter::repeat_n(b'a', 400));
    let planted = dir.join("planted");
    fs::write(&planted, &body).expect("plant");
    let (code, out, err) = cmd(&[
        OsStr::new("scan"),
        f.store.as_os_str(),
        OsStr::new("--needle"),
        OsStr::new(NEEDLE),
        OsStr::new("--json"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("scan JSON");
    let hits: Vec<(String, u64)> = v["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| {
            assert_eq!(
                fs::canonicalize(h["file"].as_str().expect("file")).expect("hit file"),
                fs::canonicalize(&planted).expect("planted")
            );
            (
                h["encoding"].as_str().expect("encoding").to_string(),
                h["offset"].as_u64().expect("offset"),
            )
        })
        .collect();
    assert_eq!(
        hits,
        vec![
            ("utf-8".to_string(), 18),
            ("utf-16le".to_string(), 18 + NEEDLE.len() as u64)
        ]
    );
    let flagged: Vec<&Value> = v["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .filter(|s| s["plaintext"] == true)
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "only the planted file looks like plaintext: {v:#}"
    );
    // Text output names the file and the offset.
    let (code, out, _) = cmd(&[
        OsStr::new("scan"),
        f.store.as_os_str(),
        OsStr::new("--needle"),
        OsStr::new(NEEDLE),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("planted") && out.contains("offset 18"),
        "{out}"
    );
}

#[test]
fn temp_without_host_encryption_is_plaintext_by_design_not_a_leak() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(
        f.disk("temp/scratch"),
        format!("{NEEDLE} {}", "t".repeat(500)),
    )
    .expect("write temp");
    let (code, out, err) = cmd(&[
        OsStr::new("scan"),
        f.store.as_os_str(),
        OsStr::new("--needle"),
        OsStr::new(NEEDLE),
        OsStr::new("--json"),
    ]);
    m.unmount();
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("scan JSON");
    let hits = v["hits"].as_array().expect("hits");
    assert!(
        !hits.is_empty(),
        "the temp disk is plaintext under general: {v:#}"
    );
    assert!(hits.iter().all(|h| h["by_design"] == true), "{v:#}");
}

#[test]
fn bad_inputs_exit_2_with_one_clear_line() {
    let f = fixture("general");
    let base = f.path();
    let empty = base.join("empty");
    File::create(&empty).expect("empty file");
    let random = base.join("random");
    fs::write(&random, pattern(9, 9000)).expect("random file");
    let short = base.join("short");
    let a = backing_of(&f, "data/a.bin");
    fs::write(&short, &fs::read(&a).expect("backing")[..60]).expect("truncated header");
    let not_store = base.join("logs");
    let missing = base.join("missing");
    let wrong_pass = base.join("wrong-pass");
    fs::write(&wrong_pass, "nope\n").expect("write wrong passphrase");
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (vec![OsStr::new("inspect"), empty.as_os_str()], "empty"),
        (vec![OsStr::new("inspect"), random.as_os_str()], "magic"),
        (vec![OsStr::new("inspect"), short.as_os_str()], "header"),
        (vec![OsStr::new("inspect"), missing.as_os_str()], "missing"),
        (
            vec![OsStr::new("inspect"), not_store.as_os_str()],
            "directory",
        ),
        (
            vec![
                OsStr::new("inspect"),
                f.store.as_os_str(),
                OsStr::new("--path"),
                OsStr::new("data/nope"),
            ],
            "vault",
        ),
        (
            vec![OsStr::new("verify"), not_store.as_os_str()],
            "strata.conf",
        ),
        (
            vec![OsStr::new("verify"), random.as_os_str()],
            "strata.conf",
        ),
        (
            vec![OsStr::new("scan"), not_store.as_os_str()],
            "strata.conf",
        ),
        (
            vec![
                OsStr::new("verify"),
                f.store.as_os_str(),
                OsStr::new("--vault"),
                f.vault.as_os_str(),
                OsStr::new("--passphrase-file"),
                wrong_pass.as_os_str(),
            ],
            "passphrase",
        ),
    ];
    for (args, word) in cases {
        let (code, out, err) = cmd(&args);
        assert_eq!(
            code, 2,
            "strata {args:?} should exit 2; stdout {out} stderr {err}"
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "strata {args:?}: one line of error, got {err:?}"
        );
        assert!(lines[0].starts_with("strata: "), "{err}");
        assert!(
            lines[0].to_lowercase().contains(word),
            "strata {args:?}: {err:?} should mention {word:?}"
        );
    }
}

fn zero_range(p: &Path, at: u64, len: usize) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open backing rw")
        .write_all_at(&vec![0u8; len], at)
        .expect("zero bytes");
}

fn cut(p: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open backing rw")
        .set_len(len)
        .expect("truncate backing");
}

#[test]
fn empty_backing_file_is_damage_in_a_format_3_store_and_reads_empty() {
    let f = fixture("general");
    let b = backing_of(&f, "data/b.bin");
    cut(&b, 0);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("empty", &b, None)]);
    // Structure alone shows it: the store's format says headers exist.
    let (code, r) = verify(&f, false, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("empty", &b, None)]);
    let m = f.mount();
    assert_eq!(fs::read(f.disk("data/b.bin")).expect("reads"), b"");
    m.unmount();
}

#[test]
fn zeroed_header_region_is_no_header_and_reads_empty() {
    let f = fixture("compliance");
    let b = backing_of(&f, "data/b.bin");
    zero_range(&b, 0, HEADER_LEN as usize);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("no-header", &b, None)]);
    let m = f.mount();
    assert_eq!(fs::read(f.disk("data/b.bin")).expect("reads"), b"");
    m.unmount();
}

#[test]
fn zeroed_block_outside_the_holes_is_reported_and_fails_with_eio() {
    let f = fixture("max");
    let a = backing_of(&f, "data/a.bin");
    zero_range(&a, stored_offset(2), STORED_BLOCK as usize);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("zeroed", &a, Some(2))]);
    assert_eq!(eio_blocks(&f, "a.bin", A_BLOCKS, 1), vec![2]);
}

#[test]
fn holes_are_not_damage_zeroed_or_missing() {
    let f = fixture("general");
    {
        let m = f.mount();
        let s = File::create(f.disk("data/sparse")).expect("create");
        s.write_all_at(b"start", 0).expect("write");
        // Blocks 1..9 are a hole; block 9 holds data.
        s.write_all_at(b"end", 9 * BLOCK as u64).expect("write");
        s.set_len(20 * BLOCK as u64).expect("grow");
        s.sync_all().expect("fsync");
        drop(s);
        m.unmount();
    }
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 0, "{r:#}");
    // Cut the backing file where the trailing hole starts: missing blocks
    // inside the hole range are holes too.
    let sparse = backing_of(&f, "data/sparse");
    cut(&sparse, stored_offset(10));
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 0, "{r:#}");
    let m = f.mount();
    let got = fs::read(f.disk("data/sparse")).expect("read");
    assert_eq!(got.len(), 20 * BLOCK);
    assert_eq!(&got[..5], b"start");
    assert_eq!(&got[9 * BLOCK..9 * BLOCK + 3], b"end");
    assert!(got[BLOCK..9 * BLOCK].iter().all(|&b| b == 0));
    assert!(got[9 * BLOCK + 3..].iter().all(|&b| b == 0));
    m.unmount();
}

#[test]
fn symlink_without_its_mark_is_type_damage_and_a_sticky_file_is_not() {
    let f = fixture("fleet");
    {
        let m = f.mount();
        let p = f.disk("data/a.bin");
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o1644))
            .expect("chmod 1644");
        m.unmount();
    }
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 0, "a sticky regular file is sound: {r:#}");
    let link = backing_of(&f, "data/link");
    let mode = fs::metadata(&link).expect("stat").permissions();
    fs::set_permissions(
        &link,
        std::os::unix::fs::PermissionsExt::from_mode(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        ),
    )
    .expect("clear the sticky bit");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("type", &link, None)]);
    let m = f.mount();
    let e = fs::read(f.disk("data/link")).expect_err("a symlink record is not file contents");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    m.unmount();
}

#[test]
fn torn_blocks_of_a_crashed_session_are_told_from_tampering_and_repaired() {
    let f = fixture("os-policy");
    let blocks = 40usize;
    {
        let m = f.mount();
        fs::write(f.disk("data/big"), pattern(5, blocks * BLOCK)).expect("write");
        m.unmount();
    }
    // A second session rewrites block 30 and crashes: its write window
    // covers block 30 onwards, not block 2.
    {
        let m = f.mount();
        let file = OpenOptions::new()
            .write(true)
            .open(f.disk("data/big"))
            .expect("open");
        file.write_all_at(
            &pattern(5, blocks * BLOCK)[30 * BLOCK..31 * BLOCK],
            30 * BLOCK as u64,
        )
        .expect("rewrite block 30");
        file.sync_all().expect("fsync");
        drop(file);
        m.kill9();
    }
    let big = backing_of(&f, "data/big");
    flip_byte(&big, stored_offset(2) + 5);
    flip_byte(&big, stored_offset(31) + 5);
    zero_range(&big, stored_offset(33), STORED_BLOCK as usize);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(
        &r,
        &[
            ("tag", &big, Some(2)),
            ("torn", &big, Some(31)),
            ("torn", &big, Some(33)),
        ],
    );
    let (code, r) = verify(&f, true, &["--repair"]);
    assert_eq!(code, 1, "{r:#}");
    let repairs = r["repairs"].as_array().expect("repairs");
    assert_eq!(repairs.len(), 1, "{r:#}");
    assert!(
        repairs[0]
            .as_str()
            .is_some_and(|s| s.contains("2 block(s)")),
        "{r:#}"
    );
    // Mended as found: the torn blocks are whole (their window is gone);
    // the tampered one stays damage.
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("tag", &big, Some(2))]);
    let m = f.mount();
    let file = File::open(f.disk("data/big")).expect("open");
    let mut buf = vec![0u8; BLOCK];
    let e = file
        .read_exact_at(&mut buf, 2 * BLOCK as u64)
        .expect_err("tampered block");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    file.read_exact_at(&mut buf, 31 * BLOCK as u64)
        .expect("a torn block reads as found");
    file.read_exact_at(&mut buf, 33 * BLOCK as u64)
        .expect("an unwritten block reads");
    assert_eq!(buf, vec![0u8; BLOCK], "sealed as zeros");
    file.read_exact_at(&mut buf, 30 * BLOCK as u64)
        .expect("block 30");
    assert_eq!(buf, pattern(5, blocks * BLOCK)[30 * BLOCK..31 * BLOCK]);
    drop(file);
    m.unmount();
}

#[test]
fn planted_fifo_and_symlink_are_neither_opened_nor_followed() {
    let f = fixture("general");
    let dir = backing_of(&f, "data/dir");
    let outside = f.path().join("outside");
    fs::write(&outside, format!("{NEEDLE} {}", "o".repeat(400))).expect("write");
    std::os::unix::fs::symlink(&outside, dir.join("planted-link")).expect("symlink");
    mkfifo(&dir.join("planted-fifo"), 0o600).expect("mkfifo");
    // A directory link to outside the store, too.
    std::os::unix::fs::symlink(f.path(), dir.join("planted-dir")).expect("symlink");
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    let kinds: Vec<(String, String)> = issues(&r)
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or_default().to_string(),
                Path::new(i["backing"].as_str().unwrap_or_default())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("name", "planted-dir"),
            ("type", "planted-dir"),
            ("name", "planted-fifo"),
            ("name", "planted-link"),
            ("type", "planted-link"),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string())),
        "{r:#}"
    );
    let (code, out, err) = cmd(&[
        OsStr::new("scan"),
        f.store.as_os_str(),
        OsStr::new("--needle"),
        OsStr::new(NEEDLE),
        OsStr::new("--json"),
    ]);
    assert_eq!(code, 0, "nothing outside the store is read: {out}{err}");
    let out = f.cli(
        &[
            "snapshot",
            "create",
            &f.store.to_string_lossy(),
            "data",
            "s",
        ],
        true,
    );
    assert_ok(&out, "snapshot of a store with planted objects");
    let copied = f
        .store
        .join("snapshots/data/s")
        .join(dir.strip_prefix(f.backing("data")).expect("below the disk"));
    assert_eq!(
        fs::read_link(copied.join("planted-link")).expect("copied as a symlink"),
        outside
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(copied.join("planted-fifo"))
            .expect("fifo copied")
            .file_type()
    ));
}

#[test]
fn a_crashed_sessions_torn_blocks_stay_torn_after_the_config_key_rotates() {
    let f = fixture("general");
    let blocks = 8usize;
    {
        let m = f.mount();
        let file = File::create(f.disk("data/w")).expect("create");
        file.write_all_at(&pattern(9, blocks * BLOCK), 0)
            .expect("write");
        file.sync_all().expect("fsync");
        drop(file);
        m.kill9();
    }
    let w = backing_of(&f, "data/w");
    flip_byte(&w, stored_offset(3) + 5);
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("torn", &w, Some(3))]);
    // `platform` tags the config and the session record: a rotation (by
    // command, or by age at a mount) moves the config to platform@2.
    let store = f.store.to_str().expect("utf-8");
    let out = assert_ok(
        &f.cli(
            &["vault", "key", "rotate", "platform", "--store", store],
            true,
        ),
        "rotate",
    );
    assert!(
        out.contains("config now tagged with platform version 2"),
        "{out}"
    );
    let (code, r) = verify(&f, true, &[]);
    assert_eq!(code, 1);
    assert_exactly(&r, &[("torn", &w, Some(3))]);
    let m = f.mount();
    let file = File::open(f.disk("data/w")).expect("open");
    let mut buf = vec![0u8; BLOCK];
    file.read_exact_at(&mut buf, 3 * BLOCK as u64)
        .expect("a torn block of the crashed session reads as found");
    drop(file);
    assert!(
        !m.log().contains("does not authenticate"),
        "the session record was lost: {}",
        m.log()
    );
    m.unmount();
}
