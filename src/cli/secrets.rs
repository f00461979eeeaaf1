//! Reading passphrases and recovery keys, and finding and unlocking the vault.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{KdfArgs, VaultArgs};
use crate::crypto::SecretBytes;
use crate::vault::{KdfParams, RecoveryKey, Vault};

/// The vault path: `--vault`, else `$XDG_CONFIG_HOME/strata/vault`, else
/// `~/.config/strata/vault`.
pub fn vault_path(args: &VaultArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.vault {
        return Ok(p.clone());
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("strata").join("vault"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h)
            .join(".config")
            .join("strata")
            .join("vault")),
        None => bail!("no --vault given and neither XDG_CONFIG_HOME nor HOME is set"),
    }
}

pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<SecretBytes> {
    let mut raw = std::fs::read(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    if raw.last() == Some(&b'\n') {
        raw.pop();
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
    }
    let s = SecretBytes::new(raw);
    if s.expose().is_empty() {
        bail!("{what} file {} is empty", path.display());
    }
    Ok(s)
}

/// The passphrase: from `--passphrase-file`, else asked on the terminal
/// (twice when `confirm`).
pub fn passphrase(args: &VaultArgs, confirm: bool) -> anyhow::Result<SecretBytes> {
    if let Some(p) = &args.passphrase_file {
        return read_secret_file(p, "passphrase");
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: give --passphrase-file FILE or run on a terminal");
    }
    let first = SecretBytes::new(rpassword::prompt_password("Vault passphrase: ")?.into_bytes());
    if first.expose().is_empty() {
        bail!("the passphrase must not be empty");
    }
    if confirm {
        let second =
            SecretBytes::new(rpassword::prompt_password("Repeat passphrase: ")?.into_bytes());
        if !crate::crypto::tag::ct_eq(first.expose(), second.expose()) {
            bail!("the passphrases do not match");
        }
    }
    Ok(first)
}

/// Opens the vault with the recovery key file or the passphrase.
pub fn open_vault(args: &VaultArgs) -> anyhow::Result<Vault> {
    let path = vault_path(args)?;
    if let Some(r) = &args.recovery_key_file {
        let text = read_secret_file(r, "recovery key")?;
        let s = std::str::from_utf8(text.expose()).context("the recovery key file is not text")?;
        let key = RecoveryKey::parse(s)?;
        return Ok(Vault::open_with_recovery(&path, &key)?);
    }
    if !path.exists() {
        bail!(
            "vault not found: {} (create it with `strata vault create` or `strata init`)",
            path.display()
        );
    }
    let pass = passphrase(args, false)?;
    Ok(Vault::open(&path, &pass)?)
}

/// Argon2id parameters from the flags.
pub fn kdf(args: &KdfArgs) -> anyhow::Result<KdfParams> {
    let p = KdfParams {
        memory_kib: args.kdf_memory,
        iterations: args.kdf_iterations,
        ..KdfParams::default()
    };
    p.check()
        .map_err(|e| anyhow::anyhow!("invalid KDF parameters: {e}"))?;
    Ok(p)
}

/// Creates a vault and prints its recovery key once.
pub fn create_vault(args: &VaultArgs, region: &str, kdf: KdfParams) -> anyhow::Result<Vault> {
    let path = vault_path(args)?;
    let pass = passphrase(args, true)?;
    let (vault, recovery) = Vault::create(&path, &pass, region, kdf)?;
    println!("Created vault {}", path.display());
    println!(
        "Recovery key (shown once; store it safely, it unlocks the vault without the passphrase):"
    );
    println!("    {recovery}");
    Ok(vault)
}
