//! Pure codecs of the on-disk format: the backing-file header, the block
//! layout and the offset arithmetic between plaintext and backing files. No
//! I/O and no keys here; see FORMAT.md for the byte tables.

pub mod header;
pub mod offsets;
pub mod size_attr;

pub use header::{BlockRange, FileType, Header, HeaderError, LayerSet, WriteWindow};
pub use offsets::{BlockIndex, BLOCK_SIZE, HEADER_LEN, STORED_BLOCK};
pub use size_attr::{SizeAttr, SIZE_ATTR_NAME};

/// The newest backing-file header format this build writes (2 adds the
/// write window and the hole range to 1). Stores have their own format
/// (`store::config::STORE_FORMAT`).
pub const FORMAT_VERSION: u16 = 2;
