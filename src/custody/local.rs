//! Keys held in the vault file: each version's 32-byte material wraps DEKs
//! with XChaCha20-Poly1305 (random 24-byte nonce), associated data = the
//! binding and the key version, stored as hex of nonce ‖ ciphertext ‖ tag.
//! A disabled version neither wraps nor unwraps.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{Binding, CustodyError, KeyHolder};
use crate::crypto::{random_array, Key32, Key64};
use crate::vault::{KeyVersion, VaultKey};

/// Length of a wrapped DEK: nonce, 64-byte DEK, tag.
const WRAPPED_LEN: usize = 24 + 64 + 16;

/// The associated data of a DEK wrapped under `version` of key `name`.
fn aad(at: &Binding<'_>, name: &str, version: u32) -> Vec<u8> {
    let mut aad = at.context(name);
    aad.extend_from_slice(format!("\0{version}").as_bytes());
    aad
}

/// Wraps `dek` under `kek`: hex of nonce ‖ ciphertext ‖ tag.
fn wrap_dek(kek: &Key32, dek: &Key64, aad: &[u8]) -> String {
    let cipher = XChaCha20Poly1305::new(kek.expose().into());
    let nonce: [u8; 24] = random_array();
    // Encryption with a valid key and nonce does not fail.
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: dek.expose(),
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    hex::encode(out)
}

/// Unwraps a DEK; `None` when the tag fails or the encoding is wrong.
fn unwrap_dek(kek: &Key32, wrapped: &str, aad: &[u8]) -> Option<Key64> {
    let raw = hex::decode(wrapped).ok()?;
    if raw.len() != WRAPPED_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(kek.expose().into());
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&raw[..24]);
    let pt = zeroize::Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &raw[24..],
                    aad,
                },
            )
            .ok()?,
    );
    Key64::from_slice(&pt)
}

/// A key held in the vault file.
pub(super) struct Local<'v> {
    key: &'v VaultKey,
}

impl<'v> Local<'v> {
    pub(super) fn new(key: &'v VaultKey) -> Self {
        Local { key }
    }

    /// Version `v`, if it exists and is enabled.
    fn usable(&self, v: u32) -> Result<&'v KeyVersion, CustodyError> {
        match self.key.version(v) {
            None => Err(CustodyError::Missing {
                key: self.key.name.clone(),
                version: Some(v),
            }),
            Some(kv) if !kv.enabled => Err(CustodyError::Refused {
                key: self.key.name.clone(),
                why: format!(
                    "vault key {} version {v} is disabled (revoked)",
                    self.key.name
                ),
            }),
            Some(kv) => Ok(kv),
        }
    }

    fn newest_version(&self) -> Result<&'v KeyVersion, CustodyError> {
        self.key.latest_enabled().ok_or_else(|| {
            CustodyError::Invalid(format!(
                "vault key {} has no enabled version",
                self.key.name
            ))
        })
    }
}

impl KeyHolder for Local<'_> {
    fn name(&self) -> &str {
        &self.key.name
    }

    fn location(&self) -> String {
        "the vault".into()
    }

    fn is_external(&self) -> bool {
        false
    }

    fn newest(&self) -> Result<u32, CustodyError> {
        Ok(self.newest_version()?.version)
    }

    fn wrap(&self, dek: &Key64, at: &Binding<'_>) -> Result<(u32, String), CustodyError> {
        let v = self.newest_version()?;
        let wrapped = wrap_dek(v.material(), dek, &aad(at, &self.key.name, v.version));
        Ok((v.version, wrapped))
    }

    fn unwrap(&self, version: u32, wrapped: &str, at: &Binding<'_>) -> Result<Key64, CustodyError> {
        let v = self.usable(version)?;
        unwrap_dek(v.material(), wrapped, &aad(at, &self.key.name, version)).ok_or_else(|| {
            CustodyError::NotUnwrapped {
                key: self.key.name.clone(),
                why: format!("the wrapped DEK does not authenticate under version {version}"),
            }
        })
    }

    fn rewrap(
        &self,
        version: u32,
        wrapped: &str,
        at: &Binding<'_>,
    ) -> Result<(u32, String), CustodyError> {
        let dek = self.unwrap(version, wrapped, at)?;
        self.wrap(&dek, at)
    }

    fn check(
        &self,
        versions: &[u32],
        _budget: Duration,
    ) -> Result<Vec<Option<String>>, CustodyError> {
        Ok(versions
            .iter()
            .map(|v| match self.usable(*v) {
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            })
            .collect())
    }
}
