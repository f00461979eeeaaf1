//! The backing store: its config, disks and their wrapped keys, presets and
//! `init`, and opening a store with a vault into per-disk pipelines.
//!
//! Layout: `STORE/strata.conf`, `STORE/disks/<disk>/…` (one encrypted tree
//! per disk, each directory holding its `.dirid`).

pub mod config;
pub mod disks;
pub mod lock;
pub mod presets;
pub mod rekey;
pub mod rotation;
pub mod sessions;
pub mod snapshots;
pub mod upgrade;

use std::path::{Path, PathBuf};

use crate::crypto::{random_array, Key32, Key64};
use crate::custody::{self, Binding, CustodyError};
use crate::layers::{DiskKeys, Layer};
use crate::vault::{KeyKind, Vault, VaultError};
pub use config::{
    Config, ConfigError, DiskConfig, DiskKind, ImageConfig, KeyRef, Scope, SnapshotConfig,
    StorageMode, WrappedDek,
};
pub use lock::StoreLock;
pub use presets::Preset;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Config problems.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Vault problems.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The store was made with another vault.
    #[error("store {store} is bound to another vault (id {expected}); {vault} has id {found}")]
    OtherVault {
        /// Store.
        store: PathBuf,
        /// Vault id the store expects.
        expected: String,
        /// Vault path given.
        vault: PathBuf,
        /// Its id.
        found: String,
    },
    /// The config names a key the vault does not have.
    #[error("store {store}: vault key {key} (version {version}) is missing from the vault")]
    MissingKey {
        /// Store.
        store: PathBuf,
        /// Key name.
        key: String,
        /// Version.
        version: u32,
    },
    /// A key the disk depends on is refused by its holder: disabled in the
    /// vault, refused by the key service.
    #[error("disk {disk} is unavailable: {why}")]
    Revoked {
        /// Disk.
        disk: String,
        /// Why, naming the key.
        why: String,
    },
    /// The key service holding a key the disk depends on cannot be asked.
    #[error("disk {disk}: {why}")]
    KeyService {
        /// Disk.
        disk: String,
        /// The key, the addresses tried and the cause.
        why: String,
    },
    /// A wrapped DEK did not unwrap.
    #[error("store {store}: the {layer} key of disk {disk} does not unwrap with vault key {key}: tampered or damaged")]
    Unwrap {
        /// Store.
        store: PathBuf,
        /// Disk.
        disk: String,
        /// Layer.
        layer: &'static str,
        /// Key.
        key: String,
    },
    /// `init` on a directory that is already a store or not empty.
    #[error("{0} already exists and is not empty; choose a new directory for the store")]
    Exists(PathBuf),
    /// The store is mounted, or an offline command is working on it.
    #[error("store {} is {by}: {what}; {}", .store.display(), in_use_hint(*.mounted))]
    InUse {
        /// Store.
        store: PathBuf,
        /// Who holds it ("mounted on M (daemon pid P)", "in use by …").
        by: String,
        /// Whether the holder is a mount.
        mounted: bool,
        /// What needs the store to itself.
        what: String,
    },
    /// Bad request.
    #[error("{0}")]
    Invalid(String),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
}

fn in_use_hint(mounted: bool) -> &'static str {
    if mounted {
        "unmount it first"
    } else {
        "try again when it has finished"
    }
}

impl StoreError {
    /// The store error for custody error `e` about `layer` of `disk`.
    pub(crate) fn custody(store: &Path, disk: &str, layer: Layer, e: CustodyError) -> StoreError {
        match e {
            CustodyError::Missing { key, version } => StoreError::MissingKey {
                store: store.to_path_buf(),
                key,
                version: version.unwrap_or(0),
            },
            CustodyError::Refused { why, .. } => StoreError::Revoked {
                disk: disk.to_string(),
                why,
            },
            CustodyError::Unreachable { .. } => StoreError::KeyService {
                disk: disk.to_string(),
                why: e.to_string(),
            },
            CustodyError::NotUnwrapped { key, .. } => StoreError::Unwrap {
                store: store.to_path_buf(),
                disk: disk.to_string(),
                layer: layer.name(),
                key,
            },
            CustodyError::Invalid(m) => StoreError::Invalid(m),
        }
    }

    /// Whether this is a key service that could not be asked (not a
    /// refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::KeyService { .. })
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub use crate::backing::{atomic_write, write_dirid, DIRID_NAME};

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes sure the vault holds key `name` of `kind`, creating it (in the
/// vault file) if needed. A key held by a key service must already exist
/// (`vault key create NAME` with the service options) and be a customer key.
pub fn ensure_key(vault: &mut Vault, name: &str, kind: KeyKind) -> Result<(), StoreError> {
    if vault.key(name).is_none() {
        vault.create_key(name, kind)?;
    }
    let key = vault
        .key(name)
        .ok_or_else(|| StoreError::Invalid(format!("vault key {name} vanished")))?;
    if key.kind != kind {
        return Err(StoreError::Invalid(format!(
            "vault key {name} is a {} key; this needs a {} key",
            key.kind.as_str(),
            kind.as_str()
        )));
    }
    if key.service.is_none() && key.latest_enabled().is_none() {
        return Err(StoreError::Invalid(format!(
            "vault key {name} has no enabled version"
        )));
    }
    Ok(())
}

/// The newest enabled version of `name`, a key held in the vault file (the
/// config's auth key).
fn local_ref(vault: &Vault, name: &str) -> Result<KeyRef, StoreError> {
    let v = vault
        .key(name)
        .and_then(|k| k.latest_enabled())
        .ok_or_else(|| StoreError::Invalid(format!("vault key {name} has no enabled version")))?;
    Ok(KeyRef {
        name: name.to_string(),
        version: v.version,
    })
}

/// The material of a key version held in the vault file, enabled or not:
/// the config's tag key (the config stays readable while keys are disabled,
/// so that revoked disks can be named).
pub(crate) fn stored_material<'v>(
    vault: &'v Vault,
    store: &Path,
    key: &KeyRef,
) -> Result<&'v Key32, StoreError> {
    vault
        .key(&key.name)
        .and_then(|k| k.version(key.version))
        .map(|v| v.material())
        .ok_or_else(|| StoreError::MissingKey {
            store: store.to_path_buf(),
            key: key.name.clone(),
            version: key.version,
        })
}

/// Why `disk` must be refused now: the first key version it depends on
/// that its holder refuses (disabled or missing in the vault, refused by
/// the key service) or that cannot be asked.
pub fn disk_revoked(d: &DiskConfig, vault: &Vault) -> Option<String> {
    d.layers.iter().find_map(|w| {
        let h = match custody::holder(vault, &w.key.name) {
            Ok(h) => h,
            Err(e) => return Some(format!("disk {} is unavailable: {e}", d.name)),
        };
        match h.check(&[w.key.version], crate::kms::DEFAULT_TIMEOUT) {
            Ok(v) => v
                .into_iter()
                .flatten()
                .next()
                .map(|why| format!("disk {} is unavailable: {why}", d.name)),
            Err(e) => Some(format!("disk {} is unavailable: {e}", d.name)),
        }
    })
}

/// Creates a new DEK for `layer` of `disk`, wrapped by the newest usable
/// version of vault key `key`.
pub fn new_wrapped_dek(
    vault: &Vault,
    store: &Path,
    store_id: &str,
    disk: &str,
    layer: Layer,
    key: &str,
    generation: u32,
) -> Result<WrappedDek, StoreError> {
    let holder =
        custody::holder(vault, key).map_err(|e| StoreError::custody(store, disk, layer, e))?;
    let dek = Key64::random();
    let at = Binding {
        store_id,
        disk,
        layer,
        generation,
    };
    let (version, wrapped) = holder
        .wrap(&dek, &at)
        .map_err(|e| StoreError::custody(store, disk, layer, e))?;
    Ok(WrappedDek {
        layer,
        key: KeyRef {
            name: key.to_string(),
            version,
        },
        generation,
        wrapped,
    })
}

/// The key material that tags `config` (its `auth_key`'s version).
pub fn config_material(store: &Path, config: &Config, vault: &Vault) -> Result<Key32, StoreError> {
    stored_material(vault, store, &config.auth_key).map(Key32::duplicate)
}

/// Writes the config (new generation, new tag) so that no older one is
/// accepted after any crash: staged first, then its generation recorded in
/// the vault, then put in place (see [`config`]).
pub(crate) fn save_config(
    store: &Path,
    config: &mut Config,
    vault: &mut Vault,
) -> Result<(), StoreError> {
    let material = stored_material(vault, store, &config.auth_key)?.duplicate();
    // A write a crash interrupted after the vault recorded it is finished
    // first: staging over it would lose the only copy of the config the
    // vault expects.
    finish_pending(store, vault)?;
    config.stage(store, &material)?;
    crate::faults::crash_point("config-staged");
    vault.set_store_generation(&config.store_id, config.generation);
    vault.save()?;
    crate::faults::crash_point("config-generation-recorded");
    Config::install_staged(store)?;
    Ok(())
}

/// The pipeline of a disk, snapshot or image from its unwrapped keys,
/// salted with the store id and the name of the disk it belongs to.
pub fn disk_pipeline(
    store_id: &str,
    disk: &str,
    keys: &DiskKeys,
) -> std::sync::Arc<crate::layers::Pipeline> {
    let salt = format!("{store_id}\0{disk}");
    std::sync::Arc::new(crate::layers::Pipeline::new(keys, salt.as_bytes()))
}

/// Every strata mount of this machine as (mountpoint, store), from the
/// system's mount table: a strata mount is a FUSE mount whose source is
/// `strata:<absolute store path>`.
pub fn strata_mounts() -> Vec<(PathBuf, PathBuf)> {
    crate::platform::mounts()
        .into_iter()
        .filter(|m| m.fuse)
        .filter_map(|m| {
            let store = m.source.strip_prefix("strata:")?;
            Some((m.point, PathBuf::from(store)))
        })
        .collect()
}

impl From<crate::backing::walk::WalkError> for StoreError {
    fn from(e: crate::backing::walk::WalkError) -> Self {
        StoreError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Path of a disk's backing root.
pub fn disk_root(store: &Path, disk: &str) -> PathBuf {
    store.join("disks").join(disk)
}

/// Creates the store directory with mode 0700 (or sets an existing, empty
/// one to it): only its owner, the daemon's user, reads the backing files.
/// `--allow-other` lets other users through the mount, not into the store.
fn make_store_dir(store: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(store) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && store.is_dir() => {}
        Err(e) => return Err(io(store)(e)),
    }
    std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o700)).map_err(io(store))
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The preset.
    pub preset: Preset,
    /// Region label of the store.
    pub region: String,
    /// Overrides the preset's host encryption.
    pub host: Option<bool>,
    /// PMK rotation age.
    pub pmk_rotation_days: u32,
    /// The customer key of the storage CMK layer (and of the preset's
    /// scope) instead of the preset's (`cmk`, `fleet-cmk`, `max-cmk`).
    pub cmk: Option<String>,
}

/// Creates a new store at `store` bound to `vault`, creating the vault keys
/// the preset needs. Returns the written config.
pub fn init(store: &Path, vault: &mut Vault, opts: &InitOptions) -> Result<Config, StoreError> {
    if let Ok(mut entries) = std::fs::read_dir(store) {
        if entries.next().is_some() {
            return Err(StoreError::Exists(store.to_path_buf()));
        }
    }
    let plan = opts.preset.plan();
    let host = opts.host.unwrap_or(plan.host);
    if plan.guest && vault.region() != opts.region {
        return Err(StoreError::Invalid(format!(
            "the guest layer's key vault must be in the store's region: vault {} is in region {}, the store would be in {}",
            vault.path().display(),
            vault.region(),
            opts.region
        )));
    }
    let store_id = hex::encode(random_array::<16>());
    ensure_key(vault, "platform", KeyKind::Platform)?;
    let auth_key = local_ref(vault, "platform")?;
    let cmk: String = match (&opts.cmk, &plan.scope) {
        (Some(k), _) => k.clone(),
        (None, Some((_, k))) => k.to_string(),
        (None, None) => plan.cmk.to_string(),
    };
    let mut scopes = Vec::new();
    if let Some((scope, _)) = &plan.scope {
        ensure_key(vault, &cmk, KeyKind::Customer)?;
        scopes.push(Scope {
            name: scope.to_string(),
            key: cmk.clone(),
        });
    }
    let mut disks = Vec::new();
    for (name, kind) in [
        ("os", DiskKind::Os),
        ("data", DiskKind::Data),
        ("temp", DiskKind::Temp),
    ] {
        let mut layers = Vec::new();
        let (guest, storage) = if kind == DiskKind::Temp {
            (false, StorageMode::None)
        } else {
            (plan.guest, plan.storage)
        };
        if guest {
            ensure_key(vault, plan.guest_key, KeyKind::Customer)?;
            layers.push(new_wrapped_dek(
                vault,
                store,
                &store_id,
                name,
                Layer::Guest,
                plan.guest_key,
                1,
            )?);
        }
        if host && kind != DiskKind::Temp {
            ensure_key(vault, "host", KeyKind::Host)?;
            layers.push(new_wrapped_dek(
                vault,
                store,
                &store_id,
                name,
                Layer::Host,
                "host",
                1,
            )?);
        }
        if matches!(storage, StorageMode::Customer | StorageMode::Double) {
            ensure_key(vault, &cmk, KeyKind::Customer)?;
            layers.push(new_wrapped_dek(
                vault,
                store,
                &store_id,
                name,
                Layer::StorageCmk,
                &cmk,
                1,
            )?);
        }
        if matches!(storage, StorageMode::Platform | StorageMode::Double) {
            ensure_key(vault, "platform", KeyKind::Platform)?;
            layers.push(new_wrapped_dek(
                vault,
                store,
                &store_id,
                name,
                Layer::StoragePmk,
                "platform",
                1,
            )?);
        }
        disks.push(DiskConfig {
            name: name.to_string(),
            kind,
            created: now(),
            scope: if kind == DiskKind::Temp {
                None
            } else {
                plan.scope.as_ref().map(|(s, _)| s.to_string())
            },
            storage,
            guest,
            layers,
            pending: None,
        });
    }
    let mut config = Config {
        format: config::STORE_FORMAT,
        store_id,
        region: opts.region.clone(),
        vault_id: hex::encode(vault.id()),
        host_encryption: host,
        generation: 0,
        pmk_rotation_days: opts.pmk_rotation_days,
        auth_key: auth_key.clone(),
        scopes,
        disks,
        snapshots: Vec::new(),
        images: Vec::new(),
        tag: String::new(),
    };
    make_store_dir(store)?;
    for d in &config.disks {
        let root = disk_root(store, &d.name);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        if d.kind != DiskKind::Temp {
            write_dirid(&root).map_err(io(&root))?;
        }
    }
    save_config(store, &mut config, vault)?;
    Ok(config)
}

/// An opened store: its config and, per disk, the unwrapped keys or why
/// they are unavailable.
pub struct OpenStore {
    /// Store directory.
    pub path: PathBuf,
    /// Its authenticated config.
    pub config: Config,
    /// Per disk (in config order): keys, or the reason the disk is refused.
    pub disks: Vec<(DiskConfig, Result<DiskKeys, StoreError>)>,
    /// Per snapshot (in config order): keys, or the reason it is refused.
    pub snapshots: Vec<(SnapshotConfig, Result<DiskKeys, StoreError>)>,
}

/// Checks that `config` belongs to `vault`, carries a valid tag and is not
/// older than the newest generation the vault has seen (no rollback).
pub fn authenticate(store: &Path, config: &Config, vault: &Vault) -> Result<(), StoreError> {
    let vid = hex::encode(vault.id());
    if config.vault_id != vid {
        return Err(StoreError::OtherVault {
            store: store.to_path_buf(),
            expected: config.vault_id.clone(),
            vault: vault.path().to_path_buf(),
            found: vid,
        });
    }
    config.verify(store, stored_material(vault, store, &config.auth_key)?)?;
    let expected = vault.store_generation(&config.store_id);
    if config.generation < expected {
        return Err(ConfigError::RolledBack {
            path: Config::path(store),
            found: config.generation,
            expected,
        }
        .into());
    }
    Ok(())
}

/// Reads the config of `store` and authenticates it with `vault`. When
/// `strata.conf` is one step behind the vault's record because a write was
/// interrupted after the vault recorded it, the staged config of exactly
/// that generation is the current one (see [`config`]).
pub fn read_authenticated(store: &Path, vault: &Vault) -> Result<Config, StoreError> {
    let config = Config::read(store)?;
    match authenticate(store, &config, vault) {
        Ok(()) => Ok(config),
        Err(StoreError::Config(ConfigError::RolledBack { expected, .. })) => {
            match Config::read_staged(store) {
                Ok(Some(staged))
                    if staged.generation == expected
                        && authenticate(store, &staged, vault).is_ok() =>
                {
                    Ok(staged)
                }
                _ => authenticate(store, &config, vault).map(|()| config),
            }
        }
        Err(e) => Err(e),
    }
}

/// Finishes a config write that a crash interrupted after the vault
/// recorded it (see [`config`]): puts the staged config in place. Only for
/// the holder of the store's lock. Returns whether there was one.
pub fn finish_interrupted_write(
    store: &Path,
    vault: &Vault,
    _lock: &StoreLock,
) -> Result<bool, StoreError> {
    finish_pending(store, vault)
}

fn finish_pending(store: &Path, vault: &Vault) -> Result<bool, StoreError> {
    let on_disk = match Config::read(store) {
        Ok(c) => c,
        // A new store (init) has nothing to finish.
        Err(ConfigError::NotAStore(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let current = read_authenticated(store, vault)?;
    if current.generation == on_disk.generation {
        return Ok(false);
    }
    Config::install_staged(store)?;
    Ok(true)
}

/// Reads, authenticates and unlocks a store with `vault`. Each distinct
/// wrapped DEK is unwrapped once (a snapshot taken since the last rekey
/// shares its disk's), so a key service sees one decrypt per disk and layer.
pub fn open(store: &Path, vault: &Vault) -> Result<OpenStore, StoreError> {
    let config = read_authenticated(store, vault)?;
    let mut memo = Unwrapper::default();
    let mut disks = Vec::new();
    for d in &config.disks {
        let keys = memo.unlock(store, &config, d, &d.layers, vault);
        disks.push((d.clone(), keys));
    }
    let snapshots = config
        .snapshots
        .iter()
        .map(|s| {
            let keys = memo.unlock(store, &config, &s.source, &s.source.layers, vault);
            (s.clone(), keys)
        })
        .collect();
    Ok(OpenStore {
        path: store.to_path_buf(),
        config,
        disks,
        snapshots,
    })
}

/// Unwraps DEKs through their holders, remembering each one it unwrapped
/// (by key, version, wrapped value and binding) for the life of one opening.
#[derive(Default)]
pub struct Unwrapper {
    seen: std::collections::HashMap<String, Key64>,
}

impl Unwrapper {
    /// Unwraps `layers` (a disk's own, or those of a pending
    /// re-encryption) of disk `d` into its keys. The first layer whose
    /// holder refuses or cannot be asked decides the error; nothing is
    /// unwrapped after it.
    pub fn unlock(
        &mut self,
        store: &Path,
        config: &Config,
        d: &DiskConfig,
        layers: &[WrappedDek],
        vault: &Vault,
    ) -> Result<DiskKeys, StoreError> {
        let mut keys = DiskKeys::default();
        for w in layers {
            let at = Binding {
                store_id: &config.store_id,
                disk: &d.name,
                layer: w.layer,
                generation: w.generation,
            };
            let id = format!(
                "{}\0{}\0{}\0{}",
                w.key.name,
                w.key.version,
                w.wrapped,
                String::from_utf8_lossy(&at.context(&w.key.name))
            );
            let dek = match self.seen.get(&id) {
                Some(k) => k.duplicate(),
                None => {
                    let err = |e| StoreError::custody(store, &d.name, w.layer, e);
                    let holder = custody::holder(vault, &w.key.name).map_err(err)?;
                    let dek = holder
                        .unwrap(w.key.version, &w.wrapped, &at)
                        .map_err(|e| StoreError::custody(store, &d.name, w.layer, e))?;
                    self.seen.insert(id, dek.duplicate());
                    dek
                }
            };
            keys.set(w.layer, dek, w.generation);
        }
        if d.kind == DiskKind::Temp && config.host_encryption {
            // The temp disk's host key exists only in this process's memory.
            keys.set(Layer::Host, Key64::random(), 1);
        }
        Ok(keys)
    }
}

/// Unwraps `layers` (a disk's own, or those of a pending re-encryption) into
/// the disk's keys, through their holders.
pub fn unlock_layers(
    store: &Path,
    config: &Config,
    d: &DiskConfig,
    layers: &[WrappedDek],
    vault: &Vault,
) -> Result<DiskKeys, StoreError> {
    Unwrapper::default().unlock(store, config, d, layers, vault)
}
