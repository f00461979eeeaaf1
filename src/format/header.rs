//! The 128-byte header at the start of every backing file.
//!
//! ```text
//! off  len  field
//!   0    8  magic "STRATA\0F"
//!   8    2  format version, u16 LE (1)
//!  10    1  file type: 1 regular file, 2 symlink target
//!  11    1  layers applied, bit set: 1 guest, 2 host, 4 storage CMK, 8 storage PMK
//!  12    4  flags, u32 LE; no flag is defined and any set bit is refused
//!  16   16  file id (random; the XTS tweak and tag bind to it)
//!  32   16  DEK generation of each layer slot, u32 LE each, in the order
//!           guest, host, storage CMK, storage PMK (0 where the layer is off)
//!  48   16  sealed logical size: AES-256 of (size u64 LE ‖ file id[0..8])
//!  64   48  reserved, zero
//! 112   16  header tag: keyed BLAKE3 over bytes 0..112
//! ```
//! This module encodes and decodes the plain fields; sealing the size and the
//! tag need keys and live in `layers`.

use super::{FORMAT_VERSION, HEADER_LEN};

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
        if buf[64..TAG_AT].iter().any(|&x| x != 0) {
            return Err(HeaderError::Reserved);
        }
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
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 1,
            file_type: FileType::Symlink,
            layers: LayerSet(LayerSet::GUEST | LayerSet::PMK),
            file_id: [7; 16],
            generations: [1, 0, 0, 3],
            sealed_size: [9; 16],
            tag: [5; 16],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn refuses_newer_version_unknown_flags_and_short_input() {
        let mut b = sample().encode();
        b[8] = 2;
        assert_eq!(Header::decode(&b), Err(HeaderError::NewerVersion(2)));
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
        b[100] = 1;
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
