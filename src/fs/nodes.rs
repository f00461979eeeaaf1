//! The inode table: which backing paths each inode the kernel knows is
//! reachable at, its lookup count and its shared open file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DiskRt, Kind};
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
}

/// The table.
pub(super) struct Nodes {
    map: HashMap<u64, Node>,
    /// Disk roots: never forgotten.
    pub roots: Vec<u64>,
}

impl Nodes {
    pub fn new(disks: &[DiskRt]) -> Self {
        Nodes {
            map: HashMap::new(),
            roots: vec![0; disks.len()],
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.map.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.map.get_mut(&ino)
    }

    /// Records that the kernel looked up `ino` at `path`.
    pub fn remember(&mut self, ino: u64, disk: usize, path: &Path, kind: Kind, count_lookup: bool) {
        let n = self.map.entry(ino).or_insert_with(|| Node {
            disk,
            paths: Vec::new(),
            kind,
            lookups: 0,
            open: None,
            open_count: 0,
            size: None,
        });
        n.kind = kind;
        // The most recently resolved path goes first.
        n.paths.retain(|p| p != path);
        n.paths.insert(0, path.to_path_buf());
        if count_lookup {
            n.lookups += 1;
        }
    }

    /// Drops `count` lookups of `ino`; forgets it when nothing holds it.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if self.roots.contains(&ino) {
            return;
        }
        if let Some(n) = self.map.get_mut(&ino) {
            n.lookups = n.lookups.saturating_sub(count);
            if n.lookups == 0 && n.open_count == 0 {
                self.map.remove(&ino);
            }
        }
    }

    /// A path was removed from the namespace.
    pub fn unlinked(&mut self, path: &Path) {
        for n in self.map.values_mut() {
            n.paths.retain(|p| p != path);
        }
    }

    /// `from` was renamed to `to`: every path at or below `from` moves.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for n in self.map.values_mut() {
            for p in n.paths.iter_mut() {
                if let Ok(rest) = p.strip_prefix(from) {
                    *p = if rest.as_os_str().is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(rest)
                    };
                }
            }
        }
    }

    /// `a` and `b` were exchanged.
    pub fn exchanged(&mut self, a: &Path, b: &Path) {
        let tmp = a.with_extension("\0swap");
        self.renamed(a, &tmp);
        self.renamed(b, a);
        self.renamed(&tmp, b);
    }

    /// Drops a cached size (after a change through another path).
    pub fn set_size(&mut self, ino: u64, size: Option<u64>) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.size = size;
        }
    }

    /// Drops a node that is neither looked up nor open (after a failed
    /// operation registered it).
    pub fn drop_if_unused(&mut self, ino: u64) {
        if let Some(n) = self.map.get(&ino) {
            if n.lookups == 0 && n.open_count == 0 && !self.roots.contains(&ino) {
                self.map.remove(&ino);
            }
        }
    }
}
