//! The key vault: one local file holding the vault's keys, sealed under a
//! passphrase (and a recovery key), in the manner of LUKS.
//!
//! The file has a small plain header and a body sealed with
//! XChaCha20-Poly1305 under a random 256-bit vault master key (VMK). The VMK
//! is stored in the header wrapped in *key slots*, one opened by the
//! passphrase and one by the [`RecoveryKey`] shown once at creation. Each
//! slot's wrapping key is Argon2id of its secret under the slot's own salt
//! and cost parameters. The byte layout is documented in `format.rs`.
//!
//! * Changing the passphrase or the recovery key ([`Vault::change_secrets`])
//!   makes a new VMK, new slots for both secrets and re-seals the body under
//!   the new VMK: the old secret opens neither the new file nor its backup,
//!   and a VMK learned from an old copy opens no later version. Since the
//!   recovery slot must be re-made too, the caller passes the recovery key
//!   to keep (checked with [`Vault::check_recovery_key`]) or a new one.
//!   Refused while a running mount holds the vault ([`Vault::hold_for_mount`]):
//!   it keeps the old VMK to follow the file.
//! * A passphrase slot that does not open means [`VaultError::WrongPassphrase`];
//!   a header whose checksum fails, or a body that does not authenticate once
//!   the slot has opened, means [`VaultError::Corrupt`].
//! * Every save replaces the file atomically and keeps the previous file as
//!   `PATH.bak` (same secrets, one change older: a fallback if the file is
//!   later damaged). A change of secrets writes the new file under both
//!   names instead, so no backup is left that the old secret opens. It does
//!   not revoke past access to the keys themselves: whoever opened an old
//!   copy learned the vault keys in it, which rotation and re-keying replace.
//! * Changes made through [`Vault`]'s methods live in memory until
//!   [`Vault::save`] (or [`Vault::change_secrets`], which saves).
//!   Saves from several processes are serialized by a lock on `PATH.lock`,
//!   so the file is never torn, and a save is refused
//!   ([`VaultError::ChangedSince`]) when another process saved since this
//!   value was read: it would undo that save (a rotation's new version, a
//!   revocation, a change of passphrase). [`Vault::reload`] picks up
//!   another process's save, dropping unsaved changes.
//! * Every save bumps the body's `generation`. [`Vault::reload`] refuses a
//!   file whose generation is older than the one held
//!   ([`VaultError::RolledBack`]): a running daemon never goes back to a
//!   backup copied over the vault, which could re-enable revoked keys.
//! * A customer key may be held by a key service ([`ExternalKey`]): the
//!   vault then keeps where it lives and how to reach it, no material.
//!
//! # Key derivation cost
//!
//! Every slot's Argon2id parameters lie between a floor (1 MiB, 1 pass) and
//! a ceiling (1 GiB, 10 passes, 16 lanes), checked when a slot is written
//! and when a header is parsed, before any derivation ([`KdfParams::check`]).
//! New passphrases have at least 8 characters.
//!
//! [`KdfParams::default`] is Argon2id with 64 MiB of memory, 3 passes and 1
//! lane, the same for both slots. In a release build on a 2-core x86-64 VM
//! one derivation takes about 0.2 s (measured 0.18 s), so opening a vault
//! costs one of them and creating one costs two (passphrase and recovery
//! slot). The recovery key is 128 random bits and would not need the cost;
//! it shares it so that both slots are written alike. The ignored test
//! `default_kdf_cost` measures it again (`cargo test --release -- --ignored
//! default_kdf_cost --nocapture`).

mod body;
mod error;
mod file;
mod format;
mod keys;
mod recovery;
mod seal;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use error::VaultError;
pub use keys::{
    ExternalKey, KeyKind, KeyVersion, ServiceAuth, UnknownKeyKind, VaultKey, MAX_KEY_NAME_LEN,
};
pub use recovery::RecoveryKey;
pub use seal::{
    check_new_passphrase, KdfParams, MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM,
    MIN_ITERATIONS, MIN_MEMORY_KIB, MIN_PASSPHRASE_CHARS, RECOMMENDED_ITERATIONS,
    RECOMMENDED_MEMORY_KIB,
};

use body::Body;
use format::{Header, Parsed, Slot, SlotKind, ID_LEN};

use crate::crypto::{self, Key32, SecretBytes};

/// An open vault: its path, its header, the VMK and the decrypted contents.
pub struct Vault {
    path: PathBuf,
    header: Header,
    vmk: Key32,
    body: Body,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Wraps `vmk` in a new slot of `kind` opened by `secret`.
fn make_slot(
    id: &[u8; ID_LEN],
    vmk: &Key32,
    kind: SlotKind,
    secret: &[u8],
    kdf: KdfParams,
) -> Result<Slot, VaultError> {
    let salt = crypto::random_array();
    let kek = seal::derive_kek(secret, &salt, kdf)?;
    let (nonce, wrapped) = seal::wrap_vmk(&kek, vmk, &format::slot_ad(id, kind));
    Ok(Slot {
        kind,
        kdf,
        salt,
        nonce,
        wrapped,
    })
}

/// A running mount's hold on its vault: while any exists, a change of the
/// master key is refused. Released on drop, or when the process dies.
#[derive(Debug)]
pub struct MountHold(#[allow(dead_code)] Option<std::fs::File>);

/// Opens and parses the sealed body of a parsed file.
fn open_body(path: &Path, vmk: &Key32, parsed: &Parsed<'_>) -> Result<Body, VaultError> {
    let text =
        seal::open_body(vmk, parsed.aad, &parsed.body_nonce, parsed.body).ok_or_else(|| {
            VaultError::corrupt(
                path,
                "the key slot opened but the sealed body does not authenticate",
            )
        })?;
    Body::from_json(&text).map_err(|what| VaultError::corrupt(path, what))
}

impl Vault {
    /// Creates a new, empty vault at `path` sealed under `passphrase`, and
    /// returns it with its recovery key, which is shown to the user once and
    /// never stored in the clear. Refuses an existing file
    /// ([`VaultError::Exists`]); creates missing parent directories with
    /// mode 0700; the file has mode 0600.
    pub fn create(
        path: &Path,
        passphrase: &SecretBytes,
        region: &str,
        kdf: KdfParams,
    ) -> Result<(Vault, RecoveryKey), VaultError> {
        kdf.check().map_err(VaultError::InvalidKdfParams)?;
        check_new_passphrase(passphrase.expose())?;
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(VaultError::Exists(path.to_path_buf()));
        }
        let id = crypto::random_array::<ID_LEN>();
        let vmk = Key32::random();
        let recovery = RecoveryKey::random();
        let slots = vec![
            make_slot(&id, &vmk, SlotKind::Passphrase, passphrase.expose(), kdf)?,
            make_slot(&id, &vmk, SlotKind::Recovery, recovery.secret(), kdf)?,
        ];
        let vault = Vault {
            path: path.to_path_buf(),
            header: Header { id, slots },
            vmk,
            body: Body {
                region: region.to_string(),
                created: now(),
                generation: 1,
                keys: Vec::new(),
                store_generations: BTreeMap::new(),
            },
        };
        let bytes = vault.encode(&vault.header, &vault.vmk)?;
        file::create(path, &bytes)?;
        Ok((vault, recovery))
    }

    /// Opens the vault at `path` with its passphrase.
    pub fn open(path: &Path, passphrase: &SecretBytes) -> Result<Vault, VaultError> {
        Self::open_slot(path, SlotKind::Passphrase, passphrase.expose())
    }

    /// Opens the vault at `path` with its recovery key.
    pub fn open_with_recovery(path: &Path, key: &RecoveryKey) -> Result<Vault, VaultError> {
        Self::open_slot(path, SlotKind::Recovery, key.secret())
    }

    fn open_slot(path: &Path, kind: SlotKind, secret: &[u8]) -> Result<Vault, VaultError> {
        let bytes = file::read(path)?;
        let parsed = format::parse(path, &bytes)?;
        let id = parsed.header.id;
        let slot = parsed.header.slot(kind).ok_or_else(|| {
            VaultError::corrupt(path, format!("the vault has no {} slot", kind.name()))
        })?;
        let kek = seal::derive_kek(secret, &slot.salt, slot.kdf)?;
        let vmk = seal::unwrap_vmk(
            &kek,
            &slot.nonce,
            &slot.wrapped,
            &format::slot_ad(&id, kind),
        )
        .ok_or_else(|| match kind {
            SlotKind::Passphrase => VaultError::WrongPassphrase(path.to_path_buf()),
            SlotKind::Recovery => VaultError::WrongRecoveryKey(path.to_path_buf()),
        })?;
        let body = open_body(path, &vmk, &parsed)?;
        Ok(Vault {
            path: path.to_path_buf(),
            header: parsed.header,
            vmk,
            body,
        })
    }

    /// The whole file for `header` and the current contents, body sealed
    /// under `vmk` with a fresh nonce.
    fn encode(&self, header: &Header, vmk: &Key32) -> Result<Vec<u8>, VaultError> {
        let aad = header.encode();
        let mut buf = self
            .body
            .to_json(seal::TAG_LEN)
            .map_err(|what| VaultError::corrupt(&self.path, what))?;
        let nonce = seal::seal_body(vmk, &aad, &mut buf);
        format::assemble(&aad, &nonce, &buf).ok_or_else(|| {
            VaultError::corrupt(
                &self.path,
                "the body has grown past 4 GiB and cannot be saved",
            )
        })
    }

    /// Writes the vault to its file atomically, under the writers' lock
    /// `PATH.lock`: `PATH.tmp` (0600) is written and fsynced, the current
    /// file is copied to `PATH.bak`, `PATH.tmp` is renamed over `PATH` and
    /// the directory fsynced. The generation goes up by one. A failure at
    /// any point leaves `PATH` (and the generation held) as it was.
    pub fn save(&mut self) -> Result<(), VaultError> {
        let held = self.body.generation;
        self.body.generation += 1;
        let result = self.encode(&self.header, &self.vmk).and_then(|bytes| {
            file::replace(&self.path, &bytes, |current| {
                self.unchanged_since(held, current)
            })
        });
        if result.is_err() {
            self.body.generation -= 1;
        }
        result
    }

    /// Whether the file's current bytes are still what this value read
    /// (generation `held`, under this master key), so that a save does not
    /// undo a save made since by another process: a key version that DEKs
    /// were rewrapped to, a revocation, or a change of passphrase (the save
    /// would bring the old passphrase and master key back). A file that is
    /// not a vault any more, or one of an older generation (a backup copied
    /// over it), may be written over.
    fn unchanged_since(&self, held: u64, current: &[u8]) -> Result<(), VaultError> {
        let Ok(parsed) = format::parse(&self.path, current) else {
            return Ok(());
        };
        let changed = |what: String| VaultError::ChangedSince {
            path: self.path.clone(),
            what,
        };
        if parsed.header.id != self.header.id {
            return Err(changed(format!(
                "it now holds vault {}",
                hex::encode(parsed.header.id)
            )));
        }
        let Ok(body) = open_body(&self.path, &self.vmk, &parsed) else {
            return Err(changed(
                "its master key was changed (vault passwd or recovery-key)".into(),
            ));
        };
        if body.generation > held {
            return Err(changed(format!(
                "another strata command saved generation {} over generation {held}",
                body.generation
            )));
        }
        Ok(())
    }

    /// Argon2id parameters of the slot of `kind`, if there is one.
    fn slot_kdf(&self, kind: SlotKind) -> Option<KdfParams> {
        self.header.slot(kind).map(|s| s.kdf)
    }

    /// Argon2id parameters of the passphrase slot.
    pub fn passphrase_kdf(&self) -> Option<KdfParams> {
        self.slot_kdf(SlotKind::Passphrase)
    }

    /// Argon2id parameters of the recovery slot.
    pub fn recovery_kdf(&self) -> Option<KdfParams> {
        self.slot_kdf(SlotKind::Recovery)
    }

    /// Checks that `key` opens this vault's recovery slot (one Argon2id
    /// derivation), so that a recovery key passed to [`Vault::change_secrets`]
    /// to be kept is the one the user holds, not a mistyped one.
    pub fn check_recovery_key(&self, key: &RecoveryKey) -> Result<(), VaultError> {
        let wrong = || VaultError::RecoveryKeyToKeepIsWrong(self.path.clone());
        let slot = self.header.slot(SlotKind::Recovery).ok_or_else(wrong)?;
        let kek = seal::derive_kek(key.secret(), &slot.salt, slot.kdf)?;
        let vmk = seal::unwrap_vmk(
            &kek,
            &slot.nonce,
            &slot.wrapped,
            &format::slot_ad(&self.header.id, SlotKind::Recovery),
        )
        .ok_or_else(wrong)?;
        if vmk != self.vmk {
            return Err(wrong());
        }
        Ok(())
    }

    /// Fails with [`VaultError::InUse`] when a running mount holds the vault
    /// at `path` now, so that a change of secrets can be refused before the
    /// user types anything; [`Vault::change_secrets`] checks again.
    pub fn check_not_held(path: &Path) -> Result<(), VaultError> {
        if !path.exists() {
            return Ok(());
        }
        file::lock_in_use(path, true).map(drop)
    }

    /// Takes the running mount's hold on the vault (see [`MountHold`]).
    /// Refused only while a change of the master key runs.
    pub fn hold_for_mount(&self) -> Result<MountHold, VaultError> {
        file::lock_in_use(&self.path, false).map(MountHold)
    }

    /// Gives the vault a new master key and new slots for `passphrase` and
    /// `recovery` (each the current secret to keep or a new one), re-seals
    /// the body (with any other unsaved change) under the new master key,
    /// and writes the result as both the file and its backup. Afterwards
    /// no secret but these two opens either file, and the old master key
    /// opens neither. Refused while a running mount holds the vault
    /// ([`VaultError::InUse`]). On error nothing changes in memory, and the
    /// file is either as it was or fully changed.
    pub fn change_secrets(
        &mut self,
        passphrase: &SecretBytes,
        passphrase_kdf: KdfParams,
        recovery: &RecoveryKey,
        recovery_kdf: KdfParams,
    ) -> Result<(), VaultError> {
        passphrase_kdf
            .check()
            .map_err(VaultError::InvalidKdfParams)?;
        recovery_kdf.check().map_err(VaultError::InvalidKdfParams)?;
        let _no_mounts = file::lock_in_use(&self.path, true)?;
        let vmk = Key32::random();
        let id = self.header.id;
        let header = Header {
            id,
            slots: vec![
                make_slot(
                    &id,
                    &vmk,
                    SlotKind::Passphrase,
                    passphrase.expose(),
                    passphrase_kdf,
                )?,
                make_slot(
                    &id,
                    &vmk,
                    SlotKind::Recovery,
                    recovery.secret(),
                    recovery_kdf,
                )?,
            ],
        };
        let held = self.body.generation;
        self.body.generation += 1;
        let written = self.encode(&header, &vmk).and_then(|bytes| {
            file::replace_with_backup(&self.path, &bytes, |current| {
                self.unchanged_since(held, current)
            })
        });
        if let Err(e) = written {
            self.body.generation -= 1;
            return Err(e);
        }
        self.header = header;
        self.vmk = vmk;
        Ok(())
    }

    /// Re-reads the file with the VMK already held (no Argon2id), to pick up
    /// changes saved by another process. Unsaved changes here are dropped.
    /// Fails, leaving this value as it was, if the file no longer holds this
    /// vault, is damaged, or holds an older generation than this value
    /// ([`VaultError::RolledBack`]).
    pub fn reload(&mut self) -> Result<(), VaultError> {
        let (header, body) = self.read_again()?;
        self.header = header;
        self.body = body;
        Ok(())
    }

    /// A second handle on this vault, read from its file again with the
    /// master key held (no Argon2id), for a part of a running mount that
    /// follows the file on its own. Refused as [`Vault::reload`] refuses.
    pub fn reopened(&self) -> Result<Vault, VaultError> {
        let (header, body) = self.read_again()?;
        Ok(Vault {
            path: self.path.clone(),
            header,
            vmk: self.vmk.duplicate(),
            body,
        })
    }

    /// The file's header and body, opened with the master key held: the
    /// same vault, and no older generation than this value's.
    fn read_again(&self) -> Result<(Header, Body), VaultError> {
        let bytes = file::read(&self.path)?;
        let parsed = format::parse(&self.path, &bytes)?;
        if parsed.header.id != self.header.id {
            return Err(VaultError::corrupt(
                &self.path,
                format!(
                    "the file now holds vault {}, not vault {}",
                    hex::encode(parsed.header.id),
                    hex::encode(self.header.id)
                ),
            ));
        }
        let body = open_body(&self.path, &self.vmk, &parsed)?;
        if body.generation < self.body.generation {
            return Err(VaultError::RolledBack {
                path: self.path.clone(),
                found: body.generation,
                held: self.body.generation,
            });
        }
        Ok((parsed.header, body))
    }

    /// How many saves this vault has seen (0 for a vault written before the
    /// count existed, until its next save).
    pub fn generation(&self) -> u64 {
        self.body.generation
    }

    /// Adds customer key `name` held by the key service `service`: the vault
    /// records where it is and how to reach it, no material.
    pub fn create_external_key(
        &mut self,
        name: &str,
        service: ExternalKey,
    ) -> Result<&VaultKey, VaultError> {
        keys::check_key_name(name)?;
        if self.key(name).is_some() {
            return Err(VaultError::KeyExists(name.to_string()));
        }
        service.check().map_err(|what| VaultError::BadService {
            name: name.to_string(),
            what,
        })?;
        self.body.keys.push(VaultKey {
            name: name.to_string(),
            kind: KeyKind::Customer,
            rotation_days: None,
            versions: Vec::new(),
            service: Some(service),
        });
        let idx = self.body.keys.len() - 1;
        Ok(&self.body.keys[idx])
    }

    /// Adds a key named `name` with a first version of fresh random
    /// material. Names are 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
    pub fn create_key(&mut self, name: &str, kind: KeyKind) -> Result<&VaultKey, VaultError> {
        keys::check_key_name(name)?;
        if self.key(name).is_some() {
            return Err(VaultError::KeyExists(name.to_string()));
        }
        self.body.keys.push(VaultKey {
            name: name.to_string(),
            kind,
            rotation_days: None,
            versions: vec![KeyVersion::new(1, now(), true, Key32::random())],
            service: None,
        });
        let idx = self.body.keys.len() - 1;
        Ok(&self.body.keys[idx])
    }

    fn key_mut(&mut self, name: &str) -> Result<&mut VaultKey, VaultError> {
        self.body
            .keys
            .iter_mut()
            .find(|k| k.name == name)
            .ok_or_else(|| VaultError::NoSuchKey(name.to_string()))
    }

    /// Adds a new version of fresh random material to key `name`, enabled,
    /// and returns its number. Older versions stay as they are.
    pub fn rotate_key(&mut self, name: &str) -> Result<u32, VaultError> {
        let path = self.path.clone();
        let key = self.key_mut(name)?;
        let Some(latest) = key.latest() else {
            return Err(VaultError::HeldByService(
                name.to_string(),
                "its versions are made by the service",
            ));
        };
        let next = latest.version.checked_add(1).ok_or_else(|| {
            VaultError::corrupt(path, format!("key {name:?} has used every version number"))
        })?;
        key.versions
            .push(KeyVersion::new(next, now(), true, Key32::random()));
        Ok(next)
    }

    /// Enables or disables version `version` of key `name`, or every version
    /// when `version` is `None`.
    pub fn set_enabled(
        &mut self,
        name: &str,
        version: Option<u32>,
        enabled: bool,
    ) -> Result<(), VaultError> {
        let key = self.key_mut(name)?;
        if key.service.is_some() {
            return Err(VaultError::HeldByService(
                name.to_string(),
                "it is enabled and disabled in the service",
            ));
        }
        match version {
            None => key.versions.iter_mut().for_each(|v| v.enabled = enabled),
            Some(n) => {
                let v = key
                    .versions
                    .iter_mut()
                    .find(|v| v.version == n)
                    .ok_or_else(|| VaultError::NoSuchVersion {
                        name: name.to_string(),
                        version: n,
                    })?;
                v.enabled = enabled;
            }
        }
        Ok(())
    }

    /// Sets or clears key `name`'s rotation period in days.
    pub fn set_rotation_days(&mut self, name: &str, days: Option<u32>) -> Result<(), VaultError> {
        self.key_mut(name)?.rotation_days = days;
        Ok(())
    }

    /// The key named `name`.
    pub fn key(&self, name: &str) -> Option<&VaultKey> {
        self.body.keys.iter().find(|k| k.name == name)
    }

    /// Every key, in the order they were created.
    pub fn keys(&self) -> &[VaultKey] {
        &self.body.keys
    }

    /// The vault's random 16-byte id.
    pub fn id(&self) -> [u8; 16] {
        self.header.id
    }

    /// The region label given at creation.
    pub fn region(&self) -> &str {
        &self.body.region
    }

    /// When the vault was created, in seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.body.created
    }

    /// The vault file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last generation recorded for store `store_id`, 0 if none.
    pub fn store_generation(&self, store_id: &str) -> u64 {
        self.body
            .store_generations
            .get(store_id)
            .copied()
            .unwrap_or(0)
    }

    /// Records generation `generation` for store `store_id`.
    pub fn set_store_generation(&mut self, store_id: &str, generation: u64) {
        self.body
            .store_generations
            .insert(store_id.to_string(), generation);
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("id", &hex::encode(self.header.id))
            .field("region", &self.body.region)
            .field(
                "keys",
                &self
                    .body
                    .keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
