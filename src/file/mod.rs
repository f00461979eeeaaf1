//! One encrypted file: its header, the mapping of byte ranges to blocks,
//! read-modify-write of partial blocks, holes, truncation and durability.
//!
//! Invariants kept by every operation:
//! - the backing file is empty (a file never written) or a valid header
//!   followed by exactly `blocks_for(size)` stored blocks;
//! - plaintext bytes past the logical size inside the last block are zero;
//! - a stored block of all zero bytes is a hole and reads as zeros;
//! - space is allocated before any block is written, so a full backing disk
//!   fails the write before a half block or a stale header can land.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

use crate::cache::BlockCache;
use crate::format::offsets::{backing_len, blocks_for, TAG_SIZE};
use crate::format::{BlockIndex, FileType, Header, BLOCK_SIZE, HEADER_LEN, STORED_BLOCK};
use crate::layers::Pipeline;

/// Blocks per request above which the ciphers run on several threads.
const PARALLEL_BLOCKS: usize = 8;
/// Reads of this many blocks or more bypass the block cache.
const CACHE_BYPASS_BLOCKS: usize = 64;

thread_local! {
    /// Each thread's buffer for stored blocks read from a backing file
    /// (reused: no allocation or zeroing per read).
    static STORED_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Errors of one encrypted file, each with its errno.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O error from the backing file.
    #[error("{path}: {source}")]
    Io {
        /// Backing file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The header does not decode or fails its tag.
    #[error("{path}: corrupt header: {what}")]
    Header {
        /// Backing file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// A block failed its tag.
    #[error("{path}: block {block} failed its integrity tag")]
    BlockTag {
        /// Backing file.
        path: PathBuf,
        /// Block index.
        block: u64,
    },
    /// The backing file is shorter than its header says.
    #[error("{path}: truncated: {actual} bytes, a block needs {expected}")]
    Truncated {
        /// Backing file.
        path: PathBuf,
        /// Length the header implies.
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// A size beyond what the format can address.
    #[error("file size {0} is too large")]
    TooLarge(u64),
}

impl FileError {
    /// The errno to answer the kernel with.
    pub fn errno(&self) -> i32 {
        match self {
            FileError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FileError::Header { .. } | FileError::BlockTag { .. } | FileError::Truncated { .. } => {
                libc::EIO
            }
            FileError::TooLarge(_) => libc::EFBIG,
        }
    }
}

/// Largest logical size: keeps every backing offset inside i64.
pub const MAX_SIZE: u64 = (i64::MAX as u64 / STORED_BLOCK as u64) * BLOCK_SIZE as u64;

struct State {
    header: Option<Header>,
    size: u64,
}

/// An open encrypted file.
pub struct EncFile {
    fd: File,
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    cache: Arc<BlockCache>,
    state: RwLock<State>,
}

impl std::fmt::Debug for EncFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and verifies the header of an open backing file. `Ok(None)` for an
/// empty backing file (a file never written).
pub fn read_header(
    fd: &File,
    path: &Path,
    pipeline: &Pipeline,
) -> Result<Option<(Header, u64)>, FileError> {
    let len = fd.metadata().map_err(io_err(path))?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = read_full_at(fd, &mut buf, 0).map_err(io_err(path))?;
    let header = Header::decode(&buf[..n]).map_err(|e| FileError::Header {
        path: path.to_path_buf(),
        what: e.to_string(),
    })?;
    let size = pipeline
        .open_header(&header)
        .map_err(|e| FileError::Header {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
    if size > MAX_SIZE {
        return Err(FileError::Header {
            path: path.to_path_buf(),
            what: format!("impossible size {size}"),
        });
    }
    // A backing file shorter than its size is not refused here: its intact
    // blocks stay readable and the missing ones fail when read.
    Ok(Some((header, size)))
}

fn read_full_at(fd: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match fd.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl EncFile {
    /// Opens the encrypted file in `fd`, verifying its header.
    pub fn open(
        fd: File,
        path: PathBuf,
        pipeline: Arc<Pipeline>,
        cache: Arc<BlockCache>,
    ) -> Result<Self, FileError> {
        let (header, size) = match read_header(&fd, &path, &pipeline)? {
            Some((h, s)) => (Some(h), s),
            None => (None, 0),
        };
        Ok(EncFile {
            fd,
            path,
            pipeline,
            cache,
            state: RwLock::new(State { header, size }),
        })
    }

    /// The backing path this file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file descriptor (for metadata calls).
    pub fn fd(&self) -> &File {
        &self.fd
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
        self.load_blocks(&header.file_id, first, &mut plain)?;
        let skip = (offset - first.plain_offset()) as usize;
        plain.truncate(skip + (end - offset) as usize);
        plain.drain(..skip);
        Ok(plain)
    }

    /// Fills `plain` (whole blocks) with the decrypted blocks starting at
    /// `first`. Blocks past the backing end or stored as all zeros are holes.
    fn load_blocks(
        &self,
        file_id: &[u8; 16],
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
            .map_err(io_err(&self.path))?;
            self.open_blocks(file_id, first, plain, &buf[..n], use_cache)
        })
    }

    /// Decrypts the stored blocks `stored` (read from block `first` on)
    /// into `plain`, through the cache when `use_cache`.
    fn open_blocks(
        &self,
        file_id: &[u8; 16],
        first: BlockIndex,
        plain: &mut [u8],
        stored: &[u8],
        use_cache: bool,
    ) -> Result<(), FileError> {
        let count = plain.len() / BLOCK_SIZE;
        let work = |(i, out): (usize, &mut [u8])| -> Result<(), FileError> {
            let index = first.0 + i as u64;
            let out: &mut [u8; BLOCK_SIZE] = out.try_into().map_err(|_| FileError::TooLarge(0))?;
            if !(use_cache && self.cache.get(file_id, index, out)) {
                let at = i * STORED_BLOCK;
                // Callers only load blocks inside the logical size, which the
                // backing file always covers: a missing block is damage.
                let Some(s) = stored.get(at..at + STORED_BLOCK) else {
                    return Err(FileError::Truncated {
                        path: self.path.clone(),
                        expected: (first.0 + i as u64 + 1) * STORED_BLOCK as u64
                            + HEADER_LEN as u64,
                        actual: (first.backing_offset() as usize + stored.len()) as u64,
                    });
                };
                if s.iter().all(|&b| b == 0) {
                    out.fill(0);
                    return Ok(());
                }
                out.copy_from_slice(&s[..BLOCK_SIZE]);
                if self
                    .pipeline
                    .decrypt_lower(file_id, index, out, &s[BLOCK_SIZE..])
                    .is_err()
                {
                    return Err(FileError::BlockTag {
                        path: self.path.clone(),
                        block: index,
                    });
                }
                if use_cache {
                    self.cache.put(file_id, index, out);
                }
            }
            self.pipeline.decrypt_upper(file_id, index, out);
            Ok(())
        };
        if count >= PARALLEL_BLOCKS {
            plain
                .par_chunks_mut(BLOCK_SIZE)
                .enumerate()
                .try_for_each(work)
        } else {
            plain.chunks_mut(BLOCK_SIZE).enumerate().try_for_each(work)
        }
    }

    /// Gives the file a header if it has none; `persist` writes it at once
    /// (otherwise the caller writes it together with block 0).
    fn ensure_header<'a>(&self, st: &'a mut State, persist: bool) -> Result<&'a Header, FileError> {
        if st.header.is_none() {
            let h = self
                .pipeline
                .new_header(FileType::Regular, crate::crypto::random_array());
            if persist {
                self.write_all_at(&h.encode(), 0)?;
            }
            st.header = Some(h);
        }
        st.header.as_ref().ok_or(FileError::TooLarge(0))
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), FileError> {
        self.fd
            .write_all_at(buf, offset)
            .map_err(io_err(&self.path))
    }

    fn store_size(&self, st: &mut State, size: u64) -> Result<(), FileError> {
        if let Some(h) = st.header.as_mut() {
            self.pipeline.seal_header(h, size);
            let bytes = h.encode();
            self.write_all_at(&bytes, 0)?;
        }
        st.size = size;
        Ok(())
    }

    /// Reserves backing space for `[from, to)` so that later writes there
    /// cannot fail for lack of space.
    fn allocate(&self, from: u64, to: u64) -> Result<(), FileError> {
        if to <= from {
            return Ok(());
        }
        match rustix::fs::fallocate(
            &self.fd,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            from,
            to - from,
        ) {
            Ok(()) => Ok(()),
            // Filesystems without fallocate: fall back to writing and hoping.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
            Err(e) => Err(FileError::Io {
                path: self.path.clone(),
                source: e.into(),
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
    ) -> Vec<u8> {
        let count = plain.len() / BLOCK_SIZE;
        let mut out = vec![0u8; prefix + count * STORED_BLOCK];
        let stored = &mut out[prefix..];
        let work = |(i, (p, s)): (usize, (&[u8], &mut [u8]))| {
            let index = first.0 + i as u64;
            // Encrypt in place in the output buffer: one copy per block.
            let Some((block, rest)) = s.split_first_chunk_mut::<BLOCK_SIZE>() else {
                return;
            };
            block.copy_from_slice(p);
            self.pipeline.encrypt_upper(file_id, index, block);
            // Written blocks refresh the cache but do not fill it: a large
            // write would only evict what reads made hot.
            self.cache.refresh(file_id, index, block);
            let tag = self.pipeline.encrypt_lower(file_id, index, block);
            rest[..TAG_SIZE].copy_from_slice(&tag);
        };
        if count >= PARALLEL_BLOCKS {
            plain
                .par_chunks(BLOCK_SIZE)
                .zip(stored.par_chunks_mut(STORED_BLOCK))
                .enumerate()
                .for_each(work);
        } else {
            plain
                .chunks(BLOCK_SIZE)
                .zip(stored.chunks_mut(STORED_BLOCK))
                .enumerate()
                .for_each(work);
        }
        out
    }

    /// Writes `data` at `offset`, extending the file as needed.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize, FileError> {
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_SIZE)
            .ok_or(FileError::TooLarge(offset))?;
        let mut st = self.write_state();
        let first = BlockIndex::containing(offset);
        // A write that starts in block 0 carries the header in the same
        // pwrite (they are contiguous): one write instead of two, and a new
        // file never shows a header without its first block.
        let fresh = st.header.is_none();
        let joined = first.0 == 0;
        let file_id = self.ensure_header(&mut st, !joined)?.file_id;
        let old_size = st.size;
        let last = BlockIndex::containing(end - 1);
        let count = (last.0 - first.0 + 1) as usize;
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
            let old_blocks = blocks_for(old_size);
            // Partial head and tail blocks keep the old data the write does
            // not cover. An append that starts at its block's start covers
            // all of it (past the old end there is none): no read then.
            let last_end = (last.0 + 1) * BLOCK_SIZE as u64;
            let tail_kept = end < last_end.min(old_size);
            let head_partial =
                !offset.is_multiple_of(BLOCK_SIZE as u64) || (count == 1 && tail_kept);
            if head_partial && first.0 < old_blocks {
                self.load_blocks(&file_id, first, &mut buf[..BLOCK_SIZE])?;
            }
            if count > 1 && tail_kept && last.0 < old_blocks {
                let at = (count - 1) * BLOCK_SIZE;
                self.load_blocks(&file_id, last, &mut buf[at..])?;
            }
            let skip = (offset - first.plain_offset()) as usize;
            buf[skip..skip + data.len()].copy_from_slice(data);
            assembled = buf;
            &assembled
        };
        let new_size = old_size.max(end);
        if joined && (fresh || new_size != old_size) {
            let mut out = self.seal_blocks(&file_id, first, plain, HEADER_LEN);
            let h = st.header.as_mut().ok_or(FileError::TooLarge(0))?;
            self.pipeline.seal_header(h, new_size);
            out[..HEADER_LEN].copy_from_slice(&h.encode());
            let from = if fresh { 0 } else { backing_len(old_size) };
            self.allocate(from, out.len() as u64)?;
            self.write_all_at(&out, 0)?;
            st.size = new_size;
            return Ok(data.len());
        }
        let stored = self.seal_blocks(&file_id, first, plain, 0);
        let at = first.backing_offset();
        self.allocate(at.max(backing_len(old_size)), at + stored.len() as u64)?;
        self.write_all_at(&stored, at)?;
        if new_size != old_size {
            self.store_size(&mut st, new_size)?;
        }
        Ok(data.len())
    }

    /// Sets the logical size, zero-filling when growing (as holes).
    pub fn truncate(&self, size: u64) -> Result<(), FileError> {
        if size > MAX_SIZE {
            return Err(FileError::TooLarge(size));
        }
        let mut st = self.write_state();
        let old = st.size;
        if size == old {
            return Ok(());
        }
        let file_id = self.ensure_header(&mut st, true)?.file_id;
        if size < old && !size.is_multiple_of(BLOCK_SIZE as u64) {
            // Zero the tail of the new last block so that growing again
            // later reads zeros there.
            let last = BlockIndex::containing(size);
            let mut plain = vec![0u8; BLOCK_SIZE];
            self.load_blocks(&file_id, last, &mut plain)?;
            plain[(size % BLOCK_SIZE as u64) as usize..].fill(0);
            let stored = self.seal_blocks(&file_id, last, &plain, 0);
            self.write_all_at(&stored, last.backing_offset())?;
        }
        // The header never claims more blocks than the backing file holds:
        // shrinking seals the new size before cutting, growing extends first.
        // A crash in between leaves only unused blocks past the end.
        if size < old {
            self.cache.invalidate_from(&file_id, blocks_for(size));
            self.store_size(&mut st, size)?;
            self.fd
                .set_len(backing_len(size))
                .map_err(io_err(&self.path))
        } else {
            self.fd
                .set_len(backing_len(size))
                .map_err(io_err(&self.path))?;
            self.store_size(&mut st, size)
        }
    }

    /// Makes everything written so far durable in the backing store.
    pub fn sync(&self, datasync: bool) -> Result<(), FileError> {
        let _st = self.read_state();
        if datasync {
            self.fd.sync_data()
        } else {
            self.fd.sync_all()
        }
        .map_err(io_err(&self.path))
    }
}

/// Creates the backing contents of a new symlink: a header of type symlink
/// and the target as its data, written to the empty file `fd`.
pub fn write_symlink(
    fd: File,
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    cache: Arc<BlockCache>,
    target: &[u8],
) -> Result<(), FileError> {
    let f = EncFile {
        fd,
        path,
        pipeline,
        cache,
        state: RwLock::new(State {
            header: None,
            size: 0,
        }),
    };
    {
        let mut st = f.write_state();
        let h = f
            .pipeline
            .new_header(FileType::Symlink, crate::crypto::random_array());
        f.write_all_at(&h.encode(), 0)?;
        st.header = Some(h);
    }
    f.write(0, target)?;
    Ok(())
}

/// Reads a symlink target from its backing file.
pub fn read_symlink(
    fd: File,
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    cache: Arc<BlockCache>,
) -> Result<Vec<u8>, FileError> {
    let f = EncFile::open(fd, path, pipeline, cache)?;
    let size = f.size();
    let is_link = f.read_state().header.as_ref().map(|h| h.file_type) == Some(FileType::Symlink);
    if !is_link {
        return Err(FileError::Header {
            path: f.path.clone(),
            what: "symlink backing file does not hold a symlink target".into(),
        });
    }
    f.read(0, usize::try_from(size).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key64;
    use crate::layers::{DiskKeys, Layer};

    fn pipeline() -> Arc<Pipeline> {
        let mut k = DiskKeys::default();
        k.set(Layer::Guest, Key64::random(), 1);
        k.set(Layer::StoragePmk, Key64::random(), 1);
        Arc::new(Pipeline::new(&k, b"t"))
    }

    fn open(dir: &Path, p: &Arc<Pipeline>) -> EncFile {
        open_with_cache(dir, p, Arc::new(BlockCache::new(0)))
    }

    fn open_with_cache(dir: &Path, p: &Arc<Pipeline>, cache: Arc<BlockCache>) -> EncFile {
        let path = dir.join("f");
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open");
        EncFile::open(fd, path, p.clone(), cache).expect("header")
    }

    #[test]
    fn random_writes_match_a_model() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pipeline();
        let f = open(dir.path(), &p);
        let mut model: Vec<u8> = Vec::new();
        let mut seed = 12345u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let off = next() % 40_000;
            let len = (next() % 9000) as usize + 1;
            let byte = (round % 251) as u8 + 1;
            let data = vec![byte; len];
            f.write(off, &data).expect("write");
            if model.len() < (off as usize + len) {
                model.resize(off as usize + len, 0);
            }
            model[off as usize..off as usize + len].copy_from_slice(&data);
            if round % 37 == 0 {
                let t = next() % 45_000;
                f.truncate(t).expect("truncate");
                model.resize(t as usize, 0);
            }
        }
        assert_eq!(f.size(), model.len() as u64);
        assert_eq!(f.read(0, model.len() + 10).expect("read"), model);
        drop(f);
        let f = open(dir.path(), &p);
        assert_eq!(f.read(0, model.len()).expect("read"), model);
        let len = std::fs::metadata(dir.path().join("f")).expect("stat").len();
        assert_eq!(len, backing_len(model.len() as u64));
    }

    #[test]
    fn large_reads_bypass_the_cache_and_small_reads_fill_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Arc::new(BlockCache::new(16 << 20));
        let f = open_with_cache(dir.path(), &pipeline(), cache.clone());
        let n = CACHE_BYPASS_BLOCKS * 2;
        let data: Vec<u8> = (0..n * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        f.write(0, &data).expect("write");
        assert_eq!(f.read(0, data.len()).expect("large read"), data);
        assert_eq!(cache.stats().blocks, 0, "a scan fills no cache entry");
        assert_eq!(
            f.read(5 * 4096 + 7, 100).expect("small read"),
            &data[5 * 4096 + 7..5 * 4096 + 107]
        );
        assert_eq!(cache.stats().blocks, 1);
        // A write after the block was cached: both paths see it.
        f.write(5 * 4096, b"new bytes").expect("write");
        assert_eq!(&f.read(5 * 4096, 9).expect("small")[..], b"new bytes");
        assert_eq!(
            &f.read(0, data.len()).expect("large")[5 * 4096..5 * 4096 + 9],
            b"new bytes"
        );
    }

    #[test]
    fn partial_block_writes_keep_exactly_the_old_bytes_they_do_not_cover() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = open(dir.path(), &pipeline());
        f.write(0, &[1u8; 6000]).expect("write");
        // From a block start, ending before the old end: the rest stays.
        f.write(4096, &[2u8; 100]).expect("write");
        let mut want = vec![1u8; 6000];
        want[4096..4196].fill(2);
        assert_eq!(f.read(0, 7000).expect("read"), want);
        // From a block start, past the old end (an append re-sent whole by
        // the page cache): nothing old to keep, zeros past the end.
        f.write(4096, &[3u8; 2500]).expect("write");
        want[4096..].fill(3);
        want.resize(4096 + 2500, 3);
        assert_eq!(f.read(0, 9000).expect("read"), want);
        f.truncate(8192).expect("grow");
        want.resize(8192, 0);
        assert_eq!(f.read(0, 9000).expect("read"), want);
    }

    #[test]
    fn holes_read_as_zeros_and_cost_no_space() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = open(dir.path(), &pipeline());
        f.write(1 << 30, b"end").expect("write");
        assert_eq!(f.read(4096 * 1000, 10).expect("read"), vec![0u8; 10]);
        assert_eq!(f.read((1 << 30) - 2, 5).expect("read"), b"\0\0end");
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(dir.path().join("f"))
                .expect("stat")
                .blocks()
                < 100
        );
    }

    #[test]
    fn flipped_stored_byte_fails_only_its_block() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pipeline();
        let f = open(dir.path(), &p);
        let data: Vec<u8> = (0..5 * BLOCK_SIZE).map(|i| (i % 253) as u8).collect();
        f.write(0, &data).expect("write");
        drop(f);
        let path = dir.path().join("f");
        let mut raw = std::fs::read(&path).expect("read");
        raw[BlockIndex(2).backing_offset() as usize + 100] ^= 1;
        std::fs::write(&path, raw).expect("write");
        let f = open(dir.path(), &p);
        assert!(matches!(
            f.read(2 * 4096, 10),
            Err(FileError::BlockTag { block: 2, .. })
        ));
        assert_eq!(f.read(0, 2 * 4096).expect("read"), data[..2 * 4096]);
        assert_eq!(f.read(3 * 4096, 2 * 4096).expect("read"), data[3 * 4096..]);
    }

    #[test]
    fn swapped_blocks_fail_their_tags() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pipeline();
        let f = open(dir.path(), &p);
        f.write(0, &vec![7u8; 2 * BLOCK_SIZE]).expect("write");
        drop(f);
        let path = dir.path().join("f");
        let mut raw = std::fs::read(&path).expect("read");
        let (a, b) = (HEADER_LEN, HEADER_LEN + STORED_BLOCK);
        let first: Vec<u8> = raw[a..b].to_vec();
        raw.copy_within(b..b + STORED_BLOCK, a);
        raw[b..b + STORED_BLOCK].copy_from_slice(&first);
        std::fs::write(&path, raw).expect("write");
        let f = open(dir.path(), &p);
        assert!(f.read(0, 10).is_err());
        assert!(f.read(4096, 10).is_err());
    }

    #[test]
    fn truncated_backing_file_fails_only_the_missing_block() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pipeline();
        let f = open(dir.path(), &p);
        f.write(0, &vec![1u8; 3 * BLOCK_SIZE]).expect("write");
        drop(f);
        let path = dir.path().join("f");
        let raw = std::fs::read(&path).expect("read");
        std::fs::write(&path, &raw[..raw.len() - 10]).expect("write");
        let fd = std::fs::File::open(&path).expect("open");
        let f = EncFile::open(fd, path, p, Arc::new(BlockCache::new(0))).expect("header");
        assert_eq!(
            f.read(0, 2 * BLOCK_SIZE).expect("intact"),
            vec![1u8; 2 * BLOCK_SIZE]
        );
        assert!(matches!(
            f.read(2 * BLOCK_SIZE as u64, 10),
            Err(FileError::Truncated { .. })
        ));
    }
}
