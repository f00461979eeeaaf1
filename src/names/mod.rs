//! Names in the backing store: encryption of directory-entry names
//! (deterministic per directory, AES-256-SIV), the long-name and sidecar
//! layout, which backing names are strata's own, and encryption of
//! extended-attribute names and values.
//!
//! Callers hold a [`NameCodec`], which is either a [`NameCipher`] or the
//! identity mapping of an unencrypted disk, so that lookup, create, readdir
//! and the xattr calls never branch on whether names are encrypted.
//!
//! A directory of an encrypted disk holds three kinds of backing names,
//! told apart by their first byte:
//! - a short name: the base64url encoding itself (`A–Z a–z 0–9 - _`);
//! - a long name: `~L` + base64url(SHA-256(encoding)), with the encoding in
//!   the sidecar file `~L….name` beside it;
//! - strata's own files, beginning with `.` (and the sidecars), which
//!   [`is_reserved`] reports and readdir skips.

mod cipher;
mod error;
pub mod layout;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

pub use cipher::{NameCipher, SIV_TAG_LEN, XATTR_NAME_MAX, XATTR_PREFIX, XATTR_VALUE_OVERHEAD};
pub use error::NameError;
pub use layout::{
    is_long, is_plain_reserved, is_reserved, is_sidecar, sidecar_name, BackingName, LONG_NAME_LEN,
    LONG_PREFIX, NAME_MAX, PLAIN_RESERVED_PREFIX, SIDECAR_MAX, SIDECAR_SUFFIX,
};

/// How one disk maps user names to backing names.
#[derive(Debug)]
pub enum NameCodec {
    /// Names, xattr names and xattr values encrypted with AES-256-SIV.
    Encrypted(NameCipher),
    /// Identity mapping, for an unencrypted temporary disk only. User names
    /// beginning with `.strata` are refused: strata keeps its own files
    /// there under that prefix.
    Plain,
}

impl NameCodec {
    /// Whether names are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, NameCodec::Encrypted(_))
    }

    /// The backing name of the entry `name` in the directory `dir_id`; see
    /// [`NameCipher::encrypt`]. The plain codec returns `name` itself, always
    /// short.
    ///
    /// # Errors
    /// As [`NameCipher::encrypt`]; the plain codec also refuses names
    /// beginning with `.strata` with [`NameError::Invalid`].
    pub fn encrypt(&self, dir_id: &[u8; 16], name: &OsStr) -> Result<BackingName, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.encrypt(dir_id, name),
            NameCodec::Plain => {
                check_plain_name(name)?;
                Ok(BackingName::Short(name.to_owned()))
            }
        }
    }

    /// The user name of the short backing name `backing`; see
    /// [`NameCipher::decrypt`].
    ///
    /// # Errors
    /// As [`NameCipher::decrypt`]. The plain codec answers
    /// [`NameError::Corrupt`] for a backing name no directory entry can have
    /// and [`NameError::Invalid`] for one reserved for strata (callers skip
    /// those with [`NameCodec::is_reserved`] first).
    pub fn decrypt(&self, dir_id: &[u8; 16], backing: &OsStr) -> Result<OsString, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.decrypt(dir_id, backing),
            NameCodec::Plain => {
                if !layout::is_valid_entry_name(backing.as_bytes()) {
                    return Err(NameError::corrupt_name(backing.as_bytes()));
                }
                check_plain_name(backing)?;
                Ok(backing.to_owned())
            }
        }
    }

    /// The user name of the long backing name `hashed`, given its sidecar's
    /// contents; see [`NameCipher::decrypt_long`].
    ///
    /// # Errors
    /// As [`NameCipher::decrypt_long`]. The plain codec never makes long
    /// names and answers [`NameError::Corrupt`].
    pub fn decrypt_long(
        &self,
        dir_id: &[u8; 16],
        hashed: &OsStr,
        sidecar_contents: &str,
    ) -> Result<OsString, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.decrypt_long(dir_id, hashed, sidecar_contents),
            NameCodec::Plain => Err(NameError::corrupt_name(hashed.as_bytes())),
        }
    }

    /// Whether the backing name `name` is strata's own rather than a user
    /// entry: [`is_reserved`] on an encrypted disk (every name beginning
    /// with `.`, and sidecars), [`is_plain_reserved`] on a plain one (names
    /// beginning with `.strata`).
    pub fn is_reserved(&self, name: &OsStr) -> bool {
        match self {
            NameCodec::Encrypted(_) => is_reserved(name),
            NameCodec::Plain => is_plain_reserved(name),
        }
    }

    /// The backing name of an extended attribute; see
    /// [`NameCipher::encrypt_xattr_name`]. Plain: `name` itself.
    ///
    /// # Errors
    /// As [`NameCipher::encrypt_xattr_name`]; the plain codec refuses only
    /// an empty name or one containing NUL.
    pub fn encrypt_xattr_name(&self, owner_id: &[u8; 16], name: &str) -> Result<String, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.encrypt_xattr_name(owner_id, name),
            NameCodec::Plain => {
                check_plain_xattr_name(name)?;
                Ok(name.to_owned())
            }
        }
    }

    /// The user name of a backing extended attribute; see
    /// [`NameCipher::decrypt_xattr_name`]. Plain: `backing` itself.
    ///
    /// # Errors
    /// As [`NameCipher::decrypt_xattr_name`]; the plain codec refuses only
    /// an empty name or one containing NUL, as [`NameError::Corrupt`].
    pub fn decrypt_xattr_name(
        &self,
        owner_id: &[u8; 16],
        backing: &str,
    ) -> Result<String, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.decrypt_xattr_name(owner_id, backing),
            NameCodec::Plain => match check_plain_xattr_name(backing) {
                Ok(()) => Ok(backing.to_owned()),
                Err(_) => Err(NameError::Corrupt {
                    what: format!("backing extended attribute name {backing:?}"),
                }),
            },
        }
    }

    /// The stored form of an extended attribute's value; see
    /// [`NameCipher::encrypt_xattr_value`]. Plain: `value` itself.
    pub fn encrypt_xattr_value(&self, owner_id: &[u8; 16], name: &str, value: &[u8]) -> Vec<u8> {
        match self {
            NameCodec::Encrypted(c) => c.encrypt_xattr_value(owner_id, name, value),
            NameCodec::Plain => value.to_vec(),
        }
    }

    /// An extended attribute's value from its stored form; see
    /// [`NameCipher::decrypt_xattr_value`]. Plain: `stored` itself.
    ///
    /// # Errors
    /// As [`NameCipher::decrypt_xattr_value`]; never for the plain codec.
    pub fn decrypt_xattr_value(
        &self,
        owner_id: &[u8; 16],
        name: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>, NameError> {
        match self {
            NameCodec::Encrypted(c) => c.decrypt_xattr_value(owner_id, name, stored),
            NameCodec::Plain => Ok(stored.to_vec()),
        }
    }

    /// Bytes the stored form of an xattr value adds to the plaintext.
    pub fn xattr_value_overhead(&self) -> usize {
        match self {
            NameCodec::Encrypted(_) => XATTR_VALUE_OVERHEAD,
            NameCodec::Plain => 0,
        }
    }
}

fn check_plain_name(name: &OsStr) -> Result<(), NameError> {
    layout::check_entry_name(name.as_bytes())?;
    if is_plain_reserved(name) {
        return Err(NameError::invalid(
            "names beginning with `.strata` are reserved on a plain disk",
        ));
    }
    Ok(())
}

fn check_plain_xattr_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::invalid("empty extended attribute name"))
    } else if name.as_bytes().contains(&0) {
        Err(NameError::invalid("extended attribute name contains NUL"))
    } else {
        Ok(())
    }
}

/// Reads the sidecar of long backing name `hashed` in the open backing
/// directory `dir`, reading no more than [`SIDECAR_MAX`] + 1 bytes: a
/// larger file (damaged or planted) is refused with
/// [`std::io::ErrorKind::InvalidData`], as is one that is not text.
pub fn read_sidecar_at(dir: &crate::backing::Dir, hashed: &OsStr) -> std::io::Result<String> {
    let raw = dir.read_small(&sidecar_name(hashed), SIDECAR_MAX)?;
    String::from_utf8(raw)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
#[cfg(test)]
mod tests;
