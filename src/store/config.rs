//! `strata.conf`: the store's authenticated configuration.
//!
//! JSON, written atomically with the previous version kept as
//! `strata.conf.bak`. The `tag` field is a keyed BLAKE3 over the compact JSON
//! of every other field, under a key derived from a vault key (`auth_key`),
//! so any edit that drops a layer, flips host encryption or points at another
//! key is refused at mount as tampering. `generation` is bumped at every
//! write and recorded in the vault, so rolling the file back to an older copy
//! is refused too.
//!
//! A write has three steps, so that no crash leaves a window in which an
//! older config is accepted: the new config is staged durably as
//! `strata.conf.next` ([`Config::stage`]), the vault records its generation,
//! and only then does it replace `strata.conf` ([`Config::install_staged`]).
//! A crash before the vault's record leaves the old config in force (the
//! staged one is ignored and overwritten by the next write); a crash after
//! it leaves `strata.conf` one generation behind the vault with the staged
//! config beside it, which `store::read_authenticated` takes as the current
//! one (it is the write the crash interrupted: tagged, and of exactly the
//! generation the vault recorded).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::kdf::derive;
use crate::crypto::tag;
use crate::crypto::Key32;
use crate::layers::Layer;

/// The newest store (config) format: 2 adds snapshots and images to 1;
/// 3 adds backing-file headers of version 2 (write windows, hole ranges)
/// and a header in every backing file from its creation, so that an empty
/// backing file is damage; 4 adds size attributes on backing files (see
/// `format::size_attr`) and a trust id in the session record, which older
/// strata would not know to leave alone (a rekey would refuse the
/// attribute as an xattr that does not decrypt). Backing files carry their
/// own header version (`format::FORMAT_VERSION`).
pub const STORE_FORMAT: u16 = 4;

/// The first store format in which every backing file of a disk has a
/// header from its creation.
pub const HEADERS_AT_CREATE: u16 = 3;

/// The first store format whose backing files may carry size attributes.
pub const SIZE_ATTRS: u16 = 4;

/// File name of the config inside a store.
pub const CONFIG_NAME: &str = "strata.conf";
/// File name of a config staged for writing (see the module documentation).
pub const STAGED_NAME: &str = "strata.conf.next";

/// The kind of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskKind {
    /// The OS disk.
    Os,
    /// A data disk.
    Data,
    /// The temp disk: emptied at every mount, host layer only.
    Temp,
}

impl std::fmt::Display for DiskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            DiskKind::Os => "os",
            DiskKind::Data => "data",
            DiskKind::Temp => "temp",
        })
    }
}

/// How the storage layer is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// Platform-managed key (one pass).
    Platform,
    /// Customer-managed key (one pass).
    Customer,
    /// Double encryption: a CMK pass and a PMK pass.
    Double,
    /// No storage layer (temp disks only).
    None,
}

/// A reference to one version of a vault key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// Vault key name.
    pub name: String,
    /// Version of that key.
    pub version: u32,
}

/// One layer's DEK, wrapped by a vault key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedDek {
    /// Which layer.
    pub layer: Layer,
    /// The vault key (name and version) that wraps it.
    pub key: KeyRef,
    /// The DEK's generation (bumped by re-keying the layer).
    pub generation: u32,
    /// nonce (24) ‖ XChaCha20-Poly1305 ciphertext of the 64-byte DEK, hex.
    pub wrapped: String,
}

/// One disk of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Directory name in the mount and under `disks/`.
    pub name: String,
    /// Kind.
    pub kind: DiskKind,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Scope the disk belongs to.
    pub scope: Option<String>,
    /// Storage-layer keying.
    pub storage: StorageMode,
    /// Whether the guest layer is on.
    pub guest: bool,
    /// The wrapped DEKs of every persistent layer. A temp disk's host key is
    /// made fresh at every mount and never stored.
    pub layers: Vec<WrappedDek>,
    /// An unfinished re-encryption: the new wrapped DEKs of the layers being
    /// re-keyed or added. The disk is refused until `strata disk rekey` (or
    /// `disk encrypt`) finishes; the old DEKs are retired only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<WrappedDek>>,
}

/// A scope: one customer key bound to a group of disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Scope name.
    pub name: String,
    /// The customer key bound to it.
    pub key: String,
}

/// A snapshot of a disk: its backing tree under `snapshots/<disk>/<name>/`
/// and the disk's config (layers, wrapped DEKs) as it stood then. The keys
/// go with it: a later rekey of the disk leaves the snapshot readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Snapshot name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// The disk's config at the snapshot (its `name` is the disk's, which
    /// the DEKs' wrapping and the derived keys are bound to).
    pub source: DiskConfig,
}

/// An image: a disk's (or a snapshot's) tree under `images/<name>/` with
/// the keys it was written with. Disks made from it get their own DEKs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Image name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// What it was made from: `DISK` or `DISK@SNAPSHOT`.
    pub from: String,
    /// The source disk's config at that time.
    pub source: DiskConfig,
}

/// The whole config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Store format version.
    pub format: u16,
    /// Random store id, hex.
    pub store_id: String,
    /// Region label.
    pub region: String,
    /// Id of the vault the store is bound to, hex.
    pub vault_id: String,
    /// Host encryption, fixed at init.
    pub host_encryption: bool,
    /// Bumped at every write; the vault records the newest.
    pub generation: u64,
    /// Age after which platform keys rotate.
    pub pmk_rotation_days: u32,
    /// The vault key whose derived key tags this config.
    pub auth_key: KeyRef,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Disks.
    pub disks: Vec<DiskConfig>,
    /// Snapshots (store format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotConfig>,
    /// Images (store format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageConfig>,
    /// Keyed BLAKE3 of the compact JSON of the config with this field empty.
    pub tag: String,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No config file: not a store.
    #[error("{0} is not a strata store (no {CONFIG_NAME})")]
    NotAStore(PathBuf),
    /// Unparseable.
    #[error("{path}: config is damaged: {what}")]
    Corrupt {
        /// Config path.
        path: PathBuf,
        /// Parser message.
        what: String,
    },
    /// Written by a newer strata.
    #[error("{path}: store has format version {version}; this strata reads up to {STORE_FORMAT}")]
    NewerFormat {
        /// Config path.
        path: PathBuf,
        /// Its version.
        version: u64,
    },
    /// The tag does not match.
    #[error("{0}: config failed its authentication tag: it was tampered with or damaged; refusing to use it")]
    Tampered(PathBuf),
    /// Older than the vault's record.
    #[error("{path}: config generation {found} is older than the vault's record {expected}: it was rolled back (tampered); refusing to use it")]
    RolledBack {
        /// Config path.
        path: PathBuf,
        /// Generation found.
        found: u64,
        /// Generation the vault recorded.
        expected: u64,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
}

/// Largest config read (thousands of snapshots fit well below it).
const MAX_CONFIG: usize = 64 << 20;

/// Reads the config file `name` of `store`: only a regular file of bounded
/// size, never through a symlink, so that a FIFO or a device planted in its
/// place neither hangs a command nor exhausts its memory.
fn read_store_file(store: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    crate::backing::Dir::open(store)?.read_small(std::ffi::OsStr::new(name), MAX_CONFIG)
}

impl Config {
    /// Path of the config in `store`.
    pub fn path(store: &Path) -> PathBuf {
        store.join(CONFIG_NAME)
    }

    /// Reads and parses the config (not yet authenticated).
    pub fn read(store: &Path) -> Result<Config, ConfigError> {
        let path = Self::path(store);
        let text = match read_store_file(store, CONFIG_NAME) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotAStore(store.to_path_buf()))
            }
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::parse(path, &text)
    }

    /// Reads and parses the staged config, if there is one (not yet
    /// authenticated).
    pub fn read_staged(store: &Path) -> Result<Option<Config>, ConfigError> {
        let path = store.join(STAGED_NAME);
        match read_store_file(store, STAGED_NAME) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Io { path, source }),
        }
    }

    fn parse(path: PathBuf, text: &[u8]) -> Result<Config, ConfigError> {
        let corrupt = |e: serde_json::Error| ConfigError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        };
        // Look at the version first so that a newer format is named as such
        // rather than as a parse error.
        let value: serde_json::Value = serde_json::from_slice(text).map_err(corrupt)?;
        match value.get("format").and_then(|v| v.as_u64()) {
            Some(v) if v > u64::from(STORE_FORMAT) => {
                return Err(ConfigError::NewerFormat { path, version: v })
            }
            Some(v) if v >= 1 => {}
            _ => {
                return Err(ConfigError::Corrupt {
                    path,
                    what: "missing or invalid \"format\"".into(),
                })
            }
        }
        serde_json::from_value(value).map_err(corrupt)
    }

    fn auth_key(material: &Key32, store_id: &str) -> Key32 {
        derive(
            &[material.expose()],
            store_id.as_bytes(),
            b"strata config tag v1",
        )
    }

    fn body_tag(&self, material: &Key32) -> String {
        let mut copy = self.clone();
        copy.tag.clear();
        // Serializing plain data structures cannot fail.
        let body = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(tag::tag(
            &Self::auth_key(material, &self.store_id),
            b"strata config v1",
            &[&body],
        ))
    }

    /// Checks the tag with the auth key's material.
    pub fn verify(&self, store: &Path, material: &Key32) -> Result<(), ConfigError> {
        let expected = self.body_tag(material);
        if tag::ct_eq(expected.as_bytes(), self.tag.as_bytes()) {
            Ok(())
        } else {
            Err(ConfigError::Tampered(Self::path(store)))
        }
    }

    /// Bumps the generation, re-tags the config and writes it durably as
    /// the staged config `strata.conf.next`; `strata.conf` is untouched
    /// until [`Config::install_staged`].
    pub fn stage(&mut self, store: &Path, material: &Key32) -> Result<(), ConfigError> {
        self.generation += 1;
        // Format 2 only adds snapshots and images: a format 1 store without
        // them is still written as format 1, which older strata read. From
        // format 3 on (backing headers of version 2) it stays what it is.
        self.format = if self.format >= HEADERS_AT_CREATE {
            self.format
        } else if self.snapshots.is_empty() && self.images.is_empty() {
            self.format.min(1)
        } else {
            2
        };
        self.tag = self.body_tag(material);
        let path = store.join(STAGED_NAME);
        let text = serde_json::to_string_pretty(self).map_err(|e| ConfigError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        crate::store::atomic_write(&path, format!("{text}\n").as_bytes())
            .map_err(|source| ConfigError::Io { path, source })
    }

    /// Puts the staged config in place: the current `strata.conf` is kept as
    /// `strata.conf.bak`, then the staged file is renamed over it and the
    /// directory fsynced.
    pub fn install_staged(store: &Path) -> Result<(), ConfigError> {
        let path = Self::path(store);
        let staged = store.join(STAGED_NAME);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConfigError::Io { path, source }
        };
        match read_store_file(store, CONFIG_NAME) {
            Ok(old) => crate::store::atomic_write(&store.join(format!("{CONFIG_NAME}.bak")), &old)
                .map_err(io(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        std::fs::rename(&staged, &path).map_err(io(&staged))?;
        std::fs::File::open(store)
            .and_then(|d| crate::platform::sync_all(&d))
            .map_err(io(store))
    }

    /// The disk named `name`.
    pub fn disk(&self, name: &str) -> Option<&DiskConfig> {
        self.disks.iter().find(|d| d.name == name)
    }

    /// Snapshot `name` of disk `disk`.
    pub fn snapshot(&self, disk: &str, name: &str) -> Option<&SnapshotConfig> {
        self.snapshots
            .iter()
            .find(|s| s.source.name == disk && s.name == name)
    }

    /// Image `name`.
    pub fn image(&self, name: &str) -> Option<&ImageConfig> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Every set of wrapped DEKs the config holds: disks, snapshots and
    /// images (each with the disk name its wrapping is bound to).
    pub fn all_key_holders_mut(&mut self) -> impl Iterator<Item = &mut DiskConfig> {
        self.disks.iter_mut().chain(
            self.snapshots
                .iter_mut()
                .map(|s| &mut s.source)
                .chain(self.images.iter_mut().map(|i| &mut i.source)),
        )
    }
}
