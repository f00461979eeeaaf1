//! `strata vault …`: create, list, key create.

use std::process::ExitCode;

use super::secrets::{create_vault, kdf, open_vault, read_secret_file};
use super::{KeyCommand, VaultCommand};
use crate::vault::KeyKind;

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
            vault,
            kdf: k,
        } => {
            let mut v = open_vault(&vault)?;
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
            v.change_passphrase(&new, kdf(&k)?)?;
            println!(
                "passphrase of vault {} changed; no store was touched",
                v.path().display()
            );
        }
        VaultCommand::Key {
            command:
                KeyCommand::Rotate {
                    name,
                    stores,
                    vault,
                },
        } => {
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
