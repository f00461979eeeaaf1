//! The 128-byte header at the start of every backing file.
//!
//! ```text
//! off  len  field
//!   0    8  magic "STRATA\0F"
//!   8    2  format version, u16 LE (1 or 2)
//!  10    1  file type: 1 regular file, 2 symlink target
//!  11    1  layers applied, bit set: 1 guest, 2 host, 4 storage CMK, 8 storage PMK
//!  12    4  flags, u32 LE; no flag is defined and any set bit is refused
//!  16   16  file id (random; the XTS tweak and tag bind to it)
//!  32   16  DEK generation of each layer slot, u32 LE each, in the order
//!           guest, host, storage CMK, storage PMK (0 where the layer is off)
//!  48   16  sealed logical size: AES-256 of (size u64 LE ‖ file id[0..8])
//!  64    8  version 2: write window, first block, u64 LE
//!  72    8  version 2: write window, end block (exclusive), u64 LE
//!  80    8  version 2: session that set the window, u64 LE
//!  88    8  version 2: hole range, first block, u64 LE
//!  96    8  version 2: hole range, end block (exclusive), u64 LE
//! 104    8  reserved, zero
//! 112   16  header tag: keyed BLAKE3 over bytes 0..112
//! ```
//! In version 1, bytes 64..112 are reserved and zero: no write window, and
//! any all-zero stored block is a hole. This module encodes and decodes the
//! plain fields; sealing the size and the tag need keys and live in `layers`.

use super::{FORMAT_VERSION, HEADER_LEN};

/// A range of block indices, `first..end`; empty when `first >= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockRange {
    /// First block.
    pub first: u64,
    /// One past the last block.
    pub end: u64,
}

impl BlockRange {
    /// The empty range.
    pub const EMPTY: BlockRange = BlockRange { first: 0, end: 0 };
    /// Every block: the hole range of a version 1 file, where any all-zero
    /// stored block is a hole.
    pub const ALL: BlockRange = BlockRange {
        first: 0,
        end: u64::MAX,
    };

    /// Whether no block is in the range.
    pub fn is_empty(self) -> bool {
        self.first >= self.end
    }

    /// Whether block `i` is in the range.
    pub fn contains(self, i: u64) -> bool {
        self.first <= i && i < self.end
    }

    /// Whether every block of `other` is in this range.
    pub fn covers(self, other: BlockRange) -> bool {
        other.is_empty() || (self.first <= other.first && other.end <= self.end)
    }

    /// The smallest range holding both.
    pub fn union(self, other: BlockRange) -> BlockRange {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        BlockRange {
            first: self.first.min(other.first),
            end: self.end.max(other.end),
        }
    }

    /// This range cut to end at `end` at the latest.
    pub fn clip(self, end: u64) -> BlockRange {
        let r = BlockRange {
            first: self.first,
            end: self.end.min(end),
        };
        if r.is_empty() {
            BlockRange::EMPTY
        } else {
            r
        }
    }
}

/// Where a file's blocks may be in flight: the blocks a mount session may
/// have been writing when it last wrote this header. Made durable before
/// any block inside it is written, so after a crash of that session a block
/// inside it that fails its tag is known to be torn, not tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteWindow {
    /// The blocks.
    pub blocks: BlockRange,
    /// The session (a random id per read-write mount) that set it.
    pub session: u64,
}

/// Header magic.
pub const MAGIC: &[u8; 8] = b"STRATA\0F";
/// Offset of the sealed size.
pub const SEALED_SIZE_AT: usize = 48;
/// Offset of the header tag; everything before it is tagged.
pub const TAG_AT: usize = 112;

/// What a backing file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file's contents.
    Regular,
    /// A symbolic link's target.
    Symlink,
}

/// The set of cipher layers applied to a file's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerSet(pub u8);

impl LayerSet {
    /// Guest layer (ADE).
    pub const GUEST: u8 = 1;
    /// Host layer (encryption at host).
    pub const HOST: u8 = 2;
    /// Storage layer, customer-managed key.
    pub const CMK: u8 = 4;
    /// Storage layer, platform-managed key.
    pub const PMK: u8 = 8;
    const ALL: u8 = 15;

    /// Whether `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Human names of the set layers, in write order.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::GUEST, "guest"),
            (Self::HOST, "host"),
            (Self::CMK, "storage-cmk"),
            (Self::PMK, "storage-pmk"),
        ]
        .iter()
        .filter(|(b, _)| self.has(*b))
        .map(|(_, n)| *n)
        .collect()
    }
}

/// The decoded plain fields of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version the file was written with.
    pub version: u16,
    /// What the file holds.
    pub file_type: FileType,
    /// Layers applied to its blocks.
    pub layers: LayerSet,
    /// The file's random id.
    pub file_id: [u8; 16],
    /// DEK generation per layer slot (guest, host, CMK, PMK).
    pub generations: [u32; 4],
    /// The sealed logical size, as stored.
    pub sealed_size: [u8; 16],
    /// Blocks possibly in flight (version 2; empty in version 1).
    pub window: WriteWindow,
    /// Blocks where an all-zero stored block is a hole (version 2; every
    /// block in version 1). Outside it, an all-zero stored block is damage.
    pub holes: BlockRange,
    /// The stored header tag.
    pub tag: [u8; 16],
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than 128 bytes.
    #[error("header is truncated ({0} of 128 bytes)")]
    Truncated(usize),
    /// The magic does not match: not a strata backing file.
    #[error("not a strata backing file (bad magic)")]
    BadMagic,
    /// Written by a newer strata.
    #[error("backing file has format version {0}; this strata reads up to {FORMAT_VERSION}")]
    NewerVersion(u16),
    /// Version 0 or another impossible value.
    #[error("backing file has invalid format version {0}")]
    BadVersion(u16),
    /// Unknown file type byte.
    #[error("unknown file type {0}")]
    BadType(u8),
    /// Unknown layer bits, or flags set.
    #[error("unknown layer bits or flags ({0:#x})")]
    UnknownFlags(u32),
    /// Reserved bytes are not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
}

impl Header {
    /// Encodes the header; the tag bytes are written as stored in `self.tag`.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10] = match self.file_type {
            FileType::Regular => 1,
            FileType::Symlink => 2,
        };
        b[11] = self.layers.0;
        b[16..32].copy_from_slice(&self.file_id);
        for (i, g) in self.generations.iter().enumerate() {
            b[32 + 4 * i..36 + 4 * i].copy_from_slice(&g.to_le_bytes());
        }
        b[SEALED_SIZE_AT..SEALED_SIZE_AT + 16].copy_from_slice(&self.sealed_size);
        if self.version >= 2 {
            b[64..72].copy_from_slice(&self.window.blocks.first.to_le_bytes());
            b[72..80].copy_from_slice(&self.window.blocks.end.to_le_bytes());
            b[80..88].copy_from_slice(&self.window.session.to_le_bytes());
            b[88..96].copy_from_slice(&self.holes.first.to_le_bytes());
            b[96..104].copy_from_slice(&self.holes.end.to_le_bytes());
        }
        b[TAG_AT..TAG_AT + 16].copy_from_slice(&self.tag);
        b
    }

    /// Decodes a header from exactly the first 128 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Header, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated(buf.len()));
        }
        if &buf[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version == 0 {
            return Err(HeaderError::BadVersion(version));
        }
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        let file_type = match buf[10] {
            1 => FileType::Regular,
            2 => FileType::Symlink,
            t => return Err(HeaderError::BadType(t)),
        };
        let layers = buf[11];
        let flags = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
        if layers & !LayerSet::ALL != 0 || flags != 0 {
            return Err(HeaderError::UnknownFlags(
                flags | u32::from(layers & !LayerSet::ALL),
            ));
        }
        let reserved = if version >= 2 { 104 } else { 64 };
        if buf[reserved..TAG_AT].iter().any(|&x| x != 0) {
            return Err(HeaderError::Reserved);
        }
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let (window, holes) = if version >= 2 {
            (
                WriteWindow {
                    blocks: BlockRange {
                        first: u64_at(64),
                        end: u64_at(72),
                    },
                    session: u64_at(80),
                },
                BlockRange {
                    first: u64_at(88),
                    end: u64_at(96),
                },
            )
        } else {
            (WriteWindow::default(), BlockRange::ALL)
        };
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&buf[16..32]);
        let mut generations = [0u32; 4];
        for (i, g) in generations.iter_mut().enumerate() {
            let at = 32 + 4 * i;
            *g = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        }
        let mut sealed_size = [0u8; 16];
        sealed_size.copy_from_slice(&buf[SEALED_SIZE_AT..SEALED_SIZE_AT + 16]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&buf[TAG_AT..TAG_AT + 16]);
        Ok(Header {
            version,
            file_type,
            layers: LayerSet(layers),
            file_id,
            generations,
            sealed_size,
            window,
            holes,
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 2,
            file_type: FileType::Symlink,
            layers: LayerSet(LayerSet::GUEST | LayerSet::PMK),
            file_id: [7; 16],
            generations: [1, 0, 0, 3],
            sealed_size: [9; 16],
            window: WriteWindow {
                blocks: BlockRange { first: 3, end: 40 },
                session: 0xfeed,
            },
            holes: BlockRange { first: 7, end: 9 },
            tag: [5; 16],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn version_1_has_no_window_and_holes_everywhere() {
        let mut h = sample();
        h.version = 1;
        let b = h.encode();
        assert!(b[64..112].iter().all(|&x| x == 0));
        let d = Header::decode(&b).expect("decodes");
        assert_eq!(d.window, WriteWindow::default());
        assert_eq!(d.holes, BlockRange::ALL);
        let mut b = b;
        b[70] = 1;
        assert_eq!(Header::decode(&b), Err(HeaderError::Reserved));
    }

    #[test]
    fn refuses_newer_version_unknown_flags_and_short_input() {
        let mut b = sample().encode();
        b[8] = 3;
        assert_eq!(Header::decode(&b), Err(HeaderError::NewerVersion(3)));
        let mut b = sample().encode();
        b[12] = 1;
        assert!(matches!(
            Header::decode(&b),
            Err(HeaderError::UnknownFlags(_))
        ));
        let mut b = sample().encode();
        b[11] = 0x10;
        assert!(matches!(
            Header::decode(&b),
            Err(HeaderError::UnknownFlags(_))
        ));
        assert_eq!(Header::decode(&b[..50]), Err(HeaderError::Truncated(50)));
        let mut b = sample().encode();
        b[0] = b'X';
        assert_eq!(Header::decode(&b), Err(HeaderError::BadMagic));
        let mut b = sample().encode();
        b[106] = 1;
        assert_eq!(Header::decode(&b), Err(HeaderError::Reserved));
    }

    #[test]
    fn every_byte_flip_decodes_or_errors_without_panic() {
        let base = sample().encode();
        for i in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut b = base;
                b[i] ^= 1 << bit;
                let _ = Header::decode(&b);
            }
        }
    }
}
