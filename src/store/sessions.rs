//! The record of mount sessions, `STORE/strata.sessions`: the read-write
//! mount running now (a random id, written into the write window of every
//! file it writes), the sessions that ended without a clean unmount, and
//! the store's trust id.
//!
//! A block that fails its tag inside the write window of a crashed session
//! was torn by the crash and is read as written (its old and new sectors);
//! anywhere else it is damage. The record is tagged with a key derived from
//! the config's vault key: naming a session as crashed would make its
//! windows lenient, so only a holder of the vault may do it. The tag does
//! not stop a rollback: a copy taken while a mount ran, put back after it
//! ended cleanly, makes that session count as crashed (nothing in the store
//! can tell this from a real crash; the README lists it as not detected).
//!
//! The trust id says which size attributes (a copy of a file's logical
//! size beside its header, see `format::size_attr`) may be believed: those
//! carrying it. A session removes the attribute after a header write and
//! writes it again later, all through the page cache, so a power cut can
//! leave them apart; every
//! session that does not end cleanly therefore gets the store a new trust
//! id at the next mount, and a clean end first makes the whole backing
//! filesystem durable (syncfs), so that headers and attributes written under
//! a kept trust id are on disk together. A record that is missing or does
//! not authenticate gets a new trust id too. Rolling the record back to an
//! older trust id can make attributes of an earlier epoch believed again
//! only on a backing file whose inode and modification time are still those
//! the attribute was sealed for, i.e. one rolled back with it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{stored_material, Config, StoreError};
use crate::crypto::kdf::derive;
use crate::crypto::{tag, Key32};
use crate::file::Sessions;
use crate::vault::Vault;

/// File name of the record inside a store.
pub const SESSIONS_NAME: &str = "strata.sessions";
/// Crashed sessions remembered (the oldest are dropped past this; their
/// torn blocks then read as damage).
const MAX_CRASHED: usize = 1024;
/// Largest record read (1024 crashed ids take about 24 KiB).
const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    running: Option<String>,
    crashed: Vec<String>,
    /// The trust id, hex (absent in records of store format 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<String>,
    tag: String,
}

/// The key that tags the record: derived from the version of the config's
/// vault key that tags the config, which a rewrap moves to the newest
/// version (by command, beside a mount, or by age at a mount). A record
/// tagged under an older version of that key still authenticates, so that
/// the crashed sessions it names survive the move; it is written again
/// under the current version.
pub struct RecordKey {
    /// Under the config's current key version: what writes tag with.
    current: Key32,
    /// Under the key's other versions in the vault, for reading.
    older: Vec<Key32>,
}

fn record_key(material: &Key32, store_id: &str) -> Key32 {
    derive(
        &[material.expose()],
        store_id.as_bytes(),
        b"strata sessions v1",
    )
}

impl RecordKey {
    /// The record key of the store `config` describes, from `vault`.
    pub fn new(store: &Path, config: &Config, vault: &Vault) -> Result<Self, StoreError> {
        let material = stored_material(vault, store, &config.auth_key)?;
        let older = vault
            .key(&config.auth_key.name)
            .map(|k| {
                k.versions
                    .iter()
                    .rev()
                    .filter(|v| v.version != config.auth_key.version)
                    .map(|v| record_key(v.material(), &config.store_id))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RecordKey {
            current: record_key(material, &config.store_id),
            older,
        })
    }

    fn tag_with(key: &Key32, r: &Record) -> String {
        let mut body = Vec::new();
        body.extend_from_slice(r.running.as_deref().unwrap_or("-").as_bytes());
        for c in &r.crashed {
            body.push(0);
            body.extend_from_slice(c.as_bytes());
        }
        if let Some(t) = &r.trust {
            body.push(1);
            body.extend_from_slice(t.as_bytes());
        }
        hex::encode(tag::tag(key, b"strata sessions v1", &[&body]))
    }

    fn tag(&self, r: &Record) -> String {
        Self::tag_with(&self.current, r)
    }

    /// Whether `r` carries the tag of any version of the key.
    fn authenticates(&self, r: &Record) -> bool {
        std::iter::once(&self.current)
            .chain(&self.older)
            .any(|k| tag::ct_eq(Self::tag_with(k, r).as_bytes(), r.tag.as_bytes()))
    }
}

fn parse(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok().filter(|&v| v != 0)
}

/// Reads the record; a missing one is empty, and one that does not
/// authenticate is ignored with a warning (reads are then strict). Only a
/// regular file of a bounded size is read, never through a symlink: a FIFO
/// or a device planted in its place neither hangs nor exhausts the mount.
fn read(store: &Path, key: &RecordKey) -> Record {
    let path = store.join(SESSIONS_NAME);
    let raw = match crate::backing::Dir::open(store)
        .and_then(|d| d.read_small(std::ffi::OsStr::new(SESSIONS_NAME), MAX_RECORD))
    {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Record::default(),
        Err(e) => {
            tracing::warn!("{}: unreadable, taken as empty: {e}", path.display());
            return Record::default();
        }
    };
    match serde_json::from_slice::<Record>(&raw) {
        Ok(r) if key.authenticates(&r) => r,
        _ => {
            tracing::warn!(
                "{}: does not authenticate; taken as empty (torn blocks then read as damage)",
                path.display()
            );
            Record::default()
        }
    }
}

fn write(store: &Path, key: &RecordKey, mut r: Record) -> Result<(), StoreError> {
    let excess = r.crashed.len().saturating_sub(MAX_CRASHED);
    r.crashed.drain(..excess);
    r.tag = key.tag(&r);
    let path = store.join(SESSIONS_NAME);
    let text = serde_json::to_vec_pretty(&r).map_err(|e| StoreError::Invalid(e.to_string()))?;
    crate::backing::atomic_write(&path, &text).map_err(super::io(&path))
}

fn crashed_of(r: &Record) -> HashSet<u64> {
    r.crashed
        .iter()
        .chain(r.running.iter())
        .filter_map(|s| parse(s))
        .collect()
}

/// A fresh random non-zero id.
fn new_id() -> u64 {
    loop {
        let v = u64::from_le_bytes(crate::crypto::random_array());
        if v != 0 {
            break v;
        }
    }
}

/// Starts a read-write mount session: a session still marked running was
/// cut short by a crash (only one daemon serves a store at a time), and
/// the store then gets a new trust id, as it does when it has none.
pub fn begin(store: &Path, key: &RecordKey) -> Result<Sessions, StoreError> {
    let mut r = read(store, key);
    let mut crash = false;
    if let Some(s) = r.running.take() {
        crash = true;
        if parse(&s).is_some() {
            tracing::warn!("the previous mount of this store ended without unmounting (a crash): blocks it was writing are read as found");
            r.crashed.push(s);
        }
    }
    let trust = match r.trust.as_deref().and_then(parse) {
        Some(t) if !crash => t,
        _ => {
            let t = new_id();
            r.trust = Some(format!("{t:016x}"));
            t
        }
    };
    let crashed = crashed_of(&r);
    let current = loop {
        let v = new_id();
        if !crashed.contains(&v) {
            break v;
        }
    };
    r.running = Some(format!("{current:016x}"));
    write(store, key, r)?;
    Ok(Sessions {
        current,
        crashed,
        trust,
        ..Sessions::default()
    })
}

/// Ends session `sessions.current` cleanly: first makes everything the
/// session wrote durable (a syncfs of the store), since once the record
/// says the session ended, a block of its windows that fails its tag is
/// damage and the size attributes it wrote are believed. A failed sync
/// leaves the session running (read as crashed by the next mount, which
/// then gives the store a new trust id). A session that could not keep
/// some size attribute in step with its header gives the store a new
/// trust id now.
pub fn end(store: &Path, key: &RecordKey, sessions: &Sessions) -> Result<(), StoreError> {
    let dir = std::fs::File::open(store).map_err(super::io(store))?;
    crate::platform::sync_filesystem(std::os::fd::AsFd::as_fd(&dir)).map_err(super::io(store))?;
    let mut r = read(store, key);
    if r.running.as_deref().and_then(parse) == Some(sessions.current) {
        r.running = None;
        if sessions.stale.any() {
            r.trust = Some(format!("{:016x}", new_id()));
        }
        write(store, key, r)?;
    }
    Ok(())
}

/// The sessions known to have crashed, for a mount that writes nothing or
/// an offline command (a session still marked running has no daemon left).
pub fn crashed(store: &Path, key: &RecordKey) -> HashSet<u64> {
    crashed_of(&read(store, key))
}

/// What a read-only mount reads under: the crashed sessions, and the trust
/// id unless a session is still marked running (its crash has not yet
/// given the store a new one, so no size attribute is believed).
pub fn read_only(store: &Path, key: &RecordKey) -> Sessions {
    let r = read(store, key);
    let trust = match r.running.as_deref().and_then(parse) {
        Some(_) => 0,
        None => r.trust.as_deref().and_then(parse).unwrap_or(0),
    };
    Sessions {
        current: 0,
        crashed: crashed_of(&r),
        trust,
        ..Sessions::default()
    }
}

/// [`crashed`] with the record key derived from `config` and `vault`; an
/// empty set if the key is not in the vault.
pub fn crashed_with(store: &Path, config: &Config, vault: &Vault) -> HashSet<u64> {
    RecordKey::new(store, config, vault)
        .map(|k| crashed(store, &k))
        .unwrap_or_default()
}

/// [`crashed_with`] for an offline command that may run beside a mount
/// (`verify`, `inspect`): while a daemon serves the store (`served`), the
/// session marked running is live, its windows in flight rather than torn.
pub fn crashed_offline(store: &Path, config: &Config, vault: &Vault, served: bool) -> HashSet<u64> {
    let Ok(key) = RecordKey::new(store, config, vault) else {
        return HashSet::new();
    };
    let r = read(store, &key);
    let mut out = crashed_of(&r);
    if served {
        if let Some(live) = r.running.as_deref().and_then(parse) {
            out.remove(&live);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordKey {
        RecordKey {
            current: Key32::random(),
            older: Vec::new(),
        }
    }

    #[test]
    fn a_session_not_ended_is_a_crash_at_the_next_begin() {
        let d = tempfile::tempdir().expect("tmp");
        let k = key();
        let a = begin(d.path(), &k).expect("begin");
        assert!(a.crashed.is_empty());
        let b = begin(d.path(), &k).expect("begin");
        assert_eq!(b.crashed, HashSet::from([a.current]));
        end(d.path(), &k, &b).expect("end");
        let c = begin(d.path(), &k).expect("begin");
        assert_eq!(c.crashed, HashSet::from([a.current]));
        assert_eq!(crashed(d.path(), &k), HashSet::from([a.current, c.current]));
    }

    #[test]
    fn the_trust_id_survives_clean_ends_and_changes_at_a_crash() {
        let d = tempfile::tempdir().expect("tmp");
        let k = key();
        let a = begin(d.path(), &k).expect("begin");
        assert_ne!(a.trust, 0);
        end(d.path(), &k, &a).expect("end");
        assert_eq!(read_only(d.path(), &k).trust, a.trust);
        let b = begin(d.path(), &k).expect("begin");
        assert_eq!(b.trust, a.trust, "a clean end keeps the trust id");
        // b crashes: a read-only mount believes nothing, the next session
        // has a new trust id.
        assert_eq!(read_only(d.path(), &k).trust, 0);
        let c = begin(d.path(), &k).expect("begin");
        assert_ne!(c.trust, b.trust);
        assert_ne!(c.trust, 0);
        // A session that could not keep an attribute right ends with a new
        // trust id too.
        c.stale.add(5);
        end(d.path(), &k, &c).expect("end");
        assert_ne!(read_only(d.path(), &k).trust, c.trust);
    }

    #[test]
    fn a_record_without_a_trust_id_gets_one_and_it_is_tagged() {
        let d = tempfile::tempdir().expect("tmp");
        let k = key();
        // A record as store format 3 wrote it.
        let old = Record {
            running: None,
            crashed: vec![],
            trust: None,
            tag: String::new(),
        };
        write(d.path(), &k, old).expect("write");
        assert_eq!(read_only(d.path(), &k).trust, 0);
        let a = begin(d.path(), &k).expect("begin");
        assert_ne!(a.trust, 0);
        let path = d.path().join(SESSIONS_NAME);
        let mut r: Record =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        r.trust = Some("00000000000000ab".into());
        std::fs::write(&path, serde_json::to_vec(&r).expect("json")).expect("write");
        let b = begin(d.path(), &k).expect("begin");
        assert_ne!(b.trust, 0xab, "a forged trust id is not taken");
    }

    #[test]
    fn a_forged_record_is_ignored() {
        let d = tempfile::tempdir().expect("tmp");
        let k = key();
        begin(d.path(), &k).expect("begin");
        let path = d.path().join(SESSIONS_NAME);
        let mut r: Record =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        r.crashed.push("00000000000000aa".into());
        std::fs::write(&path, serde_json::to_vec(&r).expect("json")).expect("write");
        assert!(crashed(d.path(), &k).is_empty());
        assert!(crashed(d.path(), &key()).is_empty());
    }
}
