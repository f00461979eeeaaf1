//! strata in the system around it: `mount -t fuse.strata` and /etc/fstab
//! lines through fuse3's mount.fuse3 helper, `umount` ending the daemon,
//! the `fuse.strata` type in /proc/mounts, findmnt and `df -T`, and the
//! systemd unit template. The mount(8) tests run in a private mount and PID
//! namespace in which `strata` is on the system PATH, as the package puts
//! it.

mod common;
#[path = "common/ns.rs"]
mod ns;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Longest a namespace script may take.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

fn require_mount_helper() {
    assert!(
        Path::new("/sbin/mount.fuse3").exists() || Path::new("/usr/sbin/mount.fuse3").exists(),
        "mount.fuse3 is missing: install the fuse3 package (scripts/test.sh does)"
    );
}

fn env_of<'a>(f: &'a Fixture, fstab: &'a Path) -> Vec<(&'static str, &'a OsStr)> {
    vec![
        ("STRATA", OsStr::new(strata_bin())),
        ("STORE", f.store.as_os_str()),
        ("MNT", f.mnt.as_os_str()),
        ("VAULT", f.vault.as_os_str()),
        ("PASS", f.pass.as_os_str()),
        ("FSTAB", fstab.as_os_str()),
    ]
}

fn script(body: &str) -> String {
    format!(
        "{}{}trap 'umount -l \"$MNT\" 2>/dev/null || true' EXIT\n{body}",
        ns::STRATA_ON_SYSTEM_PATH,
        ns::DAEMON_GONE
    )
}

/// The value after `key: ` on its own line of the script's output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .map(str::trim)
}

#[test]
fn mount_t_fuse_strata_mounts_with_options_and_umount_ends_the_daemon() {
    require_mount_helper();
    let f = Fixture::new("general");
    let fstab = f.path().join("fstab");
    let body = r#"
mount -t fuse.strata "$STORE" "$MNT" -o "vault=$VAULT,passphrase_file=$PASS,allow_other,cache_size=1048576,nofail,_netdev"
echo "findmnt: $(findmnt -n -o FSTYPE "$MNT")"
echo "df: $(df -T "$MNT" | tail -n 1 | awk '{print $2}')"
echo "proc: $(awk -v m="$MNT" '$2 == m {print $3}' /proc/mounts)"
echo "options: $(awk -v m="$MNT" '$2 == m {print $4}' /proc/mounts)"
status=$(strata status "$MNT" --json)
echo "cache: $(printf '%s' "$status" | grep -o '"capacity_bytes": *[0-9]*' | grep -o '[0-9]*$')"
pid=$(printf '%s' "$status" | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
echo written > "$MNT/data/f"
echo "read: $(cat "$MNT/data/f")"
daemon_running "$pid"
umount "$MNT"
echo "mounted after umount: $(awk -v m="$MNT" '$2 == m' /proc/mounts | wc -l)"
daemon_gone "$pid"
"#;
    let out = ns::run_in_namespace(&script(body), &env_of(&f, &fstab), SCRIPT_LIMIT);
    let text = assert_ok(&out, "mount -t fuse.strata script");
    for (key, want) in [
        ("findmnt", "fuse.strata"),
        ("df", "fuse.strata"),
        ("proc", "fuse.strata"),
        ("cache", "1048576"),
        ("read", "written"),
        ("mounted after umount", "0"),
        ("running", "yes"),
        ("daemon", "exited"),
    ] {
        assert_eq!(field(&text, key), Some(want), "{key}: {}", describe(&out));
    }
    let options = field(&text, "options").unwrap_or_default();
    assert!(
        options.contains("allow_other") && options.contains("nosuid") && options.contains("nodev"),
        "mount options {options:?} (mount.fuse3 adds dev,suid; strata keeps nodev,nosuid)"
    );
}

#[test]
fn an_fstab_line_mounts_with_mount_capital_t_and_passes_systemd_options_through() {
    require_mount_helper();
    // A store path with a space: written \040 in fstab, quoted by mount.fuse3.
    let base = tempfile::tempdir().expect("tempdir");
    let f = Fixture::new_with_store("general", base.path().join("my store"));
    let fstab = f.path().join("fstab");
    let escape = |p: &Path| p.display().to_string().replace(' ', "\\040");
    std::fs::write(
        &fstab,
        format!(
            "# strata test\n{} {} fuse.strata vault={},passphrase_command=/bin/cat\\040{},noauto,nofail,_netdev,x-systemd.automount,x-systemd.idle-timeout=5min,noatime,idle=1h 0 0\n",
            escape(&f.store),
            escape(&f.mnt),
            escape(&f.vault),
            escape(&f.pass),
        ),
    )
    .expect("write fstab");
    let body = r#"
mount -T "$FSTAB" "$MNT"
echo "findmnt: $(findmnt -n -o FSTYPE "$MNT")"
echo "source: $(findmnt -n -o SOURCE "$MNT")"
echo "options: $(findmnt -n -o OPTIONS "$MNT")"
pid=$(strata status "$MNT" --json | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
echo "disks: $(ls "$MNT" | tr '\n' ' ')"
daemon_running "$pid"
umount "$MNT"
daemon_gone "$pid"
"#;
    let out = ns::run_in_namespace(&script(body), &env_of(&f, &fstab), SCRIPT_LIMIT);
    let text = assert_ok(&out, "mount -T fstab script");
    assert_eq!(
        field(&text, "findmnt"),
        Some("fuse.strata"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        field(&text, "source"),
        Some(format!("strata:{}", f.store.display()).as_str()),
        "{}",
        describe(&out)
    );
    assert!(
        field(&text, "options").is_some_and(|o| o.contains("noatime")),
        "noatime reaches the kernel: {}",
        describe(&out)
    );
    assert_eq!(
        field(&text, "disks"),
        Some("data os temp"),
        "{}",
        describe(&out)
    );
    assert_eq!(field(&text, "running"), Some("yes"), "{}", describe(&out));
    assert_eq!(field(&text, "daemon"), Some("exited"), "{}", describe(&out));
}

#[test]
fn an_unknown_mount_option_fails_mount_with_one_line_naming_it() {
    require_mount_helper();
    let f = Fixture::new("general");
    let fstab = f.path().join("fstab");
    let body = r#"
err="${FSTAB%/*}/mount.err"
if mount -t fuse.strata "$STORE" "$MNT" -o "vault=$VAULT,passphrase_file=$PASS,bogus_flag=1" 2>"$err"; then
    echo "mount: succeeded"
else
    echo "mount: failed"
fi
echo "stderr lines: $(wc -l < "$err")"
echo "stderr: $(cat "$err")"
echo "mounted: $(awk -v m="$MNT" '$2 == m' /proc/mounts | wc -l)"
"#;
    let out = ns::run_in_namespace(&script(body), &env_of(&f, &fstab), SCRIPT_LIMIT);
    let text = assert_ok(&out, "bad option script");
    assert_eq!(field(&text, "mount"), Some("failed"), "{}", describe(&out));
    assert_eq!(
        field(&text, "stderr lines"),
        Some("1"),
        "{}",
        describe(&out)
    );
    assert!(
        field(&text, "stderr").is_some_and(|e| e.contains("unknown mount option \"bogus_flag\"")),
        "{}",
        describe(&out)
    );
    assert_eq!(field(&text, "mounted"), Some("0"), "{}", describe(&out));
}

#[test]
fn strata_mount_shows_as_fuse_strata() {
    let f = Fixture::new("general");
    let m = f.mount();
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mnt = f.mnt.display().to_string();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.as_str()))
        .expect("mount listed");
    let fstype = line
        .split_once(" - ")
        .and_then(|(_, t)| t.split(' ').next())
        .expect("fstype");
    assert_eq!(fstype, "fuse.strata", "{line}");
    m.unmount();
}

#[test]
fn the_mount_helper_form_runs_without_mount_8() {
    // `strata STORE MNT -o …` straight from a shell (what mount.fuse3 runs).
    let f = Fixture::new("general");
    let out = run(strata([
        f.store.as_os_str(),
        f.mnt.as_os_str(),
        OsStr::new("-o"),
        OsStr::new(&format!(
            "rw,vault={},passphrase_file={},dev,suid",
            f.vault.display(),
            f.pass.display()
        )),
    ]));
    let mounted = is_mounted(&f.mnt);
    if mounted {
        let u = run(strata([OsStr::new("umount"), f.mnt.as_os_str()]));
        assert_ok(&u, "strata umount");
    }
    assert_ok(&out, "strata STORE MNT -o …");
    assert!(mounted, "not mounted: {}", describe(&out));
    assert!(
        poll_until(EXIT_TIMEOUT, || !is_mounted(&f.mnt)),
        "still mounted"
    );
}

/// `systemd-analyze verify` on a copy of the unit whose strata path points
/// at the binary under test (verify insists that ExecStart= exists).
fn verify_unit(unit_text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strata-mount@test.service");
    std::fs::write(&path, unit_text.replace("/usr/bin/strata", strata_bin())).expect("write unit");
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]).arg(&path);
    run_for(&mut cmd, COMMAND_TIMEOUT)
}

#[test]
fn the_systemd_unit_template_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/strata-mount@.service"),
    )
    .expect("unit template in contrib/systemd");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // scripts/test.sh installs systemd; elsewhere this cannot run.
        panic!("systemd-analyze is missing: install systemd (scripts/test.sh does)");
    }
    let out = verify_unit(&unit);
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}",
        describe(&out)
    );
    // The check can fail: a broken copy is reported.
    let broken = verify_unit(&unit.replace("Type=forking", "Type=bogus"));
    assert!(
        !broken.stderr.is_empty(),
        "a bogus Type= went unreported: {}",
        describe(&broken)
    );
    // What the template runs is a command line strata accepts.
    assert!(unit.contains("--passphrase-command"), "{unit}");
}

/// A mount that the kernel refuses (here: no FUSE device) ends the session
/// it began: the next mount does not take it for a crash.
#[test]
fn a_refused_mount_leaves_no_session_for_the_next_to_call_a_crash() {
    let f = Fixture::new("general");
    let fstab = f.path().join("fstab");
    let body = r#"
dir="${FSTAB%/*}"
mount --bind /dev/null /dev/fuse
if strata mount "$STORE" "$MNT" --vault "$VAULT" --passphrase-file "$PASS" 2>"$dir/first.err"; then
    echo "first: mounted"
else
    echo "first: refused"
fi
umount /dev/fuse
strata mount "$STORE" "$MNT" --vault "$VAULT" --passphrase-file "$PASS" --log-file "$dir/second.log"
echo "second mounted: $(awk -v m="$MNT" '$2 == m' /proc/mounts | wc -l)"
strata umount "$MNT"
echo "crash taken: $(grep -c 'without unmounting' "$dir/second.log" || true)"
"#;
    let out = ns::run_in_namespace(&script(body), &env_of(&f, &fstab), SCRIPT_LIMIT);
    let text = assert_ok(&out, "refused mount script");
    assert_eq!(field(&text, "first"), Some("refused"), "{}", describe(&out));
    assert_eq!(
        field(&text, "second mounted"),
        Some("1"),
        "{}",
        describe(&out)
    );
    assert_eq!(field(&text, "crash taken"), Some("0"), "{}", describe(&out));
}
