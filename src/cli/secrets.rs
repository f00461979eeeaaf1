//! Reading passphrases and recovery keys — from a file, a command's
//! output, a systemd credential or the terminal — and finding and unlocking
//! the vault. A passphrase never travels in an argument or an environment
//! variable and never reaches a log or an error message.

use std::io::{IsTerminal, Read};
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

/// Longest passphrase a command may print.
const MAX_COMMAND_OUTPUT: usize = 64 << 10;

/// The argument vector of `--passphrase-command`: one string is split on
/// whitespace, several are one argument each; with `shell`, the one string
/// goes to `/bin/sh -c`.
pub fn command_argv(cmd: &[String], shell: bool) -> anyhow::Result<Vec<String>> {
    let argv: Vec<String> = match (cmd, shell) {
        ([one], true) => vec!["/bin/sh".into(), "-c".into(), one.clone()],
        (_, true) => bail!("--passphrase-shell runs one --passphrase-command string, not several"),
        ([one], false) => one.split_whitespace().map(str::to_string).collect(),
        (many, false) => many.to_vec(),
    };
    if argv.first().is_none_or(|p| p.is_empty()) {
        bail!("the passphrase command is empty");
    }
    Ok(argv)
}

/// Runs the passphrase command and reads the passphrase from its standard
/// output (one trailing newline is ignored). Its standard input and error
/// stay the caller's, so a prompting helper (systemd-ask-password, pinentry)
/// can talk to the terminal. Errors name the program, never its output.
pub fn passphrase_from_command(argv: &[String]) -> anyhow::Result<SecretBytes> {
    let Some((program, args)) = argv.split_first() else {
        bail!("the passphrase command is empty");
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run the passphrase command {program}"))?;
    // A buffer of fixed size, so that no reallocation leaves a copy of the
    // passphrase behind; one byte more than allowed detects an overlong one.
    let mut buf = zeroize::Zeroizing::new(vec![0u8; MAX_COMMAND_OUTPUT + 1]);
    let mut len = 0;
    let mut overlong = false;
    if let Some(mut out) = child.stdout.take() {
        loop {
            match out.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    if len > MAX_COMMAND_OUTPUT {
                        overlong = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e).with_context(|| {
                        format!("reading the output of the passphrase command {program}")
                    });
                }
            }
        }
    }
    if overlong {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the passphrase command {program} printed more than {MAX_COMMAND_OUTPUT} bytes");
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for the passphrase command {program}"))?;
    if !status.success() {
        match status.code() {
            Some(code) => bail!("the passphrase command {program} failed with exit status {code}"),
            None => bail!("the passphrase command {program} was killed ({status})"),
        }
    }
    let raw = &buf[..len];
    let trimmed = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    if trimmed.is_empty() {
        bail!("the passphrase command {program} printed no passphrase");
    }
    Ok(SecretBytes::new(trimmed.to_vec()))
}

/// The passphrase from systemd credential `name`
/// (`$CREDENTIALS_DIRECTORY/name`).
pub fn passphrase_from_credential(name: &str) -> anyhow::Result<SecretBytes> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        bail!("credential name {name:?} must be a plain name (no slash)");
    }
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        bail!(
            "--passphrase-credential {name}: $CREDENTIALS_DIRECTORY is not set (run from a systemd unit with LoadCredential={name}:FILE)"
        );
    };
    read_secret_file(&Path::new(&dir).join(name), "passphrase credential")
}

/// The passphrase: from `--passphrase-file`, `--passphrase-command` or
/// `--passphrase-credential`, else asked on the terminal (twice when
/// `confirm`).
pub fn passphrase(args: &VaultArgs, confirm: bool) -> anyhow::Result<SecretBytes> {
    if let Some(p) = &args.passphrase_file {
        return read_secret_file(p, "passphrase");
    }
    if !args.passphrase_command.is_empty() {
        let argv = command_argv(&args.passphrase_command, args.passphrase_shell)?;
        return passphrase_from_command(&argv);
    }
    if let Some(name) = &args.passphrase_credential {
        return passphrase_from_credential(name);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase: give --passphrase-file FILE, --passphrase-command CMD or --passphrase-credential NAME, or run on a terminal"
        );
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
