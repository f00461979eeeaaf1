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
/// by the fixed-length fields that bind it to its place ([`block_tail`]),
/// truncated to 16 bytes. Every input has a fixed length, so no length
/// prefixes are needed, and the ciphertext leads so that its whole 1 KiB
/// chunks hash in one SIMD pass.
pub fn block_tag(
    key: &Key32,
    ciphertext: &[u8],
    file_id: &[u8; 16],
    index: u64,
    generations: &[u8; 16],
) -> Tag {
    hash_block(key, ciphertext, &block_tail(file_id, index, generations))
}

/// The fields after the ciphertext in a block's tag input, in order: file
/// id, block index (little-endian), DEK generations.
pub fn block_tail(file_id: &[u8; 16], index: u64, generations: &[u8; 16]) -> [u8; BLOCK_TAIL_LEN] {
    let mut tail = [0u8; BLOCK_TAIL_LEN];
    tail[..16].copy_from_slice(file_id);
    tail[16..24].copy_from_slice(&index.to_le_bytes());
    tail[24..].copy_from_slice(generations);
    tail
}

/// Keyed BLAKE3 of `ciphertext ‖ tail`, through the hasher.
fn hash_block(key: &Key32, ciphertext: &[u8], tail: &[u8]) -> Tag {
    let mut h = blake3::Hasher::new_keyed(key.expose());
    h.update(ciphertext);
    h.update(tail);
    finish(h)
}

/// Length of the fields after the ciphertext in a block's tag input
/// ([`block_tail`]).
pub const BLOCK_TAIL_LEN: usize = 40;

/// How many blocks' tags [`block_tags`] hashes side by side.
pub const TAG_BATCH: usize = 16;

/// BLAKE3 domain flags (BLAKE3 specification, table 3).
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 2;
const PARENT: u8 = 4;
const ROOT: u8 = 8;
const KEYED_HASH: u8 = 16;
const CHUNK_LEN: usize = 1024;
const CV_LEN: usize = 32;
const CHUNKS: usize = crate::format::BLOCK_SIZE / CHUNK_LEN;
const _: () = assert!(CHUNKS == 4 && BLOCK_TAIL_LEN <= 64);

/// The tags of many blocks at once, byte for byte those of [`block_tag`]:
/// `out[i]` is the tag of `blocks[i]` followed by `tails[i]` (the block's
/// file id, index and generations).
///
/// One block's input is four whole 1 KiB chunks and a 40-byte fifth, so
/// one hash fills only four of the sixteen SIMD lanes BLAKE3 has on
/// AVX-512 (eight on AVX2); hashing chunk j of sixteen blocks together
/// fills them all. The tree is the one BLAKE3 builds for 4,136 bytes:
/// root = parent(parent(parent(c0, c1), parent(c2, c3)), c4), where c4 is
/// the tail as chunk 4. The compression functions are the crate's
/// (`blake3::platform`, its SIMD dispatch); only the tree is assembled
/// here, and the tests hold it to the crate's own hasher. A group's last
/// one to three blocks (which `hash_many` would hash chunk after chunk)
/// go through the hasher instead. Chaining values
/// are as secret as the key (they would let tags of other inputs be
/// forged): every buffer holding one is wiped before returning.
///
/// # Panics
/// If the three slices differ in length.
pub fn block_tags(
    key: &Key32,
    blocks: &[&[u8; crate::format::BLOCK_SIZE]],
    tails: &[[u8; BLOCK_TAIL_LEN]],
    out: &mut [Tag],
) {
    block_tags_on(
        blake3::platform::Platform::detect(),
        key,
        blocks,
        tails,
        out,
    );
}

/// [`block_tags`] with the SIMD code of `platform` (the tests run every
/// one this CPU has).
fn block_tags_on(
    platform: blake3::platform::Platform,
    key: &Key32,
    blocks: &[&[u8; crate::format::BLOCK_SIZE]],
    tails: &[[u8; BLOCK_TAIL_LEN]],
    out: &mut [Tag],
) {
    use blake3::IncrementCounter;
    use zeroize::Zeroizing;

    assert!(blocks.len() == tails.len() && blocks.len() == out.len());
    if blocks.len() < 4 {
        for ((block, tail), out) in blocks.iter().zip(tails).zip(out) {
            *out = hash_block(key, *block, tail);
        }
        return;
    }
    let mut kw = Zeroizing::new([0u32; 8]);
    for (w, b) in kw.iter_mut().zip(key.expose().chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let flags = KEYED_HASH;
    // Per group: the chunk CVs (chunk-major), then the two level-one
    // parents' inputs and outputs, then the level-two parents.
    let mut chunk_cvs = Zeroizing::new([[0u8; CV_LEN * TAG_BATCH]; CHUNKS]);
    let mut pairs = Zeroizing::new([[0u8; 2 * CV_LEN]; 2 * TAG_BATCH]);
    let mut halves = Zeroizing::new([0u8; 2 * CV_LEN * TAG_BATCH]);
    let mut lefts = Zeroizing::new([0u8; CV_LEN * TAG_BATCH]);
    let mut node = Zeroizing::new([0u8; 64]);
    let mut cv = Zeroizing::new([0u32; 8]);
    for ((blocks, tails), out) in blocks
        .chunks(TAG_BATCH)
        .zip(tails.chunks(TAG_BATCH))
        .zip(out.chunks_mut(TAG_BATCH))
    {
        // hash_many fills its lanes four inputs at a time and hashes the
        // rest one by one, chunk after chunk: the last one to three blocks
        // of a group go through the hasher, which keeps four lanes busy
        // within one block.
        let n = blocks.len() - blocks.len() % 4;
        let (blocks, singles) = blocks.split_at(n);
        let (tails, single_tails) = tails.split_at(n);
        let (out, single_out) = out.split_at_mut(n);
        for ((block, tail), out) in singles.iter().zip(single_tails).zip(single_out) {
            *out = hash_block(key, *block, tail);
        }
        if n == 0 {
            continue;
        }
        for (j, cvs) in chunk_cvs.iter_mut().enumerate() {
            let mut inputs: [&[u8; CHUNK_LEN]; TAG_BATCH] = [&[0; CHUNK_LEN]; TAG_BATCH];
            for (input, block) in inputs.iter_mut().zip(blocks) {
                let (chunks, _) = block.as_chunks::<CHUNK_LEN>();
                *input = &chunks[j];
            }
            platform.hash_many(
                &inputs[..n],
                &kw,
                j as u64,
                IncrementCounter::No,
                flags,
                CHUNK_START,
                CHUNK_END,
                &mut cvs[..CV_LEN * n],
            );
        }
        for i in 0..n {
            for h in 0..2 {
                let pair = &mut pairs[2 * i + h];
                pair[..CV_LEN].copy_from_slice(&chunk_cvs[2 * h][CV_LEN * i..CV_LEN * (i + 1)]);
                pair[CV_LEN..].copy_from_slice(&chunk_cvs[2 * h + 1][CV_LEN * i..CV_LEN * (i + 1)]);
            }
        }
        let mut inputs: [&[u8; 2 * CV_LEN]; 2 * TAG_BATCH] = [&[0; 2 * CV_LEN]; 2 * TAG_BATCH];
        for (input, pair) in inputs.iter_mut().zip(pairs.iter()) {
            *input = pair;
        }
        platform.hash_many(
            &inputs[..2 * n],
            &kw,
            0,
            IncrementCounter::No,
            flags | PARENT,
            0,
            0,
            &mut halves[..2 * CV_LEN * n],
        );
        let (quads, _) = halves.as_chunks::<{ 2 * CV_LEN }>();
        for (input, quad) in inputs.iter_mut().zip(quads) {
            *input = quad;
        }
        platform.hash_many(
            &inputs[..n],
            &kw,
            0,
            IncrementCounter::No,
            flags | PARENT,
            0,
            0,
            &mut lefts[..CV_LEN * n],
        );
        for (i, (tail, out)) in tails.iter().zip(out.iter_mut()).enumerate() {
            node.fill(0);
            node[..BLOCK_TAIL_LEN].copy_from_slice(tail);
            *cv = *kw;
            platform.compress_in_place(
                &mut cv,
                &node,
                BLOCK_TAIL_LEN as u8,
                CHUNKS as u64,
                flags | CHUNK_START | CHUNK_END,
            );
            node[..CV_LEN].copy_from_slice(&lefts[CV_LEN * i..CV_LEN * (i + 1)]);
            for (b, w) in node[CV_LEN..].chunks_exact_mut(4).zip(cv.iter()) {
                b.copy_from_slice(&w.to_le_bytes());
            }
            let root =
                Zeroizing::new(platform.compress_xof(&kw, &node, 64, 0, flags | PARENT | ROOT));
            out.copy_from_slice(&root[..TAG_LEN]);
        }
    }
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

    fn tail(seed: u8) -> [u8; BLOCK_TAIL_LEN] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    #[test]
    fn batched_block_tags_equal_the_hasher_for_every_batch_shape() {
        let key = Key32::random();
        let blocks: Vec<[u8; crate::format::BLOCK_SIZE]> = (0..2 * TAG_BATCH + 3)
            .map(|_| crate::crypto::random_array())
            .collect();
        let tails: Vec<_> = (0..blocks.len()).map(|i| tail(i as u8)).collect();
        use blake3::platform::Platform;
        // The detected one (AVX-512 where the CPU has it), the portable
        // code, and on x86 every narrower instruction set the CPU has.
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        let narrower = [Platform::sse2(), Platform::sse41(), Platform::avx2()];
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        let narrower: [Option<Platform>; 0] = [];
        let platforms: Vec<Platform> = [Platform::detect(), Platform::portable()]
            .into_iter()
            .chain(narrower.into_iter().flatten())
            .collect();
        let shapes = [1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, blocks.len()];
        for (platform, n) in platforms.into_iter().flat_map(|p| shapes.map(|n| (p, n))) {
            let refs: Vec<&[u8; crate::format::BLOCK_SIZE]> = blocks[..n].iter().collect();
            let mut out = vec![[0u8; TAG_LEN]; n];
            block_tags_on(platform, &key, &refs, &tails[..n], &mut out);
            for (i, t) in out.iter().enumerate() {
                let (id, rest) = tails[i].split_at(16);
                let (index, gens) = rest.split_at(8);
                let want = block_tag(
                    &key,
                    &blocks[i],
                    id.try_into().expect("16 bytes"),
                    u64::from_le_bytes(index.try_into().expect("8 bytes")),
                    gens.try_into().expect("16 bytes"),
                );
                assert_eq!(*t, want, "block {i} of a batch of {n} on {platform:?}");
            }
        }
    }

    #[test]
    fn batched_block_tag_is_keyed_blake3_of_the_block_and_its_tail() {
        // The BLAKE3 test vectors' input pattern (byte i is i mod 251) and
        // key, at the tag's input length of 4,136 bytes, as every block of
        // a full batch (the batched tree, not the hasher's path for short
        // groups).
        let key = Key32::from_bytes(b"whats the Elvish word for friend");
        let input: Vec<u8> = (0..crate::format::BLOCK_SIZE + BLOCK_TAIL_LEN)
            .map(|i| (i % 251) as u8)
            .collect();
        let want = blake3::keyed_hash(key.expose(), &input);
        let tags_of = |input: &[u8]| {
            let (block, tail) = input.split_at(crate::format::BLOCK_SIZE);
            let block: &[u8; crate::format::BLOCK_SIZE] = block.try_into().expect("a block");
            let tail: [u8; BLOCK_TAIL_LEN] = tail.try_into().expect("a tail");
            let mut out = [[0u8; TAG_LEN]; TAG_BATCH];
            block_tags(&key, &[block; TAG_BATCH], &[tail; TAG_BATCH], &mut out);
            out
        };
        let tags = tags_of(&input);
        for t in tags {
            assert_eq!(t, want.as_bytes()[..TAG_LEN]);
        }
        // A change in any chunk or in the tail changes the tag.
        for at in [0, 1024, 2048, 3072, 4095, 4096, 4135] {
            let mut other = input.clone();
            other[at] ^= 1;
            assert_ne!(tags_of(&other)[0], tags[0], "byte {at}");
        }
    }
}
