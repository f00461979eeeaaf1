//! Forensics on raw backing files, with no mount and no daemon: `inspect`
//! decodes one backing file (and with the vault verifies and decrypts it),
//! `verify` checks every header, block tag and name of a store and can
//! repair what is repairable, `scan` searches the raw bytes for plaintext.

pub mod inspect;
pub mod scan;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layers::Pipeline;
use crate::names::NameCodec;
use crate::store::{self, Config, DiskConfig, DiskKind, StoreError};
use crate::vault::Vault;

/// Errors of the forensic commands (exit code 2: could not run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForensicsError {
    /// Store or vault problems.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Bad request or input.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ForensicsError + '_ {
    move |source| ForensicsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a backing path sits in its store.
#[derive(Debug, Clone)]
pub struct Located {
    /// The store directory.
    pub store: PathBuf,
    /// The disk name.
    pub disk: String,
    /// Path components below the disk root (backing names).
    pub rel: Vec<std::ffi::OsString>,
}

/// Finds the store holding `path` by walking up to `strata.conf`.
pub fn locate(path: &Path) -> Option<Located> {
    let abs = std::fs::canonicalize(path).ok()?;
    let mut cur = abs.parent();
    while let Some(dir) = cur {
        if dir.join(store::config::CONFIG_NAME).is_file() {
            let rest = abs.strip_prefix(dir.join("disks")).ok()?;
            let mut comps = rest.components().map(|c| c.as_os_str().to_os_string());
            let disk = comps.next()?.to_string_lossy().into_owned();
            return Some(Located {
                store: dir.to_path_buf(),
                disk,
                rel: comps.collect(),
            });
        }
        cur = dir.parent();
    }
    None
}

/// One disk's ciphers, from the vault.
pub struct DiskCtx {
    /// The disk's config.
    pub config: DiskConfig,
    /// Its backing root.
    pub root: PathBuf,
    /// Its pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Its name codec.
    pub codec: NameCodec,
    /// How reports name it: the disk, `.snapshots/<disk>/<name>` or
    /// `images/<name>` (the mount's and the store's names for them).
    pub label: String,
    /// Mount sessions of the store known to have crashed (their torn
    /// blocks are read as written).
    pub crashed: std::collections::HashSet<u64>,
}

/// Unlocks every persistent disk, snapshot and image of a store (temp
/// disks have per-mount keys and are checked for structure only; revoked
/// ones stay sealed).
pub fn unlock(store_path: &Path, vault: &Vault) -> Result<(Config, Vec<DiskCtx>), ForensicsError> {
    let opened = store::open(store_path, vault)?;
    let config = opened.config;
    let mut holders: Vec<(DiskConfig, PathBuf, String)> = config
        .disks
        .iter()
        .map(|d| {
            (
                d.clone(),
                store::disk_root(store_path, &d.name),
                d.name.clone(),
            )
        })
        .collect();
    holders.extend(config.snapshots.iter().map(|s| {
        (
            s.source.clone(),
            store::snapshots::snapshot_root(store_path, &s.source.name, &s.name),
            format!(".snapshots/{}/{}", s.source.name, s.name),
        )
    }));
    holders.extend(config.images.iter().map(|i| {
        (
            i.source.clone(),
            store::snapshots::image_root(store_path, &i.name),
            format!("images/{}", i.name),
        )
    }));
    let crashed = store::sessions::crashed_with(store_path, &config, vault);
    let mut out = Vec::new();
    for (d, root, label) in holders {
        if d.kind == DiskKind::Temp || store::disk_revoked(&d, vault).is_some() {
            continue;
        }
        let keys = store::unlock_layers(store_path, &config, &d, &d.layers, vault)?;
        let pipeline = store::disk_pipeline(&config.store_id, &d.name, &keys);
        let codec = pipeline.name_codec();
        out.push(DiskCtx {
            root,
            config: d,
            pipeline,
            codec,
            label,
            crashed: crashed.clone(),
        });
    }
    Ok((config, out))
}

/// The plaintext path of backing path `rel` (components below the disk
/// root), names decrypted with each parent's directory id.
pub fn plain_path(ctx: &DiskCtx, rel: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut dir = ctx.root.clone();
    let mut out = PathBuf::from(&ctx.label);
    for c in rel {
        let (id, _) = crate::backing::read_dirid(&dir).ok()?;
        let plain = if crate::names::is_long(c) {
            let side = crate::names::read_sidecar(&dir, c).ok()?;
            ctx.codec.decrypt_long(&id, c, &side).ok()?
        } else {
            ctx.codec.decrypt(&id, c).ok()?
        };
        out.push(plain);
        dir.push(c);
    }
    Some(out)
}

/// Shannon entropy of `bytes` in bits per byte.
pub fn entropy(counts: &[u64; 256]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / t;
            -p * p.log2()
        })
        .sum()
}
