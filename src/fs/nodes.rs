//! The inode table: every inode the kernel knows, where it lives (its
//! links: a parent directory inode and a backing name in it), its lookup
//! count, the one shared encrypted-file object every operation on it uses,
//! and cached facts (logical size, directory id, last attributes).
//!
//! Objects are found through their parent's directory descriptor and one
//! backing name, never through a path: a rename moves one link, whatever
//! lies below it. A node keeps its parent nodes alive (a child count), so
//! the chain from any node to its disk's root is always in the table.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use super::{Attr, Kind};
use crate::file::{EncFile, SIZE_UNKNOWN};

/// One name of an object: a backing name in a parent directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    /// The parent directory's inode.
    pub parent: u64,
    /// The backing name (the hashed one for a long name).
    pub name: OsString,
}

/// The one encrypted-file object of a regular file or symlink, shared by
/// every path that touches its contents (handles, truncate, xattrs,
/// readlink), and its logical size, kept while nothing has it open.
///
/// Lock order: a slot's `open` lock is taken only with the node table's
/// lock released, and the table is never taken while a slot is held.
pub(super) struct FileSlot {
    /// The open file while anything holds it.
    pub open: Mutex<Weak<EncFile>>,
    /// Its size (`SIZE_UNKNOWN` until read), mirrored by the open file.
    pub size: Arc<AtomicU64>,
}

impl FileSlot {
    fn new() -> Arc<Self> {
        Arc::new(FileSlot {
            open: Mutex::new(Weak::new()),
            size: Arc::new(AtomicU64::new(SIZE_UNKNOWN)),
        })
    }
}

/// A descriptor of a file or symlink kept open after a rename or an unlink
/// took its last name the table knows, while the kernel still holds the
/// inode: an open (or a change) the kernel resolved before reaches the
/// object through it, as on a local filesystem, not ENOENT, and the inode
/// number is not given to a new file while the kernel still knows it.
pub(super) struct Kept {
    /// The backing file, open for reading (and writing when `writable`).
    pub fd: Arc<std::fs::File>,
    /// Whether `fd` may write.
    pub writable: bool,
    /// How logs name it (its backing name before the rename).
    pub label: String,
}

/// One inode known to the kernel.
pub(super) struct Node {
    /// Index of its disk.
    pub disk: usize,
    /// Its type.
    pub kind: Kind,
    /// Kernel lookup count.
    pub lookups: u64,
    /// Handles open on it.
    pub open_count: u32,
    /// Its names, the most recently used first (several for hard links;
    /// none once unlinked, or for a disk root).
    pub links: Vec<Link>,
    /// Nodes that have a link in this directory.
    pub children: u32,
    /// A disk or snapshot root (reached by its path, never forgotten).
    pub root: bool,
    /// Its shared file object.
    pub file: Arc<FileSlot>,
    /// Cached directory id of a directory.
    pub dir_id: Option<[u8; 16]>,
    /// Its attributes when last seen, answered once nothing reaches it
    /// (unlinked and closed, while the kernel still holds it).
    pub attr: Option<Attr>,
    /// Its backing file, kept open once a rename or an unlink took its last
    /// name (dropped with the node, when the kernel forgets it).
    pub kept: Option<Kept>,
    /// Generation of its inode number, bumped when the number names a new
    /// object while the node (so maybe the kernel's inode of the old one)
    /// is still here: the kernel then drops the old inode instead of
    /// serving the new object through it (a removed directory's inode
    /// refuses every new entry).
    pub generation: u64,
}

impl Node {
    fn new(disk: usize, kind: Kind) -> Self {
        Node {
            disk,
            kind,
            lookups: 0,
            open_count: 0,
            links: Vec::new(),
            children: 0,
            root: false,
            file: FileSlot::new(),
            dir_id: None,
            attr: None,
            kept: None,
            generation: 0,
        }
    }
}

/// The table.
pub(super) struct Nodes {
    map: HashMap<u64, Node>,
    by_link: HashMap<(u64, OsString), u64>,
    /// Disk and snapshot roots by slot.
    pub roots: Vec<u64>,
    /// Descriptors kept by nodes the table dropped, to be closed once its
    /// lock is released ([`Nodes::take_released`]): the last close of an
    /// unlinked file frees its inode, backing-filesystem work that no other
    /// request should wait on.
    released: Vec<Kept>,
}

impl Nodes {
    pub fn new(slots: usize) -> Self {
        Nodes {
            map: HashMap::new(),
            by_link: HashMap::new(),
            roots: vec![0; slots],
            released: Vec::new(),
        }
    }

    /// The descriptors of dropped nodes, for the caller to close after
    /// releasing the table.
    pub fn take_released(&mut self) -> Vec<Kept> {
        std::mem::take(&mut self.released)
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.map.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.map.get_mut(&ino)
    }

    /// The inode named `name` in `parent`, if known.
    #[cfg(test)]
    pub fn at(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.by_link.get(&(parent, name.to_os_string())).copied()
    }

    /// Records the root of slot `slot` (a kernel lookup when
    /// `count_lookup`).
    pub fn root(&mut self, slot: usize, ino: u64, count_lookup: bool) {
        let n = self
            .map
            .entry(ino)
            .or_insert_with(|| Node::new(slot, Kind::Dir));
        n.disk = slot;
        n.root = true;
        if count_lookup {
            n.lookups += 1;
        }
        if let Some(r) = self.roots.get_mut(slot) {
            *r = ino;
        }
    }

    /// Records that `ino` (of type `kind`, on disk `disk`) is named `name`
    /// in `parent` (a kernel lookup when `count_lookup`). A node whose type
    /// changed is an inode number reused by a new object: it starts clean.
    pub fn remember(
        &mut self,
        ino: u64,
        disk: usize,
        kind: Kind,
        parent: u64,
        name: &OsStr,
        count_lookup: bool,
    ) {
        let key = (parent, name.to_os_string());
        if let Some(old) = self.by_link.get(&key).copied() {
            if old != ino {
                // The name now holds another inode: the old one lost it.
                self.detach(parent, name);
                self.release_chain(old);
            }
        }
        let n = self.map.entry(ino).or_insert_with(|| Node::new(disk, kind));
        if n.kind != kind || n.disk != disk {
            n.kind = kind;
            n.disk = disk;
            n.file = FileSlot::new();
            n.dir_id = None;
            n.attr = None;
            self.released.extend(n.kept.take());
            n.generation += 1;
        }
        if count_lookup {
            n.lookups += 1;
        }
        let link = Link {
            parent,
            name: name.to_os_string(),
        };
        match n.links.iter().position(|l| *l == link) {
            Some(0) => return,
            Some(i) => {
                let l = n.links.remove(i);
                n.links.insert(0, l);
                return;
            }
            None => n.links.insert(0, link),
        }
        self.by_link.insert(key, ino);
        if let Some(p) = self.map.get_mut(&parent) {
            p.children += 1;
        }
    }

    /// A newly created object at `ino`: whatever the table knew of that
    /// inode number belonged to a deleted object.
    pub fn fresh(&mut self, ino: u64) {
        if let Some(n) = self.map.get_mut(&ino) {
            if n.open_count == 0 {
                n.file = FileSlot::new();
            }
            n.dir_id = None;
            n.attr = None;
            n.generation += 1;
        }
    }

    /// Takes the name `name` of `parent` from the inode it names, without
    /// releasing anything yet.
    fn detach(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        let ino = self.by_link.remove(&(parent, name.to_os_string()))?;
        if let Some(n) = self.map.get_mut(&ino) {
            n.links.retain(|l| !(l.parent == parent && l.name == name));
        }
        if let Some(p) = self.map.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
        Some(ino)
    }

    /// The name `name` of `parent` is gone; returns the inode it named.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        let ino = self.detach(parent, name)?;
        self.release_chain(ino);
        self.release_chain(parent);
        Some(ino)
    }

    /// `name` of `parent` was renamed to `newname` of `newparent` (whose
    /// previous object, if any, lost that name).
    pub fn rename(&mut self, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr) {
        let replaced = self.detach(newparent, newname);
        let moved = self.by_link.remove(&(parent, name.to_os_string()));
        if let Some(old) = replaced {
            self.release_chain(old);
        }
        let Some(ino) = moved else {
            self.release_chain(parent);
            return;
        };
        if let Some(n) = self.map.get_mut(&ino) {
            for l in n.links.iter_mut() {
                if l.parent == parent && l.name == name {
                    l.parent = newparent;
                    l.name = newname.to_os_string();
                }
            }
        }
        self.by_link
            .insert((newparent, newname.to_os_string()), ino);
        if let Some(p) = self.map.get_mut(&newparent) {
            p.children += 1;
        }
        if let Some(p) = self.map.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
        self.release_chain(parent);
    }

    /// The objects named `a` in `pa` and `b` in `pb` were exchanged.
    pub fn exchange(&mut self, pa: u64, a: &OsStr, pb: u64, b: &OsStr) {
        let ia = self.by_link.remove(&(pa, a.to_os_string()));
        let ib = self.by_link.remove(&(pb, b.to_os_string()));
        let mut retarget = |ino: Option<u64>, from: (u64, &OsStr), to: (u64, &OsStr)| {
            let Some(ino) = ino else { return };
            if let Some(n) = self.map.get_mut(&ino) {
                for l in n.links.iter_mut() {
                    if l.parent == from.0 && l.name == from.1 {
                        l.parent = to.0;
                        l.name = to.1.to_os_string();
                    }
                }
            }
            self.by_link.insert((to.0, to.1.to_os_string()), ino);
            if from.0 != to.0 {
                if let Some(p) = self.map.get_mut(&to.0) {
                    p.children += 1;
                }
                if let Some(p) = self.map.get_mut(&from.0) {
                    p.children = p.children.saturating_sub(1);
                }
            }
        };
        retarget(ia, (pa, a), (pb, b));
        retarget(ib, (pb, b), (pa, a));
        self.release_chain(pa);
        self.release_chain(pb);
    }

    /// Counts a kernel lookup of inode `ino` that the kernel got without
    /// a name strata could resolve (a listing entry whose lookup failed):
    /// an existing node of disk `disk` and kind `kind` counts it, else a new
    /// node without links does, until the kernel forgets it. False, and
    /// nothing counted, when `ino` is a node of another disk or kind.
    pub fn count_unnamed(&mut self, ino: u64, disk: usize, kind: Kind) -> bool {
        let n = self.map.entry(ino).or_insert_with(|| Node::new(disk, kind));
        if n.kind != kind || n.disk != disk {
            return false;
        }
        n.lookups += 1;
        true
    }

    /// Gives node `ino` the descriptor `kept` of its object, whose last
    /// name is going (dropped with the node).
    pub fn keep(&mut self, ino: u64, kept: Kept) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.kept = Some(kept);
        }
    }

    /// Drops `count` lookups of `ino`; forgets it when nothing holds it.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if let Some(n) = self.map.get_mut(&ino) {
            n.lookups = n.lookups.saturating_sub(count);
        }
        self.release_chain(ino);
    }

    /// Removes `ino` if nothing holds it (no lookup, no handle, no child,
    /// not a root), then its parents likewise.
    pub fn release_chain(&mut self, ino: u64) {
        let mut work = vec![ino];
        while let Some(ino) = work.pop() {
            let unused = self
                .map
                .get(&ino)
                .is_some_and(|n| n.lookups == 0 && n.open_count == 0 && n.children == 0 && !n.root);
            if !unused {
                continue;
            }
            let Some(n) = self.map.remove(&ino) else {
                continue;
            };
            self.released.extend(n.kept);
            for l in n.links {
                let key = (l.parent, l.name);
                if self.by_link.get(&key) == Some(&ino) {
                    self.by_link.remove(&key);
                }
                if let Some(p) = self.map.get_mut(&key.0) {
                    p.children = p.children.saturating_sub(1);
                    work.push(key.0);
                }
            }
        }
    }

    /// Every inode of disk `disk` the table knows.
    pub fn of_disk(&self, disk: usize) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, n)| n.disk == disk)
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// How many nodes the table holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &Nodes, ino: u64) -> Vec<(u64, String)> {
        t.get(ino)
            .map(|n| {
                n.links
                    .iter()
                    .map(|l| (l.parent, l.name.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn table() -> Nodes {
        let mut t = Nodes::new(1);
        t.root(0, 1, true);
        t
    }

    #[test]
    fn directory_rename_moves_one_link_and_its_subtree_follows() {
        let mut t = table();
        t.remember(10, 0, Kind::Dir, 1, OsStr::new("a"), true);
        t.remember(11, 0, Kind::File, 10, OsStr::new("x"), true);
        t.rename(1, OsStr::new("a"), 1, OsStr::new("b"));
        assert_eq!(names(&t, 10), vec![(1, "b".into())]);
        assert_eq!(names(&t, 11), vec![(10, "x".into())]);
        assert_eq!(t.at(1, OsStr::new("b")), Some(10));
        assert_eq!(t.at(1, OsStr::new("a")), None);
    }

    #[test]
    fn unlink_of_one_hard_link_keeps_the_other() {
        let mut t = table();
        t.remember(5, 0, Kind::File, 1, OsStr::new("one"), true);
        t.remember(5, 0, Kind::File, 1, OsStr::new("two"), true);
        t.unlink(1, OsStr::new("two"));
        assert_eq!(names(&t, 5), vec![(1, "one".into())]);
    }

    #[test]
    fn a_parent_outlives_its_looked_up_children() {
        let mut t = table();
        t.remember(10, 0, Kind::Dir, 1, OsStr::new("d"), true);
        t.remember(11, 0, Kind::File, 10, OsStr::new("f"), true);
        t.forget(10, 1);
        assert!(t.get(10).is_some(), "child 11 still needs its parent");
        t.forget(11, 1);
        assert!(t.get(11).is_none());
        assert!(t.get(10).is_none(), "released with its last child");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn exchange_swaps_names_across_directories() {
        let mut t = table();
        t.remember(10, 0, Kind::Dir, 1, OsStr::new("d"), true);
        t.remember(20, 0, Kind::File, 1, OsStr::new("a"), true);
        t.remember(21, 0, Kind::Dir, 10, OsStr::new("b"), true);
        t.exchange(1, OsStr::new("a"), 10, OsStr::new("b"));
        assert_eq!(names(&t, 20), vec![(10, "b".into())]);
        assert_eq!(names(&t, 21), vec![(1, "a".into())]);
        assert_eq!(t.at(10, OsStr::new("b")), Some(20));
    }

    #[test]
    fn reused_inode_number_starts_without_cached_facts() {
        let mut t = table();
        t.remember(7, 0, Kind::Dir, 1, OsStr::new("d"), true);
        if let Some(n) = t.get_mut(7) {
            n.dir_id = Some([1; 16]);
        }
        t.unlink(1, OsStr::new("d"));
        t.remember(7, 0, Kind::File, 1, OsStr::new("e"), true);
        assert_eq!(t.get(7).and_then(|n| n.dir_id), None);
        assert_eq!(t.get(7).map(|n| n.kind), Some(Kind::File));
    }

    #[test]
    fn an_inode_number_given_to_a_new_object_gets_a_new_generation() {
        let mut t = table();
        t.remember(7, 0, Kind::Dir, 1, OsStr::new("d"), true);
        assert_eq!(t.get(7).map(|n| n.generation), Some(0));
        t.unlink(1, OsStr::new("d"));
        // The kernel still holds the removed directory; a new one gets 7.
        t.fresh(7);
        t.remember(7, 0, Kind::Dir, 1, OsStr::new("d"), true);
        assert_eq!(t.get(7).map(|n| n.generation), Some(1));
        assert_eq!(t.get(7).map(|n| n.lookups), Some(2));
        // A number reused for an object of another type, found by lookup.
        t.unlink(1, OsStr::new("d"));
        t.remember(7, 0, Kind::File, 1, OsStr::new("f"), true);
        assert_eq!(t.get(7).map(|n| n.generation), Some(2));
    }

    #[test]
    fn a_name_taken_by_another_inode_leaves_the_old_one() {
        let mut t = table();
        t.remember(5, 0, Kind::File, 1, OsStr::new("n"), true);
        t.remember(6, 0, Kind::File, 1, OsStr::new("n"), true);
        assert!(names(&t, 5).is_empty());
        assert_eq!(t.at(1, OsStr::new("n")), Some(6));
    }
}
