//! Key rotation without rewriting data: when a vault key gets a new
//! version, every DEK it wraps is unwrapped with the old version and wrapped
//! again with the new one, and the config is re-tagged; no backing block
//! changes. Platform keys rotate by age (`pmk_rotation_days`), customer keys
//! by the rotation policy they carry in the vault.

use std::collections::HashMap;
use std::path::Path;

use super::{Config, KeyRef, StoreError};
use crate::custody::{self, Binding};
use crate::layers::Layer;
use crate::vault::{KeyKind, Vault};

const DAY: u64 = 86_400;

/// The newest enabled version of `name`, a key held in the vault file, if
/// newer than `current`.
fn newer_local(vault: &Vault, name: &str, current: u32) -> Option<u32> {
    let v = vault.key(name)?.latest_enabled()?.version;
    (v > current).then_some(v)
}

fn version_enabled(vault: &Vault, key: &KeyRef) -> bool {
    vault
        .key(&key.name)
        .and_then(|k| k.version(key.version))
        .is_some_and(|v| v.enabled)
}

/// Rewraps every DEK of the store (disks, snapshots, images) whose key has
/// a newer usable version — in the vault file, or in the key service that
/// holds it — and moves the config's auth key to its newest version. A DEK
/// whose version its holder refuses stays as it is (a revoked disk stays
/// revoked). Writes the config (and records its generation in the vault)
/// only if something changed. Returns one line per change. A key service
/// that cannot be asked fails the rewrap, naming it.
pub fn rewrap(store: &Path, vault: &mut Vault) -> Result<Vec<String>, StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    let mut changes = Vec::new();
    let store_id = config.store_id.clone();
    // The newest version of each key, asked once (None: the holder refuses
    // new wraps, or the key is missing: nothing moves).
    let mut newest: HashMap<String, Option<u32>> = HashMap::new();
    for d in config.all_key_holders_mut() {
        for w in d.layers.iter_mut() {
            let err = |e| StoreError::custody(store, &d.name, w.layer, e);
            let Ok(holder) = custody::holder(vault, &w.key.name) else {
                continue;
            };
            let n = match newest.get(&w.key.name) {
                Some(n) => *n,
                None => {
                    let n = match holder.newest() {
                        Ok(n) => Some(n),
                        Err(e) if e.is_unreachable() => return Err(err(e)),
                        Err(_) => None,
                    };
                    newest.insert(w.key.name.clone(), n);
                    n
                }
            };
            if n.is_none_or(|n| n <= w.key.version) {
                continue;
            }
            let at = Binding {
                store_id: &store_id,
                disk: &d.name,
                layer: w.layer,
                generation: w.generation,
            };
            let (v, wrapped) = match holder.rewrap(w.key.version, &w.wrapped, &at) {
                Ok(x) => x,
                // A DEK wrapped by a refused version cannot be unwrapped (in
                // the vault as in a service): a revoked disk stays revoked.
                Err(e) if e.is_refusal() => continue,
                Err(e) => return Err(err(e)),
            };
            changes.push(format!(
                "disk {}: {} key rewrapped from {} version {} to version {v}",
                d.name,
                w.layer.name(),
                w.key.name,
                w.key.version
            ));
            w.key.version = v;
            w.wrapped = wrapped;
        }
    }
    if let Some(v) = newer_local(vault, &config.auth_key.name, config.auth_key.version)
        .filter(|_| version_enabled(vault, &config.auth_key))
    {
        changes.push(format!(
            "config now tagged with {} version {v}",
            config.auth_key.name
        ));
        config.auth_key.version = v;
    }
    if !changes.is_empty() {
        super::save_config(store, &mut config, vault)?;
    }
    Ok(changes)
}

/// The vault keys this store uses that are due for rotation: platform keys
/// older than the store's `pmk_rotation_days`, customer keys older than
/// their own policy.
pub fn due(config: &Config, vault: &Vault) -> Vec<(String, u64)> {
    let mut names: Vec<&str> = config
        .disks
        .iter()
        .flat_map(|d| d.layers.iter().map(|w| w.key.name.as_str()))
        .collect();
    names.push(config.auth_key.name.as_str());
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let Some(k) = vault.key(name) else { continue };
        // A key service rotates its keys by its own period; its DEKs move
        // to the newest version at every rewrap.
        if k.service.is_some() {
            continue;
        }
        let Some(latest) = k.latest_enabled() else {
            continue;
        };
        let days = match (k.kind, k.rotation_days) {
            (_, Some(d)) => u64::from(d),
            (KeyKind::Platform, None) => u64::from(config.pmk_rotation_days),
            _ => continue,
        };
        if days == 0 {
            continue;
        }
        let due_at = latest.created.saturating_add(days * DAY);
        out.push((name.to_string(), due_at));
    }
    out
}

/// Rotates every key of the store that is due, then rewraps. Returns one
/// line per action.
pub fn rotate_due(store: &Path, vault: &mut Vault) -> Result<Vec<String>, StoreError> {
    // Decide nothing from a config that is not authentic.
    let config = super::read_authenticated(store, vault)?;
    let now = super::now();
    let mut actions = Vec::new();
    for (name, due_at) in due(&config, vault) {
        if due_at <= now {
            let v = vault.rotate_key(&name)?;
            actions.push(format!(
                "vault key {name} was due for rotation: version {v} created"
            ));
        }
    }
    if !actions.is_empty() {
        vault.save()?;
    }
    actions.extend(rewrap(store, vault)?);
    Ok(actions)
}

/// The layers of a disk config, named, for display.
pub fn layer_label(layer: Layer) -> &'static str {
    match layer {
        Layer::Guest => "guest (ADE)",
        Layer::Host => "host (encryption at host)",
        Layer::StorageCmk => "storage (SSE, customer-managed key)",
        Layer::StoragePmk => "storage (SSE, platform-managed key)",
    }
}
