//! Runs a bash script in a private mount and PID namespace, for tests that
//! must change system paths (a tmpfs over /usr/local/sbin so that
//! mount.fuse3 finds `strata`, a journald of their own, a /dev/log they
//! listen on). The mounts such a script makes are seen by no one else, and
//! every process it starts — a daemon included — is killed when the script
//! ends or is killed (unshare --kill-child, PID namespace).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `script` under `bash -euo pipefail` in fresh mount and PID
/// namespaces with `env` set, within `limit`; returns its output.
pub fn run_in_namespace(script: &str, env: &[(&str, &OsStr)], limit: Duration) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    super::common::run_for(&mut cmd, limit)
}

/// Bash: makes `strata` (the binary under test, `$STRATA`) the one on the
/// system PATH that mount.fuse3 searches, for this namespace only.
pub const STRATA_ON_SYSTEM_PATH: &str = r#"
mount -t tmpfs -o size=1m,mode=0755 tmpfs /usr/local/sbin
ln -s "$STRATA" /usr/local/sbin/strata
"#;

/// Bash: `daemon_running PID` prints `running: yes` when PID is a live
/// process (call it before the unmount); `daemon_gone PID` waits up to
/// 10 s for it to exit (a zombie counts as exited) and prints `daemon:
/// exited` or `daemon: alive`.
pub const DAEMON_GONE: &str = r#"
daemon_running() {
    case "$1" in ''|*[!0-9]*) echo "running: no pid ($1)"; return ;; esac
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo gone)
    if [ "$state" = gone ] || [ "$state" = Z ]; then echo "running: no"; else echo "running: yes"; fi
}
daemon_gone() {
    for _ in $(seq 100); do
        state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo gone)
        if [ "$state" = gone ] || [ "$state" = Z ]; then echo "daemon: exited"; return; fi
        sleep 0.1
    done
    echo "daemon: alive"
}
"#;
