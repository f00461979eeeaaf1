//! A full backing disk: writes fail with ENOSPC (from write, fsync or
//! close), the mount keeps serving, and after unmount and remount every file
//! and every block written and fsynced before reads back right; blocks past
//! the last fsync are either right or holes, never garbage or EIO.

mod common;

use common::*;
use std::fs::{self, File};
use std::os::fd::IntoRawFd;

const CHUNK: usize = 256 * 1024;

#[test]
fn general_full_backing_disk_gives_enospc_and_keeps_synced_data() {
    full_disk("general");
}

#[test]
fn full_full_backing_disk_gives_enospc_and_keeps_synced_data() {
    full_disk("full");
}

#[test]
fn max_full_backing_disk_gives_enospc_and_keeps_synced_data() {
    full_disk("max");
}

/// Contents of the filler file at `off`.
fn filler(off: usize, len: usize) -> Vec<u8> {
    // One pattern per chunk, so each chunk is checkable on its own.
    let mut v = Vec::with_capacity(len);
    let mut at = off;
    while v.len() < len {
        let chunk = at / CHUNK;
        let within = at % CHUNK;
        let take = (CHUNK - within).min(len - v.len());
        v.extend_from_slice(&pattern(500 + chunk as u64, CHUNK)[within..within + take]);
        at += take;
    }
    v
}

fn full_disk(preset: &str) {
    require_fuse();
    let outer = tempfile::Builder::new()
        .prefix("strata-tmpfs-")
        .tempdir()
        .expect("tempdir");
    let tmpfs = Tmpfs::mount(&outer.path().join("fs"), "16m");
    let f = Fixture::new_with_store(preset, tmpfs.dir.join("store"));
    let m = f.mount();
    let d = f.disk("data");

    let a = pattern(1, 2 << 20);
    let b = pattern(2, (1 << 20) + 333);
    let write_synced = |path: &std::path::Path, data: &[u8]| {
        let file = File::create(path).expect("create");
        write_at(&file, 0, data).expect("write before the disk is full");
        file.sync_all().expect("fsync before the disk is full");
    };
    write_synced(&d.join("a"), &a);
    write_synced(&f.disk("os").join("b"), &b);
    for i in 0..10u64 {
        write_synced(&d.join(format!("small-{i}")), &pattern(10 + i, 5_000));
    }

    // Fill the disk, fsyncing every MiB; note how much was durably written.
    let fill_path = d.join("fill");
    let file = File::create(&fill_path).expect("create filler");
    let mut written = 0usize;
    let mut synced = 0usize;
    let mut failure = None;
    for i in 0..256 {
        if let Err(e) = write_at(&file, written as u64, &filler(written, CHUNK)) {
            failure = Some(("write", e));
            break;
        }
        written += CHUNK;
        if i % 4 == 3 {
            match file.sync_all() {
                Ok(()) => synced = written,
                Err(e) => {
                    failure = Some(("fsync", e));
                    break;
                }
            }
        }
    }
    if failure.is_none() {
        if let Err(e) = file.sync_all() {
            failure = Some(("final fsync", e));
        }
    }
    let fd = file.into_raw_fd();
    // SAFETY: we own fd (taken from the File) and close it exactly once.
    let closed = unsafe { libc::close(fd) };
    if failure.is_none() && closed != 0 {
        failure = Some(("close", std::io::Error::last_os_error()));
    }
    let (op, err) = failure.unwrap_or_else(|| {
        panic!("wrote {written} bytes to a store on a 16 MiB tmpfs without any error")
    });
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "{op} on a full disk failed with {err} instead of ENOSPC"
    );
    assert!(
        synced >= CHUNK * 4,
        "not even 1 MiB of filler could be synced before the disk filled"
    );

    // The mount still serves reads while full.
    assert_bytes_eq(&fs::read(d.join("a")).expect("read a"), &a, "a while full");
    m.unmount();

    let check = |f: &Fixture| {
        assert_bytes_eq(&fs::read(d.join("a")).expect("read a"), &a, "a");
        assert_bytes_eq(&fs::read(f.disk("os").join("b")).expect("read b"), &b, "b");
        for i in 0..10u64 {
            let got = fs::read(d.join(format!("small-{i}"))).expect("read small file");
            assert_bytes_eq(&got, &pattern(10 + i, 5_000), "small file");
        }
    };
    let m = f.mount();
    check(&f);
    let file = File::open(&fill_path).expect("open filler");
    let len = file.metadata().expect("fstat").len() as usize;
    assert!(
        len >= synced,
        "filler shrank to {len} below its synced {synced} bytes"
    );
    let expected = filler(0, len);
    let got = read_at(&file, 0, synced).expect("read synced part of filler");
    assert_bytes_eq(&got, &expected[..synced], "synced part of the filler");
    // Past the last fsync: each block is what was written or a hole.
    let mut at = synced;
    while at < len {
        let n = BLOCK.min(len - at);
        let got = read_at(&file, at as u64, n)
            .unwrap_or_else(|e| panic!("block at {at} past the last fsync fails: {e}"));
        let want = &expected[at..at + n];
        assert!(
            got == want || got.iter().all(|&x| x == 0),
            "block at {at} past the last fsync holds neither its data nor zeros"
        );
        at += n;
    }
    drop(file);

    // Freeing space makes the disk writable again.
    fs::remove_file(&fill_path).expect("remove filler");
    let c = pattern(3, 1 << 20);
    write_synced(&d.join("c"), &c);
    m.unmount();

    let m = f.mount();
    check(&f);
    assert_bytes_eq(
        &fs::read(d.join("c")).expect("read c"),
        &c,
        "c written after space was freed",
    );
    m.unmount();
    drop(f);
    drop(tmpfs);
}
