//! The shell completion scripts in contrib/completions/ (installed by the
//! Debian package) are what `strata completions SHELL` prints, and bash's
//! completes strata's subcommands and flags. `STRATA_UPDATE_COMPLETIONS=1
//! cargo test --test completions` rewrites them.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SCRIPTS: [(&str, &str); 3] = [
    ("bash", "strata.bash"),
    ("zsh", "_strata"),
    ("fish", "strata.fish"),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join("completions")
}

#[test]
fn completion_scripts_match_the_command_definitions() {
    for (shell, file) in SCRIPTS {
        let out = run(strata([OsStr::new("completions"), OsStr::new(shell)]));
        let want = assert_ok(&out, "strata completions");
        assert!(want.contains("strata"), "{shell}: {want}");
        let path = dir().join(file);
        if std::env::var_os("STRATA_UPDATE_COMPLETIONS").is_some() {
            std::fs::create_dir_all(dir()).expect("create contrib/completions");
            std::fs::write(&path, &want).expect("write completion script");
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale: run `STRATA_UPDATE_COMPLETIONS=1 cargo test --test completions`",
            path.display()
        );
    }
}

/// What bash's completion offers for the words typed so far.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = dir().join("strata.bash");
    let line =
        format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _strata strata '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "-c", &line]);
    let out = run_for(&mut cmd, COMMAND_TIMEOUT);
    assert_ok(&out, "bash completion")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_mount_flags() {
    let subs = bash_completes(&["strata", "mo"]);
    assert_eq!(subs, ["mount"], "{subs:?}");
    let flags = bash_completes(&["strata", "mount", "--pass"]);
    for f in [
        "--passphrase-file",
        "--passphrase-command",
        "--passphrase-credential",
    ] {
        assert!(flags.iter().any(|x| x == f), "{f} not offered: {flags:?}");
    }
    let shells = bash_completes(&["strata", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|x| x == s), "{s} not offered: {shells:?}");
    }
}
