//! `strata init`: create a store, and the vault if there is none yet.

use std::path::Path;
use std::process::ExitCode;

use super::secrets::{create_vault, kdf, open_vault, vault_path};
use super::{KdfArgs, VaultArgs};
use crate::store::{self, InitOptions};

/// Runs `init`.
pub fn run(
    store_path: &Path,
    opts: InitOptions,
    vargs: &VaultArgs,
    kargs: &KdfArgs,
) -> anyhow::Result<ExitCode> {
    let vpath = vault_path(vargs)?;
    let mut vault = if vpath.exists() {
        open_vault(vargs)?
    } else {
        create_vault(vargs, &opts.region, kdf(kargs)?)?
    };
    let preset = opts.preset;
    let config = store::init(store_path, &mut vault, &opts)?;
    println!(
        "Created store {} (preset {}, id {})",
        store_path.display(),
        preset.name(),
        config.store_id
    );
    for d in &config.disks {
        let mut layers: Vec<&str> = d.layers.iter().map(|w| w.layer.name()).collect();
        if d.kind == store::DiskKind::Temp && config.host_encryption {
            layers.push("host (per-mount key)");
        }
        println!(
            "  disk {:<5} {:<5} layers: {}",
            d.name,
            d.kind.to_string(),
            if layers.is_empty() {
                "none (plaintext temp)".into()
            } else {
                layers.join(", ")
            }
        );
    }
    if !config.host_encryption {
        eprintln!("strata: warning: host encryption is off: the temp disk holds plaintext in the backing store, and it cannot be turned on later");
    }
    Ok(ExitCode::SUCCESS)
}
