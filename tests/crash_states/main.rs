//! Crash states of the backing store, in the manner of CrashMonkey and
//! ALICE: a workload runs on a real strata mount whose backing store sits
//! on a recording filesystem (`recorder`); from the store as it was before
//! and the log of every write and sync that reached it, the states a power
//! cut may leave are built (`model`, which states the model of the backing
//! filesystem) and each is checked:
//!
//! - `strata verify`, run on a copy of the raw state before any mount,
//!   reports only what was in flight: `torn` blocks of files written after
//!   their last sync, `no-header`/`empty` files created after it, and
//!   `missing-dirid` for a directory whose ids were not yet durable,
//!   `orphan-sidecar` for a long name whose entry was not yet made; never
//!   `tag`, `zeroed` or `truncated` (missing or zeroed blocks inside a
//!   crashed session's window read as holes);
//! - a read-write mount of the state (which runs recovery) serves every
//!   file of the persistent disks without EIO, every SQLite transaction
//!   whose commit returned before the crash is there, integrity_check is
//!   ok, fsynced appends and renames are there whole, and bytes in flight
//!   read as the old or new bytes (or zeros where never written);
//! - after that mount, `verify` reports nothing the raw state did not.
//!
//! Every workload ends with a clean unmount (one also remounts half way),
//! so states after a session's end is recorded are checked too. All
//! distinct states are checked when there are at most `BUDGET`, else a
//! sample drawn with a fixed seed; the test's output lists each state.

#[path = "../common/mod.rs"]
#[allow(unused_macros)]
#[macro_use]
mod common;
mod model;
mod parts;
mod recorder;

/// Not a test: the recorder's own process, which the crash-state tests
/// start from this binary (it returns at once when run otherwise).
#[test]
#[ignore = "the recorder process of the crash-state tests"]
fn recorder_process() {
    recorder::serve_from_env();
}

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use model::{Plan, Point, Tree};
use parts::{Ctx, Part};
use recorder::{Op, Recorder, ROOT};

/// Crash states checked per workload at most; beyond, a sample drawn with
/// a fixed seed (the states checked are listed in the test's output).
const BUDGET: usize = 400;
/// Seed of the state choices and samples.
const SEED: u64 = 0x5eed_c4a5_4001;
/// Failing states reported before a workload gives up.
const MAX_FAILURES: usize = 4;

/// The recording of one workload.
struct Recording {
    initial: Tree,
    ops: Vec<Op>,
    /// The log mark at the end of each operation.
    ends: Vec<usize>,
    /// Where the session's clean end starts (the syncfs before its record).
    sync_all: Option<usize>,
}

/// Runs `parts` step by step, round robin, on a mount of `f`'s store whose
/// backing store is recorded, then unmounts cleanly.
fn record(f: &mut Fixture, parts: &mut [Box<dyn Part>]) -> Recording {
    let real = f.store.clone();
    let served = f.path().join("recorded");
    fs::create_dir(&served).expect("recorder mountpoint");
    let mut rec = Recorder::start(&real, &served, &f.path().join("recorder"));
    f.store = served;
    let mut m = f.mount();
    let data = f.disk("data");
    // The log mark at each clean unmount.
    let mut ends = Vec::new();
    let mut busy = true;
    while busy {
        busy = false;
        for p in parts.iter_mut() {
            busy |= p.step(&data, &|| rec.mark());
        }
        let again = parts.iter_mut().fold(false, |a, p| p.remount() | a);
        if again {
            ends.push(rec.mark());
            m.unmount();
            m = f.mount();
        }
    }
    ends.push(rec.mark());
    m.unmount();
    if let Some(why) = rec.failure() {
        panic!("the recorder stopped: {why}");
    }
    let got = rec.finish();
    f.store = real;
    let mut ops = got.ops;
    let mut marks = got.ends;
    // The daemon syncs the whole store (syncfs, which the kernel does not
    // forward to a FUSE server) before it records a session's clean end:
    // see `clean_unmount_syncs_the_store_before_recording_its_end`.
    for &end in ends.iter().rev() {
        let first_after = marks.iter().position(|&e| e > end).unwrap_or(ops.len());
        let record_end = ops[first_after..].iter().position(|op| {
            matches!(op, Op::Create { parent, name, .. }
                if *parent == ROOT && name == OsStr::new(".strata.sessions.tmp"))
        });
        if let Some(i) = record_end {
            let at = first_after + i;
            ops.insert(at, Op::SyncAll);
            marks.insert(at, if at == 0 { 0 } else { marks[at - 1] });
        }
    }
    let sync_all = ops.iter().rposition(|op| matches!(op, Op::SyncAll));
    Recording {
        initial: Tree::initial(&got.initial),
        ops,
        ends: marks,
        sync_all,
    }
}

/// One issue of `strata verify --json`, by backing path relative to the
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Issue {
    kind: String,
    backing: PathBuf,
    block: Option<u64>,
    detail: String,
}

fn verify(f: &Fixture, store: &Path) -> Vec<Issue> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("verify"),
        store.as_os_str(),
        OsStr::new("--json"),
    ];
    args.extend(f.vault_args());
    let out = run(strata(args));
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("verify --json did not give JSON ({e}): {}", describe(&out)));
    report["issues"]
        .as_array()
        .expect("issues array")
        .iter()
        .map(|i| {
            let backing = PathBuf::from(i["backing"].as_str().unwrap_or_default());
            Issue {
                kind: i["kind"].as_str().unwrap_or_default().to_string(),
                backing: backing
                    .strip_prefix(store)
                    .map(Path::to_path_buf)
                    .unwrap_or(backing),
                block: i["block"].as_u64(),
                detail: i["detail"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// Reads every file of the persistent disks whole, and every symlink's
/// target; the ones that fail.
fn unreadable(mnt: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack: Vec<PathBuf> = ["os", "data"].iter().map(|d| mnt.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                bad.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for e in entries {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    bad.push(format!("{}: {err}", dir.display()));
                    continue;
                }
            };
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    if let Err(err) = fs::read(&p) {
                        bad.push(format!("{}: {err}", p.display()));
                    }
                }
                Ok(t) if t.is_symlink() => {
                    if let Err(err) = fs::read_link(&p) {
                        bad.push(format!("{}: {err}", p.display()));
                    }
                }
                Ok(_) => {}
                Err(err) => bad.push(format!("{}: {err}", p.display())),
            }
        }
    }
    bad
}

/// Checks one crash state; the problems found.
fn check_state(
    f: &Fixture,
    r: &Recording,
    point: &Point,
    plan: &Plan,
    parts: &[Box<dyn Part>],
) -> Vec<String> {
    let mut problems = Vec::new();
    let state = point.build(&r.ops, &r.initial, plan);
    let s = Fixture::empty(&f.preset);
    fs::copy(&f.vault, &s.vault).expect("copy vault");
    let ids = state.materialize(&s.store);
    let raw = s.path().join("raw");
    state.materialize(&raw);

    // The raw state, as verify sees it before anything mounts it.
    let before = verify(&s, &raw);
    for i in &before {
        let id = ids.get(&i.backing).copied();
        let (flight, created) = id
            .map(|id| model::in_flight(&r.ops, point, id))
            .unwrap_or((false, false));
        let allowed = match i.kind.as_str() {
            "torn" => flight,
            "no-header" | "empty" => flight && created,
            // A directory whose creation the crash cut short: an id copy
            // missing or not yet durable.
            "missing-dirid" => id.is_some_and(|d| {
                model::made(&r.ops, d)
                    && [".dirid", ".dirid.bak"].iter().any(|n| {
                        state
                            .child(d, n)
                            .is_none_or(|f| model::in_flight(&r.ops, point, f).0)
                    })
            }),
            // A long name's sidecar is written (durably) before its entry:
            // a creation or rename cut short leaves it alone.
            "orphan-sidecar" => id.is_some_and(|f| model::created(&r.ops, f)),
            _ => false,
        };
        if !allowed {
            problems.push(format!(
                "verify of the raw state: {} {} block {:?} ({}){}",
                i.kind,
                i.backing.display(),
                i.block,
                i.detail,
                if flight {
                    " in flight"
                } else {
                    " not in flight"
                }
            ));
        }
    }

    let m = s.mount();
    let ctx = Ctx {
        crash: point.crash,
        issued: if point.crash == 0 {
            0
        } else {
            r.ends[point.crash - 1]
        },
        sync_all: r.sync_all,
    };
    for p in parts {
        if let Err(e) = p.check(&s.disk("data"), &ctx) {
            problems.push(e);
        }
    }
    for b in unreadable(&s.mnt) {
        problems.push(format!("unreadable after the crash: {b}"));
    }
    m.unmount();

    let after = verify(&s, &s.store);
    let was: HashSet<&Issue> = before.iter().collect();
    for i in &after {
        if !was.contains(i) {
            problems.push(format!(
                "verify after the mount: new {} {} block {:?} ({})",
                i.kind,
                i.backing.display(),
                i.block,
                i.detail
            ));
        }
    }
    problems
}

/// Records `parts` on a store of `preset`, builds its crash states and
/// checks each (all of them if few, else a seeded sample).
fn crash_states(name: &str, preset: &str, mut parts: Vec<Box<dyn Part>>) {
    let mut f = Fixture::new(preset);
    let r = record(&mut f, &mut parts);
    let mut rng = Rng::new(SEED);
    let mut seen = HashSet::new();
    let mut states: Vec<(Point, Plan)> = Vec::new();
    let points = model::crash_points(&r.ops);
    for &c in &points {
        let point = Point::at(&r.ops, &r.initial, c);
        for plan in point.plans(&r.ops, &mut rng) {
            if seen.insert(point.build(&r.ops, &r.initial, &plan).digest()) {
                states.push((point.clone(), plan));
            }
        }
    }
    let distinct = states.len();
    if states.len() > BUDGET {
        let mut keep: BTreeSet<usize> = BTreeSet::new();
        // The state a kill -9 at the end leaves is always checked.
        keep.insert(states.len() - 1);
        while keep.len() < BUDGET {
            keep.insert(rng.below(states.len() as u64) as usize);
        }
        states = keep.into_iter().map(|i| states[i].clone()).collect();
    }
    eprintln!(
        "{name}: {} operations, {} crash points, {distinct} distinct states, checking {} (seed {SEED:#x})",
        r.ops.len(),
        points.len(),
        states.len()
    );
    let mut failures = Vec::new();
    for (point, plan) in &states {
        let what = model::describe(&r.ops, point, plan);
        eprintln!("{name}: {what}");
        let problems = check_state(&f, &r, point, plan, &parts);
        if !problems.is_empty() {
            let from = point.crash.saturating_sub(24);
            let ops: Vec<String> = (from..point.crash)
                .map(|i| format!("    {i}: {}", model::short(&r.ops[i])))
                .collect();
            failures.push(format!(
                "{what}:\n  {}\n  the operations before the crash:\n{}",
                problems.join("\n  "),
                ops.join("\n")
            ));
            if failures.len() >= MAX_FAILURES {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} crash states fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sqlite_delete_journal_commits_survive_every_crash_state() {
    crash_states(
        "sqlite-delete",
        "general",
        vec![Box::new(parts::Sqlite::new("db.sqlite", "DELETE"))],
    );
}

#[test]
fn sqlite_wal_commits_survive_every_crash_state() {
    crash_states(
        "sqlite-wal",
        "max",
        vec![Box::new(parts::Sqlite::new("db.sqlite", "WAL"))],
    );
}

#[test]
fn fsynced_appends_survive_every_crash_state() {
    crash_states(
        "append",
        "general",
        vec![Box::new(parts::Append::new("append.log"))],
    );
}

#[test]
fn rename_over_a_file_leaves_a_whole_version_in_every_crash_state() {
    crash_states(
        "rename",
        "general",
        vec![Box::new(parts::Replace::new("current.json"))],
    );
}

#[test]
fn files_of_an_earlier_session_shrunk_overwritten_and_grown_survive_every_crash_state() {
    crash_states(
        "next-session",
        "general",
        vec![Box::new(parts::NextSession::new())],
    );
}

#[test]
fn a_mixed_workload_and_its_clean_unmount_survive_every_crash_state() {
    crash_states(
        "mix",
        "max",
        vec![
            Box::new(parts::Sqlite::new("mix.db", "WAL")),
            Box::new(parts::Append::new("mix.log")),
            Box::new(parts::Replace::new("mix.json")),
            Box::new(parts::NewDir::new("sub")),
            Box::new(parts::Unsynced::new("notes.txt")),
        ],
    );
}

/// The crash states above take a clean unmount as a sync of the whole
/// store before the session's end is recorded (the recorder cannot see a
/// syncfs): the daemon, traced, must call syncfs on the store after the
/// last write and before the record's rename.
#[test]
fn clean_unmount_syncs_the_store_before_recording_its_end() {
    let f = Fixture::new("general");
    let trace = f.path().join("trace");
    let m = f.mount_under(&[
        OsStr::new("strace"),
        OsStr::new("-f"),
        OsStr::new("-qq"),
        OsStr::new("-e"),
        OsStr::new("trace=syncfs,rename,renameat,renameat2"),
        OsStr::new("-o"),
        trace.as_os_str(),
    ]);
    fs::write(f.disk("data").join("unsynced"), pattern(7, 20_000)).expect("write");
    m.unmount();
    let text = fs::read_to_string(&trace).expect("strace output");
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .rposition(|l| l.contains("rename") && l.contains(".strata.sessions.tmp"))
        .unwrap_or_else(|| panic!("the session's end was not recorded:\n{text}"));
    let begin = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains(".strata.sessions.tmp"))
        .unwrap_or(end);
    let synced = lines[..end]
        .iter()
        .rposition(|l| l.contains("syncfs(") && l.trim_end().ends_with("= 0"));
    assert!(
        synced.is_some_and(|s| s > begin),
        "no syncfs of the store before the session's end was recorded:\n{text}"
    );
}
