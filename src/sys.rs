//! The few calls that need `unsafe`: forking into a daemon.

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
