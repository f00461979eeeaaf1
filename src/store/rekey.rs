//! Offline re-encryption of a disk: new DEKs for some layers ("rekey"), or a
//! guest layer added to a disk that holds data ("encrypt"). Resumable: kill
//! it anywhere, run it again, and it finishes.
//!
//! How: the new wrapped DEKs are first recorded in the config as `pending`
//! (the disk is refused by mounts from then on). Every object of the disk is
//! then rewritten into a parallel tree `disks/.rekey-new-<disk>` — names
//! re-encrypted, contents decrypted with the old pipeline and encrypted with
//! the new, holes kept, modes, owners, times and xattrs carried over. Each
//! file is written under a temporary name and renamed into place, so a name
//! present in the new tree is complete; directories are walked again on
//! resume. Then the trees swap (`<disk>` → `.rekey-old-<disk>`, new →
//! `<disk>`), the config takes the new DEKs (the old ones are retired only
//! now), and the old tree is removed. Each step is recognisable from the
//! directories present, so a restart continues where it stopped.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    disk_root, new_wrapped_dek, unlock_layers, Config, DiskConfig, DiskKind, StoreError, WrappedDek,
};
use crate::backing::{read_dirid, write_dirid_value};
use crate::file::{EncFile, FileCtx, OpenSpec};
use crate::format::FileType;
use crate::layers::{Layer, Pipeline};
use crate::names::{self, BackingName, NameCodec};
use crate::progress::Progress;
use crate::vault::Vault;

/// What to change.
#[derive(Debug, Clone)]
pub enum Change {
    /// New DEKs for these layers (generation + 1).
    Rekey(Vec<Layer>),
    /// Add the guest layer, wrapped by this vault key.
    AddGuest(String),
}

const TMP: &str = ".rekey-tmp";
const CHUNK: usize = 1 << 20;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid<T>(m: String) -> Result<T, StoreError> {
    Err(StoreError::Invalid(m))
}

/// Whether a strata mount of `store` is up (its fsname names the store).
pub fn store_mounted(store: &Path) -> bool {
    let Ok(canon) = store.canonicalize() else {
        return false;
    };
    super::strata_mounts().iter().any(|(_, s)| *s == canon)
}

struct Side {
    pipeline: Arc<Pipeline>,
    codec: NameCodec,
}

fn side(
    store: &Path,
    config: &Config,
    d: &DiskConfig,
    layers: &[WrappedDek],
    vault: &Vault,
) -> Result<Side, StoreError> {
    let keys = unlock_layers(store, config, d, layers, vault)?;
    let pipeline = super::disk_pipeline(&config.store_id, &d.name, &keys);
    let codec = pipeline.name_codec();
    Ok(Side { pipeline, codec })
}

/// The layer list after the change.
fn merged(current: &[WrappedDek], pending: &[WrappedDek]) -> Vec<WrappedDek> {
    let mut out: Vec<WrappedDek> = current
        .iter()
        .filter(|w| !pending.iter().any(|p| p.layer == w.layer))
        .cloned()
        .collect();
    out.extend(pending.iter().cloned());
    out.sort_by_key(|w| w.layer.slot());
    out
}

/// Runs (or resumes) a re-encryption of `disk`. `progress` counts the
/// objects (files, symlinks, fifos) rewritten. Returns what it did.
pub fn run(
    store: &Path,
    vault: &mut Vault,
    disk: &str,
    change: &Change,
    progress: &dyn Progress,
) -> Result<Vec<String>, StoreError> {
    if store_mounted(store) {
        return invalid(format!(
            "store {} is mounted: re-encryption is offline (it \"needs a reboot\"); unmount it first",
            store.display()
        ));
    }
    let mut config = super::read_authenticated(store, vault)?;
    let Some(idx) = config.disks.iter().position(|d| d.name == disk) else {
        return invalid(format!(
            "store {} has no disk named {disk}",
            store.display()
        ));
    };
    let mut log = Vec::new();
    let d = config.disks[idx].clone();
    if d.kind == DiskKind::Temp {
        return invalid(
            "the temp disk is emptied and re-keyed at every mount; there is nothing to re-encrypt"
                .into(),
        );
    }
    let pending = match &d.pending {
        Some(p) => {
            log.push(format!(
                "resuming the unfinished re-encryption of disk {disk}"
            ));
            p.clone()
        }
        None => {
            let p = plan(store, &config, &d, change, vault)?;
            config.disks[idx].pending = Some(p.clone());
            super::save_config(store, &mut config, vault)?;
            p
        }
    };
    let old = side(store, &config, &d, &d.layers, vault)?;
    let new_layers = merged(&d.layers, &pending);
    let new = side(store, &config, &d, &new_layers, vault)?;

    let root = disk_root(store, disk);
    let disks = store.join("disks");
    let new_root = disks.join(format!(".rekey-new-{disk}"));
    let old_root = disks.join(format!(".rekey-old-{disk}"));
    if root.exists() && !old_root.exists() {
        progress.total(count_objects(&root).map_err(io(&root))?);
        let mut copier = Copier {
            old,
            new,
            crashed: super::sessions::crashed_with(store, &config, vault),
            links: HashMap::new(),
            done: 0,
            progress,
        };
        copier.tree(&root, &new_root)?;
        log.push(format!("rewrote {} objects of disk {disk}", copier.done));
        crash_point();
        std::fs::rename(&root, &old_root).map_err(io(&root))?;
    }
    if !root.exists() && new_root.exists() {
        std::fs::rename(&new_root, &root).map_err(io(&new_root))?;
    }
    crash_point();
    let dc = &mut config.disks[idx];
    dc.layers = new_layers;
    dc.guest = dc.layers.iter().any(|w| w.layer == Layer::Guest);
    dc.pending = None;
    super::save_config(store, &mut config, vault)?;
    for w in &pending {
        log.push(format!(
            "disk {disk}: {} layer now uses DEK generation {}",
            w.layer.name(),
            w.generation
        ));
    }
    if old_root.exists() {
        std::fs::remove_dir_all(&old_root).map_err(io(&old_root))?;
        log.push("old DEKs retired and the old tree removed".into());
    }
    Ok(log)
}

/// Re-encrypts the tree `from.1`, written with the keys of `from.0`, into
/// the new directory `to.1` under the keys of `to.0`: names, contents,
/// symlink targets, xattrs and metadata. Returns the objects written.
pub(crate) fn reencrypt_tree(
    store: &Path,
    config: &Config,
    vault: &Vault,
    from: (&DiskConfig, &Path),
    to: (&DiskConfig, &Path),
    progress: &dyn Progress,
) -> Result<u64, StoreError> {
    progress.total(count_objects(from.1).map_err(io(from.1))?);
    let old = side(store, config, from.0, &from.0.layers, vault)?;
    let new = side(store, config, to.0, &to.0.layers, vault)?;
    let mut copier = Copier {
        old,
        new,
        crashed: super::sessions::crashed_with(store, config, vault),
        links: HashMap::new(),
        done: 0,
        progress,
    };
    copier.tree(from.1, to.1)?;
    Ok(copier.done)
}

fn plan(
    store: &Path,
    config: &Config,
    d: &DiskConfig,
    change: &Change,
    vault: &mut Vault,
) -> Result<Vec<WrappedDek>, StoreError> {
    let mut out = Vec::new();
    match change {
        Change::Rekey(layers) => {
            for layer in layers {
                let Some(w) = d.layers.iter().find(|w| w.layer == *layer) else {
                    return invalid(format!(
                        "disk {} has no {} layer to re-key",
                        d.name,
                        layer.name()
                    ));
                };
                out.push(new_wrapped_dek(
                    vault,
                    store,
                    &config.store_id,
                    &d.name,
                    *layer,
                    &w.key.name,
                    w.generation + 1,
                )?);
            }
        }
        Change::AddGuest(key) => {
            if d.guest {
                return invalid(format!("disk {} already has the guest layer", d.name));
            }
            if vault.region() != config.region {
                return invalid(format!(
                    "the guest layer's key vault must be in the store's region: vault in {}, store in {}",
                    vault.region(),
                    config.region
                ));
            }
            super::ensure_key(vault, key, crate::vault::KeyKind::Customer)?;
            vault.save()?;
            out.push(new_wrapped_dek(
                vault,
                store,
                &config.store_id,
                &d.name,
                Layer::Guest,
                key,
                1,
            )?);
        }
    }
    if out.is_empty() {
        return invalid("nothing to re-encrypt: name at least one layer".into());
    }
    Ok(out)
}

/// In debug builds, `STRATA_TEST_CRASH_AFTER=N` ends the process at the
/// N-th crash point (objects rewritten and phase changes), to test resuming.
pub(crate) fn crash_point() {
    if cfg!(debug_assertions) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEEN: AtomicU64 = AtomicU64::new(0);
        if let Some(n) = std::env::var("STRATA_TEST_CRASH_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            if SEEN.fetch_add(1, Ordering::SeqCst) + 1 >= n {
                std::process::exit(99);
            }
        }
    }
}

/// The objects a re-encryption of the tree at `root` rewrites: every entry
/// but directories and strata's own files, for a progress total.
fn count_objects(root: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if names::layout::is_reserved(&e.file_name()) {
                continue;
            }
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    Ok(n)
}

struct Copier<'a> {
    old: Side,
    new: Side,
    /// Mount sessions known to have crashed: their torn blocks are read as
    /// written.
    crashed: HashSet<u64>,
    /// Backing inode → the new path of its first copy (hard links).
    links: HashMap<(u64, u64), PathBuf>,
    done: u64,
    progress: &'a dyn Progress,
}

/// How an offline tool opens backing file `path` as an encrypted file.
fn offline_spec(fd: std::fs::File, path: &Path, writable: bool) -> OpenSpec {
    OpenSpec {
        fd,
        label: path.display().to_string(),
        ino: 0,
        writable,
        size_cell: None,
    }
}

impl Copier<'_> {
    fn tree(&mut self, from: &Path, to: &Path) -> Result<(), StoreError> {
        let (id, _) = read_dirid(from).map_err(io(from))?;
        if !to.exists() {
            std::fs::create_dir(to).map_err(io(to))?;
        }
        if read_dirid(to).is_err() {
            write_dirid_value(to, &id).map_err(io(to))?;
        }
        let _ = std::fs::remove_file(to.join(TMP));
        for e in std::fs::read_dir(from).map_err(io(from))? {
            let e = e.map_err(io(from))?;
            let bname = e.file_name();
            if self.old.codec.is_reserved(&bname) {
                continue;
            }
            let src = e.path();
            let plain = if names::is_long(&bname) {
                let side = std::fs::read_to_string(from.join(names::sidecar_name(&bname)))
                    .map_err(io(&src))?;
                self.old.codec.decrypt_long(&id, &bname, &side)
            } else {
                self.old.codec.decrypt(&id, &bname)
            }
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", src.display())))?;
            let nb = self
                .new
                .codec
                .encrypt(&id, &plain)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let dst = match &nb {
                BackingName::Short(s) => to.join(s),
                BackingName::Long { hashed, full } => {
                    crate::backing::atomic_write(
                        &to.join(names::sidecar_name(hashed)),
                        full.as_bytes(),
                    )
                    .map_err(io(to))?;
                    to.join(hashed)
                }
            };
            self.object(&src, &dst, to)?;
        }
        copy_meta(&self.old, &self.new, from, to, Some(&id), Some(&id))?;
        Ok(())
    }

    fn object(&mut self, src: &Path, dst: &Path, dir: &Path) -> Result<(), StoreError> {
        let m = std::fs::symlink_metadata(src).map_err(io(src))?;
        if m.is_dir() {
            return self.tree(src, dst);
        }
        if dst.exists() {
            if m.nlink() > 1 {
                self.links.insert((m.dev(), m.ino()), dst.to_path_buf());
            }
            return Ok(());
        }
        if m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, dst).map_err(io(dst))?;
                return Ok(());
            }
        }
        if m.is_file() {
            let tmp = dir.join(TMP);
            let _ = std::fs::remove_file(&tmp);
            let src_fd = std::fs::File::open(src).map_err(io(src))?;
            let kind = match crate::file::read_header(
                &src_fd,
                &src.display().to_string(),
                &self.old.pipeline,
            ) {
                Ok(crate::file::Stored::Header(h, _)) => h.file_type,
                Ok(_) => FileType::Regular,
                Err(e) => return Err(StoreError::Invalid(e.to_string())),
            };
            let old = EncFile::open(
                offline_spec(src_fd, src, false),
                FileCtx::offline(self.old.pipeline.clone(), self.crashed.clone()),
                kind,
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let fd = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            let new_ctx = FileCtx::offline(self.new.pipeline.clone(), HashSet::new());
            let new = if kind == FileType::Symlink {
                let target = crate::file::read_symlink(&old)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                crate::file::write_symlink(
                    offline_spec(fd.try_clone().map_err(io(&tmp))?, &tmp, true),
                    new_ctx,
                    &target,
                )
                .map_err(|e| StoreError::Invalid(e.to_string()))?
            } else {
                let new = EncFile::create(
                    offline_spec(fd.try_clone().map_err(io(&tmp))?, &tmp, true),
                    new_ctx,
                    FileType::Regular,
                )
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let size = old.size();
                let mut off = 0u64;
                while off < size {
                    let chunk = old
                        .read(off, CHUNK)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    if chunk.is_empty() {
                        break;
                    }
                    if chunk.iter().any(|&b| b != 0) {
                        new.write(off, &chunk)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    }
                    off += chunk.len() as u64;
                }
                new.truncate(size)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                new
            };
            let old_id = old.file_id();
            let new_id = new.file_id();
            drop(new);
            drop(fd);
            copy_meta(
                &self.old,
                &self.new,
                src,
                &tmp,
                old_id.as_ref(),
                new_id.as_ref(),
            )?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io(&tmp))?;
            std::fs::rename(&tmp, dst).map_err(io(dst))?;
        } else {
            let ft = rustix::fs::FileType::from_raw_mode(m.mode());
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dst,
                ft,
                rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| StoreError::Io {
                path: dst.to_path_buf(),
                source: e.into(),
            })?;
            copy_meta(&self.old, &self.new, src, dst, None, None)?;
        }
        if m.nlink() > 1 {
            self.links.insert((m.dev(), m.ino()), dst.to_path_buf());
        }
        self.done += 1;
        self.progress.inc(1);
        crash_point();
        Ok(())
    }
}

/// Carries mode, owner, xattrs (re-sealed for the new owner id) and times.
fn copy_meta(
    old: &Side,
    new: &Side,
    src: &Path,
    dst: &Path,
    old_id: Option<&[u8; 16]>,
    new_id: Option<&[u8; 16]>,
) -> Result<(), StoreError> {
    let m = std::fs::symlink_metadata(src).map_err(io(src))?;
    if let (Some(oid), Some(nid)) = (old_id, new_id) {
        let mut list = vec![0u8; 1 << 16];
        let n = rustix::fs::llistxattr(src, &mut list[..]).unwrap_or(0);
        for bname in list[..n]
            .split(|&b| b == 0)
            .filter(|b| b.starts_with(b"user."))
        {
            let Ok(bname) = std::str::from_utf8(bname) else {
                continue;
            };
            let mut val = vec![0u8; 1 << 16];
            let Ok(len) = rustix::fs::lgetxattr(src, bname, &mut val[..]) else {
                continue;
            };
            let (name, value) =
                crate::fs::xattr::open_stored(&old.pipeline, &old.codec, oid, bname, &val[..len])
                    .map_err(|e| {
                    StoreError::Invalid(format!(
                        "{}: an xattr does not decrypt (errno {})",
                        src.display(),
                        e.0
                    ))
                })?;
            let st = crate::fs::xattr::backing_name(&new.pipeline, &new.codec, nid, &name)
                .map_err(|e| StoreError::Invalid(format!("errno {}", e.0)))?;
            let stored = crate::fs::xattr::seal_value(&new.codec, nid, &name, st.long, &value)
                .map_err(|e| StoreError::Invalid(format!("errno {}", e.0)))?;
            rustix::fs::lsetxattr(
                dst,
                st.backing.as_str(),
                &stored,
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| StoreError::Io {
                path: dst.to_path_buf(),
                source: e.into(),
            })?;
        }
    }
    super::snapshots::set_owner_mode_times(dst, &m).map_err(io(dst))?;
    Ok(())
}
