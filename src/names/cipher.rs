//! AES-256-SIV encryption of directory-entry names (deterministic per
//! directory) and of extended-attribute names and values.
//!
//! Every sealing is one AES-SIV call (RFC 5297, CMAC-AES-256 for S2V and
//! AES-256-CTR, the first 32 key bytes keying the MAC) with exactly one
//! associated-data string, and no nonce: equal inputs under the same key and
//! associated data give equal outputs, which is what lets a lookup find an
//! entry by encrypting the name it is asked for. The three uses have
//! associated data of disjoint shapes:
//!
//! | use                  | associated data                          |
//! |----------------------|------------------------------------------|
//! | directory entry name | `dir_id` (16 bytes)                      |
//! | xattr name           | `owner_id ‖ "xattr-name"` (26 bytes)     |
//! | xattr value          | `owner_id ‖ "xattr-value" ‖ name`        |

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;
use base64::Engine as _;

use super::layout::{self, BackingName, B64, NAME_MAX, PAD_BLOCK};
use super::NameError;
use crate::crypto::tag::ct_eq;
use crate::crypto::Key64;

/// Length of the synthetic IV that SIV prepends to every ciphertext.
pub const SIV_TAG_LEN: usize = 16;

/// Bytes an encrypted extended-attribute value adds to the plaintext.
pub const XATTR_VALUE_OVERHEAD: usize = SIV_TAG_LEN;

/// Prefix of every encrypted extended-attribute name.
pub const XATTR_PREFIX: &str = "user.";

/// Longest plaintext extended-attribute name, in bytes, whose encrypted form
/// (`user.` + base64url of 16 + 160 bytes = 240 characters) fits the
/// backing filesystem's 255-byte limit.
pub const XATTR_NAME_MAX: usize = 159;

const XATTR_NAME_LABEL: &[u8] = b"xattr-name";
const XATTR_VALUE_LABEL: &[u8] = b"xattr-value";

/// The name cipher of one disk: AES-256-SIV under a 64-byte key.
pub struct NameCipher {
    key: Key64,
}

impl std::fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCipher([redacted])")
    }
}

impl NameCipher {
    /// A cipher under `key` (copied; the copy is zeroized on drop). The key
    /// should be derived for names alone.
    pub fn new(key: &Key64) -> Self {
        NameCipher {
            key: key.duplicate(),
        }
    }

    /// A fresh SIV instance. `Siv` needs `&mut self` and holds its key
    /// schedule, zeroized on drop, so each call builds its own.
    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new(self.key.expose().into())
    }

    fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        match self.siv().encrypt([ad], plaintext) {
            Ok(ct) => ct,
            // aes-siv fails only with more than 126 associated-data strings;
            // strata always passes exactly one.
            Err(_) => unreachable!("AES-SIV sealing with one header cannot fail"),
        }
    }

    fn open(&self, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SIV_TAG_LEN {
            return None;
        }
        self.siv().decrypt([ad], sealed).ok()
    }

    /// Seals a padded name and encodes it (base64url, no padding).
    fn seal_name(&self, ad: &[u8], name: &[u8]) -> String {
        B64.encode(self.seal(ad, &layout::pad(name)))
    }

    /// Decodes and opens an encoded padded name, or `None` on any failure.
    fn open_name(&self, ad: &[u8], encoded: &[u8]) -> Option<Vec<u8>> {
        let sealed = B64.decode(encoded).ok()?;
        if sealed.len() < SIV_TAG_LEN + PAD_BLOCK
            || !(sealed.len() - SIV_TAG_LEN).is_multiple_of(PAD_BLOCK)
        {
            return None;
        }
        layout::unpad(self.open(ad, &sealed)?)
    }

    /// Encrypts the entry name `name` of the directory with id `dir_id`.
    ///
    /// The name's bytes are padded to a multiple of 16 (see
    /// [`layout::PAD_BLOCK`]), sealed with AES-SIV under associated data
    /// `dir_id` and base64url-encoded without padding. An encoding longer
    /// than 255 bytes (plaintext of 160 bytes or more) becomes a
    /// [`BackingName::Long`].
    ///
    /// # Errors
    /// [`NameError::Invalid`] for `""`, `.`, `..` and names containing `/`
    /// or NUL; [`NameError::TooLong`] past 255 bytes.
    pub fn encrypt(&self, dir_id: &[u8; 16], name: &OsStr) -> Result<BackingName, NameError> {
        let bytes = name.as_bytes();
        layout::check_entry_name(bytes)?;
        Ok(BackingName::from_encoded(self.seal_name(dir_id, bytes)))
    }

    /// Decrypts the short backing name `backing` found in the directory with
    /// id `dir_id`.
    ///
    /// # Errors
    /// [`NameError::Corrupt`], naming `backing`, if it is not base64url,
    /// fails authentication (another key, another directory, any change),
    /// has bad padding or is not in canonical form. A hashed long name is
    /// refused too: decrypt those with [`NameCipher::decrypt_long`].
    pub fn decrypt(&self, dir_id: &[u8; 16], backing: &OsStr) -> Result<OsString, NameError> {
        let b = backing.as_bytes();
        let corrupt = || NameError::corrupt_name(b);
        // A short name is the whole encoding, which is never longer than a
        // directory entry; a longer one would have been hashed.
        if b.len() > NAME_MAX {
            return Err(corrupt());
        }
        self.decrypt_encoded(dir_id, b).ok_or_else(corrupt)
    }

    /// Decrypts a hashed long backing name `hashed`, given the contents of
    /// its sidecar file.
    ///
    /// # Errors
    /// [`NameError::Corrupt`], naming `hashed`, if `hashed` is not a long
    /// name, if it is not the hash of `sidecar_contents` (the sidecar
    /// belongs to another entry, or was changed), if the sidecar holds an
    /// encoding short enough not to need one, or if the encoding itself is
    /// corrupt as for [`NameCipher::decrypt`].
    pub fn decrypt_long(
        &self,
        dir_id: &[u8; 16],
        hashed: &OsStr,
        sidecar_contents: &str,
    ) -> Result<OsString, NameError> {
        let corrupt = || NameError::corrupt_name(hashed.as_bytes());
        if !layout::is_long(hashed) || sidecar_contents.len() <= NAME_MAX {
            return Err(corrupt());
        }
        let expected = layout::long_name_of(sidecar_contents);
        if !ct_eq(expected.as_bytes(), hashed.as_bytes()) {
            return Err(corrupt());
        }
        self.decrypt_encoded(dir_id, sidecar_contents.as_bytes())
            .ok_or_else(corrupt)
    }

    fn decrypt_encoded(&self, dir_id: &[u8; 16], encoded: &[u8]) -> Option<OsString> {
        let name = self.open_name(dir_id, encoded)?;
        // Only a name that passed `check_entry_name` is ever sealed.
        if !layout::is_valid_entry_name(&name) {
            return None;
        }
        Some(layout::os_from_bytes(name))
    }

    /// Encrypts the extended-attribute name `name` of the inode with id
    /// `owner_id`: `"user."` + base64url(AES-SIV(pad(name))) under
    /// associated data `owner_id ‖ "xattr-name"`. Deterministic, so a
    /// `getxattr` finds the backing attribute by encrypting its name.
    ///
    /// # Errors
    /// [`NameError::Invalid`] for an empty name or one containing NUL;
    /// [`NameError::XattrNameTooLong`] past [`XATTR_NAME_MAX`] bytes.
    pub fn encrypt_xattr_name(&self, owner_id: &[u8; 16], name: &str) -> Result<String, NameError> {
        check_xattr_name(name)?;
        let mut out = String::from(XATTR_PREFIX);
        out.push_str(&self.seal_name(&xattr_name_ad(owner_id), name.as_bytes()));
        Ok(out)
    }

    /// Decrypts a backing extended-attribute name made by
    /// [`NameCipher::encrypt_xattr_name`].
    ///
    /// # Errors
    /// [`NameError::Corrupt`], naming `backing`, if it lacks the `user.`
    /// prefix or does not decrypt to a valid attribute name.
    pub fn decrypt_xattr_name(
        &self,
        owner_id: &[u8; 16],
        backing: &str,
    ) -> Result<String, NameError> {
        let corrupt = || NameError::Corrupt {
            what: format!("backing extended attribute name {backing:?}"),
        };
        let encoded = backing.strip_prefix(XATTR_PREFIX).ok_or_else(corrupt)?;
        let name = self
            .open_name(&xattr_name_ad(owner_id), encoded.as_bytes())
            .ok_or_else(corrupt)?;
        let name = String::from_utf8(name).map_err(|_| corrupt())?;
        check_xattr_name(&name).map_err(|_| corrupt())?;
        Ok(name)
    }

    /// Encrypts the value of the extended attribute named `name` (the
    /// plaintext name) of the inode `owner_id`: AES-SIV(value) under
    /// associated data `owner_id ‖ "xattr-value" ‖ name`, the 16-byte
    /// synthetic IV first. No padding, so the result is
    /// [`XATTR_VALUE_OVERHEAD`] bytes longer than `value`.
    ///
    /// Deterministic: setting the same value again under the same name and
    /// inode stores the same bytes. The associated data binds the value to
    /// its inode and attribute name, so values cannot be moved between
    /// attributes or inodes without failing to decrypt.
    pub fn encrypt_xattr_value(&self, owner_id: &[u8; 16], name: &str, value: &[u8]) -> Vec<u8> {
        self.seal(&xattr_value_ad(owner_id, name), value)
    }

    /// Decrypts a value made by [`NameCipher::encrypt_xattr_value`] for the
    /// same inode and attribute name.
    ///
    /// # Errors
    /// [`NameError::Corrupt`] if the value was changed, is too short, or
    /// belongs to another attribute or inode.
    pub fn decrypt_xattr_value(
        &self,
        owner_id: &[u8; 16],
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, NameError> {
        self.open(&xattr_value_ad(owner_id, name), sealed)
            .ok_or_else(|| NameError::corrupt("extended attribute value"))
    }
}

/// Checks a plaintext extended-attribute name.
pub(crate) fn check_xattr_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::invalid("empty extended attribute name"))
    } else if name.as_bytes().contains(&0) {
        Err(NameError::invalid("extended attribute name contains NUL"))
    } else if name.len() > XATTR_NAME_MAX {
        Err(NameError::XattrNameTooLong {
            len: name.len(),
            max: XATTR_NAME_MAX,
        })
    } else {
        Ok(())
    }
}

fn xattr_name_ad(owner_id: &[u8; 16]) -> Vec<u8> {
    [&owner_id[..], XATTR_NAME_LABEL].concat()
}

fn xattr_value_ad(owner_id: &[u8; 16], name: &str) -> Vec<u8> {
    [&owner_id[..], XATTR_VALUE_LABEL, name.as_bytes()].concat()
}
