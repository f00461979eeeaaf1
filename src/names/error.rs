//! The one error type of name and extended-attribute encryption, and the
//! errno each kind becomes at the FUSE boundary.
//!
//! Messages never carry a plaintext name: a refused user name is described by
//! its length or by what is wrong with it, a corrupt backing entry by its
//! backing (encrypted) name.

use crate::platform::errno;

/// Why a name or extended attribute could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name can never be a directory entry (or extended-attribute name):
    /// empty, `.` or `..`, contains `/` or NUL, or is reserved for strata.
    #[error("invalid name: {reason}")]
    Invalid {
        /// What is wrong with the name (never the name itself).
        reason: &'static str,
    },
    /// The plaintext name is longer than a directory entry may be.
    #[error("name of {len} bytes is longer than the {max}-byte limit")]
    TooLong {
        /// Length of the refused name in bytes.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The plaintext extended-attribute name is too long to fit, once
    /// encrypted, in the backing filesystem's 255-byte attribute names.
    #[error("extended attribute name of {len} bytes is longer than the {max}-byte limit")]
    XattrNameTooLong {
        /// Length of the refused attribute name in bytes.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// A backing name, sidecar or attribute does not decode, fails
    /// authentication or has bad padding: it was damaged, or was not written
    /// under this key and directory.
    #[error("{what} is corrupt or was not written under this key")]
    Corrupt {
        /// Which backing item: its encrypted name, never plaintext.
        what: String,
    },
}

impl NameError {
    /// The errno to answer the kernel with.
    pub fn errno(&self) -> i32 {
        match self {
            NameError::Invalid { .. } => errno::EINVAL,
            NameError::TooLong { .. } => errno::ENAMETOOLONG,
            NameError::XattrNameTooLong { .. } => errno::ERANGE,
            NameError::Corrupt { .. } => errno::EIO,
        }
    }

    pub(crate) fn invalid(reason: &'static str) -> Self {
        NameError::Invalid { reason }
    }

    /// A corrupt backing name, described by its (encrypted) bytes.
    pub(crate) fn corrupt_name(backing: &[u8]) -> Self {
        NameError::Corrupt {
            what: format!("backing name {:?}", String::from_utf8_lossy(backing)),
        }
    }

    /// A corrupt item that is not a directory entry.
    pub(crate) fn corrupt(what: &str) -> Self {
        NameError::Corrupt {
            what: what.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_per_kind() {
        assert_eq!(NameError::invalid("x").errno(), errno::EINVAL);
        assert_eq!(
            NameError::TooLong { len: 256, max: 255 }.errno(),
            errno::ENAMETOOLONG
        );
        assert_eq!(
            NameError::XattrNameTooLong { len: 200, max: 159 }.errno(),
            errno::ERANGE
        );
        assert_eq!(NameError::corrupt_name(b"abc").errno(), errno::EIO);
    }

    #[test]
    fn corrupt_message_names_the_backing_name() {
        let e = NameError::corrupt_name(b"QUJD");
        assert_eq!(
            e.to_string(),
            "backing name \"QUJD\" is corrupt or was not written under this key"
        );
    }
}
