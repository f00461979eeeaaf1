//! The safety review's findings on the filesystem core, each through a
//! real mount: the block cache never serves one stored file's block for
//! another (snapshots, images, disks made from them); one file object per
//! inode, so truncate racing open, write, read or xattrs behaves as on ext4;
//! a backing file's type comes from its authenticated header; reads never
//! write; a zeroed block is damage.

mod common;

use common::*;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

fn store(f: &Fixture) -> String {
    f.store.to_string_lossy().into_owned()
}

/// Drops the kernel's page cache, so reads reach the daemon (and its block
/// cache) again.
fn drop_page_cache() {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", "3\n").expect("drop caches (needs root)");
}

/// The backing file of plaintext `disk/path`, via `inspect --path`.
fn backing_of(f: &Fixture, plain: &str) -> PathBuf {
    let out = f.cli(&["inspect", &store(f), "--path", plain], true);
    PathBuf::from(assert_ok(&out, "inspect --path").trim())
}

/// truncate(2) by path: a setattr on the inode with no handle of its own.
fn truncate_path(p: &Path, len: u64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())?;
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::truncate(c.as_ptr(), len) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn read_exact_at(p: &Path, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = File::open(p)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

/// The repro of the review: reading a snapshot's copy of a file must not
/// put the snapshot's blocks where the live file's are looked up.
fn snapshot_reads_never_poison_the_live_file(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let live = f.disk("data").join("a.txt");
    fs::write(&live, vec![b'A'; 8192]).expect("write");
    File::open(&live).expect("open").sync_all().expect("fsync");
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "s0"], true),
        "snapshot create",
    );
    let file = File::options().write(true).open(&live).expect("open");
    file.write_all_at(b"NEW-LIVE-DATA", 0).expect("overwrite");
    file.sync_all().expect("fsync");
    drop(file);
    let snap = f.mnt.join(".snapshots/data/s0/a.txt");
    for round in 0..3 {
        // Small reads go through the block cache: the snapshot first.
        assert_eq!(
            read_exact_at(&snap, 0, 13).expect("snapshot"),
            b"AAAAAAAAAAAAA"
        );
        drop_page_cache();
        assert_eq!(
            read_exact_at(&live, 0, 13).expect("live"),
            b"NEW-LIVE-DATA",
            "round {round}"
        );
        drop_page_cache();
    }
    // A small write to the live file (a read-modify-write of its block 0)
    // persists the live block, never the snapshot's.
    File::options()
        .write(true)
        .open(&live)
        .expect("open")
        .write_all_at(b"x", 100)
        .expect("small write");
    m.unmount();
    let m = f.mount();
    let mut want = vec![b'A'; 8192];
    want[..13].copy_from_slice(b"NEW-LIVE-DATA");
    want[100] = b'x';
    assert_eq!(fs::read(&live).expect("live"), want);
    assert_eq!(fs::read(&snap).expect("snapshot"), vec![b'A'; 8192]);
    m.unmount();
}

#[test]
fn snapshot_reads_never_poison_the_live_file_general() {
    snapshot_reads_never_poison_the_live_file("general");
}

#[test]
fn snapshot_reads_never_poison_the_live_file_max() {
    snapshot_reads_never_poison_the_live_file("max");
}

/// A disk made from an image of a disk carries the same plaintext; both,
/// and a snapshot, are read in turn through one mount's cache, and writes
/// to one never show in another.
#[test]
fn image_disk_snapshot_and_live_disk_share_no_cached_block() {
    let f = Fixture::new("general");
    let m = f.mount();
    let live = f.disk("data").join("f");
    fs::write(&live, pattern(1, 20_000)).expect("write");
    m.unmount();
    assert_ok(
        &f.cli(
            &["image", "create", &store(&f), "img", "--from", "data"],
            true,
        ),
        "image create",
    );
    assert_ok(
        &f.cli(
            &["disk", "add", &store(&f), "copy", "--from-image", "img"],
            true,
        ),
        "disk add --from-image",
    );
    let m = f.mount();
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "s"], true),
        "snapshot create",
    );
    let copy = f.disk("copy").join("f");
    let snap = f.mnt.join(".snapshots/data/s/f");
    let mut want_live = pattern(1, 20_000);
    let mut want_copy = pattern(1, 20_000);
    for round in 0..4u8 {
        let at = 4096 * u64::from(round) + 7;
        let (target, want) = if round % 2 == 0 {
            (&live, &mut want_live)
        } else {
            (&copy, &mut want_copy)
        };
        File::options()
            .write(true)
            .open(target)
            .expect("open")
            .write_all_at(&[round + 1; 5], at)
            .expect("write");
        want[at as usize..at as usize + 5].fill(round + 1);
        for p in [&snap, &live, &copy] {
            let _ = read_exact_at(p, at, 5).expect("warm the cache");
        }
        drop_page_cache();
        assert_eq!(fs::read(&live).expect("live"), want_live, "round {round}");
        assert_eq!(fs::read(&copy).expect("copy"), want_copy, "round {round}");
        assert_eq!(fs::read(&snap).expect("snapshot"), pattern(1, 20_000));
        drop_page_cache();
    }
    m.unmount();
}

/// What one race of `truncate(5000)` against `open + pwrite(10 @ 20000) +
/// close` on a 30000-byte file leaves: ext4 gives 5000 bytes, or 20010
/// with zeros in 5000..20000; never the old bytes past 5000.
fn check_truncate_race_outcome(p: &Path, orig: &[u8], what: &str) {
    let got = fs::read(p).unwrap_or_else(|e| panic!("{what}: read: {e}"));
    match got.len() {
        5000 => assert_bytes_eq(&got, &orig[..5000], what),
        20010 => {
            assert_bytes_eq(&got[..5000], &orig[..5000], what);
            assert!(
                got[5000..20000].iter().all(|&b| b == 0),
                "{what}: old data came back after the truncate"
            );
            assert_eq!(&got[20000..], b"0123456789", "{what}");
        }
        n => panic!("{what}: {n} bytes (ext4 gives 5000 or 20010)"),
    }
}

fn truncate_races_open_write(dir: &Path, rounds: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for r in 0..rounds {
        let p = dir.join(format!("race{r}"));
        let orig = pattern(r as u64 + 1, 30_000);
        fs::write(&p, &orig).expect("write");
        let barrier = Arc::new(Barrier::new(2));
        let (b1, p1) = (barrier.clone(), p.clone());
        let t = thread::spawn(move || {
            b1.wait();
            truncate_path(&p1, 5000).expect("truncate");
        });
        barrier.wait();
        let file = File::options().write(true).open(&p).expect("open");
        file.write_all_at(b"0123456789", 20_000).expect("pwrite");
        drop(file);
        t.join().expect("truncate thread");
        check_truncate_race_outcome(&p, &orig, &format!("round {r}"));
        files.push((p, orig));
    }
    files
}

/// Truncate racing open and write, checked at once, after the kernel's
/// cache is dropped, and after a remount, against what ext4 allows; the
/// same race on the test's own ext4 directory is the oracle.
#[test]
fn truncate_racing_open_and_write_behaves_as_on_ext4() {
    let oracle = tempfile::tempdir().expect("tmp");
    truncate_races_open_write(oracle.path(), 50);
    let f = Fixture::new("general");
    let m = f.mount();
    let files = truncate_races_open_write(&f.disk("data"), 150);
    drop_page_cache();
    for (i, (p, orig)) in files.iter().enumerate() {
        check_truncate_race_outcome(p, orig, &format!("round {i} after dropping caches"));
    }
    let sizes: Vec<u64> = files
        .iter()
        .map(|(p, _)| fs::metadata(p).expect("stat").len())
        .collect();
    m.unmount();
    let m = f.mount();
    for (i, (p, orig)) in files.iter().enumerate() {
        check_truncate_race_outcome(p, orig, &format!("round {i} after remount"));
        assert_eq!(
            fs::metadata(p).expect("stat").len(),
            sizes[i],
            "round {i}: the size read back changed at remount"
        );
    }
    m.unmount();
}

/// Loops of truncate against loops of open/write/read/fsync and of xattr
/// changes on one file: no operation fails (no transient EIO from two
/// views of one file), and the end state reads back the same after a
/// remount.
#[test]
fn truncate_write_read_and_xattr_loops_on_one_file_never_fail() {
    let f = Fixture::new("max");
    let m = f.mount();
    let p = f.disk("data").join("busy");
    fs::write(&p, pattern(3, 30_000)).expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    {
        let (p, stop) = (p.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut rng = Rng::new(1);
            while !stop.load(Ordering::Relaxed) {
                truncate_path(&p, rng.below(40_000)).expect("truncate");
            }
        }));
    }
    for w in 0..2u64 {
        let (p, stop) = (p.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut rng = Rng::new(10 + w);
            while !stop.load(Ordering::Relaxed) {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .expect("open");
                let at = rng.below(35_000);
                file.write_all_at(&[b'w'; 100], at).expect("pwrite");
                let mut buf = vec![0u8; 8192];
                file.read_at(&mut buf, rng.below(35_000)).expect("pread");
                if rng.below(4) == 0 {
                    file.sync_data().expect("fdatasync");
                }
            }
        }));
    }
    {
        let (p, stop) = (p.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("value-{n}");
                set_xattr(&p, "user.k", v.as_bytes()).expect("setxattr");
                let got = get_xattr(&p, "user.k").expect("getxattr");
                assert!(got.starts_with(b"value-"), "xattr read {got:?}");
                assert!(list_xattr(&p)
                    .expect("listxattr")
                    .contains(&"user.k".to_string()));
                n += 1;
            }
        }));
    }
    thread::sleep(std::time::Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let end = fs::read(&p).expect("read");
    let x = get_xattr(&p, "user.k").expect("xattr");
    drop_page_cache();
    assert_eq!(fs::read(&p).expect("read"), end, "after dropping caches");
    m.unmount();
    let m = f.mount();
    assert_eq!(fs::read(&p).expect("read"), end, "after remount");
    assert_eq!(get_xattr(&p, "user.k").expect("xattr"), x);
    m.unmount();
    let out = f.cli(&["verify", &store(&f)], true);
    assert_ok(&out, "verify after the races");
}

/// A symlink whose backing sticky bit was cleared looks like a regular file
/// to the backing metadata; opening it must fail on its header's type
/// rather than serve the encrypted target as file contents.
#[test]
fn symlink_with_its_backing_mark_cleared_does_not_open_as_a_file() {
    let f = Fixture::new("general");
    let m = f.mount();
    std::os::unix::fs::symlink("the-target", f.disk("data").join("l")).expect("symlink");
    m.unmount();
    let back = backing_of(&f, "data/l");
    fs::set_permissions(&back, fs::Permissions::from_mode(0o600)).expect("clear the mark");
    let m = f.mount();
    let l = f.disk("data").join("l");
    let r = fs::read(&l);
    assert_errno(r, &[libc::EIO], "reading a symlink whose mark was cleared");
    m.unmount();
}

/// getxattr and listxattr on a file with no header yet (a file never
/// written) answer ENODATA and an empty list, and write nothing: not on a
/// live disk, not on a read-only mount, not in a snapshot.
#[test]
fn xattr_reads_on_a_file_never_written_write_nothing() {
    let f = Fixture::new("general");
    let m = f.mount();
    let p = f.disk("data").join("empty");
    fs::write(&p, b"").expect("create");
    m.unmount();
    // A file with no header: what stores before format 3 left for a file
    // never written.
    let back = backing_of(&f, "data/empty");
    File::options()
        .write(true)
        .open(&back)
        .expect("open backing")
        .set_len(0)
        .expect("truncate backing");
    assert_ok(
        &f.cli(&["snapshot", "create", &store(&f), "data", "s"], true),
        "snapshot create",
    );
    let snap_back = f
        .store
        .join("snapshots/data/s")
        .join(back.file_name().expect("name"));
    let unchanged = |what: &str| {
        assert_eq!(fs::metadata(&back).expect("stat").len(), 0, "{what}");
        assert_eq!(fs::metadata(&snap_back).expect("stat").len(), 0, "{what}");
    };
    let check = |path: &Path, what: &str| {
        assert_errno(
            get_xattr(path, "user.none"),
            &[strata::platform::errno::ENOATTR],
            what,
        );
        assert_eq!(
            list_xattr(path).expect(what),
            Vec::<String>::new(),
            "{what}"
        );
    };
    let m = f.mount_with(&["--ro"]);
    check(&p, "read-only mount");
    check(
        &f.mnt.join(".snapshots/data/s/empty"),
        "read-only mount, snapshot",
    );
    m.unmount();
    unchanged("after a read-only mount");
    let m = f.mount();
    check(&p, "live disk");
    check(&f.mnt.join(".snapshots/data/s/empty"), "snapshot");
    unchanged("after reads on a read-write mount");
    // Setting one is a write: it gives the file its header.
    set_xattr(&p, "user.k", b"v").expect("setxattr");
    assert_eq!(get_xattr(&p, "user.k").expect("getxattr"), b"v");
    assert!(fs::metadata(&back).expect("stat").len() > 0);
    m.unmount();
}

/// A stored block of zeros that is not a recorded hole reads as EIO; the
/// other blocks stay readable, and a real hole still reads as zeros.
#[test]
fn zeroed_stored_block_is_eio_but_holes_read_as_zeros() {
    let f = Fixture::new("max");
    let m = f.mount();
    let p = f.disk("data").join("z");
    fs::write(&p, pattern(5, 3 * BLOCK)).expect("write");
    let sparse = f.disk("data").join("sparse");
    let s = File::create(&sparse).expect("create");
    s.write_all_at(b"end", 10 * BLOCK as u64)
        .expect("write past a hole");
    drop(s);
    m.unmount();
    let back = backing_of(&f, "data/z");
    let at = HEADER_LEN + STORED_BLOCK;
    File::options()
        .write(true)
        .open(&back)
        .expect("open backing")
        .write_all_at(&vec![0u8; STORED_BLOCK as usize], at)
        .expect("zero block 1");
    let m = f.mount();
    assert_errno(
        read_exact_at(&p, BLOCK as u64, 10),
        &[libc::EIO],
        "reading a zeroed block",
    );
    assert_eq!(read_exact_at(&p, 0, 10).expect("block 0"), pattern(5, 10));
    assert_eq!(
        read_exact_at(&p, 2 * BLOCK as u64, 10).expect("block 2"),
        pattern(5, 3 * BLOCK)[2 * BLOCK..2 * BLOCK + 10]
    );
    let mut want = vec![0u8; 10 * BLOCK];
    want.extend_from_slice(b"end");
    assert_eq!(fs::read(&sparse).expect("sparse"), want);
    m.unmount();
}
