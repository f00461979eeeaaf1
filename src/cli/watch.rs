//! The daemon's key watcher: the one thread of a running mount that looks
//! at keys after the mount is up. It never sits on the data path.
//!
//! Every second it looks at the vault file and at `strata.conf`; when
//! either changed it reads it again — the vault with the master key the
//! daemon holds, never accepting an older generation than the one it holds
//! (a backup copied back cannot lift a revocation), the config
//! authenticated against that vault, never an older generation either (a
//! rewrap done while mounted moves the keys the disks are checked against).
//! While the vault records a newer config generation than the one held, the
//! config is read at every tick even if `strata.conf` did not change: a
//! write cut short after the vault's record leaves the staged config as the
//! store's current one.
//! Every `interval` (and at once after a change) it asks each key's holder
//! whether the versions the served disks depend on may still be unwrapped:
//! the vault for its own keys, the key service (with fresh credentials) for
//! external ones.
//!
//! - A refusal takes the disk's keys away at once: the kernel's dirty pages
//!   are flushed while the keys are still there (no write that returned is
//!   lost), then the ciphers, name keys, open files' state and cached blocks
//!   are dropped ([`Fs::revoke_disk`]) and the kernel's cached pages of the
//!   disk invalidated; its operations answer EKEYREVOKED.
//! - A service that cannot be asked is not a refusal: each failed check is
//!   logged, and the disk is served from the keys in memory until `grace`
//!   has passed since the last good answer; then it is refused like a
//!   revocation.
//! - When the holders allow a refused disk again, its DEKs are unwrapped
//!   again (one request per disk and layer for a service) and it is served
//!   without a remount ([`Fs::restore_disk`]); open handles work again.
//! - A disk whose DEKs changed under the mount (not a rewrap: another DEK
//!   generation or set of layers) is refused until the next mount: the
//!   running ciphers would write data the new DEKs cannot read.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::custody;
use crate::fs::Fs;
use crate::layers::Layer;
use crate::store::{self, Config, DiskConfig, DiskKind, StoreError, WrappedDek};
use crate::vault::{Vault, VaultError};

/// How often the vault file and the config are looked at.
const TICK: Duration = Duration::from_secs(1);

/// How long a revocation goes on flushing a disk whose writes do not
/// settle before it takes the keys anyway.
const REVOKE_FLUSH_MAX: Duration = Duration::from_secs(10);

/// No WRITE for this long after a flush: the writes to a disk being
/// revoked have settled.
const WRITES_QUIET: Duration = Duration::from_millis(50);

/// What the watcher knows of one slot (a disk or a snapshot) of the mount.
pub(super) struct Slot {
    /// Whether its holders' allowing it again may serve it again (a
    /// refusal for a key), as opposed to a refusal that needs a remount
    /// (an unfinished re-encryption, a region mismatch, a damaged key).
    pub restorable: bool,
    /// The (layer, DEK generation) pairs its running ciphers were built
    /// from, when it has been served.
    pub built: Option<Vec<(Layer, u32)>>,
    /// The last time every key it depends on was allowed.
    pub last_ok: Instant,
}

impl Slot {
    /// A slot as the mount left it.
    pub fn new(restorable: bool, built: Option<&[WrappedDek]>) -> Slot {
        Slot {
            restorable,
            built: built.map(generations),
            last_ok: Instant::now(),
        }
    }
}

/// The (layer, generation) pairs of a layer list, sorted.
fn generations(layers: &[WrappedDek]) -> Vec<(Layer, u32)> {
    let mut v: Vec<(Layer, u32)> = layers.iter().map(|w| (w.layer, w.generation)).collect();
    v.sort_by_key(|(l, g)| (l.slot(), *g));
    v
}

/// The watcher's settings.
pub(super) struct Settings {
    /// How often key services are asked again.
    pub interval: Duration,
    /// How long a mount serves from memory while a service cannot be asked.
    pub grace: Duration,
}

/// What the holders said about one key version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Refused(String),
    Unreachable(String),
}

/// The watcher of one mount.
pub(super) struct Watcher {
    vault: Vault,
    config: Config,
    store: PathBuf,
    mountpoint: PathBuf,
    fs: Arc<Fs>,
    notifier: fuser::Notifier,
    settings: Settings,
    slots: HashMap<usize, Slot>,
    /// External keys' last answers by (key, version), and when asked.
    external: HashMap<(String, u32), Verdict>,
    next_service_check: Instant,
    vault_stamp: Option<(Option<SystemTime>, u64)>,
    config_stamp: Option<(Option<SystemTime>, u64)>,
    /// The last problem reported about re-reading the vault or config, so
    /// that the same one is not logged every second.
    last_reread_problem: Option<String>,
}

fn stamp(p: &Path) -> Option<(Option<SystemTime>, u64)> {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

impl Watcher {
    /// A watcher for a mount that has just come up.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vault: Vault,
        config: Config,
        store: PathBuf,
        mountpoint: PathBuf,
        fs: Arc<Fs>,
        notifier: fuser::Notifier,
        settings: Settings,
        slots: HashMap<usize, Slot>,
    ) -> Watcher {
        let vault_stamp = stamp(vault.path());
        let config_stamp = stamp(&Config::path(&store));
        Watcher {
            next_service_check: Instant::now() + settings.interval,
            vault,
            config,
            store,
            mountpoint,
            fs,
            notifier,
            settings,
            slots,
            external: HashMap::new(),
            vault_stamp,
            config_stamp,
            last_reread_problem: None,
        }
    }

    /// Runs until the process ends.
    pub fn run(mut self) {
        loop {
            std::thread::sleep(TICK);
            self.tick();
        }
    }

    fn report_reread(&mut self, problem: String) {
        if self.last_reread_problem.as_ref() != Some(&problem) {
            tracing::warn!("{problem}");
            self.last_reread_problem = Some(problem);
        }
    }

    /// Re-reads the vault if its file changed. Returns whether it changed.
    fn reread_vault(&mut self) -> bool {
        let now = stamp(self.vault.path());
        if now == self.vault_stamp {
            return false;
        }
        match self.vault.reload() {
            Ok(()) => {
                self.vault_stamp = now;
                self.last_reread_problem = None;
                true
            }
            Err(e @ VaultError::RolledBack { .. }) => {
                // Keep the newer vault held; look again when the file
                // changes again.
                self.vault_stamp = now;
                self.report_reread(e.to_string());
                false
            }
            Err(e) => {
                self.report_reread(format!("the vault changed but cannot be read again: {e}"));
                false
            }
        }
    }

    /// Re-reads the config if its file changed, or (`behind`) whenever the
    /// vault records a newer generation than the config held: a write cut
    /// short after the vault's record leaves `strata.conf` as it was and
    /// the staged config as the current one. Returns whether it changed.
    fn reread_config(&mut self, behind: bool) -> bool {
        let path = Config::path(&self.store);
        let now = stamp(&path);
        if now == self.config_stamp && !behind {
            return false;
        }
        match store::read_authenticated(&self.store, &self.vault) {
            Ok(c) if c.generation < self.config.generation => {
                self.config_stamp = now;
                self.report_reread(format!(
                    "{}: config generation {} is older than the generation {} this mount holds: ignoring it",
                    path.display(),
                    c.generation,
                    self.config.generation
                ));
                false
            }
            Ok(c) => {
                self.config_stamp = now;
                self.last_reread_problem = None;
                let changed = c != self.config;
                self.config = c;
                changed
            }
            // A rewrap writes the config before the vault records its
            // generation: try again at the next tick.
            Err(e) => {
                tracing::debug!("the config changed but does not authenticate yet: {e}");
                if matches!(e, StoreError::Config(_)) {
                    self.report_reread(format!("the config changed but is refused: {e}"));
                }
                false
            }
        }
    }

    /// The config of each slot the mount serves or refuses.
    fn slot_configs(&self) -> Vec<(usize, DiskConfig)> {
        self.fs
            .disks()
            .filter_map(|(i, rt)| {
                let conf = match &rt.snapshot {
                    Some(n) => self.config.snapshot(&rt.name, n).map(|s| s.source.clone()),
                    None => self.config.disk(&rt.name).cloned(),
                };
                conf.map(|c| (i, c))
            })
            .collect()
    }

    /// Asks the holders about every key version the slots depend on. The
    /// vault is asked every time; key services when `ask_services` or when
    /// a version was never asked.
    fn verdicts(
        &mut self,
        slots: &[(usize, DiskConfig)],
        ask_services: bool,
    ) -> HashMap<(String, u32), Verdict> {
        let mut wanted: HashMap<String, BTreeSet<u32>> = HashMap::new();
        for (_, d) in slots {
            for w in &d.layers {
                wanted
                    .entry(w.key.name.clone())
                    .or_default()
                    .insert(w.key.version);
            }
        }
        let mut out = HashMap::new();
        for (name, versions) in wanted {
            let versions: Vec<u32> = versions.into_iter().collect();
            let holder = match custody::holder(&self.vault, &name) {
                Ok(h) => h,
                Err(e) => {
                    let v = if e.is_unreachable() {
                        Verdict::Unreachable(e.to_string())
                    } else {
                        Verdict::Refused(e.to_string())
                    };
                    for ver in versions {
                        out.insert((name.clone(), ver), v.clone());
                    }
                    continue;
                }
            };
            let external = holder.is_external();
            if external
                && !ask_services
                && versions
                    .iter()
                    .all(|v| self.external.contains_key(&(name.clone(), *v)))
            {
                for v in versions {
                    if let Some(x) = self.external.get(&(name.clone(), v)) {
                        out.insert((name.clone(), v), x.clone());
                    }
                }
                continue;
            }
            let answers = holder.check(&versions, self.settings.interval.max(TICK * 2));
            for (i, v) in versions.iter().enumerate() {
                let verdict = match &answers {
                    Ok(a) => match a.get(i).cloned().flatten() {
                        None => Verdict::Allowed,
                        Some(why) => Verdict::Refused(why),
                    },
                    Err(e) if e.is_unreachable() => Verdict::Unreachable(e.to_string()),
                    Err(e) => Verdict::Refused(e.to_string()),
                };
                if external {
                    self.external.insert((name.clone(), *v), verdict.clone());
                }
                out.insert((name.clone(), *v), verdict);
            }
        }
        out
    }

    /// One look at the vault, the config and, when due, the services.
    pub fn tick(&mut self) {
        let vault_changed = self.reread_vault();
        let behind = self.vault.store_generation(&self.config.store_id) > self.config.generation;
        let config_changed = self.reread_config(behind);
        let now = Instant::now();
        let ask_services = now >= self.next_service_check;
        if !(vault_changed || config_changed || ask_services) {
            return;
        }
        if ask_services {
            self.next_service_check = now + self.settings.interval;
        }
        let slots = self.slot_configs();
        let verdicts = self.verdicts(&slots, ask_services);
        // The vault records every config generation strata writes, after
        // writing the config: a record newer than the config held means the
        // file was rolled back or replaced before this mount could read the
        // newer one, and the key versions it checks may be stale.
        let recorded = self.vault.store_generation(&self.config.store_id);
        let stale = (recorded > self.config.generation).then(|| {
            format!(
                "{}: the vault records config generation {recorded} but this mount could only read generation {}: the config was rolled back or replaced while mounted; restore it, or remount",
                Config::path(&self.store).display(),
                self.config.generation
            )
        });
        let mut to_revoke: Vec<(usize, String)> = Vec::new();
        let mut to_restore: Vec<(usize, DiskConfig)> = Vec::new();
        for (i, d) in slots {
            let Some(rt) = self.fs.disks().find(|(j, _)| *j == i).map(|(_, rt)| rt) else {
                continue;
            };
            let what = match &rt.snapshot {
                Some(s) => format!("snapshot {s} of disk {}", d.name),
                None => format!("disk {}", d.name),
            };
            let served = rt.refusal().is_none();
            let slot = self
                .slots
                .entry(i)
                .or_insert_with(|| Slot::new(true, served.then_some(&d.layers[..])));
            // Refused for a key (first one the holders refuse), else away.
            let mut verdict = Verdict::Allowed;
            for w in &d.layers {
                match verdicts.get(&(w.key.name.clone(), w.key.version)) {
                    Some(Verdict::Refused(why)) => {
                        verdict = Verdict::Refused(format!("{what} is unavailable: {why}"));
                        break;
                    }
                    Some(Verdict::Unreachable(why)) if verdict == Verdict::Allowed => {
                        verdict = Verdict::Unreachable(why.clone());
                    }
                    _ => {}
                }
            }
            // The temp disk's key is the mount's own, under no key a config
            // names, and a refused temp disk is never served again.
            if let Some(why) = stale.as_ref().filter(|_| d.kind != DiskKind::Temp) {
                verdict = Verdict::Refused(format!("{what} is unavailable: {why}"));
            }
            if d.pending.is_some() {
                verdict = Verdict::Refused(format!(
                    "{what} has an unfinished re-encryption: remount after `strata disk rekey` finishes"
                ));
                slot.restorable = false;
            }
            if let Some(built) = &slot.built {
                if served && *built != generations(&d.layers) {
                    verdict = Verdict::Refused(format!(
                        "the DEKs of {what} changed under this mount (rekey or restore): remount to serve it"
                    ));
                    slot.restorable = false;
                }
            }
            match (served, verdict) {
                (true, Verdict::Allowed) => slot.last_ok = now,
                (true, Verdict::Refused(why)) => to_revoke.push((i, why)),
                (true, Verdict::Unreachable(why)) => {
                    let away = now.saturating_duration_since(slot.last_ok);
                    if away >= self.settings.grace {
                        to_revoke.push((
                            i,
                            format!(
                                "{what} is unavailable: its key service has not answered for {}s, longer than the grace period of {}s: {why}",
                                away.as_secs(),
                                self.settings.grace.as_secs()
                            ),
                        ));
                    } else if ask_services {
                        tracing::warn!(
                            "{what}: key check failed, serving from the keys in memory for {}s more: {why}",
                            (self.settings.grace - away).as_secs()
                        );
                    }
                }
                (false, Verdict::Allowed) if slot.restorable && d.kind != DiskKind::Temp => {
                    to_restore.push((i, d));
                }
                (false, Verdict::Refused(why)) if slot.restorable => {
                    // Keep the reason current (no keys are held).
                    self.fs.revoke_disk(i, why);
                }
                (false, _) => {}
            }
        }
        if !to_revoke.is_empty() {
            self.revoke(to_revoke);
        }
        if !to_restore.is_empty() {
            self.restore(to_restore);
        }
    }

    /// Flushes what the kernel holds for the mount, then takes the keys of
    /// `slots` away.
    fn revoke(&mut self, slots: Vec<(usize, String)>) {
        // Writes that returned to their callers may still sit in the
        // kernel's page cache: write them with the keys still here. First
        // the disks stop answering new requests and the kernel is told that
        // its attributes of their objects are stale: a write then asks for
        // them before the kernel takes it into its cache, and fails, so
        // that no write returns after the flush below has passed its file.
        let closing: Vec<usize> = slots.iter().map(|(i, _)| *i).collect();
        self.fs.close_disks(&closing);
        // Until the writes settle: a write that had its attributes before
        // they were dropped may still be copying into the cache during a
        // flush, a kernel may end a flush before the daemon has the WRITEs
        // it queued, and a request admitted before the disk began closing
        // may answer during it with attributes the kernel then holds (for
        // no time: the adapter gives them no time to live). Each round
        // drops the kernel's attributes again. Bounded: a writer that
        // outlasts it may lose what it writes after (its close or fsync
        // then reports the error).
        let deadline = Instant::now() + REVOKE_FLUSH_MAX;
        loop {
            let mark = self.fs.validations(&closing);
            for &i in &closing {
                for ino in self.fs.disk_inodes(i) {
                    let _ = self.notifier.inval_inode(fuser::INodeNo(ino), -1, 0);
                }
            }
            match std::fs::File::open(&self.mountpoint) {
                Ok(f) => {
                    if let Err(e) = crate::platform::sync_filesystem(std::os::fd::AsFd::as_fd(&f)) {
                        tracing::warn!("flushing the mount before a revocation failed: {e}");
                    }
                }
                Err(e) => tracing::warn!("flushing the mount before a revocation failed: {e}"),
            }
            if self.fs.writes_settle(&closing, &mark, WRITES_QUIET) {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "writes to a disk being revoked went on for {}s: revoking anyway",
                    REVOKE_FLUSH_MAX.as_secs()
                );
                break;
            }
        }
        crate::faults::pause_point("revoke-flushed");
        let reasons: HashMap<usize, String> = slots.iter().cloned().collect();
        for i in self.fs.revoke_disks(slots) {
            if let Some(why) = reasons.get(&i) {
                let disk = self
                    .fs
                    .disks()
                    .find(|(j, _)| *j == i)
                    .map(|(_, d)| d.name.clone())
                    .unwrap_or_default();
                tracing::warn!(disk = %disk, errno = crate::fs::Errno::REVOKED.0, "{why}");
            }
            for ino in self.fs.disk_inodes(i) {
                let _ = self.notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
            }
        }
    }

    /// Unwraps the DEKs of `slots` again and serves them.
    fn restore(&mut self, slots: Vec<(usize, DiskConfig)>) {
        let mut memo = store::Unwrapper::default();
        for (i, d) in slots {
            match memo.unlock(&self.store, &self.config, &d, &d.layers, &self.vault) {
                Ok(keys) => {
                    let pipeline = store::disk_pipeline(&self.config.store_id, &d.name, &keys);
                    if self.fs.restore_disk(i, pipeline) {
                        tracing::warn!(disk = %d.name, "disk available again");
                    }
                    if let Some(s) = self.slots.get_mut(&i) {
                        s.built = Some(generations(&d.layers));
                        s.last_ok = Instant::now();
                    }
                }
                Err(e) => {
                    let unreachable = e.is_unreachable();
                    tracing::debug!(disk = %d.name, unreachable, "disk not served again yet: {e}");
                    if !unreachable {
                        if let StoreError::Unwrap { .. } = e {
                            if let Some(s) = self.slots.get_mut(&i) {
                                s.restorable = false;
                            }
                            self.fs.revoke_disk(i, e.to_string());
                        }
                    }
                }
            }
        }
    }
}

/// Whether store error `e` (a disk's keys at mount) may be lifted by the
/// holders allowing the key again.
pub(super) fn restorable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Revoked { .. } | StoreError::MissingKey { .. }
    )
}
