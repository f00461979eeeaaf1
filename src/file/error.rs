//! Errors of one encrypted file, each with the errno the kernel is answered
//! with. Messages name the backing file and block, never data or keys.

use crate::platform::errno;

/// Errors of one encrypted file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O error from the backing file.
    #[error("{file}: {source}")]
    Io {
        /// Backing file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// The header does not decode or fails its tag.
    #[error("{file}: corrupt header: {what}")]
    Header {
        /// Backing file.
        file: String,
        /// What failed.
        what: String,
    },
    /// The header says another type of object (a regular file opened as a
    /// symlink target, or the reverse): the backing metadata was changed.
    #[error("{file}: header says {found}, expected {expected}: the backing metadata was changed")]
    WrongType {
        /// Backing file.
        file: String,
        /// What the header says.
        found: &'static str,
        /// What the caller expected.
        expected: &'static str,
    },
    /// A block failed its tag.
    #[error("{file}: block {block} failed its integrity tag")]
    BlockTag {
        /// Backing file.
        file: String,
        /// Block index.
        block: u64,
    },
    /// A block that is not a recorded hole is all zeros in the backing file.
    #[error("{file}: block {block} is zeroed but is not a recorded hole")]
    Zeroed {
        /// Backing file.
        file: String,
        /// Block index.
        block: u64,
    },
    /// The backing file is shorter than its header says.
    #[error("{file}: truncated: {actual} bytes, block {block} needs {expected}")]
    Truncated {
        /// Backing file.
        file: String,
        /// The first missing block.
        block: u64,
        /// Length the block needs.
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// A size beyond what the format can address.
    #[error("file size {0} is too large")]
    TooLarge(u64),
    /// The file was opened read-only (a read-only mount or a snapshot).
    #[error("{0}: read-only")]
    ReadOnly(String),
}

impl FileError {
    /// The errno to answer the kernel with.
    pub fn errno(&self) -> i32 {
        match self {
            FileError::Io { source, .. } => source.raw_os_error().unwrap_or(errno::EIO),
            FileError::Header { .. }
            | FileError::WrongType { .. }
            | FileError::BlockTag { .. }
            | FileError::Zeroed { .. }
            | FileError::Truncated { .. } => errno::EIO,
            FileError::TooLarge(_) => errno::EFBIG,
            FileError::ReadOnly(_) => errno::EROFS,
        }
    }
}
