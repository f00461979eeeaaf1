//! Secret byte containers: zeroized on drop, never printed, never cloned by
//! accident (`duplicate()` is the explicit, greppable way).

use zeroize::{Zeroize, Zeroizing};

/// A fixed-size secret key of `N` bytes, heap-allocated so moves never leave
/// stray copies on the stack, zeroized on drop.
pub struct SecretKey<const N: usize>(Box<[u8; N]>);

/// A 256-bit key.
pub type Key32 = SecretKey<32>;
/// A 512-bit key (an XTS-AES-256 key pair).
pub type Key64 = SecretKey<64>;

impl<const N: usize> SecretKey<N> {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Self {
        let mut k = Self::zero();
        super::fill_random(&mut k.0[..]);
        k
    }

    /// An all-zero key, to be filled in place.
    pub fn zero() -> Self {
        SecretKey(Box::new([0u8; N]))
    }

    /// Copies a key out of `bytes`; the caller zeroizes its own copy.
    pub fn from_bytes(bytes: &[u8; N]) -> Self {
        let mut k = Self::zero();
        k.0.copy_from_slice(bytes);
        k
    }

    /// Copies a key out of a slice of exactly `N` bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != N {
            return None;
        }
        let mut k = Self::zero();
        k.0.copy_from_slice(bytes);
        Some(k)
    }

    /// The key bytes, for handing to a cipher.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// Mutable access, for filling a key in place (KDF output).
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }

    /// An explicit copy of the key.
    pub fn duplicate(&self) -> Self {
        Self::from_bytes(&self.0)
    }
}

impl<const N: usize> Drop for SecretKey<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> std::fmt::Debug for SecretKey<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<const N: usize> PartialEq for SecretKey<N> {
    fn eq(&self, other: &Self) -> bool {
        super::tag::ct_eq(&self.0[..], &other.0[..])
    }
}

/// A variable-length secret (passphrases, recovery keys, serialized key
/// material), zeroized on drop and printed as `[redacted]`.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `v`; it is zeroized when this value drops.
    pub fn new(v: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(v))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_material() {
        let k = Key32::from_bytes(&[0x41; 32]);
        assert_eq!(format!("{k:?}"), "[redacted]");
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn random_keys_differ() {
        assert!(Key64::random() != Key64::random());
    }
}
