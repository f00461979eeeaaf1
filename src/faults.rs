//! Fault injection for crash and race tests: named points in multi-step
//! writes where a debug build exits at once (as a crash would stop it) when
//! the environment variable `STRATA_TEST_CRASH_AT` names the point, or
//! pauses (so that a test can land a racing request between two steps)
//! when `STRATA_TEST_PAUSE_AT` does. Release builds compile the checks away.

/// Exits the process with status 99 when `STRATA_TEST_CRASH_AT` is `name`
/// (debug builds only).
pub(crate) fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("STRATA_TEST_CRASH_AT").is_ok_and(|v| v == name) {
        std::process::exit(99);
    }
}

/// Sleeps 300 ms when `STRATA_TEST_PAUSE_AT` is `name` (debug builds only).
pub(crate) fn pause_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("STRATA_TEST_PAUSE_AT").is_ok_and(|v| v == name) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
