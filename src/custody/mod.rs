//! Key custody: what a holder of a customer, host or platform key does for
//! strata — wrap a new DEK, unwrap one, rewrap one to the key's newest
//! version, and say whether DEKs wrapped under a version may still be
//! unwrapped — behind one trait, [`KeyHolder`], implemented by the vault file
//! (`local`) and by a key service (`service`, over [`crate::kms`]).
//!
//! `store` and the daemon reach keys only through [`holder`]; whether a key
//! lives in the vault file or in a service is decided by the vault's entry
//! for its name. A holder never unwraps under a version it refuses (a
//! disabled vault key version, a key the service refuses), so a revoked
//! disk's DEKs are never in memory.
//!
//! Every wrapped DEK is bound to where it belongs ([`Binding`]: store, disk,
//! layer, DEK generation, key name): a wrapped DEK copied to another disk,
//! layer or store does not unwrap. The vault file binds it as associated
//! data (which also names the key version); a service binds it as the
//! derivation context, which survives the service's rewrap.

pub mod admin;
mod local;
mod service;

use std::time::Duration;

use crate::crypto::Key64;
use crate::layers::Layer;
use crate::vault::{Vault, VaultKey};

/// Where a wrapped DEK belongs.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The store's id.
    pub store_id: &'a str,
    /// The disk whose DEK it is (a snapshot's or image's source disk).
    pub disk: &'a str,
    /// The layer.
    pub layer: Layer,
    /// The DEK's generation.
    pub generation: u32,
}

impl Binding<'_> {
    /// The binding as bytes, without the key version:
    /// `strata dek v1\0<store_id>\0<disk>\0<layer>\0<generation>\0<key name>`.
    pub fn context(&self, key: &str) -> Vec<u8> {
        format!(
            "strata dek v1\0{}\0{}\0{}\0{}\0{key}",
            self.store_id,
            self.disk,
            self.layer.name(),
            self.generation
        )
        .into_bytes()
    }
}

/// Why a key holder did not do what was asked. Messages name the key (and
/// the service's address), never material or credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CustodyError {
    /// The vault has no such key, or no such version of it.
    #[error("vault key {key}{} is missing from the vault", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    Missing {
        /// The key.
        key: String,
        /// The version, if one was asked for.
        version: Option<u32>,
    },
    /// The holder refuses: a disabled version, a key the service refuses.
    #[error("{why}")]
    Refused {
        /// The key.
        key: String,
        /// Why, naming the key (and the service).
        why: String,
    },
    /// The service holding the key could not be asked.
    #[error("key {key}: {cause}")]
    Unreachable {
        /// The key.
        key: String,
        /// The addresses tried and what went wrong.
        cause: String,
    },
    /// The wrapped DEK does not unwrap under a usable key: it belongs to
    /// another store, disk or layer, or is damaged.
    #[error("key {key}: {why}")]
    NotUnwrapped {
        /// The key.
        key: String,
        /// What the holder said.
        why: String,
    },
    /// A request that cannot be served: wrong kind, no usable version, a
    /// local configuration problem.
    #[error("{0}")]
    Invalid(String),
}

impl CustodyError {
    /// Whether the holder could not be asked (a service away), as opposed
    /// to an answer.
    pub fn is_unreachable(&self) -> bool {
        match self {
            CustodyError::Unreachable { .. } => true,
            CustodyError::Missing { .. }
            | CustodyError::Refused { .. }
            | CustodyError::NotUnwrapped { .. }
            | CustodyError::Invalid(_) => false,
        }
    }

    /// Whether this is the holder's "no" to the key or version (revocation).
    pub fn is_refusal(&self) -> bool {
        match self {
            CustodyError::Missing { .. } | CustodyError::Refused { .. } => true,
            CustodyError::Unreachable { .. }
            | CustodyError::NotUnwrapped { .. }
            | CustodyError::Invalid(_) => false,
        }
    }
}

/// What a holder of one named key does.
pub trait KeyHolder {
    /// The key's name in the vault.
    fn name(&self) -> &str;

    /// Where the key is held, for messages (`the vault`, a service URL).
    fn location(&self) -> String;

    /// Whether the key is held by a key service.
    fn is_external(&self) -> bool;

    /// The version new wraps use (the newest usable one).
    fn newest(&self) -> Result<u32, CustodyError>;

    /// Wraps `dek` under the newest usable version: that version and the
    /// wrapped DEK as stored in the config.
    fn wrap(&self, dek: &Key64, at: &Binding<'_>) -> Result<(u32, String), CustodyError>;

    /// Unwraps a DEK wrapped under `version`, unless the holder refuses
    /// that version.
    fn unwrap(&self, version: u32, wrapped: &str, at: &Binding<'_>) -> Result<Key64, CustodyError>;

    /// Moves a DEK wrapped under `version` to the newest version (the DEK
    /// stays the same, no data changes), unless the holder refuses
    /// `version`.
    fn rewrap(
        &self,
        version: u32,
        wrapped: &str,
        at: &Binding<'_>,
    ) -> Result<(u32, String), CustodyError>;

    /// Asks again whether DEKs wrapped under each of `versions` may be
    /// unwrapped: `None` if so, else why not. A service is asked with
    /// fresh credentials, within `budget`; an error means it could not be
    /// asked (or refuses this machine altogether).
    fn check(
        &self,
        versions: &[u32],
        budget: Duration,
    ) -> Result<Vec<Option<String>>, CustodyError>;
}

/// The holder of the key named `name` in `vault`: the vault itself, or
/// the key service its entry names.
pub fn holder<'v>(vault: &'v Vault, name: &str) -> Result<Box<dyn KeyHolder + 'v>, CustodyError> {
    let key: &'v VaultKey = vault.key(name).ok_or_else(|| CustodyError::Missing {
        key: name.to_string(),
        version: None,
    })?;
    match &key.service {
        None => Ok(Box::new(local::Local::new(key))),
        Some(spec) => Ok(Box::new(service::Remote::new(&key.name, spec)?)),
    }
}
