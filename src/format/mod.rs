//! Pure codecs of the on-disk format: the backing-file header, the block
//! layout and the offset arithmetic between plaintext and backing files. No
//! I/O and no keys here; see FORMAT.md for the byte tables.

pub mod header;
pub mod offsets;

pub use header::{FileType, Header, HeaderError, LayerSet};
pub use offsets::{BlockIndex, BLOCK_SIZE, HEADER_LEN, STORED_BLOCK};

/// The newest backing-file and store format this build writes.
pub const FORMAT_VERSION: u16 = 1;
