//! Cryptographic building blocks over RustCrypto: key newtypes that zeroize on
//! drop, randomness, the batched XTS-AES-256 sector cipher, the keyed block tag
//! and key derivation. Nothing here knows about files, disks or FUSE.

pub mod kdf;
pub mod secret;
pub mod tag;
pub mod xts;

pub use secret::{Key32, Key64, SecretBytes};

/// Fills `buf` from the operating system's random source.
///
/// # Panics
/// Never in practice: a failing OS RNG leaves nothing safe to do, so this
/// aborts the process rather than continue with predictable keys.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        eprintln!("strata: the operating system's random source failed: {e}");
        std::process::abort();
    }
}

/// Returns `N` random bytes.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}
