//! A bounded cache of open backing directories, keyed by their inode
//! number. A descriptor names the directory itself, not a path, so an entry
//! stays right when the directory is renamed; it is dropped when the
//! directory is removed. The bound keeps the daemon's descriptors in check
//! however many directories the kernel holds.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::Dir;

/// Directories kept open at most.
pub const DEFAULT_CAPACITY: usize = 512;

/// The cache.
pub struct DirCache {
    inner: Mutex<LruCache<u64, Arc<Dir>>>,
}

impl DirCache {
    /// A cache of at most `capacity` (at least 1) directories.
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        DirCache {
            inner: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Arc<Dir>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open directory of inode `ino`, if cached.
    pub fn get(&self, ino: u64) -> Option<Arc<Dir>> {
        self.lock().get(&ino).cloned()
    }

    /// Remembers the open directory of inode `ino`.
    pub fn put(&self, ino: u64, dir: Arc<Dir>) {
        self.lock().put(ino, dir);
    }

    /// Forgets inode `ino` (its directory was removed, or the number now
    /// names something else).
    pub fn remove(&self, ino: u64) {
        self.lock().pop(&ino);
    }

    /// How many directories are open in the cache.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_evicts_least_recently_used() {
        let t = tempfile::tempdir().expect("tmp");
        let c = DirCache::new(2);
        for i in 0..3u64 {
            c.put(i, Arc::new(Dir::open(t.path()).expect("open")));
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(0).is_none());
        assert!(c.get(2).is_some());
        c.remove(2);
        assert!(c.get(2).is_none());
    }
}
