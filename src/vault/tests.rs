//! Tests of the vault as a whole: files on disk, passphrases, recovery keys,
//! damage, saves and key management.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// The floor: the cheapest parameters a vault may have.
const FAST: KdfParams = KdfParams {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

fn pass(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

fn new_vault(dir: &Path) -> (PathBuf, Vault, RecoveryKey) {
    let path = dir.join("sub").join("vault");
    let (v, r) = Vault::create(&path, &pass("correct horse"), "eu-west", FAST).expect("create");
    (path, v, r)
}

#[test]
fn create_then_open_round_trips_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let first = v
        .create_key("disk", KeyKind::Customer)
        .expect("create_key")
        .latest()
        .expect("latest")
        .material()
        .duplicate();
    v.create_key("host.1", KeyKind::Host).expect("create_key");
    assert_eq!(v.rotate_key("disk").expect("rotate"), 2);
    v.set_rotation_days("disk", Some(30)).expect("rotation");
    v.set_store_generation("00aa", 5);
    v.save().expect("save");

    let w = Vault::open(&path, &pass("correct horse")).expect("open");
    assert_eq!(w.id(), v.id());
    assert_eq!(w.region(), "eu-west");
    assert_eq!(w.created(), v.created());
    assert_eq!(w.path(), path);
    assert_eq!(
        w.keys().iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["disk", "host.1"]
    );
    let disk = w.key("disk").expect("disk");
    assert_eq!(disk.kind, KeyKind::Customer);
    assert_eq!(disk.rotation_days, Some(30));
    assert_eq!(disk.versions.len(), 2);
    assert!(disk.version(1).expect("v1").material() == &first);
    assert!(disk.version(2).expect("v2").material() != &first);
    assert!(
        disk.version(2).expect("v2").material()
            == v.key("disk")
                .expect("disk")
                .latest()
                .expect("latest")
                .material()
    );
    assert_eq!(w.key("host.1").expect("host").kind, KeyKind::Host);
    assert_eq!(w.store_generation("00aa"), 5);
    assert_eq!(w.store_generation("00bb"), 0);
}

#[test]
fn wrong_passphrase_is_reported_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _, _) = new_vault(dir.path());
    let e = Vault::open(&path, &pass("correct horsf")).expect_err("wrong");
    assert!(matches!(e, VaultError::WrongPassphrase(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("wrong passphrase for vault {}", path.display())
    );
}

#[test]
fn recovery_key_opens_the_vault_and_a_wrong_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    v.create_key("k", KeyKind::Platform).expect("key");
    v.save().expect("save");
    let typed = RecoveryKey::parse(&r.to_string()).expect("parse");
    let w = Vault::open_with_recovery(&path, &typed).expect("recovery opens");
    assert!(w.key("k").is_some());
    // The recovery key is not the passphrase and vice versa.
    let as_pass = SecretBytes::new(r.to_string().into_bytes());
    assert!(matches!(
        Vault::open(&path, &as_pass),
        Err(VaultError::WrongPassphrase(_))
    ));
    let other = RecoveryKey::random();
    let e = Vault::open_with_recovery(&path, &other).expect_err("wrong key");
    assert!(matches!(e, VaultError::WrongRecoveryKey(_)), "{e:?}");
}

#[test]
fn change_passphrase_locks_the_old_one_out_of_file_backup_and_later_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    v.create_key("k", KeyKind::Host).expect("key");
    v.save().expect("save");
    let bak = file::with_suffix(&path, ".bak");
    // Before the change, the backup is the previous save: the old
    // passphrase opens it.
    Vault::open(&bak, &pass("correct horse")).expect("backup before");
    let old_vmk = v.vmk.duplicate();
    let old_file = fs::read(&path).expect("read");

    v.create_key("unsaved", KeyKind::Customer).expect("key");
    v.check_recovery_key(&r)
        .expect("the recovery key is the vault's");
    v.change_secrets(&pass("battery staple"), FAST, &r, FAST)
        .expect("change");
    for file in [&path, &bak] {
        assert!(matches!(
            Vault::open(file, &pass("correct horse")),
            Err(VaultError::WrongPassphrase(_))
        ));
        let w = Vault::open(file, &pass("battery staple")).expect("new opens");
        assert!(w.key("k").is_some() && w.key("unsaved").is_some());
        // A new master key: the old one opens no later body.
        assert!(w.vmk != old_vmk);
        let bytes = fs::read(file).expect("read");
        let parsed = format::parse(file, &bytes).expect("parse");
        assert!(open_body(file, &old_vmk, &parsed).is_err());
        // The kept recovery key opens it.
        Vault::open_with_recovery(file, &r).expect("recovery still opens");
    }
    // The old passphrase slot is in none of the vault's files.
    let old_slot = &old_file[29..29 + 101];
    for entry in fs::read_dir(path.parent().expect("dir")).expect("ls") {
        let p = entry.expect("entry").path();
        let bytes = fs::read(&p).expect("read");
        assert!(
            !bytes.windows(old_slot.len()).any(|w| w == old_slot),
            "{} still holds the old passphrase slot",
            p.display()
        );
    }
    // Later saves keep the new secrets, and the backup stays the new kind.
    v.save().expect("save");
    Vault::open(&bak, &pass("battery staple")).expect("backup after a save");
}

#[test]
fn a_new_recovery_key_locks_the_old_one_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, old) = new_vault(dir.path());
    let new = RecoveryKey::random();
    v.change_secrets(&pass("correct horse"), FAST, &new, FAST)
        .expect("change");
    for file in [path.clone(), file::with_suffix(&path, ".bak")] {
        assert!(matches!(
            Vault::open_with_recovery(&file, &old),
            Err(VaultError::WrongRecoveryKey(_))
        ));
        Vault::open_with_recovery(&file, &new).expect("new recovery key");
        Vault::open(&file, &pass("correct horse")).expect("passphrase kept");
    }
    let e = v.check_recovery_key(&old).expect_err("old key");
    assert!(
        matches!(e, VaultError::RecoveryKeyToKeepIsWrong(_)),
        "{e:?}"
    );
}

#[test]
fn a_crash_inside_a_secret_change_leaves_the_old_or_the_new_vault() {
    // The process dies between replacing the backup and replacing the
    // file (the only point between two renames): the file is the old
    // vault, whole, under the old secret; the backup is already the new one.
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    v.save().expect("save");
    let before = fs::read(&path).expect("read");
    let new = SecretBytes::new(b"battery staple".to_vec());
    // Run the change in a child process that crashes at the named point.
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "vault::tests::secret_change_child",
            "--nocapture",
            "--ignored",
        ])
        .env("STRATA_TEST_CRASH_AT", "vault-backup-replaced")
        .env("STRATA_TEST_VAULT", &path)
        .env("STRATA_TEST_RECOVERY", r.to_string())
        .status()
        .expect("run child");
    assert_eq!(status.code(), Some(99), "the child crashed at the point");
    assert_eq!(fs::read(&path).expect("read"), before, "file untouched");
    Vault::open(&path, &pass("correct horse")).expect("old passphrase, old file");
    let bak = file::with_suffix(&path, ".bak");
    Vault::open(&bak, &new).expect("the backup is the new vault");
    // Running the change again finishes it.
    let mut v = Vault::open(&path, &pass("correct horse")).expect("open");
    v.change_secrets(&new, FAST, &r, FAST).expect("change");
    Vault::open(&path, &new).expect("new");
    assert!(Vault::open(&bak, &pass("correct horse")).is_err());
}

/// The child of `a_crash_inside_a_secret_change_leaves_the_old_or_the_new_vault`.
#[test]
#[ignore]
fn secret_change_child() {
    let Some(path) = std::env::var_os("STRATA_TEST_VAULT") else {
        return;
    };
    let r = RecoveryKey::parse(&std::env::var("STRATA_TEST_RECOVERY").expect("key")).expect("key");
    let mut v = Vault::open(Path::new(&path), &pass("correct horse")).expect("open");
    v.change_secrets(&pass("battery staple"), FAST, &r, FAST)
        .expect("change");
}

#[test]
fn secret_change_is_refused_while_a_mount_holds_the_vault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    let before = fs::read(&path).expect("read");
    let daemon = Vault::open(&path, &pass("correct horse")).expect("open");
    let hold = daemon.hold_for_mount().expect("hold");
    let second = daemon.hold_for_mount().expect("two mounts share the hold");
    let e = v
        .change_secrets(&pass("battery staple"), FAST, &r, FAST)
        .expect_err("refused");
    assert!(matches!(e, VaultError::InUse(_)), "{e:?}");
    assert!(e.to_string().contains("in use by a running mount"), "{e}");
    assert_eq!(fs::read(&path).expect("read"), before);
    drop((hold, second));
    v.change_secrets(&pass("battery staple"), FAST, &r, FAST)
        .expect("free again");
}

#[test]
fn change_secrets_with_bad_params_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    let before = fs::read(&path).expect("read");
    let bad = KdfParams {
        iterations: 0,
        ..FAST
    };
    let e = v
        .change_secrets(&pass("xxxxxxxxx"), bad, &r, FAST)
        .expect_err("refused");
    assert!(matches!(e, VaultError::InvalidKdfParams(_)), "{e:?}");
    assert_eq!(fs::read(&path).expect("read"), before);
    Vault::open(&path, &pass("correct horse")).expect("old passphrase");
}

/// A small vault file with one key, and its passphrase.
fn small_vault_bytes(dir: &Path) -> (PathBuf, Vec<u8>) {
    let (path, mut v, _) = new_vault(dir);
    v.create_key("k", KeyKind::Platform).expect("key");
    v.save().expect("save");
    let bytes = fs::read(&path).expect("read");
    (path, bytes)
}

#[test]
fn every_single_byte_flip_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, good) = small_vault_bytes(dir.path());
    let header_len = 29 + 101 * 2 + 32;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01 << (i % 8);
        fs::write(&path, &bad).expect("write");
        let e = Vault::open(&path, &pass("correct horse"))
            .expect_err(&format!("flip at offset {i} opened"));
        // The checksum and the body tag tell damage from a wrong passphrase.
        match (i, &e) {
            (0..=7, VaultError::NotAVault(_)) => {}
            (8..=9, VaultError::NewerFormat { .. } | VaultError::Corrupt { .. }) => {}
            (10.., VaultError::Corrupt { .. }) => {}
            _ => panic!("flip at offset {i}: unexpected {e:?}"),
        }
        if i >= header_len + 28 {
            assert!(
                e.to_string().contains("does not authenticate"),
                "flip at offset {i}: {e}"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, good) = small_vault_bytes(dir.path());
    for len in 0..good.len() {
        fs::write(&path, &good[..len]).expect("write");
        let e = Vault::open(&path, &pass("correct horse"))
            .expect_err(&format!("truncated to {len} opened"));
        assert!(
            matches!(e, VaultError::Corrupt { .. }),
            "truncated to {len}: {e:?}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    fs::write(&path, &long).expect("write");
    let e = Vault::open(&path, &pass("correct horse")).expect_err("trailing byte");
    assert!(
        e.to_string().contains("1 unexpected bytes after the body"),
        "{e}"
    );
}

#[test]
fn random_bytes_are_not_a_vault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("noise");
    fs::write(&path, crypto::random_array::<600>()).expect("write");
    let e = Vault::open(&path, &pass("x")).expect_err("noise");
    assert!(matches!(e, VaultError::NotAVault(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{} is not a strata vault", path.display())
    );
}

#[test]
fn newer_version_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut bytes) = small_vault_bytes(dir.path());
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    fs::write(&path, &bytes).expect("write");
    let e = Vault::open(&path, &pass("correct horse")).expect_err("newer");
    assert!(
        matches!(e, VaultError::NewerFormat { version: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("format version 2"), "{e}");
}

#[test]
fn missing_and_existing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("none");
    assert!(matches!(
        Vault::open(&path, &pass("x")),
        Err(VaultError::NotFound(_))
    ));
    fs::write(&path, b"something").expect("write");
    let e = Vault::create(&path, &pass("xxxxxxxx"), "r", FAST).expect_err("exists");
    assert!(matches!(e, VaultError::Exists(_)), "{e:?}");
    assert_eq!(fs::read(&path).expect("read"), b"something");
}

#[test]
fn save_keeps_a_backup_and_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let bak = file::with_suffix(&path, ".bak");
    let tmp = file::with_suffix(&path, ".tmp");
    assert!(!bak.exists() && !tmp.exists());
    let first = fs::read(&path).expect("read");

    v.create_key("a", KeyKind::Host).expect("key");
    v.save().expect("save");
    assert_eq!(fs::read(&bak).expect("bak"), first);
    let second = fs::read(&path).expect("read");
    assert_ne!(second, first);

    v.save().expect("save again");
    assert_eq!(fs::read(&bak).expect("bak"), second);
    assert!(!tmp.exists());
    assert!(!file::with_suffix(&path, ".bak.tmp").exists());
    // The backup is itself a vault that opens.
    let b = Vault::open(&bak, &pass("correct horse")).expect("backup opens");
    assert!(b.key("a").is_some());
}

#[test]
fn failed_saves_leave_the_vault_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let before = fs::read(&path).expect("read");
    v.create_key("a", KeyKind::Host).expect("key");

    // The temporary file cannot be written.
    let tmp = file::with_suffix(&path, ".tmp");
    fs::create_dir(&tmp).expect("mkdir");
    let e = v.save().expect_err("tmp is a directory");
    assert!(matches!(e, VaultError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("vault.tmp"), "{e}");
    assert_eq!(fs::read(&path).expect("read"), before);
    fs::remove_dir(&tmp).expect("rmdir");

    // The backup cannot be written: the new file is not put in place either.
    let bak_tmp = file::with_suffix(&path, ".bak.tmp");
    fs::create_dir(&bak_tmp).expect("mkdir");
    assert!(v.save().is_err());
    assert_eq!(fs::read(&path).expect("read"), before);
    assert!(!tmp.exists());
    fs::remove_dir(&bak_tmp).expect("rmdir");

    v.save().expect("save");
    assert!(Vault::open(&path, &pass("correct horse"))
        .expect("open")
        .key("a")
        .is_some());
}

#[test]
fn files_are_0600_and_new_directories_0700() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("sub")), 0o700);
    v.save().expect("save");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&file::with_suffix(&path, ".bak")), 0o600);
    assert_eq!(mode(&file::with_suffix(&path, ".lock")), 0o600);
}

#[test]
fn concurrent_saves_never_tear_the_file_nor_undo_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut a, _) = new_vault(dir.path());
    a.save().expect("save");
    let mut b = Vault::open(&path, &pass("correct horse")).expect("open");
    std::thread::scope(|s| {
        for (v, prefix) in [(&mut a, "a"), (&mut b, "b")] {
            s.spawn(move || {
                for i in 0..25 {
                    let name = format!("{prefix}{i}");
                    loop {
                        v.create_key(&name, KeyKind::Host).expect("key");
                        match v.save() {
                            Ok(()) => break,
                            // The other writer saved since: read its save
                            // and make the change again.
                            Err(VaultError::ChangedSince { .. }) => v.reload().expect("reload"),
                            Err(e) => panic!("save: {e}"),
                        }
                    }
                }
            });
        }
    });
    let last = Vault::open(&path, &pass("correct horse")).expect("whole file");
    for prefix in ["a", "b"] {
        for i in 0..25 {
            assert!(
                last.key(&format!("{prefix}{i}")).is_some(),
                "{prefix}{i} lost"
            );
        }
    }
    Vault::open(&file::with_suffix(&path, ".bak"), &pass("correct horse")).expect("whole backup");
}

#[test]
fn key_management_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, mut v, _) = new_vault(dir.path());
    let k = v.create_key("disk", KeyKind::Customer).expect("key");
    assert_eq!(k.versions.len(), 1);
    assert_eq!(k.latest().expect("latest").version, 1);
    assert!(k.latest().expect("latest").enabled);
    assert!(k.rotation_days.is_none());

    assert!(matches!(
        v.create_key("disk", KeyKind::Host),
        Err(VaultError::KeyExists(n)) if n == "disk"
    ));
    for bad in ["", "a b", "../x", &"n".repeat(65)] {
        assert!(matches!(
            v.create_key(bad, KeyKind::Host),
            Err(VaultError::InvalidKeyName(_))
        ));
    }
    assert!(matches!(
        v.rotate_key("nope"),
        Err(VaultError::NoSuchKey(_))
    ));

    assert_eq!(v.rotate_key("disk").expect("rotate"), 2);
    assert_eq!(v.rotate_key("disk").expect("rotate"), 3);
    let disk = v.key("disk").expect("disk");
    assert_eq!(disk.latest_enabled().expect("enabled").version, 3);
    assert!(disk.version(4).is_none());

    v.set_enabled("disk", Some(3), false).expect("disable 3");
    let disk = v.key("disk").expect("disk");
    assert_eq!(disk.latest().expect("latest").version, 3);
    assert_eq!(disk.latest_enabled().expect("enabled").version, 2);
    assert!(!disk.version(3).expect("v3").enabled);

    v.set_enabled("disk", None, false).expect("disable all");
    assert!(v.key("disk").expect("disk").latest_enabled().is_none());

    v.set_enabled("disk", Some(1), true).expect("enable 1");
    assert_eq!(
        v.key("disk")
            .expect("disk")
            .latest_enabled()
            .expect("enabled")
            .version,
        1
    );
    v.set_enabled("disk", None, true).expect("enable all");
    assert_eq!(
        v.key("disk")
            .expect("disk")
            .latest_enabled()
            .expect("enabled")
            .version,
        3
    );

    let e = v.set_enabled("disk", Some(9), true).expect_err("no v9");
    assert!(matches!(e, VaultError::NoSuchVersion { version: 9, .. }));
    assert_eq!(e.to_string(), "key \"disk\" has no version 9");
    assert!(matches!(
        v.set_enabled("nope", None, true),
        Err(VaultError::NoSuchKey(_))
    ));

    // Distinct random material for every version.
    let disk = v.key("disk").expect("disk");
    for a in &disk.versions {
        for b in &disk.versions {
            assert_eq!(a.version == b.version, a.material() == b.material());
        }
    }
}

#[test]
fn debug_shows_no_key_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, r) = new_vault(dir.path());
    v.create_key("disk", KeyKind::Customer).expect("key");
    v.rotate_key("disk").expect("rotate");
    let shown = format!("{v:?} {:?} {:?}", v.keys(), r);
    assert!(
        shown.contains("disk") && shown.contains("eu-west"),
        "{shown}"
    );
    assert!(shown.contains(&hex::encode(v.id())), "{shown}");
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    let mut secrets: Vec<String> = vec![hex::encode(v.vmk.expose()), r.to_string()];
    for k in v.keys() {
        for kv in &k.versions {
            secrets.push(hex::encode(kv.material().expose()));
            secrets.push(format!("{:?}", kv.material().expose()));
        }
    }
    for s in &secrets {
        assert!(!shown.contains(s.as_str()), "debug output leaks {s}");
    }
    // Nor does any error message about this vault.
    let e = Vault::open(&path, &pass("zebra-quartz")).expect_err("wrong");
    assert!(!format!("{e} {e:?}").contains("zebra"));
}

#[test]
fn reload_sees_another_instances_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let mut other = Vault::open(&path, &pass("correct horse")).expect("open");
    other.create_key("added", KeyKind::Host).expect("key");
    other.set_store_generation("ab", 9);
    other.save().expect("save");
    assert!(v.key("added").is_none());
    v.reload().expect("reload");
    assert!(v.key("added").is_some());
    assert_eq!(v.store_generation("ab"), 9);

    // A change of secrets elsewhere gives the file a master key this
    // instance does not hold: reloading fails and keeps what it had.
    let r = RecoveryKey::random();
    other
        .change_secrets(&pass("a new passphrase"), FAST, &r, FAST)
        .expect("change");
    let e = v.reload().expect_err("new master key");
    assert!(e.to_string().contains("does not authenticate"), "{e}");
    assert!(v.key("added").is_some());

    // A different vault at the same path is refused.
    fs::remove_file(&path).expect("rm");
    let _ = Vault::create(&path, &pass("xxxxxxxx"), "r", FAST).expect("create");
    let e = v.reload().expect_err("different vault");
    assert!(e.to_string().contains("now holds vault"), "{e}");
    assert!(v.key("added").is_some());
}

#[test]
fn reload_refuses_a_backup_copied_over_the_vault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    v.create_key("cmk", KeyKind::Customer).expect("key");
    v.save().expect("save");
    let mut daemon = Vault::open(&path, &pass("correct horse")).expect("open");
    let held = daemon.generation();
    v.set_enabled("cmk", None, false).expect("disable");
    v.save().expect("save");
    daemon.reload().expect("reload the newer file");
    assert_eq!(daemon.generation(), held + 1);
    assert!(!daemon.key("cmk").expect("cmk").versions[0].enabled);
    // The backup holds the key enabled, one generation back.
    fs::copy(path.with_file_name("vault.bak"), &path).expect("restore the backup");
    let e = daemon.reload().expect_err("older generation");
    assert!(
        matches!(e, VaultError::RolledBack { found, held: h, .. } if found == held && h == held + 1),
        "{e:?}"
    );
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert!(
        !daemon.key("cmk").expect("cmk").versions[0].enabled,
        "the revocation stays"
    );
    // A fresh open (no generation held yet) reads it: only a process that
    // saw the newer vault can tell.
    let fresh = Vault::open(&path, &pass("correct horse")).expect("open");
    assert_eq!(fresh.generation(), held);
}

#[test]
fn external_keys_hold_no_material_and_refuse_local_operations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut v, _) = new_vault(dir.path());
    let svc = ExternalKey {
        addresses: vec!["https://kms.example:8200".into()],
        mount: "transit".into(),
        key: "fleet".into(),
        ca_file: Some("/etc/strata/ca.pem".into()),
        auth: ServiceAuth::Approle {
            mount: "approle".into(),
            role_id_file: "/etc/strata/role-id".into(),
            secret_id_file: "/etc/strata/secret-id".into(),
        },
        manage: false,
        timeout_ms: Some(2000),
    };
    v.create_external_key("fleet-cmk", svc.clone())
        .expect("create");
    assert!(matches!(
        v.create_external_key("fleet-cmk", svc.clone()),
        Err(VaultError::KeyExists(_))
    ));
    let mut bad = svc.clone();
    bad.addresses = vec!["http://kms.example".into()];
    let e = v.create_external_key("other", bad).expect_err("http");
    assert!(e.to_string().contains("use https"), "{e}");
    assert!(matches!(
        v.rotate_key("fleet-cmk"),
        Err(VaultError::HeldByService(..))
    ));
    assert!(matches!(
        v.set_enabled("fleet-cmk", None, false),
        Err(VaultError::HeldByService(..))
    ));
    v.save().expect("save");
    let w = Vault::open(&path, &pass("correct horse")).expect("open");
    let k = w.key("fleet-cmk").expect("key");
    assert_eq!(k.kind, KeyKind::Customer);
    assert!(k.versions.is_empty() && k.latest().is_none());
    assert_eq!(k.service.as_ref(), Some(&svc));
}

#[test]
fn kdf_params_outside_floor_and_ceiling_are_refused_at_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v");
    for (kdf, says) in [
        (
            KdfParams {
                memory_kib: 8,
                ..FAST
            },
            "memory 8 KiB is below the floor of 1024 KiB",
        ),
        (
            KdfParams {
                iterations: 0,
                ..FAST
            },
            "0 passes is below the floor of 1",
        ),
        (
            KdfParams {
                parallelism: 0,
                ..FAST
            },
            "parallelism 0 is below the floor of 1 lane",
        ),
        (
            KdfParams {
                memory_kib: MAX_MEMORY_KIB + 1,
                ..FAST
            },
            "memory 1048577 KiB is above the ceiling of 1048576 KiB (1 GiB)",
        ),
        (
            KdfParams {
                iterations: 256,
                ..FAST
            },
            "256 passes is above the ceiling of 10",
        ),
        (
            KdfParams {
                parallelism: 64,
                memory_kib: 64 * 1024,
                ..FAST
            },
            "parallelism 64 is above the ceiling of 16 lanes",
        ),
    ] {
        let e = Vault::create(&path, &pass("long enough"), "r", kdf).expect_err("bad params");
        assert!(matches!(e, VaultError::InvalidKdfParams(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("invalid Argon2id parameters: {says}")
        );
    }
    assert!(!path.exists());
}

#[test]
fn short_passphrases_are_refused_at_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v");
    for short in ["", "x", "1234567", "äöüäöüä"] {
        let e = Vault::create(&path, &pass(short), "r", FAST).expect_err("short");
        assert!(matches!(e, VaultError::WeakPassphrase(_)), "{e:?}");
    }
    let e = Vault::create(&path, &pass("x"), "r", FAST).expect_err("short");
    assert_eq!(
        e.to_string(),
        "the new passphrase has 1 characters; use at least 8"
    );
    assert!(!path.exists());
    Vault::create(&path, &pass("12345678"), "r", FAST).expect("8 is enough");
}

#[test]
fn crafted_header_demanding_huge_or_tiny_kdf_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _, _) = new_vault(dir.path());
    let good = fs::read(&path).expect("read");
    // memory, passes of the passphrase slot (slot 0 at byte 29).
    for (memory, passes, says) in [
        (
            4 * 1024 * 1024,
            3,
            "memory 4194304 KiB is above the ceiling",
        ),
        (64 * 1024, 256, "256 passes is above the ceiling of 10"),
        (8, 1, "memory 8 KiB is below the floor of 1024 KiB"),
    ] {
        let mut b = good.clone();
        b[30..34].copy_from_slice(&u32::to_le_bytes(memory));
        b[34..38].copy_from_slice(&u32::to_le_bytes(passes));
        let h = 29 + 101 * 2;
        let sum = blake3::hash(&b[..h]);
        b[h..h + 32].copy_from_slice(sum.as_bytes());
        fs::write(&path, &b).expect("write");
        let start = std::time::Instant::now();
        let e = Vault::open(&path, &pass("correct horse")).expect_err("refused");
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        assert!(matches!(e, VaultError::RefusedKdf { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "vault {}: the passphrase slot's Argon2id parameters are refused: ",
                path.display()
            )) && msg.contains(says),
            "{msg}"
        );
    }
}

/// Times one default Argon2id derivation; run with
/// `cargo test --release -- --ignored default_kdf_cost --nocapture`.
#[test]
#[ignore]
fn default_kdf_cost() {
    let start = std::time::Instant::now();
    let kek = seal::derive_kek(b"passphrase", &[0; 16], KdfParams::default()).expect("kdf");
    let took = start.elapsed();
    drop(kek);
    println!("Argon2id {} took {took:?}", KdfParams::default());
    assert!(took < std::time::Duration::from_secs(1));
}

#[test]
fn a_save_over_a_vault_saved_since_it_was_read_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut a, _) = new_vault(dir.path());
    a.create_key("host", KeyKind::Host).expect("key");
    a.save().expect("save");
    // Two commands at once: a rotation (whose new version a store's DEKs
    // are then rewrapped to) and an unrelated change.
    let mut b = Vault::open(&path, &pass("correct horse")).expect("open");
    assert_eq!(a.rotate_key("host").expect("rotate"), 2);
    a.save().expect("save");
    b.set_rotation_days("host", Some(30)).expect("policy");
    let e = b.save().expect_err("b read the vault before a saved");
    assert!(matches!(e, VaultError::ChangedSince { .. }), "{e:?}: {e}");
    assert!(e.to_string().contains("run it again"), "{e}");
    let on_disk = Vault::open(&path, &pass("correct horse")).expect("open");
    assert!(
        on_disk.key("host").expect("host").version(2).is_some(),
        "the rotation's new version was lost"
    );
    // Read again, the change goes in beside the rotation.
    b.reload().expect("reload");
    b.set_rotation_days("host", Some(30)).expect("policy");
    b.save().expect("save after reading again");
    let on_disk = Vault::open(&path, &pass("correct horse")).expect("open");
    let host = on_disk.key("host").expect("host");
    assert!(host.version(2).is_some());
    assert_eq!(host.rotation_days, Some(30));
}

#[test]
fn a_save_after_a_passphrase_change_elsewhere_cannot_bring_the_old_passphrase_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _, recovery) = new_vault(dir.path());
    // A long command (a re-encryption) opened the vault with the old
    // passphrase; meanwhile the passphrase is changed because it leaked.
    let mut long = Vault::open(&path, &pass("correct horse")).expect("open");
    let mut other = Vault::open(&path, &pass("correct horse")).expect("open");
    other
        .change_secrets(&pass("a new passphrase"), FAST, &recovery, FAST)
        .expect("change");
    long.set_store_generation("00aa", 7);
    let e = long.save().expect_err("saved under the old master key");
    assert!(matches!(e, VaultError::ChangedSince { .. }), "{e:?}: {e}");
    assert!(matches!(
        Vault::open(&path, &pass("correct horse")),
        Err(VaultError::WrongPassphrase(_))
    ));
    assert!(matches!(
        Vault::open(&file::with_suffix(&path, ".bak"), &pass("correct horse")),
        Err(VaultError::WrongPassphrase(_))
    ));
    Vault::open(&path, &pass("a new passphrase")).expect("the new passphrase opens it");
    // Nor can a second change of secrets from the stale handle.
    let e = long
        .change_secrets(&pass("yet another one"), FAST, &recovery, FAST)
        .expect_err("stale handle");
    assert!(matches!(e, VaultError::ChangedSince { .. }), "{e:?}");
    Vault::open(&path, &pass("a new passphrase")).expect("still the new passphrase");
}
