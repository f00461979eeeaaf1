//! The keys a vault holds: named keys of a kind, each with numbered versions
//! of 256-bit material that can be enabled and disabled, or, for a customer
//! key held by a key service, only where that key lives and how to reach it.

use std::fmt;
use std::path::PathBuf;
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

/// How strata authenticates to a key service. Only file paths are kept:
/// the secrets stay in those files (mode 0600) and are read when needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServiceAuth {
    /// A token read from a file.
    Token {
        /// File holding the token.
        token_file: PathBuf,
    },
    /// AppRole login with a role id and a secret id, each read from a file.
    Approle {
        /// Where the AppRole auth method is mounted (`approle`).
        mount: String,
        /// File holding the role id.
        role_id_file: PathBuf,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
}

/// A customer key held by a key service (OpenBao or Vault Transit): where it
/// lives and how to reach it. Holds no key material and no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalKey {
    /// Service addresses (`https://host:port`), tried in order.
    pub addresses: Vec<String>,
    /// Where the Transit engine is mounted (`transit`).
    pub mount: String,
    /// The key's name in the service.
    pub key: String,
    /// PEM file of the CA that signs the service's certificates (else the
    /// built-in public roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How to authenticate.
    pub auth: ServiceAuth,
    /// Whether strata may administer the key in the service (create,
    /// rotate, disable, enable, set its rotation period); without it strata
    /// only wraps, unwraps, rewraps and reads the key's state.
    #[serde(default)]
    pub manage: bool,
    /// How long one request may take, in milliseconds (default 5000); a
    /// command or a mount gives the service six times that, over retries
    /// and addresses, before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// Whether `host` (of an `http://` address) is a loopback host.
fn loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `scheme://host[:port]` into its host, refusing anything else
/// (user info, paths, queries, spaces).
fn address_host(addr: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = addr.split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty()
        || rest
            .bytes()
            .any(|b| matches!(b, b'/' | b'@' | b'?' | b'#' | b'\\') || b <= b' ' || b >= 0x7f)
    {
        return None;
    }
    let host = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (h, tail) = rest.split_at(end + 1);
        if !(tail.is_empty()
            || tail
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()))
        {
            return None;
        }
        h
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            Some(_) => return None,
            None => rest,
        }
    };
    (!host.is_empty()).then_some((scheme, host))
}

/// A Transit mount path or key name: `[A-Za-z0-9._-]` segments (`/` between
/// segments for a mount), no `.` or `..` segment.
fn valid_path(s: &str, slashes: bool) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        && (slashes || !s.contains('/'))
}

impl ExternalKey {
    /// Checks the description: addresses are `https://host[:port]` (plain
    /// `http://` only for loopback hosts), names are path-safe, files are
    /// absolute paths. The message names what is wrong, never a secret.
    pub fn check(&self) -> Result<(), String> {
        if self.addresses.is_empty() {
            return Err("a key service needs at least one address".into());
        }
        for a in &self.addresses {
            match address_host(a) {
                Some(("https", _)) => {}
                Some(("http", host)) if loopback_host(host) => {}
                Some(("http", _)) => {
                    return Err(format!(
                    "key service address {a}: plain http is accepted only on loopback; use https"
                ))
                }
                _ => {
                    return Err(format!(
                        "key service address {a:?}: expected https://HOST[:PORT]"
                    ))
                }
            }
        }
        if !valid_path(&self.mount, true) {
            return Err(format!(
                "Transit mount {:?}: use letters, digits, . _ - and /",
                self.mount
            ));
        }
        if !valid_path(&self.key, false) {
            return Err(format!(
                "Transit key name {:?}: use letters, digits, . _ -",
                self.key
            ));
        }
        let mut files: Vec<(&str, &PathBuf)> = Vec::new();
        if let Some(ca) = &self.ca_file {
            files.push(("CA file", ca));
        }
        match &self.auth {
            ServiceAuth::Token { token_file } => files.push(("token file", token_file)),
            ServiceAuth::Approle {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                if !valid_path(mount, true) {
                    return Err(format!(
                        "AppRole mount {mount:?}: use letters, digits, . _ - and /"
                    ));
                }
                files.push(("role id file", role_id_file));
                files.push(("secret id file", secret_id_file));
            }
        }
        if self
            .timeout_ms
            .is_some_and(|t| !(100..=600_000).contains(&t))
        {
            return Err("the request timeout must be between 100 ms and 10 minutes".into());
        }
        for (what, f) in files {
            if !f.is_absolute() {
                return Err(format!("{what} {}: give an absolute path", f.display()));
            }
        }
        Ok(())
    }

    /// Where the key lives, for messages and listings: `ADDRESS/v1/MOUNT/keys/KEY`
    /// of the first address (never a credential).
    pub fn location(&self) -> String {
        format!(
            "{}/v1/{}/keys/{}",
            self.addresses.first().map(String::as_str).unwrap_or(""),
            self.mount,
            self.key
        )
    }
}

/// A named key and its versions, oldest first. A key held in the vault
/// always has at least one version; a key held by a service has none here
/// (its versions live in the service) and names the service instead.
#[derive(Debug)]
#[non_exhaustive]
pub struct VaultKey {
    /// Unique name within the vault, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// The layer it belongs to.
    pub kind: KeyKind,
    /// How often it should be rotated, if there is a policy.
    pub rotation_days: Option<u32>,
    /// Its versions in increasing version order (none for a key held by a
    /// service).
    pub versions: Vec<KeyVersion>,
    /// The key service that holds it, for an external customer key.
    pub service: Option<ExternalKey>,
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

    /// The newest version, enabled or not (`None` for a key held by a
    /// service: its versions live there).
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.versions.last()
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

    fn external(addr: &str) -> ExternalKey {
        ExternalKey {
            addresses: vec![addr.to_string()],
            mount: "transit".into(),
            key: "fleet".into(),
            ca_file: None,
            auth: ServiceAuth::Token {
                token_file: "/etc/strata/token".into(),
            },
            manage: false,
            timeout_ms: None,
        }
    }

    #[test]
    fn external_key_descriptions_are_checked() {
        for good in [
            "https://kms.example:8200",
            "https://10.0.0.1",
            "http://127.0.0.1:8200",
            "http://localhost:8200/",
            "http://[::1]:8200",
            "https://[fe80::1]:8200",
        ] {
            assert_eq!(external(good).check(), Ok(()), "{good}");
        }
        for bad in [
            "kms.example:8200",
            "http://kms.example:8200",
            "https://user:pw@kms.example",
            "https://kms.example/v1",
            "https://kms.example:port",
            "https://",
            "ftp://127.0.0.1",
            "https://kms example",
        ] {
            let e = external(bad).check().expect_err(bad);
            assert!(!e.contains("pw@") || bad.contains("pw@"), "{e}");
        }
        let mut k = external("https://kms");
        k.key = "../sys".into();
        assert!(k.check().is_err());
        let mut k = external("https://kms");
        k.mount = "a/../b".into();
        assert!(k.check().is_err());
        let mut k = external("https://kms");
        k.auth = ServiceAuth::Token {
            token_file: "relative/token".into(),
        };
        assert!(k.check().expect_err("relative").contains("absolute"));
        let mut k = external("https://kms");
        k.mount = "team/transit".into();
        assert_eq!(k.check(), Ok(()));
    }

    #[test]
    fn external_key_json_names_its_auth_method_and_refuses_unknown_fields() {
        let mut k = external("https://kms:8200");
        k.auth = ServiceAuth::Approle {
            mount: "approle".into(),
            role_id_file: "/r".into(),
            secret_id_file: "/s".into(),
        };
        let json = serde_json::to_string(&k).expect("json");
        assert!(json.contains("\"method\":\"approle\""), "{json}");
        let back: ExternalKey = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, k);
        let extra = json.replace("\"method\"", "\"secret\":\"x\",\"method\"");
        assert!(serde_json::from_str::<ExternalKey>(&extra).is_err());
        assert_eq!(k.location(), "https://kms:8200/v1/transit/keys/fleet");
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
