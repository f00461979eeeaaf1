//! The control socket of a running mount: a Unix socket in the store
//! directory (`control.sock`, mode 0600, removed at unmount) that only the
//! daemon's owner may use. One JSON request per line, one JSON reply per
//! line:
//!
//! ```text
//! {"op":"status"}                                ->  {"ok":true,"status":{…}}
//! {"op":"snapshot","disk":D,"name":N}            ->  {"ok":true,"objects":…,"bytes":…,"reflinked":…}
//! {"op":"show-snapshot","disk":D,"name":N}       ->  {"ok":true}
//! anything else                                  ->  {"ok":false,"error":"…"}
//! ```
//!
//! `snapshot` holds every changing operation on the disk, copies the
//! disk's backing tree to `snapshots/D/.tmp-N` (prepared by the client,
//! which records the snapshot in the config afterwards) and lets the
//! operations go on; `show-snapshot` then shows it under `.snapshots/`.
//! Writes that reached the daemon before are in the copy, later ones are
//! not: the copy is crash-consistent.
//!
//! Both run inside the daemon, which holds the store's lock for its life.
//! `D` must be a well-formed name before it is used in any path.
//! `show-snapshot` serves only a snapshot that the store's config records,
//! with the keys the disk has in this mount: the config must authenticate
//! against the vault the daemon follows (with the master key it holds),
//! must not be older than any config the daemon has seen, and must record
//! snapshot `N` of disk `D` with the disk's own layers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fs::{Fs, FsStatus};
use crate::fuse::watch::Activity;
use crate::store::snapshots::valid_name;
use crate::store::Config;
use crate::vault::Vault;

/// The socket's file name in the store directory.
pub const SOCKET_NAME: &str = "control.sock";
/// A request line longer than this is refused.
const MAX_REQUEST: u64 = 64 * 1024;

/// The socket path of a store.
pub fn socket_path(store: &Path) -> PathBuf {
    store.join(SOCKET_NAME)
}

/// A request line, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    op: String,
    disk: Option<String>,
    name: Option<String>,
}

/// A request.
#[derive(Debug)]
enum Request {
    Status,
    Snapshot { disk: String, name: String },
    ShowSnapshot { disk: String, name: String },
}

impl Request {
    fn parse(line: &str) -> Result<Request, String> {
        let raw: RawRequest = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let disk_name = |raw: RawRequest| match (raw.disk, raw.name) {
            (Some(disk), Some(name)) => Ok((disk, name)),
            _ => Err(format!("{} needs \"disk\" and \"name\"", raw.op)),
        };
        match raw.op.as_str() {
            "status" if raw.disk.is_none() && raw.name.is_none() => Ok(Request::Status),
            "status" => Err("status takes no arguments".into()),
            "snapshot" => disk_name(raw).map(|(disk, name)| Request::Snapshot { disk, name }),
            "show-snapshot" => {
                disk_name(raw).map(|(disk, name)| Request::ShowSnapshot { disk, name })
            }
            other => Err(format!(
                "unknown op {other:?} (status, snapshot, show-snapshot)"
            )),
        }
    }
}

/// What `status` answers: the mount's own report plus where it is.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// The store.
    pub store: PathBuf,
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The daemon's process id.
    pub pid: u32,
    /// Whether the daemon could dump core (and so write its keys to disk).
    pub may_dump_core: bool,
    /// The control socket.
    pub socket: PathBuf,
    /// The filesystem's report.
    pub fs: serde_json::Value,
}

/// What the daemon checks a snapshot against before it shows one: the
/// store's config as every reader takes it ([`crate::store::read_authenticated`]),
/// with the vault read again with the master key the daemon holds (a
/// rewrap beside the mount may have moved the config's tag to a newer key
/// version), never from an older vault or config than one seen before.
pub struct ConfigCheck {
    store: PathBuf,
    vault: std::sync::Mutex<Vault>,
    /// The newest generation seen: an older config is a rollback.
    seen: std::sync::Mutex<u64>,
}

impl ConfigCheck {
    /// The check for the mount of `store` that started from `config`,
    /// following `vault` (its own handle on the daemon's vault).
    pub fn new(store: &Path, config: &Config, vault: Vault) -> ConfigCheck {
        ConfigCheck {
            store: store.to_path_buf(),
            vault: std::sync::Mutex::new(vault),
            seen: std::sync::Mutex::new(config.generation),
        }
    }

    /// The authenticated config now, refused when its tag fails or it is
    /// older than one seen before.
    fn current(&self) -> Result<Config, String> {
        let mut vault = self.vault.lock().unwrap_or_else(|e| e.into_inner());
        // An older or unreadable vault file is not followed: the one held
        // is the newest seen.
        let _ = vault.reload();
        let config =
            crate::store::read_authenticated(&self.store, &vault).map_err(|e| e.to_string())?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if config.generation < *seen {
            return Err(format!(
                "{}: config generation {} is older than {} seen by this mount: it was rolled back",
                Config::path(&self.store).display(),
                config.generation,
                *seen
            ));
        }
        *seen = config.generation;
        Ok(config)
    }

    /// Checks that the config records snapshot `name` of disk `disk`, taken
    /// with the layers (DEKs) the disk has in this mount.
    fn recorded_snapshot(&self, disk: &str, name: &str) -> Result<(), String> {
        let config = self.current()?;
        let Some(live) = config.disk(disk) else {
            return Err(format!("the store has no disk named {disk}"));
        };
        match config.snapshot(disk, name) {
            None => Err(format!(
                "the store's config records no snapshot {name} of disk {disk}"
            )),
            Some(s) if s.source.layers != live.layers => Err(format!(
                "snapshot {name} of disk {disk} has other keys than the disk in this mount; it shows at the next mount"
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Serves the control socket until the listener is closed.
pub struct Server {
    path: PathBuf,
}

impl Server {
    /// Binds the socket (mode 0600) and serves it on a thread. An online
    /// snapshot counts as a request being served in `activity`, so an idle
    /// unmount never cuts its copy short; snapshots to show are checked
    /// with `check`.
    pub fn start(
        store: &Path,
        mountpoint: &Path,
        fs: Arc<Fs>,
        activity: Arc<Activity>,
        check: ConfigCheck,
    ) -> std::io::Result<Server> {
        let path = socket_path(store);
        // A socket left by a daemon that died: nobody answers it.
        if path.exists() && UnixStream::connect(&path).is_err() {
            let _ = std::fs::remove_file(&path);
        }
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let bound = UnixListener::bind(&path);
        rustix::process::umask(old);
        let listener = bound?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let owner = rustix::process::geteuid().as_raw();
        let ctx = Arc::new((
            store.to_path_buf(),
            mountpoint.to_path_buf(),
            path.clone(),
            check,
        ));
        std::thread::Builder::new()
            .name("strata-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let fs = fs.clone();
                    let ctx = ctx.clone();
                    let activity = activity.clone();
                    let _ = std::thread::Builder::new()
                        .name("strata-control-conn".into())
                        .spawn(move || {
                            serve(
                                conn,
                                owner,
                                &fs,
                                &activity,
                                (&ctx.0, &ctx.1, &ctx.2),
                                &ctx.3,
                            )
                        });
                }
            })?;
        Ok(Server { path })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn reply(conn: &mut UnixStream, v: &serde_json::Value) {
    let mut line = v.to_string();
    line.push('\n');
    let _ = conn.write_all(line.as_bytes());
}

fn error(conn: &mut UnixStream, msg: impl Into<String>) {
    reply(
        conn,
        &serde_json::json!({ "ok": false, "error": msg.into() }),
    );
}

fn serve(
    mut conn: UnixStream,
    owner: u32,
    fs: &Fs,
    activity: &Activity,
    (store, mnt, sock): (&Path, &Path, &Path),
    check: &ConfigCheck,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    match crate::platform::peer_uid(std::os::fd::AsFd::as_fd(&conn)) {
        Ok(uid) if uid == owner => {}
        Ok(uid) => {
            tracing::warn!(uid, "control socket: refused another user");
            return error(
                &mut conn,
                "permission denied: the control socket serves only the user who mounted the store",
            );
        }
        Err(_) => return error(&mut conn, "cannot identify the peer"),
    }
    let Ok(clone) = conn.try_clone() else { return };
    let mut reader = BufReader::new(clone).take(MAX_REQUEST);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if !line.ends_with('\n') => {
                return error(
                    &mut conn,
                    format!(
                        "request too long or not ended by a newline (limit {MAX_REQUEST} bytes)"
                    ),
                );
            }
            Ok(_) => {}
            Err(_) => return error(&mut conn, "request is not UTF-8 text"),
        }
        reader.set_limit(MAX_REQUEST);
        match Request::parse(line.trim_end()) {
            Ok(Request::Status) => {
                let status = Status {
                    store: store.to_path_buf(),
                    mountpoint: mnt.to_path_buf(),
                    pid: std::process::id(),
                    may_dump_core: crate::sys::may_dump_core(),
                    socket: sock.to_path_buf(),
                    fs: serde_json::to_value::<FsStatus>(fs.status()).unwrap_or_default(),
                };
                reply(&mut conn, &serde_json::json!({ "ok": true, "status": status }));
            }
            Ok(Request::Snapshot { disk, name }) => {
                let _busy = activity.begin();
                match snapshot(fs, store, &disk, &name) {
                    Ok(st) => reply(
                        &mut conn,
                        &serde_json::json!({ "ok": true, "objects": st.objects, "bytes": st.bytes, "reflinked": st.reflinked }),
                    ),
                    Err(e) => error(&mut conn, e),
                }
            }
            Ok(Request::ShowSnapshot { disk, name }) => match show_snapshot(fs, store, check, &disk, &name) {
                Ok(()) => reply(&mut conn, &serde_json::json!({ "ok": true })),
                Err(e) => error(&mut conn, e),
            },
            Err(e) => error(&mut conn, format!("malformed request: {e} (expected one JSON object per line, e.g. {{\"op\":\"status\"}})")),
        }
    }
}

/// Shows snapshot `name` of disk `disk` under `.snapshots/`, when the
/// authenticated config records it (see the module documentation).
fn show_snapshot(
    fs: &Fs,
    store: &Path,
    check: &ConfigCheck,
    disk: &str,
    name: &str,
) -> Result<(), String> {
    if !valid_name(disk) || !valid_name(name) {
        return Err(format!("invalid disk or snapshot name {disk:?}/{name:?}"));
    }
    check.recorded_snapshot(disk, name)?;
    let root = crate::store::snapshots::snapshot_root(store, disk, name);
    if !root.is_dir() {
        return Err(format!("no snapshot {name} of disk {disk} to show"));
    }
    if fs.add_snapshot(disk, name, root) {
        Ok(())
    } else {
        Err("this mount shows no more snapshots; it shows at the next mount".into())
    }
}

/// Copies disk `disk` to its snapshot's temporary path with every change
/// held off.
fn snapshot(
    fs: &Fs,
    store: &Path,
    disk: &str,
    name: &str,
) -> Result<crate::store::snapshots::CopyStats, String> {
    use crate::store::snapshots::{clone_tree, snapshot_tmp};
    if !valid_name(disk) || !valid_name(name) {
        return Err(format!("invalid disk or snapshot name {disk:?}/{name:?}"));
    }
    let tmp = snapshot_tmp(store, disk, name);
    if tmp.exists() {
        return Err(format!("{} already exists", tmp.display()));
    }
    let src = crate::store::disk_root(store, disk);
    let Some(_frozen) = fs.freeze(disk) else {
        return Err(format!("this mount has no disk named {disk}"));
    };
    let started = std::time::Instant::now();
    let r = clone_tree(&src, &tmp, &crate::progress::Silent).map_err(|e| e.to_string());
    tracing::info!(
        disk,
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = r.is_ok(),
        "online snapshot copy"
    );
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// Sends one request to the daemon of `store` and returns its reply.
pub fn request(store: &Path, req: &serde_json::Value) -> Result<serde_json::Value, ControlError> {
    let path = socket_path(store);
    let mut conn = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotMounted(store.to_path_buf(), path.clone())
        }
        _ => ControlError::Io(path.clone(), e),
    })?;
    let mut line = req.to_string();
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| ControlError::Io(path.clone(), e))?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(|e| ControlError::Io(path.clone(), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| ControlError::Reply(e.to_string()))?;
    if v["ok"] != serde_json::Value::Bool(true) {
        return Err(ControlError::Refused(
            v["error"].as_str().unwrap_or("no reason given").to_string(),
        ));
    }
    Ok(v)
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens.
    #[error("no running mount of store {0} (no control socket answers at {1})")]
    NotMounted(PathBuf, PathBuf),
    /// I/O on the socket.
    #[error("control socket {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The daemon said no.
    #[error("the daemon refused: {0}")]
    Refused(String),
    /// The reply was not understood.
    #[error("unexpected reply from the daemon: {0}")]
    Reply(String),
}

/// Asks the daemon of `store` for its status.
pub fn status(store: &Path) -> Result<Status, ControlError> {
    let v = request(store, &serde_json::json!({ "op": "status" }))?;
    serde_json::from_value(v["status"].clone()).map_err(|e| ControlError::Reply(e.to_string()))
}
