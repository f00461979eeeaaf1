//! `strata vault …`: create, list, passwd, recovery-key and the key
//! commands.

use std::process::ExitCode;

use anyhow::bail;

use super::secrets::{
    create_vault, kdf, open_vault, print_recovery_key, read_recovery_key, read_secret_file,
    unlock_vault, vault_path, Unlocked,
};
use super::{KeyCommand, VaultCommand};
use crate::vault::{KeyKind, RecoveryKey, Vault};

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
            // Every store named is rewrapped with it to itself: a running
            // mount holds the config it read and would not see the rewrap.
            let mut stores = stores;
            let mut seen = std::collections::HashSet::new();
            stores.retain(|s| seen.insert(s.canonicalize().unwrap_or_else(|_| s.clone())));
            let _locks = stores
                .iter()
                .map(|s| {
                    crate::store::StoreLock::offline(
                        s,
                        "vault key rotate --store",
                        "rewrapping a store's keys is offline (without --store, a mount rewraps at its next start)",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut v = open_vault(&vault)?;
            let version = v.rotate_key(&name)?;
            v.save()?;
            println!("key {name}: version {version} created");
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
            v.set_rotation_days(&name, (rotate_days > 0).then_some(rotate_days))?;
            v.save()?;
            match rotate_days {
                0 => println!("key {name}: no rotation policy"),
                d => println!("key {name}: rotates when its newest version is {d} days old"),
            }
        }
        VaultCommand::Key {
            command: KeyCommand::Create { name, kind, vault },
        } => {
            let mut v = open_vault(&vault)?;
            let kind: KeyKind = kind.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            v.create_key(&name, kind)?;
            v.save()?;
            println!("created key {name} ({}) version 1", kind.as_str());
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
    v.set_enabled(name, version, enabled)?;
    v.save()?;
    let what = match version {
        Some(n) => format!("key {name} version {n}"),
        None => format!("every version of key {name}"),
    };
    println!(
        "{what} {}",
        if enabled {
            "enabled"
        } else {
            "disabled (revoked)"
        }
    );
    Ok(())
}
