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
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    disk_root, io, now, save_config, Config, DiskConfig, DiskKind, ImageConfig, SnapshotConfig,
    StoreError,
};
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

/// Copies one file: a reflink (FICLONE, sharing extents on btrfs, XFS…)
/// where the filesystem offers it, else a plain copy. True when reflinked.
fn copy_file(src: &Path, dst: &Path) -> std::io::Result<bool> {
    let mut from = std::fs::File::open(src)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let cloned = rustix::fs::ioctl_ficlone(&to, &from).is_ok();
    if !cloned {
        std::io::copy(&mut from, &mut to)?;
    }
    to.sync_all()?;
    Ok(cloned)
}

/// Carries mode (with the symlink mark), owner, raw xattrs and times.
fn copy_raw_meta(src: &Path, dst: &Path, m: &std::fs::Metadata) -> std::io::Result<()> {
    let mut list = vec![0u8; 1 << 16];
    let n = rustix::fs::llistxattr(src, &mut list[..]).unwrap_or(0);
    for name in list[..n].split(|&b| b == 0).filter(|b| !b.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut val = vec![0u8; 1 << 16];
        if let Ok(len) = rustix::fs::lgetxattr(src, name, &mut val[..]) {
            rustix::fs::lsetxattr(dst, name, &val[..len], rustix::fs::XattrFlags::empty())?;
        }
    }
    set_owner_mode_times(dst, m)
}

/// Gives `dst` the owner, permission bits (with the symlink mark) and
/// access and modification times of `m`.
pub(crate) fn set_owner_mode_times(dst: &Path, m: &std::fs::Metadata) -> std::io::Result<()> {
    let _ = std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()));
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
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
/// xattrs and times. `progress` counts the objects copied.
pub fn clone_tree(
    from: &Path,
    to: &Path,
    progress: &dyn Progress,
) -> Result<CopyStats, StoreError> {
    progress.total(count_entries(from).map_err(io(from))?);
    let mut stats = CopyStats::default();
    let mut links = HashMap::new();
    clone_dir(from, to, &mut links, &mut stats, progress)?;
    Ok(stats)
}

fn clone_dir(
    from: &Path,
    to: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    stats: &mut CopyStats,
    progress: &dyn Progress,
) -> Result<(), StoreError> {
    let meta = std::fs::symlink_metadata(from).map_err(io(from))?;
    std::fs::create_dir(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let m = std::fs::symlink_metadata(&src).map_err(io(&src))?;
        if m.is_dir() {
            clone_dir(&src, &dst, links, stats, progress)?;
            continue;
        }
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, &dst).map_err(io(&dst))?;
                continue;
            }
        }
        if m.is_file() {
            if copy_file(&src, &dst).map_err(io(&dst))? {
                stats.reflinked += 1;
            }
            stats.bytes += m.len();
        } else if m.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(io(&src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(io(&dst))?;
        } else {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &dst,
                rustix::fs::FileType::from_raw_mode(m.mode()),
                rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| StoreError::Io {
                path: dst.clone(),
                source: e.into(),
            })?;
        }
        if !m.file_type().is_symlink() {
            copy_raw_meta(&src, &dst, &m).map_err(io(&dst))?;
        }
        if m.nlink() > 1 {
            links.insert((m.dev(), m.ino()), dst);
        }
        stats.objects += 1;
        progress.inc(1);
        super::rekey::crash_point();
    }
    copy_raw_meta(from, to, &meta).map_err(io(to))?;
    stats.objects += 1;
    progress.inc(1);
    Ok(())
}

/// Entries below `root` and `root` itself: the objects [`clone_tree`]
/// counts, for a progress total.
fn count_entries(root: &Path) -> std::io::Result<u64> {
    let mut n = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            n += 1;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(n)
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
