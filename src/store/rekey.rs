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
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Stat;

use super::snapshots::{set_owner_mode_times, set_owner_mode_times_at};
use super::{
    disk_root, new_wrapped_dek, unlock_layers, Config, DiskConfig, DiskKind, StoreError, WrappedDek,
};
use crate::backing::walk::{self, Node, Visitor};
use crate::backing::{read_dirid_at, Dir, DIRID_BACKUP, DIRID_NAME};
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

/// Whether a strata mount of `store` is up: its daemon holds the store's
/// lock (the lock says so wherever the mount is, in any mount namespace).
pub fn store_mounted(store: &Path) -> bool {
    super::lock::held_by_mount(store)
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
        progress.total(count_objects(&root)?);
        let mut copier = Copier {
            old,
            new,
            crashed: super::sessions::crashed_with(store, &config, vault),
            to: new_root.clone(),
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
    progress.total(count_objects(from.1)?);
    let old = side(store, config, from.0, &from.0.layers, vault)?;
    let new = side(store, config, to.0, &to.0.layers, vault)?;
    let mut copier = Copier {
        old,
        new,
        crashed: super::sessions::crashed_with(store, config, vault),
        to: to.1.to_path_buf(),
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
/// but directories and strata's own files, for a progress total (walked by
/// descriptor, like the copy itself).
fn count_objects(root: &Path) -> Result<u64, StoreError> {
    struct Counter(u64);
    impl Visitor for Counter {
        type Error = StoreError;
        type Scope = ();
        fn entry(&mut self, n: &Node<'_>, _: &mut ()) -> Result<Option<()>, StoreError> {
            if names::layout::is_reserved(n.name) {
                return Ok(None);
            }
            if n.kind() == rustix::fs::FileType::Directory {
                return Ok(Some(()));
            }
            self.0 += 1;
            Ok(None)
        }
    }
    let dir = crate::backing::Dir::open(root).map_err(io(root))?;
    let mut c = Counter(0);
    crate::backing::walk::walk(&dir, root, (), &mut c)?;
    Ok(c.0)
}

struct Copier<'a> {
    old: Side,
    new: Side,
    /// Mount sessions known to have crashed: their torn blocks are read as
    /// written.
    crashed: HashSet<u64>,
    /// The new tree's root, for messages and for reaching a hard link's
    /// first copy.
    to: PathBuf,
    /// Backing (device, inode) → its first copy, below the new root.
    links: HashMap<(u64, u64), Vec<OsString>>,
    done: u64,
    progress: &'a dyn Progress,
}

/// Where a directory is being rewritten: its open copy in the new tree,
/// the copy's names below the new root, and the directory id (kept: names
/// are re-encrypted under the same id).
struct Target {
    dir: Dir,
    rel: Vec<OsString>,
    id: [u8; 16],
}

/// How an offline tool opens a backing file as an encrypted file.
fn offline_spec(fd: std::fs::File, label: &Path, writable: bool) -> OpenSpec {
    OpenSpec {
        fd,
        label: label.display().to_string(),
        ino: 0,
        writable,
        size_cell: None,
    }
}

impl Copier<'_> {
    /// Rewrites the tree `from` into `to` (created if missing; on a resume,
    /// what is complete there is kept).
    fn tree(&mut self, from: &Path, to: &Path) -> Result<(), StoreError> {
        let src = Dir::open(from).map_err(io(from))?;
        match std::fs::create_dir(to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(to)(e)),
        }
        let dir = Dir::open(to).map_err(io(to))?;
        self.to = to.to_path_buf();
        let target = Target {
            dir,
            rel: Vec::new(),
            id: [0; 16],
        };
        walk::walk(&src, from, target, self)
    }

    fn shown(&self, rel: &[OsString]) -> PathBuf {
        walk::join(&self.to, rel)
    }

    /// The backing name in the new tree of entry `n` of a directory.
    fn new_name(&self, n: &Node<'_>, t: &Target) -> Result<OsString, StoreError> {
        let bad = |e: crate::names::NameError| {
            StoreError::Invalid(format!(
                "{}: {e}",
                n.rel
                    .last()
                    .map(|x| x.to_string_lossy())
                    .unwrap_or_default()
            ))
        };
        let plain = if names::is_long(n.name) {
            let side = names::read_sidecar_at(n.parent, n.name).map_err(io(&self.shown(&t.rel)))?;
            self.old.codec.decrypt_long(&t.id, n.name, &side)
        } else {
            self.old.codec.decrypt(&t.id, n.name)
        }
        .map_err(bad)?;
        let nb = self.new.codec.encrypt(&t.id, &plain).map_err(bad)?;
        if let BackingName::Long { hashed, full } = &nb {
            t.dir
                .replace(&names::sidecar_name(hashed), full.as_bytes())
                .map_err(io(&self.shown(&t.rel)))?;
        }
        Ok(nb.entry_name().to_os_string())
    }

    /// Rewrites the regular file `n` as `name` in `t` (through a temporary
    /// name, so that a name present in the new tree is complete).
    fn file(&mut self, n: &Node<'_>, t: &Target, name: &OsStr) -> Result<(), StoreError> {
        let shown = walk::join(&self.to, &t.rel).join(name);
        let failed = |e: crate::file::FileError| StoreError::Invalid(e.to_string());
        let tmp = OsStr::new(TMP);
        let _ = t.dir.unlink(tmp);
        let src_fd = n.parent.open_file(n.name, false).map_err(io(&shown))?;
        let src_meta = src_fd.try_clone().map_err(io(&shown))?;
        let label = PathBuf::from(n.name);
        let kind = match crate::file::read_header(
            &src_fd,
            &label.display().to_string(),
            &self.old.pipeline,
        )
        .map_err(failed)?
        {
            crate::file::Stored::Header(h, _) => h.file_type,
            _ => FileType::Regular,
        };
        let old = EncFile::open(
            offline_spec(src_fd, &label, false),
            FileCtx::offline(self.old.pipeline.clone(), self.crashed.clone()),
            kind,
        )
        .map_err(failed)?;
        let fd = t.dir.create_file(tmp, 0o600).map_err(io(&shown))?;
        let new_ctx = FileCtx::offline(self.new.pipeline.clone(), HashSet::new());
        let spec = offline_spec(fd.try_clone().map_err(io(&shown))?, &shown, true);
        let new = if kind == FileType::Symlink {
            let target = crate::file::read_symlink(&old).map_err(failed)?;
            crate::file::write_symlink(spec, new_ctx, &target).map_err(failed)?
        } else {
            let new = EncFile::create(spec, new_ctx, FileType::Regular).map_err(failed)?;
            let size = old.size();
            let mut off = 0u64;
            while off < size {
                let chunk = old.read(off, CHUNK).map_err(failed)?;
                if chunk.is_empty() {
                    break;
                }
                if chunk.iter().any(|&b| b != 0) {
                    new.write(off, &chunk).map_err(failed)?;
                }
                off += chunk.len() as u64;
            }
            new.truncate(size).map_err(failed)?;
            new
        };
        let old_id = old.file_id();
        let new_id = new.file_id();
        drop(new);
        copy_meta(
            &self.old,
            &self.new,
            (src_meta.as_fd(), n.stat),
            fd.as_fd(),
            old_id.as_ref().zip(new_id.as_ref()),
        )
        .map_err(|e| e.named(&shown))?;
        crate::platform::sync_all(&fd).map_err(io(&shown))?;
        t.dir
            .rename(tmp, &t.dir, name, crate::platform::Rename::Replace)
            .map_err(io(&shown))
    }
}

impl Visitor for Copier<'_> {
    type Error = StoreError;
    type Scope = Target;

    fn enter(&mut self, src: &Dir, _: &[OsString], t: &mut Target) -> Result<(), StoreError> {
        let shown = self.shown(&t.rel);
        let (id, _) = read_dirid_at(src).map_err(io(&shown))?;
        t.id = id;
        // Both copies, or a resumed run would leave a copy missing.
        if !matches!(
            read_dirid_at(&t.dir),
            Ok((_, crate::backing::DirIdSource::Primary))
        ) || t
            .dir
            .read_small(OsStr::new(DIRID_BACKUP), 16)
            .map_or(true, |b| b.len() != 16)
        {
            t.dir
                .replace(OsStr::new(DIRID_BACKUP), &id)
                .and_then(|()| t.dir.replace(OsStr::new(DIRID_NAME), &id))
                .map_err(io(&shown))?;
        }
        let _ = t.dir.unlink(OsStr::new(TMP));
        Ok(())
    }

    fn entry(&mut self, n: &Node<'_>, t: &mut Target) -> Result<Option<Target>, StoreError> {
        if self.old.codec.is_reserved(n.name) {
            return Ok(None);
        }
        let name = self.new_name(n, t)?;
        let mut rel = t.rel.clone();
        rel.push(name.clone());
        let shown = self.shown(&rel);
        let st = n.stat;
        let key = walk::inode_key(st);
        match n.kind() {
            rustix::fs::FileType::Directory => {
                match t.dir.mkdir(&name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(&shown)(e)),
                }
                let dir = t.dir.open_dir(&name).map_err(io(&shown))?;
                return Ok(Some(Target {
                    dir,
                    rel,
                    id: [0; 16],
                }));
            }
            rustix::fs::FileType::Symlink => {
                return Err(StoreError::Invalid(format!(
                    "{}: a symlink in the backing store (strata writes none): move it away and run again",
                    walk::join(Path::new(""), n.rel).display()
                )));
            }
            _ => {}
        }
        if t.dir.stat_at(&name).is_ok() {
            // Complete from an earlier run.
            if st.st_nlink > 1 {
                self.links.insert(key, rel);
            }
            return Ok(None);
        }
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                let (first_name, first_dir) = first
                    .split_last()
                    .ok_or_else(|| StoreError::Invalid("empty hard link record".into()))?;
                let at = walk::open_rel(&self.root_dir()?, first_dir).map_err(io(&shown))?;
                at.link(first_name, &t.dir, &name).map_err(io(&shown))?;
                return Ok(None);
            }
        }
        if n.kind() == rustix::fs::FileType::RegularFile {
            self.file(n, t, &name)?;
        } else {
            t.dir
                .mknod(
                    &name,
                    n.kind(),
                    crate::platform::mode::of(st) & 0o7777,
                    walk::rdev(st),
                )
                .map_err(io(&shown))?;
            set_owner_mode_times_at(&t.dir, &name, st).map_err(io(&shown))?;
        }
        if st.st_nlink > 1 {
            self.links.insert(key, rel);
        }
        self.done += 1;
        self.progress.inc(1);
        crash_point();
        Ok(None)
    }

    fn leave(&mut self, src: &Dir, _: &[OsString], t: Target) -> Result<(), StoreError> {
        let shown = self.shown(&t.rel);
        let st = src.stat().map_err(io(&shown))?;
        copy_meta(
            &self.old,
            &self.new,
            (src.fd(), &st),
            t.dir.fd(),
            Some((&t.id, &t.id)),
        )
        .map_err(|e| e.named(&shown))?;
        t.dir.sync().map_err(io(&shown))
    }
}

impl Copier<'_> {
    fn root_dir(&self) -> Result<Dir, StoreError> {
        Dir::open(&self.to).map_err(io(&self.to))
    }
}

/// Why carrying metadata over failed (named by the caller).
enum MetaError {
    Io(std::io::Error),
    Invalid(String),
}

impl MetaError {
    fn named(self, p: &Path) -> StoreError {
        match self {
            MetaError::Io(source) => StoreError::Io {
                path: p.to_path_buf(),
                source,
            },
            MetaError::Invalid(m) => StoreError::Invalid(format!("{}: {m}", p.display())),
        }
    }
}

/// Carries mode, owner, times and, with `ids` (the old and new owner ids
/// of a file or directory), xattrs re-sealed for the new owner id, from
/// the open object `src` (with metadata `st`) to the open object `dst`.
fn copy_meta(
    old: &Side,
    new: &Side,
    src: (BorrowedFd<'_>, &Stat),
    dst: BorrowedFd<'_>,
    ids: Option<(&[u8; 16], &[u8; 16])>,
) -> Result<(), MetaError> {
    let (src, st) = src;
    if let Some((oid, nid)) = ids {
        // Every one, whatever its size: an xattr that cannot be read fails
        // the object rather than being left behind.
        let names = crate::backing::xattrs::names(src).map_err(MetaError::Io)?;
        // The old file's size attribute (only on disks with encrypted
        // names: elsewhere the name is a user's) is not carried over: it is
        // sealed for the old inode, and the new header is the truth.
        let size_attr = |n: &str| old.codec.is_encrypted() && n == crate::format::SIZE_ATTR_NAME;
        for bname in names
            .iter()
            .filter(|n| n.starts_with("user.") && !size_attr(n))
        {
            let Some(val) = crate::backing::xattrs::get(src, bname).map_err(MetaError::Io)? else {
                continue;
            };
            let (name, value) =
                crate::fs::xattr::open_stored(&old.pipeline, &old.codec, oid, bname, &val)
                    .map_err(|e| {
                        MetaError::Invalid(format!("an xattr does not decrypt (errno {})", e.0))
                    })?;
            let stn = crate::fs::xattr::backing_name(&new.pipeline, &new.codec, nid, &name)
                .map_err(|e| MetaError::Invalid(format!("errno {}", e.0)))?;
            let stored = crate::fs::xattr::seal_value(&new.codec, nid, &name, stn.long, &value)
                .map_err(|e| MetaError::Invalid(format!("errno {}", e.0)))?;
            rustix::fs::fsetxattr(
                dst,
                stn.backing.as_str(),
                &stored,
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| MetaError::Io(e.into()))?;
        }
    }
    set_owner_mode_times(dst, st).map_err(MetaError::Io)
}
