//! The workloads, as parts that run step by step (so that several can
//! interleave on one mount), note the log position at which each of their
//! promises was made (a commit returned, an fsync returned), and check a
//! crash state against those promises.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{params, Connection};

use super::common::pattern;

/// What a check knows of the crash.
pub struct Ctx {
    /// Operations before this log index were issued.
    pub crash: usize,
    /// The log mark at the end of the last operation issued.
    pub issued: usize,
    /// Log index of the syncfs before the session's clean end, if any.
    pub sync_all: Option<usize>,
}

impl Ctx {
    /// Whether the promise made at log position `mark` must hold.
    fn kept(&self, mark: usize) -> bool {
        mark <= self.issued
    }
}

/// One workload part.
pub trait Part {
    /// Runs the next step in `data` (a disk of the mount); `mark` gives
    /// the log position now. False once there is nothing left to do.
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool;
    /// Checks a crash state mounted with its data disk at `data`.
    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String>;
    /// Whether the part wants the store unmounted cleanly and mounted
    /// again (a new session) before its next step; asked once per round.
    fn remount(&mut self) -> bool {
        false
    }
}

fn fsync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", dir.display()));
}

/// SQLite transactions with synchronous=EXTRA, each inserting rows and
/// updating the rows of the one before (in-place page overwrites), in
/// DELETE or WAL mode; WAL mode checkpoints half way.
pub struct Sqlite {
    file: &'static str,
    journal: &'static str,
    conn: Option<Connection>,
    /// Log positions at which each commit returned: the schema, then the
    /// transactions 1..=TXS.
    commits: Vec<usize>,
    done: bool,
}

const TXS: usize = 6;
const ROWS: i64 = 30;

fn value(tx: usize, row: i64) -> String {
    format!(
        "tx{tx}-row{row}-{}",
        "v".repeat((tx * 7 + row as usize) % 40)
    )
}

fn pad(tx: usize, row: i64) -> Vec<u8> {
    pattern((tx as u64) << 32 | row as u64, 1200)
}

fn row_id(tx: usize, row: i64) -> i64 {
    tx as i64 * 1000 + row
}

/// The rows after `j` transactions committed.
fn expected(j: usize) -> Vec<(i64, String, Vec<u8>)> {
    let mut v = Vec::new();
    for tx in 1..=j {
        for row in 0..ROWS {
            let mut s = value(tx, row);
            if tx < j {
                s.push_str(&format!("~{}", tx + 1));
            }
            v.push((row_id(tx, row), s, pad(tx, row)));
        }
    }
    v
}

impl Sqlite {
    pub fn new(file: &'static str, journal: &'static str) -> Self {
        Sqlite {
            file,
            journal,
            conn: None,
            commits: Vec::new(),
            done: false,
        }
    }
}

fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    // EXTRA, not FULL: in DELETE mode a commit is the journal's unlink, and
    // only EXTRA syncs the directory after it (SQLite's documentation: with
    // FULL a power cut right after a commit may roll it back, on any
    // filesystem). Every commit that returned must then survive.
    c.execute_batch("PRAGMA synchronous = EXTRA; PRAGMA cache_size = 8;")?;
    Ok(c)
}

impl Part for Sqlite {
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool {
        if self.done {
            return false;
        }
        let Some(conn) = self.conn.as_ref() else {
            let c = open_db(&data.join(self.file)).expect("open database");
            let mode: String = c
                .query_row(
                    &format!("PRAGMA journal_mode = {}", self.journal),
                    [],
                    |r| r.get(0),
                )
                .expect("journal_mode");
            assert_eq!(mode.to_uppercase(), self.journal);
            c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, pad BLOB)")
                .expect("create table");
            self.commits.push(mark());
            self.conn = Some(c);
            return true;
        };
        let tx = self.commits.len();
        if tx > TXS {
            if let Some(c) = self.conn.take() {
                c.close().map_err(|(_, e)| e).expect("close database");
            }
            self.done = true;
            return false;
        }
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut ins = conn
                .prepare_cached("INSERT INTO t (id, v, pad) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for row in 0..ROWS {
                ins.execute(params![row_id(tx, row), value(tx, row), pad(tx, row)])
                    .expect("insert");
            }
        }
        if tx > 1 {
            conn.execute(
                "UPDATE t SET v = v || ?1 WHERE id BETWEEN ?2 AND ?3",
                params![
                    format!("~{tx}"),
                    row_id(tx - 1, 0),
                    row_id(tx - 1, ROWS - 1)
                ],
            )
            .expect("update");
        }
        conn.execute_batch("COMMIT").expect("commit");
        self.commits.push(mark());
        if self.journal == "WAL" && tx == TXS / 2 {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .expect("checkpoint");
        }
        true
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        let what = format!("{} ({})", self.file, self.journal);
        let err = |e: rusqlite::Error| format!("{what}: {e}");
        let committed = self.commits.iter().filter(|&&m| ctx.kept(m)).count();
        let path = data.join(self.file);
        if !path.exists() {
            return if committed == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{what}: missing after {committed} commits returned"
                ))
            };
        }
        let c = open_db(&path).map_err(err)?;
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(err)?;
        if check != "ok" {
            return Err(format!("{what}: integrity_check: {check}"));
        }
        let has_table: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if has_table == 0 {
            return if committed == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{what}: the table is gone after {committed} commits returned"
                ))
            };
        }
        let mut st = c
            .prepare("SELECT id, v, pad FROM t ORDER BY id")
            .map_err(err)?;
        let rows: Vec<(i64, String, Vec<u8>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let returned = committed.saturating_sub(1);
        match (returned..=TXS).find(|&j| rows == expected(j)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{what}: {} rows match no state of {returned} or more transactions",
                rows.len()
            )),
        }
    }
}

/// Appends of assorted sizes, each followed by fsync.
pub struct Append {
    file: &'static str,
    handle: Option<File>,
    /// (log position, length) after each fsync returned.
    synced: Vec<(usize, u64)>,
    step: usize,
}

const CHUNKS: [usize; 11] = [
    4096, 1000, 5000, 300, 8192, 4096, 100, 12_000, 4096, 2500, 70_000,
];

fn stream() -> Vec<u8> {
    pattern(77, CHUNKS.iter().sum())
}

impl Append {
    pub fn new(file: &'static str) -> Self {
        Append {
            file,
            handle: None,
            synced: Vec::new(),
            step: 0,
        }
    }
}

impl Part for Append {
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool {
        if self.step >= CHUNKS.len() {
            self.handle = None;
            return false;
        }
        let f = self.handle.get_or_insert_with(|| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(data.join(self.file))
                .expect("open append log")
        });
        let from: usize = CHUNKS[..self.step].iter().sum();
        let to = from + CHUNKS[self.step];
        f.write_all(&stream()[from..to]).expect("append");
        f.sync_all().expect("fsync");
        self.synced.push((mark(), to as u64));
        self.step += 1;
        true
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        let synced = self
            .synced
            .iter()
            .filter(|(m, _)| ctx.kept(*m))
            .map(|&(_, l)| l)
            .max()
            .unwrap_or(0) as usize;
        let got = match fs::read(data.join(self.file)) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && synced == 0 => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", self.file)),
        };
        let all = stream();
        if got.len() < synced || got.len() > all.len() {
            return Err(format!(
                "{}: {} bytes, {synced} were fsynced (of {} written in all)",
                self.file,
                got.len(),
                all.len()
            ));
        }
        if got[..synced] != all[..synced] {
            return Err(format!("{}: fsynced bytes differ", self.file));
        }
        // Past that, what a raw disk would show: appended bytes where
        // their sectors were written, zeros where not.
        if !appended_or_zero(&got[synced..], &all[synced..]) {
            return Err(format!(
                "{}: bytes past the {synced} fsynced are neither appended bytes nor zeros",
                self.file
            ));
        }
        Ok(())
    }
}

/// Whether each byte of `got` is the byte of `want` at its place, or zero.
fn appended_or_zero(got: &[u8], want: &[u8]) -> bool {
    got.iter().zip(want).all(|(g, w)| g == w || *g == 0)
}

/// A file replaced again and again the safe way: a temp file written and
/// fsynced, renamed over it, the directory fsynced.
pub struct Replace {
    file: &'static str,
    /// Log position after each version's directory fsync returned.
    durable: Vec<usize>,
}

const VERSIONS: usize = 6;

fn version(k: usize) -> Vec<u8> {
    let mut v = format!("version {k}\n").into_bytes();
    v.extend(pattern(1000 + k as u64, 1800 + 1700 * k));
    v
}

impl Replace {
    pub fn new(file: &'static str) -> Self {
        Replace {
            file,
            durable: Vec::new(),
        }
    }
}

impl Part for Replace {
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool {
        let k = self.durable.len();
        if k >= VERSIONS {
            return false;
        }
        let tmp = data.join(format!("{}.tmp", self.file));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .expect("create temp file");
        f.write_all(&version(k)).expect("write temp file");
        f.sync_all().expect("fsync temp file");
        drop(f);
        fs::rename(&tmp, data.join(self.file)).expect("rename over");
        fsync_dir(data);
        self.durable.push(mark());
        true
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        let durable = self.durable.iter().filter(|&&m| ctx.kept(m)).count();
        let got = match fs::read(data.join(self.file)) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && durable == 0 => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", self.file)),
        };
        let first = durable.saturating_sub(1);
        if (first..VERSIONS).any(|k| got == version(k)) {
            Ok(())
        } else {
            Err(format!(
                "{}: {} bytes, not a whole version {first} or later",
                self.file,
                got.len()
            ))
        }
    }
}

/// A new directory with a file (of a long name) and a symlink in it, all made durable (file
/// fsync, then the new directory and its parent fsynced).
pub struct NewDir {
    dir: &'static str,
    durable: Option<usize>,
}

/// Long enough that its encrypted name needs a sidecar.
const IN_DIR: &str = "inside-a-name-long-enough-that-its-encrypted-form-is-stored-as-a-hash-and-a-sidecar-file-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const LINK: &str = "link";
const LINK_TARGET: &str = "../somewhere/else";

fn in_dir() -> Vec<u8> {
    pattern(4242, 6000)
}

impl NewDir {
    pub fn new(dir: &'static str) -> Self {
        NewDir { dir, durable: None }
    }
}

impl Part for NewDir {
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool {
        if self.durable.is_some() {
            return false;
        }
        let d = data.join(self.dir);
        fs::create_dir(&d).expect("mkdir");
        let mut f = File::create(d.join(IN_DIR)).expect("create file in new directory");
        f.write_all(&in_dir()).expect("write");
        f.sync_all().expect("fsync");
        std::os::unix::fs::symlink(LINK_TARGET, d.join(LINK)).expect("symlink");
        fsync_dir(&d);
        fsync_dir(data);
        self.durable = Some(mark());
        true
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        if !self.durable.is_some_and(|m| ctx.kept(m)) {
            return Ok(());
        }
        match fs::read_link(data.join(self.dir).join(LINK)) {
            Ok(t) if t == Path::new(LINK_TARGET) => {}
            Ok(t) => return Err(format!("{}/{LINK}: points to {}", self.dir, t.display())),
            Err(e) => return Err(format!("{}/{LINK}: {e}", self.dir)),
        }
        match fs::read(data.join(self.dir).join(IN_DIR)) {
            Ok(g) if g == in_dir() => Ok(()),
            Ok(g) => Err(format!(
                "{}/{IN_DIR}: {} bytes, not as written",
                self.dir,
                g.len()
            )),
            Err(e) => Err(format!("{}/{IN_DIR}: {e}", self.dir)),
        }
    }
}

/// A file written and closed without fsync: only a clean unmount (which
/// syncs the store) makes it durable.
pub struct Unsynced {
    file: &'static str,
    written: bool,
}

fn unsynced() -> Vec<u8> {
    pattern(99, 3 * 4096 + 777)
}

impl Unsynced {
    pub fn new(file: &'static str) -> Self {
        Unsynced {
            file,
            written: false,
        }
    }
}

impl Part for Unsynced {
    fn step(&mut self, data: &Path, _mark: &dyn Fn() -> usize) -> bool {
        if self.written {
            return false;
        }
        fs::write(data.join(self.file), unsynced()).expect("write without fsync");
        self.written = true;
        true
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        if ctx.sync_all.is_none_or(|s| s >= ctx.crash) {
            return Ok(());
        }
        match fs::read(data.join(self.file)) {
            Ok(g) if g == unsynced() => Ok(()),
            Ok(g) => Err(format!(
                "{}: {} bytes after the clean unmount synced the store, not as written",
                self.file,
                g.len()
            )),
            Err(e) => Err(format!(
                "{}: {e} after the clean unmount synced the store",
                self.file
            )),
        }
    }
}

/// Files written in one session and changed in the next: shrunk by
/// truncate (to a block boundary while another file's fsync commits, then
/// inside a block), overwritten in place, appended to.
pub struct NextSession {
    phase: usize,
    /// Log position once the first session's files are fsynced.
    written: Option<usize>,
    /// Log positions: over.bin fsynced, shrink.bin fsynced at 5000 bytes,
    /// grow.bin fsynced with its first append.
    over_synced: Option<usize>,
    shrink_synced: Option<usize>,
    grow_synced: Option<usize>,
}

const SHRINK: &str = "shrink.bin";
const OVER: &str = "over.bin";
const GROW: &str = "grow.bin";

fn shrink_data() -> Vec<u8> {
    pattern(501, 6 * 4096)
}
fn over_old() -> Vec<u8> {
    pattern(502, 8 * 4096)
}
fn over_new() -> Vec<u8> {
    pattern(503, 3 * 4096 + 100)
}
/// Where `over_new` is written in over.bin.
const OVER_AT: usize = 2 * 4096 - 50;
fn grow_old() -> Vec<u8> {
    pattern(504, 2 * 4096)
}
fn grow_new() -> Vec<u8> {
    pattern(505, 4 * 4096)
}

impl NextSession {
    pub fn new() -> Self {
        NextSession {
            phase: 0,
            written: None,
            over_synced: None,
            shrink_synced: None,
            grow_synced: None,
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).expect("create");
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Whether each byte of `got` is the byte of `a` or of `b` at its place.
fn each_old_or_new(got: &[u8], a: &[u8], b: &[u8]) -> bool {
    got.len() == a.len()
        && got
            .iter()
            .zip(a.iter().zip(b))
            .all(|(g, (x, y))| g == x || g == y)
}

impl Part for NextSession {
    fn step(&mut self, data: &Path, mark: &dyn Fn() -> usize) -> bool {
        use std::os::unix::fs::FileExt;
        let phase = self.phase;
        self.phase += 1;
        match phase {
            0 => {
                write_synced(&data.join(SHRINK), &shrink_data());
                write_synced(&data.join(OVER), &over_old());
                write_synced(&data.join(GROW), &grow_old());
                self.written = Some(mark());
            }
            1 => open_rw(&data.join(SHRINK))
                .set_len(2 * 4096)
                .expect("truncate"),
            2 => open_rw(&data.join(OVER))
                .write_all_at(&over_new(), OVER_AT as u64)
                .expect("overwrite"),
            3 => {
                open_rw(&data.join(OVER)).sync_all().expect("fsync");
                self.over_synced = Some(mark());
            }
            4 => {
                let f = open_rw(&data.join(SHRINK));
                f.set_len(5000).expect("truncate");
                f.sync_all().expect("fsync");
                self.shrink_synced = Some(mark());
            }
            5 => {
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(data.join(GROW))
                    .expect("open");
                f.write_all(&grow_new()[..3 * 4096]).expect("append");
                f.sync_all().expect("fsync");
                self.grow_synced = Some(mark());
                f.write_all(&grow_new()[3 * 4096..]).expect("append");
            }
            _ => return false,
        }
        true
    }

    fn remount(&mut self) -> bool {
        self.phase == 1
    }

    fn check(&self, data: &Path, ctx: &Ctx) -> Result<(), String> {
        let read = |name: &str| fs::read(data.join(name)).map_err(|e| format!("{name}: {e}"));
        if !self.written.is_some_and(|m| ctx.kept(m)) {
            return Ok(());
        }
        let s = read(SHRINK)?;
        let a = shrink_data();
        let ok = match s.len() {
            24_576 | 8192 => {
                s[..5000] == a[..5000]
                    && s[5000..]
                        .iter()
                        .zip(&a[5000..s.len()])
                        .all(|(g, x)| g == x || *g == 0)
            }
            5000 => s == a[..5000],
            _ => false,
        };
        if !ok || (self.shrink_synced.is_some_and(|m| ctx.kept(m)) && s.len() != 5000) {
            return Err(format!(
                "{SHRINK}: {} bytes, not the file before or after a truncate",
                s.len()
            ));
        }
        let o = read(OVER)?;
        let old = over_old();
        let mut new = old.clone();
        new[OVER_AT..OVER_AT + over_new().len()].copy_from_slice(&over_new());
        let ok = if self.over_synced.is_some_and(|m| ctx.kept(m)) {
            o == new
        } else {
            each_old_or_new(&o, &old, &new)
        };
        if !ok {
            return Err(format!("{OVER}: neither the old nor the new bytes"));
        }
        let g = read(GROW)?;
        let durable = if self.grow_synced.is_some_and(|m| ctx.kept(m)) {
            5 * 4096
        } else {
            2 * 4096
        };
        let mut want = grow_old();
        want.extend(grow_new());
        if g.len() < durable
            || g.len() > want.len()
            || g[..durable] != want[..durable]
            || !appended_or_zero(&g[durable..], &want[durable..])
        {
            return Err(format!(
                "{GROW}: {} bytes, the first {durable} not as fsynced",
                g.len()
            ));
        }
        Ok(())
    }
}
