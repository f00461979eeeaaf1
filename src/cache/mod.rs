//! The LRU block cache, bounded in bytes. It holds blocks as they stand below
//! the host layer (host ciphertext when host encryption is on), keyed by
//! what really names a stored block: the disk or snapshot it belongs to, the
//! backing file (its inode number and its file id) and the block index. A
//! snapshot's copy of a file carries the live file's id, so the file id
//! alone would let one poison the other. Writes go through: an entry is
//! only ever inserted with the content just written to, or just verified
//! from, the backing store.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;

use crate::format::BLOCK_SIZE;

/// Which stored file a cached block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The disk or snapshot (its slot in the running mount).
    pub scope: u32,
    /// The backing file's inode number.
    pub ino: u64,
    /// The file id from its header.
    pub file_id: u128,
}

impl FileKey {
    /// The key of the backing file `ino` with id `file_id` in `scope`.
    pub fn new(scope: u32, ino: u64, file_id: &[u8; 16]) -> Self {
        FileKey {
            scope,
            ino,
            file_id: u128::from_le_bytes(*file_id),
        }
    }
}

type Key = (FileKey, u64);

/// A bounded cache of 4 KiB blocks.
pub struct BlockCache {
    inner: Option<Mutex<LruCache<Key, Box<[u8; BLOCK_SIZE]>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found their block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks held now.
    pub blocks: usize,
    /// Capacity in blocks.
    pub capacity: usize,
}

impl BlockCache {
    /// A cache holding at most `bytes` bytes of blocks (0 disables it).
    pub fn new(bytes: u64) -> Self {
        let cap = usize::try_from(bytes / BLOCK_SIZE as u64).unwrap_or(usize::MAX);
        BlockCache {
            inner: NonZeroUsize::new(cap).map(|c| Mutex::new(LruCache::new(c))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, LruCache<Key, Box<[u8; BLOCK_SIZE]>>>> {
        // A poisoned cache only means a panic elsewhere; its entries are still
        // whole blocks, so keep using it.
        self.inner
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Copies the cached block into `out` if present.
    pub fn get(&self, file: &FileKey, index: u64, out: &mut [u8; BLOCK_SIZE]) -> bool {
        let Some(mut c) = self.lock() else {
            return false;
        };
        match c.get(&(*file, index)) {
            Some(b) => {
                out.copy_from_slice(&b[..]);
                self.hits.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Inserts or replaces a block.
    pub fn put(&self, file: &FileKey, index: u64, block: &[u8; BLOCK_SIZE]) {
        let Some(mut c) = self.lock() else { return };
        let key = (*file, index);
        if let Some(b) = c.get_mut(&key) {
            b.copy_from_slice(block);
        } else {
            c.put(key, Box::new(*block));
        }
    }

    /// Replaces a block if it is cached (writes keep the cache current
    /// without filling it).
    pub fn refresh(&self, file: &FileKey, index: u64, block: &[u8; BLOCK_SIZE]) {
        let Some(mut c) = self.lock() else { return };
        if let Some(b) = c.peek_mut(&(*file, index)) {
            b.copy_from_slice(block);
        }
    }

    /// Drops every block of `file` at or after `from`.
    pub fn invalidate_from(&self, file: &FileKey, from: u64) {
        self.drop_where(|(f, i)| f == file && *i >= from);
    }

    /// Drops every block of one disk or snapshot (its keys were revoked,
    /// or its slot is reused).
    pub fn purge_scope(&self, scope: u32) {
        self.drop_where(|(f, _)| f.scope == scope);
    }

    fn drop_where(&self, doomed: impl Fn(&Key) -> bool) {
        use zeroize::Zeroize;
        let Some(mut c) = self.lock() else { return };
        let keys: Vec<Key> = c.iter().map(|(k, _)| *k).filter(|k| doomed(k)).collect();
        for k in keys {
            // Zeroed as they go: with host encryption off a block is what
            // the guest layer left.
            if let Some(mut b) = c.pop(&k) {
                b.zeroize();
            }
        }
    }

    /// Hit and miss counters.
    pub fn stats(&self) -> CacheStats {
        let (blocks, capacity) = self
            .lock()
            .map(|c| (c.len(), c.cap().get()))
            .unwrap_or((0, 0));
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            blocks,
            capacity,
        }
    }

    /// Calls `f` on every cached block (for tests and forensics).
    pub fn for_each_block(&self, mut f: impl FnMut(&[u8; BLOCK_SIZE])) {
        if let Some(c) = self.lock() {
            for (_, b) in c.iter() {
                f(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key64;
    use crate::layers::{DiskKeys, Layer, Pipeline};

    #[test]
    fn bounded_in_bytes_and_evicts_least_recent() {
        let c = BlockCache::new(2 * BLOCK_SIZE as u64 + 100);
        let f = FileKey::new(0, 5, &[0; 16]);
        let b = [1u8; BLOCK_SIZE];
        c.put(&f, 0, &b);
        c.put(&f, 1, &b);
        let mut out = [0u8; BLOCK_SIZE];
        assert!(c.get(&f, 0, &mut out));
        c.put(&f, 2, &b);
        assert!(!c.get(&f, 1, &mut out));
        assert!(c.get(&f, 0, &mut out));
        assert_eq!(c.stats().blocks, 2);
        c.invalidate_from(&f, 1);
        assert!(!c.get(&f, 2, &mut out));
    }

    #[test]
    fn equal_file_ids_in_two_scopes_or_files_are_separate_entries() {
        let c = BlockCache::new(1 << 20);
        let live = FileKey::new(1, 10, &[7; 16]);
        let snapshot = FileKey::new(2, 11, &[7; 16]);
        let copy = FileKey::new(1, 12, &[7; 16]);
        c.put(&live, 0, &[1u8; BLOCK_SIZE]);
        c.put(&snapshot, 0, &[2u8; BLOCK_SIZE]);
        let mut out = [0u8; BLOCK_SIZE];
        assert!(c.get(&live, 0, &mut out));
        assert_eq!(out[0], 1);
        assert!(c.get(&snapshot, 0, &mut out));
        assert_eq!(out[0], 2);
        assert!(!c.get(&copy, 0, &mut out));
        c.purge_scope(2);
        assert!(!c.get(&snapshot, 0, &mut out));
        assert!(c.get(&live, 0, &mut out));
    }

    #[test]
    fn with_host_encryption_cache_holds_no_plaintext_block() {
        let mut keys = DiskKeys::default();
        keys.set(Layer::Host, Key64::random(), 1);
        keys.set(Layer::StoragePmk, Key64::random(), 1);
        let p = Pipeline::new(&keys, b"s");
        let cache = BlockCache::new(1 << 20);
        let canary = b"CANARY-PLAINTEXT";
        let mut plain = [0u8; BLOCK_SIZE];
        for chunk in plain.chunks_mut(canary.len()) {
            chunk.copy_from_slice(&canary[..chunk.len()]);
        }
        let f = FileKey::new(0, 1, &[4; 16]);
        for i in 0..64u64 {
            let mut b = plain;
            p.encrypt_upper(&[4; 16], i, &mut b);
            cache.put(&f, i, &b);
        }
        let mut seen = 0;
        cache.for_each_block(|b| {
            seen += 1;
            assert!(!b.windows(canary.len()).any(|w| w == canary));
        });
        assert_eq!(seen, 64);
    }
}
