//! `strata vault …`: create, list, passwd, recovery-key, and the keys:
//! create (in the vault or held by a key service), rotate, disable,
//! enable, policy.

use std::process::ExitCode;

use anyhow::bail;

use super::secrets::{
    create_vault, kdf, open_vault, print_recovery_key, read_recovery_key, read_secret_file,
    unlock_vault, vault_path, Unlocked,
};
use super::{KeyCommand, ServiceArgs, VaultCommand};
use crate::custody::admin;
use crate::vault::{ExternalKey, KeyKind, RecoveryKey, ServiceAuth, Vault, VaultKey};

/// The service description the options give, if any (`None` without
/// `--kms-address`). File paths are made absolute; nothing is read yet.
fn external_key(name: &str, a: &ServiceArgs) -> anyhow::Result<Option<ExternalKey>> {
    let any_other = a.key.is_some()
        || a.ca_file.is_some()
        || a.token_file.is_some()
        || a.role_id_file.is_some()
        || a.manage;
    if a.addresses.is_empty() {
        if any_other {
            bail!("the --kms-… options describe a key held by a key service: give its --kms-address too");
        }
        return Ok(None);
    }
    let abs = |p: &std::path::PathBuf| std::path::absolute(p);
    let auth = match (&a.token_file, &a.role_id_file, &a.secret_id_file) {
        (Some(t), None, None) => ServiceAuth::Token {
            token_file: abs(t)?,
        },
        (None, Some(r), Some(s)) => ServiceAuth::Approle {
            mount: a.approle_mount.clone(),
            role_id_file: abs(r)?,
            secret_id_file: abs(s)?,
        },
        _ => bail!(
            "a key held by a key service needs --kms-token-file, or --kms-role-id-file and --kms-secret-id-file"
        ),
    };
    Ok(Some(ExternalKey {
        addresses: a.addresses.clone(),
        mount: a.mount.clone(),
        key: a.key.clone().unwrap_or_else(|| name.to_string()),
        ca_file: a.ca_file.as_ref().map(abs).transpose()?,
        auth,
        manage: a.manage,
        timeout_ms: (a.timeout_ms != 5000).then_some(a.timeout_ms),
    }))
}

/// A key service description for `vault list --json`: where, not secrets.
fn service_json(k: &VaultKey) -> serde_json::Value {
    match &k.service {
        None => serde_json::Value::Null,
        Some(s) => serde_json::json!({
            "addresses": s.addresses,
            "mount": s.mount,
            "key": s.key,
            "ca_file": s.ca_file,
            "auth": match &s.auth {
                ServiceAuth::Token { .. } => "token",
                ServiceAuth::Approle { .. } => "approle",
            },
            "manage": s.manage,
        }),
    }
}

/// Runs a vault command.
pub fn run(cmd: VaultCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VaultCommand::Create {
            region,
            vault,
            kdf: k,
        } => {
            create_vault(&vault, &region, kdf(&k)?)?;
        }
        VaultCommand::List { json, vault } => {
            let v = open_vault(&vault)?;
            if json {
                let keys: Vec<_> = v
                    .keys()
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name,
                            "kind": k.kind.as_str(),
                            "rotation_days": k.rotation_days,
                            "versions": k.versions.iter().map(|ver| serde_json::json!({
                                "version": ver.version, "enabled": ver.enabled, "created": ver.created,
                            })).collect::<Vec<_>>(),
                            "service": service_json(k),
                        })
                    })
                    .collect();
                let out = serde_json::json!({ "vault_id": hex::encode(v.id()), "region": v.region(), "keys": keys });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "vault {} (id {}, region {})",
                    v.path().display(),
                    hex::encode(v.id()),
                    v.region()
                );
                println!(
                    "{:<24} {:<9} {:>7} {:<8} CREATED",
                    "NAME", "KIND", "VERSION", "STATE"
                );
                for k in v.keys() {
                    if let Some(svc) = &k.service {
                        println!(
                            "{:<24} {:<9} {:>7} {:<8} held by {}",
                            k.name,
                            k.kind.as_str(),
                            "-",
                            "service",
                            svc.location()
                        );
                    }
                    for ver in &k.versions {
                        println!(
                            "{:<24} {:<9} {:>7} {:<8} {}",
                            k.name,
                            k.kind.as_str(),
                            ver.version,
                            if ver.enabled { "enabled" } else { "disabled" },
                            ver.created
                        );
                    }
                }
            }
        }
        VaultCommand::Passwd {
            new_passphrase_file,
            keep_recovery_key,
            new_recovery_key,
            vault,
            kdf: k,
        } => {
            let kdf = kdf(&k)?;
            Vault::check_not_held(&vault_path(&vault)?)?;
            let (mut v, unlocked) = unlock_vault(&vault)?;
            // The new master key needs a new recovery slot: with the key the
            // user holds (checked), or with a new one.
            let recovery = match (new_recovery_key, &keep_recovery_key, unlocked) {
                (true, _, _) => RecoveryKey::random(),
                (false, Some(file), _) => {
                    let key = read_recovery_key(file)?;
                    v.check_recovery_key(&key)?;
                    key
                }
                (false, None, Unlocked::Recovery(key)) => key,
                (false, None, Unlocked::Passphrase(_)) => bail!(
                    "vault passwd gives the vault a new master key, so its recovery slot is made again: give the current recovery key to keep it (--keep-recovery-key FILE) or ask for a new one (--new-recovery-key)"
                ),
            };
            let new = match &new_passphrase_file {
                Some(p) => read_secret_file(p, "new passphrase")?,
                // The new passphrase comes from the terminal, never from the
                // source that gave the old one.
                None => super::secrets::passphrase(
                    &super::VaultArgs {
                        vault: vault.vault.clone(),
                        ..super::VaultArgs::default()
                    },
                    true,
                )?,
            };
            crate::vault::check_new_passphrase(new.expose())?;
            let recovery_kdf = match new_recovery_key {
                true => kdf,
                false => v.recovery_kdf().unwrap_or(kdf),
            };
            v.change_secrets(&new, kdf, &recovery, recovery_kdf)?;
            super::secrets::warn_if_weak(&kdf);
            println!(
                "passphrase of vault {} changed, with a new master key: the old passphrase opens neither the vault nor its backup; no store was touched",
                v.path().display()
            );
            if new_recovery_key {
                print_recovery_key(&recovery);
                println!("The old recovery key no longer opens the vault.");
            } else {
                println!("The recovery key is unchanged.");
            }
        }
        VaultCommand::RecoveryKey { vault } => {
            Vault::check_not_held(&vault_path(&vault)?)?;
            let (mut v, unlocked) = unlock_vault(&vault)?;
            let Unlocked::Passphrase(pass) = unlocked else {
                bail!(
                    "a new recovery key needs the passphrase (its slot is made again under the new master key): unlock with it, or replace both with `strata vault passwd --new-recovery-key`"
                );
            };
            let pkdf = v.passphrase_kdf().unwrap_or_default();
            let recovery = RecoveryKey::random();
            v.change_secrets(&pass, pkdf, &recovery, pkdf)?;
            println!(
                "vault {} has a new recovery key and a new master key: the old recovery key opens neither the vault nor its backup",
                v.path().display()
            );
            print_recovery_key(&recovery);
        }
        VaultCommand::Key {
            command:
                KeyCommand::Rotate {
                    name,
                    stores,
                    vault,
                },
        } => {
            // A store named is rewrapped offline under its lock, or beside
            // its running mount, whose watcher re-reads the authenticated
            // config and follows the rewrap (no data moves either way).
            let mut stores = stores;
            let mut seen = std::collections::HashSet::new();
            stores.retain(|s| seen.insert(s.canonicalize().unwrap_or_else(|_| s.clone())));
            let _access = stores
                .iter()
                .map(|s| {
                    crate::store::StoreLock::offline_or_mounted(
                        s,
                        "vault key rotate --store",
                        "a store's keys are rewrapped offline or beside its running mount",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut v = open_vault(&vault)?;
            println!("{}", admin::rotate(&mut v, &name)?);
            v.save()?;
            for store in stores {
                for line in crate::store::rotation::rewrap(&store, &mut v)? {
                    println!("{}: {line}", store.display());
                }
            }
        }
        VaultCommand::Key {
            command: KeyCommand::Disable { key, vault },
        } => set_enabled(&key, &vault, false)?,
        VaultCommand::Key {
            command: KeyCommand::Enable { key, vault },
        } => set_enabled(&key, &vault, true)?,
        VaultCommand::Key {
            command:
                KeyCommand::Policy {
                    name,
                    rotate_days,
                    vault,
                },
        } => {
            let mut v = open_vault(&vault)?;
            let line =
                admin::set_rotation_days(&mut v, &name, (rotate_days > 0).then_some(rotate_days))?;
            v.save()?;
            println!("{line}");
        }
        VaultCommand::Key {
            command:
                KeyCommand::Create {
                    name,
                    kind,
                    service,
                    vault,
                },
        } => {
            let kind: KeyKind = kind.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let external = external_key(&name, &service)?;
            if external.is_some() && kind != KeyKind::Customer {
                bail!(
                    "only customer keys may be held by a key service; {name} would be a {kind} key"
                );
            }
            let mut v = open_vault(&vault)?;
            match external {
                Some(spec) => {
                    let line = admin::create_external(&mut v, &name, spec)?;
                    v.save()?;
                    println!("{line}");
                }
                None => {
                    v.create_key(&name, kind)?;
                    v.save()?;
                    println!("created key {name} ({}) version 1", kind.as_str());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME` or `NAME@VERSION`.
fn parse_key_spec(spec: &str) -> anyhow::Result<(&str, Option<u32>)> {
    match spec.split_once('@') {
        None => Ok((spec, None)),
        Some((name, v)) => {
            let v: u32 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("{spec}: the version after @ must be a number"))?;
            Ok((name, Some(v)))
        }
    }
}

fn set_enabled(spec: &str, vault: &super::VaultArgs, enabled: bool) -> anyhow::Result<()> {
    let (name, version) = parse_key_spec(spec)?;
    let mut v = open_vault(vault)?;
    let line = admin::set_enabled(&mut v, name, version, enabled)?;
    v.save()?;
    println!("{line}");
    Ok(())
}
