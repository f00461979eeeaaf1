//! The vault's secrets through the CLI: a passphrase or recovery-key change
//! locks the old secret out of the vault and of its backup (a new master
//! key), keeps or replaces the recovery key only as asked, and is refused
//! while a mount uses the vault; Argon2id parameters outside the floor and
//! the ceiling, and short passphrases, are refused with one line.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `strata vault ARGS… --vault V` unlocked with `unlock` (a passphrase
/// file) or, when `recovery` is given, with that recovery key file.
fn vault(f: &Fixture, args: &[&str], unlock: &Path, recovery: bool) -> std::process::Output {
    let mut cmd = strata(["vault"]);
    cmd.args(args).arg("--vault").arg(&f.vault);
    if recovery {
        cmd.arg("--recovery-key-file").arg(unlock);
    } else {
        cmd.arg("--passphrase-file").arg(unlock);
    }
    run(cmd)
}

fn write(f: &Fixture, name: &str, text: &str) -> PathBuf {
    let p = f.path().join(name);
    fs::write(&p, text).expect("write");
    p
}

/// The recovery key printed in `stdout` (48 digits in 8 dashed groups).
fn printed_recovery_key(stdout: &str) -> String {
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 55 && l.chars().filter(|c| *c == '-').count() == 7)
        .expect("a recovery key is printed")
        .to_string()
}

#[track_caller]
fn assert_wrong(out: &std::process::Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(what),
        "{}",
        describe(out)
    );
}

fn bak(f: &Fixture) -> PathBuf {
    f.path().join("vault.bak")
}

/// Opens a copy of the vault file at `file` (e.g. the backup) with `unlock`.
fn list_copy(f: &Fixture, file: &Path, unlock: &Path, recovery: bool) -> std::process::Output {
    let copy = f.path().join("copy-of-vault");
    fs::copy(file, &copy).expect("copy");
    let mut cmd = strata(["vault", "list", "--vault"]);
    cmd.arg(&copy);
    cmd.arg(if recovery {
        "--recovery-key-file"
    } else {
        "--passphrase-file"
    })
    .arg(unlock);
    run(cmd)
}

#[test]
fn passwd_locks_the_old_passphrase_out_of_the_vault_and_its_backup() {
    let f = Fixture::new("general");
    let rk = write(&f, "recovery", &printed_recovery_key(&f.init_stdout));
    // Before: a save keeps the previous file as vault.bak, which the
    // passphrase opens.
    assert_ok(
        &vault(&f, &["key", "create", "extra"], &f.pass, false),
        "key create",
    );
    assert_ok(&list_copy(&f, &bak(&f), &f.pass, false), "backup opens");
    let old_files: Vec<Vec<u8>> = [f.vault.clone(), bak(&f)]
        .iter()
        .map(|p| fs::read(p).expect("read"))
        .collect();

    let newpass = write(&f, "newpass", "a much better passphrase\n");
    let rk_arg = rk.to_str().expect("utf-8");
    let out = vault(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            newpass.to_str().expect("utf-8"),
            "--keep-recovery-key",
            rk_arg,
        ],
        &f.pass,
        false,
    );
    let said = assert_ok(&out, "passwd");
    assert!(said.contains("new master key"), "{said}");
    assert!(said.contains("recovery key is unchanged"), "{said}");
    for file in [f.vault.clone(), bak(&f)] {
        assert_wrong(&list_copy(&f, &file, &f.pass, false), "wrong passphrase");
        assert_ok(&list_copy(&f, &file, &newpass, false), "new passphrase");
        assert_ok(&list_copy(&f, &file, &rk, true), "kept recovery key");
    }
    // No file next to the vault is an old version (an old passphrase slot
    // and body would be the old file's bytes).
    for entry in fs::read_dir(f.path()).expect("ls") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            let bytes = fs::read(&p).expect("read");
            assert!(
                !old_files.contains(&bytes),
                "{} is an old vault",
                p.display()
            );
        }
    }
    // The old master key opens nothing new: the bodies are sealed under a
    // new one (the old file's header no longer opens the new body).
    let new_file = fs::read(&f.vault).expect("read");
    let mut mixed = old_files[0].clone();
    let h = 29 + 101 * 2 + 32;
    mixed.truncate(h);
    mixed.extend_from_slice(&new_file[h..]);
    let mixed_path = f.path().join("mixed");
    fs::write(&mixed_path, &mixed).expect("write");
    let mut cmd = strata(["vault", "list", "--vault"]);
    cmd.arg(&mixed_path).arg("--passphrase-file").arg(&f.pass);
    assert_wrong(&run(cmd), "does not authenticate");
    fs::copy(&newpass, &f.pass).expect("use the new passphrase");
    f.mount().unmount();
}

#[test]
fn passwd_asks_what_becomes_of_the_recovery_key() {
    let f = Fixture::new("general");
    let rk = write(&f, "recovery", &printed_recovery_key(&f.init_stdout));
    let newpass = write(&f, "newpass", "a much better passphrase\n");
    let np = newpass.to_str().expect("utf-8");
    let before = fs::read(&f.vault).expect("read");

    // Neither kept nor replaced: refused before anything changes.
    let out = vault(&f, &["passwd", "--new-passphrase-file", np], &f.pass, false);
    assert_wrong(&out, "--keep-recovery-key");
    // A recovery key to keep that is not this vault's: refused.
    let other = write(
        &f,
        "other",
        "000000-000011-720885-002816-051260-000000-000000-000000",
    );
    let out = vault(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            np,
            "--keep-recovery-key",
            other.to_str().expect("utf-8"),
        ],
        &f.pass,
        false,
    );
    assert_wrong(&out, "does not open vault");
    // A new passphrase that is too short: refused.
    let short = write(&f, "short", "abc\n");
    let out = vault(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            short.to_str().expect("utf-8"),
            "--new-recovery-key",
        ],
        &f.pass,
        false,
    );
    assert_wrong(&out, "use at least 8");
    assert_eq!(
        fs::read(&f.vault).expect("read"),
        before,
        "a refusal changed the vault"
    );

    // Replaced: a new key is printed and the old one is locked out.
    let out = vault(
        &f,
        &["passwd", "--new-passphrase-file", np, "--new-recovery-key"],
        &f.pass,
        false,
    );
    let said = assert_ok(&out, "passwd --new-recovery-key");
    let new_rk = write(&f, "new-recovery", &printed_recovery_key(&said));
    for file in [f.vault.clone(), bak(&f)] {
        assert_wrong(&list_copy(&f, &file, &rk, true), "wrong recovery key");
        assert_ok(&list_copy(&f, &file, &new_rk, true), "new recovery key");
    }

    // Unlocked with the recovery key (a lost passphrase), passwd keeps it.
    let third = write(&f, "third", "yet another passphrase\n");
    let out = vault(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            third.to_str().expect("utf-8"),
        ],
        &new_rk,
        true,
    );
    assert_ok(&out, "passwd unlocked with the recovery key");
    assert_ok(&vault(&f, &["list"], &third, false), "third passphrase");
    assert_ok(&vault(&f, &["list"], &new_rk, true), "recovery key kept");
    assert_wrong(&vault(&f, &["list"], &newpass, false), "wrong passphrase");
}

#[test]
fn a_new_recovery_key_locks_the_old_one_out_and_needs_the_passphrase() {
    let f = Fixture::new("general");
    let rk = write(&f, "recovery", &printed_recovery_key(&f.init_stdout));
    let out = vault(&f, &["recovery-key"], &rk, true);
    assert_wrong(&out, "needs the passphrase");
    let said = assert_ok(
        &vault(&f, &["recovery-key"], &f.pass, false),
        "recovery-key",
    );
    let new_rk = write(&f, "new-recovery", &printed_recovery_key(&said));
    for file in [f.vault.clone(), bak(&f)] {
        assert_wrong(&list_copy(&f, &file, &rk, true), "wrong recovery key");
        assert_ok(&list_copy(&f, &file, &new_rk, true), "new recovery key");
        assert_ok(&list_copy(&f, &file, &f.pass, false), "passphrase kept");
    }
}

#[test]
fn secret_changes_are_refused_while_a_mount_uses_the_vault() {
    let f = Fixture::new("general");
    let newpass = write(&f, "newpass", "a much better passphrase\n");
    let before = fs::read(&f.vault).expect("read");
    let m = f.mount();
    let out = vault(
        &f,
        &[
            "passwd",
            "--new-passphrase-file",
            newpass.to_str().expect("utf-8"),
            "--new-recovery-key",
        ],
        &f.pass,
        false,
    );
    assert_wrong(&out, "in use by a running mount");
    assert_wrong(
        &vault(&f, &["recovery-key"], &f.pass, false),
        "in use by a running mount",
    );
    assert_eq!(fs::read(&f.vault).expect("read"), before);
    // The running mount still follows the vault: a revocation reaches it.
    assert_ok(
        &vault(&f, &["key", "disable", "platform"], &f.pass, false),
        "disable",
    );
    let refused = poll_until(Duration::from_secs(10), || {
        fs::write(f.disk("data").join("x"), b"y").is_err()
    });
    assert!(refused, "the revocation did not reach the mount");
    assert_ok(
        &vault(&f, &["key", "enable", "platform"], &f.pass, false),
        "enable",
    );
    m.unmount();
    assert_ok(
        &vault(
            &f,
            &[
                "passwd",
                "--new-passphrase-file",
                newpass.to_str().expect("utf-8"),
                "--new-recovery-key",
            ],
            &f.pass,
            false,
        ),
        "passwd once unmounted",
    );
}

#[test]
fn kdf_below_the_floor_above_the_ceiling_and_short_passphrases_are_refused_at_creation() {
    let f = Fixture::empty("general");
    let short = write(&f, "short", "x\n");
    for (memory, passes, pass, says) in [
        (
            "8",
            "1",
            &f.pass,
            "memory 8 KiB is below the floor of 1024 KiB",
        ),
        ("1024", "0", &f.pass, "0 passes is below the floor of 1"),
        (
            "2097152",
            "1",
            &f.pass,
            "memory 2097152 KiB is above the ceiling of 1048576 KiB",
        ),
        (
            "1024",
            "256",
            &f.pass,
            "256 passes is above the ceiling of 10",
        ),
        (
            "1024",
            "1",
            &short,
            "the new passphrase has 1 characters; use at least 8",
        ),
    ] {
        for create in [
            vec!["vault", "create"],
            vec!["init", f.store.to_str().expect("utf-8")],
        ] {
            let mut cmd = strata(&create);
            cmd.arg("--vault")
                .arg(&f.vault)
                .arg("--passphrase-file")
                .arg(pass)
                .args(["--kdf-memory", memory, "--kdf-iterations", passes]);
            let out = run(cmd);
            assert_wrong(&out, says);
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).lines().count(),
                1,
                "{}",
                describe(&out)
            );
            assert!(!f.vault.exists() && !f.store.exists());
        }
    }
    // At the floor: accepted, with a warning that it is weak.
    let mut cmd = strata(["vault", "create", "--vault"]);
    cmd.arg(&f.vault)
        .arg("--passphrase-file")
        .arg(&f.pass)
        .args(["--kdf-memory", "1024", "--kdf-iterations", "1"]);
    let out = run(cmd);
    assert_ok(&out, "vault create at the floor");
    assert!(String::from_utf8_lossy(&out.stderr).contains("below the recommended minimum"));
}

#[test]
fn a_vault_header_outside_the_limits_is_refused_at_once() {
    let f = Fixture::new("general");
    let good = fs::read(&f.vault).expect("read");
    for (memory, passes, says) in [
        (4u32 << 20, 3u32, "memory 4194304 KiB is above the ceiling"),
        (1024, 11, "11 passes is above the ceiling of 10"),
        (8, 1, "memory 8 KiB is below the floor of 1024 KiB"),
    ] {
        let mut b = good.clone();
        b[30..34].copy_from_slice(&memory.to_le_bytes());
        b[34..38].copy_from_slice(&passes.to_le_bytes());
        // The header checksum is unkeyed: a crafted header carries a good one.
        let h = 29 + 101 * 2;
        let sum = blake3::hash(&b[..h]);
        b[h..h + 32].copy_from_slice(sum.as_bytes());
        fs::write(&f.vault, &b).expect("write");
        let start = Instant::now();
        let out = run(f.mount_command(&[]));
        if is_mounted(&f.mnt) {
            lazy_unmount(&f.mnt);
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_wrong(&out, says);
        assert_wrong(&out, "passphrase slot's Argon2id parameters are refused");
    }
    fs::write(&f.vault, &good).expect("restore");
    f.mount().unmount();
}

#[test]
fn the_format_1_example_vault_keeps_opening() {
    // The example store's vault was made with 1 MiB and 1 pass: the floor.
    let f = Fixture::empty("general");
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(f.path())
        .arg("v1/vault")
        .status()
        .expect("tar");
    assert!(st.success());
    let test = write(&f, "test-pass", "test");
    let mut cmd = strata(["vault", "list", "--vault"]);
    cmd.arg(f.path().join("v1/vault"))
        .arg("--passphrase-file")
        .arg(&test);
    assert_ok(&run(cmd), "vault list of the example vault");
}
