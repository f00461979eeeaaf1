//! Nothing a user wrote shows in the backing store: no content, file or
//! directory name, symlink target, xattr name or value, on any disk, under
//! every preset. The one exception is the model's own: with host encryption
//! off, the temp disk holds what the layers above left, which on temp is
//! plaintext. Equal plaintext never gives equal stored blocks either, and the
//! daemon's log carries no names, data or passphrase.

#[macro_use]
mod common;

use common::*;
use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

per_preset!(
    no_canary_reaches_the_backing_store_or_the_log,
    equal_plaintext_blocks_never_store_equal_ciphertext,
);

/// The marker strings written to one disk.
struct Canaries {
    disk: &'static str,
    content: String,
    dir: String,
    file: String,
    long_file: String,
    link: String,
    link_target: String,
    xattr_name: String,
    xattr_value: String,
}

impl Canaries {
    fn new(disk: &'static str) -> Canaries {
        let tag = format!("{disk}Q7Zk");
        Canaries {
            disk,
            content: format!("CanaryContent{tag}"),
            dir: format!("canarydir{tag}"),
            file: format!("canaryfile{tag}"),
            long_file: format!("canarylong{tag}{}", "L".repeat(200)),
            link: format!("canarylink{tag}"),
            link_target: format!("canarytarget{tag}/nowhere"),
            xattr_name: format!("user.canaryxname{tag}"),
            xattr_value: format!("canaryxvalue{tag}"),
        }
    }

    /// Every marker with a label, for reporting.
    fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("content", &self.content),
            ("directory name", &self.dir),
            ("file name", &self.file),
            ("long file name", &self.long_file[..40]),
            ("symlink name", &self.link),
            ("symlink target", &self.link_target),
            ("xattr name", &self.xattr_name["user.".len()..]),
            ("xattr value", &self.xattr_value),
        ]
    }

    fn write(&self, root: &Path) {
        let dir = root.join(&self.dir);
        fs::create_dir(&dir).expect("mkdir canary dir");
        let body: Vec<u8> = self
            .content
            .repeat(4 * BLOCK / self.content.len() + 10)
            .into_bytes();
        let file = dir.join(&self.file);
        fs::write(&file, &body).expect("write canary file");
        // Also one copy straddling a block boundary.
        let edge = open_rw(&dir.join("edge"));
        write_at(&edge, BLOCK as u64 - 7, self.content.as_bytes()).expect("pwrite");
        drop(edge);
        fs::write(dir.join(&self.long_file), self.content.as_bytes())
            .expect("write long-named file");
        std::os::unix::fs::symlink(&self.link_target, dir.join(&self.link)).expect("symlink");
        set_xattr(&file, &self.xattr_name, self.xattr_value.as_bytes()).expect("setxattr on file");
        set_xattr(&dir, &self.xattr_name, self.xattr_value.as_bytes()).expect("setxattr on dir");
        // A file renamed to a canary name after its creation.
        fs::write(dir.join("plain"), self.content.as_bytes()).expect("write");
        fs::rename(
            dir.join("plain"),
            dir.join(format!("{}-renamed", self.file)),
        )
        .expect("rename");
    }
}

/// Every byte the backing store holds about `path`: its name, its
/// contents or link target, and its extended attributes.
fn stored_bytes(store: &Path, path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let rel = path.strip_prefix(store).expect("inside store");
    out.push(("name".to_string(), rel.as_os_str().as_bytes().to_vec()));
    let meta = fs::symlink_metadata(path).expect("lstat backing path");
    if meta.file_type().is_symlink() {
        let t = fs::read_link(path).expect("readlink backing symlink");
        out.push(("symlink target".into(), t.as_os_str().as_bytes().to_vec()));
    } else if meta.is_file() {
        out.push((
            "contents".into(),
            fs::read(path).expect("read backing file"),
        ));
    }
    if let Ok(names) = list_xattr(path) {
        for n in names {
            out.push((format!("xattr name {n}"), n.clone().into_bytes()));
            if let Ok(v) = get_xattr(path, &n) {
                out.push((format!("xattr {n} value"), v));
            }
        }
    }
    out
}

fn no_canary_reaches_the_backing_store_or_the_log(preset: &str) {
    let f = Fixture::new(preset);
    let canaries: Vec<Canaries> = DISKS.iter().map(|d| Canaries::new(d)).collect();
    let m = f.mount();
    for c in &canaries {
        c.write(&f.disk(c.disk));
    }
    m.unmount();

    let temp_backing = f.backing("temp");
    let mut leaks = Vec::new();
    let mut scanned = 0usize;
    let mut scanned_bytes = 0usize;
    for path in walk(&f.store) {
        let on_temp = path.starts_with(&temp_backing);
        for (what, bytes) in stored_bytes(&f.store, &path) {
            scanned += 1;
            scanned_bytes += bytes.len();
            for c in &canaries {
                // By the model, temp without host encryption is plaintext.
                if c.disk == "temp" && on_temp && !f.host_encryption() {
                    continue;
                }
                for (label, needle) in c.all() {
                    let n = count_occurrences(&bytes, needle.as_bytes());
                    if n > 0 {
                        leaks.push(format!(
                            "{} {label} of disk {} found {n}x in {what} of {}",
                            preset,
                            c.disk,
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        scanned > 10 && scanned_bytes > 3 * 4 * BLOCK,
        "scanned almost nothing: the store looks empty"
    );
    assert!(
        leaks.is_empty(),
        "plaintext in the backing store:\n{}",
        leaks.join("\n")
    );

    let logs = f.all_logs();
    let mut log_leaks = Vec::new();
    for c in &canaries {
        for (label, needle) in c.all() {
            if logs.contains(needle) {
                log_leaks.push(format!("{label} of disk {}", c.disk));
            }
        }
    }
    if logs.contains(PASSPHRASE) {
        log_leaks.push("the passphrase".to_string());
    }
    assert!(
        log_leaks.is_empty(),
        "daemon log contains {}:\n{logs}",
        log_leaks.join(", ")
    );
}

/// Stored blocks of a file: `(backing file, block index, bytes)`.
fn stored_blocks(path: &Path) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let bytes = fs::read(path).expect("read backing file");
    let Some(body) = bytes.get(HEADER_LEN as usize..) else {
        return Vec::new();
    };
    body.chunks(STORED_BLOCK as usize)
        .enumerate()
        .map(|(i, b)| (path.to_path_buf(), i as u64, b.to_vec()))
        .collect()
}

/// Two files with the same plaintext, each block of which repeats the same
/// 4 KiB, on every disk: no two stored blocks (and no two file ids) match.
fn equal_plaintext_blocks_never_store_equal_ciphertext(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let block = pattern(42, BLOCK);
    let body: Vec<u8> = block.repeat(8);
    for disk in DISKS {
        for name in ["twin-a", "twin-b"] {
            fs::write(f.disk(disk).join(name), &body).expect("write twin");
        }
        fs::create_dir(f.disk(disk).join("sub")).expect("mkdir");
        fs::write(f.disk(disk).join("sub").join("twin-a"), &body).expect("write twin");
    }
    m.unmount();
    let mut disks = vec!["os", "data"];
    if f.host_encryption() {
        disks.push("temp");
    }
    let mut seen: HashMap<Vec<u8>, (PathBuf, u64)> = HashMap::new();
    let mut headers: HashMap<Vec<u8>, PathBuf> = HashMap::new();
    let mut blocks = 0;
    for disk in disks {
        let files = backing_user_files(&f.backing(disk));
        assert!(
            files.len() >= 3,
            "{disk}: expected three backing files, found {files:?}"
        );
        for file in files {
            let bytes = fs::read(&file).expect("read");
            if bytes.len() >= HEADER_LEN as usize {
                if let Some(other) =
                    headers.insert(bytes[..HEADER_LEN as usize].to_vec(), file.clone())
                {
                    panic!(
                        "identical headers in {} and {}",
                        other.display(),
                        file.display()
                    );
                }
            }
            for (path, index, stored) in stored_blocks(&file) {
                if stored.iter().all(|&b| b == 0) {
                    continue;
                }
                blocks += 1;
                if let Some((p, i)) = seen.insert(stored.clone(), (path.clone(), index)) {
                    panic!(
                        "equal plaintext stored as equal bytes: block {i} of {} and block {index} of {}",
                        p.display(),
                        path.display()
                    );
                }
                let plain_hits = count_occurrences(&stored, &block[..64]);
                assert_eq!(
                    plain_hits,
                    0,
                    "plaintext visible in block {index} of {}",
                    path.display()
                );
            }
        }
    }
    assert!(blocks >= 2 * 3 * 8, "only {blocks} stored blocks found");
}
