//! The recovery key: 16 random bytes that open the vault's recovery slot,
//! written the way BitLocker writes its recovery passwords so that a person
//! can copy it onto paper and type it back.
//!
//! The written form is 48 digits in 8 groups of 6, separated by `-`. Group
//! `i` is `11 × chunk_i`, where `chunk_i` is bytes `2i..2i+2` of the key read
//! as a little-endian u16; every group is therefore a multiple of 11 below
//! 720896, which catches nearly every single mistyped digit and names the
//! group it is in.

use std::fmt;

use zeroize::Zeroizing;

use super::error::VaultError;
use crate::crypto::secret::SecretKey;

/// Number of digit groups in the written form.
const GROUPS: usize = 8;
/// Digits per group.
const GROUP_DIGITS: usize = 6;

/// A vault recovery key. Zeroized on drop; `Debug` prints `[redacted]`;
/// `Display` prints the 48-digit written form, which is the secret itself.
pub struct RecoveryKey(SecretKey<16>);

impl RecoveryKey {
    /// A fresh key from the operating system's random source.
    pub(crate) fn random() -> Self {
        RecoveryKey(SecretKey::random())
    }

    /// The key's 16 bytes: the secret its key slot is derived from.
    pub(crate) fn secret(&self) -> &[u8; 16] {
        self.0.expose()
    }

    /// Parses the written form: 48 digits, in groups of 6 that may be
    /// separated by dashes and whitespace (or not at all). The error says
    /// what is wrong and, for a bad group, which one.
    pub fn parse(s: &str) -> Result<RecoveryKey, VaultError> {
        let bad = |m: String| VaultError::BadRecoveryKey(m);
        let mut digits = Zeroizing::new([0u8; GROUPS * GROUP_DIGITS]);
        let mut n = 0usize;
        for ch in s.chars() {
            if ch == '-' || ch.is_whitespace() {
                continue;
            }
            let d = ch.to_digit(10).ok_or_else(|| {
                bad("recovery key may contain only digits, dashes and spaces".into())
            })?;
            if let Some(slot) = digits.get_mut(n) {
                // A decimal digit is below 10.
                *slot = d as u8;
            }
            n += 1;
        }
        if n != GROUPS * GROUP_DIGITS {
            return Err(bad(format!(
                "recovery key has {n} digits; it needs 48 (8 groups of 6)"
            )));
        }
        let mut key = SecretKey::<16>::zero();
        for (i, group) in digits.chunks_exact(GROUP_DIGITS).enumerate() {
            let value = Zeroizing::new(group.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d)));
            let number = i + 1;
            if *value % 11 != 0 {
                return Err(bad(format!(
                    "recovery key group {number} ({:06}) is not a multiple of 11: check it for a typo",
                    *value
                )));
            }
            let chunk = u16::try_from(*value / 11).map_err(|_| {
                bad(format!(
                    "recovery key group {number} ({:06}) is too large: check it for a typo",
                    *value
                ))
            })?;
            key.expose_mut()[2 * i..2 * i + 2].copy_from_slice(&chunk.to_le_bytes());
        }
        Ok(RecoveryKey(key))
    }
}

impl fmt::Display for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.expose().chunks_exact(2).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            let chunk = u32::from(u16::from_le_bytes([pair[0], pair[1]]));
            write!(f, "{:06}", chunk * 11)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey([redacted])")
    }
}

impl PartialEq for RecoveryKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        for _ in 0..64 {
            let k = RecoveryKey::random();
            let s = k.to_string();
            assert_eq!(s.len(), 48 + 7);
            let groups: Vec<&str> = s.split('-').collect();
            assert_eq!(groups.len(), 8);
            for g in &groups {
                assert_eq!(g.len(), 6);
                let v: u32 = g.parse().expect("digits");
                assert_eq!(v % 11, 0);
                assert!(v < 720_896);
            }
            assert!(RecoveryKey::parse(&s).expect("parses") == k);
            assert!(RecoveryKey::parse(&s.replace('-', "")).expect("no dashes") == k);
            assert!(RecoveryKey::parse(&s.replace('-', " \n")).expect("spaces") == k);
        }
    }

    #[test]
    fn known_encoding() {
        let k = RecoveryKey(SecretKey::from_bytes(&[
            0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0x00, 0x01, 0x34, 0x12, 0, 0, 0, 0, 0, 0,
        ]));
        assert_eq!(
            k.to_string(),
            "000000-000011-720885-002816-051260-000000-000000-000000"
        );
    }

    #[test]
    fn mistyped_digit_names_the_group() {
        let k = RecoveryKey::random();
        let s = k.to_string();
        // Change one digit of group 3 (characters 14..20) by one.
        let mut chars: Vec<char> = s.chars().collect();
        let d = chars[16].to_digit(10).expect("digit");
        chars[16] = char::from_digit((d + 1) % 10, 10).expect("digit");
        let typo: String = chars.into_iter().collect();
        let e = RecoveryKey::parse(&typo).expect_err("typo is caught");
        let msg = e.to_string();
        assert!(msg.starts_with("recovery key group 3 ("), "{msg}");
        assert!(
            msg.ends_with("is not a multiple of 11: check it for a typo"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_wrong_lengths_letters_and_large_groups() {
        let e = RecoveryKey::parse("123").expect_err("short").to_string();
        assert!(e.contains("has 3 digits"), "{e}");
        let e = RecoveryKey::parse(&"0".repeat(54))
            .expect_err("long")
            .to_string();
        assert!(e.contains("has 54 digits"), "{e}");
        let e = RecoveryKey::parse(&format!("{}x", "0".repeat(47)))
            .expect_err("letter")
            .to_string();
        assert!(e.contains("only digits"), "{e}");
        // 720896 = 11 * 65536: a multiple of 11 one past the largest chunk.
        let e = RecoveryKey::parse(&format!("720896{}", "0".repeat(42)))
            .expect_err("large")
            .to_string();
        assert_eq!(
            e,
            "recovery key group 1 (720896) is too large: check it for a typo"
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", RecoveryKey::random()),
            "RecoveryKey([redacted])"
        );
    }
}
