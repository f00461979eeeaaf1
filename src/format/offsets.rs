//! Offset arithmetic between a file's plaintext and its backing file.
//!
//! A backing file is a `HEADER_LEN`-byte header followed by stored blocks of
//! `STORED_BLOCK` bytes (4096 bytes of ciphertext, then a 16-byte tag). Block
//! `i` of the plaintext lives at `HEADER_LEN + i * STORED_BLOCK`. The types
//! keep plaintext offsets, block indices and backing offsets apart.

/// Plaintext bytes per block.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes of the integrity tag after each block's ciphertext.
pub const TAG_SIZE: usize = 16;
/// Bytes one block takes in the backing file.
pub const STORED_BLOCK: usize = BLOCK_SIZE + TAG_SIZE;
/// Bytes of the backing-file header.
pub const HEADER_LEN: usize = 128;

/// The index of a 4 KiB block of a file's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

impl BlockIndex {
    /// The block that holds plaintext byte `offset`.
    pub fn containing(offset: u64) -> Self {
        BlockIndex(offset / BLOCK_SIZE as u64)
    }

    /// Where this block's stored form starts in the backing file.
    pub fn backing_offset(self) -> u64 {
        HEADER_LEN as u64 + self.0 * STORED_BLOCK as u64
    }

    /// The plaintext offset of the block's first byte.
    pub fn plain_offset(self) -> u64 {
        self.0 * BLOCK_SIZE as u64
    }
}

/// Number of blocks that hold `size` plaintext bytes.
pub fn blocks_for(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64)
}

/// Backing-file length for a file of `size` plaintext bytes that has a
/// header: the header plus every block up to the one holding the last byte.
pub fn backing_len(size: u64) -> u64 {
    HEADER_LEN as u64 + blocks_for(size) * STORED_BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_sizes_match_format_document() {
        // 0 bytes: header only; 1 byte: one block; 5000 bytes: two blocks.
        assert_eq!(backing_len(0), 128);
        assert_eq!(backing_len(1), 128 + 4112);
        assert_eq!(backing_len(4096), 128 + 4112);
        assert_eq!(backing_len(4097), 128 + 2 * 4112);
        assert_eq!(backing_len(5000), 8352);
    }

    #[test]
    fn block_offsets() {
        assert_eq!(BlockIndex::containing(0), BlockIndex(0));
        assert_eq!(BlockIndex::containing(4095), BlockIndex(0));
        assert_eq!(BlockIndex::containing(4096), BlockIndex(1));
        assert_eq!(BlockIndex(2).backing_offset(), 128 + 2 * 4112);
        assert_eq!(BlockIndex(3).plain_offset(), 12288);
    }
}
