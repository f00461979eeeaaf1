//! `strata mount` and `strata umount`: the one place that wires vault,
//! store, cache and FUSE together, and the daemon's life cycle.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::secrets::open_vault;
use super::{watch, MountArgs};
use crate::cache::BlockCache;
use crate::fs::{DiskRt, Fs, FsOptions};
use crate::fuse::watch::Activity;
use crate::store::{self, DiskKind};

/// The store of the strata mount at `path`.
pub(super) fn store_of_mount(path: &Path) -> Option<PathBuf> {
    let canon = path.canonicalize().ok()?;
    // The newest mount on that point is the visible one.
    store::strata_mounts()
        .into_iter()
        .rev()
        .find(|(point, _)| *point == canon)
        .map(|(_, store)| store)
}

/// The newest mount at `path` by the mount table, if it is a mountpoint.
fn top_mount(path: &Path) -> Option<crate::platform::MountEntry> {
    newest_mount_at(&path.canonicalize().ok()?)
}

/// The newest mount the table lists at `point` (canonical).
fn newest_mount_at(point: &Path) -> Option<crate::platform::MountEntry> {
    crate::platform::mounts()
        .into_iter()
        .rev()
        .find(|m| m.point == point)
}

/// Lets the daemon hold as many open files as the system allows it: every
/// file open through the mount, and a bounded cache of backing directories,
/// hold a descriptor.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    let Some(want) = crate::platform::open_files_ceiling(l.maximum) else {
        return;
    };
    if l.current.is_some_and(|c| c < want) {
        l.current = Some(want);
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::info!("open-file limit left as it was: {e}");
        }
    }
}

fn check_mountpoint(m: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(m) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mountpoint {} does not exist", m.display())
        }
        Err(e) if e.raw_os_error() == Some(crate::platform::errno::ENOTCONN) => {
            bail!(
                "mountpoint {} is a dead mount (its daemon died): run `strata umount {}` first",
                m.display(),
                m.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("mountpoint {}", m.display())),
    };
    if !meta.is_dir() {
        bail!("mountpoint {} is not a directory", m.display());
    }
    match top_mount(m) {
        // An automount point (fstab's x-systemd.automount): this mount is
        // what it stands for and goes over it. Its directory is empty, and
        // listing it would wait for this very mount.
        Some(top) if top.automount => return Ok(()),
        Some(_) => bail!("mountpoint {} is already mounted", m.display()),
        None => {}
    }
    if std::fs::read_dir(m)
        .with_context(|| format!("mountpoint {}", m.display()))?
        .next()
        .is_some()
    {
        bail!("mountpoint {} is not empty", m.display());
    }
    Ok(())
}

/// Empties the temp disk's backing tree, as at every mount. The tree is
/// reached from the store by descriptor and removed by descriptor: a
/// symlink planted on the way (`disks`, the root, or anywhere below) is
/// refused or removed, never followed, so nothing outside the store goes.
fn empty_temp(store: &Path, root: &Path, encrypted: bool) -> anyhow::Result<()> {
    let shown = || format!("emptying temp disk {}", root.display());
    let rel = root.strip_prefix(store).with_context(shown)?;
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        bail!("temp disk {} is not inside its store", root.display());
    };
    let parent = crate::backing::Dir::open_below(store, parent).with_context(shown)?;
    match parent.remove_tree(name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(shown),
    }
    parent
        .mkdir(name, 0o777)
        .with_context(|| format!("creating temp disk {}", root.display()))?;
    if encrypted {
        let d = parent
            .open_dir(name)
            .and_then(|d| crate::backing::init_dirid(&d).map(|_| ()))
            .and_then(|()| parent.sync());
        d.with_context(|| format!("temp disk {}", root.display()))?;
    }
    Ok(())
}

/// Why a disk whose keys unwrapped must be refused until a remount: an
/// unfinished re-encryption, or a guest layer keyed from a vault of another
/// region.
fn refusal(d: &store::DiskConfig, region: &str, vault: &crate::vault::Vault) -> Option<String> {
    if d.pending.is_some() {
        return Some(format!(
            "disk {} has an unfinished re-encryption: run `strata disk rekey` (or `disk encrypt`) again to finish it",
            d.name
        ));
    }
    if d.guest && vault.region() != region {
        return Some(format!(
            "disk {} is unavailable: the guest layer's key vault must be in the store's region (vault region {}, store region {region})",
            d.name,
            vault.region()
        ));
    }
    None
}

/// The disks and snapshots of an opened store as the daemon serves them,
/// with what the watcher needs to know of each slot. A disk whose key
/// service cannot be reached fails the mount (one line naming the service
/// and the cause); a disk whose keys are refused is refused, holding no key.
fn build_disks(
    opened: store::OpenStore,
    vault: &crate::vault::Vault,
) -> anyhow::Result<(Vec<DiskRt>, HashMap<usize, watch::Slot>)> {
    let store_id = opened.config.store_id.clone();
    let region = opened.config.region.clone();
    let store_path = opened.path.clone();
    let snapshots = opened.snapshots.into_iter().map(|(s, keys)| {
        let root = store::snapshots::snapshot_root(&opened.path, &s.source.name, &s.name);
        (s.source, Some(s.name), root, keys)
    });
    let disks = opened.disks.into_iter().map(|(d, keys)| {
        let root = store::disk_root(&opened.path, &d.name);
        (d, None, root, keys)
    });
    let mut out = Vec::new();
    let mut slots = HashMap::new();
    for (d, snapshot, root, keys) in disks.chain(snapshots) {
        let what = match &snapshot {
            Some(s) => format!("snapshot {s} of disk {}", d.name),
            None => format!("disk {}", d.name),
        };
        let slot = out.len();
        let ephemeral = d.kind == DiskKind::Temp;
        let rt = match keys {
            Ok(keys) => match refusal(&d, &region, vault) {
                Some(r) => {
                    // Refused until a remount: its keys go now.
                    drop(keys);
                    eprintln!("strata: {what}: {r}");
                    tracing::warn!(disk = %d.name, errno = crate::fs::Errno::REVOKED.0, "{what}: {r}");
                    slots.insert(slot, watch::Slot::new(false, None));
                    DiskRt::refused(d.name.clone(), root, snapshot, ephemeral, r)
                }
                None => {
                    let pipeline = store::disk_pipeline(&store_id, &d.name, &keys);
                    if d.kind == DiskKind::Temp {
                        empty_temp(&store_path, &root, pipeline.name_codec().is_encrypted())?;
                    }
                    slots.insert(slot, watch::Slot::new(true, Some(&d.layers)));
                    DiskRt::served(d.name.clone(), root, snapshot, ephemeral, pipeline)
                }
            },
            Err(e) if e.is_unreachable() => bail!("{what}: {e}"),
            Err(e) => {
                eprintln!("strata: {what}: {e}");
                tracing::warn!(disk = %d.name, errno = crate::fs::Errno::REVOKED.0, "{what}: {e}");
                slots.insert(slot, watch::Slot::new(watch::restorable(&e), None));
                DiskRt::refused(d.name.clone(), root, snapshot, ephemeral, e.to_string())
            }
        };
        out.push(rt);
    }
    Ok((out, slots))
}

/// The device every disk's and snapshot's backing tree lies on. Each root
/// is reached from the store without following a symlink, and all must be
/// on one filesystem (the mount names objects by their backing inode
/// numbers, which two filesystems reuse): one line naming the first that is
/// not. A root not there yet is left for the disk's own errors.
fn backing_device(store: &Path, disks: &[DiskRt]) -> anyhow::Result<Option<u64>> {
    let mut device: Option<(u64, &Path)> = None;
    for d in disks {
        let rel = d
            .root
            .strip_prefix(store)
            .with_context(|| format!("{} is not inside the store", d.root.display()))?;
        let dir = match crate::backing::Dir::open_below(store, rel) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "backing tree {} (it must be a directory inside the store, reached through no symlink)",
                        d.root.display()
                    )
                })
            }
        };
        #[allow(clippy::unnecessary_cast)] // the field type differs between systems
        let dev = dir
            .stat()
            .with_context(|| format!("backing tree {}", d.root.display()))?
            .st_dev as u64;
        match device {
            None => device = Some((dev, &d.root)),
            Some((first, first_root)) if first != dev => bail!(
                "backing tree {} is on another filesystem than {}: every disk and snapshot of a store must be on one filesystem",
                d.root.display(),
                first_root.display()
            ),
            Some(_) => {}
        }
    }
    Ok(device.map(|(dev, _)| dev))
}

/// Brings an older store to the current format: before format 3, every
/// empty backing file of a disk gets a header (a disk whose keys are
/// refused now cannot be brought up; the store then stays at its format
/// until a later mount); then the config records the current format.
fn upgrade(
    store_path: &Path,
    config: &mut store::Config,
    vault: &mut crate::vault::Vault,
    disks: &[DiskRt],
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for d in disks
        .iter()
        .filter(|_| store::upgrade::needs_headers(config))
        .filter(|d| d.snapshot.is_none() && !d.ephemeral)
    {
        match d.served_pipeline() {
            Some(p) => todo.push(store::upgrade::DiskToUpgrade {
                name: &d.name,
                root: &d.root,
                pipeline: p,
            }),
            _ => {
                tracing::info!(disk = %d.name, "store left at format {} until this disk's keys serve", config.format);
                return Ok(());
            }
        }
    }
    let n = store::upgrade::give_headers(store_path, &todo)?;
    config.format = store::config::STORE_FORMAT;
    store::save_config(store_path, config, vault)?;
    tracing::info!(files = n, "store brought to format {}", config.format);
    Ok(())
}

/// How often the idle watcher looks at the mount: often enough to unmount
/// within a small fraction of the idle time, at least once a second.
fn idle_tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Unmounts the mount at `mountpoint` once no request has come and no file
/// or directory has been open for `idle` (`--idle`). A busy mount is never
/// unmounted: besides the open handles and the requests in flight, the
/// unmount itself is the kernel's plain one (never lazy), which fails with
/// EBUSY while any process has a file, a mapping or its working directory
/// there; the watcher then waits another full `idle`.
fn watch_idle(idle: Duration, fs: &Fs, activity: &Activity, own: &FoundMount) {
    loop {
        std::thread::sleep(idle_tick(idle));
        let Some(quiet) = activity.idle_for() else {
            continue;
        };
        if quiet < idle || fs.status().open_handles > 0 {
            continue;
        }
        match own.unmount() {
            Ok(()) => {
                tracing::info!(
                    idle_secs = idle.as_secs_f64(),
                    "unmounted: idle for the --idle time"
                );
                return;
            }
            Err(FoundUnmountError::Failed(crate::platform::UnmountError::NotMounted)) => return,
            Err(e) => {
                tracing::debug!("idle, but not unmounting ({e}); staying mounted");
                activity.touch();
            }
        }
    }
}

/// A mount found once (this daemon's own right after mounting, or the one
/// `strata umount` is asked to unmount), unmounted only while it is still
/// the one there: its mountpoint and which mount it is.
#[derive(Clone)]
struct FoundMount {
    point: PathBuf,
    /// The mountpoint held by its parent directory's descriptor, and the ID
    /// and device of this daemon's mount there (Linux), found right after
    /// mounting; None where mounts are not told apart.
    held: Option<Held>,
}

#[derive(Clone)]
struct Held {
    site: Arc<crate::platform::MountSite>,
    id: u64,
    device: String,
}

#[derive(Debug, thiserror::Error)]
enum FoundUnmountError {
    /// Another mount is over this daemon's at the mountpoint (or the mount
    /// was moved): unmounting there would take that one.
    #[error("the mount at the mountpoint is no longer this daemon's (another is over it)")]
    NotOurs,
    #[error(transparent)]
    Failed(crate::platform::UnmountError),
}

impl FoundMount {
    /// The newest mount at `point` right after this daemon mounted there,
    /// if it is a strata FUSE mount and the kernel finds it at the
    /// mountpoint too.
    fn own(point: &Path) -> FoundMount {
        let held = top_strata_mount(point).map(|(site, id, device)| Held {
            site: Arc::new(site),
            id,
            device,
        });
        FoundMount {
            point: point.to_path_buf(),
            held,
        }
    }

    /// Unmounts this daemon's mount unless something uses it: never lazily,
    /// never forced (umount(2) as root or `fusermount3 -u` on Linux,
    /// unmount(2) on macOS), and only while the newest mount at the
    /// mountpoint is still this daemon's, asked through the mountpoint's
    /// parent held since the mount (a directory above renamed meanwhile
    /// changes nothing). (Between the check and the unmount a mount could
    /// still be put over it: the kernel has no call that unmounts one given
    /// mount.)
    fn unmount(&self) -> Result<(), FoundUnmountError> {
        self.unmount_as(crate::platform::Unmount::Plain)
    }

    /// As [`FoundMount::unmount`], in the given way (a dead mount is
    /// detached).
    fn unmount_as(&self, how: crate::platform::Unmount) -> Result<(), FoundUnmountError> {
        use crate::platform::UnmountError;
        let Some(h) = &self.held else {
            return crate::platform::unmount(&self.point, how).map_err(FoundUnmountError::Failed);
        };
        // By ID and device: a mount ID is given again as soon as it is
        // free, a device not while this mount's filesystem lives.
        match crate::platform::mount_listed(h.id, &h.device) {
            // Gone from the table: unmounted meanwhile.
            Some(false) => return Err(FoundUnmountError::Failed(UnmountError::NotMounted)),
            None => return Err(FoundUnmountError::NotOurs),
            Some(true) => {}
        }
        if h.site.top_id() != Some(h.id) {
            return Err(FoundUnmountError::NotOurs);
        }
        h.site.unmount(how).map_err(FoundUnmountError::Failed)
    }
}

/// The newest mount at `point` (canonical) held by its parent's descriptor,
/// with its ID, if it is a strata FUSE mount and the kernel's walk to the
/// point finds that same mount; None otherwise, and always on macOS.
fn top_strata_mount(point: &Path) -> Option<(crate::platform::MountSite, u64, String)> {
    let entry = newest_mount_at(point)?;
    if !entry.fuse || !entry.source.starts_with("strata:") {
        return None;
    }
    let id = entry.id?;
    let device = entry.device?;
    let site = crate::platform::MountSite::open(point).ok()?;
    (site.top_id() == Some(id)).then_some((site, id, device))
}

/// Whether this daemon's mount is still mounted (by its ID where known,
/// wherever it now is; by its mountpoint otherwise). A mount table that
/// cannot be read counts as still listing it.
fn own_mount_listed(own: &FoundMount) -> bool {
    match &own.held {
        Some(h) => crate::platform::mount_listed(h.id, &h.device) != Some(false),
        None => crate::platform::is_mountpoint(&own.point),
    }
}

/// Runs `mount`.
pub fn run(mut a: MountArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    // Options this system cannot honour are refused before anything else.
    let serving = crate::platform::serving(a.threads).map_err(anyhow::Error::msg)?;
    crate::platform::check_fuse().map_err(anyhow::Error::msg)?;
    // Before any key is in memory: the daemon never dumps core.
    crate::sys::no_core_dumps().context("turning core dumps off")?;
    check_mountpoint(&a.mountpoint)?;
    // The daemon names its store by absolute path (in the mount table, for
    // `status` and the offline commands that refuse a mounted store).
    if let Ok(abs) = a.store.canonicalize() {
        a.store = abs;
    }
    if let Ok(abs) = a.mountpoint.canonicalize() {
        a.mountpoint = abs;
    }
    let sink = match (&a.log_file, a.foreground) {
        (Some(f), _) => super::LogSink::File(f),
        (None, true) => super::LogSink::Stderr,
        (None, false) => super::LogSink::System {
            store: &a.store,
            mountpoint: &a.mountpoint,
        },
    };
    let logs = super::init_logging(verbose, sink, true)?;
    // One store, one daemon: the lock is taken before anything touches the
    // store (rotation, emptying temp) and forks with the daemon, which holds
    // it until it exits. Declared first, it is released last.
    let holder = |pid: u32| store::lock::Holder {
        pid,
        mount: Some(a.mountpoint.clone()),
        command: None,
    };
    let store_lock = store::StoreLock::acquire(
        &a.store,
        holder(std::process::id()),
        "a store is served by one mount at a time",
    )?;
    let mut vault = open_vault(&a.vault)?;
    // While the daemon holds the vault's master key, no change of it may
    // leave the daemon unable to follow the vault file.
    let _vault_hold = vault.hold_for_mount()?;
    vault
        .reload()
        .context("the vault changed while the mount started: mount again")?;
    // A read-only mount writes neither the vault nor the config.
    if !a.ro {
        if store::finish_interrupted_write(&a.store, &vault, &store_lock)? {
            eprintln!("strata: finished a config write that a crash had interrupted");
        }
        for line in store::rotation::rotate_due(&a.store, &mut vault)? {
            eprintln!("strata: {line}");
        }
    }
    let started = std::time::Instant::now();
    let opened = store::open(&a.store, &vault)?;
    let record_key = store::sessions::RecordKey::new(&a.store, &opened.config, &vault)?;
    let config_check = crate::control::ConfigCheck::new(
        &opened.path,
        &opened.config,
        vault
            .reopened()
            .context("the vault changed while the mount started: mount again")?,
    );
    let store_path = opened.path.clone();
    let mut store_config = opened.config.clone();
    let (disks, slots) = build_disks(opened, &vault)?;
    let device = backing_device(&store_path, &disks)?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "keys unwrapped and disks built"
    );
    if !a.ro && store::upgrade::needed(&store_config) {
        upgrade(&store_path, &mut store_config, &mut vault, &disks)?;
    }

    // Daemonize before any thread starts; the parent reports the outcome.
    let mut ready: Option<std::io::PipeWriter> = None;
    if !a.foreground {
        let (mut reader, writer) = std::io::pipe().context("creating a pipe")?;
        match crate::sys::fork().context("fork")? {
            crate::sys::Forked::Parent(_) => {
                drop(writer);
                let mut msg = String::new();
                let _ = reader.read_to_string(&mut msg);
                if msg == "ok" {
                    return Ok(ExitCode::SUCCESS);
                }
                if msg.is_empty() {
                    bail!("the daemon exited before the mount was up");
                }
                bail!("{msg}");
            }
            crate::sys::Forked::Child => {
                drop(reader);
                // Until it has a session of its own (once mounted).
                crate::sys::terminal_signals_ignored(true);
                // The lock came through the fork; name the daemon as holder.
                let _ = store_lock.note(&holder(std::process::id()));
                ready = Some(writer);
            }
        }
    }

    // Handlers go in before the mount exists, so that a signal arriving
    // while it comes up is queued rather than lost (or ignored, when the
    // parent left SIGINT ignored).
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        // Not the default (an exit that leaves a dead mount): Ctrl-\ of a
        // daemon in the foreground unmounts as Ctrl-C does.
        signal_hook::consts::SIGQUIT,
    ])
    .context("installing signal handlers")?;
    rustix::process::umask(rustix::fs::Mode::empty());
    raise_open_file_limit();
    let cache = Arc::new(BlockCache::new(a.cache_size));
    // A read-write mount is a session: files it writes carry its id in
    // their write windows, and it is marked ended at a clean unmount.
    let mut sessions = if a.ro {
        store::sessions::read_only(&store_path, &record_key)
    } else {
        store::sessions::begin(&store_path, &record_key)?
    };
    // A store not (yet) of the format with size attributes gets none, and
    // believes none.
    if store_config.format < store::config::SIZE_ATTRS {
        sessions.trust = 0;
    }
    let session_id = sessions.current;
    let session_faults = sessions.stale.clone();
    let session_end = crate::file::Sessions {
        current: session_id,
        stale: session_faults,
        ..crate::file::Sessions::default()
    };
    let fs = Arc::new(Fs::new(
        store_path.clone(),
        disks,
        cache.clone(),
        FsOptions {
            read_only: a.ro,
            sessions,
            device,
        },
    ));
    let mut options = crate::platform::mount_options(&store_path);
    options.extend([
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ]);
    if a.ro {
        options.push(fuser::MountOption::RO);
    }
    if a.noexec {
        options.push(fuser::MountOption::NoExec);
    }
    if a.noatime {
        options.push(fuser::MountOption::NoAtime);
    }
    let mut config = fuser::Config::default();
    config.mount_options = options;
    config.acl = if a.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    let threads = serving.threads;
    config.n_threads = Some(threads);
    config.clone_fd = serving.clone_fd;

    // A read-write session is marked ended once nothing more is served.
    let end_session = || {
        if session_id != 0 {
            if let Err(e) = store::sessions::end(&store_path, &record_key, &session_end) {
                tracing::warn!("the session record was not updated at unmount: {e}");
            }
        }
    };
    let activity = Arc::new(Activity::new());
    let session = fuser::Session::new(
        crate::fuse::StrataFuse::new(fs.clone(), activity.clone()),
        &a.mountpoint,
        &config,
    );
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount on {}: {e}", a.mountpoint.display());
            // Nothing was served: the session ends here, not as a crash
            // for the next mount to find.
            end_session();
            if let Some(mut w) = ready {
                let _ = w.write_all(msg.as_bytes());
                return Ok(ExitCode::FAILURE);
            }
            bail!(msg);
        }
    };
    tracing::info!(mountpoint = %a.mountpoint.display(), threads, logs = ?logs, "mounted");
    crate::platform::tune_readahead(&a.mountpoint, crate::fuse::READAHEAD);
    let own = FoundMount::own(&a.mountpoint);
    if cfg!(target_os = "linux") && own.held.is_none() {
        tracing::warn!(
            "this mount is not in the mount table under its mountpoint's name: a signal or --idle will unmount whatever is mounted there"
        );
    }
    let notifier = session.notifier();
    // Removed again when the guard drops at unmount.
    let _control = match crate::control::Server::start(
        &store_path,
        &a.mountpoint,
        fs.clone(),
        activity.clone(),
        config_check,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no control socket (strata status will not see this mount): {e}");
            None
        }
    };
    if let Some(idle) = a.idle {
        let (fs, own, activity) = (fs.clone(), own.clone(), activity.clone());
        std::thread::Builder::new()
            .name("strata-idle".into())
            .spawn(move || watch_idle(idle, &fs, &activity, &own))
            .context("starting the idle watcher")?;
    }
    let fs_status = fs.clone();
    let watcher = watch::Watcher::new(
        vault,
        store_config,
        store_path.clone(),
        a.mountpoint.clone(),
        fs,
        notifier,
        watch::Settings {
            interval: std::time::Duration::from_secs(a.key_check_interval.max(1)),
            grace: std::time::Duration::from_secs(a.key_grace),
        },
        slots,
    );
    std::thread::Builder::new()
        .name("strata-keys".into())
        .spawn(move || watcher.run())
        .context("starting the key watcher")?;
    let own_end = own.clone();
    let own = own.clone();
    let fs_signals = fs_status.clone();
    std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            let first = signals.forever().next();
            if let Some(sig) = first {
                tracing::info!(signal = sig, "unmounting on signal");
                unmount_on_signal(&own, &fs_signals, &mut signals);
            }
        })
        .context("starting the signal thread")?;
    if let Some(mut w) = ready.take() {
        // A session of its own only now that the mount exists (as libfuse
        // daemonizes after mounting): an automount's mount job runs in the
        // process group that the automount point lets through, and the
        // mount itself walks onto that point.
        let _ = rustix::process::setsid();
        crate::sys::terminal_signals_ignored(false);
        let _ = w.write_all(b"ok");
        drop(w);
        detach_stdio();
    }
    let served = match session.run() {
        // A worker that took a request just as an unmount tore the
        // connection down reads ECONNABORTED instead of the end (more
        // likely the more threads there are): with the mount gone from the
        // table, that is the end. An abort of a mount still in the table
        // (through /sys/fs/fuse/connections) stays an error.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) && !own_mount_listed(&own_end) => {
            tracing::info!("the connection ended with the unmount");
            Ok(())
        }
        r => r.context("serving the mount"),
    };
    // An online snapshot that began just as the mount went away finishes
    // its copy before the process exits.
    while activity.idle_for().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    end_session();
    served?;
    let stats = cache.stats();
    tracing::info!(hits = stats.hits, misses = stats.misses, "unmounted");
    Ok(ExitCode::SUCCESS)
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

/// How long `umount` waits for the daemon to let go of its store.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `umount`, then waits until the daemon has released its store's
/// lock, so that a command run next finds the store free.
pub fn umount(m: &Path) -> anyhow::Result<ExitCode> {
    let store = store_of_mount(m);
    let point = canonical_mountpoint(m);
    let code = unmount(&point)?;
    if let Some(store) = store {
        let held_by_this_mount = || matches!(store::lock::holder(&store), Ok(Some(h)) if h.mount.as_deref() == Some(point.as_path()));
        let start = std::time::Instant::now();
        while held_by_this_mount() {
            if start.elapsed() > RELEASE_WAIT {
                eprintln!(
                    "strata: warning: {} is unmounted but its daemon still holds store {}",
                    m.display(),
                    store.display()
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    Ok(code)
}

/// Runs `attempt` again, for up to 10 s, while `busy` says its result is a
/// busy mount: the kernel releases a just-closed file asynchronously, and
/// the mount stays busy a moment after the close.
fn while_busy<T>(mut attempt: impl FnMut() -> T, busy: impl Fn(&T) -> bool) -> T {
    let mut result = attempt();
    for _ in 0..100 {
        if !busy(&result) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        result = attempt();
    }
    result
}

/// How long a signal's unmount finds the mount busy before saying so.
const BUSY_WARNING: Duration = Duration::from_secs(10);

/// Unmounts for a signal as `strata umount` does, once nothing uses the
/// mount: while it is busy (a file, a mapping, a working directory or a
/// mount under it; also for a moment after a close, which the kernel
/// completes asynchronously), or while another mount is over it, the
/// unmount is tried again, every 100 ms for the first seconds and then
/// every second, until it goes through; a warning says why after
/// [`BUSY_WARNING`] and at each further signal. Never lazily: a detached
/// mount would hand its mountpoint to the directory beneath, where
/// programs still working by path would write unencrypted; a daemon
/// killed meanwhile leaves a dead mount, which says so (ENOTCONN).
/// (The session's own one-shot unmounter gave up for good at the first
/// EBUSY: the daemon then went on serving.)
fn unmount_on_signal(own: &FoundMount, fs: &Fs, signals: &mut signal_hook::iterator::Signals) {
    use crate::platform::UnmountError;
    let started = std::time::Instant::now();
    let mut warned = false;
    let mut last_failure: Option<String> = None;
    loop {
        let why = match own.unmount() {
            Ok(()) | Err(FoundUnmountError::Failed(UnmountError::NotMounted)) => return,
            Err(FoundUnmountError::Failed(UnmountError::Busy)) => {
                "the mount is busy: it unmounts once nothing under it is open (files, working directories, mounts under it)"
            }
            Err(FoundUnmountError::NotOurs) => {
                "not unmounting yet: the mount at the mountpoint is no longer this daemon's (another is over it)"
            }
            // Tried again, as a busy mount is: the signal thread stays,
            // so that no later signal goes unheard.
            Err(FoundUnmountError::Failed(e)) => {
                let said = e.to_string();
                if last_failure.as_deref() != Some(said.as_str()) {
                    tracing::error!("unmount on signal failed: {said}; trying again");
                    last_failure = Some(said);
                }
                "the unmount failed; trying again"
            }
        };
        let again = signals.pending().next().is_some();
        if again || (!warned && started.elapsed() >= BUSY_WARNING) {
            warned = true;
            tracing::warn!(open_handles = fs.status().open_handles, "{why}");
        }
        std::thread::sleep(if started.elapsed() < BUSY_WARNING {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        });
    }
}

/// `m` resolved, or, where it cannot be (a dead mount, whose root answers
/// nothing), its parent resolved and its last name.
fn canonical_mountpoint(m: &Path) -> PathBuf {
    if let Ok(p) = m.canonicalize() {
        return p;
    }
    let parent = match m.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), m.file_name()) {
        (Ok(p), Some(name)) => p.join(name),
        _ => m.to_path_buf(),
    }
}

/// Unmounts the strata mount at `m` (canonical). Only a strata mount:
/// after its daemon went (--idle, say), what is left at the mountpoint may
/// be an automount point, which stays. The mountpoint is held by its
/// parent's descriptor from the first look on, and before every attempt
/// the kernel must find there the mount that the table listed: while the
/// mount is busy, renaming a directory above it and planting a symbolic
/// link in its place leads no attempt to another mount.
fn unmount(m: &Path) -> anyhow::Result<ExitCode> {
    use crate::platform::{Unmount, UnmountError};
    let Some(top) = newest_mount_at(m) else {
        bail!("{} is not mounted", m.display());
    };
    if !top.fuse || !top.source.starts_with("strata:") {
        bail!(
            "the newest mount at {} is not a strata mount: not unmounting it",
            m.display()
        );
    }
    let held = match (top.id, top.device) {
        (Some(id), Some(device)) => Some(Held {
            site: Arc::new(
                crate::platform::MountSite::open(m)
                    .with_context(|| format!("mountpoint {}", m.display()))?,
            ),
            id,
            device,
        }),
        _ => None,
    };
    let found = FoundMount {
        point: m.to_path_buf(),
        held,
    };
    let result = while_busy(
        || found.unmount(),
        |r| matches!(r, Err(FoundUnmountError::Failed(UnmountError::Busy))),
    );
    let result = match result {
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(FoundUnmountError::NotOurs) => bail!(
            "the mount at {} is no longer the one the mount table listed there: not unmounting what is there now",
            m.display()
        ),
        Err(FoundUnmountError::Failed(e)) => e,
    };
    match result {
        UnmountError::Busy => bail!(
            "{} is busy: close the files open under it and try again",
            m.display()
        ),
        UnmountError::NotMounted => bail!("{} is not mounted", m.display()),
        UnmountError::NoSuchPath => {
            bail!("mountpoint {} does not exist", m.display())
        }
        UnmountError::Dead => {
            found
                .unmount_as(Unmount::Dead)
                .with_context(|| format!("unmounting the dead mount {}", m.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        UnmountError::Helper(msg) => bail!("cannot unmount {}: {msg}", m.display()),
        UnmountError::Other(e) => Err(e).with_context(|| format!("unmounting {}", m.display())),
    }
}

/// Runs `status`: asks the daemon of a mountpoint or a store.
pub fn status(target: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = match store_of_mount(target) {
        Some(s) => s,
        None if target.join(store::config::CONFIG_NAME).is_file() => target.to_path_buf(),
        None => bail!(
            "{} is neither a strata mountpoint nor a store",
            target.display()
        ),
    };
    let s = crate::control::status(&store)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f = &s.fs;
    println!("store          {}", s.store.display());
    println!("mountpoint     {}", s.mountpoint.display());
    println!("daemon pid     {}", s.pid);
    println!(
        "core dumps     {}",
        if s.may_dump_core { "possible" } else { "off" }
    );
    println!("control socket {}", s.socket.display());
    if f["read_only"] == true {
        println!("read-only      yes");
    }
    for d in f["disks"].as_array().into_iter().flatten() {
        let layers: Vec<&str> = d["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .collect();
        let layers = if layers.is_empty() {
            "no layer (plaintext)".to_string()
        } else {
            layers.join(" → ")
        };
        match d["refused"].as_str() {
            Some(r) => println!("disk {:<9} REVOKED: {r}", d["name"].as_str().unwrap_or("?")),
            None => println!("disk {:<9} {layers}", d["name"].as_str().unwrap_or("?")),
        }
    }
    let c = &f["cache"];
    println!("open handles   {}", f["open_handles"]);
    println!(
        "cache          {} of {} bytes, {} hits, {} misses, hit rate {:.1}%",
        c["used_bytes"],
        c["capacity_bytes"],
        c["hits"],
        c["misses"],
        c["hit_rate"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!("bytes read     {}", f["bytes_read"]);
    println!("bytes written  {}", f["bytes_written"]);
    Ok(ExitCode::SUCCESS)
}
