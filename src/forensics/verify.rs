//! `strata verify`: every header, block tag and name of a store's persistent
//! disks, checked in parallel; exactly the bad ones reported. Without the
//! vault only structure is checked. `--repair` restores directory ids from
//! their copies, makes blocks torn by a crash whole as a mount's recovery
//! does, and moves files whose header is lost to `lost+found`; it never
//! deletes.
//!
//! The tree is walked by descriptor (`backing::walk`): a store whose
//! backing paths are longer than PATH_MAX is checked whole, and nothing a
//! store holds is followed or opened unless it is a regular file.
//!
//! What a backing file can be found to be (the issue kinds):
//! - `empty`: zero bytes, in a store whose files get their header at
//!   creation (format 3 on; before, it is a file never written);
//! - `no-header`: bytes, but an all-zero header region (the mount reads it
//!   as an empty file);
//! - `header`: a header that does not decode or authenticate;
//! - `type`: a header of type symlink without the backing sticky bit, or a
//!   backing symlink (strata writes none);
//! - `length`: not a header plus whole stored blocks;
//! - `zeroed`: an all-zero stored block outside the header's hole range
//!   (version 2 headers; in version 1 every all-zero block is a hole);
//! - `truncated`: blocks the size needs missing outside the hole range;
//! - `torn`: inside the write window of a mount session that crashed, a
//!   block that fails its tag, is all zero or is missing (read as found by
//!   the mount; `--repair` seals it as found);
//! - `tag`: any other block that fails its tag.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::{io, unlock, DiskCtx, ForensicsError};
use crate::backing::walk::{self, join, Node, Visitor};
use crate::backing::{Dir, DIRID_BACKUP, DIRID_NAME};
use crate::file::{read_full_at, stored_is_zero, EncFile, FileCtx, OpenSpec};
use crate::format::offsets::{backing_len, blocks_for, TAG_SIZE};
use crate::format::{
    BlockIndex, BlockRange, FileType, Header, BLOCK_SIZE, HEADER_LEN, STORED_BLOCK,
};
use crate::names::{self, BackingName};
use crate::platform::errno;
use crate::store::config::HEADERS_AT_CREATE;
use crate::store::{Config, DiskKind};
use crate::vault::Vault;

/// Files checked in parallel at a time (each holds its directory open).
const BATCH: usize = 256;
/// Stored blocks read at a time.
const READ_BLOCKS: u64 = 64;

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Issue {
    /// `empty`, `no-header`, `header`, `type`, `length`, `zeroed`,
    /// `truncated`, `torn`, `tag`, `name`, `orphan-sidecar`,
    /// `missing-dirid`.
    pub kind: String,
    /// The backing path.
    pub backing: PathBuf,
    /// The plaintext path, where names decrypt.
    pub path: Option<PathBuf>,
    /// The block index, for block problems.
    pub block: Option<u64>,
    /// What failed, in words.
    pub detail: String,
    /// Where it is: the disk's index and the names below its root.
    #[serde(skip)]
    at: Option<(usize, Vec<OsString>)>,
}

/// What `verify` reports (the `--json` output).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The store.
    pub store: PathBuf,
    /// Whether tags and names were checked with the vault.
    pub with_vault: bool,
    /// Disks checked.
    pub disks: Vec<String>,
    /// Backing files checked.
    pub files: u64,
    /// Stored blocks checked.
    pub blocks: u64,
    /// Problems, sorted by path and block.
    pub issues: Vec<Issue>,
    /// Repairs done (with `--repair`).
    pub repairs: Vec<String>,
}

struct Disk<'a> {
    name: String,
    root: PathBuf,
    ctx: Option<&'a DiskCtx>,
    /// A disk (repairable), not a snapshot or an image (left as they are).
    live: bool,
}

/// A backing file queued for checking.
struct Queued {
    dir: Arc<Dir>,
    rel: Vec<OsString>,
    plain: Option<PathBuf>,
    mode: u32,
}

impl Queued {
    fn name(&self) -> &OsStr {
        self.rel.last().map(OsString::as_os_str).unwrap_or_default()
    }
}

fn issue(
    kind: &str,
    backing: PathBuf,
    path: Option<PathBuf>,
    block: Option<u64>,
    detail: impl Into<String>,
) -> Issue {
    Issue {
        kind: kind.into(),
        backing,
        path,
        block,
        detail: detail.into(),
        at: None,
    }
}

impl Issue {
    fn at(mut self, disk: usize, rel: &[OsString]) -> Issue {
        self.at = Some((disk, rel.to_vec()));
        self
    }
}

fn looks_encoded(name: &OsStr) -> bool {
    use base64::Engine as _;
    let Some(s) = name.to_str() else { return false };
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s) {
        Ok(raw) => raw.len() >= 32 && (raw.len() - 16) % 16 == 0,
        Err(_) => false,
    }
}

/// The directory id and its copy, each when present and 16 bytes long.
fn dirid_copies(dir: &Dir) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let read = |name: &str| {
        dir.read_small(OsStr::new(name), 16)
            .ok()
            .filter(|v| v.len() == 16)
    };
    (read(DIRID_NAME), read(DIRID_BACKUP))
}

/// What the walk knows of the directory it is in.
struct Here {
    id: Option<[u8; 16]>,
    plain: Option<PathBuf>,
    /// The directory, shared by the files queued from it.
    dir: Option<Arc<Dir>>,
}

/// The walk of one disk: checks directory ids and names, queues files and
/// checks them in parallel batches.
struct Walker<'a, 'd> {
    d: &'a Disk<'d>,
    index: usize,
    format: u16,
    issues: Vec<Issue>,
    queue: Vec<Queued>,
    files: u64,
    blocks: u64,
    progress: &'a dyn crate::progress::Progress,
    /// Files with several names already queued.
    linked: HashSet<(u64, u64)>,
}

impl Walker<'_, '_> {
    fn backing(&self, rel: &[OsString]) -> PathBuf {
        join(&self.d.root, rel)
    }

    fn flush(&mut self) {
        let d = self.d;
        let format = self.format;
        let progress = self.progress;
        let results: Vec<(Vec<Issue>, u64)> = self
            .queue
            .par_iter()
            .map(|q| {
                let r = check_file(d, format, q);
                progress.inc(1);
                r
            })
            .collect();
        self.files += self.queue.len() as u64;
        for (q, (found, b)) in self.queue.drain(..).zip(results) {
            let index = self.index;
            self.issues
                .extend(found.into_iter().map(|i| i.at(index, &q.rel)));
            self.blocks += b;
        }
    }
}

impl Visitor for Walker<'_, '_> {
    type Error = ForensicsError;
    type Scope = Here;

    fn enter(
        &mut self,
        dir: &Dir,
        rel: &[OsString],
        here: &mut Here,
    ) -> Result<(), ForensicsError> {
        let (primary, backup) = dirid_copies(dir);
        let problem = match (&primary, &backup) {
            (Some(a), Some(b)) if a != b => Some("the directory id and its copy differ"),
            (Some(_), Some(_)) => None,
            (None, Some(_)) => {
                Some(".dirid is missing or damaged (the copy is intact: --repair restores it)")
            }
            (Some(_), None) => Some(".dirid.bak is missing or damaged (--repair restores it)"),
            (None, None) => {
                Some("both copies of the directory id are lost: names here cannot be decrypted")
            }
        };
        if let Some(p) = problem {
            let i = issue(
                "missing-dirid",
                self.backing(rel),
                here.plain.clone(),
                None,
                p,
            );
            self.issues.push(i.at(self.index, rel));
        }
        here.id = primary
            .or(backup)
            .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok());
        Ok(())
    }

    fn entry(&mut self, n: &Node<'_>, here: &mut Here) -> Result<Option<Here>, ForensicsError> {
        let bytes = n.name.as_bytes();
        if names::is_sidecar(n.name) {
            let base = &bytes[..bytes.len() - names::SIDECAR_SUFFIX.len()];
            if n.parent.stat_at(OsStr::from_bytes(base)).is_err() {
                self.issues.push(issue(
                    "orphan-sidecar",
                    self.backing(n.rel),
                    None,
                    None,
                    "long-name sidecar without its entry",
                ));
            }
            return Ok(None);
        }
        if bytes.first() == Some(&b'.') {
            return Ok(None);
        }
        let plain_name = if names::is_long(n.name) {
            let side = names::read_sidecar_at(n.parent, n.name);
            match (side, self.d.ctx, here.id) {
                (Err(e), _, _) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err("long name without its sidecar".to_string())
                }
                (Err(e), _, _) => Err(format!("long name whose sidecar cannot be used: {e}")),
                (Ok(s), Some(c), Some(id)) => c
                    .codec
                    .decrypt_long(&id, n.name, &s)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                (Ok(_), _, _) => Ok(None),
            }
        } else {
            match (self.d.ctx, here.id) {
                (Some(c), Some(id)) => c
                    .codec
                    .decrypt(&id, n.name)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                _ if looks_encoded(n.name) => Ok(None),
                _ => Err("not an encrypted name".to_string()),
            }
        };
        let plain = match plain_name {
            Ok(Some(p)) => here.plain.as_ref().map(|d| d.join(p)),
            Ok(None) => None,
            Err(detail) => {
                self.issues
                    .push(issue("name", self.backing(n.rel), None, None, detail));
                None
            }
        };
        match n.kind() {
            rustix::fs::FileType::Directory => {
                return Ok(Some(Here {
                    id: None,
                    plain,
                    dir: None,
                }))
            }
            rustix::fs::FileType::RegularFile => {
                // A file with several names is checked (and reported) once,
                // under the first name met.
                if n.stat.st_nlink > 1 && !self.linked.insert(walk::inode_key(n.stat)) {
                    return Ok(None);
                }
                let dir = match &here.dir {
                    Some(d) => d.clone(),
                    None => {
                        let d = Arc::new(n.parent.try_clone().map_err(io(&self.backing(n.rel)))?);
                        here.dir = Some(d.clone());
                        d
                    }
                };
                self.queue.push(Queued {
                    dir,
                    rel: n.rel.to_vec(),
                    plain,
                    mode: crate::platform::mode::of(n.stat),
                });
                if self.queue.len() >= BATCH {
                    here.dir = None;
                    self.flush();
                }
            }
            rustix::fs::FileType::Symlink => self.issues.push(issue(
                "type",
                self.backing(n.rel),
                plain,
                None,
                "a symlink in the backing store (strata writes none; it is never followed)",
            )),
            _ => {}
        }
        Ok(None)
    }

    fn leave(&mut self, _: &Dir, _: &[OsString], _: Here) -> Result<(), ForensicsError> {
        Ok(())
    }
}

/// The blocks of a file's header window whose session crashed.
fn crashed_window(h: &Header, crashed: &HashSet<u64>) -> BlockRange {
    if h.window.session != 0 && crashed.contains(&h.window.session) {
        h.window.blocks
    } else {
        BlockRange::EMPTY
    }
}

/// Missing torn blocks reported one by one in a file; past this, the rest
/// of the run is one issue.
const MAX_TORN_MISSING: u64 = 4096;

/// The blocks of `a` that are also in `b`.
fn intersect(a: BlockRange, b: BlockRange) -> BlockRange {
    let r = BlockRange {
        first: a.first.max(b.first),
        end: a.end.min(b.end),
    };
    if r.is_empty() {
        BlockRange::EMPTY
    } else {
        r
    }
}

/// The blocks of `a` not in `b`: up to two ranges.
fn minus(a: BlockRange, b: BlockRange) -> Vec<BlockRange> {
    if a.is_empty() {
        return Vec::new();
    }
    let cut = intersect(a, b);
    if cut.is_empty() {
        return vec![a];
    }
    [
        BlockRange {
            first: a.first,
            end: cut.first,
        },
        BlockRange {
            first: cut.end,
            end: a.end,
        },
    ]
    .into_iter()
    .filter(|r| !r.is_empty())
    .collect()
}

/// Checks one backing file; returns its issues and the blocks checked.
fn check_file(d: &Disk<'_>, format: u16, q: &Queued) -> (Vec<Issue>, u64) {
    let mut out = Vec::new();
    let p = join(&d.root, &q.rel);
    let plain = || q.plain.clone();
    let fd = match q.dir.open_file(q.name(), false) {
        Ok(f) => f,
        Err(e) => {
            return (
                vec![issue(
                    "header",
                    p,
                    plain(),
                    None,
                    format!("unreadable: {e}"),
                )],
                0,
            )
        }
    };
    let len = match fd.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return (
                vec![issue(
                    "header",
                    p,
                    plain(),
                    None,
                    format!("unreadable: {e}"),
                )],
                0,
            )
        }
    };
    if len == 0 {
        if format >= HEADERS_AT_CREATE {
            out.push(issue(
                "empty",
                p,
                plain(),
                None,
                "zero bytes: every file of this store is given its header when created",
            ));
        }
        return (out, 0);
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = match read_full_at(&fd, &mut buf, 0) {
        Ok(n) => n,
        Err(e) => {
            return (
                vec![issue(
                    "header",
                    p,
                    plain(),
                    None,
                    format!("unreadable: {e}"),
                )],
                0,
            )
        }
    };
    if buf[..n].iter().all(|&b| b == 0) {
        return (
            vec![issue(
                "no-header",
                p,
                plain(),
                None,
                format!("{len} bytes with an all-zero header region (read as an empty file)"),
            )],
            0,
        );
    }
    let header = match Header::decode(&buf[..n]) {
        Ok(h) => h,
        Err(err) => return (vec![issue("header", p, plain(), None, err.to_string())], 0),
    };
    let sticky = q.mode & crate::fs::attr::SYMLINK_MARK != 0;
    if header.file_type == FileType::Symlink && !sticky {
        out.push(issue(
            "type",
            p.clone(),
            plain(),
            None,
            "the header says symlink but the backing file lacks the symlink mark (sticky bit)",
        ));
    }
    if !(len - HEADER_LEN as u64).is_multiple_of(STORED_BLOCK as u64) {
        out.push(issue(
            "length",
            p.clone(),
            plain(),
            None,
            format!("{len} bytes is not a header plus whole blocks"),
        ));
    }
    let Some(ctx) = d.ctx else { return (out, 0) };
    let size = match ctx.pipeline.open_header(&header) {
        Ok(s) => s,
        Err(err) => {
            out.push(issue("header", p, plain(), None, err.to_string()));
            return (out, 0);
        }
    };
    let nblocks = blocks_for(size);
    let have = (len - HEADER_LEN as u64) / STORED_BLOCK as u64;
    let crashed = crashed_window(&header, &ctx.crashed);
    // A version 1 header's hole range is every block, but only for all-zero
    // blocks: a missing block is always damage there.
    let v1 = header.holes == BlockRange::ALL;
    // Missing blocks, as ranges (a sparse file may be petabytes long):
    // those the size needs, less the hole range (version 2), split by the
    // crashed window into torn ones and truncation.
    let needed = BlockRange {
        first: have.min(nblocks),
        end: nblocks,
    };
    let missing = if v1 {
        vec![needed]
    } else {
        minus(needed, header.holes)
    };
    let mut first_missing = None;
    let mut missing_count = 0u64;
    for r in missing {
        let torn = intersect(r, crashed);
        let shown_end = torn.end.min(torn.first.saturating_add(MAX_TORN_MISSING));
        for i in torn.first..shown_end {
            out.push(issue(
                "torn",
                p.clone(),
                plain(),
                Some(i),
                "missing, inside the write window of a session that crashed",
            ));
        }
        if shown_end < torn.end {
            out.push(issue(
                "torn",
                p.clone(),
                plain(),
                Some(shown_end),
                format!(
                    "blocks {shown_end}..{} missing, inside the write window of a session that crashed",
                    torn.end
                ),
            ));
        }
        for rest in minus(r, crashed) {
            first_missing = Some(first_missing.map_or(rest.first, |f: u64| f.min(rest.first)));
            missing_count += rest.end - rest.first;
        }
    }
    if let Some(first) = first_missing {
        out.push(issue(
            "truncated",
            p.clone(),
            plain(),
            Some(first),
            format!(
                "{len} bytes; the size needs {}: {missing_count} block(s) missing from block {first} on",
                backing_len(size),
            ),
        ));
    }
    let mut stored = vec![0u8; READ_BLOCKS as usize * STORED_BLOCK];
    let mut checked = 0;
    let mut at = 0;
    let end = have.min(nblocks);
    while at < end {
        let count = (end - at).min(READ_BLOCKS);
        let want = count as usize * STORED_BLOCK;
        let got = match read_full_at(&fd, &mut stored[..want], BlockIndex(at).backing_offset()) {
            Ok(n) => n,
            Err(e) => {
                out.push(issue(
                    "tag",
                    p.clone(),
                    plain(),
                    Some(at),
                    format!("unreadable: {e}"),
                ));
                break;
            }
        };
        // The tags of the blocks not all zero, hashed side by side; each
        // block notes where its tag is.
        /// What a block is checked by.
        enum Check {
            /// All zero: a hole or damage.
            Zero,
            /// Its tag, the `usize`th computed.
            Tag(usize),
            /// Nothing (a short block: cannot happen with whole stored
            /// blocks, and reported as failing if it did).
            Unchecked,
        }
        let mut blocks: Vec<(u64, &[u8], Check)> = Vec::new();
        let mut sealed: Vec<(u64, &[u8; BLOCK_SIZE])> = Vec::new();
        for (k, s) in stored[..got].chunks_exact(STORED_BLOCK).enumerate() {
            let i = at + k as u64;
            let check = match (stored_is_zero(s), s.first_chunk::<BLOCK_SIZE>()) {
                (true, _) => Check::Zero,
                (false, Some(ct)) => {
                    sealed.push((i, ct));
                    Check::Tag(sealed.len() - 1)
                }
                (false, None) => Check::Unchecked,
            };
            blocks.push((i, s, check));
        }
        let mut tags = vec![[0u8; TAG_SIZE]; sealed.len()];
        ctx.pipeline.block_tags(&header.file_id, &sealed, &mut tags);
        for (i, s, check) in blocks {
            checked += 1;
            let bad = match check {
                Check::Tag(t) if crate::crypto::tag::ct_eq(&tags[t], &s[BLOCK_SIZE..]) => None,
                Check::Tag(_) | Check::Unchecked if crashed.contains(i) => Some((
                    "torn",
                    "fails its tag inside the write window of a session that crashed",
                )),
                Check::Tag(_) | Check::Unchecked => Some(("tag", "block failed its integrity tag")),
                Check::Zero if header.holes.contains(i) => None,
                Check::Zero if crashed.contains(i) => Some((
                    "torn",
                    "all zero, inside the write window of a session that crashed",
                )),
                Check::Zero => Some(("zeroed", "all zero outside the file's recorded holes")),
            };
            if let Some((kind, detail)) = bad {
                out.push(issue(kind, p.clone(), plain(), Some(i), detail));
            }
        }
        if got < want {
            break;
        }
        at += count;
    }
    (out, checked)
}

/// The files a verify of the tree at `root` checks (as [`Walker`] queues
/// them: user entries, a file with several names once), for a progress
/// total.
fn files_to_check(root: &Dir, shown: &Path) -> Result<u64, ForensicsError> {
    struct Counter(u64, HashSet<(u64, u64)>);
    impl Visitor for Counter {
        type Error = ForensicsError;
        type Scope = ();
        fn entry(&mut self, n: &Node<'_>, _: &mut ()) -> Result<Option<()>, ForensicsError> {
            if names::is_sidecar(n.name) || n.name.as_bytes().first() == Some(&b'.') {
                return Ok(None);
            }
            match n.kind() {
                rustix::fs::FileType::Directory => return Ok(Some(())),
                rustix::fs::FileType::RegularFile
                    if n.stat.st_nlink <= 1 || self.1.insert(walk::inode_key(n.stat)) =>
                {
                    self.0 += 1;
                }
                _ => {}
            }
            Ok(None)
        }
    }
    let mut c = Counter(0, HashSet::new());
    walk::walk(root, shown, (), &mut c)?;
    Ok(c.0)
}

/// Options of `verify`.
#[derive(Debug, Default)]
pub struct Options {
    /// Mend what can be mended.
    pub repair: bool,
}

/// Verifies a store; `progress` counts the files checked.
pub fn verify(
    store: &Path,
    vault: Option<&Vault>,
    opts: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Report, ForensicsError> {
    let config = Config::read(store).map_err(crate::store::StoreError::from)?;
    if opts.repair && crate::store::rekey::store_mounted(store) {
        return Err(ForensicsError::Invalid(format!(
            "store {} is mounted: repair is offline; unmount it first",
            store.display()
        )));
    }
    let ctxs = match vault {
        Some(v) => unlock(store, v)?.1,
        None => Vec::new(),
    };
    let mut all: Vec<(String, PathBuf, bool)> = config
        .disks
        .iter()
        .filter(|d| d.kind != DiskKind::Temp)
        .map(|d| {
            (
                d.name.clone(),
                crate::store::disk_root(store, &d.name),
                true,
            )
        })
        .collect();
    all.extend(config.snapshots.iter().map(|s| {
        (
            format!(".snapshots/{}/{}", s.source.name, s.name),
            crate::store::snapshots::snapshot_root(store, &s.source.name, &s.name),
            false,
        )
    }));
    all.extend(config.images.iter().map(|i| {
        (
            format!("images/{}", i.name),
            crate::store::snapshots::image_root(store, &i.name),
            false,
        )
    }));
    let disks: Vec<Disk<'_>> = all
        .into_iter()
        .map(|(name, root, live)| Disk {
            ctx: ctxs.iter().find(|c| c.label == name),
            name,
            root,
            live,
        })
        .collect();
    let mut issues = Vec::new();
    let mut files_total = 0;
    let mut blocks_total = 0;
    let mut counted = 0;
    for d in &disks {
        let root = Dir::open(&d.root).map_err(io(&d.root))?;
        counted += files_to_check(&root, &d.root)?;
    }
    progress.total(counted);
    for (index, d) in disks.iter().enumerate() {
        let root = Dir::open(&d.root).map_err(io(&d.root))?;
        let mut w = Walker {
            d,
            index,
            format: config.format,
            issues: Vec::new(),
            queue: Vec::new(),
            files: 0,
            blocks: 0,
            progress,
            linked: HashSet::new(),
        };
        let here = Here {
            id: None,
            plain: d.ctx.map(|c| PathBuf::from(&c.label)),
            dir: None,
        };
        walk::walk(&root, &d.root, here, &mut w)?;
        w.flush();
        issues.extend(w.issues);
        files_total += w.files;
        blocks_total += w.blocks;
    }
    issues.sort_by(|a, b| (&a.backing, a.block).cmp(&(&b.backing, b.block)));
    let mut repairs = Vec::new();
    if opts.repair {
        repairs = repair(&disks, &issues)?;
    }
    Ok(Report {
        store: store.to_path_buf(),
        with_vault: vault.is_some(),
        disks: disks.iter().map(|d| d.name.clone()).collect(),
        files: files_total,
        blocks: blocks_total,
        issues,
        repairs,
    })
}

fn repair(disks: &[Disk<'_>], issues: &[Issue]) -> Result<Vec<String>, ForensicsError> {
    let mut done = Vec::new();
    let mut torn_done: HashSet<(usize, Vec<OsString>)> = HashSet::new();
    for i in issues {
        let Some((index, rel)) = &i.at else { continue };
        let Some(d) = disks.get(*index) else { continue };
        let shown = i.backing.display();
        match i.kind.as_str() {
            "missing-dirid" => {
                let dir = Dir::open(&d.root)
                    .and_then(|r| walk::open_rel(&r, rel))
                    .map_err(io(&i.backing))?;
                match dirid_copies(&dir) {
                    (None, Some(b)) => {
                        dir.replace(OsStr::new(DIRID_NAME), &b)
                            .map_err(io(&i.backing))?;
                        done.push(format!("restored {shown}/{DIRID_NAME} from its copy"));
                    }
                    (Some(a), None) => {
                        dir.replace(OsStr::new(DIRID_BACKUP), &a)
                            .map_err(io(&i.backing))?;
                        done.push(format!("restored {shown}/{DIRID_BACKUP} from the primary"));
                    }
                    _ => done.push(format!(
                        "cannot repair the directory id of {shown}: no intact copy"
                    )),
                }
            }
            "torn" => {
                if !torn_done.insert((*index, rel.clone())) {
                    continue;
                }
                if !d.live {
                    done.push(format!(
                        "{shown}: torn blocks left in place (snapshots and images are never changed)"
                    ));
                    continue;
                }
                let Some(ctx) = d.ctx else { continue };
                let n = issues
                    .iter()
                    .filter(|j| j.kind == "torn" && j.at == i.at)
                    .count();
                if mend_torn(d, ctx, rel, &i.backing)? {
                    done.push(format!(
                        "{shown}: {n} block(s) torn or left unwritten by a crash sealed as found"
                    ));
                }
            }
            "header" => {
                if !d.live {
                    done.push(format!(
                        "{shown}: header lost; left in place (snapshots and images are never changed)"
                    ));
                    continue;
                }
                let Some(ctx) = d.ctx else {
                    done.push(format!(
                        "{shown}: header lost; moving it to lost+found needs the vault"
                    ));
                    continue;
                };
                done.push(to_lost_found(d, ctx, i, rel)?);
            }
            _ => {}
        }
    }
    Ok(done)
}

/// The open parent directory of the entry `rel` of disk `d`, and its name.
fn parent_of<'r>(d: &Disk<'_>, rel: &'r [OsString]) -> std::io::Result<(Dir, &'r OsStr)> {
    let Some((name, dirs)) = rel.split_last() else {
        return Err(std::io::Error::from_raw_os_error(errno::EINVAL));
    };
    let root = Dir::open(&d.root)?;
    Ok((walk::open_rel(&root, dirs)?, name.as_os_str()))
}

/// Makes a file's blocks in a crashed session's window whole, the way a
/// mount's first write after the crash does.
fn mend_torn(
    d: &Disk<'_>,
    ctx: &DiskCtx,
    rel: &[OsString],
    shown: &Path,
) -> Result<bool, ForensicsError> {
    let invalid = |e: crate::file::FileError| ForensicsError::Invalid(e.to_string());
    let (dir, name) = parent_of(d, rel).map_err(io(shown))?;
    let fd = dir.open_file(name, true).map_err(io(shown))?;
    let label = shown.display().to_string();
    let kind = match crate::file::read_header(&fd, &label, &ctx.pipeline).map_err(invalid)? {
        crate::file::Stored::Header(h, _) => h.file_type,
        _ => return Ok(false),
    };
    let f = EncFile::open(
        OpenSpec {
            fd,
            label,
            ino: 0,
            writable: true,
            size_cell: None,
        },
        FileCtx::offline(ctx.pipeline.clone(), ctx.crashed.clone()),
        kind,
    )
    .map_err(invalid)?;
    f.recover_crashed().map_err(invalid)
}

/// Moves a file whose header is lost to its disk's `lost+found`.
fn to_lost_found(
    d: &Disk<'_>,
    ctx: &DiskCtx,
    i: &Issue,
    rel: &[OsString],
) -> Result<String, ForensicsError> {
    let lf = lost_found(ctx)?;
    let (id, _) = crate::backing::read_dirid_at(&lf).map_err(io(&ctx.root))?;
    let where_ = i.path.clone().unwrap_or_else(|| rel.iter().collect());
    let label = format!("header-lost{}", where_.to_string_lossy().replace('/', "%"));
    let label: String = label.chars().take(200).collect();
    let b = ctx
        .codec
        .encrypt(&id, OsStr::new(&label))
        .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
    if let BackingName::Long { hashed, full } = &b {
        lf.replace(&names::sidecar_name(hashed), full.as_bytes())
            .map_err(io(&ctx.root))?;
    }
    let (dir, name) = parent_of(d, rel).map_err(io(&i.backing))?;
    dir.rename(
        name,
        &lf,
        OsStr::new(b.entry_name()),
        crate::platform::Rename::NoReplace,
    )
    .map_err(io(&i.backing))?;
    lf.sync().map_err(io(&ctx.root))?;
    dir.sync().map_err(io(&i.backing))?;
    Ok(format!(
        "moved {} (header lost) to {}/lost+found/{label}",
        i.backing.display(),
        ctx.label
    ))
}

/// The disk's `lost+found` directory, created if missing.
fn lost_found(ctx: &DiskCtx) -> Result<Dir, ForensicsError> {
    let root = Dir::open(&ctx.root).map_err(io(&ctx.root))?;
    let (id, _) = crate::backing::read_dirid_at(&root).map_err(io(&ctx.root))?;
    let b = ctx
        .codec
        .encrypt(&id, OsStr::new("lost+found"))
        .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
    let name = OsStr::new(b.entry_name());
    if let BackingName::Long { hashed, full } = &b {
        root.replace(&names::sidecar_name(hashed), full.as_bytes())
            .map_err(io(&ctx.root))?;
    }
    match root.open_dir(name) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            root.mkdir(name, 0o700).map_err(io(&ctx.root))?;
            let d = root.open_dir(name).map_err(io(&ctx.root))?;
            crate::backing::init_dirid(&d).map_err(io(&ctx.root))?;
            root.sync().map_err(io(&ctx.root))?;
            Ok(d)
        }
        Err(e) => Err(io(&ctx.root)(e)),
    }
}

/// Prints a report as text.
pub fn print(r: &Report) {
    println!(
        "verified {} files, {} blocks on disks {} of {}{}",
        r.files,
        r.blocks,
        r.disks.join(", "),
        r.store.display(),
        if r.with_vault {
            ""
        } else {
            " (structure only: give the vault to check tags and names)"
        }
    );
    for i in &r.issues {
        let what = match (&i.path, i.block) {
            (Some(p), Some(b)) => format!("{} block {b}", p.display()),
            (Some(p), None) => p.display().to_string(),
            (None, Some(b)) => format!("block {b}"),
            (None, None) => String::new(),
        };
        println!(
            "{:<15} {} {what}: {}",
            i.kind,
            i.backing.display(),
            i.detail
        );
    }
    for r in &r.repairs {
        println!("repaired        {r}");
    }
    if r.issues.is_empty() {
        println!("clean");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, end: u64) -> BlockRange {
        BlockRange { first, end }
    }

    #[test]
    fn range_arithmetic_splits_and_clips() {
        assert_eq!(minus(r(0, 10), r(3, 5)), [r(0, 3), r(5, 10)]);
        assert_eq!(minus(r(0, 10), r(0, 20)), Vec::<BlockRange>::new());
        assert_eq!(minus(r(4, 10), r(0, 6)), [r(6, 10)]);
        assert_eq!(minus(r(4, 10), BlockRange::EMPTY), [r(4, 10)]);
        assert_eq!(minus(BlockRange::EMPTY, r(0, 3)), Vec::<BlockRange>::new());
        assert_eq!(intersect(r(0, 10), r(8, u64::MAX)), r(8, 10));
        assert!(intersect(r(0, 3), r(5, 9)).is_empty());
        // A petabyte-sized hole costs nothing.
        assert_eq!(
            minus(r(1, 1 << 40), r(1, 1 << 40)),
            Vec::<BlockRange>::new()
        );
    }
}
