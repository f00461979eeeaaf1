//! Revocation takes the keys away, through real mounts: a refused disk holds
//! no ciphers (at mount or after a live revocation) and no cached block,
//! open handles come back when the key does, a rewrap done while mounted
//! moves the keys the mount checks, a vault backup copied back cannot lift a
//! revocation, neither a revocation nor a rotation racing writes loses a
//! write that returned, and neither names the kernel saw absent nor the
//! rest of a listing begun before give anything away after a revocation.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn vault_cmd(f: &Fixture, args: &[&str]) -> String {
    let mut all = vec!["vault"];
    all.extend(args);
    assert_ok(&f.cli(&all, true), &format!("strata vault {args:?}"))
}

fn revoked<T>(r: std::io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(strata::platform::errno::REVOKED))
}

/// `strata status --json` of the fixture's mount.
fn status(f: &Fixture) -> serde_json::Value {
    let out = run(strata([
        OsStr::new("status"),
        f.mnt.as_os_str(),
        OsStr::new("--json"),
    ]));
    let text = assert_ok(&out, "strata status");
    serde_json::from_str(&text).expect("status JSON")
}

/// The status entry of disk `name`.
fn disk_status(f: &Fixture, name: &str) -> serde_json::Value {
    status(f)["fs"]["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no disk {name} in status"))
}

fn keys_in_memory(f: &Fixture, name: &str) -> bool {
    disk_status(f, name)["keys_in_memory"]
        .as_bool()
        .unwrap_or_else(|| panic!("status has no keys_in_memory for {name}"))
}

#[test]
fn a_disk_refused_at_mount_never_has_its_keys_unwrapped() {
    let f = Fixture::new("compliance");
    vault_cmd(&f, &["key", "disable", "cmk"]);
    let m = f.mount();
    assert!(revoked(fs::read_dir(f.disk("data"))), "data is refused");
    assert!(
        !keys_in_memory(&f, "data") && !keys_in_memory(&f, "os"),
        "a disk refused at mount holds no ciphers: {}",
        status(&f)
    );
    assert!(keys_in_memory(&f, "temp"));
    // Enabled again, the disk is served without a remount.
    vault_cmd(&f, &["key", "enable", "cmk"]);
    assert!(
        poll_until(Duration::from_secs(10), || fs::read_dir(f.disk("data"))
            .is_ok()),
        "data not served 10 s after enabling its key"
    );
    assert!(keys_in_memory(&f, "data"));
    m.unmount();
}

#[test]
fn revocation_drops_ciphers_cached_blocks_and_open_files_and_enabling_brings_them_back() {
    let f = Fixture::new("general");
    let m = f.mount();
    let path = f.disk("data").join("file");
    let content = pattern(7, 200_000);
    fs::write(&path, &content).expect("write");
    // Fill the block cache with the disk's blocks.
    drop_page_cache();
    let held = fs::File::open(&path).expect("open");
    let mut buf = vec![0u8; 4096];
    for i in 0..40u64 {
        held.read_at(&mut buf, i * 4096).expect("read");
    }
    assert!(
        status(&f)["fs"]["cache"]["used_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the cache holds blocks"
    );
    vault_cmd(&f, &["key", "disable", "platform"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(
            held.read_at(&mut buf, 0)
        )),
        "an open file still reads 10 s after revocation"
    );
    let st = status(&f);
    assert_eq!(
        st["fs"]["cache"]["used_bytes"], 0,
        "the revoked disk's blocks are purged: {st}"
    );
    assert!(!keys_in_memory(&f, "data"), "ciphers dropped: {st}");
    assert!(revoked(fs::read(&path)));
    assert!(revoked(fs::File::create(f.disk("data").join("new"))));
    vault_cmd(&f, &["key", "enable", "platform"]);
    assert!(
        poll_until(Duration::from_secs(10), || held
            .read_at(&mut buf, 0)
            .is_ok()),
        "the open file does not read 10 s after enabling"
    );
    let mut all = vec![0u8; content.len()];
    held.read_exact_at(&mut all, 0)
        .expect("read all through the old handle");
    assert_bytes_eq(&all, &content, "through the handle opened before");
    assert!(keys_in_memory(&f, "data"));
    drop(held);
    m.unmount();
}

#[test]
fn a_rewrap_of_the_mounted_store_moves_the_keys_the_mount_checks() {
    let f = Fixture::new("full");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), b"before").expect("write");
    let store = f.store.to_str().expect("utf-8");
    vault_cmd(&f, &["key", "rotate", "host", "--store", store]);
    let conf = fs::read_to_string(f.config()).expect("config");
    assert!(
        conf.contains("\"name\": \"host\",\n            \"version\": 2"),
        "{conf}"
    );
    // Served through the rotation, and writes go on.
    fs::write(f.disk("data").join("g"), b"after").expect("write after rewrap");
    // The disks now depend on host@2: disabling it must reach the mount,
    // and disabling host@1 alone must not.
    vault_cmd(&f, &["key", "disable", "host@1"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fs::read(f.disk("data").join("f")).expect("still served"),
        b"before"
    );
    vault_cmd(&f, &["key", "disable", "host@2"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(
            f.disk("data").join("f")
        ))),
        "disabling the version the rewrap moved to is not seen by the mount"
    );
    vault_cmd(&f, &["key", "enable", "host@2"]);
    assert!(poll_until(Duration::from_secs(10), || fs::read(
        f.disk("data").join("g")
    )
    .is_ok_and(|b| b == b"after")));
    m.unmount();
    vault_cmd(&f, &["key", "enable", "host@1"]);
    let m = f.mount();
    assert_eq!(fs::read(f.disk("data").join("f")).expect("read"), b"before");
    assert_eq!(fs::read(f.disk("data").join("g")).expect("read"), b"after");
    m.unmount();
}

#[test]
fn an_older_config_copied_back_while_mounted_is_ignored() {
    let f = Fixture::new("full");
    let m = f.mount();
    let file = f.disk("data").join("f");
    fs::write(&file, b"secret").expect("write");
    let scratch = f.disk("temp").join("t");
    fs::write(&scratch, b"scratch").expect("write temp");
    let store = f.store.to_str().expect("utf-8");
    vault_cmd(&f, &["key", "rotate", "host", "--store", store]);
    let newer = fs::read(f.config()).expect("config");
    // The old config names host@1; the mount must not go back to checking
    // it. The versions it checks may then be stale: its disks are refused
    // until the config is put back.
    fs::copy(f.store.join("strata.conf.bak"), f.config()).expect("copy config backup");
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(&file))),
        "the mount serves on with the keys of an older config: {}",
        m.log()
    );
    // Refused first while the mount flushes, then revoked with the reason.
    assert!(
        poll_until(Duration::from_secs(10), || m
            .log()
            .contains("rolled back or replaced while mounted")),
        "{}",
        m.log()
    );
    // temp's key is the mount's own, under no key the config names: it is
    // never stale, and once refused it could never be served again.
    assert_eq!(
        fs::read(&scratch).expect("temp served through the rollback"),
        b"scratch"
    );
    fs::write(f.config(), &newer).expect("put the config back");
    assert!(
        poll_until(Duration::from_secs(10), || fs::read(&file).is_ok()),
        "not served again once the config is back: {}",
        m.log()
    );
    assert_eq!(fs::read(&scratch).expect("temp after"), b"scratch");
    vault_cmd(&f, &["key", "disable", "host@2"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(&file))),
        "disabling the version the mount depends on is not seen"
    );
    m.unmount();
}

#[test]
fn a_vault_backup_copied_back_does_not_lift_a_revocation() {
    let f = Fixture::new("compliance");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), b"secret").expect("write");
    vault_cmd(&f, &["key", "disable", "cmk"]);
    assert!(poll_until(Duration::from_secs(10), || revoked(fs::read(
        f.disk("data").join("f")
    ))));
    // vault.bak holds cmk enabled, one save back: no passphrase is needed
    // to put it in place.
    let bak = f.vault.with_file_name("vault.bak");
    fs::copy(&bak, &f.vault).expect("copy the backup over the vault");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        revoked(fs::read(f.disk("data").join("f"))),
        "a restored vault backup brought a revoked disk back"
    );
    assert!(!keys_in_memory(&f, "data"));
    assert!(
        m.log().contains("was rolled back"),
        "the daemon says why it ignores the vault: {}",
        m.log()
    );
    m.unmount();
}

/// Writes `count` records of 64 KiB to `path` at increasing offsets, each
/// one written with a plain write (left to the kernel's cache), until
/// `stop`; returns how many writes returned success.
/// A thread appending 64 KiB records (`pattern(i, 65_536)`) to `path`
/// until stopped, counting those whose write returned; started and
/// waited for until `first` records are written.
struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(path: &Path, first: u64) -> Writer {
        Writer::paced(path, first, Duration::ZERO, 2000)
    }

    /// A writer that sleeps `pace` after each record, up to `most`.
    fn paced(path: &Path, first: u64, pace: Duration, most: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let thread = {
            let (path, stop, done) = (path.to_path_buf(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .expect("open for writing");
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) && i < most {
                    if f.write_all(&pattern(i, 65_536)).is_err() {
                        break;
                    }
                    i += 1;
                    done.store(i, Ordering::SeqCst);
                    std::thread::sleep(pace);
                }
            })
        };
        assert!(poll_until(Duration::from_secs(10), || done
            .load(Ordering::SeqCst)
            >= first));
        Writer { stop, done, thread }
    }

    /// Stops the writer; the number of records whose write returned.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("writer");
        self.done.load(Ordering::SeqCst)
    }
}

/// Checks that `data` begins with the writer's first `n` records.
fn assert_records(data: &[u8], n: u64) {
    for i in 0..n {
        let at = (i * 65_536) as usize;
        assert_bytes_eq(
            &data[at..at + 65_536],
            &pattern(i, 65_536),
            &format!("record {i} of {n}"),
        );
    }
}

fn drop_page_cache() {
    let _ = std::process::Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

#[test]
fn a_revocation_racing_writes_loses_no_write_that_returned() {
    let f = Fixture::new("compliance");
    revocation_racing_writes(&f, Duration::ZERO, || f.mount());
}

#[test]
fn writes_taken_while_a_revocation_flushes_fail_instead_of_being_lost() {
    // The daemon pauses between its flush of the kernel's cached writes and
    // taking the keys away: a write the kernel took into its cache then
    // would be acknowledged and never written (the writer goes on writing
    // through the pause, at about a record a millisecond).
    let f = Fixture::new("compliance");
    revocation_racing_writes(&f, Duration::from_millis(1), || {
        f.mount_under(&[
            OsStr::new("env"),
            OsStr::new("STRATA_TEST_PAUSE_AT=revoke-flushed"),
        ])
    });
}

#[test]
fn a_file_truncated_and_rewritten_while_a_revocation_flushes_loses_nothing() {
    // A change through an open file (ftruncate) is still served while the
    // revocation flushes; its reply must not let the kernel take the next
    // write into its cache unasked. The daemon pauses before taking the
    // keys, and the writer truncates and rewrites its file through it.
    let f = Fixture::new("compliance");
    let m = f.mount_under(&[
        OsStr::new("env"),
        OsStr::new("STRATA_TEST_PAUSE_AT=revoke-flushed"),
    ]);
    let path = f.disk("data").join("state");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // (the last record whose write returned, whether a truncate
            // returned after it)
            let mut last: (Option<u64>, bool) = (None, false);
            for i in 0..100_000u64 {
                if stop.load(Ordering::SeqCst) || file.set_len(0).is_err() {
                    break;
                }
                last.1 = true;
                if file.write_all_at(&pattern(i, 8192), 0).is_err() {
                    break;
                }
                last = (Some(i), false);
                std::thread::sleep(Duration::from_millis(1));
            }
            last
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    vault_cmd(&f, &["key", "disable", "cmk"]);
    assert!(poll_until(Duration::from_secs(10), || revoked(
        fs::metadata(&path)
    )));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (last, truncated_after) = writer.join().expect("writer");
    vault_cmd(&f, &["key", "enable", "cmk"]);
    assert!(poll_until(Duration::from_secs(10), || fs::metadata(&path).is_ok()));
    drop_page_cache();
    let data = fs::read(&path).expect("read back");
    let last = last.expect("no write returned before the revocation");
    if truncated_after {
        assert!(
            data.is_empty() || data == pattern(last, 8192),
            "{} bytes: neither the last record written ({last}) nor the truncate after it",
            data.len()
        );
    } else {
        assert_bytes_eq(
            &data,
            &pattern(last, 8192),
            &format!("record {last}, the last that returned"),
        );
    }
    m.unmount();
}

/// A writer appending records (sleeping `pace` after each) while the data
/// disk's key is disabled and enabled again: every record whose write
/// returned is there, now and after a remount.
fn revocation_racing_writes(f: &Fixture, pace: Duration, mount: impl Fn() -> MountGuard) {
    let m = mount();
    let path = f.disk("data").join("log");
    let w = Writer::paced(&path, 20, pace, if pace.is_zero() { 2000 } else { 20_000 });
    vault_cmd(f, &["key", "disable", "cmk"]);
    assert!(poll_until(Duration::from_secs(10), || revoked(
        fs::metadata(&path)
    )));
    let acknowledged = w.stop();
    if !pace.is_zero() {
        // The paced writer was still writing when the revocation came.
        assert!(
            acknowledged < 20_000,
            "the writer finished before the revocation"
        );
    }
    vault_cmd(f, &["key", "enable", "cmk"]);
    assert!(poll_until(Duration::from_secs(10), || fs::metadata(&path).is_ok()));
    drop_page_cache();
    let data = fs::read(&path).expect("read back");
    assert!(
        data.len() as u64 >= acknowledged * 65_536,
        "{} bytes on disk, {} writes of 64 KiB returned",
        data.len(),
        acknowledged
    );
    assert_records(&data, acknowledged);
    m.unmount();
    // And after a remount, from the backing store.
    let m = mount();
    let again = fs::read(&path).expect("read after remount");
    assert_bytes_eq(
        &again[..(acknowledged * 65_536) as usize],
        &data[..(acknowledged * 65_536) as usize],
        "after remount",
    );
    m.unmount();
}

#[test]
fn a_rotation_racing_writes_on_the_mounted_store_loses_nothing() {
    let f = Fixture::new("max");
    let m = f.mount();
    let path = f.disk("data").join("log");
    let w = Writer::start(&path, 10);
    let store = f.store.to_str().expect("utf-8").to_string();
    for key in ["max-cmk", "host", "guest-kek", "platform"] {
        vault_cmd(&f, &["key", "rotate", key, "--store", &store]);
    }
    std::thread::sleep(Duration::from_secs(2));
    let n = w.stop();
    assert!(n > 10, "writes went on through the rotation");
    m.unmount();
    let m = f.mount();
    let data = fs::read(&path).expect("read after remount");
    assert_eq!(data.len() as u64, n * 65_536);
    assert_records(&data, n);
    m.unmount();
}

#[test]
fn an_unlinked_open_file_keeps_its_contents_across_a_revocation() {
    let f = Fixture::new("general");
    let m = f.mount();
    let path = f.disk("data").join("scratch");
    let content = pattern(11, 100_000);
    let held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create");
    held.write_all_at(&content, 0).expect("write");
    held.sync_all().expect("fsync");
    fs::remove_file(&path).expect("unlink while open");
    vault_cmd(&f, &["key", "disable", "platform"]);
    let mut buf = vec![0u8; 4096];
    assert!(
        poll_until(Duration::from_secs(10), || {
            drop_page_cache();
            revoked(held.read_at(&mut buf, 0))
        }),
        "the open file still reads 10 s after revocation"
    );
    vault_cmd(&f, &["key", "enable", "platform"]);
    let mut last = None;
    let back = poll_until(Duration::from_secs(10), || {
        drop_page_cache();
        let r = held.read_at(&mut buf, 0);
        let ok = r.is_ok();
        last = Some(r);
        ok
    });
    assert!(
        back,
        "the unlinked file does not read 10 s after enabling: {last:?}"
    );
    let mut all = vec![0u8; content.len()];
    held.read_exact_at(&mut all, 0)
        .expect("read all through the handle");
    assert_bytes_eq(&all, &content, "an unlinked file across a revocation");
    held.write_all_at(b"still writable", 10)
        .expect("write after restore");
    held.sync_all().expect("fsync after restore");
    drop(held);
    m.unmount();
}

#[test]
fn a_config_write_cut_short_beside_the_mount_leaves_every_disk_served() {
    let f = Fixture::new("full");
    let m = f.mount();
    let file = f.disk("data").join("f");
    fs::write(&file, b"kept").expect("write");
    let scratch = f.disk("temp").join("t");
    fs::write(&scratch, b"scratch").expect("write temp");
    // The rewrap stages the new config and the vault records its
    // generation; the command dies before strata.conf is replaced. The
    // staged config is then the store's current one (every reader takes
    // it): the mount must follow it, not call its config stale.
    let mut cmd = strata(["vault", "key", "rotate", "host", "--store"]);
    cmd.arg(&f.store).args(f.vault_args());
    cmd.env("STRATA_TEST_CRASH_AT", "config-generation-recorded");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(99), "{}", describe(&out));
    assert!(f.store.join("strata.conf.next").exists());
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            fs::read(&file).expect("data still served after the cut write"),
            b"kept",
            "{}",
            m.log()
        );
        assert_eq!(fs::read(&scratch).expect("temp still served"), b"scratch");
    }
    // The mount checks the version the staged config moved to.
    vault_cmd(&f, &["key", "disable", "host@2"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::read(&file))),
        "the mount does not check the key version of the staged config"
    );
    vault_cmd(&f, &["key", "enable", "host@2"]);
    assert!(poll_until(Duration::from_secs(10), || fs::read(&file).is_ok()));
    m.unmount();
}

/// The kernel may remember that a name is absent (a negative entry) and
/// then answers ENOENT without asking: after a revocation that would keep
/// telling which names a disk lacks, where every other question about the
/// disk is refused. A name seen absent just before the revocation is
/// refused as soon as a present one is.
#[test]
fn a_name_seen_absent_before_a_revocation_is_refused_like_the_rest() {
    let f = Fixture::new("general");
    let m = f.mount();
    let present = f.disk("data").join("present");
    let absent = f.disk("data").join("absent");
    fs::write(&present, b"here").expect("write");
    for _ in 0..3 {
        let e = fs::metadata(&absent).expect_err("absent");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
    vault_cmd(&f, &["key", "disable", "platform"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::metadata(&present))),
        "a present name still answers 10 s after revocation"
    );
    assert!(
        poll_until(Duration::from_secs(3), || revoked(fs::metadata(&absent))),
        "a name seen absent before the revocation still answers {:?}",
        fs::metadata(&absent).map(|_| ())
    );
    vault_cmd(&f, &["key", "enable", "platform"]);
    assert!(
        poll_until(Duration::from_secs(10), || fs::metadata(&present).is_ok()),
        "data not served 10 s after enabling its key"
    );
    let e = fs::metadata(&absent).expect_err("still absent");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    m.unmount();
}

/// A listing read in several steps (a directory larger than one step)
/// that began before a revocation gives no more names after it: the rest
/// of the listing is refused like every other question about the disk.
#[test]
fn a_listing_begun_before_a_revocation_gives_no_names_after_it() {
    const FILES: usize = 600;
    let f = Fixture::new("general");
    let m = f.mount();
    let dir = f.disk("data").join("d");
    fs::create_dir(&dir).expect("mkdir");
    let long = "n".repeat(150);
    for i in 0..FILES {
        fs::write(dir.join(format!("{i:04}-{long}")), b"x").expect("write");
    }
    let mut listing = fs::read_dir(&dir).expect("open the directory");
    for _ in 0..20 {
        listing
            .next()
            .expect("the listing ended early")
            .expect("an entry");
    }
    let present = dir.join(format!("0000-{long}"));
    vault_cmd(&f, &["key", "disable", "platform"]);
    assert!(
        poll_until(Duration::from_secs(10), || revoked(fs::metadata(&present))),
        "a file still answers 10 s after revocation"
    );
    // What the last step brought in may still be handed out; the next step
    // is refused, long before the listing's end.
    let mut after = 0;
    let end = loop {
        match listing.next() {
            Some(Ok(_)) => after += 1,
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    let what = format!("{after} more names after the revocation, then {end:?}");
    assert!(
        20 + after < FILES && revoked(end.map_or(Ok(()), Err)),
        "{what}"
    );
    drop(listing);
    vault_cmd(&f, &["key", "enable", "platform"]);
    m.unmount();
}
