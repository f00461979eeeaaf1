//! The external key service: a customer key held by OpenBao (or HashiCorp
//! Vault) Transit. This module owns everything about talking to it — the
//! HTTP client, TLS, credentials, retries and failover over the service's
//! addresses — and answers in terms of one key: encrypt (wrap) a DEK,
//! decrypt (unwrap) it, rewrap it to the newest version, read the key's
//! state, and, for keys strata may administer, create, rotate, disable
//! (soft-delete), enable (restore) and set the rotation period.
//!
//! The key must be a Transit key with key derivation on (`derived=true`)
//! that can encrypt and decrypt (`aes256-gcm96`, `aes128-gcm96`,
//! `chacha20-poly1305`, `xchacha20-poly1305`): every request carries a
//! derivation context naming the store, disk, layer and DEK generation, so a
//! wrapped DEK copied to another disk does not decrypt, and `rewrap` keeps
//! that binding (Transit's associated data would be lost by `rewrap`).
//!
//! Errors say which addresses were tried and why, never a token, a secret
//! id or key material. [`KmsError::Unreachable`] and [`KmsError::Garbage`]
//! mean the service could not give an answer; [`KmsError::Refused`] is its
//! answer "no".

mod auth;
mod http;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::crypto::Key64;
use crate::vault::ExternalKey;
use http::{Http, Method, Reply};

/// Default time one request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands and mounts give the service this many request timeouts before
/// they fail (across retries and addresses).
const BUDGET_FACTOR: u32 = 6;
/// Longest wrapped DEK accepted from a config or the service.
const MAX_CIPHERTEXT: usize = 1024;

/// Why a key service did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No address gave an answer in time: connection refused, TLS failure,
    /// timeout, the service sealed or without an active node.
    #[error("key service unreachable ({addresses}): {cause}")]
    Unreachable {
        /// The addresses tried.
        addresses: String,
        /// The last failure seen.
        cause: String,
    },
    /// An address answered with something that is not a Transit answer.
    #[error("key service {address} answered garbage: {what}")]
    Garbage {
        /// The address that answered.
        address: String,
        /// What was wrong with the answer.
        what: String,
    },
    /// The service refuses: key missing, disabled, version retired, token
    /// or role revoked, permission denied.
    #[error("key service {address} refuses {what}: {why}")]
    Refused {
        /// The address that answered.
        address: String,
        /// What was refused (`key K`, `AppRole login`).
        what: String,
        /// Why, in the service's words or strata's.
        why: String,
    },
    /// The service has no such key (deleted, or never made).
    #[error("key service {address} has no key {key} (deleted, or never made)")]
    NoKey {
        /// The address that answered.
        address: String,
        /// The Transit key.
        key: String,
    },
    /// The service does not decrypt this wrapped DEK although the key is
    /// usable: it was made for another store, disk or layer, or damaged.
    #[error("key service {address} does not decrypt this wrapped DEK with key {key}: {why}")]
    NotUnwrapped {
        /// The address that answered.
        address: String,
        /// The Transit key.
        key: String,
        /// The service's words.
        why: String,
    },
    /// Local configuration: a credential file with a loose mode, an
    /// unreadable CA file, a key that strata cannot use.
    #[error("{0}")]
    Config(String),
}

impl KmsError {
    /// Whether this means the service could not be asked (a running mount
    /// then keeps its keys for the grace period) rather than that it said
    /// no.
    pub fn is_unreachable(&self) -> bool {
        match self {
            KmsError::Unreachable { .. } | KmsError::Garbage { .. } => true,
            KmsError::Refused { .. }
            | KmsError::NoKey { .. }
            | KmsError::NotUnwrapped { .. }
            | KmsError::Config(_) => false,
        }
    }
}

/// A Transit key's state, as read from `MOUNT/keys/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Newest version.
    pub latest_version: u32,
    /// Versions below this are not decrypted any more.
    pub min_decryption_version: u32,
    /// Key type (`aes256-gcm96`…).
    pub key_type: String,
    /// Whether requests need a derivation context.
    pub derived: bool,
    /// Whether the key is soft-deleted (disabled; OpenBao).
    pub soft_deleted: bool,
    /// Whether it can encrypt and decrypt.
    pub supports_encryption: bool,
    /// Versions the service still has.
    pub versions: BTreeSet<u32>,
    /// Automatic rotation period in seconds (0: none).
    pub auto_rotate_secs: u64,
}

impl KeyInfo {
    /// Why a DEK wrapped under `version` cannot be unwrapped now, if so.
    pub fn refuses(&self, version: u32) -> Option<String> {
        if self.soft_deleted {
            return Some("the key is disabled (soft-deleted) in the service".into());
        }
        if version < self.min_decryption_version {
            return Some(format!(
                "version {version} is below the key's min_decryption_version {}",
                self.min_decryption_version
            ));
        }
        if !self.versions.contains(&version) {
            return Some(format!("the service has no version {version} of the key"));
        }
        None
    }
}

#[derive(serde::Deserialize)]
struct KeyReply {
    data: KeyData,
}

#[derive(serde::Deserialize)]
struct KeyData {
    latest_version: u32,
    min_decryption_version: u32,
    #[serde(rename = "type")]
    key_type: String,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    soft_deleted: bool,
    #[serde(default)]
    supports_encryption: bool,
    #[serde(default)]
    supports_decryption: bool,
    keys: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    auto_rotate_period: u64,
}

#[derive(serde::Deserialize)]
struct CipherReply {
    data: CipherData,
}

#[derive(serde::Deserialize)]
struct CipherData {
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct PlainReply {
    data: PlainData,
}

#[derive(serde::Deserialize)]
struct PlainData {
    plaintext: String,
}

/// The version of a Transit ciphertext `vault:vN:BASE64`, if it is one.
pub fn ciphertext_version(ct: &str) -> Option<u32> {
    if ct.len() > MAX_CIPHERTEXT {
        return None;
    }
    let rest = ct.strip_prefix("vault:v")?;
    let (v, body) = rest.split_once(':')?;
    let v: u32 = v.parse().ok().filter(|v| *v > 0)?;
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    ok.then_some(v)
}

/// The client of one key held by a key service.
pub struct Service {
    spec: ExternalKey,
    http: Http,
    auth: auth::Auth,
    budget: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("location", &self.spec.location())
            .finish_non_exhaustive()
    }
}

/// Clients made so far in this process, by description: a daemon keeps its
/// login across checks, and every command reuses one client per key.
fn registry() -> &'static Mutex<Vec<Arc<Service>>> {
    static R: std::sync::OnceLock<Mutex<Vec<Arc<Service>>>> = std::sync::OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// The client of the key `spec` describes (made once per description).
pub fn service(spec: &ExternalKey) -> Result<Arc<Service>, KmsError> {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = r.iter().find(|s| s.spec == *spec) {
        return Ok(s.clone());
    }
    let s = Arc::new(Service::new(spec)?);
    r.push(s.clone());
    Ok(s)
}

fn b64(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Service {
    /// A client for `spec` (the CA file is read now).
    pub fn new(spec: &ExternalKey) -> Result<Service, KmsError> {
        spec.check().map_err(KmsError::Config)?;
        let timeout = spec
            .timeout_ms
            .map(|t| Duration::from_millis(u64::from(t)))
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(Service {
            http: Http::new(spec, timeout)?,
            auth: auth::Auth::new(spec.auth.clone()),
            spec: spec.clone(),
            budget: timeout * BUDGET_FACTOR,
        })
    }

    /// Where the key lives (no credential).
    pub fn location(&self) -> String {
        self.spec.location()
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        self.budget / BUDGET_FACTOR
    }

    fn what(&self) -> String {
        format!("key {}", self.spec.key)
    }

    fn key_path(&self, op: &str) -> String {
        format!("{}/{op}/{}", self.spec.mount, self.spec.key)
    }

    /// Sends a request with a token; a 403 on a token not just made is
    /// retried once with fresh credentials (an expired token, a rotated
    /// token file).
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        fresh: bool,
        budget: Duration,
    ) -> Result<Reply, KmsError> {
        let token = self.auth.token(&self.http, fresh, budget)?;
        let reply = self.http.call(method, path, Some(&token), body, budget)?;
        if reply.status == 403 && !fresh {
            self.auth.forget();
            let token = self.auth.token(&self.http, true, budget)?;
            return self.http.call(method, path, Some(&token), body, budget);
        }
        Ok(reply)
    }

    fn refused(&self, reply: &Reply) -> KmsError {
        let why = match reply.status {
            404 => {
                return KmsError::NoKey {
                    address: reply.address.clone(),
                    key: self.spec.key.clone(),
                }
            }
            403 => format!("permission denied ({})", reply.errors()),
            _ => reply.errors(),
        };
        KmsError::Refused {
            address: reply.address.clone(),
            what: self.what(),
            why,
        }
    }

    fn garbage(&self, reply: &Reply, what: &str) -> KmsError {
        KmsError::Garbage {
            address: reply.address.clone(),
            what: what.to_string(),
        }
    }

    fn key_info_with(&self, fresh: bool, budget: Duration) -> Result<KeyInfo, KmsError> {
        let reply = self.request(
            Method::Get,
            &format!("{}/keys/{}", self.spec.mount, self.spec.key),
            None,
            fresh,
            budget,
        )?;
        if !(200..300).contains(&reply.status) {
            return Err(self.refused(&reply));
        }
        let d = serde_json::from_slice::<KeyReply>(&reply.body)
            .map_err(|_| self.garbage(&reply, "the key's state is not a Transit key"))?
            .data;
        let versions: BTreeSet<u32> = d.keys.keys().filter_map(|k| k.parse().ok()).collect();
        if d.latest_version == 0 || !versions.contains(&d.latest_version) {
            return Err(self.garbage(&reply, "the key's versions do not add up"));
        }
        Ok(KeyInfo {
            latest_version: d.latest_version,
            min_decryption_version: d.min_decryption_version,
            key_type: d.key_type,
            derived: d.derived,
            soft_deleted: d.soft_deleted,
            supports_encryption: d.supports_encryption && d.supports_decryption,
            versions,
            auto_rotate_secs: d.auto_rotate_period,
        })
    }

    /// The key's state.
    pub fn key_info(&self) -> Result<KeyInfo, KmsError> {
        self.key_info_with(false, self.budget)
    }

    /// Checks that the key can hold strata's DEKs: it encrypts and
    /// decrypts, and derives a key per context.
    pub fn usable(&self, info: &KeyInfo) -> Result<(), KmsError> {
        if !info.supports_encryption {
            return Err(KmsError::Config(format!(
                "key {} at {} is of type {}, which cannot encrypt and decrypt: use aes256-gcm96",
                self.spec.key,
                self.location(),
                info.key_type
            )));
        }
        if !info.derived {
            return Err(KmsError::Config(format!(
                "key {} at {} was made without key derivation: strata binds every wrapped DEK to its store, disk and layer through the derivation context; make the key with derived=true",
                self.spec.key,
                self.location()
            )));
        }
        Ok(())
    }

    /// Re-validates with fresh credentials: which of `versions` may still
    /// be unwrapped (`None`) or why not. Uses at most `budget`; an error
    /// means the service could not be asked or refuses this machine.
    pub fn check(
        &self,
        versions: &[u32],
        budget: Duration,
    ) -> Result<Vec<Option<String>>, KmsError> {
        let info = self.key_info_with(true, budget)?;
        self.usable(&info)?;
        Ok(versions.iter().map(|v| info.refuses(*v)).collect())
    }

    /// Encrypts `dek` under the key's newest version with `context`:
    /// returns that version and the ciphertext.
    pub fn encrypt(&self, dek: &Key64, context: &[u8]) -> Result<(u32, String), KmsError> {
        let plain = b64(dek.expose());
        let ctx = b64(context);
        let body =
            http::json_object(&[("plaintext", plain.as_bytes()), ("context", ctx.as_bytes())]);
        let reply = self.request(
            Method::Post,
            &self.key_path("encrypt"),
            Some(&body),
            false,
            self.budget,
        )?;
        self.cipher_reply(&reply)
    }

    fn cipher_reply(&self, reply: &Reply) -> Result<(u32, String), KmsError> {
        if !(200..300).contains(&reply.status) {
            return Err(self.refused(reply));
        }
        let ct = serde_json::from_slice::<CipherReply>(&reply.body)
            .map_err(|_| self.garbage(reply, "no ciphertext in the reply"))?
            .data
            .ciphertext;
        let v = ciphertext_version(&ct)
            .ok_or_else(|| self.garbage(reply, "the ciphertext is not vault:vN:…"))?;
        Ok((v, ct))
    }

    /// Decrypts a wrapped DEK made under `version` with `context`.
    pub fn decrypt(
        &self,
        version: u32,
        ciphertext: &str,
        context: &[u8],
    ) -> Result<Key64, KmsError> {
        let reply = self.post_ciphertext("decrypt", version, ciphertext, context)?;
        if !(200..=299).contains(&reply.status) {
            return Err(self.refused(&reply));
        }
        let plain = Zeroizing::new(
            serde_json::from_slice::<PlainReply>(&reply.body)
                .map_err(|_| self.garbage(&reply, "no plaintext in the reply"))?
                .data
                .plaintext,
        );
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(plain.as_bytes())
                .map_err(|_| self.garbage(&reply, "the plaintext is not base64"))?,
        );
        Key64::from_slice(&raw)
            .ok_or_else(|| self.garbage(&reply, "the plaintext is not a 64-byte DEK"))
    }

    /// Sends wrapped DEK `ciphertext` of `version`, with `context`, to the
    /// key's Transit endpoint `op` (decrypt or rewrap). A ciphertext of
    /// another version is refused before anything is sent; a 400 is
    /// explained by the key's state (see [`Self::explain_400`]).
    fn post_ciphertext(
        &self,
        op: &str,
        version: u32,
        ciphertext: &str,
        context: &[u8],
    ) -> Result<Reply, KmsError> {
        if ciphertext_version(ciphertext) != Some(version) {
            return Err(KmsError::NotUnwrapped {
                address: self.http.addresses(),
                key: self.spec.key.clone(),
                why: format!("the wrapped DEK is not a Transit ciphertext of version {version}"),
            });
        }
        let ctx = b64(context);
        let body = http::json_object(&[
            ("ciphertext", ciphertext.as_bytes()),
            ("context", ctx.as_bytes()),
        ]);
        let reply = self.request(
            Method::Post,
            &self.key_path(op),
            Some(&body),
            false,
            self.budget,
        )?;
        if reply.status == 400 {
            return Err(self.explain_400(&reply, version));
        }
        Ok(reply)
    }

    /// A 400 on decrypt or rewrap is either the key's state (disabled,
    /// version retired: a refusal) or this ciphertext (another context:
    /// not unwrapped); the key's state tells which.
    fn explain_400(&self, reply: &Reply, version: u32) -> KmsError {
        match self.key_info() {
            Ok(info) => match info.refuses(version) {
                Some(why) => KmsError::Refused {
                    address: reply.address.clone(),
                    what: self.what(),
                    why,
                },
                None => KmsError::NotUnwrapped {
                    address: reply.address.clone(),
                    key: self.spec.key.clone(),
                    why: reply.errors(),
                },
            },
            Err(e) => e,
        }
    }

    /// Rewraps a ciphertext of `version` to the key's newest version, in the
    /// service (the DEK never leaves it): returns the new version and
    /// ciphertext.
    pub fn rewrap(
        &self,
        version: u32,
        ciphertext: &str,
        context: &[u8],
    ) -> Result<(u32, String), KmsError> {
        let reply = self.post_ciphertext("rewrap", version, ciphertext, context)?;
        self.cipher_reply(&reply)
    }

    fn admin(&self, method: Method, path: &str, body: Option<&[u8]>) -> Result<(), KmsError> {
        let reply = self.request(method, path, body, false, self.budget)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.refused(&reply))
        }
    }

    /// Creates the key (derived, `aes256-gcm96`) if it does not exist.
    pub fn create(&self) -> Result<(), KmsError> {
        self.admin(
            Method::Post,
            &format!("{}/keys/{}", self.spec.mount, self.spec.key),
            Some(br#"{"type":"aes256-gcm96","derived":true}"#),
        )
    }

    /// Adds a new version to the key; returns it. The version is read from
    /// the answer to the rotation (the active node's): a standby that
    /// serves reads may not have it yet.
    pub fn rotate(&self) -> Result<u32, KmsError> {
        let reply = self.request(
            Method::Post,
            &format!("{}/keys/{}/rotate", self.spec.mount, self.spec.key),
            None,
            false,
            self.budget,
        )?;
        if !(200..300).contains(&reply.status) {
            return Err(self.refused(&reply));
        }
        let v = match serde_json::from_slice::<KeyReply>(&reply.body) {
            Ok(k) => k.data.latest_version,
            // Services that answer a rotation with no body (204).
            Err(_) => return Ok(self.key_info()?.latest_version),
        };
        // Read our write: what follows (a rewrap) reads the key's state,
        // perhaps from a standby; wait until it has the new version.
        let deadline = std::time::Instant::now() + self.budget;
        while std::time::Instant::now() < deadline {
            if self.key_info()?.latest_version >= v {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(v)
    }

    /// Disables the key (soft delete): the service refuses every use until
    /// it is restored.
    pub fn disable(&self) -> Result<(), KmsError> {
        self.admin(
            Method::Delete,
            &format!("{}/keys/{}/soft-delete", self.spec.mount, self.spec.key),
            None,
        )
    }

    /// Enables a disabled key again (restores a soft delete).
    pub fn enable(&self) -> Result<(), KmsError> {
        self.admin(
            Method::Post,
            &format!(
                "{}/keys/{}/soft-delete-restore",
                self.spec.mount, self.spec.key
            ),
            None,
        )
    }

    /// Sets the service's automatic rotation period (0: none).
    pub fn set_rotation_days(&self, days: u32) -> Result<(), KmsError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "auto_rotate_period": format!("{}h", u64::from(days) * 24),
        }))
        .unwrap_or_default();
        self.admin(
            Method::Post,
            &format!("{}/keys/{}/config", self.spec.mount, self.spec.key),
            Some(&body),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_versions_are_parsed_strictly() {
        assert_eq!(ciphertext_version("vault:v1:abc+/="), Some(1));
        assert_eq!(ciphertext_version("vault:v12:QUJD"), Some(12));
        for bad in [
            "vault:v0:abc",
            "vault:v1:",
            "vault:vx:abc",
            "vault:v1:a b",
            "vault:v1:ab\"c",
            "v1:abc",
            "",
        ] {
            assert_eq!(ciphertext_version(bad), None, "{bad}");
        }
        assert_eq!(
            ciphertext_version(&format!("vault:v1:{}", "A".repeat(2000))),
            None
        );
    }

    #[test]
    fn key_state_decides_which_versions_unwrap() {
        let info = KeyInfo {
            latest_version: 3,
            min_decryption_version: 2,
            key_type: "aes256-gcm96".into(),
            derived: true,
            soft_deleted: false,
            supports_encryption: true,
            versions: [1, 2, 3].into_iter().collect(),
            auto_rotate_secs: 0,
        };
        assert!(info
            .refuses(1)
            .is_some_and(|w| w.contains("min_decryption_version")));
        assert_eq!(info.refuses(2), None);
        assert_eq!(info.refuses(3), None);
        assert!(info.refuses(4).is_some());
        let off = KeyInfo {
            soft_deleted: true,
            ..info
        };
        assert!(off.refuses(3).is_some_and(|w| w.contains("disabled")));
    }

    #[test]
    fn credential_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        std::fs::write(&p, "s.SECRET-TOKEN-VALUE\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = auth::read_credential(&p, "token file").expect_err("0644");
        let msg = e.to_string();
        assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let t = auth::read_credential(&p, "token file").expect("0600");
        assert_eq!(t.expose(), b"s.SECRET-TOKEN-VALUE");
        assert_eq!(format!("{t:?}"), "[redacted]");
        std::fs::write(&p, "\n").expect("write");
        assert!(auth::read_credential(&p, "token file").is_err());
        std::fs::write(&p, "two words").expect("write");
        let e = auth::read_credential(&p, "token file").expect_err("space");
        assert!(!e.to_string().contains("words"), "{e}");
    }
}
