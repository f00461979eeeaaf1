//! The vault's error type: one variant per thing a user, a disk or another
//! process can get wrong, each with a one-line message that names what went
//! wrong and where, and never carries key material or passphrases.

use std::path::PathBuf;

/// Everything that can go wrong creating, opening, changing or saving a vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// There is no file at the vault path.
    #[error("no vault at {}", .0.display())]
    NotFound(PathBuf),

    /// `create` was asked to write over an existing file.
    #[error("{} already exists: refusing to overwrite it with a new vault", .0.display())]
    Exists(PathBuf),

    /// The file does not start with the vault magic.
    #[error("{} is not a strata vault", .0.display())]
    NotAVault(PathBuf),

    /// The file was written by a newer strata, in a format this one cannot read.
    #[error(
        "vault {} has format version {version}, newer than this strata reads (1): upgrade strata",
        path.display()
    )]
    NewerFormat {
        /// The vault file.
        path: PathBuf,
        /// The format version found in its header.
        version: u16,
    },

    /// The passphrase slot did not open with the given passphrase.
    #[error("wrong passphrase for vault {}", .0.display())]
    WrongPassphrase(PathBuf),

    /// The recovery slot did not open with the given recovery key.
    #[error("wrong recovery key for vault {}", .0.display())]
    WrongRecoveryKey(PathBuf),

    /// The file is damaged: its structure, checksum or sealed body is wrong.
    #[error("vault {} is damaged: {what}", path.display())]
    Corrupt {
        /// The vault file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },

    /// Reading or writing a file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Argon2id parameters out of range, or Argon2id could not run with them.
    #[error("invalid Argon2id parameters: {0}")]
    InvalidKdfParams(String),

    /// A key slot's Argon2id parameters are below the floor or above the
    /// ceiling; refused before any derivation.
    #[error("vault {}: the {slot} slot's Argon2id parameters are refused: {what}", path.display())]
    RefusedKdf {
        /// The vault file.
        path: PathBuf,
        /// Which slot: `passphrase` or `recovery`.
        slot: &'static str,
        /// Which parameter, its value and the limit.
        what: String,
    },

    /// A new passphrase shorter than the minimum.
    #[error("the new passphrase has {0} characters; use at least 8")]
    WeakPassphrase(usize),

    /// A change that replaces the master key while a running mount holds it.
    #[error("vault {} is in use by a running mount: unmount the stores that use it first (the mount holds the master key this change replaces, and would stop seeing revocations)", .0.display())]
    InUse(PathBuf),

    /// A mount could not take its hold on the vault because a master-key
    /// change is running.
    #[error("vault {} is being given a new master key (vault passwd or recovery-key): try again when it is done", .0.display())]
    BeingChanged(PathBuf),

    /// A recovery key given to be kept that does not open the vault.
    #[error("the recovery key given to keep does not open vault {}: check it, or replace it with --new-recovery-key", .0.display())]
    RecoveryKeyToKeepIsWrong(PathBuf),

    /// A key name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid key name {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidKeyName(String),

    /// `create_key` was given the name of a key that already exists.
    #[error("the vault already has a key named {0:?}")]
    KeyExists(String),

    /// No key of that name.
    #[error("the vault has no key named {0:?}")]
    NoSuchKey(String),

    /// The key exists but has no such version.
    #[error("key {name:?} has no version {version}")]
    NoSuchVersion {
        /// The key's name.
        name: String,
        /// The version asked for.
        version: u32,
    },

    /// The file holds an older generation of the vault than the one already
    /// held (a backup copied back over it): refused, so that a restored
    /// copy cannot lift a revocation made since.
    #[error("vault {} was rolled back: it holds generation {found}, older than generation {held} already seen; ignoring it", path.display())]
    RolledBack {
        /// The vault file.
        path: PathBuf,
        /// Generation found in the file.
        found: u64,
        /// Generation already held.
        held: u64,
    },

    /// A save refused because another process saved the vault since this
    /// one read it: writing would undo that save.
    #[error("vault {} was changed since this command read it ({what}): nothing was saved; run it again", path.display())]
    ChangedSince {
        /// The vault file.
        path: PathBuf,
        /// What changed.
        what: String,
    },

    /// The operation needs key material held in the vault, and the key is
    /// held by a key service.
    #[error("key {0:?} is held by a key service: {1}")]
    HeldByService(String, &'static str),

    /// A key service description that does not check.
    #[error("key {name:?}: {what}")]
    BadService {
        /// The key's name.
        name: String,
        /// What is wrong.
        what: String,
    },

    /// A recovery key that does not parse; the message names the problem.
    #[error("{0}")]
    BadRecoveryKey(String),
}

impl VaultError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VaultError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        VaultError::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }
}
