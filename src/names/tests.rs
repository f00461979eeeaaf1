//! Tests of name and xattr encryption: round trips, determinism, the long
//! name layout, refusals, tampering, a decrypt fuzz loop and the RFC 5297
//! known answer for the SIV construction.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use aes_siv::siv::{Aes128Siv, Aes256Siv};
use aes_siv::KeyInit;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::*;
use crate::crypto::Key64;
use crate::platform::errno;

/// Deterministic test randomness (SplitMix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random valid entry name of `len` bytes: any byte but NUL and `/`,
    /// never `.` or `..`.
    fn name(&mut self, len: usize) -> OsString {
        loop {
            let bytes: Vec<u8> = (0..len)
                .map(|_| loop {
                    let b = self.next() as u8;
                    if b != 0 && b != b'/' {
                        break b;
                    }
                })
                .collect();
            if bytes != b"." && bytes != b".." {
                return OsString::from_vec(bytes);
            }
        }
    }
}

fn test_key() -> Key64 {
    let bytes: Vec<u8> = (0u8..64).collect();
    Key64::from_slice(&bytes).expect("64 bytes")
}

fn cipher() -> NameCipher {
    NameCipher::new(&test_key())
}

const DIR_A: [u8; 16] = [0xa1; 16];
const DIR_B: [u8; 16] = [0xb2; 16];

/// Decrypts whatever `encrypt` produced, going through the sidecar for a
/// long name.
fn round_trip(c: &NameCipher, dir: &[u8; 16], name: &OsStr) -> OsString {
    match c.encrypt(dir, name).expect("encrypt") {
        BackingName::Short(b) => {
            assert!(b.len() <= NAME_MAX);
            assert!(!is_reserved(&b) && !is_long(&b));
            c.decrypt(dir, &b).expect("decrypt short")
        }
        BackingName::Long { hashed, full } => {
            assert!(full.len() > NAME_MAX);
            assert!(is_long(&hashed) && !is_reserved(&hashed));
            assert!(is_reserved(&sidecar_name(&hashed)));
            c.decrypt_long(dir, &hashed, &full).expect("decrypt long")
        }
    }
}

#[test]
fn every_length_round_trips_including_non_utf8() {
    let c = cipher();
    let mut rng = Rng(1);
    for len in 1..=NAME_MAX {
        for _ in 0..4 {
            let name = rng.name(len);
            assert_eq!(round_trip(&c, &DIR_A, &name), name, "length {len}");
        }
    }
    let latin1 = OsStr::from_bytes(b"caf\xe9 \xff\xfe");
    assert!(latin1.to_str().is_none());
    assert_eq!(round_trip(&c, &DIR_A, latin1), latin1);
}

#[test]
fn only_the_padded_length_shows() {
    let c = cipher();
    let mut rng = Rng(2);
    for len in 1..=NAME_MAX {
        let backing = c.encrypt(&DIR_A, &rng.name(len)).expect("encrypt");
        let encoded_len = match &backing {
            BackingName::Short(b) => b.len(),
            BackingName::Long { full, .. } => full.len(),
        };
        let sealed = SIV_TAG_LEN + (len / 16 + 1) * 16;
        assert_eq!(encoded_len, (sealed * 4).div_ceil(3), "length {len}");
        // 159 bytes pad to 160, seal to 176, encode to 235: still short.
        assert_eq!(backing.is_long(), len >= 160, "length {len}");
    }
}

#[test]
fn same_name_differs_between_directories_and_repeats_within_one() {
    let c = cipher();
    let name = OsStr::new("report.pdf");
    let a1 = c.encrypt(&DIR_A, name).expect("encrypt");
    let a2 = c.encrypt(&DIR_A, name).expect("encrypt");
    let b = c.encrypt(&DIR_B, name).expect("encrypt");
    assert_eq!(a1, a2);
    assert_ne!(a1, b);
    // And a name from one directory does not open in another.
    let err = c.decrypt(&DIR_B, a1.entry_name()).expect_err("wrong dir");
    assert!(matches!(err, NameError::Corrupt { .. }));
    // Nor under another key.
    let other = NameCipher::new(&Key64::random());
    assert!(other.decrypt(&DIR_A, a1.entry_name()).is_err());
}

#[test]
fn long_name_round_trips_via_its_sidecar() {
    let c = cipher();
    let name = OsString::from("n".repeat(255));
    let backing = c.encrypt(&DIR_A, &name).expect("encrypt");
    let BackingName::Long { hashed, full } = &backing else {
        panic!("a 255-byte name must be long");
    };
    assert!(hashed.to_str().is_some_and(|h| h.starts_with(LONG_PREFIX)));
    assert_eq!(hashed.len(), 45);
    let (side, contents) = backing.sidecar().expect("long names have a sidecar");
    assert_eq!(side, sidecar_name(hashed));
    assert_eq!(side.len(), 50);
    assert!(is_sidecar(&side));
    assert_eq!(contents, full);
    assert_eq!(c.decrypt_long(&DIR_A, hashed, full).expect("decrypt"), name);
    // Pinned: key 00 01 … 3f, dir_id a1 × 16, 255 × "n".
    assert_eq!(hashed, PINNED_LONG);
    // Deterministic too.
    assert_eq!(c.encrypt(&DIR_A, &name).expect("encrypt"), backing);
    // A long name is not a short one.
    assert!(matches!(
        c.decrypt(&DIR_A, hashed),
        Err(NameError::Corrupt { .. })
    ));
}

#[test]
fn sidecars_are_read_only_up_to_the_longest_name_they_can_hold() {
    let c = cipher();
    let dir = tempfile::tempdir().expect("tmp");
    // The longest name's sidecar fits the bound and reads back.
    let backing = c
        .encrypt(&DIR_A, OsStr::new(&"n".repeat(NAME_MAX)))
        .expect("encrypt");
    let (side, contents) = backing.sidecar().expect("long");
    assert!(contents.len() <= SIDECAR_MAX, "{}", contents.len());
    std::fs::write(dir.path().join(&side), contents).expect("write");
    let hashed = backing.entry_name();
    let d = crate::backing::Dir::open(dir.path()).expect("open");
    assert_eq!(read_sidecar_at(&d, hashed).expect("read"), contents);
    // A planted sidecar of 64 MiB is refused after reading one byte past
    // the bound, with a line naming it.
    let f = std::fs::File::create(dir.path().join(&side)).expect("create");
    f.set_len(64 << 20).expect("grow");
    let e = read_sidecar_at(&d, hashed).expect_err("oversized");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        e.to_string().ends_with(&format!(
            "{} is longer than {SIDECAR_MAX} bytes",
            side.to_string_lossy()
        )),
        "{e}"
    );
}

const PINNED_LONG: &str = "~L6NTnbzxaKngFjaXuwBAB7MhMjAcBBCCaeh_ovkqp8TU";

#[test]
fn sidecar_with_the_wrong_hash_is_refused() {
    let c = cipher();
    let one = c
        .encrypt(&DIR_A, &OsString::from("a".repeat(200)))
        .expect("e");
    let two = c
        .encrypt(&DIR_A, &OsString::from("b".repeat(200)))
        .expect("e");
    let (
        BackingName::Long { hashed: h1, .. },
        BackingName::Long {
            hashed: h2,
            full: f2,
        },
    ) = (&one, &two)
    else {
        panic!("200-byte names are long");
    };
    // Swapped sidecar.
    let err = c.decrypt_long(&DIR_A, h1, f2).expect_err("swapped sidecar");
    assert!(matches!(err, NameError::Corrupt { .. }));
    assert!(err.to_string().contains(h1.to_str().expect("ascii")));
    assert!(!err.to_string().contains("aaaa"));
    // Sidecar with a trailing newline, or truncated.
    assert!(c.decrypt_long(&DIR_A, h2, &format!("{f2}\n")).is_err());
    assert!(c.decrypt_long(&DIR_A, h2, &f2[..f2.len() - 1]).is_err());
    // A hashed name that is not of the long form at all.
    assert!(c.decrypt_long(&DIR_A, OsStr::new("abc"), f2).is_err());
    // A short encoding placed in a sidecar is not canonical.
    let BackingName::Short(short) = c.encrypt(&DIR_A, OsStr::new("x")).expect("e") else {
        panic!("short");
    };
    let short = short.into_string().expect("ascii");
    let hashed = layout::long_name_of(&short);
    assert!(c.decrypt_long(&DIR_A, &hashed, &short).is_err());
}

#[test]
fn invalid_names_are_refused_with_the_right_kind() {
    let c = NameCodec::Encrypted(cipher());
    for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"nul\0here"] {
        let err = c.encrypt(&DIR_A, OsStr::from_bytes(bad)).expect_err("bad");
        assert!(matches!(err, NameError::Invalid { .. }), "{bad:?}");
        assert_eq!(err.errno(), errno::EINVAL);
    }
    let err = c
        .encrypt(&DIR_A, &OsString::from("x".repeat(256)))
        .expect_err("too long");
    assert_eq!(err, NameError::TooLong { len: 256, max: 255 });
    assert_eq!(err.errno(), errno::ENAMETOOLONG);
    // Dot names are fine for users of an encrypted disk: they never reach
    // the backing directory as such.
    let backing = c.encrypt(&DIR_A, OsStr::new(".dirid")).expect("encrypt");
    assert!(!c.is_reserved(backing.entry_name()));
    assert_eq!(
        c.decrypt(&DIR_A, backing.entry_name()).expect("decrypt"),
        ".dirid"
    );
}

#[test]
fn tampered_names_are_corrupt_never_a_panic() {
    let c = cipher();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for name in ["a", "secret-plan.txt", &"q".repeat(100)] {
        let BackingName::Short(b) = c.encrypt(&DIR_A, OsStr::new(name)).expect("e") else {
            panic!("short");
        };
        let b = b.into_vec();
        for i in 0..b.len() {
            for &sub in b"Az_" {
                let mut t = b.clone();
                t[i] = if t[i] == sub { b'0' } else { sub };
                let err = c
                    .decrypt(&DIR_A, OsStr::from_bytes(&t))
                    .expect_err("tampered");
                assert!(matches!(err, NameError::Corrupt { .. }));
                assert_eq!(err.errno(), errno::EIO);
                if name.len() > 3 {
                    assert!(!err.to_string().contains(name));
                }
            }
        }
        assert!(ALPHABET.contains(&b[0]));
        // Truncated, extended, and with a non-alphabet character.
        assert!(c
            .decrypt(&DIR_A, OsStr::from_bytes(&b[..b.len() - 1]))
            .is_err());
        let mut longer = b.clone();
        longer.extend_from_slice(b"AAAA");
        assert!(c.decrypt(&DIR_A, OsStr::from_bytes(&longer)).is_err());
        let mut bad_char = b.clone();
        bad_char[3] = b'+';
        assert!(c.decrypt(&DIR_A, OsStr::from_bytes(&bad_char)).is_err());
    }
    // A long name's sidecar with one character changed.
    let BackingName::Long { hashed, full } = c
        .encrypt(&DIR_A, &OsString::from("L".repeat(230)))
        .expect("e")
    else {
        panic!("long");
    };
    let mut t = full.into_bytes();
    t[100] = if t[100] == b'A' { b'B' } else { b'A' };
    let t = String::from_utf8(t).expect("ascii");
    // The hash no longer matches, and a re-hashed name fails SIV.
    assert!(c.decrypt_long(&DIR_A, &hashed, &t).is_err());
    let rehashed = layout::long_name_of(&t);
    assert!(matches!(
        c.decrypt_long(&DIR_A, &rehashed, &t),
        Err(NameError::Corrupt { .. })
    ));
}

#[test]
fn fuzzed_backing_names_never_panic() {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.~L";
    let c = cipher();
    let mut rng = Rng(3);
    for round in 0..10_000 {
        let len = match round % 4 {
            0 => rng.below(64),
            1 => 43 + 22 * rng.below(8), // lengths real encodings have
            2 => rng.below(400),
            _ => LONG_NAME_LEN,
        };
        let s: String = (0..len)
            .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len())]))
            .collect();
        let os = OsStr::new(&s);
        assert!(matches!(
            c.decrypt(&DIR_A, os),
            Err(NameError::Corrupt { .. })
        ));
        assert!(c.decrypt_long(&DIR_A, os, &s).is_err());
        let hashed = layout::long_name_of(&s);
        assert!(c.decrypt_long(&DIR_A, &hashed, &s).is_err());
        assert!(c.decrypt_xattr_name(&DIR_A, &format!("user.{s}")).is_err());
        assert!(c
            .decrypt_xattr_value(&DIR_A, "user.x", s.as_bytes())
            .is_err());
        // Random raw bytes too.
        let raw: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        assert!(c.decrypt(&DIR_A, OsStr::from_bytes(&raw)).is_err());
    }
}

#[test]
fn rfc5297_a1_deterministic_known_answer() {
    let key = hex::decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
        .expect("hex");
    let ad = hex::decode("101112131415161718191a1b1c1d1e1f2021222324252627").expect("hex");
    let pt = hex::decode("112233445566778899aabbccddee").expect("hex");
    let mut siv = Aes128Siv::new_from_slice(&key).expect("32-byte key");
    let ct = siv.encrypt([&ad[..]], &pt).expect("encrypt");
    assert_eq!(
        hex::encode(&ct),
        "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"
    );
    assert_eq!(siv.decrypt([&ad[..]], &ct).expect("decrypt"), pt);
}

#[test]
fn name_encoding_is_siv_of_padded_name_under_dir_id() {
    // Rebuild the format from its definition with the raw primitive.
    let key = test_key();
    let name = b"hello";
    let mut padded = name.to_vec();
    padded.extend_from_slice(&[11u8; 11]);
    let mut siv = Aes256Siv::new_from_slice(key.expose()).expect("64-byte key");
    let sealed = siv.encrypt([&DIR_A[..]], &padded).expect("seal");
    let expected = URL_SAFE_NO_PAD.encode(&sealed);
    let got = cipher()
        .encrypt(&DIR_A, OsStr::new("hello"))
        .expect("encrypt");
    assert_eq!(got, BackingName::Short(OsString::from(&expected)));
    // Pinned, so that any change of the on-disk format is noticed.
    assert_eq!(expected, PINNED_HELLO);
}

/// `encrypt(key = 00 01 … 3f, dir_id = a1 × 16, "hello")`.
const PINNED_HELLO: &str = "kH2iUtJmeZVYKe67S0IPHig3xV_aL3M6lvMTUjjA0dg";

#[test]
fn xattr_names_round_trip_and_are_deterministic() {
    let c = cipher();
    let owner = [7u8; 16];
    for name in [
        "user.comment",
        "user.x",
        "security.selinux",
        &"n".repeat(XATTR_NAME_MAX),
    ] {
        let backing = c.encrypt_xattr_name(&owner, name).expect("encrypt");
        assert!(backing.starts_with(XATTR_PREFIX));
        assert!(backing.len() <= 255, "{}", backing.len());
        assert_eq!(c.encrypt_xattr_name(&owner, name).expect("again"), backing);
        assert_eq!(
            c.decrypt_xattr_name(&owner, &backing).expect("decrypt"),
            name
        );
        // Another inode: different, and does not open.
        let other = c.encrypt_xattr_name(&[8u8; 16], name).expect("encrypt");
        assert_ne!(other, backing);
        assert!(c.decrypt_xattr_name(&owner, &other).is_err());
        // An entry name under the same id does not pass for an xattr name.
        if let Ok(BackingName::Short(entry)) = c.encrypt(&owner, OsStr::new(name)) {
            let as_xattr = format!("user.{}", entry.to_str().expect("ascii"));
            assert!(c.decrypt_xattr_name(&owner, &as_xattr).is_err());
        }
    }
    let err = c
        .encrypt_xattr_name(&owner, &"n".repeat(XATTR_NAME_MAX + 1))
        .expect_err("too long");
    assert_eq!(err.errno(), errno::ERANGE);
    assert!(matches!(
        c.encrypt_xattr_name(&owner, ""),
        Err(NameError::Invalid { .. })
    ));
    assert!(matches!(
        c.encrypt_xattr_name(&owner, "a\0b"),
        Err(NameError::Invalid { .. })
    ));
    assert!(matches!(
        c.decrypt_xattr_name(&owner, "trusted.abc"),
        Err(NameError::Corrupt { .. })
    ));
}

#[test]
fn xattr_values_round_trip_and_are_bound_to_owner_and_name() {
    let c = cipher();
    let owner = [7u8; 16];
    for value in [&b""[..], b"v", &[0xffu8; 4000]] {
        let sealed = c.encrypt_xattr_value(&owner, "user.a", value);
        assert_eq!(sealed.len(), value.len() + XATTR_VALUE_OVERHEAD);
        assert_eq!(c.encrypt_xattr_value(&owner, "user.a", value), sealed);
        assert_eq!(
            c.decrypt_xattr_value(&owner, "user.a", &sealed)
                .expect("open"),
            value
        );
        assert!(c.decrypt_xattr_value(&owner, "user.b", &sealed).is_err());
        assert!(c
            .decrypt_xattr_value(&[8u8; 16], "user.a", &sealed)
            .is_err());
        let mut t = sealed.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        let err = c
            .decrypt_xattr_value(&owner, "user.a", &t)
            .expect_err("tampered");
        assert_eq!(err.errno(), errno::EIO);
    }
    assert!(c.decrypt_xattr_value(&owner, "user.a", &[0u8; 5]).is_err());
}

#[test]
fn plain_codec_is_the_identity_and_refuses_strata_names() {
    let p = NameCodec::Plain;
    assert!(!p.is_encrypted());
    let mut rng = Rng(4);
    for len in 1..=NAME_MAX {
        let mut name = rng.name(len);
        if is_plain_reserved(&name) {
            name = OsString::from("x");
        }
        let b = p.encrypt(&DIR_A, &name).expect("encrypt");
        assert_eq!(b, BackingName::Short(name.clone()));
        assert_eq!(p.decrypt(&DIR_A, &name).expect("decrypt"), name);
    }
    for reserved in [".strata", ".strata-meta", ".stratafoo"] {
        let err = p
            .encrypt(&DIR_A, OsStr::new(reserved))
            .expect_err("reserved");
        assert!(matches!(err, NameError::Invalid { .. }));
        assert!(p.is_reserved(OsStr::new(reserved)));
        assert!(p.decrypt(&DIR_A, OsStr::new(reserved)).is_err());
    }
    assert!(p.encrypt(&DIR_A, OsStr::new(".strat")).is_ok());
    assert!(!p.is_reserved(OsStr::new(".bashrc")));
    assert!(matches!(
        p.encrypt(&DIR_A, OsStr::new("..")),
        Err(NameError::Invalid { .. })
    ));
    assert!(matches!(
        p.encrypt(&DIR_A, &OsString::from("y".repeat(256))),
        Err(NameError::TooLong { .. })
    ));
    assert!(p.decrypt_long(&DIR_A, OsStr::new("~Lx"), "abc").is_err());

    assert_eq!(p.encrypt_xattr_name(&DIR_A, "user.k").expect("e"), "user.k");
    assert_eq!(p.decrypt_xattr_name(&DIR_A, "user.k").expect("d"), "user.k");
    assert_eq!(p.encrypt_xattr_value(&DIR_A, "user.k", b"v"), b"v");
    assert_eq!(
        p.decrypt_xattr_value(&DIR_A, "user.k", b"v").expect("d"),
        b"v"
    );
    assert_eq!(p.xattr_value_overhead(), 0);
}

#[test]
fn encrypted_codec_delegates_to_the_cipher() {
    let codec = NameCodec::Encrypted(cipher());
    let c = cipher();
    assert!(codec.is_encrypted());
    let name = OsStr::new("file.txt");
    let b = codec.encrypt(&DIR_A, name).expect("encrypt");
    assert_eq!(b, c.encrypt(&DIR_A, name).expect("encrypt"));
    assert_eq!(
        codec.decrypt(&DIR_A, b.entry_name()).expect("decrypt"),
        name
    );
    let long = OsString::from("z".repeat(240));
    let BackingName::Long { hashed, full } = codec.encrypt(&DIR_A, &long).expect("e") else {
        panic!("long");
    };
    assert_eq!(codec.decrypt_long(&DIR_A, &hashed, &full).expect("d"), long);
    assert!(codec.is_reserved(OsStr::new(".dirid")));
    assert!(codec.is_reserved(&sidecar_name(&hashed)));
    assert!(!codec.is_reserved(&hashed));
    let x = codec.encrypt_xattr_name(&DIR_A, "user.k").expect("e");
    assert_eq!(codec.decrypt_xattr_name(&DIR_A, &x).expect("d"), "user.k");
    let v = codec.encrypt_xattr_value(&DIR_A, "user.k", b"v");
    assert_eq!(
        codec.decrypt_xattr_value(&DIR_A, "user.k", &v).expect("d"),
        b"v"
    );
    assert_eq!(codec.xattr_value_overhead(), 16);
    assert_eq!(format!("{codec:?}"), "Encrypted(NameCipher([redacted]))");
}
