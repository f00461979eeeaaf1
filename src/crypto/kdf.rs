//! Key derivation: HKDF-SHA256 with one label per derived key.

use hkdf::Hkdf;
use sha2::Sha256;

use super::secret::SecretKey;

/// Derives an `N`-byte key from `ikm` (all input key material, concatenated
/// by the caller) under the label `info`. Every distinct use of a derived key
/// has its own label.
pub fn derive<const N: usize>(ikm: &[&[u8]], salt: &[u8], info: &[u8]) -> SecretKey<N> {
    let mut material = zeroize::Zeroizing::new(Vec::new());
    for part in ikm {
        material.extend_from_slice(&(part.len() as u64).to_le_bytes());
        material.extend_from_slice(part);
    }
    let hk = Hkdf::<Sha256>::new(Some(salt), &material);
    let mut out = SecretKey::<N>::zero();
    // HKDF-SHA256 can produce up to 8160 bytes; strata asks for at most 64.
    if hk.expand(info, out.expose_mut()).is_err() {
        unreachable!("HKDF output length {N} is within SHA-256's limit");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").expect("hex");
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").expect("hex");
        let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).expect("expand");
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn labels_separate_keys() {
        let a: SecretKey<32> = derive(&[b"k"], b"", b"one");
        let b: SecretKey<32> = derive(&[b"k"], b"", b"two");
        assert!(a != b);
    }
}
