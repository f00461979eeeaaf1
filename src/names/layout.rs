//! The shape of names in a backing directory, independent of any key: which
//! plaintext names are acceptable, the padding, the long-name (`~L…`) and
//! sidecar (`….name`) forms, and which backing names belong to strata itself.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::NameError;

/// Longest plaintext name, and longest backing name, in bytes (Linux
/// `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Padding granularity: only a plaintext length rounded to this shows.
pub const PAD_BLOCK: usize = 16;

/// Prefix of a hashed long backing name.
pub const LONG_PREFIX: &str = "~L";

/// Suffix of the sidecar file that holds a long name's full encoded form.
pub const SIDECAR_SUFFIX: &str = ".name";

/// Largest sidecar read back: the encoded form of a 255-byte name is 363
/// characters; anything much longer is damage, refused before it is read.
pub const SIDECAR_MAX: usize = 1024;

/// Length of a hashed long backing name: `~L` and the unpadded base64url of
/// a SHA-256 digest (43 characters).
pub const LONG_NAME_LEN: usize = LONG_PREFIX.len() + 43;

/// The base64 engine of every encoded name: URL-safe alphabet (`A–Z a–z 0–9
/// - _`), no padding, canonical trailing bits required when decoding.
pub(crate) const B64: base64::engine::GeneralPurpose = URL_SAFE_NO_PAD;

/// A name as it is stored in a backing directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingName {
    /// The encoded name is the backing name.
    Short(OsString),
    /// The encoded name is longer than [`NAME_MAX`]: the directory entry is
    /// named `hashed` and the sidecar [`sidecar_name`]`(hashed)` beside it
    /// holds `full`, the encoded name, exactly (ASCII, no newline).
    Long {
        /// The directory entry's name: `~L` + base64url(SHA-256(`full`)).
        hashed: OsString,
        /// The full encoded name, the sidecar's whole contents.
        full: String,
    },
}

impl BackingName {
    /// Builds the backing form of an encoded name: itself if it fits, else
    /// its hashed long name.
    pub fn from_encoded(encoded: String) -> Self {
        if encoded.len() <= NAME_MAX {
            BackingName::Short(OsString::from(encoded))
        } else {
            BackingName::Long {
                hashed: long_name_of(&encoded),
                full: encoded,
            }
        }
    }

    /// The name of the directory entry in the backing directory.
    pub fn entry_name(&self) -> &OsStr {
        match self {
            BackingName::Short(name) => name,
            BackingName::Long { hashed, .. } => hashed,
        }
    }

    /// The sidecar to write beside a long name: its file name and contents.
    /// `None` for a short name.
    pub fn sidecar(&self) -> Option<(OsString, &str)> {
        match self {
            BackingName::Short(_) => None,
            BackingName::Long { hashed, full } => Some((sidecar_name(hashed), full.as_str())),
        }
    }

    /// Whether this is the hashed long form.
    pub fn is_long(&self) -> bool {
        matches!(self, BackingName::Long { .. })
    }
}

/// The hashed backing name of a long encoded name:
/// `~L` + base64url(SHA-256(`encoded`)).
pub fn long_name_of(encoded: &str) -> OsString {
    let digest = Sha256::digest(encoded.as_bytes());
    let mut out = String::with_capacity(LONG_NAME_LEN);
    out.push_str(LONG_PREFIX);
    B64.encode_string(digest, &mut out);
    OsString::from(out)
}

/// Whether `name` is a hashed long backing name (`~L` and 43 base64url
/// characters), whose encoded name is in a sidecar.
pub fn is_long(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() == LONG_NAME_LEN
        && b.starts_with(LONG_PREFIX.as_bytes())
        && b[LONG_PREFIX.len()..].iter().all(|&c| is_b64_char(c))
}

/// The sidecar file name of the hashed long name `hashed`: `hashed` + `.name`.
pub fn sidecar_name(hashed: &OsStr) -> OsString {
    let mut out = hashed.to_owned();
    out.push(SIDECAR_SUFFIX);
    out
}

/// Whether `name` is a long name's sidecar file (a hashed long name followed
/// by `.name`).
pub fn is_sidecar(name: &OsStr) -> bool {
    let b = name.as_bytes();
    match b.strip_suffix(SIDECAR_SUFFIX.as_bytes()) {
        Some(stem) => is_long(OsStr::from_bytes(stem)),
        None => false,
    }
}

/// Whether a backing name in an encrypted disk belongs to strata rather than
/// to the user: every name beginning with `.` (such as `.dirid`) and every
/// long-name sidecar. Directory listings skip these.
///
/// An encoded name never begins with `.` or `~` (neither is in the base64url
/// alphabet), so short names, hashed long names and reserved names never
/// collide. The plain codec reserves less; see [`super::NameCodec::is_reserved`].
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.') || is_sidecar(name)
}

/// Prefix reserved for strata's own files on a plain (unencrypted) disk.
pub const PLAIN_RESERVED_PREFIX: &str = ".strata";

/// Whether `name` is reserved for strata on a plain disk (begins with
/// `.strata`).
pub fn is_plain_reserved(name: &OsStr) -> bool {
    name.as_bytes()
        .starts_with(PLAIN_RESERVED_PREFIX.as_bytes())
}

fn is_b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Checks that `name` can be a directory entry: not empty, `.` or `..`, no
/// `/` or NUL, at most [`NAME_MAX`] bytes.
pub(crate) fn check_entry_name(name: &[u8]) -> Result<(), NameError> {
    entry_name_problem(name).map_or(Ok(()), Err)
}

fn entry_name_problem(name: &[u8]) -> Option<NameError> {
    if name.is_empty() {
        Some(NameError::invalid("empty name"))
    } else if name == b"." || name == b".." {
        Some(NameError::invalid("`.` and `..` are not names"))
    } else if name.contains(&b'/') {
        Some(NameError::invalid("name contains `/`"))
    } else if name.contains(&0) {
        Some(NameError::invalid("name contains NUL"))
    } else if name.len() > NAME_MAX {
        Some(NameError::TooLong {
            len: name.len(),
            max: NAME_MAX,
        })
    } else {
        None
    }
}

/// Whether `name` is acceptable as a directory entry (see
/// [`check_entry_name`]); used on decrypted names, where any problem means
/// corruption.
pub(crate) fn is_valid_entry_name(name: &[u8]) -> bool {
    entry_name_problem(name).is_none()
}

/// PKCS#7-style padding to a multiple of [`PAD_BLOCK`]: `k` bytes of value
/// `k`, `1 <= k <= 16`, so a whole block is added when the length is already
/// a multiple of 16.
pub(crate) fn pad(data: &[u8]) -> Vec<u8> {
    let k = PAD_BLOCK - data.len() % PAD_BLOCK;
    let mut out = Vec::with_capacity(data.len() + k);
    out.extend_from_slice(data);
    // k is 1..=16, so the cast cannot truncate.
    out.resize(data.len() + k, k as u8);
    out
}

/// Removes [`pad`]'s padding, or `None` if it is malformed.
pub(crate) fn unpad(mut data: Vec<u8>) -> Option<Vec<u8>> {
    if data.is_empty() || !data.len().is_multiple_of(PAD_BLOCK) {
        return None;
    }
    let k = usize::from(*data.last()?);
    if k == 0 || k > PAD_BLOCK {
        return None;
    }
    let body = data.len() - k;
    if data[body..].iter().any(|&b| usize::from(b) != k) {
        return None;
    }
    data.truncate(body);
    Some(data)
}

/// Converts plaintext bytes back into an `OsString` (Unix names are bytes).
pub(crate) fn os_from_bytes(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_and_always_pads() {
        for len in 0..=48 {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let p = pad(&data);
            assert_eq!(p.len() % PAD_BLOCK, 0);
            assert!(p.len() > data.len());
            assert!(p.len() - data.len() <= PAD_BLOCK);
            assert_eq!(unpad(p), Some(data));
        }
    }

    #[test]
    fn bad_padding_is_refused() {
        assert_eq!(unpad(Vec::new()), None);
        assert_eq!(unpad(vec![1; 15]), None);
        assert_eq!(unpad(vec![0; 16]), None);
        assert_eq!(unpad(vec![17; 16]), None);
        let mut v = vec![3u8; 16];
        v[14] = 2;
        assert_eq!(unpad(v), None);
        assert_eq!(unpad(vec![16; 16]), Some(Vec::new()));
    }

    #[test]
    fn long_names_and_sidecars_are_recognised() {
        let encoded = "A".repeat(300);
        let BackingName::Long { hashed, full } = BackingName::from_encoded(encoded.clone()) else {
            panic!("300 characters must be long");
        };
        assert_eq!(full, encoded);
        assert_eq!(hashed.len(), LONG_NAME_LEN);
        assert!(is_long(&hashed));
        assert!(!is_sidecar(&hashed));
        assert!(!is_reserved(&hashed));
        let side = sidecar_name(&hashed);
        assert!(is_sidecar(&side));
        assert!(!is_long(&side));
        assert!(is_reserved(&side));

        assert!(!is_long(OsStr::new("~Lshort")));
        assert!(!is_sidecar(OsStr::new("foo.name")));
        assert!(!is_long(OsStr::new(&"A".repeat(LONG_NAME_LEN))));
        let mut not_b64 = hashed.clone().into_vec();
        not_b64[10] = b'.';
        assert!(!is_long(OsStr::from_bytes(&not_b64)));
    }

    #[test]
    fn short_encoded_names_stay_short() {
        let encoded = "A".repeat(NAME_MAX);
        let b = BackingName::from_encoded(encoded.clone());
        assert_eq!(b, BackingName::Short(OsString::from(encoded)));
        assert!(b.sidecar().is_none());
    }

    #[test]
    fn dot_names_are_reserved() {
        assert!(is_reserved(OsStr::new(".dirid")));
        assert!(is_reserved(OsStr::new(".")));
        assert!(!is_reserved(OsStr::new("QUJDREVG")));
        assert!(is_plain_reserved(OsStr::new(".strata-meta")));
        assert!(!is_plain_reserved(OsStr::new(".bashrc")));
    }

    #[test]
    fn entry_name_rules() {
        assert!(check_entry_name(b"a").is_ok());
        assert!(check_entry_name(b"...").is_ok());
        assert!(check_entry_name(&[0xff, 0xfe]).is_ok());
        assert!(check_entry_name(&[b'x'; 255]).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(matches!(
                check_entry_name(bad),
                Err(NameError::Invalid { .. })
            ));
        }
        assert_eq!(
            check_entry_name(&[b'x'; 256]),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
    }
}
