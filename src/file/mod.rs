//! One encrypted file: its header, the mapping of byte ranges to blocks,
//! read-modify-write of partial blocks, holes, truncation, allocation, the
//! write window that makes a power cut leave old or new sectors rather than
//! damage, and durability.
//!
//! Invariants kept by every operation:
//! - the backing file is a valid header followed by at least the blocks
//!   that hold data (a file never written by a store before format 3, or
//!   whose creation a crash cut short, has no header and reads as empty);
//! - plaintext bytes past the logical size inside the last block are zero;
//! - a stored block of all zero bytes (or one missing from a short backing
//!   file) is a hole only inside the header's hole range; elsewhere it is
//!   damage, unless a crashed session's write window covers it;
//! - before a block outside the current session's write window is written,
//!   the header widening the window is durable (fdatasync), so a block torn
//!   by a power cut always lies inside a window of the session that wrote
//!   it, and is accepted (old and new sectors, as a raw disk gives) only
//!   when that session is known to have crashed;
//! - space is allocated before any block is written, so a full backing disk
//!   fails the write before a half block or a stale header can land.

mod error;
mod stored;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

pub use error::FileError;
pub(crate) use stored::{read_full_at, stored_is_zero};
pub use stored::{read_header, Stored};

use crate::cache::{BlockCache, FileKey};
use crate::crypto::tag::TAG_BATCH;
use crate::format::offsets::{backing_len, blocks_for, TAG_SIZE};
use crate::format::{
    BlockIndex, BlockRange, FileType, Header, WriteWindow, BLOCK_SIZE, FORMAT_VERSION, HEADER_LEN,
    STORED_BLOCK,
};
use crate::layers::Pipeline;

/// Blocks per request above which the ciphers run on several threads.
const PARALLEL_BLOCKS: usize = 8;
/// Reads of this many blocks or more bypass the block cache.
const CACHE_BYPASS_BLOCKS: usize = 64;
/// A write window reaches at least this many blocks past the blocks being
/// written (64 KiB), and at most this many (64 MiB): appends and growing
/// files widen it, and pay its fdatasync, a logarithmic number of times.
const WINDOW_AHEAD_MIN: u64 = 16;
const WINDOW_AHEAD_MAX: u64 = 16 * 1024;
/// The unit a power cut keeps or loses in a backing file.
const SECTOR: u64 = 512;
/// Blocks read at a time when a crashed session's window is recovered.
const RECOVER_CHUNK: u64 = 256;

/// Largest logical size: keeps every backing offset inside i64.
pub const MAX_SIZE: u64 = (i64::MAX as u64 / STORED_BLOCK as u64) * BLOCK_SIZE as u64;

thread_local! {
    /// Each thread's buffer for stored blocks read from a backing file
    /// (reused: no allocation or zeroing per read).
    static STORED_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The mount sessions files are written and read under.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    /// The session writing now (a random non-zero id per read-write mount);
    /// 0 where nothing writes under a window (offline tools, read-only
    /// mounts, the temp disk, which a crash empties anyway).
    pub current: u64,
    /// Sessions known to have ended in a crash: blocks inside their write
    /// windows that fail their tags were torn, not tampered with.
    pub crashed: HashSet<u64>,
    /// The store's trust id: size attributes carrying it are believed, and
    /// a session that writes (`current` non-zero) puts it in the size
    /// attribute of every file whose size or type it changes. 0: size
    /// attributes are neither believed nor written (offline tools, and a
    /// read-only mount after a crash).
    pub trust: u64,
    /// Size attributes this session could not keep in step with their
    /// headers.
    pub stale: Arc<StaleAttrs>,
}

/// The inodes whose size attribute this session failed to rewrite or
/// remove after changing their header: never believed while it runs, and
/// the session's end gives the store a new trust id, so that no later
/// mount believes them either.
#[derive(Debug, Default)]
pub struct StaleAttrs {
    inos: std::sync::Mutex<HashSet<u64>>,
    poisoned: std::sync::atomic::AtomicBool,
}

impl StaleAttrs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.inos.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the size attribute of backing inode `ino` may be stale.
    pub fn add(&self, ino: u64) {
        self.lock().insert(ino);
    }

    /// Records that some size attribute may be stale, which one unknown:
    /// none is believed from now on.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    /// Whether the size attribute of backing inode `ino` may be stale.
    pub fn contains(&self, ino: u64) -> bool {
        self.poisoned.load(Ordering::Acquire) || self.lock().contains(&ino)
    }

    /// Whether any size attribute may be stale.
    pub fn any(&self) -> bool {
        self.poisoned.load(Ordering::Acquire) || !self.lock().is_empty()
    }
}

/// What every file of one disk (or snapshot) shares.
#[derive(Clone)]
pub struct FileCtx {
    /// The disk's ciphers.
    pub pipeline: Arc<Pipeline>,
    /// The mount's block cache.
    pub cache: Arc<BlockCache>,
    /// The disk's or snapshot's slot, scoping its cache entries.
    pub scope: u32,
    /// The mount session and the crashed sessions.
    pub sessions: Arc<Sessions>,
}

impl FileCtx {
    /// A context with no cache and no session: forensics and offline tools.
    pub fn offline(pipeline: Arc<Pipeline>, crashed: HashSet<u64>) -> Self {
        FileCtx {
            pipeline,
            cache: Arc::new(BlockCache::new(0)),
            scope: 0,
            sessions: Arc::new(Sessions {
                current: 0,
                crashed,
                ..Sessions::default()
            }),
        }
    }
}

struct State {
    header: Option<Header>,
    size: u64,
    /// A crashed session's window, read leniently until recovered.
    crashed: BlockRange,
    /// Backing bytes with no header (an interrupted creation): dropped when
    /// the file is first written.
    stray: u64,
}

/// An open encrypted file.
pub struct EncFile {
    fd: File,
    label: String,
    ctx: FileCtx,
    ino: u64,
    writable: bool,
    size_cell: Arc<AtomicU64>,
    /// The backing file is known to carry no size attribute (a new inode,
    /// or one removed): a header write then needs none rewritten.
    no_attr: std::sync::atomic::AtomicBool,
    /// A header was written or the modification time set since the size
    /// attribute was last written: it is written again when a handle is
    /// released, once for a run of writes.
    attr_due: std::sync::atomic::AtomicBool,
    state: RwLock<State>,
}

impl std::fmt::Debug for EncFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncFile")
            .field("file", &self.label)
            .finish_non_exhaustive()
    }
}

/// The value of a size cell whose size is not known.
pub const SIZE_UNKNOWN: u64 = u64::MAX;

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "a regular file",
        FileType::Symlink => "a symlink target",
    }
}

/// How to open a backing file as an encrypted file.
pub struct OpenSpec {
    /// The backing file, open for reading (and writing when `writable`).
    pub fd: File,
    /// How errors and logs name it (the backing file, never a plain name).
    pub label: String,
    /// Its backing inode number (scopes its cache entries).
    pub ino: u64,
    /// Whether it may be written.
    pub writable: bool,
    /// Where the logical size is mirrored for whoever caches it.
    pub size_cell: Option<Arc<AtomicU64>>,
}

impl EncFile {
    /// Opens the encrypted file of `spec`, verifying its header and that it
    /// holds `expect` (a symlink target is never served as file contents,
    /// nor the reverse). A file without a header opens as empty.
    pub fn open(spec: OpenSpec, ctx: FileCtx, expect: FileType) -> Result<Self, FileError> {
        let stored = read_header(&spec.fd, &spec.label, &ctx.pipeline)?;
        let (header, size, stray) = match stored {
            Stored::Empty => (None, 0, 0),
            Stored::NoHeader { len } => {
                tracing::warn!(file = %spec.label, "backing file has no header (a creation interrupted by a crash, or damage): read as empty");
                (None, 0, len)
            }
            Stored::Header(h, size) => (Some(h), size, 0),
        };
        match &header {
            Some(h) if h.file_type != expect => {
                return Err(FileError::WrongType {
                    file: spec.label,
                    found: type_name(h.file_type),
                    expected: type_name(expect),
                })
            }
            None if expect == FileType::Symlink => {
                return Err(FileError::Header {
                    file: spec.label,
                    what: "a symlink's backing file has no header".into(),
                })
            }
            _ => {}
        }
        let crashed = match &header {
            Some(h)
                if h.window.session != 0
                    && h.window.session != ctx.sessions.current
                    && ctx.sessions.crashed.contains(&h.window.session) =>
            {
                h.window.blocks
            }
            _ => BlockRange::EMPTY,
        };
        Ok(Self::assemble(
            spec,
            ctx,
            State {
                header,
                size,
                crashed,
                stray,
            },
        ))
    }

    /// The open file of `spec` in state `st`, its size mirrored at once.
    fn assemble(spec: OpenSpec, ctx: FileCtx, st: State) -> Self {
        let size_cell = spec
            .size_cell
            .unwrap_or_else(|| Arc::new(AtomicU64::new(SIZE_UNKNOWN)));
        size_cell.store(st.size, Ordering::Release);
        EncFile {
            fd: spec.fd,
            label: spec.label,
            ctx,
            ino: spec.ino,
            writable: spec.writable,
            size_cell,
            no_attr: std::sync::atomic::AtomicBool::new(false),
            attr_due: std::sync::atomic::AtomicBool::new(false),
            state: RwLock::new(st),
        }
    }

    /// Gives the new, empty backing file of `spec` a header for an object
    /// of type `kind` (written now, so that an empty backing file in a
    /// format 3 store is damage) and opens it.
    pub fn create(spec: OpenSpec, ctx: FileCtx, kind: FileType) -> Result<Self, FileError> {
        let mut h = ctx.pipeline.new_header(kind, crate::crypto::random_array());
        let session = ctx.sessions.current;
        if session != 0 {
            // A new file's first window needs no fdatasync: until a header
            // is on the disk the file reads as empty, and every header
            // written from now on carries the window.
            h.window = WriteWindow {
                blocks: BlockRange {
                    first: 0,
                    end: WINDOW_AHEAD_MIN,
                },
                session,
            };
        }
        ctx.pipeline.seal_header(&mut h, 0);
        spec.fd
            .write_all_at(&h.encode(), 0)
            .map_err(|source| FileError::Io {
                file: spec.label.clone(),
                source,
            })?;
        // No size attribute yet: a new inode has none to contradict its
        // header; the first release of a handle after a write writes one.
        let f = Self::assemble(
            spec,
            ctx,
            State {
                header: Some(h),
                size: 0,
                crashed: BlockRange::EMPTY,
                stray: 0,
            },
        );
        f.no_attr.store(true, Ordering::Release);
        Ok(f)
    }

    /// How logs name the backing file.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The backing file descriptor (for metadata calls).
    pub fn fd(&self) -> &File {
        &self.fd
    }

    /// Whether the file may be written.
    pub fn writable(&self) -> bool {
        self.writable
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The logical size.
    pub fn size(&self) -> u64 {
        self.read_state().size
    }

    /// The file id, once the file has a header.
    pub fn file_id(&self) -> Option<[u8; 16]> {
        self.read_state().header.as_ref().map(|h| h.file_id)
    }

    fn io_err(&self) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            file: self.label.clone(),
            source,
        }
    }

    fn key(&self, file_id: &[u8; 16]) -> FileKey {
        FileKey::new(self.ctx.scope, self.ino, file_id)
    }

    fn set_size(&self, st: &mut State, size: u64) {
        st.size = size;
        self.size_cell.store(size, Ordering::Release);
    }

    /// Reads up to `len` bytes at `offset` (short at end of file).
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
        let st = self.read_state();
        let Some(header) = st.header.as_ref() else {
            return Ok(Vec::new());
        };
        if offset >= st.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = st.size.min(offset.saturating_add(len as u64));
        let first = BlockIndex::containing(offset);
        let last = BlockIndex::containing(end - 1);
        let count = (last.0 - first.0 + 1) as usize;
        let mut plain = vec![0u8; count * BLOCK_SIZE];
        self.load_blocks(&st, header, first, &mut plain)?;
        let skip = (offset - first.plain_offset()) as usize;
        plain.truncate(skip + (end - offset) as usize);
        plain.drain(..skip);
        Ok(plain)
    }

    /// Fills `plain` (whole blocks) with the decrypted blocks starting at
    /// `first`.
    fn load_blocks(
        &self,
        st: &State,
        header: &Header,
        first: BlockIndex,
        plain: &mut [u8],
    ) -> Result<(), FileError> {
        let count = plain.len() / BLOCK_SIZE;
        // Large reads are scans: they bypass the block cache (the kernel's
        // page cache serves their re-reads), so they neither pay its lock
        // per block nor evict what small reads made hot. The backing file is
        // always current (writes go through), so skipping the cache is safe.
        let use_cache = count < CACHE_BYPASS_BLOCKS;
        STORED_BUF.with(|cell| {
            let mut own = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let buf = match borrowed.as_deref_mut() {
                Ok(b) => b,
                Err(_) => &mut own,
            };
            if buf.len() < count * STORED_BLOCK {
                buf.resize(count * STORED_BLOCK, 0);
            }
            let n = read_full_at(
                &self.fd,
                &mut buf[..count * STORED_BLOCK],
                first.backing_offset(),
            )
            .map_err(self.io_err())?;
            self.open_blocks(st, header, first, plain, &buf[..n], use_cache)
        })
    }

    /// Decrypts the stored blocks `stored` (read from block `first` on)
    /// into `plain`, through the cache when `use_cache`. Blocks go in
    /// groups (in parallel for large reads) whose tags are hashed side by
    /// side.
    fn open_blocks(
        &self,
        st: &State,
        header: &Header,
        first: BlockIndex,
        plain: &mut [u8],
        stored: &[u8],
        use_cache: bool,
    ) -> Result<(), FileError> {
        let count = plain.len() / BLOCK_SIZE;
        let per = group_len(count);
        let stored_end = first.backing_offset() + stored.len() as u64;
        let group = |(g, outs): (usize, &mut [u8])| {
            let at = first.0 + (g * per) as u64;
            let from = (g * per * STORED_BLOCK).min(stored.len());
            let group = (BlockIndex(at), &stored[from..], stored_end);
            self.open_group(st, header, group, outs, use_cache)
        };
        if count >= PARALLEL_BLOCKS {
            plain
                .par_chunks_mut(per * BLOCK_SIZE)
                .enumerate()
                .try_for_each(group)
        } else {
            plain
                .chunks_mut(per * BLOCK_SIZE)
                .enumerate()
                .try_for_each(group)
        }
    }

    /// [`EncFile::open_blocks`] for at most [`TAG_BATCH`] blocks: cache
    /// hits and holes first, then one batched tag pass over the stored
    /// blocks left, then each is checked and decrypted.
    /// `group` is its first block, its stored blocks (read from there on)
    /// and where the stored data that was read ends in the backing file.
    fn open_group(
        &self,
        st: &State,
        header: &Header,
        (first, stored, stored_end): (BlockIndex, &[u8], u64),
        plain: &mut [u8],
        use_cache: bool,
    ) -> Result<(), FileError> {
        /// Where one block of the group comes from.
        #[derive(Clone, Copy)]
        enum From<'a> {
            /// A hole (or a crashed window's unwritten block): zeros.
            Zeros,
            /// The cache had it in cache form.
            Cache,
            /// This stored block, whose tag is the `usize`th computed.
            Stored(&'a [u8], usize),
        }
        let file_id = &header.file_id;
        let key = self.key(file_id);
        let pipeline = &self.ctx.pipeline;
        debug_assert!(plain.len() <= TAG_BATCH * BLOCK_SIZE);
        let mut from = [From::Zeros; TAG_BATCH];
        // A hole's or a short file's damage found while sorting the blocks
        // is reported once the blocks before it are checked, so that the
        // error names the group's first bad block.
        let mut damage = None;
        let mut to_tag: [(u64, &[u8; BLOCK_SIZE]); TAG_BATCH] = [(0, &[0; BLOCK_SIZE]); TAG_BATCH];
        let mut tagged = 0;
        for (i, (out, f)) in plain
            .chunks_mut(BLOCK_SIZE)
            .zip(from.iter_mut())
            .enumerate()
        {
            let index = first.0 + i as u64;
            let out: &mut [u8; BLOCK_SIZE] = out.try_into().map_err(|_| FileError::TooLarge(0))?;
            if use_cache && self.ctx.cache.get(&key, index, out) {
                *f = From::Cache;
                continue;
            }
            let in_crash = st.crashed.contains(index);
            let at = i * STORED_BLOCK;
            let Some(s) = stored.get(at..at + STORED_BLOCK) else {
                // Past the backing end. In a version 1 file this is always
                // damage; from version 2 on the hole range and a crashed
                // window say where it is a hole.
                let hole = header.holes != BlockRange::ALL && header.holes.contains(index);
                if hole || in_crash {
                    out.fill(0);
                    continue;
                }
                damage = Some((
                    i,
                    FileError::Truncated {
                        file: self.label.clone(),
                        block: index,
                        expected: BlockIndex(index + 1).backing_offset(),
                        actual: stored_end,
                    },
                ));
                break;
            };
            if stored_is_zero(s) {
                if header.holes.contains(index) || in_crash {
                    out.fill(0);
                    continue;
                }
                damage = Some((
                    i,
                    FileError::Zeroed {
                        file: self.label.clone(),
                        block: index,
                    },
                ));
                break;
            }
            let (ct, _) = s
                .split_first_chunk::<BLOCK_SIZE>()
                .ok_or(FileError::TooLarge(0))?;
            to_tag[tagged] = (index, ct);
            *f = From::Stored(s, tagged);
            tagged += 1;
        }
        let mut tags = [[0u8; TAG_SIZE]; TAG_BATCH];
        pipeline.block_tags(file_id, &to_tag[..tagged], &mut tags[..tagged]);
        let sorted = damage.as_ref().map_or(TAG_BATCH, |(i, _)| *i);
        for (i, (out, f)) in plain
            .chunks_mut(BLOCK_SIZE)
            .zip(from)
            .take(sorted)
            .enumerate()
        {
            let index = first.0 + i as u64;
            let out: &mut [u8; BLOCK_SIZE] = out.try_into().map_err(|_| FileError::TooLarge(0))?;
            let mut blank = Vec::new();
            match f {
                From::Zeros => continue,
                From::Cache => {}
                From::Stored(s, t) => {
                    out.copy_from_slice(&s[..BLOCK_SIZE]);
                    if pipeline
                        .decrypt_lower_tagged(file_id, index, out, &s[BLOCK_SIZE..], &tags[t])
                        .is_err()
                    {
                        if !st.crashed.contains(index) {
                            return Err(FileError::BlockTag {
                                file: self.label.clone(),
                                block: index,
                            });
                        }
                        // Torn by the crash of the session that was writing
                        // it: its sectors are old and new ciphertext, which
                        // decrypt to old and new plaintext; sectors never
                        // written read as zeros, as on a raw disk.
                        tracing::warn!(file = %self.label, block = index, "block torn by a crash: read as written");
                        blank = blank_parts(index, out);
                        pipeline.decrypt_lower_passes(file_id, index, out);
                    }
                    if use_cache && blank.is_empty() {
                        self.ctx.cache.put(&key, index, out);
                    }
                }
            }
            pipeline.decrypt_upper(file_id, index, out);
            for r in blank {
                out[r].fill(0);
            }
        }
        match damage {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<(), FileError> {
        if self.writable {
            Ok(())
        } else {
            Err(FileError::ReadOnly(self.label.clone()))
        }
    }

    /// Gives the file a header if it has none (written with the window or
    /// the size that follows), dropping stray bytes an interrupted creation
    /// left.
    fn ensure_header(&self, st: &mut State) -> Result<(), FileError> {
        if st.header.is_some() {
            return Ok(());
        }
        if st.stray > 0 {
            self.fd.set_len(0).map_err(self.io_err())?;
            st.stray = 0;
        }
        let h = self
            .ctx
            .pipeline
            .new_header(FileType::Regular, crate::crypto::random_array());
        st.header = Some(h);
        Ok(())
    }

    fn header_mut<'a>(&self, st: &'a mut State) -> Result<&'a mut Header, FileError> {
        st.header.as_mut().ok_or_else(|| FileError::Header {
            file: self.label.clone(),
            what: "no header".into(),
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), FileError> {
        self.fd.write_all_at(buf, offset).map_err(self.io_err())
    }

    /// Seals `size` into the header and writes it, then the size attribute.
    fn store_header(&self, st: &mut State, size: u64) -> Result<(), FileError> {
        let h = self.header_mut(st)?;
        self.ctx.pipeline.seal_header(h, size);
        let bytes = h.encode();
        self.write_all_at(&bytes, 0)?;
        self.set_size(st, size);
        self.store_attr();
        Ok(())
    }

    /// After a change of the backing file's modification time, to which
    /// the size attribute is bound: the attribute no longer holds, and is
    /// sealed again when a handle of the file is released.
    pub fn refresh_size_attr(&self) {
        self.attr_due.store(true, Ordering::Release);
    }

    /// After a header write: a size attribute the backing file may carry is
    /// removed (timestamps are coarse: left in place it could carry the
    /// modification time the header write left), and a new one is written
    /// when a handle of the file is released, once for a run of writes.
    fn store_attr(&self) {
        let sessions = &self.ctx.sessions;
        if sessions.current == 0 || sessions.trust == 0 {
            return;
        }
        self.attr_due.store(true, Ordering::Release);
        if self.no_attr.load(Ordering::Acquire) {
            return;
        }
        let removed = rustix::fs::fremovexattr(&self.fd, crate::format::SIZE_ATTR_NAME);
        self.attr_failed(removed.err());
    }

    /// Writes the size attribute that a header write or a time change left
    /// due (a handle of the file is being released).
    pub fn settle_size_attr(&self) {
        if self.attr_due.load(Ordering::Acquire) {
            self.write_attr(&self.read_state());
        }
    }

    /// Seals the size attribute for the header in `st` and the backing
    /// inode as it stands now (a session that writes, with a trust id,
    /// only). The header is the truth: an attribute that cannot be written
    /// is removed, and one that cannot be removed either is recorded as
    /// stale (never believed again: the session's end changes the trust
    /// id).
    fn write_attr(&self, st: &State) {
        let sessions = &self.ctx.sessions;
        if sessions.current == 0 || sessions.trust == 0 {
            return;
        }
        let Some(h) = st.header.as_ref() else {
            return;
        };
        let name = crate::format::SIZE_ATTR_NAME;
        let written = rustix::fs::fstat(&self.fd).and_then(|now| {
            let bound = crate::format::size_attr::Binding::of(&now);
            let a = self
                .ctx
                .pipeline
                .seal_size_attr(h.file_type, st.size, &bound, sessions.trust);
            rustix::fs::fsetxattr(&self.fd, name, &a.encode(), rustix::fs::XattrFlags::empty())
        });
        match written {
            Ok(()) => {
                self.no_attr.store(false, Ordering::Release);
                self.attr_due.store(false, Ordering::Release);
            }
            Err(e) => {
                self.attr_due.store(false, Ordering::Release);
                let unsupported =
                    e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP;
                if unsupported {
                    self.attr_failed(Some(e));
                } else {
                    tracing::warn!(file = %self.label, "size attribute not written ({e}): removed, the header answers");
                    self.attr_failed(rustix::fs::fremovexattr(&self.fd, name).err());
                }
            }
        }
    }

    /// After the size attribute was removed (`removed` the error, if any):
    /// gone (or never kept by the backing filesystem), nothing of it can be
    /// believed; still there, it is recorded as stale.
    fn attr_failed(&self, removed: Option<rustix::io::Errno>) {
        let gone = match removed {
            None => true,
            Some(e) => {
                e.raw_os_error() == crate::platform::errno::ENOATTR
                    || e == rustix::io::Errno::NOTSUP
                    || e == rustix::io::Errno::OPNOTSUPP
            }
        };
        if gone {
            self.no_attr.store(true, Ordering::Release);
            return;
        }
        // The attribute left in place may carry the modification time a
        // header write left (timestamps are coarse).
        match rustix::fs::fstat(&self.fd) {
            Ok(now) => self.ctx.sessions.stale.add(now.st_ino),
            Err(_) => self.ctx.sessions.stale.poison(),
        }
        tracing::error!(file = %self.label, "size attribute could not be removed: not believed from now on");
    }

    /// Whether the blocks `r` are all inside the current session's write
    /// window (durable, since it is made durable before it is used).
    fn in_window(&self, st: &State, r: BlockRange) -> bool {
        let session = self.ctx.sessions.current;
        session != 0
            && st.header.as_ref().is_some_and(|h| {
                h.version >= 2 && h.window.session == session && h.window.blocks.covers(r)
            })
    }

    /// Makes sure the blocks `touched` are inside this session's durable
    /// write window, widening it (header, then fdatasync) if not. A crashed
    /// session's torn blocks are made whole first, since its window is
    /// about to be replaced.
    fn open_window(&self, st: &mut State, touched: BlockRange) -> Result<(), FileError> {
        let session = self.ctx.sessions.current;
        if session == 0 || touched.is_empty() {
            return Ok(());
        }
        if self.in_window(st, touched) {
            return Ok(());
        }
        if !st.crashed.is_empty() {
            self.recover(st)?;
        }
        let size = st.size;
        let h = self.header_mut(st)?;
        let base = if h.window.session == session {
            h.window.blocks
        } else {
            BlockRange::EMPTY
        };
        let mut want = base.union(touched);
        let ahead = (want.end - want.first).clamp(WINDOW_AHEAD_MIN, WINDOW_AHEAD_MAX);
        want.end = want.end.saturating_add(ahead);
        h.version = FORMAT_VERSION;
        h.window = WriteWindow {
            blocks: want,
            session,
        };
        self.store_header(st, size)?;
        crate::platform::sync_data(&self.fd).map_err(self.io_err())
    }

    /// Makes the blocks of a crashed session's window whole: a torn block
    /// gets the tag of what it holds (its old and new sectors), a block the
    /// crash left unwritten or missing becomes sealed zeros unless it is a
    /// recorded hole. Then the window is no longer needed.
    fn recover(&self, st: &mut State) -> Result<(), FileError> {
        let Some(header) = st.header.clone() else {
            st.crashed = BlockRange::EMPTY;
            return Ok(());
        };
        let range = st.crashed.clip(blocks_for(st.size));
        let file_id = header.file_id;
        let pipeline = &self.ctx.pipeline;
        let mut mended = 0u64;
        let mut at = range.first;
        while at < range.end {
            let n = (range.end - at).min(RECOVER_CHUNK);
            let mut buf = vec![0u8; n as usize * STORED_BLOCK];
            let got = read_full_at(&self.fd, &mut buf, BlockIndex(at).backing_offset())
                .map_err(self.io_err())?;
            for i in 0..n {
                let index = at + i;
                let off = i as usize * STORED_BLOCK;
                let whole = off + STORED_BLOCK <= got;
                let s = &mut buf[off..off + STORED_BLOCK];
                let blank = if !whole {
                    // Missing: a hole only inside a version 2 hole range.
                    Some(header.holes != BlockRange::ALL && header.holes.contains(index))
                } else if s.iter().all(|&b| b == 0) {
                    Some(header.holes.contains(index))
                } else {
                    None
                };
                if let Some(hole) = blank {
                    if !hole {
                        let mut zero = [0u8; BLOCK_SIZE];
                        pipeline.encrypt_upper(&file_id, index, &mut zero);
                        let tag = pipeline.encrypt_lower(&file_id, index, &mut zero);
                        s[..BLOCK_SIZE].copy_from_slice(&zero);
                        s[BLOCK_SIZE..].copy_from_slice(&tag);
                        self.write_all_at(s, BlockIndex(index).backing_offset())?;
                        mended += 1;
                    }
                    continue;
                }
                let (c, t) = s.split_at(BLOCK_SIZE);
                let want = pipeline.block_tag(&file_id, index, c);
                if !crate::crypto::tag::ct_eq(&want, t) {
                    let blank = blank_parts(index, c);
                    if blank.is_empty() {
                        self.write_all_at(
                            &want,
                            BlockIndex(index).backing_offset() + BLOCK_SIZE as u64,
                        )?;
                    } else {
                        // Sealed as it reads: sectors never written are
                        // zeros, not what their zero ciphertext decrypts to.
                        let mut block = [0u8; BLOCK_SIZE];
                        block.copy_from_slice(c);
                        pipeline.decrypt_lower_passes(&file_id, index, &mut block);
                        pipeline.decrypt_upper(&file_id, index, &mut block);
                        for r in blank {
                            block[r].fill(0);
                        }
                        pipeline.encrypt_upper(&file_id, index, &mut block);
                        let tag = pipeline.encrypt_lower(&file_id, index, &mut block);
                        s[..BLOCK_SIZE].copy_from_slice(&block);
                        s[BLOCK_SIZE..].copy_from_slice(&tag);
                        self.write_all_at(s, BlockIndex(index).backing_offset())?;
                    }
                    mended += 1;
                }
            }
            at += n;
        }
        if mended > 0 {
            tracing::warn!(file = %self.label, blocks = mended, "blocks torn or left unwritten by a crash were kept as found");
            self.ctx
                .cache
                .invalidate_from(&self.key(&file_id), range.first);
        }
        crate::platform::sync_data(&self.fd).map_err(self.io_err())?;
        st.crashed = BlockRange::EMPTY;
        Ok(())
    }

    /// Makes the blocks of a crashed session's window whole now, as the
    /// first write after the crash would, and drops the window from the
    /// header (its blocks no longer need leniency): `verify --repair`,
    /// offline. False when the file has no crashed window.
    pub fn recover_crashed(&self) -> Result<bool, FileError> {
        self.check_writable()?;
        let mut st = self.write_state();
        if st.crashed.is_empty() {
            return Ok(false);
        }
        self.recover(&mut st)?;
        let size = st.size;
        self.header_mut(&mut st)?.window = WriteWindow::default();
        self.store_header(&mut st, size)?;
        crate::platform::sync_data(&self.fd).map_err(self.io_err())?;
        Ok(true)
    }

    /// Reserves backing space for `[from, to)` so that later writes there
    /// cannot fail for lack of space (see [`crate::platform::preallocate`]
    /// for what each system reserves). A backing filesystem that cannot
    /// reserve is written and hoped for.
    fn reserve(&self, from: u64, to: u64) -> Result<(), FileError> {
        match crate::platform::preallocate(&self.fd, from, to, true) {
            Ok(_) => Ok(()),
            Err(source) => Err(FileError::Io {
                file: self.label.clone(),
                source,
            }),
        }
    }

    /// Encrypts whole blocks of `plain` starting at `first` into stored form.
    /// The result starts with `prefix` zero bytes (room for a header).
    fn seal_blocks(
        &self,
        file_id: &[u8; 16],
        first: BlockIndex,
        plain: &[u8],
        prefix: usize,
    ) -> Result<Vec<u8>, FileError> {
        let count = plain.len() / BLOCK_SIZE;
        let mut out = vec![0u8; prefix + count * STORED_BLOCK];
        let stored = &mut out[prefix..];
        let key = self.key(file_id);
        let per = group_len(count);
        let group = |(g, (plain, stored)): (usize, (&[u8], &mut [u8]))| -> Result<(), FileError> {
            let at = first.0 + (g * per) as u64;
            let pipeline = &self.ctx.pipeline;
            for (i, (p, s)) in plain
                .chunks(BLOCK_SIZE)
                .zip(stored.chunks_mut(STORED_BLOCK))
                .enumerate()
            {
                let index = at + i as u64;
                // Encrypt in place in the output buffer: one copy per block.
                // Every chunk is a whole stored block (the buffer is sized
                // so); a short one fails the write rather than be skipped.
                let (block, _) = s
                    .split_first_chunk_mut::<BLOCK_SIZE>()
                    .ok_or(FileError::TooLarge(index))?;
                block.copy_from_slice(p);
                pipeline.encrypt_upper(file_id, index, block);
                // Written blocks refresh the cache but do not fill it: a
                // large write would only evict what reads made hot.
                self.ctx.cache.refresh(&key, index, block);
                pipeline.encrypt_lower_passes(file_id, index, block);
            }
            let mut blocks: [(u64, &[u8; BLOCK_SIZE]); TAG_BATCH] =
                [(0, &[0; BLOCK_SIZE]); TAG_BATCH];
            let mut n = 0;
            for (i, s) in stored.chunks(STORED_BLOCK).enumerate() {
                // Every chunk is whole (as above), so the tags below land
                // by position on the blocks they belong to.
                let (block, _) = s
                    .split_first_chunk::<BLOCK_SIZE>()
                    .ok_or(FileError::TooLarge(at + i as u64))?;
                blocks[n] = (at + i as u64, block);
                n += 1;
            }
            let mut tags = [[0u8; TAG_SIZE]; TAG_BATCH];
            pipeline.block_tags(file_id, &blocks[..n], &mut tags[..n]);
            for (s, tag) in stored.chunks_mut(STORED_BLOCK).zip(&tags[..n]) {
                s[BLOCK_SIZE..BLOCK_SIZE + TAG_SIZE].copy_from_slice(tag);
            }
            Ok(())
        };
        if count >= PARALLEL_BLOCKS {
            plain
                .par_chunks(per * BLOCK_SIZE)
                .zip(stored.par_chunks_mut(per * STORED_BLOCK))
                .enumerate()
                .try_for_each(group)?;
        } else {
            plain
                .chunks(per * BLOCK_SIZE)
                .zip(stored.chunks_mut(per * STORED_BLOCK))
                .enumerate()
                .try_for_each(group)?;
        }
        Ok(out)
    }

    /// Records the blocks `gap` (between the old end and new data) as holes.
    fn add_holes(&self, st: &mut State, gap: BlockRange) -> Result<bool, FileError> {
        if gap.is_empty() {
            return Ok(false);
        }
        let h = self.header_mut(st)?;
        if h.holes.covers(gap) {
            return Ok(false);
        }
        h.holes = h.holes.union(gap);
        Ok(true)
    }

    /// Writes `data` at `offset`, extending the file as needed.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize, FileError> {
        if data.is_empty() {
            return Ok(0);
        }
        self.check_writable()?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_SIZE)
            .ok_or(FileError::TooLarge(offset))?;
        let mut st = self.write_state();
        self.ensure_header(&mut st)?;
        let first = BlockIndex::containing(offset);
        let last = BlockIndex::containing(end - 1);
        let count = (last.0 - first.0 + 1) as usize;
        self.open_window(
            &mut st,
            BlockRange {
                first: first.0,
                end: last.0 + 1,
            },
        )?;
        let header = st.header.clone().ok_or(FileError::TooLarge(0))?;
        let file_id = header.file_id;
        let old_size = st.size;
        let old_blocks = blocks_for(old_size);
        // Whole-block writes (the common large case) are sealed straight
        // from the caller's buffer; others are assembled with the old
        // contents of their partial head and tail blocks.
        let aligned =
            offset.is_multiple_of(BLOCK_SIZE as u64) && data.len().is_multiple_of(BLOCK_SIZE);
        let assembled;
        let plain: &[u8] = if aligned {
            data
        } else {
            let mut buf = vec![0u8; count * BLOCK_SIZE];
            // Partial head and tail blocks keep the old data the write does
            // not cover. An append that starts at its block's start covers
            // all of it (past the old end there is none): no read then.
            let last_end = (last.0 + 1) * BLOCK_SIZE as u64;
            let tail_kept = end < last_end.min(old_size);
            let head_partial =
                !offset.is_multiple_of(BLOCK_SIZE as u64) || (count == 1 && tail_kept);
            if head_partial && first.0 < old_blocks {
                self.load_blocks(&st, &header, first, &mut buf[..BLOCK_SIZE])?;
            }
            if count > 1 && tail_kept && last.0 < old_blocks {
                let at = (count - 1) * BLOCK_SIZE;
                self.load_blocks(&st, &header, last, &mut buf[at..])?;
            }
            let skip = (offset - first.plain_offset()) as usize;
            buf[skip..skip + data.len()].copy_from_slice(data);
            assembled = buf;
            &assembled
        };
        let new_size = old_size.max(end);
        let new_holes = self.add_holes(
            &mut st,
            BlockRange {
                first: old_blocks,
                end: first.0,
            },
        )?;
        let header_changes = new_size != old_size || new_holes;
        if first.0 == 0 && header_changes {
            // A write that starts in block 0 carries the header in the same
            // pwrite (they are contiguous): one write instead of two.
            let mut out = self.seal_blocks(&file_id, first, plain, HEADER_LEN)?;
            let h = self.header_mut(&mut st)?;
            self.ctx.pipeline.seal_header(h, new_size);
            out[..HEADER_LEN].copy_from_slice(&h.encode());
            self.reserve(backing_len(old_size), out.len() as u64)?;
            self.write_all_at(&out, 0)?;
            self.set_size(&mut st, new_size);
            self.store_attr();
            return Ok(data.len());
        }
        let stored = self.seal_blocks(&file_id, first, plain, 0)?;
        let at = first.backing_offset();
        self.reserve(at.max(backing_len(old_size)), at + stored.len() as u64)?;
        self.write_all_at(&stored, at)?;
        if header_changes {
            self.store_header(&mut st, new_size)?;
        }
        Ok(data.len())
    }

    /// Sets the logical size: growing adds holes, shrinking drops blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FileError> {
        if size > MAX_SIZE {
            return Err(FileError::TooLarge(size));
        }
        self.check_writable()?;
        let mut st = self.write_state();
        let old = st.size;
        if size == old {
            return Ok(());
        }
        self.ensure_header(&mut st)?;
        let header = st.header.clone().ok_or(FileError::TooLarge(0))?;
        let file_id = header.file_id;
        if size < old && !size.is_multiple_of(BLOCK_SIZE as u64) {
            // Zero the tail of the new last block so that growing again
            // later reads zeros there.
            let last = BlockIndex::containing(size);
            self.open_window(
                &mut st,
                BlockRange {
                    first: last.0,
                    end: last.0 + 1,
                },
            )?;
            let mut plain = vec![0u8; BLOCK_SIZE];
            self.load_blocks(&st, &header, last, &mut plain)?;
            plain[(size % BLOCK_SIZE as u64) as usize..].fill(0);
            let stored = self.seal_blocks(&file_id, last, &plain, 0)?;
            self.write_all_at(&stored, last.backing_offset())?;
        }
        // The header never claims blocks the backing file lacks outside the
        // hole range: shrinking seals the new size before cutting, growing
        // extends first (where the backing filesystem's size limit answers
        // EFBIG before anything changed).
        if size < old {
            self.ctx
                .cache
                .invalidate_from(&self.key(&file_id), blocks_for(size));
            let h = self.header_mut(&mut st)?;
            h.holes = h.holes.clip(blocks_for(size));
            self.store_header(&mut st, size)?;
            // A power cut may keep the cut and lose the header: blocks the
            // old size claims would then be missing. Inside this session's
            // window they read as zeros after a crash; anywhere else they
            // would be damage, so the new size is made durable first.
            let cut = BlockRange {
                first: blocks_for(size),
                end: blocks_for(old),
            };
            if self.ctx.sessions.current != 0 && !self.in_window(&st, cut) {
                self.fd.sync_data().map_err(self.io_err())?;
            }
            self.fd.set_len(backing_len(size)).map_err(self.io_err())
        } else {
            self.fd.set_len(backing_len(size)).map_err(self.io_err())?;
            self.add_holes(
                &mut st,
                BlockRange {
                    first: blocks_for(old),
                    end: blocks_for(size),
                },
            )?;
            self.store_header(&mut st, size)
        }
    }

    /// Allocates backing space for `[offset, offset + len)` (posix_fallocate):
    /// later writes there cannot fail for lack of space. Unless
    /// `keep_size`, the file grows to cover the range, reading zeros there.
    pub fn allocate(&self, offset: u64, len: u64, keep_size: bool) -> Result<(), FileError> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= MAX_SIZE)
            .ok_or(FileError::TooLarge(offset))?;
        self.check_writable()?;
        if len == 0 {
            return Err(FileError::Io {
                file: self.label.clone(),
                source: std::io::Error::from_raw_os_error(crate::platform::errno::EINVAL),
            });
        }
        let mut st = self.write_state();
        self.ensure_header(&mut st)?;
        let from = BlockIndex::containing(offset).backing_offset();
        let to = backing_len(end);
        match crate::platform::preallocate(&self.fd, from, to, keep_size) {
            Ok(crate::platform::Allocated::Reserved) => {}
            Ok(crate::platform::Allocated::Unsupported) => {
                // No preallocation here: at least make the size right, so
                // the call keeps its meaning (posix_fallocate then writes).
                if !keep_size && to > self.fd.metadata().map_err(self.io_err())?.len() {
                    self.fd.set_len(to).map_err(self.io_err())?;
                }
            }
            Err(source) => {
                return Err(FileError::Io {
                    file: self.label.clone(),
                    source,
                })
            }
        }
        let old = st.size;
        if keep_size || end <= old {
            return Ok(());
        }
        self.add_holes(
            &mut st,
            BlockRange {
                first: blocks_for(old),
                end: blocks_for(end),
            },
        )?;
        self.store_header(&mut st, end)
    }

    /// The file id, writing a header first if the file has none (a file
    /// never written that gets an xattr).
    pub fn ensure_id(&self) -> Result<[u8; 16], FileError> {
        self.check_writable()?;
        let mut st = self.write_state();
        if st.header.is_none() {
            self.ensure_header(&mut st)?;
            let size = st.size;
            self.store_header(&mut st, size)?;
        }
        Ok(self.header_mut(&mut st)?.file_id)
    }

    /// Makes everything written so far durable in the backing store.
    pub fn sync(&self, datasync: bool) -> Result<(), FileError> {
        let _st = self.read_state();
        if datasync {
            crate::platform::sync_data(&self.fd)
        } else {
            crate::platform::sync_all(&self.fd)
        }
        .map_err(self.io_err())
    }
}

/// How many blocks of a `count`-block request go to one group of
/// [`EncFile::open_blocks`] or [`EncFile::seal_blocks`]: up to a tag
/// batch, fewer when that would leave a thread of the pool idle.
fn group_len(count: usize) -> usize {
    if count >= PARALLEL_BLOCKS {
        count
            .div_ceil(rayon::current_num_threads())
            .clamp(1, TAG_BATCH)
    } else {
        TAG_BATCH
    }
}

/// The parts of stored block `index` (its ciphertext `c`) that lie in
/// backing sectors holding only zeros there: sectors a power cut left
/// unwritten (real ciphertext is never 16 zero bytes in a row, and every
/// part is a multiple of 16 bytes, since blocks start 16-byte aligned).
fn blank_parts(index: u64, c: &[u8]) -> Vec<std::ops::Range<usize>> {
    let base = BlockIndex(index).backing_offset();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < c.len() {
        let next = ((base + at as u64) / SECTOR + 1) * SECTOR;
        let end = usize::try_from(next - base).map_or(c.len(), |e| e.min(c.len()));
        if c[at..end].iter().all(|&b| b == 0) {
            out.push(at..end);
        }
        at = end;
    }
    out
}

/// Creates the backing contents of a new symlink in the empty backing file
/// of `spec`: a header of type symlink and the target as its data.
pub fn write_symlink(spec: OpenSpec, ctx: FileCtx, target: &[u8]) -> Result<EncFile, FileError> {
    let f = EncFile::create(spec, ctx, FileType::Symlink)?;
    f.write(0, target)?;
    Ok(f)
}

/// Reads a symlink target from its encrypted file.
pub fn read_symlink(f: &EncFile) -> Result<Vec<u8>, FileError> {
    f.read(0, usize::try_from(f.size()).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests;
