//! Process-level system calls: forking into a daemon and setting signal
//! dispositions (the calls that need `unsafe`) and keeping a process that
//! holds keys out of core dumps (through rustix, which wraps them safely).

/// Result of a fork, seen from one side.
pub enum Forked {
    /// In the parent; the child's PID.
    Parent(i32),
    /// In the child.
    Child,
}

/// Forks the process. Call only while the process has a single thread.
pub fn fork() -> std::io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the child
    // of a multi-threaded parent may only call async-signal-safe functions,
    // which is why callers fork before starting any thread (documented).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(p)),
    }
}

/// The terminal's job-control signals (SIGTSTP, SIGTTIN, SIGTTOU) ignored
/// (`true`) or back to their defaults: a daemon still in the terminal's
/// session while it mounts is not stopped with its mount not yet served.
/// (SIGQUIT unmounts as SIGTERM does: the daemon handles it.)
pub fn terminal_signals_ignored(ignored: bool) {
    let action = if ignored {
        libc::SIG_IGN
    } else {
        libc::SIG_DFL
    };
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: signal(2) with SIG_IGN or SIG_DFL installs no handler
        // code; it only sets the disposition.
        unsafe {
            libc::signal(sig, action);
        }
    }
}

/// Keeps this process (and the children it forks) out of core dumps, which
/// would write its keys to disk: the core size limit goes to 0, soft and
/// hard, and the system's own mark goes on where it has one (Linux: not
/// dumpable, which also keeps other processes of the same user from
/// reading its memory through /proc or ptrace; see
/// [`crate::platform::forbid_dumping`]).
pub fn no_core_dumps() -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    crate::platform::forbid_dumping()
}

/// Whether this process can dump core: a core size limit above 0, or (on
/// Linux) the dumpable mark set.
pub fn may_dump_core() -> bool {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
    limit.current != Some(0) || crate::platform::dumpable()
}
