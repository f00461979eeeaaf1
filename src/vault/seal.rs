//! The vault's cryptography: Argon2id key-encryption keys for the key slots,
//! wrapping the vault master key (VMK) in a slot, and sealing the body under
//! the VMK, all with XChaCha20-Poly1305 and random 24-byte nonces.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{AeadInOut, Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::error::VaultError;
use crate::crypto::{self, Key32};

/// Length of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of an Argon2id salt in a key slot.
pub(crate) const SALT_LEN: usize = 16;
/// Length of a wrapped VMK: 32 bytes of ciphertext then the tag.
pub(crate) const WRAPPED_LEN: usize = 32 + TAG_LEN;

/// Smallest accepted Argon2id memory cost: 1 MiB. Below it a guess costs
/// next to nothing; the oldest vaults strata wrote (its format-1 example
/// store) used exactly this, so they keep opening.
pub const MIN_MEMORY_KIB: u32 = 1024;
/// Smallest accepted Argon2id pass count.
pub const MIN_ITERATIONS: u32 = 1;
/// Largest accepted Argon2id memory cost: 1 GiB.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
/// Largest accepted Argon2id pass count. With [`MAX_MEMORY_KIB`] one
/// derivation takes about 7 s on a 2-core x86-64 VM: the most a damaged or
/// hostile vault header can make strata spend before it refuses.
pub const MAX_ITERATIONS: u32 = 10;
/// Largest accepted Argon2id lane count.
pub const MAX_PARALLELISM: u32 = 16;
/// Argon2id settings below this memory (KiB) or [`RECOMMENDED_ITERATIONS`]
/// passes are accepted but warned about when a slot is written: OWASP's
/// smallest recommended Argon2id configuration (19 MiB, 2 passes).
pub const RECOMMENDED_MEMORY_KIB: u32 = 19 * 1024;
/// See [`RECOMMENDED_MEMORY_KIB`].
pub const RECOMMENDED_ITERATIONS: u32 = 2;
/// Shortest passphrase accepted for a new slot, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Argon2id cost parameters of one key slot.
///
/// The default (64 MiB, 3 passes, 1 lane) is what `strata` uses unless told
/// otherwise; see the [module documentation](super) for what it costs.
/// Parameters are checked against a floor and a ceiling ([`KdfParams::check`])
/// both when a slot is written and when one is read, before any derivation:
/// a vault that makes guessing nearly free is refused, and a damaged or
/// hostile file cannot ask for more than seconds of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            memory_kib: 65536,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory {} KiB, {} iterations, parallelism {}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

impl KdfParams {
    /// Checks the parameters against the floor ([`MIN_MEMORY_KIB`],
    /// [`MIN_ITERATIONS`], one lane) and the ceiling ([`MAX_MEMORY_KIB`],
    /// [`MAX_ITERATIONS`], [`MAX_PARALLELISM`]), and Argon2's own rule of
    /// 8 KiB of memory per lane. The error is one line naming the value, the
    /// limit and which side it is on. Costs nothing: callers check before
    /// any derivation.
    pub fn check(&self) -> Result<(), String> {
        if self.parallelism == 0 {
            return Err("parallelism 0 is below the floor of 1 lane".into());
        }
        if self.parallelism > MAX_PARALLELISM {
            return Err(format!(
                "parallelism {} is above the ceiling of {MAX_PARALLELISM} lanes",
                self.parallelism
            ));
        }
        if self.iterations < MIN_ITERATIONS {
            return Err(format!(
                "{} passes is below the floor of {MIN_ITERATIONS}",
                self.iterations
            ));
        }
        if self.iterations > MAX_ITERATIONS {
            return Err(format!(
                "{} passes is above the ceiling of {MAX_ITERATIONS}",
                self.iterations
            ));
        }
        let floor = MIN_MEMORY_KIB.max(8 * self.parallelism);
        if self.memory_kib < floor {
            return Err(format!(
                "memory {} KiB is below the floor of {floor} KiB",
                self.memory_kib
            ));
        }
        if self.memory_kib > MAX_MEMORY_KIB {
            return Err(format!(
                "memory {} KiB is above the ceiling of {MAX_MEMORY_KIB} KiB (1 GiB)",
                self.memory_kib
            ));
        }
        Ok(())
    }

    /// Whether the parameters reach OWASP's smallest recommended Argon2id
    /// configuration ([`RECOMMENDED_MEMORY_KIB`], [`RECOMMENDED_ITERATIONS`]).
    pub fn below_recommended(&self) -> bool {
        self.memory_kib < RECOMMENDED_MEMORY_KIB || self.iterations < RECOMMENDED_ITERATIONS
    }
}

/// Checks a new passphrase: at least [`MIN_PASSPHRASE_CHARS`] characters
/// (bytes, when it is not UTF-8). Existing passphrases are never checked:
/// a vault made before the rule keeps opening.
pub fn check_new_passphrase(passphrase: &[u8]) -> Result<(), VaultError> {
    let chars = match std::str::from_utf8(passphrase) {
        Ok(s) => s.chars().count(),
        Err(_) => passphrase.len(),
    };
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(VaultError::WeakPassphrase(chars));
    }
    Ok(())
}

/// Derives a slot's key-encryption key: Argon2id(secret, salt, params), 32 bytes.
pub(crate) fn derive_kek(
    secret: &[u8],
    salt: &[u8; SALT_LEN],
    kdf: KdfParams,
) -> Result<Key32, VaultError> {
    kdf.check().map_err(VaultError::InvalidKdfParams)?;
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| VaultError::InvalidKdfParams(format!("{kdf}: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut kek = Key32::zero();
    argon
        .hash_password_into(secret, salt, kek.expose_mut())
        .map_err(|e| VaultError::InvalidKdfParams(format!("Argon2id with {kdf} failed: {e}")))?;
    Ok(kek)
}

fn cipher(key: &Key32) -> XChaCha20Poly1305 {
    let key: &Key = key.expose().into();
    XChaCha20Poly1305::new(key)
}

/// Wraps the VMK under `kek`; returns the fresh nonce and `ciphertext ‖ tag`.
pub(crate) fn wrap_vmk(
    kek: &Key32,
    vmk: &Key32,
    ad: &[u8],
) -> ([u8; NONCE_LEN], [u8; WRAPPED_LEN]) {
    let nonce = crypto::random_array::<NONCE_LEN>();
    let mut out = [0u8; WRAPPED_LEN];
    let (body, tag_out) = out.split_at_mut(32);
    body.copy_from_slice(vmk.expose());
    // XChaCha20-Poly1305 only fails on messages near 2^38 bytes; this one is 32.
    match cipher(kek).encrypt_inout_detached(&XNonce::from(nonce), ad, body.into()) {
        Ok(tag) => tag_out.copy_from_slice(&tag),
        Err(_) => unreachable!("XChaCha20-Poly1305 refused a 32-byte message"),
    }
    (nonce, out)
}

/// Unwraps a VMK; `None` when the tag does not verify (wrong secret, or a
/// slot not written for this vault).
pub(crate) fn unwrap_vmk(
    kek: &Key32,
    nonce: &[u8; NONCE_LEN],
    wrapped: &[u8; WRAPPED_LEN],
    ad: &[u8],
) -> Option<Key32> {
    let mut vmk = Key32::zero();
    vmk.expose_mut().copy_from_slice(&wrapped[..32]);
    let tag = Tag::try_from(&wrapped[32..]).ok()?;
    cipher(kek)
        .decrypt_inout_detached(
            &XNonce::from(*nonce),
            ad,
            (&mut vmk.expose_mut()[..]).into(),
            &tag,
        )
        .ok()?;
    Some(vmk)
}

/// Seals the body in place under the VMK: `plaintext` becomes
/// `ciphertext ‖ tag`. Returns the fresh nonce.
pub(crate) fn seal_body(vmk: &Key32, aad: &[u8], buf: &mut Zeroizing<Vec<u8>>) -> [u8; NONCE_LEN] {
    let nonce = crypto::random_array::<NONCE_LEN>();
    // Room for the tag, so appending it never moves the buffer.
    buf.reserve_exact(TAG_LEN);
    let cipher = cipher(vmk);
    match cipher.encrypt_inout_detached(&XNonce::from(nonce), aad, buf.as_mut_slice().into()) {
        Ok(tag) => buf.extend_from_slice(&tag),
        Err(_) => unreachable!("XChaCha20-Poly1305 refused a vault body"),
    }
    nonce
}

/// Opens a sealed body; `None` when it does not authenticate.
pub(crate) fn open_body(
    vmk: &Key32,
    aad: &[u8],
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let tag = Tag::try_from(&sealed[split..]).ok()?;
    let mut buf = Zeroizing::new(sealed[..split].to_vec());
    cipher(vmk)
        .decrypt_inout_detached(&XNonce::from(*nonce), aad, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}
