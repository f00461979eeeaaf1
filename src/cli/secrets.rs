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

/// The secret a vault was unlocked with.
pub enum Unlocked {
    /// The passphrase.
    Passphrase(SecretBytes),
    /// The recovery key.
    Recovery(RecoveryKey),
}

/// Reads and parses a recovery key file.
pub fn read_recovery_key(path: &Path) -> anyhow::Result<RecoveryKey> {
    let text = read_secret_file(path, "recovery key")?;
    let s = std::str::from_utf8(text.expose()).context("the recovery key file is not text")?;
    Ok(RecoveryKey::parse(s)?)
}

/// Opens the vault with the recovery key file or the passphrase, and says
/// which secret opened it.
pub fn unlock_vault(args: &VaultArgs) -> anyhow::Result<(Vault, Unlocked)> {
    let path = vault_path(args)?;
    if let Some(r) = &args.recovery_key_file {
        let key = read_recovery_key(r)?;
        let vault = Vault::open_with_recovery(&path, &key)?;
        return Ok((vault, Unlocked::Recovery(key)));
    }
    if !path.exists() {
        bail!(
            "vault not found: {} (create it with `strata vault create` or `strata init`)",
            path.display()
        );
    }
    let pass = passphrase(args, false)?;
    let vault = Vault::open(&path, &pass)?;
    Ok((vault, Unlocked::Passphrase(pass)))
}

/// Opens the vault with the recovery key file or the passphrase.
pub fn open_vault(args: &VaultArgs) -> anyhow::Result<Vault> {
    unlock_vault(args).map(|(vault, _)| vault)
}

/// Argon2id parameters from the flags.
pub fn kdf(args: &KdfArgs) -> anyhow::Result<KdfParams> {
    let p = KdfParams {
        memory_kib: args.kdf_memory,
        iterations: args.kdf_iterations,
        ..KdfParams::default()
    };
    p.check()
        .map_err(|e| anyhow::anyhow!("invalid Argon2id parameters: {e}"))?;
    Ok(p)
}

/// Warns, after a slot was written with them, when Argon2id parameters are
/// below the recommended minimum (accepted, since they are above the floor).
pub fn warn_if_weak(p: &KdfParams) {
    if p.below_recommended() {
        eprintln!(
            "strata: warning: Argon2id with {} KiB and {} passes is below the recommended minimum ({} KiB, {} passes): a guessed passphrase costs an attacker little",
            p.memory_kib,
            p.iterations,
            crate::vault::RECOMMENDED_MEMORY_KIB,
            crate::vault::RECOMMENDED_ITERATIONS
        );
    }
}

/// Creates a vault and prints its recovery key once.
pub fn create_vault(args: &VaultArgs, region: &str, kdf: KdfParams) -> anyhow::Result<Vault> {
    let path = vault_path(args)?;
    let pass = passphrase(args, true)?;
    crate::vault::check_new_passphrase(pass.expose())?;
    let (vault, recovery) = Vault::create(&path, &pass, region, kdf)?;
    warn_if_weak(&kdf);
    println!("Created vault {}", path.display());
    print_recovery_key(&recovery);
    Ok(vault)
}

/// Prints a recovery key, once, with what it is for.
pub fn print_recovery_key(recovery: &RecoveryKey) {
    println!(
        "Recovery key (shown once; store it safely, it unlocks the vault without the passphrase):"
    );
    println!("    {recovery}");
}
