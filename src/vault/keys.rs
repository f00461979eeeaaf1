//! The keys a vault holds: named keys of a kind, each with numbered versions
//! of 256-bit material that can be enabled and disabled.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::VaultError;
use crate::crypto::Key32;

/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// Which encryption layer a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A platform-managed key (the storage layer's key).
    Platform,
    /// A host key (the host-encryption layer).
    Host,
    /// A customer-managed key.
    Customer,
}

impl KeyKind {
    /// The kind's name as written in the vault and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Platform => "platform",
            KeyKind::Host => "host",
            KeyKind::Customer => "customer",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a key kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key kind {0:?}: use platform, host or customer")]
pub struct UnknownKeyKind(pub String);

impl FromStr for KeyKind {
    type Err = UnknownKeyKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "platform" => Ok(KeyKind::Platform),
            "host" => Ok(KeyKind::Host),
            "customer" => Ok(KeyKind::Customer),
            other => Err(UnknownKeyKind(other.to_string())),
        }
    }
}

/// One version of a key's material.
#[derive(Debug)]
#[non_exhaustive]
pub struct KeyVersion {
    /// Version number: 1 for the first, one more for each rotation.
    pub version: u32,
    /// When it was made, in seconds since the Unix epoch.
    pub created: u64,
    /// Whether it may be used; a disabled version is kept but not handed out
    /// by [`VaultKey::latest_enabled`].
    pub enabled: bool,
    material: Key32,
}

impl KeyVersion {
    pub(crate) fn new(version: u32, created: u64, enabled: bool, material: Key32) -> Self {
        KeyVersion {
            version,
            created,
            enabled,
            material,
        }
    }

    /// The 256-bit key material.
    pub fn material(&self) -> &Key32 {
        &self.material
    }
}

/// A named key and its versions, oldest first. A key in a vault always has
/// at least one version.
#[derive(Debug)]
#[non_exhaustive]
pub struct VaultKey {
    /// Unique name within the vault, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// The layer it belongs to.
    pub kind: KeyKind,
    /// How often it should be rotated, if there is a policy.
    pub rotation_days: Option<u32>,
    /// Its versions in increasing version order.
    pub versions: Vec<KeyVersion>,
}

impl VaultKey {
    /// The newest enabled version, if any is enabled.
    pub fn latest_enabled(&self) -> Option<&KeyVersion> {
        self.versions.iter().rev().find(|v| v.enabled)
    }

    /// Version `v`, if it exists.
    pub fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|kv| kv.version == v)
    }

    /// The newest version, enabled or not.
    pub fn latest(&self) -> &KeyVersion {
        match self.versions.last() {
            Some(v) => v,
            // Keys are only made with a version, versions are never removed,
            // and files with a version-less key are refused as damaged.
            None => unreachable!("vault key {:?} has no versions", self.name),
        }
    }
}

/// Checks a key name against `[A-Za-z0-9._-]{1,64}`.
pub(crate) fn check_key_name(name: &str) -> Result<(), VaultError> {
    let ok = (1..=MAX_KEY_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidKeyName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in [KeyKind::Platform, KeyKind::Host, KeyKind::Customer] {
            assert_eq!(k.to_string().parse::<KeyKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).expect("json"), format!("\"{k}\""));
        }
        let e = "Host".parse::<KeyKind>().expect_err("case matters");
        assert_eq!(
            e.to_string(),
            "unknown key kind \"Host\": use platform, host or customer"
        );
    }

    #[test]
    fn key_names() {
        for good in ["a", "disk-1", "A.b_c-9", &"x".repeat(64)] {
            assert!(check_key_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", "a\n", &"x".repeat(65)] {
            assert!(
                matches!(check_key_name(bad), Err(VaultError::InvalidKeyName(_))),
                "{bad:?}"
            );
        }
    }
}
