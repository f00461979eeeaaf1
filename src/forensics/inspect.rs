//! `strata inspect`: decode one backing file's header without keys; with the
//! vault, verify it, name it and decrypt it. Or map a plaintext path to its
//! backing file.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{io, locate, plain_path, unlock, ForensicsError};
use crate::format::offsets::backing_len;
use crate::format::{Header, HEADER_LEN, STORED_BLOCK};
use crate::vault::Vault;

/// One layer as a header records it.
#[derive(Debug, Serialize)]
pub struct LayerInfo {
    /// Layer name.
    pub layer: String,
    /// DEK generation recorded in the header.
    pub dek_generation: u32,
    /// The vault key wrapping that DEK, from the store's config (if found).
    pub key: Option<String>,
    /// Its version.
    pub key_version: Option<u32>,
}

/// What `inspect` reports (the `--json` output).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The backing file.
    pub backing: PathBuf,
    /// Store and disk, when the file sits in a store.
    pub store: Option<PathBuf>,
    /// Disk name.
    pub disk: Option<String>,
    /// Format version.
    pub format: u16,
    /// `regular` or `symlink`.
    pub file_type: String,
    /// File id, hex.
    pub file_id: String,
    /// Layers in write order.
    pub layers: Vec<LayerInfo>,
    /// Backing length in bytes.
    pub backing_size: u64,
    /// Whole stored blocks present.
    pub blocks: u64,
    /// Always true for a decoded header.
    pub header_tag_present: bool,
    /// Logical size, with the vault ("sealed" in text output otherwise).
    pub size: Option<u64>,
    /// With the vault: whether the header tag verified.
    pub header_ok: Option<bool>,
    /// With the vault: blocks whose tag failed, or that are missing.
    pub bad_blocks: Option<Vec<u64>>,
    /// With the vault: the decrypted path.
    pub plain_path: Option<PathBuf>,
}

/// Options of `inspect` on a backing file.
#[derive(Debug, Default)]
pub struct Options {
    /// Write this block's plaintext out.
    pub block: Option<u64>,
    /// Where `block` goes (stdout if None).
    pub out: Option<PathBuf>,
    /// Write the whole plaintext here.
    pub decrypt_to: Option<PathBuf>,
}

/// Inspects a backing file.
pub fn inspect(
    path: &Path,
    vault: Option<&Vault>,
    opts: &Options,
) -> Result<Report, ForensicsError> {
    let fd = std::fs::File::open(path).map_err(io(path))?;
    let len = fd.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Err(ForensicsError::Invalid(format!(
            "{}: empty backing file (damage in a store of format 3 or later, where files get their header when created; a file never written in older stores)",
            path.display()
        )));
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = fd.read_at(&mut buf, 0).map_err(io(path))?;
    if buf[..n].iter().all(|&b| b == 0) {
        return Err(ForensicsError::Invalid(format!(
            "{}: no header (the header region is all zeros: a creation a crash cut short, or damage)",
            path.display()
        )));
    }
    let header = Header::decode(&buf[..n])
        .map_err(|e| ForensicsError::Invalid(format!("{}: {e}", path.display())))?;
    let loc = locate(path);
    let config = loc
        .as_ref()
        .and_then(|l| crate::store::Config::read(&l.store).ok());
    let disk_conf = match (&config, &loc) {
        (Some(c), Some(l)) => c.disk(&l.disk).cloned(),
        _ => None,
    };
    let layers = crate::layers::Layer::ALL
        .iter()
        .filter(|l| header.layers.has(l.bit()))
        .map(|l| {
            let w = disk_conf
                .as_ref()
                .and_then(|d| d.layers.iter().find(|w| w.layer == *l));
            LayerInfo {
                layer: l.name().to_string(),
                dek_generation: header.generations[l.slot()],
                key: w.map(|w| w.key.name.clone()),
                key_version: w.map(|w| w.key.version),
            }
        })
        .collect();
    let mut report = Report {
        backing: path.to_path_buf(),
        store: loc.as_ref().map(|l| l.store.clone()),
        disk: loc.as_ref().map(|l| l.disk.clone()),
        format: header.version,
        file_type: match header.file_type {
            crate::format::FileType::Regular => "regular".into(),
            crate::format::FileType::Symlink => "symlink".into(),
        },
        file_id: hex::encode(header.file_id),
        layers,
        backing_size: len,
        blocks: len.saturating_sub(HEADER_LEN as u64) / STORED_BLOCK as u64,
        header_tag_present: true,
        size: None,
        header_ok: None,
        bad_blocks: None,
        plain_path: None,
    };
    let Some(vault) = vault else {
        return Ok(report);
    };
    let loc = loc.ok_or_else(|| {
        ForensicsError::Invalid(format!("{} is not inside a strata store", path.display()))
    })?;
    let (_, disks) = unlock(&loc.store, vault)?;
    let ctx = disks
        .iter()
        .find(|d| d.config.name == loc.disk)
        .ok_or_else(|| {
            ForensicsError::Invalid(format!(
                "disk {} cannot be decrypted (temp disks use a per-mount key; a revoked disk stays sealed)",
                loc.disk
            ))
        })?;
    report.plain_path = plain_path(ctx, &loc.rel);
    let size = match ctx.pipeline.open_header(&header) {
        Ok(s) => s,
        Err(_) => {
            report.header_ok = Some(false);
            return Ok(report);
        }
    };
    report.header_ok = Some(true);
    report.size = Some(size);
    let file = crate::file::EncFile::open(
        crate::file::OpenSpec {
            fd,
            label: path.display().to_string(),
            ino: 0,
            writable: false,
            size_cell: None,
        },
        crate::file::FileCtx::offline(ctx.pipeline.clone(), ctx.crashed.clone()),
        header.file_type,
    )
    .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
    let nblocks = crate::format::offsets::blocks_for(size);
    let mut bad = Vec::new();
    for b in 0..nblocks {
        if file.read(b * 4096, 1).is_err() {
            bad.push(b);
        }
    }
    if len < backing_len(size) {
        report.blocks = report.blocks.min(nblocks);
    }
    report.bad_blocks = Some(bad);
    if let Some(b) = opts.block {
        if b >= nblocks {
            return Err(ForensicsError::Invalid(format!(
                "block {b} is past the end ({nblocks} blocks)"
            )));
        }
        let data = file
            .read(b * 4096, 4096)
            .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
        match &opts.out {
            Some(o) => private_file(o)
                .and_then(|mut f| f.write_all(&data))
                .map_err(io(o))?,
            None => std::io::stdout()
                .write_all(&data)
                .map_err(io(Path::new("stdout")))?,
        }
    }
    if let Some(to) = &opts.decrypt_to {
        let mut out = private_file(to).map_err(io(to))?;
        let mut off = 0;
        while off < size {
            let chunk = file
                .read(off, 1 << 20)
                .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
            out.write_all(&chunk).map_err(io(to))?;
            off += chunk.len() as u64;
            if chunk.is_empty() {
                break;
            }
        }
    }
    Ok(report)
}

/// Creates (or truncates) a file for plaintext, readable by its owner
/// only: mode 0600 whatever the umask, and a file that already exists is
/// set to 0600 before anything is written to it.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through `open`; a device or a pipe
    // (`--out /dev/stdout`) is left as it is.
    if f.metadata()?.is_file() {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Prints a report as text.
pub fn print(r: &Report) {
    println!("backing file   {}", r.backing.display());
    if let (Some(s), Some(d)) = (&r.store, &r.disk) {
        println!("store          {} (disk {d})", s.display());
    }
    println!("format         {}", r.format);
    println!("type           {}", r.file_type);
    println!("file id        {}", r.file_id);
    for l in &r.layers {
        let key = match (&l.key, l.key_version) {
            (Some(k), Some(v)) => format!("key {k} version {v}"),
            _ => "key unknown (no store config)".into(),
        };
        println!(
            "layer          {:<12} DEK generation {}, {key}",
            l.layer, l.dek_generation
        );
    }
    println!(
        "blocks         {} ({} bytes on disk)",
        r.blocks, r.backing_size
    );
    println!(
        "header tag     present{}",
        match r.header_ok {
            Some(true) => ", verified",
            Some(false) => ", FAILED",
            None => "",
        }
    );
    match r.size {
        Some(s) => println!("size           {s}"),
        None => println!("size           sealed"),
    }
    if let Some(p) = &r.plain_path {
        println!("path           {}", p.display());
    }
    if let Some(b) = &r.bad_blocks {
        if b.is_empty() {
            println!("block tags     all verified");
        } else {
            println!("block tags     FAILED: {b:?}");
        }
    }
}

/// The backing file that holds plaintext path `DISK/a/b` of `store`.
pub fn backing_of(store: &Path, vault: &Vault, plain: &Path) -> Result<PathBuf, ForensicsError> {
    let (_, disks) = unlock(store, vault)?;
    let mut comps = plain.components();
    let disk = comps
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .ok_or_else(|| ForensicsError::Invalid("--path needs DISK/some/path".into()))?;
    let ctx = disks
        .iter()
        .find(|d| d.config.name == disk)
        .ok_or_else(|| {
            ForensicsError::Invalid(format!(
                "store {} has no persistent disk {disk}",
                store.display()
            ))
        })?;
    // Walked by descriptor, one name at a time: the backing path of a deep
    // plaintext path is longer than PATH_MAX and is only ever printed.
    let mut dir = crate::backing::Dir::open(&ctx.root).map_err(io(&ctx.root))?;
    let mut backing = ctx.root.clone();
    let comps: Vec<_> = comps.collect();
    for (i, c) in comps.iter().enumerate() {
        let (id, _) = crate::backing::read_dirid_at(&dir).map_err(io(&backing))?;
        let b = ctx
            .codec
            .encrypt(&id, c.as_os_str())
            .map_err(|e| ForensicsError::Invalid(e.to_string()))?;
        let name = std::ffi::OsStr::new(b.entry_name());
        backing.push(name);
        let missing = || {
            ForensicsError::Invalid(format!(
                "{} does not exist in the store (would be {})",
                plain.display(),
                backing.display()
            ))
        };
        if i + 1 < comps.len() {
            dir = match dir.open_dir(name) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                Err(e) => return Err(io(&backing)(e)),
            };
        } else if dir.stat_at(name).is_err() {
            return Err(missing());
        }
    }
    Ok(backing)
}
