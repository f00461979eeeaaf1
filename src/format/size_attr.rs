//! The size attribute: a sealed copy of a backing file's logical size and
//! file type in an extended attribute of the backing file, so that a cold
//! `stat` needs no read of the header (the attribute lives in the inode that
//! the lookup already read). The header stays the truth: the attribute is
//! only believed when it carries the store's current trust id (which changes
//! whenever a session ends in a crash, see `store::sessions`) and its tag
//! binds it to the backing inode it is on and to that inode's modification
//! time when it was written (a header write removes it, a later release
//! of the file writes it again): a copy on another
//! inode, or a backing file whose contents were rewritten since in any way
//! (a restore in place, an offline tool), is not believed.
//!
//! ```text
//! off  len  field
//!   0    1  version, 1
//!   1    1  file type: 1 regular file, 2 symlink target (as in the header)
//!   2    6  reserved, zero
//!   8    8  trust id, u64 LE (never 0)
//!  16   16  sealed size: AES-256(size attribute key, size u64 LE ‖ inode u64 LE)
//!  32   16  tag: tag(size attribute tag key, "strata size attribute v1",
//!           [bytes 0..32, binding])
//! ```
//! The binding (not stored, taken from the backing inode's stat): inode
//! u64 LE ‖ modification time seconds i64 LE ‖ nanoseconds u32 LE.
//! This module encodes and decodes the plain fields; sealing and the tag
//! need keys and live in `layers`.

use super::FileType;

/// Name of the extended attribute on the backing file. No encrypted xattr
/// name can take it (those are `user.` and base64url, which has no `.`), and
/// disks with plain names (a temp disk without host encryption) never carry
/// it.
pub const SIZE_ATTR_NAME: &str = "user.strata.size";
/// Length of the attribute's value.
pub const SIZE_ATTR_LEN: usize = 48;
/// Offset of the tag; everything before it is tagged.
pub const SIZE_ATTR_TAG_AT: usize = 32;
const VERSION: u8 = 1;

/// What a size attribute is bound to: the backing inode, and its
/// modification time when the attribute was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Backing inode number.
    pub ino: u64,
    /// Modification time, seconds.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
}

impl Binding {
    /// The binding of a backing inode as `st` describes it.
    pub fn of(st: &rustix::fs::Stat) -> Binding {
        let sec: i64 = st.st_mtime as _;
        let nsec: i64 = st.st_mtime_nsec as _;
        Binding {
            ino: st.st_ino as _,
            mtime_sec: sec,
            mtime_nsec: u32::try_from(nsec).unwrap_or(u32::MAX),
        }
    }

    /// The bytes the tag covers after the stored fields.
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.ino.to_le_bytes());
        b[8..16].copy_from_slice(&self.mtime_sec.to_le_bytes());
        b[16..].copy_from_slice(&self.mtime_nsec.to_le_bytes());
        b
    }
}

/// The plain fields of a size attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeAttr {
    /// What the file holds.
    pub file_type: FileType,
    /// The store's trust id when it was written.
    pub trust: u64,
    /// The sealed size, as stored.
    pub sealed: [u8; 16],
    /// The stored tag.
    pub tag: [u8; 16],
}

impl SizeAttr {
    /// The stored bytes.
    pub fn encode(&self) -> [u8; SIZE_ATTR_LEN] {
        let mut b = [0u8; SIZE_ATTR_LEN];
        b[0] = VERSION;
        b[1] = match self.file_type {
            FileType::Regular => 1,
            FileType::Symlink => 2,
        };
        b[8..16].copy_from_slice(&self.trust.to_le_bytes());
        b[16..32].copy_from_slice(&self.sealed);
        b[32..48].copy_from_slice(&self.tag);
        b
    }

    /// Decodes stored bytes; `None` for anything but exactly one version 1
    /// attribute (an attribute that does not decode is not believed, never
    /// an error: the header answers instead).
    pub fn decode(b: &[u8]) -> Option<SizeAttr> {
        let b: &[u8; SIZE_ATTR_LEN] = b.try_into().ok()?;
        if b[0] != VERSION || b[2..8].iter().any(|&x| x != 0) {
            return None;
        }
        let file_type = match b[1] {
            1 => FileType::Regular,
            2 => FileType::Symlink,
            _ => return None,
        };
        let mut trust = [0u8; 8];
        trust.copy_from_slice(&b[8..16]);
        let trust = u64::from_le_bytes(trust);
        if trust == 0 {
            return None;
        }
        let mut sealed = [0u8; 16];
        sealed.copy_from_slice(&b[16..32]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&b[32..48]);
        Some(SizeAttr {
            file_type,
            trust,
            sealed,
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SizeAttr {
        SizeAttr {
            file_type: FileType::Symlink,
            trust: 0x1234_5678_9abc_def0,
            sealed: [7; 16],
            tag: [9; 16],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let a = sample();
        assert_eq!(SizeAttr::decode(&a.encode()), Some(a));
    }

    #[test]
    fn anything_but_one_whole_version_1_attribute_is_not_believed() {
        let good = sample().encode();
        assert_eq!(SizeAttr::decode(&good[..47]), None);
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(SizeAttr::decode(&long), None);
        for (at, v) in [(0, 2u8), (1, 3), (5, 1)] {
            let mut b = good;
            b[at] = v;
            assert_eq!(SizeAttr::decode(&b), None, "byte {at} = {v}");
        }
        let mut b = good;
        b[8..16].fill(0);
        assert_eq!(SizeAttr::decode(&b), None, "trust id 0");
    }
}
