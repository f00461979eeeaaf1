//! Fault injection for crash tests: named points in multi-step writes where
//! a debug build exits at once (as a crash would stop it) when the
//! environment variable `STRATA_TEST_CRASH_AT` names the point. Release
//! builds compile the check away.

/// Exits the process with status 99 when `STRATA_TEST_CRASH_AT` is `name`
/// (debug builds only).
pub(crate) fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("STRATA_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        std::process::exit(99);
    }
}
