//! `strata verify`: every header, block tag and name of a store's persistent
//! disks, checked in parallel; exactly the bad ones reported. Without the
//! vault only structure is checked. `--repair` restores directory ids from
//! their copies and moves files whose header is lost to `lost+found`; it
//! never deletes.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::{io, plain_path, unlock, DiskCtx, ForensicsError};
use crate::backing::{DIRID_BACKUP, DIRID_NAME};
use crate::format::offsets::{backing_len, blocks_for};
use crate::format::{BlockIndex, FileType, Header, BLOCK_SIZE, HEADER_LEN, STORED_BLOCK};
use crate::names::{self, BackingName};
use crate::store::{Config, DiskKind};
use crate::vault::Vault;

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Issue {
    /// `header`, `tag`, `truncated`, `length`, `name`, `orphan-sidecar`,
    /// `missing-dirid`, `type`.
    pub kind: String,
    /// The backing path.
    pub backing: PathBuf,
    /// The plaintext path, where names decrypt.
    pub path: Option<PathBuf>,
    /// The block index, for block problems.
    pub block: Option<u64>,
    /// What failed, in words.
    pub detail: String,
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

struct Entry {
    backing: PathBuf,
    rel: Vec<OsString>,
}

fn issue(
    kind: &str,
    backing: &Path,
    path: Option<PathBuf>,
    block: Option<u64>,
    detail: impl Into<String>,
) -> Issue {
    Issue {
        kind: kind.into(),
        backing: backing.to_path_buf(),
        path,
        block,
        detail: detail.into(),
    }
}

fn looks_encoded(name: &OsString) -> bool {
    use base64::Engine as _;
    let Some(s) = name.to_str() else { return false };
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s) {
        Ok(raw) => raw.len() >= 32 && (raw.len() - 16) % 16 == 0,
        Err(_) => false,
    }
}

/// The directory id and its copy, each when present and 16 bytes long.
fn dirid_copies(dir: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let read = |name| std::fs::read(dir.join(name)).ok().filter(|v| v.len() == 16);
    (read(DIRID_NAME), read(DIRID_BACKUP))
}

/// Walks one directory: checks its id and names, queues files.
fn walk(
    d: &Disk<'_>,
    dir: &Path,
    rel: &[OsString],
    issues: &mut Vec<Issue>,
    files: &mut Vec<Entry>,
) -> Result<(), ForensicsError> {
    let (primary, backup) = dirid_copies(dir);
    let plain_dir = d.ctx.and_then(|c| plain_path(c, rel));
    match (&primary, &backup) {
        (Some(a), Some(b)) if a != b => issues.push(issue(
            "missing-dirid",
            dir,
            plain_dir.clone(),
            None,
            "the directory id and its copy differ",
        )),
        (Some(_), Some(_)) => {}
        (None, Some(_)) => issues.push(issue(
            "missing-dirid",
            dir,
            plain_dir.clone(),
            None,
            ".dirid is missing or damaged (the copy is intact: --repair restores it)",
        )),
        (Some(_), None) => issues.push(issue(
            "missing-dirid",
            dir,
            plain_dir.clone(),
            None,
            ".dirid.bak is missing or damaged (--repair restores it)",
        )),
        (None, None) => issues.push(issue(
            "missing-dirid",
            dir,
            plain_dir.clone(),
            None,
            "both copies of the directory id are lost: names here cannot be decrypted",
        )),
    }
    let id = primary
        .or(backup)
        .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok());
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name();
        let path = e.path();
        let bytes = name.as_encoded_bytes();
        if names::is_sidecar(&name) {
            let base = &bytes[..bytes.len() - names::SIDECAR_SUFFIX.len()];
            if !dir.join(std::ffi::OsStr::from_bytes(base)).exists() {
                issues.push(issue(
                    "orphan-sidecar",
                    &path,
                    None,
                    None,
                    "long-name sidecar without its entry",
                ));
            }
            continue;
        }
        if bytes.first() == Some(&b'.') {
            continue;
        }
        let mut r = rel.to_vec();
        r.push(name.clone());
        let name_ok = if names::is_long(&name) {
            let side = names::read_sidecar(dir, &name);
            match (side, d.ctx, id) {
                (Err(e), _, _) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err("long name without its sidecar".to_string())
                }
                (Err(e), _, _) => Err(format!("long name whose sidecar cannot be used: {e}")),
                (Ok(s), Some(c), Some(id)) => c
                    .codec
                    .decrypt_long(&id, &name, &s)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                (Ok(_), _, _) => Ok(()),
            }
        } else {
            match (d.ctx, id) {
                (Some(c), Some(id)) => c
                    .codec
                    .decrypt(&id, &name)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                _ if looks_encoded(&name) => Ok(()),
                _ => Err("not an encrypted name".to_string()),
            }
        };
        if let Err(detail) = name_ok {
            issues.push(issue("name", &path, None, None, detail));
        }
        let m = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if m.is_dir() {
            walk(d, &path, &r, issues, files)?;
        } else if m.is_file() {
            files.push(Entry {
                backing: path,
                rel: r,
            });
        }
    }
    Ok(())
}

/// Checks one backing file; returns its issues and the blocks checked.
fn check_file(d: &Disk<'_>, e: &Entry) -> (Vec<Issue>, u64) {
    let mut out = Vec::new();
    let p = &e.backing;
    let plain = || d.ctx.and_then(|c| plain_path(c, &e.rel));
    let Ok(fd) = std::fs::File::open(p) else {
        return (vec![issue("header", p, plain(), None, "unreadable")], 0);
    };
    let Ok(meta) = fd.metadata() else {
        return (out, 0);
    };
    let len = meta.len();
    if len == 0 {
        return (out, 0);
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = fd.read_at(&mut buf, 0).unwrap_or(0);
    let header = match Header::decode(&buf[..n]) {
        Ok(h) => h,
        Err(err) => return (vec![issue("header", p, plain(), None, err.to_string())], 0),
    };
    let symlink_mark = meta.mode() & crate::fs::attr::SYMLINK_MARK != 0;
    if symlink_mark != (header.file_type == FileType::Symlink) {
        out.push(issue(
            "type",
            p,
            plain(),
            None,
            "the symlink mark (sticky bit) and the header's file type disagree",
        ));
    }
    if !(len - HEADER_LEN as u64).is_multiple_of(STORED_BLOCK as u64) {
        out.push(issue(
            "length",
            p,
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
    if len < backing_len(size) {
        let have = (len - HEADER_LEN as u64) / STORED_BLOCK as u64;
        out.push(issue(
            "truncated",
            p,
            plain(),
            Some(have),
            format!(
                "{len} bytes; the size needs {} (blocks {have}..{nblocks} missing)",
                backing_len(size)
            ),
        ));
    }
    let mut stored = vec![0u8; STORED_BLOCK];
    let mut checked = 0;
    for i in 0..nblocks {
        let at = BlockIndex(i).backing_offset();
        let Ok(n) = fd.read_at(&mut stored, at) else {
            break;
        };
        if n < STORED_BLOCK {
            break;
        }
        checked += 1;
        if stored.iter().all(|&b| b == 0) {
            continue;
        }
        let mut block = [0u8; BLOCK_SIZE];
        block.copy_from_slice(&stored[..BLOCK_SIZE]);
        if ctx
            .pipeline
            .decrypt_lower(&header.file_id, i, &mut block, &stored[BLOCK_SIZE..])
            .is_err()
        {
            out.push(issue(
                "tag",
                p,
                plain(),
                Some(i),
                "block failed its integrity tag",
            ));
        }
    }
    (out, checked)
}

/// Options of `verify`.
#[derive(Debug, Default)]
pub struct Options {
    /// Mend what can be mended.
    pub repair: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Verifies a store.
pub fn verify(
    store: &Path,
    vault: Option<&Vault>,
    opts: &Options,
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
    for d in &disks {
        let mut files = Vec::new();
        walk(d, &d.root, &[], &mut issues, &mut files)?;
        files_total += files.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let results: Vec<(Vec<Issue>, u64)> = files
            .par_iter()
            .map(|e| {
                let r = check_file(d, e);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if opts.progress && n.is_multiple_of(64) {
                    eprint!("\rverifying disk {}: {n}/{} files", d.name, files.len());
                }
                r
            })
            .collect();
        if opts.progress {
            eprintln!(
                "\rverified disk {}: {} files{}",
                d.name,
                files.len(),
                " ".repeat(10)
            );
        }
        for (i, b) in results {
            issues.extend(i);
            blocks_total += b;
        }
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
    for i in issues {
        match i.kind.as_str() {
            "missing-dirid" => {
                let dir = &i.backing;
                let (primary, backup) = dirid_copies(dir);
                match (primary, backup) {
                    (None, Some(b)) => {
                        crate::backing::atomic_write(&dir.join(DIRID_NAME), &b).map_err(io(dir))?;
                        done.push(format!(
                            "restored {} from its copy",
                            dir.join(DIRID_NAME).display()
                        ));
                    }
                    (Some(a), None) => {
                        crate::backing::atomic_write(&dir.join(DIRID_BACKUP), &a)
                            .map_err(io(dir))?;
                        done.push(format!(
                            "restored {} from the primary",
                            dir.join(DIRID_BACKUP).display()
                        ));
                    }
                    _ => done.push(format!(
                        "cannot repair the directory id of {}: no intact copy",
                        dir.display()
                    )),
                }
            }
            "header" => {
                let Some(d) = disks.iter().find(|d| i.backing.starts_with(&d.root)) else {
                    continue;
                };
                if !d.live {
                    done.push(format!(
                        "{}: header lost; left in place (snapshots and images are never changed)",
                        i.backing.display()
                    ));
                    continue;
                }
                let Some(ctx) = d.ctx else {
                    done.push(format!(
                        "{}: header lost; moving it to lost+found needs the vault",
                        i.backing.display()
                    ));
                    continue;
                };
                let lf = lost_found(ctx)?;
                let (id, _) = crate::backing::read_dirid(&lf).map_err(io(&lf))?;
                let where_ = i.path.clone().unwrap_or_else(|| {
                    i.backing
                        .strip_prefix(&d.root)
                        .map(Path::to_path_buf)
                        .unwrap_or_default()
                });
                let label = format!("header-lost{}", where_.to_string_lossy().replace('/', "%"));
                let label: String = label.chars().take(200).collect();
                let b = ctx
                    .codec
                    .encrypt(&id, std::ffi::OsStr::new(&label))
                    .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
                let dst = lf.join(b.entry_name());
                if let BackingName::Long { hashed, full } = &b {
                    crate::backing::atomic_write(
                        &lf.join(names::sidecar_name(hashed)),
                        full.as_bytes(),
                    )
                    .map_err(io(&lf))?;
                }
                std::fs::rename(&i.backing, &dst).map_err(io(&i.backing))?;
                done.push(format!(
                    "moved {} (header lost) to {}/lost+found/{label}",
                    i.backing.display(),
                    ctx.label
                ));
            }
            _ => {}
        }
    }
    Ok(done)
}

/// The disk's `lost+found` directory, created if missing.
fn lost_found(ctx: &DiskCtx) -> Result<PathBuf, ForensicsError> {
    let (id, _) = crate::backing::read_dirid(&ctx.root).map_err(io(&ctx.root))?;
    let b = ctx
        .codec
        .encrypt(&id, std::ffi::OsStr::new("lost+found"))
        .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
    let dir = ctx.root.join(b.entry_name());
    if !dir.exists() {
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        crate::backing::write_dirid(&dir).map_err(io(&dir))?;
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    Ok(dir)
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
