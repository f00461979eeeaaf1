//! The states a power cut may leave in the backing store, built from what
//! it held when recording began and the log of operations that reached it.
//!
//! The backing filesystem is modelled on ext4 with `data=ordered`, widened
//! to a superset of what it can leave (so that a state it cannot leave may
//! be generated, never the reverse):
//!
//! - A crash happens before a sync completes (or at the end of the log):
//!   every operation before the crash point was issued and returned.
//! - Metadata operations (create, mkdir, unlink, rmdir, rename, link, size
//!   and mode changes) reach the disk in order, through one journal: the
//!   state holds a prefix of them. A journal commit makes every metadata
//!   operation before it durable; commits are an fsync of a file, an fsync
//!   of a directory, a syncfs, and an fdatasync of a file that was created
//!   or resized since its last sync (ext4 commits then; an fdatasync of a
//!   file only overwritten commits nothing).
//! - A write is durable once an fsync or fdatasync of its file (or a
//!   syncfs) returned after it. Any other write may be missing, present, or
//!   torn, in any subset: a torn write keeps a subset of its 512-byte
//!   sectors (the parts of the write inside each sector). Writes are
//!   applied in log order, so a sector written twice holds the last of the
//!   writes kept. A write that grows its file grows it whenever it is kept,
//!   torn or not: sectors it did not keep read as zeros there.
//! - Unlike ext4's ordered mode, a commit is never assumed to flush the data
//!   of other files, and writes to different files may reach the disk in
//!   any order.
//!
//! A write to a file whose creation is not in the state is dropped with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::common::Rng;
use super::recorder::{InitialEntry, Op, ROOT};

/// Sector size: the unit a power cut keeps or loses.
pub const SECTOR: u64 = 512;
/// A crash point whose optional choices are at most this many combinations
/// gets every one of them (whole writes, plus one torn variant each).
const EXHAUSTIVE: u64 = 8;
/// Random states per crash point where the choices are too many.
const RANDOM_PER_POINT: usize = 8;

#[derive(Debug, Clone, Hash)]
struct Inode {
    dir: bool,
    mode: u32,
    data: Vec<u8>,
}

/// A backing tree: inodes and the names leading to them.
#[derive(Debug, Clone)]
pub struct Tree {
    inodes: HashMap<u64, Inode>,
    entries: BTreeMap<(u64, OsString), u64>,
}

impl Tree {
    /// The tree recording began with.
    pub fn initial(entries: &[InitialEntry]) -> Tree {
        let mut t = Tree {
            inodes: HashMap::from([(
                ROOT,
                Inode {
                    dir: true,
                    mode: 0o755,
                    data: Vec::new(),
                },
            )]),
            entries: BTreeMap::new(),
        };
        for e in entries {
            t.inodes.insert(
                e.id,
                Inode {
                    dir: e.dir,
                    mode: e.mode,
                    data: e.data.clone(),
                },
            );
            t.entries.insert((e.parent, e.name.clone()), e.id);
        }
        t
    }

    fn apply_meta(&mut self, op: &Op) {
        match op {
            Op::Create {
                parent,
                name,
                id,
                mode,
            }
            | Op::Mkdir {
                parent,
                name,
                id,
                mode,
            } => {
                self.inodes.insert(
                    *id,
                    Inode {
                        dir: matches!(op, Op::Mkdir { .. }),
                        mode: *mode,
                        data: Vec::new(),
                    },
                );
                self.entries.insert((*parent, name.clone()), *id);
            }
            Op::Unlink { parent, name } | Op::Rmdir { parent, name } => {
                self.entries.remove(&(*parent, name.clone()));
            }
            Op::Rename {
                parent,
                name,
                newparent,
                newname,
                exchange,
            } => {
                let from = (*parent, name.clone());
                let to = (*newparent, newname.clone());
                let Some(src) = self.entries.remove(&from) else {
                    return;
                };
                if let Some(dst) = self.entries.insert(to, src) {
                    if *exchange {
                        self.entries.insert(from, dst);
                    }
                }
            }
            Op::Link { id, parent, name } => {
                self.entries.insert((*parent, name.clone()), *id);
            }
            Op::SetSize { id, size } => {
                if let Some(i) = self.inodes.get_mut(id) {
                    i.data.resize(*size as usize, 0);
                }
            }
            Op::Chmod { id, mode } => {
                if let Some(i) = self.inodes.get_mut(id) {
                    i.mode = *mode;
                }
            }
            Op::Write { .. } | Op::Fsync { .. } | Op::FsyncDir { .. } | Op::SyncAll => {}
        }
    }

    fn apply_write(&mut self, id: u64, offset: u64, data: &[u8], keep: &Keep) {
        let Some(inode) = self.inodes.get_mut(&id) else {
            return;
        };
        let end = (offset + data.len() as u64) as usize;
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        for (k, (from, to)) in pieces(offset, data.len() as u64).enumerate() {
            let kept = match keep {
                Keep::Whole => true,
                Keep::Sectors(mask) => mask.get(k).copied().unwrap_or(false),
            };
            if kept {
                let a = (from - offset) as usize;
                let b = (to - offset) as usize;
                inode.data[from as usize..to as usize].copy_from_slice(&data[a..b]);
            }
        }
    }

    /// Every reachable object, by path relative to the root, with its
    /// inode (a hard-linked file appears under each of its names).
    fn reachable(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, PathBuf::new())];
        while let Some((dir, path)) = stack.pop() {
            let start = (dir, OsString::new());
            for ((parent, name), &id) in self.entries.range(start..) {
                if *parent != dir {
                    break;
                }
                let p = path.join(name);
                if self.inodes.get(&id).is_some_and(|i| i.dir) {
                    stack.push((id, p.clone()));
                }
                out.push((p, id));
            }
        }
        out.sort();
        out
    }

    /// A digest of what the tree holds, for telling states apart.
    pub fn digest(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (p, id) in self.reachable() {
            p.hash(&mut h);
            self.inodes.get(&id).hash(&mut h);
        }
        h.finish()
    }

    /// The inode named `name` in directory `parent`.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.entries.get(&(parent, OsString::from(name))).copied()
    }

    /// Writes the tree out under `dir` (which must not exist); returns the
    /// inode of every file and directory written, by path relative to `dir`.
    pub fn materialize(&self, dir: &Path) -> HashMap<PathBuf, u64> {
        fs::create_dir_all(dir).expect("create state directory");
        let mut first: HashMap<u64, PathBuf> = HashMap::new();
        let mut ids = HashMap::new();
        let mut dirs = Vec::new();
        for (rel, id) in self.reachable() {
            let inode = &self.inodes[&id];
            let p = dir.join(&rel);
            if inode.dir {
                fs::create_dir(&p).expect("create directory");
                dirs.push((p, inode.mode));
                ids.insert(rel, id);
            } else {
                if let Some(other) = first.get(&id) {
                    fs::hard_link(other, &p).expect("link");
                } else {
                    fs::write(&p, &inode.data).expect("write file");
                    fs::set_permissions(&p, fs::Permissions::from_mode(inode.mode)).expect("chmod");
                    first.insert(id, p.clone());
                }
                ids.insert(rel, id);
            }
        }
        for (p, mode) in dirs.into_iter().rev() {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod directory");
        }
        ids
    }
}

/// The parts of a write of `len` bytes at `offset` inside each sector.
fn pieces(offset: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = offset + len;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = ((at / SECTOR) + 1) * SECTOR;
        let piece = (at, next.min(end));
        at = piece.1;
        Some(piece)
    })
}

fn piece_count(offset: u64, len: u64) -> usize {
    pieces(offset, len).count()
}

fn is_meta(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. }
            | Op::Mkdir { .. }
            | Op::Unlink { .. }
            | Op::Rmdir { .. }
            | Op::Rename { .. }
            | Op::Link { .. }
            | Op::SetSize { .. }
            | Op::Chmod { .. }
    )
}

/// Whether `op` is a point a crash may come just before.
pub fn is_sync(op: &Op) -> bool {
    matches!(op, Op::Fsync { .. } | Op::FsyncDir { .. } | Op::SyncAll)
}

/// How much of an optional write reached the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// All of it.
    Whole,
    /// The sectors marked true.
    Sectors(Vec<bool>),
}

/// One crash state: what of the log reached the disk.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Operations `0..crash` were issued and returned.
    pub crash: usize,
    /// How many of the metadata operations before `crash` are in the state.
    pub meta: usize,
    /// Optional writes in the state, by log index.
    pub writes: BTreeMap<usize, Keep>,
}

/// What must and may be in a state crashing at one point.
#[derive(Debug, Clone)]
pub struct Point {
    pub crash: usize,
    pub forced_meta: usize,
    pub total_meta: usize,
    pub forced_writes: HashSet<usize>,
    pub optional_writes: Vec<usize>,
    /// Index of the last sync covering each file (fsync or fdatasync of it,
    /// or a syncfs) before the crash.
    pub last_sync: HashMap<u64, usize>,
    /// Index of the last syncfs before the crash.
    pub sync_all: Option<usize>,
}

impl Point {
    /// Analyses a crash just before `ops[crash]` (or at the end).
    pub fn at(ops: &[Op], initial: &Tree, crash: usize) -> Point {
        let mut meta = 0usize;
        let mut forced_meta = 0usize;
        let mut sizes: HashMap<u64, u64> = initial
            .inodes
            .iter()
            .map(|(&id, i)| (id, i.data.len() as u64))
            .collect();
        let mut dirty: HashSet<u64> = HashSet::new();
        let mut last_sync: HashMap<u64, usize> = HashMap::new();
        let mut sync_all = None;
        for (i, op) in ops[..crash].iter().enumerate() {
            if is_meta(op) {
                meta += 1;
            }
            match op {
                Op::Create { id, .. } => {
                    dirty.insert(*id);
                    sizes.insert(*id, 0);
                }
                Op::SetSize { id, size } => {
                    dirty.insert(*id);
                    sizes.insert(*id, *size);
                }
                Op::Write { id, offset, data } => {
                    let end = offset + data.len() as u64;
                    let s = sizes.entry(*id).or_insert(0);
                    if end > *s {
                        *s = end;
                        dirty.insert(*id);
                    }
                }
                Op::Fsync { id, datasync } => {
                    last_sync.insert(*id, i);
                    if !*datasync || dirty.contains(id) {
                        forced_meta = meta;
                        dirty.clear();
                    }
                }
                Op::FsyncDir { .. } => {
                    forced_meta = meta;
                    dirty.clear();
                }
                Op::SyncAll => {
                    forced_meta = meta;
                    dirty.clear();
                    sync_all = Some(i);
                }
                _ => {}
            }
        }
        let mut forced_writes = HashSet::new();
        let mut optional_writes = Vec::new();
        for (i, op) in ops[..crash].iter().enumerate() {
            if let Op::Write { id, .. } = op {
                let synced =
                    last_sync.get(id).is_some_and(|&s| s > i) || sync_all.is_some_and(|s| s > i);
                if synced {
                    forced_writes.insert(i);
                } else {
                    optional_writes.push(i);
                }
            }
        }
        Point {
            crash,
            forced_meta,
            total_meta: meta,
            forced_writes,
            optional_writes,
            last_sync,
            sync_all,
        }
    }

    /// The last sync covering file `id` before the crash, if any.
    pub fn synced_at(&self, id: u64) -> Option<usize> {
        let own = self.last_sync.get(&id).copied();
        match (own, self.sync_all) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The state this point leaves under `plan`.
    pub fn build(&self, ops: &[Op], initial: &Tree, plan: &Plan) -> Tree {
        let mut t = initial.clone();
        let mut meta = 0usize;
        for (i, op) in ops[..self.crash].iter().enumerate() {
            if is_meta(op) {
                if meta < plan.meta {
                    t.apply_meta(op);
                }
                meta += 1;
                continue;
            }
            if let Op::Write { id, offset, data } = op {
                let keep = if self.forced_writes.contains(&i) {
                    Some(&Keep::Whole)
                } else {
                    plan.writes.get(&i)
                };
                if let Some(k) = keep {
                    t.apply_write(*id, *offset, data, k);
                }
            }
        }
        t
    }

    fn torn(ops: &[Op], i: usize, rng: &mut Rng) -> Keep {
        let Op::Write { offset, data, .. } = &ops[i] else {
            return Keep::Whole;
        };
        let n = piece_count(*offset, data.len() as u64);
        let mut mask: Vec<bool> = (0..n).map(|_| rng.below(2) == 1).collect();
        if n > 1 && mask.iter().all(|&k| k) {
            let flip = rng.below(n as u64) as usize;
            mask[flip] = false;
        }
        Keep::Sectors(mask)
    }

    /// The states to try at this point: every combination when they are
    /// few, else the least and the most that may have reached the disk and
    /// a few random ones.
    pub fn plans(&self, ops: &[Op], rng: &mut Rng) -> Vec<Plan> {
        let metas = (self.total_meta - self.forced_meta + 1) as u64;
        let n = self.optional_writes.len();
        let combos = if n >= 16 {
            u64::MAX
        } else {
            metas.saturating_mul(1 << n)
        };
        let mut out = Vec::new();
        if combos <= EXHAUSTIVE {
            for meta in self.forced_meta..=self.total_meta {
                for bits in 0..(1u64 << n) {
                    let chosen: Vec<usize> = (0..n)
                        .filter(|k| bits & (1 << k) != 0)
                        .map(|k| self.optional_writes[k])
                        .collect();
                    let whole = chosen.iter().map(|&i| (i, Keep::Whole)).collect();
                    out.push(Plan {
                        crash: self.crash,
                        meta,
                        writes: whole,
                    });
                    if !chosen.is_empty() {
                        let torn = chosen
                            .iter()
                            .map(|&i| (i, Self::torn(ops, i, rng)))
                            .collect();
                        out.push(Plan {
                            crash: self.crash,
                            meta,
                            writes: torn,
                        });
                    }
                }
            }
            return out;
        }
        out.push(Plan {
            crash: self.crash,
            meta: self.forced_meta,
            writes: BTreeMap::new(),
        });
        out.push(Plan {
            crash: self.crash,
            meta: self.total_meta,
            writes: self
                .optional_writes
                .iter()
                .map(|&i| (i, Keep::Whole))
                .collect(),
        });
        for _ in 0..RANDOM_PER_POINT {
            let meta = self.forced_meta + rng.below(metas) as usize;
            let mut writes = BTreeMap::new();
            for &i in &self.optional_writes {
                match rng.below(4) {
                    0 | 1 => {}
                    2 => {
                        writes.insert(i, Keep::Whole);
                    }
                    _ => {
                        writes.insert(i, Self::torn(ops, i, rng));
                    }
                }
            }
            out.push(Plan {
                crash: self.crash,
                meta,
                writes,
            });
        }
        out
    }
}

/// Every point a crash may come: just before each sync, and at the end.
pub fn crash_points(ops: &[Op]) -> Vec<usize> {
    let mut v: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| is_sync(op))
        .map(|(i, _)| i)
        .collect();
    v.push(ops.len());
    v.dedup();
    v
}

/// A one-line description of a plan, for the test log and failures.
pub fn describe(ops: &[Op], point: &Point, plan: &Plan) -> String {
    let at = match ops.get(plan.crash) {
        Some(op) => format!("before op {} ({})", plan.crash, short(op)),
        None => format!("at the end ({} ops)", ops.len()),
    };
    let writes: Vec<String> = plan
        .writes
        .iter()
        .map(|(i, k)| match k {
            Keep::Whole => format!("{i}"),
            Keep::Sectors(m) => {
                format!("{i}:torn {}/{}", m.iter().filter(|&&b| b).count(), m.len())
            }
        })
        .collect();
    format!(
        "crash {at}; metadata {}/{} (forced {}); optional writes kept [{}] of {}",
        plan.meta,
        point.total_meta,
        point.forced_meta,
        writes.join(" "),
        point.optional_writes.len()
    )
}

/// A short name for an operation.
pub fn short(op: &Op) -> String {
    match op {
        Op::Create { name, id, .. } => format!("create {} #{id}", name.to_string_lossy()),
        Op::Mkdir { name, id, .. } => format!("mkdir {} #{id}", name.to_string_lossy()),
        Op::Unlink { name, .. } => format!("unlink {}", name.to_string_lossy()),
        Op::Rmdir { name, .. } => format!("rmdir {}", name.to_string_lossy()),
        Op::Rename { name, newname, .. } => format!(
            "rename {} -> {}",
            name.to_string_lossy(),
            newname.to_string_lossy()
        ),
        Op::Link { id, name, .. } => format!("link #{id} as {}", name.to_string_lossy()),
        Op::Write { id, offset, data } => format!("write #{id} {}+{}", offset, data.len()),
        Op::SetSize { id, size } => format!("set size #{id} {size}"),
        Op::Chmod { id, mode } => format!("chmod #{id} {mode:o}"),
        Op::Fsync { id, datasync } => {
            format!("{} #{id}", if *datasync { "fdatasync" } else { "fsync" })
        }
        Op::FsyncDir { id } => format!("fsync dir #{id}"),
        Op::SyncAll => "syncfs".into(),
    }
}

/// Whether directory `id` was made by the log (not there before).
pub fn made(ops: &[Op], id: u64) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Mkdir { id: i, .. } if *i == id))
}

/// Whether file `id` was created by the log (not there before).
pub fn created(ops: &[Op], id: u64) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Create { id: i, .. } if *i == id))
}

/// The operations on file `id` after its last sync before `point`'s crash:
/// whether it is in flight, and whether it was created since.
pub fn in_flight(ops: &[Op], point: &Point, id: u64) -> (bool, bool) {
    let since = point.synced_at(id).map(|s| s + 1).unwrap_or(0);
    let mut touched = false;
    let mut created = false;
    for op in &ops[since..point.crash] {
        match op {
            Op::Create { id: i, .. } if *i == id => {
                touched = true;
                created = true;
            }
            Op::Write { id: i, .. } | Op::SetSize { id: i, .. } | Op::Chmod { id: i, .. }
                if *i == id =>
            {
                touched = true
            }
            _ => {}
        }
    }
    (touched, created)
}
