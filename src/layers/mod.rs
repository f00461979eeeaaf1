//! The cipher layers of one disk and the pipeline that applies them.
//!
//! Write order for a block: plaintext → guest → host → storage CMK → storage
//! PMK → integrity tag. The block cache sits between host and storage: the
//! "upper" half (guest, host) produces what the cache holds, the "lower" half
//! (CMK, PMK, tag) produces what the backing file holds. Each layer is an
//! XTS-AES-256 pass with its own DEK, tweaked by the file id and block index.
//! The tag and the sealed size use keys derived from every layer's DEK.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};
use aes::{Aes256, Block};

use crate::crypto::kdf::derive;
use crate::crypto::tag::{self, Tag};
use crate::crypto::xts::{block_tweak, Xts};
use crate::crypto::{Key32, Key64};
use crate::format::header::{Header, SEALED_SIZE_AT, TAG_AT};
use crate::format::{LayerSet, BLOCK_SIZE, HEADER_LEN};

/// The layer slots, in write order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// Guest layer (ADE): os and data disks only.
    Guest,
    /// Host layer (encryption at host).
    Host,
    /// Storage layer with a customer-managed key.
    StorageCmk,
    /// Storage layer with a platform-managed key.
    StoragePmk,
}

impl Layer {
    /// All slots in write order.
    pub const ALL: [Layer; 4] = [
        Layer::Guest,
        Layer::Host,
        Layer::StorageCmk,
        Layer::StoragePmk,
    ];

    /// Index of the slot in headers (0..4).
    pub fn slot(self) -> usize {
        match self {
            Layer::Guest => 0,
            Layer::Host => 1,
            Layer::StorageCmk => 2,
            Layer::StoragePmk => 3,
        }
    }

    /// The header bit of the slot.
    pub fn bit(self) -> u8 {
        match self {
            Layer::Guest => LayerSet::GUEST,
            Layer::Host => LayerSet::HOST,
            Layer::StorageCmk => LayerSet::CMK,
            Layer::StoragePmk => LayerSet::PMK,
        }
    }

    /// The name used in configs, logs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Guest => "guest",
            Layer::Host => "host",
            Layer::StorageCmk => "storage-cmk",
            Layer::StoragePmk => "storage-pmk",
        }
    }
}

/// The unwrapped data keys of one disk, one per enabled layer, with the
/// generation of each (bumped when a layer is re-keyed).
#[derive(Default)]
pub struct DiskKeys {
    keys: [Option<(Key64, u32)>; 4],
}

impl DiskKeys {
    /// Sets the DEK of `layer`.
    pub fn set(&mut self, layer: Layer, key: Key64, generation: u32) {
        self.keys[layer.slot()] = Some((key, generation));
    }

    /// The DEK of `layer`, if enabled.
    pub fn get(&self, layer: Layer) -> Option<&(Key64, u32)> {
        self.keys[layer.slot()].as_ref()
    }
}

/// Why a stored block or header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The block's tag does not match its ciphertext, position or file.
    #[error("block tag mismatch")]
    BlockTag,
    /// The header's tag does not match.
    #[error("header tag mismatch")]
    HeaderTag,
    /// The header was written with other layers or key generations than
    /// the disk has now.
    #[error("header layers or key generations do not match the disk")]
    LayerMismatch,
    /// The sealed size does not belong to this file.
    #[error("sealed size does not belong to this file")]
    SealedSize,
}

/// The ciphers of one disk.
pub struct Pipeline {
    layers: [Option<Xts>; 4],
    set: LayerSet,
    generations: [u32; 4],
    tag_key: Key32,
    header_key: Key32,
    size_cipher: Aes256,
    /// Seals the size in a backing file's size attribute.
    attr_cipher: Aes256,
    /// Tags a size attribute.
    attr_key: Key32,
    name_key: Key64,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("layers", &self.set.names())
            .finish_non_exhaustive()
    }
}

const HEADER_DOMAIN: &[u8] = b"strata header v1";

impl Pipeline {
    /// Builds the pipeline from a disk's DEKs. `salt` separates the derived
    /// keys of different disks even if their DEKs were equal (the store id
    /// and disk name).
    pub fn new(keys: &DiskKeys, salt: &[u8]) -> Self {
        let mut layers: [Option<Xts>; 4] = [None, None, None, None];
        let mut set = 0u8;
        let mut generations = [0u32; 4];
        let mut ikm: Vec<&[u8]> = Vec::new();
        for layer in Layer::ALL {
            if let Some((key, generation)) = keys.get(layer) {
                layers[layer.slot()] = Some(Xts::new(key));
                set |= layer.bit();
                generations[layer.slot()] = *generation;
                ikm.push(&key.expose()[..]);
            }
        }
        let tag_key: Key32 = derive(&ikm, salt, b"strata block tag v1");
        let header_key: Key32 = derive(&ikm, salt, b"strata header tag v1");
        let size_key: Key32 = derive(&ikm, salt, b"strata sealed size v1");
        let name_key: Key64 = derive(&ikm, salt, b"strata names v1");
        let size_cipher = crate::crypto::xts::aes256(size_key.expose());
        let attr_seal: Key32 = derive(&ikm, salt, b"strata size attribute seal v1");
        let attr_cipher = crate::crypto::xts::aes256(attr_seal.expose());
        let attr_key: Key32 = derive(&ikm, salt, b"strata size attribute tag v1");
        Pipeline {
            layers,
            set: LayerSet(set),
            generations,
            tag_key,
            header_key,
            size_cipher,
            attr_cipher,
            attr_key,
            name_key,
        }
    }

    /// The layers this pipeline applies.
    pub fn layer_set(&self) -> LayerSet {
        self.set
    }

    /// The DEK generation per slot.
    pub fn generations(&self) -> [u32; 4] {
        self.generations
    }

    /// The key for the disk's name cipher (derived from every layer).
    pub fn name_key(&self) -> &Key64 {
        &self.name_key
    }

    /// The disk's name codec: AES-SIV under the name key, or the identity
    /// for a disk with no layer at all (a temp disk without host encryption).
    pub fn name_codec(&self) -> crate::names::NameCodec {
        if self.set.names().is_empty() {
            crate::names::NameCodec::Plain
        } else {
            crate::names::NameCodec::Encrypted(crate::names::NameCipher::new(&self.name_key))
        }
    }

    /// Whether the host layer is on (the cache then holds only ciphertext).
    pub fn has_host(&self) -> bool {
        self.set.has(LayerSet::HOST)
    }

    fn pass(
        &self,
        slots: &[Layer],
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8],
        encrypt: bool,
    ) {
        let tweak = block_tweak(file_id, index);
        for layer in slots {
            if let Some(x) = &self.layers[layer.slot()] {
                // Blocks are always exactly BLOCK_SIZE, which XTS accepts.
                let r = if encrypt {
                    x.encrypt(block, &tweak)
                } else {
                    x.decrypt(block, &tweak)
                };
                debug_assert!(r.is_ok());
            }
        }
    }

    /// Guest then host: plaintext → the form the cache holds.
    pub fn encrypt_upper(&self, file_id: &[u8; 16], index: u64, block: &mut [u8; BLOCK_SIZE]) {
        self.pass(&[Layer::Guest, Layer::Host], file_id, index, block, true);
    }

    /// Host then guest, inverse of `encrypt_upper`.
    pub fn decrypt_upper(&self, file_id: &[u8; 16], index: u64, block: &mut [u8; BLOCK_SIZE]) {
        self.pass(&[Layer::Host, Layer::Guest], file_id, index, block, false);
    }

    /// CMK then PMK, then the tag: cache form → stored form.
    pub fn encrypt_lower(
        &self,
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8; BLOCK_SIZE],
    ) -> Tag {
        self.encrypt_lower_passes(file_id, index, block);
        self.block_tag(file_id, index, block)
    }

    /// CMK then PMK without the tag (which [`Pipeline::block_tags`] then
    /// computes for many blocks at once): the caller must store the block
    /// with the tag of exactly these bytes.
    pub(crate) fn encrypt_lower_passes(
        &self,
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8; BLOCK_SIZE],
    ) {
        self.pass(
            &[Layer::StorageCmk, Layer::StoragePmk],
            file_id,
            index,
            block,
            true,
        );
    }

    /// Checks the tag in constant time, then PMK and CMK: stored form →
    /// cache form. A block whose tag fails is left untouched.
    pub fn decrypt_lower(
        &self,
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8; BLOCK_SIZE],
        stored_tag: &[u8],
    ) -> Result<(), IntegrityError> {
        let want = self.block_tag(file_id, index, block);
        self.decrypt_lower_tagged(file_id, index, block, stored_tag, &want)
    }

    /// As [`Pipeline::decrypt_lower`], with the tag this ciphertext must
    /// carry already computed: `want` must be [`Pipeline::block_tags`]'s
    /// tag of these very bytes at this index, or a tampered block passes.
    pub(crate) fn decrypt_lower_tagged(
        &self,
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8; BLOCK_SIZE],
        stored_tag: &[u8],
        want: &Tag,
    ) -> Result<(), IntegrityError> {
        if !tag::ct_eq(want, stored_tag) {
            return Err(IntegrityError::BlockTag);
        }
        self.decrypt_lower_passes(file_id, index, block);
        Ok(())
    }

    /// PMK then CMK with no tag check: for a block taken as it reads
    /// whatever its tag (one torn by a crash), never for one read as
    /// intact.
    pub(crate) fn decrypt_lower_passes(
        &self,
        file_id: &[u8; 16],
        index: u64,
        block: &mut [u8; BLOCK_SIZE],
    ) {
        self.pass(
            &[Layer::StoragePmk, Layer::StorageCmk],
            file_id,
            index,
            block,
            false,
        );
    }

    /// The tag block `index` of file `file_id` with this stored ciphertext
    /// must carry (used to accept a block torn by a crash, whose contents
    /// are its old and new sectors).
    pub fn block_tag(&self, file_id: &[u8; 16], index: u64, ciphertext: &[u8]) -> Tag {
        tag::block_tag(
            &self.tag_key,
            ciphertext,
            file_id,
            index,
            &self.generation_bytes(),
        )
    }

    /// The tags of several stored blocks of one file, each exactly what
    /// [`Pipeline::block_tag`] gives, hashed side by side (see
    /// [`tag::block_tags`]): `out[i]` is the tag of `blocks[i]`, a block
    /// index and its ciphertext.
    ///
    /// # Panics
    /// If `out` is shorter than `blocks`.
    pub fn block_tags(
        &self,
        file_id: &[u8; 16],
        blocks: &[(u64, &[u8; BLOCK_SIZE])],
        out: &mut [Tag],
    ) {
        let gens = self.generation_bytes();
        let mut tails = [[0u8; tag::BLOCK_TAIL_LEN]; tag::TAG_BATCH];
        let mut cts: [&[u8; BLOCK_SIZE]; tag::TAG_BATCH] = [&[0; BLOCK_SIZE]; tag::TAG_BATCH];
        for (group, out) in blocks
            .chunks(tag::TAG_BATCH)
            .zip(out.chunks_mut(tag::TAG_BATCH))
        {
            for ((tail, ct), (index, block)) in tails.iter_mut().zip(cts.iter_mut()).zip(group) {
                *tail = tag::block_tail(file_id, *index, &gens);
                *ct = block;
            }
            let n = group.len();
            tag::block_tags(&self.tag_key, &cts[..n], &tails[..n], &mut out[..n]);
        }
    }

    /// The DEK generations as the block tags bind them (16 bytes).
    fn generation_bytes(&self) -> [u8; 16] {
        let mut gens = [0u8; 16];
        for (i, g) in self.generations.iter().enumerate() {
            gens[4 * i..4 * i + 4].copy_from_slice(&g.to_le_bytes());
        }
        gens
    }

    /// A fresh header for a new file of this disk (size 0, sealed and tagged).
    pub fn new_header(&self, file_type: crate::format::FileType, file_id: [u8; 16]) -> Header {
        let mut h = Header {
            version: crate::format::FORMAT_VERSION,
            file_type,
            layers: self.set,
            file_id,
            generations: self.generations,
            sealed_size: [0; 16],
            window: crate::format::WriteWindow::default(),
            holes: crate::format::BlockRange::EMPTY,
            tag: [0; 16],
        };
        self.seal_header(&mut h, 0);
        h
    }

    /// Seals `size` into the header and recomputes its tag.
    pub fn seal_header(&self, h: &mut Header, size: u64) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&size.to_le_bytes());
        b[8..].copy_from_slice(&h.file_id[..8]);
        let mut block = Block::from(b);
        self.size_cipher.encrypt_block(&mut block);
        h.sealed_size = block.into();
        let bytes = h.encode();
        h.tag = tag::tag(&self.header_key, HEADER_DOMAIN, &[&bytes[..TAG_AT]]);
    }

    /// Verifies a decoded header against this disk and returns the logical
    /// size it seals.
    pub fn open_header(&self, h: &Header) -> Result<u64, IntegrityError> {
        let bytes = h.encode();
        if !tag::verify(&self.header_key, HEADER_DOMAIN, &[&bytes[..TAG_AT]], &h.tag) {
            return Err(IntegrityError::HeaderTag);
        }
        if h.layers != self.set || h.generations != self.generations {
            return Err(IntegrityError::LayerMismatch);
        }
        let mut block = Block::from(h.sealed_size);
        self.size_cipher.decrypt_block(&mut block);
        let b: [u8; 16] = block.into();
        if b[8..] != h.file_id[..8] {
            return Err(IntegrityError::SealedSize);
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[..8]);
        Ok(u64::from_le_bytes(size))
    }
}

const SIZE_ATTR_DOMAIN: &[u8] = b"strata size attribute v1";

impl Pipeline {
    /// The size attribute of the backing inode of `bound` holding a
    /// `file_type` of `size` bytes, under trust id `trust` (see
    /// `format::size_attr`).
    pub fn seal_size_attr(
        &self,
        file_type: crate::format::FileType,
        size: u64,
        bound: &crate::format::size_attr::Binding,
        trust: u64,
    ) -> crate::format::SizeAttr {
        let ino = bound.ino;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&size.to_le_bytes());
        b[8..].copy_from_slice(&ino.to_le_bytes());
        let mut block = Block::from(b);
        self.attr_cipher.encrypt_block(&mut block);
        let mut a = crate::format::SizeAttr {
            file_type,
            trust,
            sealed: block.into(),
            tag: [0; 16],
        };
        let bytes = a.encode();
        a.tag = tag::tag(
            &self.attr_key,
            SIZE_ATTR_DOMAIN,
            &[
                &bytes[..crate::format::size_attr::SIZE_ATTR_TAG_AT],
                &bound.encode(),
            ],
        );
        a
    }

    /// The file type and size a size attribute read from the backing inode
    /// of `bound` holds, if it was sealed by this disk's keys for that inode
    /// as `bound` describes it, under trust id `trust`; `None` otherwise
    /// (the header then answers).
    pub fn open_size_attr(
        &self,
        a: &crate::format::SizeAttr,
        bound: &crate::format::size_attr::Binding,
        trust: u64,
    ) -> Option<(crate::format::FileType, u64)> {
        let ino = bound.ino;
        let bytes = a.encode();
        if a.trust != trust
            || !tag::verify(
                &self.attr_key,
                SIZE_ATTR_DOMAIN,
                &[
                    &bytes[..crate::format::size_attr::SIZE_ATTR_TAG_AT],
                    &bound.encode(),
                ],
                &a.tag,
            )
        {
            return None;
        }
        let mut block = Block::from(a.sealed);
        self.attr_cipher.decrypt_block(&mut block);
        let b: [u8; 16] = block.into();
        if b[8..] != ino.to_le_bytes() {
            return None;
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[..8]);
        Some((a.file_type, u64::from_le_bytes(size)))
    }
}

const _: () = assert!(SEALED_SIZE_AT + 16 <= TAG_AT && TAG_AT + 16 <= HEADER_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FileType;

    fn keys(layers: &[Layer]) -> DiskKeys {
        let mut k = DiskKeys::default();
        for l in layers {
            k.set(*l, Key64::random(), 1);
        }
        k
    }

    fn combos() -> Vec<Vec<Layer>> {
        (0u8..16)
            .map(|m| {
                Layer::ALL
                    .iter()
                    .copied()
                    .filter(|l| m & l.bit() != 0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_layer_combination_round_trips() {
        for combo in combos() {
            let p = Pipeline::new(&keys(&combo), b"s");
            let id = [3u8; 16];
            let mut block = [0u8; BLOCK_SIZE];
            crate::crypto::fill_random(&mut block);
            let plain = block;
            p.encrypt_upper(&id, 5, &mut block);
            let t = p.encrypt_lower(&id, 5, &mut block);
            if !combo.is_empty() {
                assert_ne!(block, plain, "{combo:?} left plaintext");
            }
            p.decrypt_lower(&id, 5, &mut block, &t).expect("tag");
            p.decrypt_upper(&id, 5, &mut block);
            assert_eq!(block, plain, "{combo:?}");
        }
    }

    #[test]
    fn block_from_another_file_or_place_fails_its_tag() {
        let p = Pipeline::new(&keys(&[Layer::StoragePmk]), b"s");
        let mut block = [1u8; BLOCK_SIZE];
        let t = p.encrypt_lower(&[1; 16], 0, &mut block);
        let mut moved = block;
        assert_eq!(
            p.decrypt_lower(&[2; 16], 0, &mut moved, &t),
            Err(IntegrityError::BlockTag)
        );
        assert_eq!(
            p.decrypt_lower(&[1; 16], 1, &mut moved, &t),
            Err(IntegrityError::BlockTag)
        );
        let mut flipped = block;
        flipped[77] ^= 4;
        assert_eq!(
            p.decrypt_lower(&[1; 16], 0, &mut flipped, &t),
            Err(IntegrityError::BlockTag)
        );
    }

    #[test]
    fn size_attribute_is_believed_only_on_its_inode_under_its_trust_id() {
        use crate::format::size_attr::Binding;
        let p = Pipeline::new(&keys(&[Layer::StoragePmk]), b"s");
        let at = |ino, mtime_sec, mtime_nsec| Binding {
            ino,
            mtime_sec,
            mtime_nsec,
        };
        let on = at(77, 1_700_000_000, 5);
        let a = p.seal_size_attr(FileType::Symlink, 5000, &on, 9);
        assert_eq!(
            p.open_size_attr(&a, &on, 9),
            Some((FileType::Symlink, 5000))
        );
        assert_eq!(
            p.open_size_attr(&a, &at(78, 1_700_000_000, 5), 9),
            None,
            "another inode"
        );
        assert_eq!(
            p.open_size_attr(&a, &at(77, 1_700_000_000, 6), 9),
            None,
            "rewritten since"
        );
        assert_eq!(
            p.open_size_attr(&a, &at(77, 1_700_000_001, 5), 9),
            None,
            "rewritten since"
        );
        assert_eq!(p.open_size_attr(&a, &on, 10), None, "another trust id");
        let other = Pipeline::new(&keys(&[Layer::StoragePmk]), b"s");
        assert_eq!(
            other.open_size_attr(&a, &on, 9),
            None,
            "another disk's keys"
        );
        let mut t = a.clone();
        t.file_type = FileType::Regular;
        assert_eq!(p.open_size_attr(&t, &on, 9), None, "type changed");
        let mut t = a.clone();
        t.sealed[3] ^= 1;
        assert_eq!(p.open_size_attr(&t, &on, 9), None, "size changed");
        // The exact size does not show: two sizes in one block look unrelated.
        let b = p.seal_size_attr(FileType::Symlink, 5001, &on, 9);
        assert_ne!(a.sealed[..8], b.sealed[..8]);
    }

    #[test]
    fn header_seals_size_and_detects_tampering() {
        let p = Pipeline::new(&keys(&[Layer::Host, Layer::StoragePmk]), b"s");
        let mut h = p.new_header(FileType::Regular, [9; 16]);
        p.seal_header(&mut h, 5000);
        assert_eq!(p.open_header(&h), Ok(5000));
        let mut bytes = h.encode();
        bytes[50] ^= 1;
        let bad = Header::decode(&bytes).expect("decodes");
        assert_eq!(p.open_header(&bad), Err(IntegrityError::HeaderTag));
        let other = Pipeline::new(&keys(&[Layer::Host, Layer::StoragePmk]), b"s");
        assert_eq!(other.open_header(&h), Err(IntegrityError::HeaderTag));
    }
}
