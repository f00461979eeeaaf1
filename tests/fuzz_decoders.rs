//! Property tests of every decoder that reads bytes a user or a disk can
//! damage: backing-file headers, encrypted names and xattrs, the store
//! config and the vault. Arbitrary and mutated input must give an error,
//! never a panic. Inputs that once broke a decoder stay below as fixed
//! regression cases (proptest also keeps its own seeds under
//! `proptest-regressions/`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use strata::crypto::Key64;
use strata::format::{Header, HEADER_LEN};
use strata::names::{NameCipher, NameCodec};

/// Where proptest keeps the seeds of failing cases (committed).
const REGRESSIONS: &str = "tests/fuzz_decoders.proptest-regressions";

/// A valid header (as written by format 1) to mutate.
fn valid_header() -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(strata::format::header::MAGIC);
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b[10] = 1;
    b[11] = 0b1111;
    b[16..32].copy_from_slice(&[7u8; 16]);
    b
}

fn codec() -> NameCodec {
    NameCodec::Encrypted(NameCipher::new(&Key64::from_bytes(&[0x42; 64])))
}

/// Inputs kept as regression cases: boundaries of every header field.
#[test]
fn header_regression_corpus() {
    let v = valid_header();
    assert!(Header::decode(&v).is_ok(), "the base case decodes");
    let mut corpus: Vec<Vec<u8>> = vec![Vec::new(), v[..8].to_vec(), v[..HEADER_LEN - 1].to_vec()];
    for (at, value) in [
        (8, 0u8),
        (9, 0xff),
        (10, 0),
        (10, 3),
        (10, 0xff),
        (11, 0xf0),
        (12, 1),
        (15, 0x80),
        (64, 1),
        (95, 0xff),
    ] {
        let mut b = v;
        b[at] = value;
        if at == 8 {
            b[9] = 0;
        }
        corpus.push(b.to_vec());
    }
    for input in corpus {
        let r = Header::decode(&input);
        assert!(r.is_err(), "{} bytes decoded: {r:?}", input.len());
        assert!(!r.unwrap_err().to_string().is_empty());
    }
}

#[test]
fn name_regression_corpus() {
    let c = codec();
    let id = [1u8; 16];
    let corpus: [&[u8]; 10] = [
        b"",
        b"A",
        b"====",
        b"AAAAAAAAAAAAAAAAAAAAAA",
        b"\xff\xfe",
        b"..",
        b"a/b",
        &[b'A'; 300],
        b"~",
        b"~L",
    ];
    for input in corpus {
        assert!(
            c.decrypt(&id, OsStr::from_bytes(input)).is_err(),
            "{input:?} decrypted"
        );
        assert!(c
            .decrypt_long(&id, OsStr::from_bytes(input), "AAAA")
            .is_err());
    }
    // Found by the generator: "." and ".." are refused, not encrypted.
    assert!(c.encrypt(&id, OsStr::new(".")).is_err());
    assert!(c.encrypt(&id, OsStr::new("..")).is_err());
    let good = c.encrypt(&id, OsStr::new("x")).expect("encrypt");
    assert_eq!(c.decrypt(&id, good.entry_name()).expect("round trip"), "x");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Header::decode(&bytes);
    }

    #[test]
    fn mutated_header_decodes_or_errs(at in 0usize..HEADER_LEN, xor in 1u8..=255, cut in 0usize..=HEADER_LEN) {
        let mut b = valid_header();
        b[at] ^= xor;
        match Header::decode(&b[..cut]) {
            Ok(h) => {
                prop_assert_eq!(cut, HEADER_LEN);
                // What decodes re-encodes to the same bytes: nothing is dropped.
                prop_assert_eq!(&h.encode()[..], &b[..]);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn name_decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), side in ".{0,300}") {
        let c = codec();
        let id = [3u8; 16];
        let name = OsStr::from_bytes(&bytes);
        prop_assert!(c.decrypt(&id, name).is_err());
        prop_assert!(c.decrypt_long(&id, name, &side).is_err());
        prop_assert!(c.decrypt_xattr_value(&id, "user.x", &bytes).is_err());
        if let Ok(s) = std::str::from_utf8(&bytes) {
            prop_assert!(c.decrypt_xattr_name(&id, s).is_err());
        }
    }

    #[test]
    fn mutated_name_fails(name in "[a-zA-Z0-9 ._-]{1,255}", at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_-]") {
        prop_assume!(name != "." && name != "..");
        let c = codec();
        let id = [5u8; 16];
        let b = c.encrypt(&id, OsStr::new(&name)).expect("encrypt");
        let enc = match b.sidecar() {
            Some((_, full)) => full.to_string(),
            None => b.entry_name().to_string_lossy().into_owned(),
        };
        let i = at.index(enc.len());
        let mut m = enc.clone().into_bytes();
        m[i] = to.as_bytes()[0];
        let m = String::from_utf8(m).expect("ascii");
        if m != enc {
            // Either fails or (last base64 char, unused low bits) means the same name.
            if let Ok(back) = c.decrypt(&id, OsStr::new(&m)) {
                prop_assert_eq!(back, OsStr::new(&name));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn config_read_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("strata.conf"), &bytes).expect("write config");
        prop_assert!(strata::store::Config::read(dir.path()).is_err());
    }

    #[test]
    fn vault_open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("vault");
        std::fs::write(&p, &bytes).expect("write vault");
        let pass = strata::crypto::SecretBytes::new(b"pass".to_vec());
        prop_assert!(strata::vault::Vault::open(&p, &pass).is_err());
    }
}
