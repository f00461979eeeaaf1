//! A tracing layer that sends each event to a syslog socket as one
//! datagram in the BSD format syslog(3) uses, without a timestamp (the
//! syslog daemon stamps what it receives):
//!
//! ```text
//! <PRI>strata[PID]: MESSAGE key=value key="value with spaces"
//! ```
//!
//! PRI is facility daemon (3) × 8 + severity: error 3, warn 4, info 6,
//! debug and trace 7. The event's fields follow the message, then the fixed
//! fields given at connect (the store and mountpoint). Newlines become
//! spaces, so one event is one line.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Facility `daemon`.
const FACILITY_DAEMON: u8 = 3;
/// Longest datagram sent; longer lines are cut (at a character boundary).
const MAX_LINE: usize = 4096;

/// The syslog severity of a tracing level.
pub fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn push_value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c == '\\');
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One syslog line: `<PRI>IDENT[PID]: MESSAGE k=v …`.
pub fn format_line(
    level: &Level,
    ident: &str,
    pid: u32,
    message: &str,
    fields: &[(String, String)],
) -> String {
    let pri = FACILITY_DAEMON * 8 + severity(level);
    let mut line = format!("<{pri}>{ident}[{pid}]: ");
    for c in message.chars() {
        line.push(if c.is_control() { ' ' } else { c });
    }
    for (k, v) in fields {
        let _ = write!(line, " {k}=");
        push_value(&mut line, v);
    }
    if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Collects an event's message and fields as text.
#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_string(), text));
        }
    }
}

/// Sends events to a syslog socket.
pub struct SyslogLayer {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
    ident: String,
    fixed: Vec<(String, String)>,
}

impl SyslogLayer {
    /// Connects to the syslog socket at `path` (`/dev/log`); fails when no
    /// syslog daemon listens there.
    pub fn connect(
        path: &Path,
        ident: &str,
        fixed: Vec<(String, String)>,
    ) -> std::io::Result<SyslogLayer> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(SyslogLayer {
            path: path.to_path_buf(),
            socket: Mutex::new(socket),
            ident: ident.to_string(),
            fixed,
        })
    }

    fn send(&self, line: &str) {
        let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        if socket.send(line.as_bytes()).is_ok() {
            return;
        }
        // The syslog daemon restarted: reconnect once, else drop the line
        // (a daemon must not stop serving because its logger went away).
        if let Ok(fresh) = UnixDatagram::unbound() {
            if fresh.connect(&self.path).is_ok() {
                let _ = fresh.send(line.as_bytes());
                *socket = fresh;
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut c = Collect::default();
        event.record(&mut c);
        c.fields.extend(self.fixed.iter().cloned());
        // The pid is read at each event: the daemon forks after connecting.
        let line = format_line(
            event.metadata().level(),
            &self.ident,
            std::process::id(),
            &c.message,
            &c.fields,
        );
        self.send(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_line_has_priority_identifier_pid_message_and_fields() {
        let line = format_line(
            &Level::WARN,
            "strata",
            42,
            "write failed",
            &[
                ("disk".into(), "data".into()),
                ("errno".into(), "28".into()),
                ("store".into(), "/srv/my store".into()),
            ],
        );
        assert_eq!(
            line,
            "<28>strata[42]: write failed disk=data errno=28 store=\"/srv/my store\""
        );
    }

    #[test]
    fn severities_follow_syslog() {
        for (level, pri) in [
            (Level::ERROR, 27),
            (Level::WARN, 28),
            (Level::INFO, 30),
            (Level::DEBUG, 31),
        ] {
            let line = format_line(&level, "s", 1, "m", &[]);
            assert!(line.starts_with(&format!("<{pri}>")), "{line}");
        }
    }

    #[test]
    fn one_event_is_one_line_even_with_newlines_and_quotes() {
        let line = format_line(
            &Level::ERROR,
            "s",
            1,
            "two\nlines",
            &[("k".into(), "a \"b\"\nc".into())],
        );
        assert!(!line.contains('\n'), "{line}");
        assert!(line.ends_with(r#"k="a \"b\" c""#), "{line}");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let line = format_line(&Level::INFO, "s", 1, &"é".repeat(5000), &[]);
        assert!(line.len() <= MAX_LINE);
    }

    #[test]
    fn events_reach_a_listening_socket_with_their_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let layer = SyslogLayer::connect(&path, "strata", vec![("store".into(), "/srv/s".into())])
            .expect("connect");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(disk = "data", errno = 5, "block failed its integrity tag");
        });
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let want = format!(
            "<27>strata[{}]: block failed its integrity tag disk=data errno=5 store=/srv/s",
            std::process::id()
        );
        assert_eq!(got, want);
    }

    #[test]
    fn connecting_where_nobody_listens_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(SyslogLayer::connect(&dir.path().join("none"), "s", Vec::new()).is_err());
    }
}
