//! The keyed, nonce-free integrity tag (BLAKE3 in keyed mode, truncated to
//! 16 bytes) and constant-time comparison. A keyed BLAKE3 hasher carries
//! its key in its state: every hasher and output reader here is wiped
//! (blake3's `zeroize` feature) once the tag is out.

use zeroize::Zeroize;

use super::Key32;

/// Length of every stored tag.
pub const TAG_LEN: usize = 16;

/// A 16-byte tag.
pub type Tag = [u8; TAG_LEN];

/// Computes the tag of `parts` (fed in order, each length-prefixed so that
/// field boundaries cannot shift) under `key`.
pub fn tag(key: &Key32, domain: &[u8], parts: &[&[u8]]) -> Tag {
    let mut h = blake3::Hasher::new_keyed(key.expose());
    h.update(&(domain.len() as u64).to_le_bytes());
    h.update(domain);
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    finish(h)
}

/// The first 16 bytes of the hasher's output; the hasher and its reader
/// are wiped.
fn finish(mut h: blake3::Hasher) -> Tag {
    let mut out = [0u8; TAG_LEN];
    let mut reader = h.finalize_xof();
    reader.fill(&mut out);
    reader.zeroize();
    h.zeroize();
    out
}

/// The tag of one stored block: keyed BLAKE3 over the ciphertext followed
/// by the fixed-length fields that bind it to its place (file id, block
/// index, DEK generations), truncated to 16 bytes. Every input has a fixed
/// length, so no length prefixes are needed, and the ciphertext leads so
/// that its whole 1 KiB chunks hash in one SIMD pass.
pub fn block_tag(
    key: &Key32,
    ciphertext: &[u8],
    file_id: &[u8; 16],
    index: u64,
    generations: &[u8; 16],
) -> Tag {
    let mut h = blake3::Hasher::new_keyed(key.expose());
    h.update(ciphertext);
    h.update(file_id);
    h.update(&index.to_le_bytes());
    h.update(generations);
    finish(h)
}

/// Checks `expected` against the tag of `parts` in constant time.
pub fn verify(key: &Key32, domain: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    ct_eq(&tag(key, domain, parts), expected)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_keyed_known_answer() {
        // Official BLAKE3 test vector: key "whats the Elvish word for friend",
        // input of length 0, keyed_hash prefix.
        let key = Key32::from_bytes(b"whats the Elvish word for friend");
        let h = blake3::keyed_hash(key.expose(), b"");
        assert_eq!(&h.to_hex()[..32], "92b2b75604ed3c761f9d6f62392c8a92");
    }

    #[test]
    fn tag_changes_with_any_part_or_boundary() {
        let k = Key32::random();
        let t = tag(&k, b"d", &[b"ab", b"c"]);
        assert!(verify(&k, b"d", &[b"ab", b"c"], &t));
        assert!(!verify(&k, b"d", &[b"a", b"bc"], &t));
        assert!(!verify(&k, b"e", &[b"ab", b"c"], &t));
        assert!(!verify(&Key32::random(), b"d", &[b"ab", b"c"], &t));
    }
}
