//! `strata scan`: reads every byte of a backing store looking for plaintext:
//! given needles (UTF-8 and UTF-16LE, in contents and names) and files whose
//! byte entropy is too low for ciphertext. The temp disk of a store with host
//! encryption off is plaintext by the model and reported as such.

use std::path::{Path, PathBuf};

use serde::Serialize;

use rustix::fs::FileType;

use super::{entropy, io, ForensicsError};
use crate::backing::walk::{join, walk, Node, Visitor};
use crate::backing::Dir;
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

/// Bytes of a file read at a time (whole stored blocks).
const CHUNK: usize = 64 * STORED_BLOCK;

/// The walk of a store: every name is searched, every regular file read
/// in chunks, each as it is met (by descriptor: any depth works; symlinks
/// and FIFOs are listed, never followed or opened).
struct Scanner<'a> {
    progress: &'a dyn crate::progress::Progress,
    store: &'a Path,
    include_config: bool,
    plain_temp: Vec<PathBuf>,
    encodings: Vec<(String, &'static str, Vec<u8>)>,
    report: Report,
}

/// What one file's bytes gave.
struct Measured {
    size: u64,
    hits: Vec<(usize, u64)>,
    counts: [u64; 256],
    base64url: bool,
}

impl Scanner<'_> {
    fn by_design(&self, p: &Path) -> bool {
        self.plain_temp.iter().any(|t| p.starts_with(t))
    }

    /// Reads a file in chunks: needles across chunk edges, entropy over the
    /// bytes that are not a strata header or an all-zero stored block.
    fn measure(&self, mut f: std::fs::File) -> std::io::Result<Measured> {
        let longest = self.encodings.iter().map(|e| e.2.len()).max().unwrap_or(0);
        let mut m = Measured {
            size: 0,
            hits: Vec::new(),
            counts: [0; 256],
            base64url: true,
        };
        let mut head = [0u8; HEADER_LEN];
        let n = read_up_to(&mut f, &mut head)?;
        let strata_file = head[..n].starts_with(crate::format::header::MAGIC);
        // The stream so far: its last `longest - 1` bytes and where they start.
        let mut carry: Vec<u8> = Vec::new();
        let mut piece = head[..n].to_vec();
        let mut first = true;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let start = m.size;
            let mut hay = carry.clone();
            hay.extend_from_slice(&piece);
            let hay_at = start - carry.len() as u64;
            for (k, (_, _, bytes)) in self.encodings.iter().enumerate() {
                for off in find_all(&hay, bytes) {
                    // Matches wholly inside the carry were found before.
                    if off as usize + bytes.len() > carry.len() {
                        m.hits.push((k, hay_at + off));
                    }
                }
            }
            m.base64url &= piece
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !(first && strata_file) {
                for block in piece.chunks(STORED_BLOCK) {
                    if strata_file && block.iter().all(|&b| b == 0) {
                        continue;
                    }
                    for &b in block {
                        m.counts[usize::from(b)] += 1;
                    }
                }
            }
            m.size += piece.len() as u64;
            let keep = longest.saturating_sub(1).min(hay.len());
            carry = hay[hay.len() - keep..].to_vec();
            first = false;
            let got = read_up_to(&mut f, &mut buf)?;
            if got == 0 {
                break;
            }
            piece = buf[..got].to_vec();
        }
        Ok(m)
    }
}

/// Reads until `buf` is full or the file ends; the count read.
fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl Visitor for Scanner<'_> {
    type Error = ForensicsError;
    type Scope = ();

    fn entry(&mut self, n: &Node<'_>, _: &mut ()) -> Result<Option<()>, ForensicsError> {
        let p = join(self.store, n.rel);
        let name = n.name.to_string_lossy().into_owned();
        let top = n.rel.len() == 1;
        // The lock file names the process that holds the store: no data.
        if top && name == crate::store::lock::LOCK_NAME {
            return Ok(None);
        }
        if top
            && !self.include_config
            && (name.starts_with("strata.conf") || name.starts_with("vault"))
        {
            return Ok(None);
        }
        let by_design = self.by_design(&p);
        for (needle, enc, bytes) in &self.encodings {
            if !find_all(name.as_bytes(), bytes).is_empty() {
                self.report.hits.push(Hit {
                    needle: needle.clone(),
                    encoding: (*enc).into(),
                    file: p.clone(),
                    offset: None,
                    by_design,
                });
            }
        }
        match n.kind() {
            FileType::Directory => return Ok(Some(())),
            FileType::RegularFile => {}
            _ => return Ok(None),
        }
        let f = n.parent.open_file(n.name, false).map_err(io(&p))?;
        let m = self.measure(f).map_err(io(&p))?;
        self.report.files += 1;
        self.report.bytes += m.size;
        self.progress.inc(m.size);
        for (k, off) in m.hits {
            let (needle, enc, _) = &self.encodings[k];
            self.report.hits.push(Hit {
                needle: needle.clone(),
                encoding: (*enc).into(),
                file: p.clone(),
                offset: Some(off),
                by_design,
            });
        }
        let judged: u64 = m.counts.iter().sum();
        let e = entropy(&m.counts);
        // A long-name sidecar is ciphertext in base64url (at most 6 bits a
        // byte): judged by its alphabet, not its entropy; needles still apply.
        let encoded_name = crate::names::is_sidecar(n.name) && m.base64url;
        self.report.stats.push(FileStat {
            file: p,
            size: m.size,
            entropy: (e * 1000.0).round() / 1000.0,
            plaintext: !encoded_name && judged >= MIN_JUDGED && e < PLAINTEXT_BELOW,
            by_design,
        });
        Ok(None)
    }
}

/// Scans a store; `progress` counts the bytes read.
pub fn scan(
    store: &Path,
    needles: &[String],
    include_config: bool,
    progress: &dyn crate::progress::Progress,
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
    let encodings: Vec<(String, &'static str, Vec<u8>)> = needles
        .iter()
        .flat_map(|n| {
            [
                (n.clone(), "utf-8", n.as_bytes().to_vec()),
                (n.clone(), "utf-16le", utf16le(n)),
            ]
        })
        .collect();
    let root = Dir::open(store).map_err(io(store))?;
    progress.total(
        crate::backing::walk::tally(&root, store)
            .map_err(ForensicsError::from)?
            .file_bytes,
    );
    let mut s = Scanner {
        progress,
        store,
        include_config,
        plain_temp,
        encodings,
        report: Report {
            store: store.to_path_buf(),
            files: 0,
            bytes: 0,
            hits: Vec::new(),
            stats: Vec::new(),
        },
    };
    walk(&root, store, (), &mut s)?;
    Ok(s.report)
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
