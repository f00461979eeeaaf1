//! `strata disk …` and `strata scope …`: disks and scopes of a store.

use std::path::Path;
use std::process::ExitCode;

use super::progress::{Drawer, Unit};
use super::secrets::open_vault;
use super::{DiskCommand, ScopeCommand, VaultArgs};
use crate::custody::admin;
use crate::layers::Layer;
use crate::store::disks::{add_disk, create_scope, NewDisk};
use crate::store::rekey::Change;
use crate::store::{rotation, Config, DiskConfig, DiskKind, StoreLock};

pub(super) fn fmt_time(secs: u64) -> String {
    // Days since the epoch to a civil date (UTC), without a date crate.
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Combinations the real cloud would refuse (strata follows its design and
/// allows them).
fn cloud_notes(config: &Config, d: &DiskConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let host = config.host_encryption && d.kind != DiskKind::Temp;
    if d.guest && host {
        notes.push(
            "the real cloud refuses guest encryption (ADE) together with encryption at host".into(),
        );
    }
    if d.guest
        && d.layers
            .iter()
            .any(|w| w.layer == crate::layers::Layer::StorageCmk)
    {
        notes.push("the real cloud refuses guest encryption (ADE) together with a customer-managed SSE key".into());
    }
    if d.scope.is_some() {
        notes.push("the real cloud keeps encryption scopes to blob storage".into());
    }
    notes
}

/// What the vault (and the key services) tell about a disk's keys.
#[derive(Default)]
struct KeyFacts {
    /// Rotation due dates by key name.
    due: Vec<(String, u64)>,
    /// For keys held by a service: its state, or why it could not be read.
    services: std::collections::HashMap<String, Result<admin::ServiceState, String>>,
}

impl KeyFacts {
    fn service_json(&self, key: &str) -> serde_json::Value {
        match self.services.get(key) {
            None => serde_json::Value::Null,
            Some(Ok(s)) => serde_json::to_value(s).unwrap_or_default(),
            Some(Err(e)) => serde_json::json!({ "error": e }),
        }
    }
}

fn disk_json(config: &Config, d: &DiskConfig, facts: &KeyFacts) -> serde_json::Value {
    let due = &facts.due;
    let host_ephemeral = d.kind == DiskKind::Temp && config.host_encryption;
    serde_json::json!({
        "name": d.name,
        "kind": d.kind.to_string(),
        "created": d.created,
        "scope": d.scope,
        "storage": format!("{:?}", d.storage).to_lowercase(),
        "guest": d.guest,
        "host": d.layers.iter().any(|w| w.layer == crate::layers::Layer::Host) || host_ephemeral,
        "layers": d.layers.iter().map(|w| serde_json::json!({
            "layer": w.layer.name(),
            "cipher": "XTS-AES-256",
            "key": w.key.name,
            "key_version": w.key.version,
            "dek_generation": w.generation,
            "rotation_due": due.iter().find(|(n, _)| *n == w.key.name).map(|(_, t)| *t),
            "key_service": facts.service_json(&w.key.name),
        })).collect::<Vec<_>>(),
        "host_key_per_mount": host_ephemeral,
        "cloud_notes": cloud_notes(config, d),
    })
}

/// With the vault: rotation due dates, and the state the key services
/// report for the disk's keys that they hold.
fn key_facts(store: &Path, vault: &VaultArgs, d: &DiskConfig) -> anyhow::Result<KeyFacts> {
    if !vault.has_unlock_source() {
        return Ok(KeyFacts::default());
    }
    let v = open_vault(vault)?;
    let config = crate::store::read_authenticated(store, &v)?;
    let mut services = std::collections::HashMap::new();
    for w in &d.layers {
        if let Some(state) = admin::service_state(&v, &w.key.name) {
            services.insert(w.key.name.clone(), state.map_err(|e| e.to_string()));
        }
    }
    Ok(KeyFacts {
        due: rotation::due(&config, &v),
        services,
    })
}

fn print_disk(config: &Config, d: &DiskConfig, facts: &KeyFacts) {
    let due = &facts.due;
    println!(
        "disk {} ({}), created {}",
        d.name,
        d.kind,
        fmt_time(d.created)
    );
    if let Some(s) = &d.scope {
        println!("  scope: {s}");
    }
    if d.layers.is_empty() && !(d.kind == DiskKind::Temp && config.host_encryption) {
        println!("  layers: none (plaintext temp disk: host encryption is off)");
    }
    for w in &d.layers {
        let due = due
            .iter()
            .find(|(n, _)| *n == w.key.name)
            .map(|(_, t)| format!(", rotation due {}", fmt_time(*t)))
            .unwrap_or_default();
        let service = match facts.services.get(&w.key.name) {
            None => String::new(),
            Some(Ok(s)) => format!(
                "; held by {} (newest version {}{})",
                s.location,
                s.latest_version,
                if s.disabled { ", DISABLED" } else { "" }
            ),
            Some(Err(e)) => format!("; key service: {e}"),
        };
        println!(
            "  {:<40} XTS-AES-256, DEK generation {}, wrapped by {} version {}{due}{service}",
            rotation::layer_label(w.layer),
            w.generation,
            w.key.name,
            w.key.version
        );
    }
    if d.kind == DiskKind::Temp && config.host_encryption {
        println!(
            "  {:<40} XTS-AES-256, key made at every mount and never stored",
            "host (encryption at host)"
        );
    }
    for n in cloud_notes(config, d) {
        println!("  note: {n}");
    }
}

/// Runs a disk command.
pub fn run(cmd: DiskCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DiskCommand::Add {
            store,
            name,
            kind,
            guest,
            guest_key,
            sse,
            scope,
            host,
            from_image,
            vault,
        } => {
            let _lock = StoreLock::offline(
                &store,
                "disk add",
                "adding a disk is offline (a running mount would not serve it)",
            )?;
            if let (Some(image), true) = (
                &from_image,
                crate::store::snapshots::from_image_tmp(&store, &name).exists(),
            ) {
                // An interrupted fill: the disk exists; fill it again.
                let mut v = open_vault(&vault)?;
                super::snapshot::fill_from_image(&store, &mut v, &name, image)?;
                return Ok(ExitCode::SUCCESS);
            }
            if host.is_some() {
                anyhow::bail!(
                    "host encryption is chosen at `strata init` and never toggled after: every disk of this store follows it"
                );
            }
            let kind = match kind.as_str() {
                "data" => DiskKind::Data,
                "temp" => DiskKind::Temp,
                "os" => DiskKind::Os,
                other => anyhow::bail!("disk kind must be data or temp, not {other}"),
            };
            let guest_key = match (guest, guest_key) {
                (_, Some(k)) => Some(k),
                (true, None) => Some("guest-kek".to_string()),
                (false, None) => None,
            };
            let mut v = open_vault(&vault)?;
            if let Some(image) = &from_image {
                crate::store::snapshots::check_image(&store, &v, image)?;
                if kind == DiskKind::Temp {
                    anyhow::bail!(
                        "a temp disk is emptied at every mount: it cannot be made from an image"
                    );
                }
            }
            let d = add_disk(
                &store,
                &mut v,
                &NewDisk {
                    name: name.clone(),
                    kind,
                    guest_key,
                    sse,
                    scope,
                },
            )?;
            if let Some(image) = &from_image {
                // Mark the fill as begun before it starts, so that an
                // interrupted one is resumed by running the command again.
                let tmp = crate::store::snapshots::from_image_tmp(&store, &name);
                std::fs::create_dir_all(&tmp)?;
                super::snapshot::fill_from_image(&store, &mut v, &name, image)?;
            }
            let config = Config::read(&store)?;
            print_disk(&config, &d, &KeyFacts::default());
        }
        DiskCommand::Rekey {
            store,
            name,
            layers,
            vault,
        } => {
            let mut set = Vec::new();
            for l in &layers {
                match l.as_str() {
                    "guest" => set.push(Layer::Guest),
                    "host" => set.push(Layer::Host),
                    "storage" => {
                        let config = Config::read(&store)?;
                        let d = config.disk(&name).ok_or_else(|| anyhow::anyhow!("store {} has no disk named {name}", store.display()))?;
                        set.extend(d.layers.iter().map(|w| w.layer).filter(|l| matches!(l, Layer::StorageCmk | Layer::StoragePmk)));
                    }
                    "storage-cmk" => set.push(Layer::StorageCmk),
                    "storage-pmk" => set.push(Layer::StoragePmk),
                    other => anyhow::bail!("unknown layer {other}: use guest, host, storage, storage-cmk or storage-pmk"),
                }
            }
            set.dedup();
            reencrypt(&store, &name, &Change::Rekey(set), &vault)?;
        }
        DiskCommand::Encrypt {
            store,
            name,
            guest: _,
            guest_key,
            vault,
        } => {
            reencrypt(&store, &name, &Change::AddGuest(guest_key), &vault)?;
        }
        DiskCommand::List { store, json } => {
            let config = Config::read(&store)?;
            if json {
                let v: Vec<_> = config
                    .disks
                    .iter()
                    .map(|d| disk_json(&config, d, &KeyFacts::default()))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<12} {:<5} {:<10} {:<6} {:<6} SCOPE",
                    "DISK", "KIND", "STORAGE", "GUEST", "HOST"
                );
                for d in &config.disks {
                    let host = d
                        .layers
                        .iter()
                        .any(|w| w.layer == crate::layers::Layer::Host)
                        || (d.kind == DiskKind::Temp && config.host_encryption);
                    println!(
                        "{:<12} {:<5} {:<10} {:<6} {:<6} {}",
                        d.name,
                        d.kind,
                        format!("{:?}", d.storage).to_lowercase(),
                        if d.guest { "on" } else { "off" },
                        if host { "on" } else { "off" },
                        d.scope.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        DiskCommand::Show {
            store,
            name,
            json,
            vault,
        } => {
            let config = Config::read(&store)?;
            let d = config.disk(&name).ok_or_else(|| {
                anyhow::anyhow!("store {} has no disk named {name}", store.display())
            })?;
            let facts = key_facts(&store, &vault, d)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&disk_json(&config, d, &facts))?
                );
            } else {
                print_disk(&config, d, &facts);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn reencrypt(store: &Path, name: &str, change: &Change, vault: &VaultArgs) -> anyhow::Result<()> {
    let command = match change {
        Change::Rekey(_) => "disk rekey",
        Change::AddGuest(_) => "disk encrypt",
    };
    let _lock = StoreLock::offline(
        store,
        command,
        "re-encryption is offline (it \"needs a reboot\")",
    )?;
    let mut v = open_vault(vault)?;
    let progress = Drawer::new("re-encrypting", Unit::Objects, false);
    let log = crate::store::rekey::run(store, &mut v, name, change, &progress);
    progress.end(log.is_ok());
    for line in log? {
        println!("{line}");
    }
    Ok(())
}

/// Runs a scope command.
pub fn run_scope(cmd: ScopeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ScopeCommand::Create {
            store,
            name,
            key,
            vault,
        } => {
            let _lock = StoreLock::offline(&store, "scope create", "creating a scope is offline")?;
            let mut v = open_vault(&vault)?;
            let s = create_scope(&store, &mut v, &name, &key)?;
            println!("scope {} bound to customer key {}", s.name, s.key);
        }
        ScopeCommand::List { store, json } => {
            let config = Config::read(&store)?;
            let rows: Vec<(String, String, Vec<String>)> = config
                .scopes
                .iter()
                .map(|s| {
                    let disks = config
                        .disks
                        .iter()
                        .filter(|d| d.scope.as_ref() == Some(&s.name))
                        .map(|d| d.name.clone())
                        .collect();
                    (s.name.clone(), s.key.clone(), disks)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, k, d)| serde_json::json!({"name": n, "key": k, "disks": d}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<16} {:<20} DISKS", "SCOPE", "KEY");
                for (n, k, d) in rows {
                    println!("{n:<16} {k:<20} {}", d.join(", "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
