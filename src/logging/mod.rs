//! Where logs go: stderr, a file, or — for a daemon — the systemd journal
//! when journald runs (Linux; native protocol, with structured fields),
//! else syslog (`/dev/log` on Linux; on macOS syslogd's `/var/run/syslog`,
//! from which the lines reach the unified log). What a log line may carry is the same everywhere:
//! the store and backing-file paths (ciphertext names only), disk names,
//! inode numbers, errnos and counts; never a plaintext name, file contents
//! or a key.
//!
//! Structured fields of the daemon's events: `STORE` and `MOUNTPOINT` on
//! every entry, `DISK` and `ERRNO` where an operation on a disk failed,
//! `PRIORITY` and `SYSLOG_IDENTIFIER=strata` as journald expects.

pub mod syslog;

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The journald socket of the native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The syslog socket of this system.
pub const SYSLOG_SOCKET: &str = crate::platform::SYSLOG_SOCKET;
/// Identifier of every entry in the journal or syslog.
pub const IDENTIFIER: &str = "strata";

/// Where to send logs.
#[derive(Debug, Clone, Copy)]
pub enum Sink<'a> {
    /// Standard error (commands, and the daemon with `-f`).
    Stderr,
    /// Append to a file.
    File(&'a Path),
    /// A daemon without a terminal: the journal (Linux), else syslog.
    System {
        /// The store served (a field of every entry).
        store: &'a Path,
        /// Its mountpoint (a field of every entry).
        mountpoint: &'a Path,
    },
}

/// Where logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// Standard error.
    Stderr,
    /// A file.
    File,
    /// The systemd journal.
    Journal,
    /// Syslog.
    Syslog,
    /// Neither journald nor a syslog daemon listens: logs are dropped.
    Nowhere,
}

/// The filter: `default` for strata's own events unless RUST_LOG says
/// otherwise; fuser only for its errors.
fn filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("strata={default},fuser=error"))
    })
}

/// The HTTP client's protocol layer dumps every byte it sends and receives
/// at trace level (a key service's token in the request head, DEKs in
/// request and reply bodies): those events are dropped whatever `RUST_LOG`
/// asks for, as a filter of its own that no directive can lift.
fn no_wire_dumps() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool>
{
    tracing_subscriber::filter::filter_fn(|meta| !meta.target().starts_with("ureq_proto"))
}

/// Installs the global subscriber. A second call (tests) keeps the first
/// subscriber and reports the sink it would have chosen.
pub fn init(default_level: &str, sink: Sink<'_>) -> std::io::Result<Chosen> {
    let registry = tracing_subscriber::registry()
        .with(filter(default_level))
        .with(no_wire_dumps());
    match sink {
        Sink::Stderr => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr);
            let _ = registry.with(fmt).try_init();
            Ok(Chosen::Stderr)
        }
        Sink::File(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let fmt = tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f));
            let _ = registry.with(fmt).try_init();
            Ok(Chosen::File)
        }
        Sink::System { store, mountpoint } => {
            let fields = [
                ("STORE", store.display().to_string()),
                ("MOUNTPOINT", mountpoint.display().to_string()),
            ];
            if let Some(journal) = crate::platform::HAS_JOURNAL
                .then(|| journal_layer(&fields))
                .flatten()
            {
                let _ = registry.with(journal).try_init();
                return Ok(Chosen::Journal);
            }
            let lower: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            match syslog::SyslogLayer::connect(Path::new(SYSLOG_SOCKET), IDENTIFIER, lower) {
                Ok(layer) => {
                    let _ = registry.with(layer).try_init();
                    Ok(Chosen::Syslog)
                }
                Err(_) => Ok(Chosen::Nowhere),
            }
        }
    }
}

/// The journald layer, when journald listens on its socket.
fn journal_layer(fields: &[(&str, String)]) -> Option<tracing_journald::Layer> {
    // Layer::new sends an empty datagram to journald's socket
    // (JOURNAL_SOCKET): it fails when journald does not run.
    let layer = tracing_journald::Layer::new().ok()?;
    // The same priorities as the syslog path: info is informational (6),
    // not notice.
    let priorities = tracing_journald::PriorityMappings {
        info: tracing_journald::Priority::Informational,
        debug: tracing_journald::Priority::Debug,
        ..tracing_journald::PriorityMappings::new()
    };
    Some(
        layer
            .with_priority_mappings(priorities)
            .with_field_prefix(None)
            .with_syslog_identifier(IDENTIFIER.to_string())
            .with_custom_fields(fields.iter().map(|(k, v)| (*k, v.as_bytes()))),
    )
}
