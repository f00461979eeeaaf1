//! Progress of long commands: plain lines with counts, rate and ETA on
//! stderr when it is not a terminal (every STRATA_PROGRESS_INTERVAL; 0 here,
//! so every step shows), a bar with rate and ETA on a terminal (run under
//! script(1) for a pseudo-terminal), nothing with --json, and never a word of
//! it on stdout. Covers verify, scan, disk rekey, disk encrypt --guest,
//! snapshot create and restore, image create and disk add --from-image.

mod common;

use std::ffi::OsStr;
use std::process::{Command, Output};

use common::*;

fn store(f: &Fixture) -> String {
    f.store.to_str().expect("utf-8 path").to_string()
}

/// `strata ARGS [vault args]` with progress lines at every step.
fn with_progress(f: &Fixture, args: &[&str], vault: bool) -> Output {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    if vault {
        all.extend(f.vault_args());
    }
    let mut cmd = strata(all);
    cmd.env("STRATA_PROGRESS_INTERVAL", "0");
    run(cmd)
}

/// A store whose data disk holds `n` files.
fn filled(n: usize) -> Fixture {
    let f = Fixture::new("general");
    let m = f.mount();
    for i in 0..n {
        std::fs::write(
            f.disk("data").join(format!("f{i}")),
            pattern(i as u64, 5000),
        )
        .expect("write");
    }
    m.unmount();
    f
}

/// Asserts the command succeeded and showed plain progress for `what`
/// counting `unit`: lines `what: N/M unit (P%), R unit/s[, ETA …]` and a
/// last `what: done, …` line, on stderr only.
#[track_caller]
fn shows_plain_progress(out: &Output, what: &str, unit: &str) {
    let stdout = assert_ok(out, what);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let steps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{what}: ")) && l.contains('%'))
        .collect();
    assert!(!steps.is_empty(), "no progress lines for {what}: {stderr}");
    for l in &steps {
        assert!(
            l.contains(&format!(" {unit} (")) && l.contains(&format!("{unit}/s")),
            "{what}: not a count with a rate: {l}"
        );
    }
    assert!(
        steps.iter().any(|l| l.contains(", ETA ")),
        "{what}: no line has an ETA: {stderr}"
    );
    let last = steps.last().copied().unwrap_or_default();
    assert!(last.contains("(100%)"), "{what}: last step {last}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{what}: done, "))),
        "{what}: no closing line: {stderr}"
    );
    assert!(
        !stdout.contains("ETA") && !stdout.contains(&format!("{what}: ")),
        "progress on stdout: {stdout}"
    );
}

#[test]
fn long_commands_show_plain_progress_on_stderr() {
    let f = filled(12);
    let s = store(&f);
    shows_plain_progress(
        &with_progress(&f, &["verify", &s], true),
        "verifying",
        "files",
    );
    let scan = with_progress(&f, &["scan", &s], false);
    let stderr = String::from_utf8_lossy(&scan.stderr).into_owned();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("scanning: ") && l.contains("iB (") && l.contains("/s")),
        "scan shows bytes with a rate: {stderr}"
    );
    assert!(stderr.contains("scanning: done, "), "{stderr}");
    shows_plain_progress(
        &with_progress(
            &f,
            &["disk", "rekey", &s, "data", "--layer", "storage"],
            true,
        ),
        "re-encrypting",
        "objects",
    );
    shows_plain_progress(
        &with_progress(&f, &["disk", "encrypt", &s, "data", "--guest"], true),
        "re-encrypting",
        "objects",
    );
    shows_plain_progress(
        &with_progress(&f, &["snapshot", "create", &s, "data", "s1"], true),
        "copying",
        "objects",
    );
    shows_plain_progress(
        &with_progress(&f, &["snapshot", "restore", &s, "data", "s1"], true),
        "restoring",
        "objects",
    );
    shows_plain_progress(
        &with_progress(&f, &["image", "create", &s, "img", "--from", "data"], true),
        "copying",
        "objects",
    );
    shows_plain_progress(
        &with_progress(&f, &["disk", "add", &s, "d2", "--from-image", "img"], true),
        "re-encrypting the image",
        "objects",
    );
    // What was copied and re-encrypted along the way is intact.
    let m = f.mount();
    for i in 0..12u64 {
        assert_bytes_eq(
            &std::fs::read(f.disk("d2").join(format!("f{i}"))).expect("read"),
            &pattern(i, 5000),
            "file made from the image",
        );
    }
    m.unmount();
}

#[test]
fn json_output_has_no_progress_at_all() {
    let f = filled(5);
    let s = store(&f);
    for (args, vault) in [
        (vec!["verify", s.as_str(), "--json"], true),
        (vec!["scan", s.as_str(), "--json"], false),
    ] {
        let out = with_progress(&f, &args, vault);
        let stdout = assert_ok(&out, "json");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout).expect("stdout is one JSON document");
    }
}

#[test]
fn a_terminal_gets_a_bar_with_rate_and_eta() {
    let f = filled(20);
    let line = format!(
        "{} verify {} --vault {} --passphrase-file {}",
        strata_bin(),
        f.store.display(),
        f.vault.display(),
        f.pass.display()
    );
    // script(1) gives the command a pseudo-terminal and copies what it
    // draws to our pipe.
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    cmd.env("STRATA_PROGRESS_INTERVAL", "0");
    let out = run_for(&mut cmd, COMMAND_TIMEOUT);
    let screen = assert_ok(&out, "verify on a terminal");
    assert!(
        screen.contains("verifying [") && screen.contains("files (") && screen.contains("/s), ETA"),
        "no bar with rate and ETA: {screen:?}"
    );
    assert!(
        !screen.contains("verifying: "),
        "plain lines on a terminal: {screen:?}"
    );
    assert!(
        screen.contains("verified 20 files"),
        "the report follows the bar: {screen:?}"
    );
}
