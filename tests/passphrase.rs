//! Passphrase helpers: `--passphrase-command` (no shell unless
//! `--passphrase-shell`, one line for each way it fails),
//! `--passphrase-credential` (systemd's $CREDENTIALS_DIRECTORY), and
//! systemd-ask-password both reading a credential and answered by an agent
//! through its ask-password protocol.

mod common;

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// `strata vault list --vault V` plus `extra`: the cheapest command that
/// unlocks the vault.
fn list_with(f: &Fixture, extra: &[&OsStr]) -> Command {
    let mut cmd = strata([
        OsStr::new("vault"),
        OsStr::new("list"),
        OsStr::new("--vault"),
    ]);
    cmd.arg(&f.vault).args(extra);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command failed with exactly one line on stderr containing
/// `want`.
#[track_caller]
fn fails_with_one_line(out: &Output, want: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {}", describe(out));
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(
        err.starts_with("strata: ") && err.contains(want),
        "{err:?} lacks {want:?}"
    );
}

#[test]
fn a_passphrase_command_unlocks_the_vault_without_a_shell() {
    let f = Fixture::new("general");
    let cmd = format!("/bin/cat {}", f.pass.display());
    let out = run(list_with(
        &f,
        &[OsStr::new("--passphrase-command"), OsStr::new(&cmd)],
    ));
    let listed = assert_ok(&out, "vault list with --passphrase-command");
    assert!(listed.contains("platform"), "{listed}");
}

#[test]
fn repeated_passphrase_commands_are_one_argument_each() {
    let f = Fixture::new("general");
    let script = format!("cat '{}'", f.pass.display());
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new("/bin/sh"),
            OsStr::new("--passphrase-command"),
            OsStr::new("-c"),
            OsStr::new("--passphrase-command"),
            OsStr::new(&script),
        ],
    ));
    assert_ok(&out, "vault list with three --passphrase-command");
}

#[test]
fn shell_syntax_is_not_interpreted_unless_asked() {
    let f = Fixture::new("general");
    let marker = f.path().join("marker");
    let cmd = format!("cat {} && touch {}", f.pass.display(), marker.display());
    // Without a shell, cat is given "&&", "touch" and the marker as files:
    // it fails, and nothing is touched.
    let out = run(list_with(
        &f,
        &[OsStr::new("--passphrase-command"), OsStr::new(&cmd)],
    ));
    // cat's own complaints pass through (its stderr is the caller's); strata
    // adds one line.
    let err = stderr(&out);
    assert!(!out.status.success(), "{}", describe(&out));
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("strata: ")).collect();
    assert_eq!(
        ours,
        ["strata: the passphrase command cat failed with exit status 1"],
        "{err}"
    );
    assert!(
        err.contains("cat: '&&'"),
        "cat saw the shell syntax as a file: {err}"
    );
    assert!(!marker.exists(), "a shell ran the command");
    // Asked for, the shell runs it.
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new(&cmd),
            OsStr::new("--passphrase-shell"),
        ],
    ));
    assert_ok(&out, "vault list with --passphrase-shell");
    assert!(marker.exists(), "the shell did not run the command");
}

#[test]
fn a_failing_passphrase_command_fails_with_one_line() {
    let f = Fixture::new("general");
    let out = run(list_with(
        &f,
        &[OsStr::new("--passphrase-command"), OsStr::new("false")],
    ));
    fails_with_one_line(
        &out,
        "the passphrase command false failed with exit status 1",
    );
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new("echo half-a-pass; exit 3"),
            OsStr::new("--passphrase-shell"),
        ],
    ));
    // Output before a failure is not taken as the passphrase.
    fails_with_one_line(
        &out,
        "the passphrase command /bin/sh failed with exit status 3",
    );
}

#[test]
fn a_passphrase_command_killed_by_a_signal_fails_with_one_line() {
    let f = Fixture::new("general");
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new("kill -9 $$"),
            OsStr::new("--passphrase-shell"),
        ],
    ));
    fails_with_one_line(&out, "the passphrase command /bin/sh was killed");
}

#[test]
fn an_empty_passphrase_command_output_fails_with_one_line() {
    let f = Fixture::new("general");
    for cmd in ["true", "echo"] {
        let out = run(list_with(
            &f,
            &[OsStr::new("--passphrase-command"), OsStr::new(cmd)],
        ));
        fails_with_one_line(
            &out,
            &format!("the passphrase command {cmd} printed no passphrase"),
        );
    }
}

#[test]
fn a_missing_passphrase_program_fails_with_one_line() {
    let f = Fixture::new("general");
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new("/nonexistent/askpass"),
        ],
    ));
    fails_with_one_line(
        &out,
        "cannot run the passphrase command /nonexistent/askpass",
    );
}

#[test]
fn a_wrong_passphrase_from_a_command_is_refused_and_not_echoed() {
    let f = Fixture::new("general");
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-command"),
            OsStr::new("echo not-the-pass"),
        ],
    ));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        !err.contains("not-the-pass"),
        "the output reached stderr: {err}"
    );
}

#[test]
fn passphrase_sources_exclude_each_other() {
    let f = Fixture::new("general");
    let out = run(list_with(
        &f,
        &[
            OsStr::new("--passphrase-file"),
            f.pass.as_os_str(),
            OsStr::new("--passphrase-command"),
            OsStr::new("true"),
        ],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        describe(&out)
    );
}

fn credentials(f: &Fixture, name: &str, value: &[u8]) -> PathBuf {
    let dir = f.path().join("credentials");
    std::fs::create_dir_all(&dir).expect("credentials dir");
    std::fs::write(dir.join(name), value).expect("credential");
    dir
}

#[test]
fn a_systemd_credential_unlocks_the_vault() {
    let f = Fixture::new("general");
    let dir = credentials(&f, "strata.passphrase", PASSPHRASE.as_bytes());
    let mut cmd = list_with(
        &f,
        &[
            OsStr::new("--passphrase-credential"),
            OsStr::new("strata.passphrase"),
        ],
    );
    cmd.env("CREDENTIALS_DIRECTORY", &dir);
    assert_ok(&run(cmd), "vault list with --passphrase-credential");

    // Outside a unit: one line naming what is missing.
    let mut cmd = list_with(
        &f,
        &[OsStr::new("--passphrase-credential"), OsStr::new("x")],
    );
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    fails_with_one_line(&run(cmd), "$CREDENTIALS_DIRECTORY is not set");

    // A name is a name, not a path out of the directory.
    let mut cmd = list_with(
        &f,
        &[
            OsStr::new("--passphrase-credential"),
            OsStr::new("../passphrase"),
        ],
    );
    cmd.env("CREDENTIALS_DIRECTORY", &dir);
    fails_with_one_line(&run(cmd), "must be a plain name");
}

fn ask_password() -> &'static str {
    let path = "/usr/bin/systemd-ask-password";
    assert!(
        Path::new(path).exists(),
        "systemd-ask-password is missing: install systemd (scripts/test.sh does)"
    );
    path
}

#[test]
fn systemd_ask_password_reads_the_credential_for_strata() {
    let f = Fixture::new("general");
    // systemd-ask-password prints a credential as it is: no newline in it.
    let dir = credentials(&f, "strata.passphrase", PASSPHRASE.as_bytes());
    let cmd = format!(
        "{} --credential=strata.passphrase Vault passphrase:",
        ask_password()
    );
    let mut c = list_with(&f, &[OsStr::new("--passphrase-command"), OsStr::new(&cmd)]);
    c.env("CREDENTIALS_DIRECTORY", &dir);
    assert_ok(
        &run(c),
        "vault list through systemd-ask-password --credential",
    );
}

/// Answers the first ask-password request whose message contains `token`
/// with `answer`, as a password agent does: reads the `ask.*` file and
/// sends `+PASSWORD` to the socket it names. Returns whether it answered.
fn answer_one_request(token: &str, answer: &str, limit: Duration) -> bool {
    let dir = Path::new("/run/systemd/ask-password");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with("ask.") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if !text.contains(token) {
                continue;
            }
            let Some(socket) = text.lines().find_map(|l| l.strip_prefix("Socket=")) else {
                continue;
            };
            let sender = UnixDatagram::unbound().expect("socket");
            if sender
                .send_to(format!("+{answer}").as_bytes(), socket)
                .is_ok()
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn systemd_ask_password_answered_by_an_agent_unlocks_the_vault() {
    let f = Fixture::new("general");
    let ask = ask_password();
    std::fs::create_dir_all("/run/systemd/ask-password").expect("ask-password directory");
    let token = format!("strata-test-{}", std::process::id());
    let cmd = format!("{ask} --no-tty --timeout=30 Vault passphrase {token}:");
    let agent = {
        let token = token.clone();
        std::thread::spawn(move || answer_one_request(&token, PASSPHRASE, Duration::from_secs(30)))
    };
    let mut c = list_with(&f, &[OsStr::new("--passphrase-command"), OsStr::new(&cmd)]);
    c.env_remove("CREDENTIALS_DIRECTORY");
    let out = run(c);
    let answered = agent.join().expect("agent thread");
    assert!(
        answered,
        "no ask-password request appeared: {}",
        describe(&out)
    );
    assert_ok(&out, "vault list through systemd-ask-password and an agent");
}

#[test]
fn a_mount_unlocked_by_a_command_never_logs_the_passphrase() {
    let f = Fixture::new("general");
    let cmd = format!("/bin/cat {}", f.pass.display());
    let mut c = strata([
        OsStr::new("mount"),
        f.store.as_os_str(),
        f.mnt.as_os_str(),
        OsStr::new("--vault"),
        f.vault.as_os_str(),
        OsStr::new("--passphrase-command"),
        OsStr::new(&cmd),
        OsStr::new("-f"),
        OsStr::new("-vv"),
    ]);
    let log = f.path().join("logs").join("command-mount.log");
    let file = std::fs::File::create(&log).expect("log");
    c.stdout(file.try_clone().expect("clone")).stderr(file);
    let mut child = c.spawn().expect("spawn mount");
    let up = poll_until(MOUNT_TIMEOUT, || f.mnt.join("os").is_dir());
    std::fs::write(f.mnt.join("data").join("file"), b"x").ok();
    let u = run(strata([OsStr::new("umount"), f.mnt.as_os_str()]));
    if wait_deadline(&mut child, EXIT_TIMEOUT).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if is_mounted(&f.mnt) {
        lazy_unmount(&f.mnt);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "mount did not come up: {text}");
    assert_ok(&u, "umount");
    assert!(text.contains("mounted"), "debug log expected: {text}");
    assert!(!text.contains(PASSPHRASE), "passphrase in the log: {text}");
}
