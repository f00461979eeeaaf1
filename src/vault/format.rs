//! The vault file's byte layout: encoding and strict parsing of the plain
//! header, the key slots and the framing of the sealed body. Nothing here
//! derives keys or decrypts; see `seal` for that.
//!
//! # Layout (format version 1)
//!
//! All integers are little-endian. `n` is the slot count, `H = 29 + 101·n`.
//!
//! | offset      | size | field                                                  |
//! |-------------|------|--------------------------------------------------------|
//! | 0           | 8    | magic `b"STRATAVK"`                                    |
//! | 8           | 2    | format version, u16 = 1                                |
//! | 10          | 2    | flags, u16 = 0 (any set bit is refused)                |
//! | 12          | 16   | vault id (random)                                      |
//! | 28          | 1    | slot count `n`, 1..=8                                  |
//! | 29 + 101·i  | 101  | key slot `i`, laid out as below                        |
//! | H           | 32   | header checksum: BLAKE3 of bytes `0..H`                |
//! | H + 32      | 24   | body nonce                                             |
//! | H + 56      | 4    | body length `L`, u32                                   |
//! | H + 60      | L    | body: XChaCha20-Poly1305 ciphertext ‖ 16-byte tag      |
//!
//! The file ends exactly at `H + 60 + L`; trailing bytes are refused.
//!
//! A key slot (101 bytes, offsets relative to the slot):
//!
//! | offset | size | field                                               |
//! |--------|------|-----------------------------------------------------|
//! | 0      | 1    | kind: 1 = passphrase, 2 = recovery key              |
//! | 1      | 4    | Argon2id memory, KiB, u32                           |
//! | 5      | 4    | Argon2id iterations, u32                            |
//! | 9      | 4    | Argon2id parallelism, u32                           |
//! | 13     | 16   | Argon2id salt                                       |
//! | 29     | 24   | nonce                                               |
//! | 53     | 48   | wrapped VMK: 32 bytes ciphertext ‖ 16-byte tag      |
//!
//! Each kind appears at most once. A slot's wrapped VMK is
//! XChaCha20-Poly1305 under `Argon2id(secret, salt, params)` (32-byte output)
//! with associated data `magic ‖ version (u16) ‖ vault id ‖ kind (u8)`. The
//! body is sealed under the VMK with associated data = bytes `0..H+32` (the
//! whole header including its checksum). The checksum is unkeyed: it tells
//! accidental damage to the header apart from a wrong passphrase, before any
//! Argon2id work is done; authenticity comes from the AEAD tags.
//!
//! Parsing checks, in order: the magic (else `NotAVault`), the version
//! (newer: `NewerFormat`), the length of the header, the checksum, the
//! flags, each slot (its Argon2id parameters against the floor and the
//! ceiling: `RefusedKdf`, before any derivation), and finally that the body
//! length matches the file.

use std::path::Path;

use super::error::VaultError;
use super::seal::{KdfParams, NONCE_LEN, SALT_LEN, WRAPPED_LEN};
use crate::crypto::tag::ct_eq;

/// The file's first eight bytes.
pub(crate) const MAGIC: &[u8; 8] = b"STRATAVK";
/// The format version this code writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Most slots a header may hold.
pub(crate) const MAX_SLOTS: usize = 8;
/// Length of the vault id.
pub(crate) const ID_LEN: usize = 16;
/// Bytes before the first slot.
const PREFIX_LEN: usize = 8 + 2 + 2 + ID_LEN + 1;
/// Bytes of one slot.
const SLOT_LEN: usize = 1 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN + WRAPPED_LEN;
/// Length of the header checksum.
const CHECKSUM_LEN: usize = 32;
/// Largest file `parse` accepts; a vault is a few KiB.
pub(crate) const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;

/// What a key slot is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// The passphrase.
    Passphrase = 1,
    /// The recovery key's 16 bytes.
    Recovery = 2,
}

impl SlotKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(SlotKind::Passphrase),
            2 => Some(SlotKind::Recovery),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::Recovery => "recovery",
        }
    }
}

/// One key slot: the VMK wrapped under a key derived from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) kind: SlotKind,
    pub(crate) kdf: KdfParams,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) wrapped: [u8; WRAPPED_LEN],
}

/// The plain header: vault id and key slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: [u8; ID_LEN],
    pub(crate) slots: Vec<Slot>,
}

impl Header {
    /// The slot of `kind`, if the header has one.
    pub(crate) fn slot(&self, kind: SlotKind) -> Option<&Slot> {
        self.slots.iter().find(|s| s.kind == kind)
    }

    /// The header bytes `0..H+32`, checksum included: the body's associated
    /// data.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREFIX_LEN + SLOT_LEN * self.slots.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.id);
        // Callers hold at most two slots; MAX_SLOTS keeps this in a byte.
        out.push(self.slots.len().min(MAX_SLOTS) as u8);
        for s in self.slots.iter().take(MAX_SLOTS) {
            out.push(s.kind as u8);
            out.extend_from_slice(&s.kdf.memory_kib.to_le_bytes());
            out.extend_from_slice(&s.kdf.iterations.to_le_bytes());
            out.extend_from_slice(&s.kdf.parallelism.to_le_bytes());
            out.extend_from_slice(&s.salt);
            out.extend_from_slice(&s.nonce);
            out.extend_from_slice(&s.wrapped);
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }
}

/// Associated data of a slot's wrapped VMK.
pub(crate) fn slot_ad(id: &[u8; ID_LEN], kind: SlotKind) -> Vec<u8> {
    let mut ad = Vec::with_capacity(8 + 2 + ID_LEN + 1);
    ad.extend_from_slice(MAGIC);
    ad.extend_from_slice(&VERSION.to_le_bytes());
    ad.extend_from_slice(id);
    ad.push(kind as u8);
    ad
}

/// Builds a whole file from the encoded header, the body nonce and the sealed
/// body. `None` if the body does not fit the 32-bit length field.
pub(crate) fn assemble(header: &[u8], nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(sealed.len()).ok()?;
    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + 4 + sealed.len());
    out.extend_from_slice(header);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(sealed);
    Some(out)
}

/// A parsed file, borrowing the bytes it came from.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    /// Header bytes `0..H+32`: the body's associated data.
    pub(crate) aad: &'a [u8],
    pub(crate) body_nonce: [u8; NONCE_LEN],
    /// Body ciphertext ‖ tag.
    pub(crate) body: &'a [u8],
}

/// Reads fixed-size fields off the front of a byte slice.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
}

/// Parses a whole vault file.
pub(crate) fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Parsed<'a>, VaultError> {
    let corrupt = |what: String| VaultError::corrupt(path, what);
    let short = |what: &str| {
        corrupt(format!(
            "file ends inside the {what} ({} bytes)",
            bytes.len()
        ))
    };

    let magic_seen = &bytes[..bytes.len().min(MAGIC.len())];
    if magic_seen != &MAGIC[..magic_seen.len()] {
        return Err(VaultError::NotAVault(path.to_path_buf()));
    }
    let mut c = Cursor { rest: bytes };
    c.take::<8>().ok_or_else(|| short("magic"))?;
    let version = c.u16().ok_or_else(|| short("header"))?;
    if version > VERSION {
        return Err(VaultError::NewerFormat {
            path: path.to_path_buf(),
            version,
        });
    }
    if version != VERSION {
        return Err(corrupt(format!("format version {version} is not valid")));
    }
    let flags = c.u16().ok_or_else(|| short("header"))?;
    let id = c.take::<ID_LEN>().ok_or_else(|| short("header"))?;
    let count = usize::from(c.u8().ok_or_else(|| short("header"))?);
    if count == 0 || count > MAX_SLOTS {
        return Err(corrupt(format!(
            "slot count {count} is outside 1..={MAX_SLOTS}"
        )));
    }
    let header_len = PREFIX_LEN + SLOT_LEN * count;
    let aad_len = header_len + CHECKSUM_LEN;
    if bytes.len() < aad_len + NONCE_LEN + 4 {
        return Err(short("header"));
    }
    let sum = blake3::hash(&bytes[..header_len]);
    if !ct_eq(sum.as_bytes(), &bytes[header_len..aad_len]) {
        return Err(corrupt(
            "header checksum mismatch: the header has been damaged".into(),
        ));
    }
    if flags != 0 {
        return Err(corrupt(format!("unknown header flags {flags:#06x}")));
    }

    let mut slots: Vec<Slot> = Vec::with_capacity(count);
    for i in 0..count {
        // The length check above covers every slot, so these reads succeed.
        let kind_byte = c.u8().ok_or_else(|| short("slots"))?;
        let kind = SlotKind::from_byte(kind_byte)
            .ok_or_else(|| corrupt(format!("slot {i} has unknown kind {kind_byte}")))?;
        if slots.iter().any(|s| s.kind == kind) {
            return Err(corrupt(format!("more than one {} slot", kind.name())));
        }
        let kdf = KdfParams {
            memory_kib: c.u32().ok_or_else(|| short("slots"))?,
            iterations: c.u32().ok_or_else(|| short("slots"))?,
            parallelism: c.u32().ok_or_else(|| short("slots"))?,
        };
        kdf.check().map_err(|what| VaultError::RefusedKdf {
            path: path.to_path_buf(),
            slot: kind.name(),
            what,
        })?;
        slots.push(Slot {
            kind,
            kdf,
            salt: c.take().ok_or_else(|| short("slots"))?,
            nonce: c.take().ok_or_else(|| short("slots"))?,
            wrapped: c.take().ok_or_else(|| short("slots"))?,
        });
    }
    c.take::<CHECKSUM_LEN>().ok_or_else(|| short("header"))?;
    let body_nonce = c.take::<NONCE_LEN>().ok_or_else(|| short("header"))?;
    let body_len = c.u32().ok_or_else(|| short("header"))?;
    let body = c.rest;
    let body_len = usize::try_from(body_len).unwrap_or(usize::MAX);
    if body.len() < body_len {
        return Err(short("body"));
    }
    if body.len() > body_len {
        return Err(corrupt(format!(
            "{} unexpected bytes after the body",
            body.len() - body_len
        )));
    }
    Ok(Parsed {
        header: Header { id, slots },
        aad: &bytes[..aad_len],
        body_nonce,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        let slot = |kind| Slot {
            kind,
            kdf: KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            salt: [1; SALT_LEN],
            nonce: [2; NONCE_LEN],
            wrapped: [3; WRAPPED_LEN],
        };
        Header {
            id: [9; ID_LEN],
            slots: vec![slot(SlotKind::Passphrase), slot(SlotKind::Recovery)],
        }
    }

    #[test]
    fn layout_offsets_match_the_table() {
        let h = header();
        let enc = h.encode();
        assert_eq!(enc.len(), 29 + 101 * 2 + 32);
        assert_eq!(&enc[..8], b"STRATAVK");
        assert_eq!(&enc[8..10], &[1, 0]);
        assert_eq!(&enc[10..12], &[0, 0]);
        assert_eq!(&enc[12..28], &[9; 16]);
        assert_eq!(enc[28], 2);
        assert_eq!(enc[29], 1);
        assert_eq!(&enc[30..34], &1024u32.to_le_bytes());
        assert_eq!(&enc[29 + 13..29 + 29], &[1; 16]);
        assert_eq!(&enc[29 + 29..29 + 53], &[2; 24]);
        assert_eq!(&enc[29 + 53..29 + 101], &[3; 48]);
        assert_eq!(enc[29 + 101], 2);
        assert_eq!(&enc[231..], blake3::hash(&enc[..231]).as_bytes());
    }

    #[test]
    fn parse_round_trips_and_borrows_the_body() {
        let h = header();
        let enc = h.encode();
        let file = assemble(&enc, &[7; NONCE_LEN], b"0123456789abcdefXYZ").expect("fits");
        let p = parse(Path::new("v"), &file).expect("parses");
        assert_eq!(p.header, h);
        assert_eq!(p.aad, &enc[..]);
        assert_eq!(p.body_nonce, [7; NONCE_LEN]);
        assert_eq!(p.body, b"0123456789abcdefXYZ");
    }

    #[test]
    fn refuses_flags_duplicate_slots_and_wild_kdf_params() {
        let rehash = |mut b: Vec<u8>| {
            let sum = blake3::hash(&b[..231]);
            b[231..263].copy_from_slice(sum.as_bytes());
            b
        };
        let file = assemble(&header().encode(), &[0; NONCE_LEN], &[0; 16]).expect("fits");

        let mut b = file.clone();
        b[10] = 4;
        let e = parse(Path::new("v"), &rehash(b)).expect_err("flags");
        assert!(e.to_string().contains("unknown header flags 0x0004"), "{e}");

        let mut b = file.clone();
        b[29 + 101] = 1;
        let e = parse(Path::new("v"), &rehash(b)).expect_err("dup");
        assert!(
            e.to_string().contains("more than one passphrase slot"),
            "{e}"
        );

        let mut b = file.clone();
        b[29 + 5..29 + 9].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse(Path::new("v"), &rehash(b)).expect_err("kdf");
        assert!(
            e.to_string()
                .contains("passphrase slot's Argon2id parameters are refused: 4294967295 passes is above the ceiling of 10"),
            "{e}"
        );

        let mut b = file;
        b[28] = 0;
        let e = parse(Path::new("v"), &b).expect_err("count");
        assert!(e.to_string().contains("slot count 0"), "{e}");
    }
}
