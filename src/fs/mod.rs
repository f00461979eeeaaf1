//! The FUSE-free filesystem core: the node table, handles and every
//! operation, returning `Result<_, Errno>`. The `fuse` module is a thin
//! adapter over this; tests can drive it without a kernel.
//!
//! The mount root (inode 1) is virtual and holds one directory per disk. Every
//! other inode is a backing-store object: directories and special files are
//! backing directories and special files under encrypted names; regular files
//! and symlink targets are encrypted backing files (a symlink's backing file
//! carries the sticky bit and a header of type symlink). Inode numbers are
//! the backing inode numbers, so hard links share an inode and `readdir`
//! agrees with `stat`.
//!
//! Backing objects are reached by descriptor: a node knows its parent
//! directory's inode and its backing name there, directories are opened
//! one name at a time from the disk root (and kept in a bounded cache), and
//! every call names one entry of an open directory. An inode the kernel
//! still holds is acted on through its own descriptor or its current name,
//! never through a path that a rename or unlink made stale.

pub mod attr;
mod dir;
mod io;
mod nodes;
mod resolve;
pub mod xattr;

use crate::platform::errno;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use attr::{Attr, Kind};
pub use dir::{Caller, DirEntry, SetAttr, SetTime};

use crate::backing::{Dir, DirCache};
use crate::cache::BlockCache;
use crate::file::{FileCtx, FileError, Sessions};
use crate::layers::Pipeline;
use crate::names::{BackingName, NameCodec, NameError};
use nodes::Nodes;

/// The node table, locked. Descriptors that nodes dropped under the lock
/// kept are closed after it is released.
struct NodesGuard<'a>(Option<std::sync::MutexGuard<'a, Nodes>>);

impl std::ops::Deref for NodesGuard<'_> {
    type Target = Nodes;
    fn deref(&self) -> &Nodes {
        self.0.as_deref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for NodesGuard<'_> {
    fn deref_mut(&mut self) -> &mut Nodes {
        self.0.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for NodesGuard<'_> {
    fn drop(&mut self) {
        if let Some(mut table) = self.0.take() {
            let released = table.take_released();
            drop(table);
            drop(released);
        }
    }
}

/// The root inode.
pub const ROOT_INO: u64 = 1;

/// An errno answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// EIO.
    pub const EIO: Errno = Errno(errno::EIO);
    /// ENOENT.
    pub const ENOENT: Errno = Errno(errno::ENOENT);
    /// EPERM.
    pub const EPERM: Errno = Errno(errno::EPERM);
    /// EROFS.
    pub const EROFS: Errno = Errno(errno::EROFS);
    /// EBADF.
    pub const EBADF: Errno = Errno(errno::EBADF);
    /// EINVAL.
    pub const EINVAL: Errno = Errno(errno::EINVAL);
    /// ENOTEMPTY.
    pub const ENOTEMPTY: Errno = Errno(errno::ENOTEMPTY);
    /// EEXIST.
    pub const EEXIST: Errno = Errno(errno::EEXIST);
    /// ENOTSUP.
    pub const ENOTSUP: Errno = Errno(errno::ENOTSUP);
    /// ENOTDIR.
    pub const ENOTDIR: Errno = Errno(errno::ENOTDIR);
    /// EISDIR.
    pub const EISDIR: Errno = Errno(errno::EISDIR);
    /// The answer for a disk whose key is revoked: EKEYREVOKED on Linux,
    /// EACCES where that does not exist.
    pub const REVOKED: Errno = Errno(crate::platform::ERRNO_REVOKED);
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(errno::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<FileError> for Errno {
    fn from(e: FileError) -> Self {
        if e.errno() == errno::EIO {
            tracing::error!("{e}");
        }
        Errno(e.errno())
    }
}

impl From<NameError> for Errno {
    fn from(e: NameError) -> Self {
        if e.errno() == errno::EIO {
            tracing::error!("{e}");
        }
        Errno(e.errno())
    }
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, Errno>;

/// One disk as the daemon serves it.
pub struct DiskRt {
    /// Directory name in the mount.
    pub name: String,
    /// Backing root.
    pub root: PathBuf,
    /// For a snapshot: its name (`name` is then its disk's). Snapshots are
    /// read-only and shown under `.snapshots/<disk>/<snapshot>/`.
    pub snapshot: Option<String>,
    /// A temp disk: emptied at every mount, so its files need no write
    /// window for crashes.
    pub ephemeral: bool,
    /// Its ciphers while served, or why it is refused. A refused disk holds
    /// no ciphers: they are dropped at revocation and put back when its
    /// keys are allowed again.
    state: RwLock<DiskState>,
    /// WRITE requests to its open files: how many began, how many run.
    writes: WriteTally,
}

/// WRITE requests to one disk's open files, which a revocation waits to
/// see end, and replies that told the kernel fresh attributes while the
/// disk was closing, after which the kernel may take writes into its cache
/// again (see [`Fs::writes_settle`]).
#[derive(Default)]
struct WriteTally {
    started: AtomicU64,
    running: std::sync::atomic::AtomicUsize,
    validated: AtomicU64,
}

/// Held while one WRITE runs.
pub struct Writing<'a>(&'a WriteTally);

impl WriteTally {
    fn begin(&self) -> Writing<'_> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        Writing(self)
    }

    fn snapshot(&self) -> (u64, usize) {
        (
            self.started.load(Ordering::SeqCst),
            self.running.load(Ordering::SeqCst),
        )
    }

    fn validations(&self) -> u64 {
        self.validated.load(Ordering::SeqCst)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A disk's ciphers: the layer pipeline and the name codec derived from it.
struct Ciphers {
    pipeline: Arc<Pipeline>,
    names: Arc<NameCodec>,
}

struct DiskState {
    ciphers: Option<Ciphers>,
    refused: Option<String>,
    /// A revocation is flushing the kernel's cached writes: the disk
    /// answers no new request (so that no new write is taken into the
    /// kernel's cache) but open handles still read, write and sync.
    closing: bool,
    /// Layer names, as last served (kept while refused, for `status`).
    layers: Vec<&'static str>,
}

impl DiskRt {
    /// A disk served with `pipeline`.
    pub fn served(
        name: String,
        root: PathBuf,
        snapshot: Option<String>,
        ephemeral: bool,
        pipeline: Arc<Pipeline>,
    ) -> DiskRt {
        let layers = pipeline.layer_set().names();
        let names = Arc::new(pipeline.name_codec());
        DiskRt {
            name,
            root,
            snapshot,
            ephemeral,
            state: RwLock::new(DiskState {
                ciphers: Some(Ciphers { pipeline, names }),
                refused: None,
                closing: false,
                layers,
            }),
            writes: WriteTally::default(),
        }
    }

    /// A disk refused for `reason`, with no ciphers.
    pub fn refused(
        name: String,
        root: PathBuf,
        snapshot: Option<String>,
        ephemeral: bool,
        reason: String,
    ) -> DiskRt {
        DiskRt {
            name,
            root,
            snapshot,
            ephemeral,
            state: RwLock::new(DiskState {
                ciphers: None,
                refused: Some(reason),
                closing: false,
                layers: Vec::new(),
            }),
            writes: WriteTally::default(),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, DiskState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, DiskState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The disk's ciphers, or EKEYREVOKED when it is refused or a
    /// revocation is under way.
    fn check(&self) -> FsResult<(Arc<Pipeline>, Arc<NameCodec>)> {
        let st = self.state();
        match (&st.refused, &st.ciphers, st.closing) {
            (None, Some(c), false) => Ok((c.pipeline.clone(), c.names.clone())),
            _ => Err(Errno::REVOKED),
        }
    }

    /// The disk's ciphers for a request: [`DiskRt::ciphers`] for one
    /// `admitted` before a revocation began to flush (an open handle's),
    /// else [`DiskRt::check`].
    fn serving(&self, admitted: bool) -> FsResult<(Arc<Pipeline>, Arc<NameCodec>)> {
        if admitted {
            self.ciphers()
        } else {
            self.check()
        }
    }

    /// The disk's ciphers for the I/O of open handles, which goes on while
    /// a revocation flushes (see [`Fs::close_disks`]); EKEYREVOKED once
    /// the disk is refused.
    fn ciphers(&self) -> FsResult<(Arc<Pipeline>, Arc<NameCodec>)> {
        let st = self.state();
        match (&st.refused, &st.ciphers) {
            (None, Some(c)) => Ok((c.pipeline.clone(), c.names.clone())),
            _ => Err(Errno::REVOKED),
        }
    }

    /// The pipeline while the disk is served.
    pub fn served_pipeline(&self) -> Option<Arc<Pipeline>> {
        self.check().ok().map(|(p, _)| p)
    }

    /// Why the disk is refused, if it is.
    pub fn refusal(&self) -> Option<String> {
        self.state().refused.clone()
    }

    /// Whether the disk's ciphers are in memory.
    pub fn keys_loaded(&self) -> bool {
        self.state().ciphers.is_some()
    }
}

/// Options of a mount.
#[derive(Debug, Clone, Default)]
pub struct FsOptions {
    /// Refuse every change.
    pub read_only: bool,
    /// The mount session files are written under, and the sessions known
    /// to have crashed.
    pub sessions: Sessions,
    /// The device every disk's and snapshot's backing tree lies on. Inode
    /// numbers name objects, so they must all come from one filesystem: an
    /// entry on another (something mounted inside a backing tree) is
    /// refused rather than confused with the object of the same number.
    pub device: Option<u64>,
}

/// The mount root's directory of snapshots.
pub const SNAPSHOTS_DIR: &str = ".snapshots";
/// Inode of `.snapshots`.
pub(super) const SNAPSHOTS_INO: u64 = u64::MAX - 2;
/// Inode of `.snapshots/<disk>` is this plus the disk's slot.
pub(super) const SNAPSHOT_DISK_INO: u64 = u64::MAX - (1 << 20);
/// How long a revocation waits for running operations to let go of the
/// disk's ciphers.
const REVOKE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Slots kept free at mount for snapshots taken while mounted.
const SPARE_SLOTS: usize = 256;

/// The filesystem.
pub struct Fs {
    /// Disks and snapshots, in slots that are filled once (snapshots taken
    /// while mounted fill spare slots), so `&DiskRt` lives as long as `&Fs`.
    disks: Vec<std::sync::OnceLock<DiskRt>>,
    /// One per slot: held shared by every changing FUSE operation on that
    /// disk, exclusively while an online snapshot copies its backing tree.
    gates: Vec<RwLock<()>>,
    cache: Arc<BlockCache>,
    nodes: Mutex<Nodes>,
    dirs: DirCache,
    handles: Mutex<std::collections::HashMap<u64, io::Handle>>,
    next_fh: AtomicU64,
    /// Held shared by operations that add names, exclusively by rmdir and
    /// rename, which must see a directory stay empty while they remove its
    /// id files. Also held shared while an inode is reached through its
    /// name (opening its file, a setattr, a getattr that missed), so that a
    /// rename's change of the store and of the table look as one. Lock
    /// order: taken before the node table and any file slot, never under
    /// them, and never twice by one thread.
    ns_lock: RwLock<()>,
    /// Held while a directory's ids are minted (a directory found without
    /// them), and by rmdir and rename from clearing an empty directory's
    /// ids until it is gone or they are back: a read of the directory in
    /// between (opendir, xattrs) would otherwise mint it new ones and make
    /// the removal fail, leaving it with an id the daemon no longer holds.
    /// Lock order: after `ns_lock`, before the node table.
    dir_ids: Mutex<()>,
    opts: FsOptions,
    sessions: Arc<Sessions>,
    store: PathBuf,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// What a running mount reports about itself (`strata status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FsStatus {
    /// Disks: name, layers, and why refused (if so).
    pub disks: Vec<DiskStatus>,
    /// Open file and directory handles.
    pub open_handles: usize,
    /// Bytes returned by reads since the mount.
    pub bytes_read: u64,
    /// Bytes accepted by writes since the mount.
    pub bytes_written: u64,
    /// The block cache.
    pub cache: CacheStatus,
    /// Mounted read-only.
    pub read_only: bool,
}

/// One disk in [`FsStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskStatus {
    /// Name.
    pub name: String,
    /// Layers applied, in write order.
    pub layers: Vec<&'static str>,
    /// Why the disk is refused, if it is (a revoked key).
    pub refused: Option<String>,
    /// Whether its ciphers are in memory (never while refused).
    pub keys_in_memory: bool,
}

/// The block cache in [`FsStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStatus {
    /// Bound in bytes.
    pub capacity_bytes: u64,
    /// Bytes held now.
    pub used_bytes: u64,
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// hits / (hits + misses), 0 when unused.
    pub hit_rate: f64,
}

impl Fs {
    /// Builds the filesystem over the given disks.
    pub fn new(
        store: PathBuf,
        disks: Vec<DiskRt>,
        cache: Arc<BlockCache>,
        opts: FsOptions,
    ) -> Self {
        let slots: Vec<std::sync::OnceLock<DiskRt>> = disks
            .into_iter()
            .map(std::sync::OnceLock::from)
            .chain((0..SPARE_SLOTS).map(|_| std::sync::OnceLock::new()))
            .collect();
        let nodes = Nodes::new(slots.len());
        let sessions = Arc::new(opts.sessions.clone());
        Fs {
            gates: (0..slots.len()).map(|_| RwLock::new(())).collect(),
            disks: slots,
            cache,
            nodes: Mutex::new(nodes),
            dirs: DirCache::new(crate::backing::DIR_CACHE_CAPACITY),
            handles: Mutex::new(Default::default()),
            next_fh: AtomicU64::new(1),
            ns_lock: RwLock::new(()),
            dir_ids: Mutex::new(()),
            opts,
            sessions,
            store,
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// The disks and snapshots served, with their slots.
    pub fn disks(&self) -> impl Iterator<Item = (usize, &DiskRt)> {
        self.disks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().map(|d| (i, d)))
    }

    /// The live disks (not snapshots), with their slots.
    pub(super) fn live_disks(&self) -> impl Iterator<Item = (usize, &DiskRt)> {
        self.disks().filter(|(_, d)| d.snapshot.is_none())
    }

    /// The snapshots of the disk named `disk`.
    pub(super) fn snapshots_of<'a>(
        &'a self,
        disk: &'a str,
    ) -> impl Iterator<Item = (usize, &'a DiskRt)> {
        self.disks()
            .filter(move |(_, d)| d.snapshot.is_some() && d.name == disk)
    }

    /// Whether any snapshot is shown.
    pub(super) fn has_snapshots(&self) -> bool {
        self.disks().any(|(_, d)| d.snapshot.is_some())
    }

    /// Adds a snapshot taken while mounted (it shares its disk's ciphers).
    /// False when no slot is left (it shows at the next mount).
    pub fn add_snapshot(&self, disk: &str, name: &str, root: PathBuf) -> bool {
        let Some((_, d)) = self.live_disks().find(|(_, d)| d.name == disk) else {
            return false;
        };
        let snapshot = Some(name.to_string());
        let rt = match (d.served_pipeline(), d.refusal()) {
            (Some(p), _) => DiskRt::served(d.name.clone(), root, snapshot, false, p),
            (None, reason) => DiskRt::refused(
                d.name.clone(),
                root,
                snapshot,
                false,
                reason.unwrap_or_else(|| format!("disk {} is unavailable", d.name)),
            ),
        };
        match self.disks.iter().find(|s| s.get().is_none()) {
            Some(slot) => slot.set(rt).is_ok(),
            None => false,
        }
    }

    /// Holds every changing operation on the disk named `disk` until the
    /// guard drops (an online snapshot's copy); None if there is no such
    /// disk.
    pub fn freeze(&self, disk: &str) -> Option<std::sync::RwLockWriteGuard<'_, ()>> {
        let (slot, _) = self.live_disks().find(|(_, d)| d.name == disk)?;
        Some(self.gates[slot].write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Taken by every changing FUSE operation, for its duration, on the
    /// disk of inode `ino` (the inode itself or the parent it changes).
    pub fn change_gate(&self, ino: u64) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        let disk = self.nodes().get(ino).map(|n| n.disk)?;
        self.gate(disk)
    }

    fn gate(&self, disk: usize) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        let gate = self.gates.get(disk)?;
        Some(gate.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A WRITE to inode `ino`'s change gate: the WRITE counted for
    /// [`Fs::writes_settle`] from before it waits there (a WRITE waiting
    /// at the gate is one a revocation must still see through), then the
    /// gate.
    pub fn write_gate(
        &self,
        ino: u64,
    ) -> (
        Option<Writing<'_>>,
        Option<std::sync::RwLockReadGuard<'_, ()>>,
    ) {
        let Some(disk) = self.nodes().get(ino).map(|n| n.disk) else {
            return (None, None);
        };
        let writing = self.disk(disk).ok().map(|d| d.writes.begin());
        (writing, self.gate(disk))
    }

    /// Whether `ino` is one of the virtual directories of `.snapshots`.
    pub fn is_virtual(ino: u64) -> bool {
        ino == SNAPSHOTS_INO || (SNAPSHOT_DISK_INO..SNAPSHOTS_INO).contains(&ino)
    }

    /// The disk (or `.snapshots/DISK/NAME`) inode `ino` belongs to, for
    /// log lines.
    pub fn disk_label(&self, ino: u64) -> Option<String> {
        let slot = self.nodes().get(ino).map(|n| n.disk)?;
        let d = self.disks.get(slot)?.get()?;
        Some(match &d.snapshot {
            Some(s) => format!("{SNAPSHOTS_DIR}/{}/{s}", d.name),
            None => d.name.clone(),
        })
    }

    /// Inodes of disk `disk` the kernel may hold cached data of.
    pub fn disk_inodes(&self, disk: usize) -> Vec<u64> {
        self.nodes().of_disk(disk)
    }

    /// What the mount reports about itself.
    pub fn status(&self) -> FsStatus {
        let c = self.cache.stats();
        let block = crate::format::BLOCK_SIZE as u64;
        let lookups = c.hits + c.misses;
        FsStatus {
            disks: self
                .disks()
                .map(|(_, d)| DiskStatus {
                    name: match &d.snapshot {
                        Some(s) => format!("{SNAPSHOTS_DIR}/{}/{s}", d.name),
                        None => d.name.clone(),
                    },
                    layers: d.state().layers.clone(),
                    refused: d.refusal(),
                    keys_in_memory: d.keys_loaded(),
                })
                .collect(),
            open_handles: self.handles().len(),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            cache: CacheStatus {
                capacity_bytes: c.capacity as u64 * block,
                used_bytes: c.blocks as u64 * block,
                hits: c.hits,
                misses: c.misses,
                hit_rate: if lookups == 0 {
                    0.0
                } else {
                    c.hits as f64 / lookups as f64
                },
            },
            read_only: self.opts.read_only,
        }
    }

    /// The first step of a revocation of disk (or snapshot) slots
    /// `slots`: each answers no new request (a lookup, a getattr, an open)
    /// while its open handles go on reading, writing and syncing. The
    /// kernel, once told that its attributes are stale, asks for them
    /// before it takes a write into its cache: such a write then fails,
    /// so that the flush that follows writes every write that returned
    /// while the keys are still here. [`Fs::revoke_disks`] ends it.
    pub fn close_disks(&self, slots: &[usize]) {
        for &slot in slots {
            if let Some(d) = self.disks.get(slot).and_then(|s| s.get()) {
                d.state_mut().closing = true;
            }
        }
    }

    fn tallies(&self, slots: &[usize]) -> Vec<&WriteTally> {
        slots
            .iter()
            .filter_map(|&i| self.disks.get(i).and_then(|s| s.get()))
            .map(|d| &d.writes)
            .collect()
    }

    /// How many replies told the kernel fresh attributes of objects of
    /// disks `slots` while they were closing: a mark for
    /// [`Fs::writes_settle`], taken before the kernel's attributes are
    /// dropped.
    pub fn validations(&self, slots: &[usize]) -> Vec<u64> {
        self.tallies(slots)
            .iter()
            .map(|t| t.validations())
            .collect()
    }

    /// Whether the writes to disks `slots` have settled since `mark` (from
    /// [`Fs::validations`]): no WRITE request running or begun during
    /// `quiet`, and no reply since the mark that told the kernel fresh
    /// attributes (with which it takes writes into its cache without
    /// asking). A revocation flushes until they have: a kernel may end a
    /// write-back before the daemon has written it (older kernels copy the
    /// pages aside and send the WRITE later), and a request admitted before
    /// the disk began closing may answer during it.
    ///
    /// Never while a disk's change gate is held exclusively (an online
    /// snapshot): requests then wait at the gate and may hold every worker
    /// thread, so that WRITEs the kernel queued are not even read.
    pub fn writes_settle(&self, slots: &[usize], mark: &[u64], quiet: std::time::Duration) -> bool {
        let tallies = self.tallies(slots);
        let before: Vec<(u64, usize)> = tallies.iter().map(|t| t.snapshot()).collect();
        std::thread::sleep(quiet);
        let gates_open = slots.iter().all(|&i| {
            self.gates
                .get(i)
                .is_none_or(|g| !matches!(g.try_read(), Err(std::sync::TryLockError::WouldBlock)))
        });
        gates_open
            && tallies
                .iter()
                .zip(before)
                .zip(mark)
                .all(|((t, (started, _)), &v)| t.snapshot() == (started, 0) && t.validations() == v)
    }

    /// Whether the disk of inode `ino` takes no new requests: closing (a
    /// revocation flushes) or refused. What a request admitted before
    /// answers about its objects is then not to be kept by the kernel.
    pub fn takes_no_requests(&self, ino: u64) -> bool {
        let disk = self.nodes().get(ino).map(|n| n.disk);
        disk.and_then(|d| self.disk(d).ok())
            .is_some_and(|d| d.check().is_err())
    }

    /// Notes that a reply about an object of disk `disk` carries fresh
    /// attributes: while the disk is closing, the revocation flushes again.
    fn note_reply(&self, disk: usize) {
        if let Ok(d) = self.disk(disk) {
            if d.state().closing {
                d.writes.validated.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Refuses disk (or snapshot) `slot` with `reason` and takes its keys
    /// away; see [`Fs::revoke_disks`].
    pub fn revoke_disk(&self, slot: usize, reason: String) -> bool {
        !self.revoke_disks(vec![(slot, reason)]).is_empty()
    }

    /// Refuses each disk (or snapshot) slot with its reason and takes their
    /// keys away: their ciphers and name keys, the open files' state built
    /// on them and the block cache's blocks are dropped. Open handles stay
    /// valid and answer EKEYREVOKED until [`Fs::restore_disk`]. Returns,
    /// with the slots that changed, once nothing holds the ciphers any more
    /// (operations already running finish first, up to a bound), so that no
    /// key or cached block of those disks is left in memory.
    pub fn revoke_disks(&self, slots: Vec<(usize, String)>) -> Vec<usize> {
        let mut changed = Vec::new();
        let mut old: Vec<Arc<Pipeline>> = Vec::new();
        for (slot, reason) in slots {
            let Some(d) = self.disks.get(slot).and_then(|s| s.get()) else {
                continue;
            };
            let mut st = d.state_mut();
            st.closing = false;
            if st.refused.as_ref() == Some(&reason) && st.ciphers.is_none() {
                continue;
            }
            // Refused first: an operation that opens a file of the disk
            // from now on sees it and lets go of what it opened.
            st.refused = Some(reason);
            if let Some(c) = st.ciphers.take() {
                if !old.iter().any(|p| Arc::ptr_eq(p, &c.pipeline)) {
                    old.push(c.pipeline);
                }
            }
            changed.push(slot);
        }
        for &slot in &changed {
            self.drop_open_files(slot);
        }
        // Operations that checked a disk before it was refused hold its
        // pipeline until they finish (an open file holds it while open);
        // wait for them, so that what they put in the cache is purged below.
        let deadline = std::time::Instant::now() + REVOKE_WAIT;
        for p in &old {
            while Arc::strong_count(p) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if Arc::strong_count(p) > 1 {
                tracing::warn!(
                    "an operation still holds a revoked disk's ciphers; they go when it ends"
                );
            }
        }
        drop(old);
        for &slot in &changed {
            self.cache
                .purge_scope(u32::try_from(slot).unwrap_or(u32::MAX));
        }
        changed
    }

    /// Drops the open files of disk `slot` (its keys are revoked): handles
    /// open their file again when the disk is served again. A file that no
    /// name reaches any more (unlinked while open) keeps its backing
    /// descriptor in its node, which holds no key: without it the file
    /// would be gone when the keys come back.
    fn drop_open_files(&self, slot: usize) {
        let mut files = Vec::new();
        for h in self.handles().values_mut() {
            if let io::Handle::File {
                disk, file, ino, ..
            } = h
            {
                if *disk == slot {
                    files.extend(file.take().map(|f| (*ino, f)));
                }
            }
        }
        let mut nodes = self.nodes();
        for (ino, f) in &files {
            let Some(n) = nodes.get_mut(*ino) else {
                continue;
            };
            if !n.links.is_empty() || n.kept.is_some() {
                continue;
            }
            match f.fd().try_clone() {
                Ok(fd) => {
                    n.kept = Some(nodes::Kept {
                        fd: Arc::new(fd),
                        writable: f.writable(),
                        label: f.label().to_string(),
                    })
                }
                Err(e) => {
                    tracing::error!(file = %f.label(), "an unlinked open file cannot be kept across the revocation: {e}")
                }
            }
        }
        drop(nodes);
        drop(files);
    }

    /// Serves disk (or snapshot) `slot` again with `pipeline`, built from
    /// its keys once they are allowed again. Returns whether it was
    /// refused.
    pub fn restore_disk(&self, slot: usize, pipeline: Arc<Pipeline>) -> bool {
        let Some(d) = self.disks.get(slot).and_then(|s| s.get()) else {
            return false;
        };
        let mut st = d.state_mut();
        if st.refused.is_none() && st.ciphers.is_some() {
            return false;
        }
        st.layers = pipeline.layer_set().names();
        let names = Arc::new(pipeline.name_codec());
        st.ciphers = Some(Ciphers { pipeline, names });
        st.refused = None;
        st.closing = false;
        true
    }

    /// The block cache.
    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    fn nodes(&self) -> NodesGuard<'_> {
        NodesGuard(Some(self.nodes.lock().unwrap_or_else(|e| e.into_inner())))
    }

    fn writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Whether a change at inode `ino` is allowed: not on a read-only
    /// mount, not in `.snapshots`, not in a snapshot.
    fn writable_at(&self, ino: u64) -> FsResult<()> {
        self.writable()?;
        if Self::is_virtual(ino) {
            return Err(Errno::EROFS);
        }
        let disk = self.nodes().get(ino).map(|n| n.disk);
        match disk.and_then(|d| self.disk(d).ok()) {
            Some(d) if d.snapshot.is_some() => Err(Errno::EROFS),
            _ => Ok(()),
        }
    }

    /// Whether files of slot `disk` may be written (not a read-only mount,
    /// not a snapshot).
    fn disk_writable(&self, disk: usize) -> bool {
        !self.opts.read_only && self.disk(disk).is_ok_and(|d| d.snapshot.is_none())
    }

    fn disk(&self, idx: usize) -> FsResult<&DiskRt> {
        self.disks.get(idx).and_then(|s| s.get()).ok_or(Errno::EIO)
    }

    /// What the files of slot `disk` share: its ciphers, the cache scoped to
    /// the slot, and the session they are written under.
    fn file_ctx(&self, disk: usize) -> FsResult<FileCtx> {
        let d = self.disk(disk)?;
        let (pipeline, names) = d.ciphers()?;
        // A disk with plain names (a temp disk without host encryption) has
        // no size attributes: a user xattr could take their name there.
        let sessions = if d.ephemeral || !self.disk_writable(disk) || !names.is_encrypted() {
            Arc::new(Sessions {
                current: 0,
                crashed: self.sessions.crashed.clone(),
                trust: 0,
                stale: self.sessions.stale.clone(),
            })
        } else {
            self.sessions.clone()
        };
        Ok(FileCtx {
            pipeline,
            cache: self.cache.clone(),
            scope: u32::try_from(disk).unwrap_or(u32::MAX),
            sessions,
        })
    }

    /// Opens the backing root of slot `idx` from the store, never through
    /// a symlink below the store (one planted there would lead out of it).
    fn open_root(&self, idx: usize) -> FsResult<Dir> {
        let root = &self.disk(idx)?.root;
        let rel = root.strip_prefix(&self.store).map_err(|_| Errno::EIO)?;
        let d = Dir::open_below(&self.store, rel)?;
        self.on_device(&d.stat()?, || root.display().to_string())?;
        Ok(d)
    }

    /// Refuses backing metadata `st` (of what `what` names, for the log)
    /// from another filesystem than the disks'.
    fn on_device(&self, st: &rustix::fs::Stat, what: impl FnOnce() -> String) -> FsResult<()> {
        #[allow(clippy::unnecessary_cast)] // the field type differs between systems
        let dev = st.st_dev as u64;
        match self.opts.device {
            Some(d) if d != dev => {
                tracing::error!(entry = %what(), "backing entry on another filesystem than the store's disks (something mounted inside a backing tree): refused");
                Err(Errno::EIO)
            }
            _ => Ok(()),
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }
}

/// A resolved child name: its disk, its parent's open directory and inode,
/// and its backing name there.
struct Child {
    disk: usize,
    parent: u64,
    dir: Arc<Dir>,
    bname: BackingName,
}

impl Child {
    /// The name of the backing entry (the hashed one for a long name).
    fn entry(&self) -> &OsStr {
        self.bname.entry_name()
    }

    /// Writes the long-name sidecar, if the name needs one.
    fn write_sidecar(&self) -> FsResult<()> {
        if let Some((side, full)) = self.bname.sidecar() {
            self.dir.replace(&side, full.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the long-name sidecar, if any.
    fn remove_sidecar(&self) {
        if let Some((side, _)) = self.bname.sidecar() {
            let _ = self.dir.unlink(&side);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key64;
    use crate::layers::{DiskKeys, Layer};

    fn disk() -> DiskRt {
        let mut k = DiskKeys::default();
        k.set(Layer::StoragePmk, Key64::random(), 1);
        let p = Arc::new(Pipeline::new(&k, b"t"));
        DiskRt::served("data".into(), PathBuf::from("/nonexistent"), None, false, p)
    }

    #[test]
    fn a_closing_disk_refuses_new_requests_and_serves_open_handles_until_refused() {
        let d = disk();
        assert!(d.check().is_ok() && d.ciphers().is_ok());
        d.state_mut().closing = true;
        assert_eq!(d.check().err(), Some(Errno::REVOKED), "new requests");
        assert!(d.ciphers().is_ok(), "open handles' I/O");
        let mut st = d.state_mut();
        st.closing = false;
        st.refused = Some("revoked".into());
        st.ciphers = None;
        drop(st);
        assert_eq!(d.check().err(), Some(Errno::REVOKED));
        assert_eq!(d.ciphers().err(), Some(Errno::REVOKED));
    }

    #[test]
    fn the_write_tally_counts_writes_begun_and_running() {
        let t = WriteTally::default();
        let before = t.snapshot();
        let w = t.begin();
        assert_eq!(t.snapshot(), (before.0 + 1, 1));
        drop(w);
        assert_eq!(t.snapshot(), (before.0 + 1, 0));
    }
}
