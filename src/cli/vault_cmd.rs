//! `strata vault …`: create, list, key create.

use std::process::ExitCode;

use super::secrets::{create_vault, kdf, open_vault};
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
