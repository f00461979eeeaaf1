//! The sealed body's plaintext: the vault's contents as JSON, written into
//! and read from zeroized buffers. Key material is hex in the JSON and is
//! decoded straight into [`Key32`]s, never through an unzeroized string.
//!
//! ```json
//! {"region": "eu-west", "created": 1700000000, "generation": 12,
//!  "keys": [{"name": "disk", "kind": "customer", "rotation_days": null,
//!            "versions": [{"version": 1, "created": 1700000000,
//!                          "enabled": true, "material": "<64 hex digits>"}]},
//!           {"name": "fleet", "kind": "customer", "rotation_days": null,
//!            "versions": [],
//!            "service": {"addresses": ["https://kms:8200"], "mount": "transit",
//!                        "key": "fleet", "auth": {"method": "token",
//!                        "token_file": "/etc/strata/token"}, "manage": false}}],
//!  "store_generations": {"<store id hex>": 3}}
//! ```
//!
//! `generation` counts saves (absent in vaults written before it existed:
//! read as 0); a running daemon refuses to go back to an older one. A key
//! with `service` is held by a key service: it has no versions here, is a
//! customer key, and the service description holds no secret.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{Error as _, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{check_key_name, ExternalKey, KeyKind, KeyVersion, VaultKey};
use crate::crypto::Key32;

/// The vault's contents.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) region: String,
    pub(crate) created: u64,
    /// Bumped at every save.
    pub(crate) generation: u64,
    pub(crate) keys: Vec<VaultKey>,
    pub(crate) store_generations: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    region: &'a str,
    created: u64,
    generation: u64,
    keys: Vec<KeyOut<'a>>,
    store_generations: &'a BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct KeyOut<'a> {
    name: &'a str,
    kind: KeyKind,
    rotation_days: Option<u32>,
    versions: Vec<VersionOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a ExternalKey>,
}

#[derive(Serialize)]
struct VersionOut<'a> {
    version: u32,
    created: u64,
    enabled: bool,
    #[serde(serialize_with = "material_out")]
    material: &'a Key32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyIn {
    region: String,
    created: u64,
    #[serde(default)]
    generation: u64,
    keys: Vec<KeyIn>,
    store_generations: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIn {
    name: String,
    kind: KeyKind,
    rotation_days: Option<u32>,
    versions: Vec<VersionIn>,
    #[serde(default)]
    service: Option<ExternalKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionIn {
    version: u32,
    created: u64,
    enabled: bool,
    #[serde(deserialize_with = "material_in")]
    material: Key32,
}

fn material_out<S: Serializer>(key: &&Key32, s: S) -> Result<S::Ok, S::Error> {
    let mut hex_buf = Zeroizing::new([0u8; 64]);
    hex::encode_to_slice(key.expose(), &mut hex_buf[..])
        .map_err(|_| S::Error::custom("key material does not fit its hex buffer"))?;
    let text = std::str::from_utf8(&hex_buf[..])
        .map_err(|_| S::Error::custom("hex encoding produced non-ASCII"))?;
    s.serialize_str(text)
}

fn material_in<'de, D: Deserializer<'de>>(d: D) -> Result<Key32, D::Error> {
    struct HexKey;
    impl Visitor<'_> for HexKey {
        type Value = Key32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("64 hex digits of key material")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key32, E> {
            let mut key = Key32::zero();
            hex::decode_to_slice(v, key.expose_mut())
                .map_err(|_| E::custom("key material is not 64 hex digits"))?;
            Ok(key)
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Key32, E> {
            let v = Zeroizing::new(v);
            self.visit_str(&v)
        }
    }
    d.deserialize_str(HexKey)
}

/// Counts bytes written, to size the real buffer before writing secrets.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Body {
    /// The JSON text in a zeroized buffer with `spare` bytes of spare
    /// capacity (for the AEAD tag), sized in advance so that it never
    /// reallocates and leaves copies behind.
    pub(crate) fn to_json(&self, spare: usize) -> Result<Zeroizing<Vec<u8>>, String> {
        let out = BodyOut {
            region: &self.region,
            created: self.created,
            generation: self.generation,
            keys: self
                .keys
                .iter()
                .map(|k| KeyOut {
                    name: &k.name,
                    kind: k.kind,
                    rotation_days: k.rotation_days,
                    versions: k
                        .versions
                        .iter()
                        .map(|v| VersionOut {
                            version: v.version,
                            created: v.created,
                            enabled: v.enabled,
                            material: v.material(),
                        })
                        .collect(),
                    service: k.service.as_ref(),
                })
                .collect(),
            store_generations: &self.store_generations,
        };
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, &out)
            .map_err(|e| format!("cannot serialize the body: {:?}", e.classify()))?;
        let mut buf = Zeroizing::new(Vec::with_capacity(counter.0 + spare));
        serde_json::to_writer(&mut *buf, &out)
            .map_err(|e| format!("cannot serialize the body: {:?}", e.classify()))?;
        Ok(buf)
    }

    /// Parses and checks the JSON text. The error describes the problem
    /// without quoting the text.
    pub(crate) fn from_json(text: &[u8]) -> Result<Body, String> {
        let parsed: BodyIn = serde_json::from_slice(text).map_err(|e| {
            format!(
                "body does not parse ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        let mut keys: Vec<VaultKey> = Vec::with_capacity(parsed.keys.len());
        for k in parsed.keys {
            if check_key_name(&k.name).is_err() {
                return Err(format!("body holds an invalid key name {:?}", k.name));
            }
            if keys.iter().any(|other| other.name == k.name) {
                return Err(format!("body holds key {:?} twice", k.name));
            }
            match &k.service {
                None if k.versions.is_empty() => {
                    return Err(format!("key {:?} has no versions", k.name));
                }
                Some(_) if !k.versions.is_empty() => {
                    return Err(format!(
                        "key {:?} is held by a key service but also has versions here",
                        k.name
                    ));
                }
                Some(_) if k.kind != KeyKind::Customer => {
                    return Err(format!(
                        "key {:?} is held by a key service but is a {} key",
                        k.name, k.kind
                    ));
                }
                Some(s) => s.check().map_err(|e| format!("key {:?}: {e}", k.name))?,
                None => {}
            }
            let mut last = 0u32;
            let mut versions = Vec::with_capacity(k.versions.len());
            for v in k.versions {
                if v.version <= last {
                    return Err(format!(
                        "key {:?} lists version {} after version {last}",
                        k.name, v.version
                    ));
                }
                last = v.version;
                versions.push(KeyVersion::new(v.version, v.created, v.enabled, v.material));
            }
            keys.push(VaultKey {
                name: k.name,
                kind: k.kind,
                rotation_days: k.rotation_days,
                versions,
                service: k.service,
            });
        }
        Ok(Body {
            region: parsed.region,
            created: parsed.created,
            generation: parsed.generation,
            keys,
            store_generations: parsed.store_generations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body {
        Body {
            region: "eu-west".into(),
            created: 1_700_000_000,
            generation: 4,
            keys: vec![
                VaultKey {
                    name: "disk".into(),
                    kind: KeyKind::Customer,
                    rotation_days: Some(90),
                    versions: vec![
                        KeyVersion::new(1, 5, false, Key32::from_bytes(&[0xab; 32])),
                        KeyVersion::new(2, 6, true, Key32::from_bytes(&[0x01; 32])),
                    ],
                    service: None,
                },
                VaultKey {
                    name: "fleet".into(),
                    kind: KeyKind::Customer,
                    rotation_days: None,
                    versions: Vec::new(),
                    service: Some(ExternalKey {
                        addresses: vec!["https://kms:8200".into()],
                        mount: "transit".into(),
                        key: "fleet".into(),
                        ca_file: Some("/etc/ca.pem".into()),
                        auth: super::super::keys::ServiceAuth::Token {
                            token_file: "/etc/token".into(),
                        },
                        manage: true,
                        timeout_ms: None,
                    }),
                },
            ],
            store_generations: [("00ff".to_string(), 7)].into_iter().collect(),
        }
    }

    #[test]
    fn json_round_trip_without_reallocation() {
        let b = body();
        let json = b.to_json(16).expect("serializes");
        assert!(json.capacity() >= json.len() + 16);
        let text = std::str::from_utf8(&json).expect("utf8");
        assert!(text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains("\"kind\":\"customer\""), "{text}");
        let back = Body::from_json(&json).expect("parses");
        assert_eq!(back.region, "eu-west");
        assert_eq!(back.generation, 4);
        assert_eq!(back.store_generations.get("00ff"), Some(&7));
        let k = &back.keys[0];
        assert_eq!(k.rotation_days, Some(90));
        assert_eq!(k.latest().map(|v| v.version), Some(2));
        assert_eq!(back.keys[1].service, b.keys[1].service);
        assert!(back.keys[1].versions.is_empty());
        assert!(!k.versions[0].enabled);
        assert_eq!(k.versions[0].material().expose(), &[0xab; 32]);
    }

    #[test]
    fn a_body_without_a_generation_reads_as_generation_0() {
        let good = String::from_utf8(body().to_json(0).expect("json").to_vec()).expect("utf8");
        let old = good.replace("\"generation\":4,", "");
        assert_ne!(old, good);
        assert_eq!(
            Body::from_json(old.as_bytes()).expect("parses").generation,
            0
        );
    }

    #[test]
    fn refuses_bad_bodies_without_quoting_material() {
        let good = String::from_utf8(body().to_json(0).expect("json").to_vec()).expect("utf8");
        let cases = [
            good.replace(&"ab".repeat(32), &"zz".repeat(32)),
            good.replace(&"ab".repeat(32), "abab"),
            good.replace("\"version\":2", "\"version\":1"),
            good.replace("\"disk\"", "\"bad name\""),
            good.replace("\"region\"", "\"extra\":1,\"region\""),
            good[..good.len() - 1].to_string(),
            // A service key with versions, or of another kind, or with a
            // description that does not check.
            good.replace("\"versions\":[],", &format!("\"versions\":[{{\"version\":1,\"created\":1,\"enabled\":true,\"material\":\"{}\"}}],", "ab".repeat(32))),
            good.replace("\"name\":\"fleet\",\"kind\":\"customer\"", "\"name\":\"fleet\",\"kind\":\"host\""),
            good.replace("https://kms:8200", "http://kms:8200"),
        ];
        for text in cases {
            let e = Body::from_json(text.as_bytes()).expect_err("refused");
            assert!(!e.contains("abab") && !e.contains("zzzz"), "{e}");
        }
    }
}
