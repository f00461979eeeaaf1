//! Where a daemon's logs go and what they carry. Daemonized without
//! `--log-file`, strata logs to the journal when journald runs — here a real
//! systemd-journald started in a private mount and PID namespace, read back
//! with journalctl — with the fields STORE, MOUNTPOINT, DISK and ERRNO; a
//! failing block, a full backing store and a revoked key show there, and no
//! file name, contents or passphrase does. Without journald it logs to
//! syslog: the namespace's /dev/log is a socket this test listens on. With
//! `-f` the logs stay on stderr.

mod common;
#[path = "common/ns.rs"]
mod ns;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const SCRIPT_LIMIT: Duration = Duration::from_secs(180);
/// A plaintext file name and contents that must never reach a log.
const SECRET_NAME: &str = "payroll-secret-name-7731";
const SECRET_CONTENT: &str = "SECRET-CONTENT-8842";

fn journald() -> &'static str {
    [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-journald is missing: install systemd (scripts/test.sh does)")
}

/// Bash: makes a store on a 24 MiB tmpfs, mounts it (daemonized), writes a
/// secret file and a victim file, unmounts, damages the victim's first
/// block, mounts again and reads it (EIO); with FULL=1 also fills the
/// store (ENOSPC) and disables and re-enables the key (EKEYREVOKED).
const PROVOKE: &str = r#"
mount -t tmpfs -o size=24m,mode=0700 tmpfs "$STOREDIR"
vault=(--vault "$VAULT" --passphrase-file "$PASS")
strata init "$STORE" "${vault[@]}" --preset general --kdf-memory 1024 --kdf-iterations 1 >/dev/null 2>&1
strata mount "$STORE" "$MNT" "${vault[@]}" 2>/dev/null
printf '%s' "$SECRET_CONTENT" > "$MNT/data/$SECRET_NAME"
head -c 8192 /dev/zero | tr '\0' 'v' > "$MNT/data/victim"
strata umount "$MNT"
backing=$(strata inspect "$STORE" --path data/victim "${vault[@]}")
printf 'XXXXXXXX' | dd of="$backing" bs=1 seek=200 conv=notrunc status=none
strata mount "$STORE" "$MNT" "${vault[@]}" 2>/dev/null
if cat "$MNT/data/victim" >/dev/null 2>&1; then echo "victim: readable"; else echo "victim: failed"; fi
cat "$MNT/data/$SECRET_NAME" >/dev/null
if [ "${FULL:-0}" = 1 ]; then
    if head -c 64m /dev/urandom > "$MNT/data/big" 2>/dev/null; then echo "fill: fit"; else echo "fill: full"; fi
    rm -f "$MNT/data/big"
    strata vault key disable platform "${vault[@]}" >/dev/null
    revoked=no
    for _ in $(seq 100); do
        if ! ls "$MNT/data" >/dev/null 2>&1; then revoked=yes; break; fi
        sleep 0.1
    done
    echo "revoked: $revoked"
    strata vault key enable platform "${vault[@]}" >/dev/null
    for _ in $(seq 100); do ls "$MNT/data" >/dev/null 2>&1 && break; sleep 0.1; done
fi
strata umount "$MNT"
"#;

/// The environment of a namespace script: the binary, the secrets to
/// write, and `extra`.
fn env_for<'a>(extra: &[(&'static str, &'a OsStr)]) -> Vec<(&'static str, &'a OsStr)> {
    let mut v = vec![
        ("STRATA", OsStr::new(strata_bin())),
        ("SECRET_NAME", OsStr::new(SECRET_NAME)),
        ("SECRET_CONTENT", OsStr::new(SECRET_CONTENT)),
    ];
    v.extend_from_slice(extra);
    v
}

struct Paths {
    root: tempfile::TempDir,
    storedir: PathBuf,
    store: PathBuf,
    vault: PathBuf,
    pass: PathBuf,
    mnt: PathBuf,
    mnt2: PathBuf,
}

fn paths() -> Paths {
    require_fuse();
    let root = tempfile::Builder::new()
        .prefix("strata-logs-")
        .tempdir()
        .expect("tempdir");
    let b = root.path().to_path_buf();
    let p = Paths {
        storedir: b.join("backing"),
        store: b.join("backing").join("store"),
        vault: b.join("vault"),
        pass: b.join("passphrase"),
        mnt: b.join("mnt"),
        mnt2: b.join("mnt2"),
        root,
    };
    std::fs::create_dir(&p.storedir).expect("storedir");
    std::fs::create_dir(&p.mnt).expect("mnt");
    std::fs::create_dir(&p.mnt2).expect("mnt2");
    std::fs::write(&p.pass, format!("{PASSPHRASE}\n")).expect("passphrase");
    p
}

/// The PATH with the binary under test first (the script calls `strata`).
fn path_with_strata() -> std::ffi::OsString {
    let dir = Path::new(strata_bin())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut parts = vec![dir];
    parts.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(parts).expect("PATH")
}

/// One journal entry: field → value (binary fields, sent as arrays by
/// journalctl, as lossy text).
type Entry = BTreeMap<String, String>;

fn parse_journal(json_lines: &str) -> Vec<Entry> {
    json_lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("journalctl -o json line");
            v.as_object()
                .expect("object")
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Array(bytes) => String::from_utf8_lossy(
                            &bytes
                                .iter()
                                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                                .collect::<Vec<u8>>(),
                        )
                        .into_owned(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .collect()
}

fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .map(str::trim)
}

#[test]
fn the_daemon_logs_to_the_journal_with_disk_and_errno_and_never_a_name() {
    let p = paths();
    let journal_json = p.root.path().join("journal.json");
    let journal_export = p.root.path().join("journal.export");
    let script = format!(
        r#"
# A journald of this namespace's own, on tmpfs; the machine's is hidden.
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
{journald} &
for _ in $(seq 200); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
trap 'umount -l "$MNT" 2>/dev/null || true; umount -l "$MNT2" 2>/dev/null || true' EXIT
{PROVOKE}
# -f keeps stderr: this mount's lines go there, not to the journal.
strata mount "$STORE" "$MNT2" "${{vault[@]}}" -f 2> "$ROOT/foreground.log" &
for _ in $(seq 100); do [ -d "$MNT2/os" ] && break; sleep 0.1; done
strata umount "$MNT2"
wait %2 || true
sleep 0.5
journalctl -D /run/log/journal --no-pager -o json SYSLOG_IDENTIFIER=strata > "$JSON"
journalctl -D /run/log/journal --no-pager -o export > "$EXPORT"
"#,
        journald = journald(),
    );
    let path = path_with_strata();
    let env = env_for(&[
        ("PATH", path.as_os_str()),
        ("ROOT", p.root.path().as_os_str()),
        ("STOREDIR", p.storedir.as_os_str()),
        ("STORE", p.store.as_os_str()),
        ("VAULT", p.vault.as_os_str()),
        ("PASS", p.pass.as_os_str()),
        ("MNT", p.mnt.as_os_str()),
        ("MNT2", p.mnt2.as_os_str()),
        ("FULL", OsStr::new("1")),
        ("JSON", journal_json.as_os_str()),
        ("EXPORT", journal_export.as_os_str()),
    ]);
    let out = ns::run_in_namespace(&script, &env, SCRIPT_LIMIT);
    let text = assert_ok(&out, "journald script");
    assert_eq!(field(&text, "victim"), Some("failed"), "{}", describe(&out));
    assert_eq!(field(&text, "fill"), Some("full"), "{}", describe(&out));
    assert_eq!(field(&text, "revoked"), Some("yes"), "{}", describe(&out));

    let entries = parse_journal(&std::fs::read_to_string(&journal_json).expect("journal json"));
    let shown = || {
        entries
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(!entries.is_empty(), "no strata entries in the journal");
    let store = p.store.display().to_string();
    let mnt = p.mnt.display().to_string();
    for e in &entries {
        assert_eq!(e.get("STORE"), Some(&store), "entry without STORE: {e:?}");
        assert_eq!(
            e.get("MOUNTPOINT"),
            Some(&mnt),
            "entry without MOUNTPOINT: {e:?}"
        );
    }
    let has = |pred: &dyn Fn(&Entry) -> bool| entries.iter().any(pred);
    let is = |e: &Entry, k: &str, v: &str| e.get(k).is_some_and(|x| x == v);
    let says = |e: &Entry, s: &str| e.get("MESSAGE").is_some_and(|m| m.contains(s));
    assert!(
        has(&|e| says(e, "mounted") && is(e, "PRIORITY", "6")),
        "no `mounted` entry:\n{}",
        shown()
    );
    // A failing block: the core names the backing file and block, the
    // adapter the disk and errno.
    assert!(
        has(&|e| says(e, "failed its integrity tag") && is(e, "PRIORITY", "3")),
        "no integrity failure:\n{}",
        shown()
    );
    assert!(
        has(&|e| is(e, "DISK", "data") && is(e, "ERRNO", "5") && is(e, "PRIORITY", "3")),
        "no EIO entry with DISK and ERRNO:\n{}",
        shown()
    );
    assert!(
        has(&|e| is(e, "DISK", "data") && is(e, "ERRNO", "28") && says(e, "full")),
        "no ENOSPC entry:\n{}",
        shown()
    );
    let revoked = strata::platform::errno::REVOKED.to_string();
    assert!(
        has(&|e| is(e, "DISK", "data") && is(e, "ERRNO", &revoked) && says(e, "platform")),
        "no revocation entry naming the key:\n{}",
        shown()
    );
    assert!(
        has(&|e| is(e, "DISK", "data") && says(e, "available again")),
        "no re-enable entry:\n{}",
        shown()
    );

    // Nothing secret anywhere in the journal, whoever logged it.
    let export = std::fs::read(&journal_export).expect("journal export");
    for secret in [SECRET_NAME, SECRET_CONTENT, PASSPHRASE] {
        assert_eq!(
            count_occurrences(&export, secret.as_bytes()),
            0,
            "{secret} is in the journal"
        );
    }
    // The -f mount logged on its stderr, and not to the journal.
    let fg = std::fs::read_to_string(p.root.path().join("foreground.log")).unwrap_or_default();
    assert!(fg.contains("mounted"), "-f did not log to stderr: {fg:?}");
    let mnt2 = p.mnt2.display().to_string();
    assert!(
        !entries.iter().any(|e| e.get("MOUNTPOINT") == Some(&mnt2)),
        "the -f mount logged to the journal"
    );
}

#[test]
fn without_journald_the_daemon_logs_to_syslog() {
    let p = paths();
    let socket = p.root.path().join("syslog.sock");
    let listener = UnixDatagram::bind(&socket).expect("bind the syslog socket");
    let script = format!(
        r#"
# No journald here, and /dev/log is the test's socket.
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/fuse c 10 229
touch /dev/log
mount --bind "$SYSLOG" /dev/log
trap 'umount -l "$MNT" 2>/dev/null || true' EXIT
{PROVOKE}
"#
    );
    let path = path_with_strata();
    let env = env_for(&[
        ("PATH", path.as_os_str()),
        ("STOREDIR", p.storedir.as_os_str()),
        ("STORE", p.store.as_os_str()),
        ("VAULT", p.vault.as_os_str()),
        ("PASS", p.pass.as_os_str()),
        ("MNT", p.mnt.as_os_str()),
        ("SYSLOG", socket.as_os_str()),
    ]);
    let out = ns::run_in_namespace(&script, &env, SCRIPT_LIMIT);
    let text = assert_ok(&out, "syslog script");
    assert_eq!(field(&text, "victim"), Some("failed"), "{}", describe(&out));

    listener.set_nonblocking(true).expect("nonblocking");
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = listener.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let all = lines.join("\n");
    let store = format!("store={}", p.store.display());
    assert!(
        !lines.is_empty(),
        "nothing reached syslog: {}",
        describe(&out)
    );
    for l in &lines {
        assert!(
            l.starts_with('<') && l.contains(">strata[") && l.contains(&store),
            "not a strata syslog line with the store: {l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<30>") && l.contains("mounted")),
        "no info line: {all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<27>") && l.contains("disk=data") && l.contains("errno=5")),
        "no EIO line with disk and errno: {all}"
    );
    assert!(
        lines.iter().any(|l| l.contains("failed its integrity tag")),
        "no integrity line: {all}"
    );
    for secret in [SECRET_NAME, SECRET_CONTENT, PASSPHRASE] {
        assert!(!all.contains(secret), "{secret} reached syslog: {all}");
    }
}
