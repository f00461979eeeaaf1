//! `strata scan`: reads every byte of a backing store looking for plaintext:
//! given needles (UTF-8 and UTF-16LE, in contents and names) and files whose
//! byte entropy is too low for ciphertext. The temp disk of a store with host
//! encryption off is plaintext by the model and reported as such.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{entropy, io, ForensicsError};
use crate::format::{HEADER_LEN, STORED_BLOCK};
use crate::store::Config;

/// Files at least this large are judged by their entropy.
const MIN_JUDGED: u64 = 256;
/// Below this many bits per byte a file looks like plaintext.
const PLAINTEXT_BELOW: f64 = 7.0;

/// A needle found.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The needle.
    pub needle: String,
    /// `utf-8` or `utf-16le`.
    pub encoding: String,
    /// The file (or directory, for a name hit).
    pub file: PathBuf,
    /// Byte offset in the contents, or null for a hit in the name.
    pub offset: Option<u64>,
    /// True on the temp disk of a store with host encryption off.
    pub by_design: bool,
}

/// One file's measure.
#[derive(Debug, Clone, Serialize)]
pub struct FileStat {
    /// The file.
    pub file: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Shannon entropy in bits per byte, over the bytes that are not holes
    /// (all-zero stored blocks) or strata headers.
    pub entropy: f64,
    /// Whether it looks like plaintext.
    pub plaintext: bool,
    /// True on the temp disk of a store with host encryption off.
    pub by_design: bool,
}

/// What `scan` reports (the `--json` output).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The store.
    pub store: PathBuf,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Needles found.
    pub hits: Vec<Hit>,
    /// Every file's entropy.
    pub stats: Vec<FileStat>,
}

impl Report {
    /// Whether anything leaked outside what the model allows.
    pub fn leaked(&self) -> bool {
        self.hits.iter().any(|h| !h.by_design)
            || self.stats.iter().any(|s| s.plaintext && !s.by_design)
    }
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<u64> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i as u64)
        .collect()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ForensicsError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if m.is_dir() {
            files(&p, out)?;
        }
        out.push(p);
    }
    Ok(())
}

/// Scans a store.
pub fn scan(
    store: &Path,
    needles: &[String],
    include_config: bool,
) -> Result<Report, ForensicsError> {
    let config = Config::read(store).map_err(crate::store::StoreError::from)?;
    let plain_temp: Vec<PathBuf> = if config.host_encryption {
        Vec::new()
    } else {
        config
            .disks
            .iter()
            .filter(|d| d.kind == crate::store::DiskKind::Temp)
            .map(|d| crate::store::disk_root(store, &d.name))
            .collect()
    };
    let by_design = |p: &Path| plain_temp.iter().any(|t| p.starts_with(t));
    let mut all = Vec::new();
    files(store, &mut all)?;
    all.sort();
    let encodings: Vec<(String, &str, Vec<u8>)> = needles
        .iter()
        .flat_map(|n| {
            [
                (n.clone(), "utf-8", n.as_bytes().to_vec()),
                (n.clone(), "utf-16le", utf16le(n)),
            ]
        })
        .collect();
    let mut report = Report {
        store: store.to_path_buf(),
        files: 0,
        bytes: 0,
        hits: Vec::new(),
        stats: Vec::new(),
    };
    for p in all {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let top = p.parent() == Some(store);
        // The lock file names the process that holds the store: no data.
        if top && name == crate::store::lock::LOCK_NAME {
            continue;
        }
        if !include_config && (name.starts_with("strata.conf") || name.starts_with("vault")) && top
        {
            continue;
        }
        for (needle, enc, bytes) in &encodings {
            if !find_all(name.as_bytes(), bytes).is_empty() {
                report.hits.push(Hit {
                    needle: needle.clone(),
                    encoding: (*enc).into(),
                    file: p.clone(),
                    offset: None,
                    by_design: by_design(&p),
                });
            }
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        let data = std::fs::read(&p).map_err(io(&p))?;
        report.files += 1;
        report.bytes += data.len() as u64;
        for (needle, enc, bytes) in &encodings {
            for off in find_all(&data, bytes) {
                report.hits.push(Hit {
                    needle: needle.clone(),
                    encoding: (*enc).into(),
                    file: p.clone(),
                    offset: Some(off),
                    by_design: by_design(&p),
                });
            }
        }
        let mut counts = [0u64; 256];
        let strata_file = data.starts_with(crate::format::header::MAGIC);
        let body = if strata_file {
            &data[HEADER_LEN.min(data.len())..]
        } else {
            &data[..]
        };
        for chunk in body.chunks(STORED_BLOCK) {
            if strata_file && chunk.iter().all(|&b| b == 0) {
                continue;
            }
            for &b in chunk {
                counts[usize::from(b)] += 1;
            }
        }
        let judged: u64 = counts.iter().sum();
        let e = entropy(&counts);
        // A long-name sidecar is ciphertext in base64url (at most 6 bits a
        // byte): judged by its alphabet, not its entropy; needles still apply.
        let encoded_name = crate::names::is_sidecar(std::ffi::OsStr::new(&name))
            && data
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        report.stats.push(FileStat {
            file: p.clone(),
            size: data.len() as u64,
            entropy: (e * 1000.0).round() / 1000.0,
            plaintext: !encoded_name && judged >= MIN_JUDGED && e < PLAINTEXT_BELOW,
            by_design: by_design(&p),
        });
    }
    Ok(report)
}

/// Prints a report as text.
pub fn print(r: &Report) {
    println!(
        "scanned {} files, {} bytes under {}",
        r.files,
        r.bytes,
        r.store.display()
    );
    for h in &r.hits {
        let at = h
            .offset
            .map(|o| format!("offset {o}"))
            .unwrap_or_else(|| "in the name".into());
        let note = if h.by_design {
            " (temp disk without host encryption: plaintext by design)"
        } else {
            ""
        };
        println!(
            "FOUND {:?} ({}) in {} {at}{note}",
            h.needle,
            h.encoding,
            h.file.display()
        );
    }
    for s in r.stats.iter().filter(|s| s.plaintext) {
        let note = if s.by_design {
            " (temp disk without host encryption: plaintext by design)"
        } else {
            ""
        };
        println!(
            "PLAINTEXT? {} entropy {:.2} bits/byte{note}",
            s.file.display(),
            s.entropy
        );
    }
    if !r.leaked() {
        println!("no plaintext found");
    }
}
