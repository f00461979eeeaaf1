//! Snapshots and images.
//!
//! A snapshot is a copy of a disk's backing tree as it stands (ciphertext
//! copied as it is: a reflink where the backing filesystem offers one),
//! under `snapshots/<disk>/<name>/`, recorded in the config with the disk's
//! wrapped DEKs of that moment, double encryption included. An image is the
//! same under `images/<name>/`, made from a disk or a snapshot; a disk made
//! from an image gets its own DEKs and every file and name re-encrypted.
//!
//! Every copy is made under a temporary name (`.tmp-<name>`) and renamed
//! into place, and only then recorded in the config: an interrupted copy is
//! never listed, and the next attempt clears it away.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use super::{
    disk_root, io, now, save_config, Config, DiskConfig, DiskKind, ImageConfig, SnapshotConfig,
    StoreError,
};
use crate::backing::walk::{self, Node, Visitor};
use crate::backing::Dir;
use crate::progress::Progress;
use crate::vault::Vault;

fn invalid<T>(m: String) -> Result<T, StoreError> {
    Err(StoreError::Invalid(m))
}

/// Snapshot and image names: 1 to 64 of `[A-Za-z0-9._-]`, not starting
/// with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if valid_name(name) {
        return Ok(());
    }
    invalid(format!(
        "{what} name {name:?}: use 1 to 64 letters, digits, '.', '-' or '_', not starting with '.'"
    ))
}

/// Removes what an interrupted copy left at `paths` (never listed).
fn clear_stale(paths: &[&Path]) -> Result<(), StoreError> {
    for stale in paths {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io(stale))?;
        }
    }
    Ok(())
}

/// Where snapshot `name` of `disk` lives.
pub fn snapshot_root(store: &Path, disk: &str, name: &str) -> PathBuf {
    store.join("snapshots").join(disk).join(name)
}

/// Where a snapshot is assembled before it is recorded.
pub fn snapshot_tmp(store: &Path, disk: &str, name: &str) -> PathBuf {
    store
        .join("snapshots")
        .join(disk)
        .join(format!(".tmp-{name}"))
}

/// Where image `name` lives.
pub fn image_root(store: &Path, name: &str) -> PathBuf {
    store.join("images").join(name)
}

// ------------------------------------------------------------ raw copies

/// Copies the raw xattrs of the open file or directory `src` to `dst`:
/// every `user.` one (strata's own: encrypted names and values), whatever
/// its size, failing if one cannot be copied; others (labels and marks the
/// system puts on backing files, such as SELinux's or macOS's protected
/// `com.apple.*` ones) as far as they can be set.
fn copy_raw_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> std::io::Result<()> {
    for name in crate::backing::xattrs::names(src)? {
        let Some(value) = crate::backing::xattrs::get(src, &name)? else {
            continue;
        };
        let set =
            rustix::fs::fsetxattr(dst, name.as_str(), &value, rustix::fs::XattrFlags::empty());
        match set {
            Ok(()) => {}
            Err(e) if name.starts_with("user.") => return Err(e.into()),
            Err(e) => tracing::debug!("backing xattr {name} not carried over: {e}"),
        }
    }
    Ok(())
}

fn times_of(st: &Stat) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Gives the open file or directory `dst` the owner, permission bits (with
/// the symlink mark) and access and modification times of `st`.
pub(crate) fn set_owner_mode_times(dst: BorrowedFd<'_>, st: &Stat) -> std::io::Result<()> {
    // An unprivileged copy keeps its own owner.
    let _ = rustix::fs::fchown(
        dst,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    );
    rustix::fs::fchmod(
        dst,
        rustix::fs::Mode::from_raw_mode((crate::platform::mode::of(st) & 0o7777) as _),
    )?;
    rustix::fs::futimens(dst, &times_of(st))?;
    Ok(())
}

/// [`set_owner_mode_times`] for entry `name` of `dir` that cannot be
/// opened safely (a FIFO, socket, device or symlink): changed by name,
/// never through a symlink (a symlink keeps its mode, as everywhere).
pub(crate) fn set_owner_mode_times_at(dir: &Dir, name: &OsStr, st: &Stat) -> std::io::Result<()> {
    let _ = dir.chown_at(name, Some(st.st_uid), Some(st.st_gid));
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        dir.chmod_at(name, crate::platform::mode::of(st) & 0o7777)?;
    }
    dir.utimens_at(name, &times_of(st))
}

/// Counters of a raw tree copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyStats {
    /// Objects copied.
    pub objects: u64,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Files shared by reflink rather than copied.
    pub reflinked: u64,
}

/// Copies the backing tree `from` to the new directory `to` as it is:
/// ciphertext, names, directory ids, sidecars, hard links, modes, owners,
/// xattrs and times. The tree is walked by descriptor (any depth); a
/// symlink planted in it is copied as a symlink, never followed, and a
/// FIFO is made anew, never opened. `progress` counts the objects copied.
pub fn clone_tree(
    from: &Path,
    to: &Path,
    progress: &dyn Progress,
) -> Result<CopyStats, StoreError> {
    let src = Dir::open(from).map_err(io(from))?;
    progress.total(walk::tally(&src, from)?.entries + 1);
    std::fs::create_dir(to).map_err(io(to))?;
    let dst = Dir::open(to).map_err(io(to))?;
    let mut c = Cloner {
        to,
        root: dst.try_clone().map_err(io(to))?,
        links: HashMap::new(),
        stats: CopyStats::default(),
        progress,
    };
    walk::walk(&src, from, dst, &mut c)?;
    Ok(c.stats)
}

struct Cloner<'a> {
    /// The copy's root, for messages and for reaching a hard link's first copy.
    to: &'a Path,
    root: Dir,
    /// Source (device, inode) → where its first copy is, below the root.
    links: HashMap<(u64, u64), Vec<OsString>>,
    stats: CopyStats,
    progress: &'a dyn Progress,
}

impl Cloner<'_> {
    fn copy(&mut self, n: &Node<'_>, dst: &Dir) -> std::io::Result<()> {
        let st = n.stat;
        let kind = n.kind();
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&walk::inode_key(st)) {
                let (first_name, first_dir) = first.split_last().ok_or_else(|| {
                    std::io::Error::from_raw_os_error(crate::platform::errno::EINVAL)
                })?;
                let at = walk::open_rel(&self.root, first_dir)?;
                return at.link(first_name, dst, n.name);
            }
        }
        match kind {
            FileType::RegularFile => {
                let mut from = n.parent.open_file(n.name, false)?;
                // A clone (FICLONE, clonefile) where the filesystem shares
                // blocks, else a copy.
                let (to, cloned) = crate::platform::copy_file(&mut from, dst.fd(), n.name)?;
                if cloned {
                    self.stats.reflinked += 1;
                }
                copy_raw_xattrs(from.as_fd(), to.as_fd())?;
                set_owner_mode_times(to.as_fd(), st)?;
                crate::platform::sync_all(&to)?;
                self.stats.bytes += st.st_size as u64;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(n.parent.fd(), n.name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst.fd(), n.name)?;
                set_owner_mode_times_at(dst, n.name, st)?;
            }
            _ => {
                dst.mknod(
                    n.name,
                    kind,
                    crate::platform::mode::of(st) & 0o7777,
                    walk::rdev(st),
                )?;
                set_owner_mode_times_at(dst, n.name, st)?;
            }
        }
        if st.st_nlink > 1 {
            self.links.insert(walk::inode_key(st), n.rel.to_vec());
        }
        Ok(())
    }
}

impl Visitor for Cloner<'_> {
    type Error = StoreError;
    /// The open directory of the copy.
    type Scope = Dir;

    fn entry(&mut self, n: &Node<'_>, dst: &mut Dir) -> Result<Option<Dir>, StoreError> {
        let shown = || walk::join(self.to, n.rel);
        if n.kind() == FileType::Directory {
            dst.mkdir(n.name, 0o700).map_err(io(&shown()))?;
            return Ok(Some(dst.open_dir(n.name).map_err(io(&shown()))?));
        }
        self.copy(n, dst).map_err(io(&shown()))?;
        self.stats.objects += 1;
        self.progress.inc(1);
        super::rekey::crash_point();
        Ok(None)
    }

    fn leave(&mut self, src: &Dir, rel: &[OsString], dst: Dir) -> Result<(), StoreError> {
        let shown = walk::join(self.to, rel);
        (|| {
            copy_raw_xattrs(src.fd(), dst.fd())?;
            set_owner_mode_times(dst.fd(), &src.stat()?)?;
            dst.sync()
        })()
        .map_err(io(&shown))?;
        self.stats.objects += 1;
        self.progress.inc(1);
        Ok(())
    }
}

// ------------------------------------------------------------ snapshots

/// Checks that image `image` exists and its keys are usable.
pub fn check_image(store: &Path, vault: &Vault, image: &str) -> Result<(), StoreError> {
    let config = super::read_authenticated(store, vault)?;
    match config.image(image) {
        Some(i) => not_revoked(&i.source, vault),
        None => invalid(format!(
            "store {} has no image named {image}",
            store.display()
        )),
    }
}

/// Refuses keys that are revoked: nothing is copied out of, or made from,
/// a disk, snapshot or image whose key is disabled.
fn not_revoked(d: &DiskConfig, vault: &Vault) -> Result<(), StoreError> {
    match super::disk_revoked(d, vault) {
        Some(r) => invalid(r),
        None => Ok(()),
    }
}

fn persistent_disk<'c>(
    config: &'c Config,
    store: &Path,
    disk: &str,
) -> Result<&'c DiskConfig, StoreError> {
    let Some(d) = config.disk(disk) else {
        return invalid(format!(
            "store {} has no disk named {disk}",
            store.display()
        ));
    };
    if d.kind == DiskKind::Temp {
        return invalid(format!(
            "disk {disk} is a temp disk: it is emptied at every mount and has no snapshots or images"
        ));
    }
    if d.pending.is_some() {
        return invalid(format!(
            "disk {disk} has an unfinished re-encryption: finish it with `strata disk rekey` first"
        ));
    }
    Ok(d)
}

/// Checks a new snapshot request and clears any leftover of an earlier,
/// interrupted attempt. Returns the disk's config and the temporary path
/// the copy goes to.
pub fn prepare_snapshot(
    store: &Path,
    vault: &Vault,
    disk: &str,
    name: &str,
) -> Result<(DiskConfig, PathBuf), StoreError> {
    let config = super::read_authenticated(store, vault)?;
    check_name("snapshot", name)?;
    let d = persistent_disk(&config, store, disk)?.clone();
    not_revoked(&d, vault)?;
    if config.snapshot(disk, name).is_some() {
        return invalid(format!("disk {disk} already has a snapshot named {name}"));
    }
    let tmp = snapshot_tmp(store, disk, name);
    clear_stale(&[&tmp, &snapshot_root(store, disk, name)])?;
    let parent = store.join("snapshots").join(disk);
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    Ok((d, tmp))
}

/// Records a snapshot whose tree is complete at its temporary path.
pub fn commit_snapshot(
    store: &Path,
    vault: &mut Vault,
    source: DiskConfig,
    name: &str,
) -> Result<SnapshotConfig, StoreError> {
    let tmp = snapshot_tmp(store, &source.name, name);
    let root = snapshot_root(store, &source.name, name);
    std::fs::rename(&tmp, &root).map_err(io(&tmp))?;
    let mut config = super::read_authenticated(store, vault)?;
    let snap = SnapshotConfig {
        name: name.to_string(),
        created: now(),
        source,
    };
    config.snapshots.push(snap.clone());
    save_config(store, &mut config, vault)?;
    Ok(snap)
}

/// Takes a snapshot of a disk of an unmounted store.
pub fn create_snapshot(
    store: &Path,
    vault: &mut Vault,
    disk: &str,
    name: &str,
    progress: &dyn Progress,
) -> Result<(SnapshotConfig, CopyStats), StoreError> {
    let (d, tmp) = prepare_snapshot(store, vault, disk, name)?;
    let stats = clone_tree(&disk_root(store, disk), &tmp, progress)?;
    let snap = commit_snapshot(store, vault, d, name)?;
    Ok((snap, stats))
}

/// Deletes a snapshot: first from the config, then its tree.
pub fn delete_snapshot(
    store: &Path,
    vault: &mut Vault,
    disk: &str,
    name: &str,
) -> Result<(), StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    let before = config.snapshots.len();
    config
        .snapshots
        .retain(|s| !(s.source.name == disk && s.name == name));
    if config.snapshots.len() == before {
        return invalid(format!("disk {disk} has no snapshot named {name}"));
    }
    save_config(store, &mut config, vault)?;
    let root = snapshot_root(store, disk, name);
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io(&root))?;
    }
    Ok(())
}

/// Brings a disk back to a snapshot, byte for byte, with the keys it had
/// then. Offline; resumable (the steps are recognisable from the
/// directories present).
pub fn restore_snapshot(
    store: &Path,
    vault: &mut Vault,
    disk: &str,
    name: &str,
    progress: &dyn Progress,
) -> Result<CopyStats, StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    let Some(snap) = config.snapshot(disk, name).cloned() else {
        return invalid(format!("disk {disk} has no snapshot named {name}"));
    };
    not_revoked(&snap.source, vault)?;
    let Some(idx) = config.disks.iter().position(|d| d.name == disk) else {
        return invalid(format!(
            "store {} has no disk named {disk}",
            store.display()
        ));
    };
    let disks = store.join("disks");
    let root = disk_root(store, disk);
    let new_root = disks.join(format!(".restore-new-{disk}"));
    let old_root = disks.join(format!(".restore-old-{disk}"));
    let mut stats = CopyStats::default();
    if root.exists() && !old_root.exists() {
        if new_root.exists() {
            std::fs::remove_dir_all(&new_root).map_err(io(&new_root))?;
        }
        stats = clone_tree(&snapshot_root(store, disk, name), &new_root, progress)?;
        std::fs::rename(&root, &old_root).map_err(io(&root))?;
    }
    if !root.exists() && new_root.exists() {
        std::fs::rename(&new_root, &root).map_err(io(&new_root))?;
    }
    let d = &mut config.disks[idx];
    d.layers = snap.source.layers.clone();
    d.guest = snap.source.guest;
    d.storage = snap.source.storage;
    d.pending = None;
    save_config(store, &mut config, vault)?;
    if old_root.exists() {
        std::fs::remove_dir_all(&old_root).map_err(io(&old_root))?;
    }
    Ok(stats)
}

// ------------------------------------------------------------ images

/// Makes image `name` from `DISK` or `DISK@SNAPSHOT` (a live disk only
/// while the store is not mounted).
pub fn create_image(
    store: &Path,
    vault: &mut Vault,
    name: &str,
    from: &str,
    mounted: bool,
    progress: &dyn Progress,
) -> Result<(ImageConfig, CopyStats), StoreError> {
    let config = super::read_authenticated(store, vault)?;
    check_name("image", name)?;
    if config.image(name).is_some() {
        return invalid(format!(
            "store {} already has an image named {name}",
            store.display()
        ));
    }
    let (source, src_root) = match from.split_once('@') {
        Some((disk, snap)) => {
            let Some(s) = config.snapshot(disk, snap) else {
                return invalid(format!("disk {disk} has no snapshot named {snap}"));
            };
            (s.source.clone(), snapshot_root(store, disk, snap))
        }
        None => {
            if mounted {
                return invalid(format!(
                    "store {} is mounted: make an image from a snapshot (DISK@SNAPSHOT), or unmount first",
                    store.display()
                ));
            }
            (
                persistent_disk(&config, store, from)?.clone(),
                disk_root(store, from),
            )
        }
    };
    not_revoked(&source, vault)?;
    let images = store.join("images");
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    let tmp = images.join(format!(".tmp-{name}"));
    let root = image_root(store, name);
    clear_stale(&[&tmp, &root])?;
    let stats = clone_tree(&src_root, &tmp, progress)?;
    std::fs::rename(&tmp, &root).map_err(io(&tmp))?;
    let mut config = super::read_authenticated(store, vault)?;
    let image = ImageConfig {
        name: name.to_string(),
        created: now(),
        from: from.to_string(),
        source,
    };
    config.images.push(image.clone());
    save_config(store, &mut config, vault)?;
    Ok((image, stats))
}

/// Deletes an image: first from the config, then its tree.
pub fn delete_image(store: &Path, vault: &mut Vault, name: &str) -> Result<(), StoreError> {
    let mut config = super::read_authenticated(store, vault)?;
    let before = config.images.len();
    config.images.retain(|i| i.name != name);
    if config.images.len() == before {
        return invalid(format!(
            "store {} has no image named {name}",
            store.display()
        ));
    }
    save_config(store, &mut config, vault)?;
    let root = image_root(store, name);
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io(&root))?;
    }
    Ok(())
}

/// Where a disk made from an image is filled before it replaces the
/// disk's empty root (its presence means an interrupted fill).
pub fn from_image_tmp(store: &Path, disk: &str) -> PathBuf {
    store.join("disks").join(format!(".from-image-{disk}"))
}

/// Fills the new, empty disk `disk` from image `image`: every file, name,
/// symlink and xattr decrypted with the image's keys and encrypted with the
/// disk's own. Resumable: an interrupted fill is started over.
pub fn fill_from_image(
    store: &Path,
    vault: &mut Vault,
    disk: &str,
    image: &str,
    progress: &dyn Progress,
) -> Result<u64, StoreError> {
    let config = super::read_authenticated(store, vault)?;
    let Some(img) = config.image(image).cloned() else {
        return invalid(format!(
            "store {} has no image named {image}",
            store.display()
        ));
    };
    let Some(d) = config.disk(disk).cloned() else {
        return invalid(format!(
            "store {} has no disk named {disk}",
            store.display()
        ));
    };
    not_revoked(&img.source, vault)?;
    not_revoked(&d, vault)?;
    let root = disk_root(store, disk);
    let tmp = from_image_tmp(store, disk);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let n = super::rekey::reencrypt_tree(
        store,
        &config,
        vault,
        (&img.source, &image_root(store, image)),
        (&d, &tmp),
        progress,
    )?;
    // The new disk's root held only its directory id: replace it whole.
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io(&root))?;
    }
    std::fs::rename(&tmp, &root).map_err(io(&tmp))?;
    Ok(n)
}
