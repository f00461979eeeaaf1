//! Adding disks and scopes to an existing store, with the cloud's rules:
//! the guest layer never covers temp disks, temp never gets a storage layer
//! (it never leaves the host), host encryption is fixed at init, and a vault
//! key belongs to at most one scope.

use std::path::Path;

use super::{
    disk_root, ensure_key, new_wrapped_dek, DiskConfig, DiskKind, Scope, StorageMode, StoreError,
};
use crate::layers::Layer;
use crate::vault::{KeyKind, Vault};

/// How the storage layer of a new disk is keyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// Platform-managed key.
    Platform,
    /// Customer-managed key.
    Customer(String),
    /// CMK pass then PMK pass.
    Double(String),
}

impl std::str::FromStr for Sse {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "platform" => Ok(Sse::Platform),
            Some(("customer", k)) if !k.is_empty() => Ok(Sse::Customer(k.to_string())),
            Some(("double", k)) if !k.is_empty() => Ok(Sse::Double(k.to_string())),
            _ => Err(format!(
                "expected platform, customer:KEY or double:KEY, got {s}"
            )),
        }
    }
}

/// What a new disk gets.
#[derive(Debug, Clone)]
pub struct NewDisk {
    /// Name (directory in the mount).
    pub name: String,
    /// Kind: data or temp.
    pub kind: DiskKind,
    /// Guest layer, keyed by this vault key (`None`: no guest layer).
    pub guest_key: Option<String>,
    /// Storage keying (`None`: platform, or the scope's key in a scope).
    pub sse: Option<Sse>,
    /// Scope.
    pub scope: Option<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Adds a disk to the store (offline: the caller holds the store's lock).
pub fn add_disk(store: &Path, vault: &mut Vault, new: &NewDisk) -> Result<DiskConfig, StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    let invalid = |m: String| Err(StoreError::Invalid(m));
    if !valid_name(&new.name) {
        return invalid(format!(
            "disk name {:?}: use 1 to 64 letters, digits, '-' or '_'",
            new.name
        ));
    }
    if config.disk(&new.name).is_some() {
        return invalid(format!(
            "store {} already has a disk named {}",
            store.display(),
            new.name
        ));
    }
    match new.kind {
        DiskKind::Os => {
            return invalid("a store has one OS disk, made at init; add data or temp disks".into())
        }
        DiskKind::Temp if new.guest_key.is_some() => {
            return invalid(
                "the guest layer never covers temp disks (ADE encrypts OS and data disks only)"
                    .into(),
            )
        }
        DiskKind::Temp if new.sse.is_some() || new.scope.is_some() => {
            return invalid(
                "a temp disk never leaves the host: it has no storage layer and no scope".into(),
            )
        }
        _ => {}
    }
    if new.guest_key.is_some() && vault.region() != config.region {
        return invalid(format!(
            "the guest layer's key vault must be in the store's region: vault {} is in region {}, the store in {}",
            vault.path().display(),
            vault.region(),
            config.region
        ));
    }
    let scope_key = match &new.scope {
        Some(s) => match config.scopes.iter().find(|x| &x.name == s) {
            Some(x) => Some(x.key.clone()),
            None => {
                return invalid(format!(
                    "store {} has no scope {s} (create it with `strata scope create`)",
                    store.display()
                ))
            }
        },
        None => None,
    };
    let sse = match (&new.sse, &scope_key) {
        (None, Some(k)) => Sse::Customer(k.clone()),
        (None, None) => Sse::Platform,
        (Some(Sse::Platform), Some(k)) => {
            return invalid(format!(
                "disks in a scope use its customer key {k}; drop --sse or use customer:{k}"
            ))
        }
        (Some(Sse::Customer(k) | Sse::Double(k)), Some(sk)) if k != sk => {
            return invalid(format!(
                "disks in this scope must use its key {sk}, not {k}"
            ))
        }
        (Some(s), _) => s.clone(),
    };
    let mut layers = Vec::new();
    let id = config.store_id.clone();
    if let Some(k) = &new.guest_key {
        ensure_key(vault, k, KeyKind::Customer)?;
        layers.push(new_wrapped_dek(
            vault,
            store,
            &id,
            &new.name,
            Layer::Guest,
            k,
            1,
        )?);
    }
    if config.host_encryption && new.kind != DiskKind::Temp {
        ensure_key(vault, "host", KeyKind::Host)?;
        layers.push(new_wrapped_dek(
            vault,
            store,
            &id,
            &new.name,
            Layer::Host,
            "host",
            1,
        )?);
    }
    let storage = if new.kind == DiskKind::Temp {
        StorageMode::None
    } else {
        match &sse {
            Sse::Platform => StorageMode::Platform,
            Sse::Customer(_) => StorageMode::Customer,
            Sse::Double(_) => StorageMode::Double,
        }
    };
    if let (Sse::Customer(k) | Sse::Double(k), false) = (&sse, new.kind == DiskKind::Temp) {
        if let Some(other) = config
            .scopes
            .iter()
            .find(|s| &s.key == k && Some(&s.name) != new.scope.as_ref())
        {
            return invalid(format!(
                "vault key {k} is bound to scope {}; give --scope {} or another key",
                other.name, other.name
            ));
        }
        ensure_key(vault, k, KeyKind::Customer)?;
        layers.push(new_wrapped_dek(
            vault,
            store,
            &id,
            &new.name,
            Layer::StorageCmk,
            k,
            1,
        )?);
    }
    if matches!(storage, StorageMode::Platform | StorageMode::Double) {
        ensure_key(vault, "platform", KeyKind::Platform)?;
        layers.push(new_wrapped_dek(
            vault,
            store,
            &id,
            &new.name,
            Layer::StoragePmk,
            "platform",
            1,
        )?);
    }
    let disk = DiskConfig {
        name: new.name.clone(),
        kind: new.kind,
        created: super::now(),
        scope: new.scope.clone(),
        storage,
        guest: new.guest_key.is_some(),
        layers,
        pending: None,
    };
    let root = disk_root(store, &new.name);
    std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
        path: root.clone(),
        source,
    })?;
    if new.kind != DiskKind::Temp {
        crate::backing::write_dirid(&root).map_err(|source| StoreError::Io {
            path: root.clone(),
            source,
        })?;
    }
    config.disks.push(disk.clone());
    super::save_config(store, &mut config, vault)?;
    Ok(disk)
}

/// Creates a scope bound to customer key `key` (created if missing).
pub fn create_scope(
    store: &Path,
    vault: &mut Vault,
    name: &str,
    key: &str,
) -> Result<Scope, StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    if !valid_name(name) {
        return Err(StoreError::Invalid(format!(
            "scope name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    if config.scopes.iter().any(|s| s.name == name) {
        return Err(StoreError::Invalid(format!(
            "store {} already has a scope named {name}",
            store.display()
        )));
    }
    if let Some(other) = config.scopes.iter().find(|s| s.key == key) {
        return Err(StoreError::Invalid(format!(
            "vault key {key} is already bound to scope {}: a key belongs to at most one scope",
            other.name
        )));
    }
    match vault.key(key).map(|k| k.kind) {
        Some(KeyKind::Customer) | None => {}
        Some(kind) => {
            return Err(StoreError::Invalid(format!(
                "vault key {key} is a {} key; a scope takes a customer-managed key",
                kind.as_str()
            )))
        }
    }
    ensure_key(vault, key, KeyKind::Customer)?;
    let scope = Scope {
        name: name.to_string(),
        key: key.to_string(),
    };
    config.scopes.push(scope.clone());
    super::save_config(store, &mut config, vault)?;
    Ok(scope)
}
