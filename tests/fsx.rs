//! Random sequences of file operations (in the manner of fsx) run on a
//! strata mount and, step by step, on the same tree in a directory of the
//! backing filesystem (ext4 on CI): every call must give the same result or
//! errno, and after every step every name must have the same type, size and
//! link count. Contents are compared in full every few steps, read back
//! through the daemon (the kernel's cached pages of the file are flushed and
//! dropped first), and the mount is remounted part-way through each run.
//!
//! The operations mix writes at any offset (block-aligned or not, inside,
//! across and past the end), reads, truncates through a handle and through
//! the path, fallocate with and without KEEP_SIZE, copy_file_range, fsync,
//! renames over existing names, hard links, unlinks of open files,
//! renames of the directories holding open files, and the kernel dropping
//! every inode and dentry it does not need (so the daemon's node table
//! forgets and finds them again). A failing run prints its seed, the step
//! and the operation.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Directory names the runs use (one missing at any time, for renames).
const DIRS: [&str; 3] = ["d0", "d1", "d2"];
/// File names inside each directory.
const FILES: [&str; 3] = ["a", "b", "c"];
/// Files a run keeps open at most.
const MAX_OPEN: usize = 6;
/// Sizes stay below this (a few dozen blocks, so that holes, partial
/// blocks and the write window's edges all come up often).
const SPAN: u64 = 300 * 1024;

/// One tree the operations run on.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The outcome of one call, compared between the two trees.
#[derive(Debug, PartialEq, Eq)]
enum Outcome<T> {
    Ok(T),
    Err(i32),
}

fn outcome<T>(r: io::Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => Outcome::Ok(v),
        Err(e) => Outcome::Err(e.raw_os_error().unwrap_or(-1)),
    }
}

/// What a name is, as `lstat` tells.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    kind: &'static str,
    size: u64,
    nlink: u64,
}

fn shape(p: &Path) -> Outcome<Shape> {
    outcome(fs::symlink_metadata(p).map(|m| Shape {
        kind: if m.is_dir() {
            "dir"
        } else if m.is_file() {
            "file"
        } else {
            "other"
        },
        // A directory's size is the filesystem's own business.
        size: if m.is_dir() { 0 } else { m.len() },
        nlink: if m.is_dir() { 0 } else { m.nlink() },
    }))
}

/// Every file name a run may use.
fn all_names() -> Vec<String> {
    let mut v = Vec::new();
    for d in DIRS {
        for f in FILES {
            v.push(format!("{d}/{f}"));
        }
    }
    v
}

/// Flushes and drops the kernel's cached pages of `p`, then reads it whole:
/// what the daemon serves, not what the page cache remembers.
fn read_through(p: &Path) -> io::Result<Vec<u8>> {
    let f = File::open(p)?;
    f.sync_all()?;
    strata::platform::uncache(&f);
    let mut out = Vec::new();
    io::Read::read_to_end(&mut &f, &mut out)?;
    Ok(out)
}

/// A pair of open files, one per tree, opened by the same call.
struct OpenPair {
    name: String,
    files: [File; 2],
}

struct Run<'a> {
    seed: u64,
    rng: Rng,
    trees: [Tree; 2],
    open: Vec<OpenPair>,
    step: usize,
    fixture: &'a Fixture,
    log: Vec<String>,
}

impl Run<'_> {
    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(12).rev().collect();
        panic!(
            "fsx seed {} step {}: {what}\nlast operations:\n{tail:#?}",
            self.seed, self.step
        );
    }

    fn same<T: PartialEq + std::fmt::Debug>(&self, op: &str, a: Outcome<T>, b: Outcome<T>) {
        if a != b {
            self.fail(&format!(
                "{op}: strata gave {a:?}, the backing filesystem {b:?}"
            ));
        }
    }

    fn name(&mut self) -> String {
        let d = DIRS[self.rng.below(DIRS.len() as u64) as usize];
        let f = FILES[self.rng.below(FILES.len() as u64) as usize];
        format!("{d}/{f}")
    }

    /// An offset biased towards block edges and the current end.
    fn offset(&mut self, size: u64) -> u64 {
        let block = BLOCK as u64;
        match self.rng.below(5) {
            0 => self.rng.below(SPAN / block) * block,
            1 => (self.rng.below(SPAN / block) * block + block - 1 - self.rng.below(3)).min(SPAN),
            2 => size.saturating_sub(self.rng.below(2 * block)),
            3 => size + self.rng.below(3 * block),
            _ => self.rng.below(SPAN),
        }
    }

    fn len(&mut self) -> usize {
        match self.rng.below(4) {
            0 => 1 + self.rng.below(16) as usize,
            1 => BLOCK,
            2 => 1 + self.rng.below(3 * BLOCK as u64) as usize,
            _ => 1 + self.rng.below(70_000) as usize,
        }
    }

    fn each<T>(&self, mut f: impl FnMut(&Tree) -> io::Result<T>) -> [Outcome<T>; 2] {
        [outcome(f(&self.trees[0])), outcome(f(&self.trees[1]))]
    }

    fn each_open<T>(&self, i: usize, mut f: impl FnMut(&File) -> io::Result<T>) -> [Outcome<T>; 2] {
        let p = &self.open[i];
        [outcome(f(&p.files[0])), outcome(f(&p.files[1]))]
    }

    fn check(&self, op: &str, [a, b]: [Outcome<impl PartialEq + std::fmt::Debug>; 2]) {
        self.same(op, a, b);
    }

    fn step_once(&mut self) {
        let op = self.rng.below(100);
        let size_of = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
        if (op < 30) && !self.open.is_empty() {
            // pwrite through an open handle
            let i = self.rng.below(self.open.len() as u64) as usize;
            let size = size_of(&self.open[i].files[1]);
            let off = self.offset(size);
            let len = self.len();
            let data = self.rng.bytes(len);
            let what = format!("pwrite {} at {off} len {len}", self.open[i].name);
            self.log.push(what.clone());
            let r = self.each_open(i, |f| f.write_all_at(&data, off));
            self.check(&what, r);
        } else if op < 42 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let size = size_of(&self.open[i].files[1]);
            let off = self.offset(size);
            let len = self.len();
            let what = format!("pread {} at {off} len {len}", self.open[i].name);
            self.log.push(what.clone());
            let r = self.each_open(i, |f| {
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    let n = f.read_at(&mut buf[got..], off + got as u64)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                buf.truncate(got);
                Ok(buf)
            });
            self.check(&what, r);
        } else if op < 50 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let size = size_of(&self.open[i].files[1]);
            let to = match self.rng.below(3) {
                0 => self.rng.below(size + 1),
                1 => self.offset(size),
                _ => size + self.rng.below(4 * BLOCK as u64),
            };
            let what = format!("ftruncate {} to {to}", self.open[i].name);
            self.log.push(what.clone());
            let r = self.each_open(i, |f| f.set_len(to));
            self.check(&what, r);
        } else if op < 54 {
            let n = self.name();
            let to = self.offset(SPAN / 2);
            let what = format!("truncate path {n} to {to}");
            self.log.push(what.clone());
            let r = self.each(|t| {
                OpenOptions::new()
                    .write(true)
                    .open(t.path(&n))
                    .and_then(|f| f.set_len(to))
            });
            self.check(&what, r);
        } else if op < 58 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let size = size_of(&self.open[i].files[1]);
            let off = self.offset(size);
            let len = 1 + self.rng.below(5 * BLOCK as u64);
            let keep = self.rng.below(2) == 0;
            let what = format!(
                "fallocate {} at {off} len {len}{}",
                self.open[i].name,
                if keep { " keep size" } else { "" }
            );
            self.log.push(what.clone());
            let r = self.each_open(i, |f| {
                strata::platform::preallocate(f, off, off + len, keep).map(|_| ())
            });
            self.check(&what, r);
        } else if op < 61 && self.open.len() >= 2 {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let j = self.rng.below(self.open.len() as u64) as usize;
            let off_in = self.rng.below(SPAN / 2);
            let off_out = self.offset(size_of(&self.open[j].files[1]));
            let len = self.len();
            let what = format!(
                "copy_file_range {}@{off_in} -> {}@{off_out} len {len}",
                self.open[i].name, self.open[j].name
            );
            self.log.push(what.clone());
            let mut r = Vec::new();
            for t in 0..2 {
                let (src, dst) = (&self.open[i].files[t], &self.open[j].files[t]);
                let mut oi = off_in;
                let mut oo = off_out;
                let mut done = 0usize;
                let res = loop {
                    if done >= len {
                        break Ok(done);
                    }
                    match strata::platform::copy_file_range(src, &mut oi, dst, &mut oo, len - done)
                    {
                        Ok(0) => break Ok(done),
                        Ok(n) => done += n,
                        Err(e) => break Err(e),
                    }
                };
                r.push(outcome(res));
            }
            let b = r.pop().expect("two");
            let a = r.pop().expect("two");
            self.same(&what, a, b);
        } else if op < 66 {
            if self.open.len() >= MAX_OPEN {
                let p = self.open.remove(0);
                self.log.push(format!("close {}", p.name));
            }
            let n = self.name();
            let create = self.rng.below(3) != 0;
            let trunc = self.rng.below(8) == 0;
            let append = self.rng.below(10) == 0;
            let what = format!("open {n} create={create} trunc={trunc} append={append}");
            self.log.push(what.clone());
            let [a, b] = self.each(|t| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .truncate(trunc)
                    .append(append)
                    .mode(0o644)
                    .open(t.path(&n))
            });
            match (a, b) {
                (Outcome::Ok(fa), Outcome::Ok(fb)) => self.open.push(OpenPair {
                    name: n,
                    files: [fa, fb],
                }),
                (Outcome::Err(x), Outcome::Err(y)) if x == y => {}
                (a, b) => {
                    let a = match a {
                        Outcome::Ok(_) => Outcome::Ok(()),
                        Outcome::Err(e) => Outcome::Err(e),
                    };
                    let b = match b {
                        Outcome::Ok(_) => Outcome::Ok(()),
                        Outcome::Err(e) => Outcome::Err(e),
                    };
                    self.same(&what, a, b);
                }
            }
        } else if op < 71 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let p = self.open.remove(i);
            self.log.push(format!("close {}", p.name));
        } else if op < 78 {
            let (a, b) = (self.name(), self.name());
            let what = format!("rename {a} -> {b}");
            self.log.push(what.clone());
            let r = self.each(|t| fs::rename(t.path(&a), t.path(&b)));
            self.check(&what, r);
        } else if op < 82 {
            let (a, b) = (self.name(), self.name());
            let what = format!("link {a} -> {b}");
            self.log.push(what.clone());
            let r = self.each(|t| fs::hard_link(t.path(&a), t.path(&b)));
            self.check(&what, r);
        } else if op < 88 {
            let n = self.name();
            let what = format!("unlink {n}");
            self.log.push(what.clone());
            let r = self.each(|t| fs::remove_file(t.path(&n)));
            self.check(&what, r);
        } else if op < 90 {
            let a = DIRS[self.rng.below(DIRS.len() as u64) as usize];
            let b = DIRS[self.rng.below(DIRS.len() as u64) as usize];
            let what = format!("rename dir {a} -> {b}");
            self.log.push(what.clone());
            let r = self.each(|t| fs::rename(t.path(a), t.path(b)));
            self.check(&what, r);
        } else if op < 92 {
            let a = DIRS[self.rng.below(DIRS.len() as u64) as usize];
            let what = format!("mkdir {a}");
            self.log.push(what.clone());
            let r = self.each(|t| fs::create_dir(t.path(a)));
            self.check(&what, r);
        } else if op < 94 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let what = format!("fsync {}", self.open[i].name);
            self.log.push(what.clone());
            let r = self.each_open(i, |f| f.sync_all());
            self.check(&what, r);
        } else if op < 97 && !self.open.is_empty() {
            let i = self.rng.below(self.open.len() as u64) as usize;
            let what = format!("fstat {}", self.open[i].name);
            self.log.push(what.clone());
            let r = self.each_open(i, |f| f.metadata().map(|m| (m.len(), m.nlink())));
            self.check(&what, r);
        } else if op < 98 {
            // The kernel forgets every inode nothing holds.
            self.log.push("drop dentries and inodes".into());
            fs::write("/proc/sys/vm/drop_caches", "2\n").expect("drop caches (needs root)");
        } else {
            self.compare_contents("full compare");
        }
    }

    /// Compares every name's type, size and link count.
    fn compare_shapes(&self) {
        for n in all_names() {
            let a = shape(&self.trees[0].path(&n));
            let b = shape(&self.trees[1].path(&n));
            self.same(&format!("lstat {n}"), a, b);
        }
        for d in DIRS {
            let a = shape(&self.trees[0].path(d));
            let b = shape(&self.trees[1].path(d));
            self.same(&format!("lstat {d}"), a, b);
        }
    }

    /// Compares every name's contents as the daemon serves them, and what
    /// every open handle reads.
    fn compare_contents(&self, why: &str) {
        for n in all_names() {
            let a = outcome(read_through(&self.trees[0].path(&n)));
            let b = outcome(read_through(&self.trees[1].path(&n)));
            if a != b {
                let brief = |o: &Outcome<Vec<u8>>| match o {
                    Outcome::Ok(v) => format!("{} bytes", v.len()),
                    Outcome::Err(e) => format!("errno {e}"),
                };
                let first_diff = match (&a, &b) {
                    (Outcome::Ok(x), Outcome::Ok(y)) => {
                        x.iter().zip(y.iter()).position(|(p, q)| p != q)
                    }
                    _ => None,
                };
                self.fail(&format!(
                    "{why}: contents of {n} differ: strata {}, the backing filesystem {} (first difference at {first_diff:?})",
                    brief(&a),
                    brief(&b)
                ));
            }
        }
        for p in &self.open {
            let read = |f: &File| -> io::Result<Vec<u8>> {
                let len = f.metadata()?.len();
                let mut buf = vec![0u8; usize::try_from(len).expect("small")];
                f.read_exact_at(&mut buf, 0)?;
                Ok(buf)
            };
            let a = outcome(read(&p.files[0]));
            let b = outcome(read(&p.files[1]));
            if a != b {
                self.fail(&format!(
                    "{why}: an open handle of {} reads differently",
                    p.name
                ));
            }
        }
    }

    fn remount(&mut self, m: MountGuard) -> MountGuard {
        self.log.push("remount".into());
        self.open.clear();
        m.unmount();
        let m = self.fixture.mount();
        self.compare_shapes();
        self.compare_contents("after remount");
        m
    }
}

fn fsx(preset: &str, seeds: &[u64], budget: Duration) {
    let f = Fixture::new(preset);
    let oracle = tempfile::Builder::new()
        .prefix("strata-fsx-oracle-")
        .tempdir_in(f.path())
        .expect("oracle dir");
    let mut m = f.mount();
    let started = Instant::now();
    let per_seed = budget / u32::try_from(seeds.len()).expect("few seeds");
    for &seed in seeds {
        let top = format!("run{seed}");
        let trees = [
            Tree {
                root: f.disk("data").join(&top),
            },
            Tree {
                root: oracle.path().join(&top),
            },
        ];
        for t in &trees {
            fs::create_dir(&t.root).expect("run dir");
            fs::create_dir(t.path("d0")).expect("d0");
            fs::create_dir(t.path("d1")).expect("d1");
        }
        let mut run = Run {
            seed,
            rng: Rng::new(seed),
            trees,
            open: Vec::new(),
            step: 0,
            fixture: &f,
            log: Vec::new(),
        };
        let seed_start = Instant::now();
        let mut remounted = false;
        while seed_start.elapsed() < per_seed {
            run.step += 1;
            run.step_once();
            run.compare_shapes();
            if run.step.is_multiple_of(40) {
                run.compare_contents("periodic compare");
            }
            if !remounted && seed_start.elapsed() > per_seed / 2 {
                m = run.remount(m);
                remounted = true;
            }
        }
        run.compare_contents("end of run");
        eprintln!("fsx {preset} seed {seed}: {} steps", run.step);
        if std::env::var_os("FSX_SHOW").is_some() {
            for l in run.log.iter().take(80) {
                eprintln!("  {l}");
            }
        }
        run.open.clear();
    }
    m.unmount();
    eprintln!("fsx {preset}: {:?}", started.elapsed());
}

#[test]
fn random_operations_match_the_backing_filesystem_general() {
    fsx("general", &[1, 2], Duration::from_secs(20));
}

#[test]
fn random_operations_match_the_backing_filesystem_max() {
    fsx("max", &[3, 4], Duration::from_secs(20));
}
