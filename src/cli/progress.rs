//! Progress of long commands on stderr: a bar with rate and ETA
//! (indicatif) when stderr is a terminal; otherwise a plain line every
//! `STRATA_PROGRESS_INTERVAL` (default 10s; a duration such as `2s` or
//! `500ms`, 0 for every step) and one when done; nothing at all for `--json`
//! output. Stdout never carries progress.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

/// Default time between plain progress lines.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Files.
    Files,
    /// Files, directories, symlinks and fifos.
    Objects,
    /// Bytes.
    Bytes,
}

impl Unit {
    fn word(self) -> &'static str {
        match self {
            Unit::Files => "files",
            Unit::Objects => "objects",
            Unit::Bytes => "bytes",
        }
    }

    fn amount(self, n: f64) -> String {
        match self {
            Unit::Bytes => human_bytes(n),
            _ => format!("{n:.0}"),
        }
    }
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    // 1023.96 KiB would print as "1024.0 KiB": promote it.
    while v >= 1023.95 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

struct Plain {
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    interval: Duration,
}

enum Mode {
    Hidden,
    Bar(ProgressBar),
    Plain(Mutex<Plain>),
}

/// Draws one operation's progress.
pub struct Drawer {
    what: String,
    unit: Unit,
    mode: Mode,
}

/// The interval between plain lines from `STRATA_PROGRESS_INTERVAL`.
fn plain_interval() -> Duration {
    std::env::var("STRATA_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| super::parse_duration(&v).ok())
        .unwrap_or(PLAIN_INTERVAL)
}

impl Drawer {
    /// A drawer for `what` ("verifying"), counting `unit`; `hidden` for
    /// `--json`.
    pub fn new(what: &str, unit: Unit, hidden: bool) -> Drawer {
        let mode = if hidden {
            Mode::Hidden
        } else if std::io::stderr().is_terminal() {
            let counts = match unit {
                Unit::Bytes => "{binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})",
                Unit::Files => "{human_pos}/{human_len} files ({rate})",
                Unit::Objects => "{human_pos}/{human_len} objects ({rate})",
            };
            let template = format!("{{msg}} [{{bar:30}}] {counts}, ETA {{eta}}");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}/s", state.per_sec());
                    },
                )
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(style);
            bar.set_message(what.to_string());
            Mode::Bar(bar)
        } else {
            let now = Instant::now();
            Mode::Plain(Mutex::new(Plain {
                total: 0,
                done: 0,
                start: now,
                last: now,
                interval: plain_interval(),
            }))
        };
        Drawer {
            what: what.to_string(),
            unit,
            mode,
        }
    }

    fn plain_line(&self, p: &Plain) -> String {
        let elapsed = p.start.elapsed().as_secs_f64().max(1e-3);
        let rate = p.done as f64 / elapsed;
        let mut line = format!(
            "{}: {}/{} {}",
            self.what,
            self.unit.amount(p.done as f64),
            self.unit.amount(p.total as f64),
            self.unit.word()
        );
        if self.unit == Unit::Bytes {
            // "12.0 MiB/40.0 MiB bytes" reads badly: the unit is in the amounts.
            line.truncate(line.len() - " bytes".len());
        }
        if p.total > 0 {
            let pct = (p.done.min(p.total) as f64 * 100.0 / p.total as f64).floor();
            line.push_str(&format!(" ({pct:.0}%)"));
        }
        line.push_str(&format!(
            ", {}/s",
            match self.unit {
                Unit::Bytes => human_bytes(rate),
                _ => format!("{rate:.1} {}", self.unit.word()),
            }
        ));
        if rate > 0.0 && p.total > p.done {
            let eta = Duration::from_secs_f64((p.total - p.done) as f64 / rate);
            line.push_str(&format!(", ETA {}", human_duration(eta)));
        }
        line
    }

    /// Ends the display: clears the bar; without a terminal, prints a last
    /// line when the operation succeeded (`ok`). A failure's own message is
    /// then the one line the user sees.
    pub fn end(&self, ok: bool) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Bar(bar) => bar.finish_and_clear(),
            Mode::Plain(_) if !ok => {}
            Mode::Plain(m) => {
                let p = m.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!(
                    "{}: done, {} {} in {}",
                    self.what,
                    self.unit.amount(p.done as f64),
                    if self.unit == Unit::Bytes {
                        "read"
                    } else {
                        self.unit.word()
                    },
                    human_duration(p.start.elapsed())
                );
            }
        }
    }
}

impl Progress for Drawer {
    fn total(&self, total: u64) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Bar(bar) => bar.set_length(total),
            Mode::Plain(m) => m.lock().unwrap_or_else(|e| e.into_inner()).total = total,
        }
    }

    fn inc(&self, n: u64) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Bar(bar) => bar.inc(n),
            Mode::Plain(m) => {
                let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
                p.done += n;
                if p.last.elapsed() >= p.interval {
                    p.last = Instant::now();
                    eprintln!("{}", self.plain_line(&p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(total: u64, done: u64, secs: u64) -> Plain {
        let now = Instant::now();
        Plain {
            total,
            done,
            start: now.checked_sub(Duration::from_secs(secs)).unwrap_or(now),
            last: now,
            interval: Duration::ZERO,
        }
    }

    fn drawer(unit: Unit) -> Drawer {
        Drawer {
            what: "verifying".into(),
            unit,
            mode: Mode::Hidden,
        }
    }

    #[test]
    fn a_plain_line_has_counts_percent_rate_and_eta() {
        let line = drawer(Unit::Files).plain_line(&plain(100, 25, 5));
        assert!(
            line.starts_with("verifying: 25/100 files (25%), 5."),
            "{line}"
        );
        assert!(line.contains("files/s, ETA 1"), "{line}");
    }

    #[test]
    fn a_plain_byte_line_shows_sizes() {
        let line = drawer(Unit::Bytes).plain_line(&plain(4 << 20, 1 << 20, 1));
        assert!(
            line.starts_with("verifying: 1.0 MiB/4.0 MiB (25%), "),
            "{line}"
        );
        assert!(line.contains("iB/s, ETA "), "{line}");
    }

    #[test]
    fn a_finished_count_has_no_eta() {
        let line = drawer(Unit::Objects).plain_line(&plain(10, 10, 1));
        assert!(!line.contains("ETA"), "{line}");
        assert!(line.contains("(100%)"), "{line}");
    }
}
