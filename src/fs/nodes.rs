//! The inode table: which backing paths each inode the kernel knows is
//! reachable at, its lookup count, its shared open file and cached facts
//! (logical size, directory id). An index from path to inode keeps unlink
//! and rename of files independent of the table's size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Kind;
use crate::file::EncFile;

/// One inode known to the kernel.
pub(super) struct Node {
    /// Index of its disk.
    pub disk: usize,
    /// Backing paths it is known at (several for hard links; none once
    /// unlinked while open).
    pub paths: Vec<PathBuf>,
    /// Its type.
    pub kind: Kind,
    /// Kernel lookup count.
    pub lookups: u64,
    /// The shared encrypted file, while any handle has it open.
    pub open: Option<Arc<EncFile>>,
    /// Handles open on it.
    pub open_count: u32,
    /// Cached logical size of a regular file or symlink.
    pub size: Option<u64>,
    /// Cached directory id of a directory.
    pub dir_id: Option<[u8; 16]>,
}

/// The table.
pub(super) struct Nodes {
    map: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    /// Disk roots: never forgotten.
    pub roots: Vec<u64>,
}

impl Nodes {
    pub fn new(slots: usize) -> Self {
        Nodes {
            map: HashMap::new(),
            by_path: HashMap::new(),
            roots: vec![0; slots],
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.map.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.map.get_mut(&ino)
    }

    /// Records that `ino` is reachable at `path` (a kernel lookup when
    /// `count_lookup`).
    pub fn remember(&mut self, ino: u64, disk: usize, path: &Path, kind: Kind, count_lookup: bool) {
        if let Some(old) = self.by_path.get(path).copied() {
            if old != ino {
                // The path now names another inode: the old one lost it.
                self.detach(old, path);
            }
        }
        let n = self.map.entry(ino).or_insert_with(|| Node {
            disk,
            paths: Vec::new(),
            kind,
            lookups: 0,
            open: None,
            open_count: 0,
            size: None,
            dir_id: None,
        });
        // An inode number freed on one disk can be reused on another.
        n.disk = disk;
        n.kind = kind;
        // The most recently resolved path goes first.
        n.paths.retain(|p| p != path);
        n.paths.insert(0, path.to_path_buf());
        if count_lookup {
            n.lookups += 1;
        }
        self.by_path.insert(path.to_path_buf(), ino);
    }

    /// Removes `path` from node `ino`. A node left with no path is an
    /// object that no longer exists in the namespace: its cached facts go,
    /// so that a new object reusing the inode number starts clean.
    fn detach(&mut self, ino: u64, path: &Path) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.paths.retain(|p| p != path);
            if n.paths.is_empty() {
                n.dir_id = None;
                if n.open.is_none() {
                    n.size = None;
                }
            }
        }
    }

    fn remove(&mut self, ino: u64) {
        if let Some(n) = self.map.remove(&ino) {
            for p in n.paths {
                if self.by_path.get(&p) == Some(&ino) {
                    self.by_path.remove(&p);
                }
            }
        }
    }

    /// Drops `count` lookups of `ino`; forgets it when nothing holds it.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if self.roots.contains(&ino) {
            return;
        }
        let unused = match self.map.get_mut(&ino) {
            Some(n) => {
                n.lookups = n.lookups.saturating_sub(count);
                n.lookups == 0 && n.open_count == 0
            }
            None => false,
        };
        if unused {
            self.remove(ino);
        }
    }

    /// A path was removed from the namespace.
    pub fn unlinked(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path) {
            self.detach(ino, path);
        }
    }

    /// A newly created object at `path`: whatever the table knew of that
    /// inode number belonged to a deleted object.
    pub fn fresh(&mut self, ino: u64) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.dir_id = None;
            n.size = None;
        }
    }

    /// `from` was renamed to `to` (which, if it existed, is gone): every
    /// path at or below `from` moves.
    pub fn renamed(&mut self, from: &Path, to: &Path, is_dir: bool) {
        self.unlinked(to);
        let moved: Vec<PathBuf> = if is_dir {
            self.by_path
                .keys()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect()
        } else {
            self.by_path
                .contains_key(from)
                .then(|| from.to_path_buf())
                .into_iter()
                .collect()
        };
        for old in moved {
            let Some(ino) = self.by_path.remove(&old) else {
                continue;
            };
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            if let Some(n) = self.map.get_mut(&ino) {
                for p in n.paths.iter_mut().filter(|p| **p == old) {
                    *p = new.clone();
                }
            }
            self.by_path.insert(new, ino);
        }
    }

    /// `a` and `b` were exchanged.
    pub fn exchanged(&mut self, a: &Path, b: &Path, a_dir: bool, b_dir: bool) {
        let tmp = a.with_extension("\0swap");
        self.renamed(a, &tmp, a_dir);
        self.renamed(b, a, b_dir);
        self.renamed(&tmp, b, a_dir);
    }

    /// Every inode of disk `disk` the table knows.
    pub fn of_disk(&self, disk: usize) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, n)| n.disk == disk)
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// Sets or drops a cached size.
    pub fn set_size(&mut self, ino: u64, size: Option<u64>) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.size = size;
        }
    }

    /// Drops a node that is neither looked up nor open (after a failed
    /// operation registered it, or the last handle closed).
    pub fn drop_if_unused(&mut self, ino: u64) {
        let unused = self
            .map
            .get(&ino)
            .map(|n| n.lookups == 0 && n.open_count == 0)
            .unwrap_or(false);
        if unused && !self.roots.contains(&ino) {
            self.remove(ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Nodes {
        Nodes::new(0)
    }

    #[test]
    fn directory_rename_moves_every_path_below_it() {
        let mut t = table();
        t.remember(10, 0, Path::new("/s/a"), Kind::Dir, true);
        t.remember(11, 0, Path::new("/s/a/x"), Kind::File, true);
        t.remember(12, 0, Path::new("/s/ab"), Kind::File, true);
        t.renamed(Path::new("/s/a"), Path::new("/s/b"), true);
        assert_eq!(
            t.get(11).map(|n| n.paths.clone()),
            Some(vec![PathBuf::from("/s/b/x")])
        );
        assert_eq!(
            t.get(12).map(|n| n.paths.clone()),
            Some(vec![PathBuf::from("/s/ab")])
        );
    }

    #[test]
    fn unlink_of_one_hard_link_keeps_the_other() {
        let mut t = table();
        t.remember(5, 0, Path::new("/s/one"), Kind::File, true);
        t.remember(5, 0, Path::new("/s/two"), Kind::File, true);
        t.unlinked(Path::new("/s/two"));
        assert_eq!(
            t.get(5).map(|n| n.paths.clone()),
            Some(vec![PathBuf::from("/s/one")])
        );
    }

    #[test]
    fn inode_number_reused_on_another_disk_follows_it() {
        let mut t = table();
        t.remember(9, 1, Path::new("/s/data/x"), Kind::File, true);
        t.unlinked(Path::new("/s/data/x"));
        t.remember(9, 2, Path::new("/s/temp/y"), Kind::File, true);
        assert_eq!(t.get(9).map(|n| n.disk), Some(2));
    }

    #[test]
    fn reused_inode_number_starts_without_cached_facts() {
        let mut t = table();
        t.remember(7, 0, Path::new("/s/d"), Kind::Dir, true);
        if let Some(n) = t.get_mut(7) {
            n.dir_id = Some([1; 16]);
        }
        t.unlinked(Path::new("/s/d"));
        t.remember(7, 0, Path::new("/s/e"), Kind::Dir, true);
        assert_eq!(t.get(7).and_then(|n| n.dir_id), None);
    }
}
