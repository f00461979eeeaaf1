//! What the daemon watches of the requests it serves: when the last one
//! came and how many are being served (for `--idle`), and the failures an
//! administrator must see in the logs — a damaged block (EIO), a full
//! backing store (ENOSPC, EDQUOT), a revoked key — with the disk and errno
//! as fields, at most one line per disk and errno every
//! [`REPORT_EVERY`], counting the ones left out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fs::Errno;
use crate::platform::errno;

/// Least time between two log lines for the same disk and errno.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Requests seen by the mount.
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` when a request last began or ended.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Held while one request is served.
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// No request yet; idle from now.
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a request as being served until the guard drops.
    pub fn begin(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Busy(self)
    }

    /// Restarts the idle time.
    pub fn touch(&self) {
        self.last_ms.fetch_max(self.now_ms(), Ordering::SeqCst);
    }

    /// How long no request has been served; `None` while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = self
            .now_ms()
            .saturating_sub(self.last_ms.load(Ordering::SeqCst));
        Some(Duration::from_millis(since))
    }
}

/// What a failure means to an administrator, for the errnos worth a log
/// line; `None` for the ones that are an answer, not a problem.
fn meaning(e: Errno) -> Option<&'static str> {
    match e.0 {
        errno::EIO => Some(
            "I/O error: a block or header failed its check or could not be read (the backing file and block are named in the line before)",
        ),
        errno::ENOSPC => Some("the backing store is full"),
        errno::EDQUOT => Some("the backing store's disk quota is exhausted"),
        // On macOS a revoked disk answers EACCES, which is also an ordinary
        // permission answer: only a system's own revoked errno is reported.
        e if e == errno::REVOKED && errno::REVOKED_IS_DISTINCT => {
            Some("the disk's key is revoked or disabled")
        }
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Window {
    last: Instant,
    left_out: u64,
}

/// Logs failed operations, rate-limited per disk and errno.
#[derive(Default)]
pub struct Failures {
    seen: Mutex<HashMap<(String, i32), Window>>,
}

impl Failures {
    /// Whether a line for `key` is due now; if so, how many were left out
    /// since the last one.
    fn due(&self, key: (String, i32), now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(&key) {
            Some(w) if now.duration_since(w.last) < REPORT_EVERY => {
                w.left_out += 1;
                None
            }
            Some(w) => {
                let n = w.left_out;
                *w = Window {
                    last: now,
                    left_out: 0,
                };
                Some(n)
            }
            None => {
                seen.insert(
                    key,
                    Window {
                        last: now,
                        left_out: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Reports that `op` on inode `ino` failed with `e`, if that errno is
    /// worth a line; `disk` names the inode's disk (asked only then).
    /// Carries no file name: the inode number and the disk identify where.
    pub fn report(&self, op: &str, ino: u64, e: Errno, disk: impl FnOnce() -> Option<String>) {
        let Some(what) = meaning(e) else {
            return;
        };
        let disk = disk().unwrap_or_else(|| "-".into());
        let Some(left_out) = self.due((disk.clone(), e.0), Instant::now()) else {
            return;
        };
        if e.0 == errno::EIO {
            tracing::error!(disk = %disk, errno = e.0, op, ino, left_out, "{what}");
        } else {
            tracing::warn!(disk = %disk, errno = e.0, op, ino, left_out, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_flight_is_never_idle() {
        let a = Activity::new();
        let busy = a.begin();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.idle_for(), None);
        drop(busy);
        assert!(a.idle_for().is_some_and(|d| d < Duration::from_millis(15)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.idle_for().is_some_and(|d| d >= Duration::from_millis(20)));
    }

    #[test]
    fn touching_restarts_the_idle_time() {
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(30));
        a.touch();
        assert!(a.idle_for().is_some_and(|d| d < Duration::from_millis(25)));
    }

    #[test]
    fn repeated_failures_are_counted_not_repeated() {
        let f = Failures::default();
        let t0 = Instant::now();
        let key = || ("data".to_string(), errno::ENOSPC);
        assert_eq!(f.due(key(), t0), Some(0));
        assert_eq!(f.due(key(), t0 + Duration::from_secs(1)), None);
        assert_eq!(f.due(key(), t0 + Duration::from_secs(2)), None);
        assert_eq!(f.due(("os".into(), errno::ENOSPC), t0), Some(0));
        assert_eq!(f.due(key(), t0 + REPORT_EVERY), Some(2));
    }

    #[test]
    fn ordinary_answers_are_not_failures() {
        for e in [
            errno::ENOENT,
            errno::EEXIST,
            errno::EACCES,
            errno::EROFS,
            errno::ENOTEMPTY,
        ] {
            assert!(meaning(Errno(e)).is_none(), "{e}");
        }
        let mut failures = vec![errno::EIO, errno::ENOSPC, errno::EDQUOT];
        // On Linux a revoked key has its own errno (on macOS it is EACCES,
        // an ordinary answer).
        if errno::REVOKED_IS_DISTINCT {
            failures.push(errno::REVOKED);
        }
        for e in failures {
            assert!(meaning(Errno(e)).is_some(), "{e}");
        }
    }
}
