//! SQLite on a mount, the workload strata exists for: a database on data/
//! with its temporary files (sorter spills) on temp/, in rollback-journal
//! and WAL modes, big enough that pages, journals and sorts cross many
//! blocks. Checked with `PRAGMA integrity_check` and by content, before and
//! after a remount.

mod common;

use common::*;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const ROWS: i64 = 300_000;

/// SQLite's temp directory setting is process-wide; the tests in this file
/// take turns with it.
static TEMP_DIR_SETTING: Mutex<()> = Mutex::new(());

#[test]
fn general_delete_journal_database_with_spilled_index_build() {
    database_round_trip("general", "DELETE");
}

#[test]
fn general_wal_database_with_spilled_index_build() {
    database_round_trip("general", "WAL");
}

#[test]
fn max_delete_journal_database_with_spilled_index_build() {
    database_round_trip("max", "DELETE");
}

#[test]
fn max_wal_database_with_spilled_index_build() {
    database_round_trip("max", "WAL");
}

fn row_text(i: i64) -> String {
    format!("row-{i:08}-{}", (i * 7919) % 100_003)
}

fn open(db: &Path, temp: &Path, journal: &str) -> Connection {
    let conn = Connection::open(db).expect("open database");
    conn.execute_batch(&format!(
        "PRAGMA temp_store_directory = '{}';
         PRAGMA temp_store = FILE;
         PRAGMA synchronous = FULL;",
        temp.display()
    ))
    .expect("pragmas");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal}"), [], |r| {
            r.get(0)
        })
        .expect("journal_mode");
    assert_eq!(mode.to_uppercase(), journal, "journal mode not accepted");
    conn
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

/// Counts and checksums what a finished load must hold.
fn verify(conn: &Connection) {
    assert_eq!(integrity(conn), "ok");
    let (count, sum): (i64, i64) = conn
        .query_row("SELECT count(*), sum(n) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("count");
    assert_eq!(count, ROWS);
    assert_eq!(sum, (0..ROWS).map(|i| (i * 31) % 1_000).sum::<i64>());
    for i in [0, 1, 4_095, 150_001, ROWS - 1] {
        let txt: String = conn
            .query_row("SELECT txt FROM t WHERE id = ?1", [i], |r| r.get(0))
            .expect("point lookup");
        assert_eq!(txt, row_text(i));
    }
    // The index answers (and agrees with the table).
    let via_index: i64 = conn
        .query_row(
            "SELECT count(*) FROM t INDEXED BY t_txt WHERE txt >= 'row-00100000' AND txt < 'row-00200000'",
            [],
            |r| r.get(0),
        )
        .expect("index range scan");
    assert_eq!(via_index, 100_000);
}

fn database_round_trip(preset: &str, journal: &str) {
    let _turn = TEMP_DIR_SETTING.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new(preset);
    let m = f.mount();
    let db = f.disk("data").join("app.db");
    let temp = f.disk("temp");
    {
        let mut conn = open(&db, &temp, journal);
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, txt TEXT NOT NULL, n INTEGER NOT NULL, pad BLOB)")
            .expect("create table");
        // Several transactions, so the journal (or WAL) is written and
        // committed many times.
        for chunk in 0..6 {
            let tx = conn.transaction().expect("begin");
            {
                let mut ins = tx
                    .prepare("INSERT INTO t (id, txt, n, pad) VALUES (?1, ?2, ?3, randomblob(16))")
                    .expect("prepare");
                for i in chunk * ROWS / 6..(chunk + 1) * ROWS / 6 {
                    ins.execute(params![i, row_text(i), (i * 31) % 1_000])
                        .expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        // A small page cache forces the index sort to spill to temp files.
        conn.execute_batch("PRAGMA cache_size = 50")
            .expect("cache_size");
        let spilled = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Sorter files are unlinked as soon as they are opened, so
                // look for them among our open descriptors.
                let prefix = temp.to_string_lossy().into_owned();
                poll_until(Duration::from_secs(120), || {
                    if open_fds_under(&prefix) {
                        spilled.store(true, Ordering::SeqCst);
                    }
                    done.load(Ordering::SeqCst) || spilled.load(Ordering::SeqCst)
                });
            });
            conn.execute_batch("CREATE INDEX t_txt ON t(txt)")
                .expect("create index");
            done.store(true, Ordering::SeqCst);
        });
        assert!(
            spilled.load(Ordering::SeqCst),
            "the index build never opened a temporary file on {}",
            temp.display()
        );
        // Updates, deletes and re-inserts that rewrite pages all over the
        // file (and the index) and leave the same logical contents.
        {
            let tx = conn.transaction().expect("begin");
            tx.execute_batch(
                "UPDATE t SET pad = randomblob(40) WHERE id % 97 = 0;
                 DELETE FROM t WHERE id % 1000 = 999;",
            )
            .expect("update and delete");
            {
                let mut ins = tx
                    .prepare("INSERT INTO t (id, txt, n, pad) VALUES (?1, ?2, ?3, NULL)")
                    .expect("prepare");
                for i in (999..ROWS).step_by(1000) {
                    ins.execute(params![i, row_text(i), (i * 31) % 1_000])
                        .expect("re-insert");
                }
            }
            tx.commit().expect("commit");
        }
        verify(&conn);
        if journal == "WAL" {
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("checkpoint");
            assert_eq!(busy, 0, "checkpoint was blocked");
        }
    }
    m.unmount();
    let m = f.mount();
    {
        let conn = open(&db, &temp, journal);
        verify(&conn);
        conn.execute_batch("VACUUM").expect("vacuum");
        assert_eq!(integrity(&conn), "ok");
    }
    m.unmount();
}

/// Whether this process has an open descriptor on a path under `prefix`.
fn open_fds_under(prefix: &str) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with(prefix))
    })
}
