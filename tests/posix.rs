//! POSIX behaviour of a real mount, for every preset: what SQLite, build
//! tools and ordinary programs rely on. Each body below runs once per preset
//! (`general::…`, `max::…`); every check that matters for the backing store
//! is repeated after an unmount and a fresh mount, so the kernel's page
//! cache cannot hide what the daemon stored.

#[macro_use]
mod common;

use common::*;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

per_preset!(
    random_unaligned_writes_match_a_model,
    concurrent_writes_into_shared_blocks_are_not_lost,
    sparse_file_reads_zero_in_its_holes,
    truncate_down_then_up_reads_zeros_past_the_old_end,
    rename_replaces_target_and_open_target_keeps_old_contents,
    unlinked_open_file_stays_readable_writable_and_syncable,
    hard_links_share_content_and_count_links,
    symlinks_keep_their_targets_up_to_path_max,
    mkdir_rmdir_and_non_empty_directories,
    chmod_chown_utimens_read_back,
    statfs_reports_a_sane_filesystem,
    user_xattrs_set_get_list_remove,
    xattr_create_replace_flags_and_names_like_the_long_form_are_kept,
    fifos_can_be_made_and_used,
    shared_writable_mmap_reaches_the_store,
    fsync_and_fdatasync_succeed_on_files_and_directories,
    names_of_255_bytes_round_trip,
    data_survives_unmount_and_remount,
    read_only_mount_serves_reads_and_refuses_writes,
    temp_disk_works_and_is_empty_after_remount,
    mount_root_holds_exactly_the_disks,
);

/// Random pwrite's at unaligned offsets and lengths (many straddling 4 KiB
/// boundaries) on every disk, checked against an in-memory model, then
/// again after a remount for the persistent disks.
fn random_unaligned_writes_match_a_model(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let mut models = Vec::new();
    for (i, disk) in DISKS.iter().enumerate() {
        let path = f.disk(disk).join("model.bin");
        let file = open_rw(&path);
        let mut model: Vec<u8> = Vec::new();
        let mut rng = Rng::new(0x5eed + i as u64);
        for op in 0..240 {
            let off = if op % 3 == 0 {
                // Land just before a block boundary so the write straddles it.
                let b = 1 + rng.below(20);
                b * BLOCK as u64 - 1 - rng.below(40)
            } else {
                rng.below(90_000)
            } as usize;
            let len = 1 + rng.below(if op % 7 == 0 { 20_000 } else { 5_000 }) as usize;
            let data = rng.bytes(len);
            write_at(&file, off as u64, &data).expect("pwrite");
            if model.len() < off + len {
                model.resize(off + len, 0);
            }
            model[off..off + len].copy_from_slice(&data);
            if op % 40 == 39 {
                let got = read_at(&file, 0, model.len() + 100).expect("pread");
                assert_bytes_eq(&got, &model, &format!("{disk} after {op} writes"));
            }
        }
        assert_eq!(file.metadata().expect("fstat").len(), model.len() as u64);
        for _ in 0..200 {
            let off = rng.below(model.len() as u64 + 5_000) as usize;
            let len = 1 + rng.below(12_000) as usize;
            let got = read_at(&file, off as u64, len).expect("pread");
            let want = if off >= model.len() {
                &[][..]
            } else {
                &model[off..(off + len).min(model.len())]
            };
            assert_bytes_eq(&got, want, &format!("{disk} read of {len} at {off}"));
        }
        drop(file);
        assert_bytes_eq(&fs::read(&path).expect("read"), &model, disk);
        models.push((disk, path, model));
    }
    m.unmount();
    let m = f.mount();
    for (disk, path, model) in &models {
        if **disk == "temp" {
            continue;
        }
        let got = fs::read(path).expect("read after remount");
        assert_bytes_eq(&got, model, &format!("{disk} after remount"));
    }
    m.unmount();
}

/// Threads writing interleaved byte ranges that share 4 KiB blocks: every
/// write must survive (a read-modify-write of a block must not race).
fn concurrent_writes_into_shared_blocks_are_not_lost(preset: &str) {
    const THREADS: usize = 4;
    const CHUNK: usize = 300;
    const ROUNDS: usize = 60;
    let f = Fixture::new(preset);
    let m = f.mount();
    let path = f.disk("data").join("shared.bin");
    let total = THREADS * CHUNK * ROUNDS;
    open_rw(&path).set_len(total as u64).expect("set_len");
    let expected: Vec<Vec<u8>> = (0..THREADS)
        .map(|t| pattern(100 + t as u64, CHUNK * ROUNDS))
        .collect();
    std::thread::scope(|s| {
        for (t, mine) in expected.iter().enumerate() {
            let path = path.clone();
            s.spawn(move || {
                let file = open_rw(&path);
                let mut rng = Rng::new(t as u64);
                let mut order: Vec<usize> = (0..ROUNDS).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                for r in order {
                    let off = (r * THREADS + t) * CHUNK;
                    write_at(&file, off as u64, &mine[r * CHUNK..(r + 1) * CHUNK]).expect("pwrite");
                }
            });
        }
    });
    let mut want = vec![0u8; total];
    for r in 0..ROUNDS {
        for (t, mine) in expected.iter().enumerate() {
            let off = (r * THREADS + t) * CHUNK;
            want[off..off + CHUNK].copy_from_slice(&mine[r * CHUNK..(r + 1) * CHUNK]);
        }
    }
    assert_bytes_eq(
        &fs::read(&path).expect("read"),
        &want,
        "after concurrent writes",
    );
    m.unmount();
    let m = f.mount();
    assert_bytes_eq(&fs::read(&path).expect("read"), &want, "after remount");
    m.unmount();
}

/// A write at 1 GiB leaves a hole that reads as zeros and costs no space,
/// in the mount and in the backing store; a 1 TiB truncate is just as cheap.
fn sparse_file_reads_zero_in_its_holes(preset: &str) {
    const GIB: u64 = 1 << 30;
    let f = Fixture::new(preset);
    let m = f.mount();
    let path = f.disk("data").join("sparse");
    let check = |file: &File| {
        assert_eq!(file.metadata().expect("fstat").len(), GIB + 4);
        assert_eq!(read_at(file, 0, 8192).expect("pread"), vec![0u8; 8192]);
        assert_eq!(
            read_at(file, 512 * (1 << 20) + 123, 9000).expect("pread"),
            vec![0u8; 9000]
        );
        let tail = read_at(file, GIB - 10, 100).expect("pread");
        let mut want = vec![0u8; 10];
        want.extend_from_slice(b"tail");
        assert_eq!(tail, want, "end of the file");
        let mid = read_at(file, 300 * (1 << 20) + 4090, 16).expect("pread");
        assert_eq!(&mid, b"\0\0\0\0\0midpoint\0\0\0", "write inside the hole");
    };
    {
        let file = open_rw(&path);
        write_at(&file, GIB, b"tail").expect("pwrite at 1 GiB");
        write_at(&file, 300 * (1 << 20) + 4095, b"midpoint").expect("pwrite inside hole");
        file.sync_all().expect("fsync");
        check(&file);
        let st = file.metadata().expect("fstat");
        assert!(
            st.blocks() * 512 < 1 << 20,
            "sparse file reports {} blocks of 512 bytes",
            st.blocks()
        );
    }
    m.unmount();
    let backing: u64 = backing_user_files(&f.backing("data"))
        .iter()
        .map(|p| allocated(p))
        .sum();
    assert!(
        backing < 1 << 20,
        "backing store spends {backing} bytes on a sparse file"
    );

    let m = f.mount();
    let file = open_rw(&path);
    check(&file);
    // Growing by truncate writes nothing either.
    const TIB: u64 = 1 << 40;
    file.set_len(TIB).expect("truncate to 1 TiB");
    assert_eq!(file.metadata().expect("fstat").len(), TIB);
    assert_eq!(
        read_at(&file, TIB - 5000, 6000).expect("pread"),
        vec![0u8; 5000]
    );
    assert_eq!(read_at(&file, GIB, 4).expect("pread"), b"tail");
    drop(file);
    m.unmount();
    let backing: u64 = backing_user_files(&f.backing("data"))
        .iter()
        .map(|p| allocated(p))
        .sum();
    assert!(
        backing < 1 << 20,
        "backing store spends {backing} bytes after a 1 TiB truncate"
    );
    let m = f.mount();
    let file = File::open(&path).expect("open");
    assert_eq!(file.metadata().expect("fstat").len(), TIB);
    assert_eq!(
        read_at(&file, TIB - 4096, 4096).expect("pread"),
        vec![0u8; 4096]
    );
    drop(file);
    m.unmount();
}

/// Truncating into the middle of a block and growing again must not bring
/// back the old bytes, in the mount or after a remount.
fn truncate_down_then_up_reads_zeros_past_the_old_end(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let path = f.disk("data").join("trunc");
    let data = pattern(7, 20_000);
    let mut model = data.clone();
    {
        let file = open_rw(&path);
        write_at(&file, 0, &data).expect("pwrite");
        file.set_len(5_000).expect("truncate down");
        model.truncate(5_000);
        assert_eq!(file.metadata().expect("fstat").len(), 5_000);
        assert_bytes_eq(
            &read_at(&file, 0, 30_000).expect("pread"),
            &model,
            "after truncate down",
        );
        file.set_len(20_000).expect("truncate up");
        model.resize(20_000, 0);
        assert_bytes_eq(
            &read_at(&file, 0, 30_000).expect("pread"),
            &model,
            "after truncate up",
        );
        write_at(&file, 30_000, b"x").expect("pwrite past end");
        model.resize(30_001, 0);
        model[30_000] = b'x';
        file.set_len(4_097)
            .expect("truncate to one byte into block 1");
        model.truncate(4_097);
        file.set_len(8_192 + 100).expect("grow again");
        model.resize(8_192 + 100, 0);
        assert_bytes_eq(
            &read_at(&file, 0, 20_000).expect("pread"),
            &model,
            "after second grow",
        );
    }
    // Truncate by path, to zero, and O_TRUNC.
    let other = f.disk("data").join("trunc2");
    fs::write(&other, pattern(8, 10_000)).expect("write");
    File::create(&other).expect("O_TRUNC open");
    assert_eq!(fs::metadata(&other).expect("stat").len(), 0);
    {
        let file = open_rw(&other);
        write_at(&file, 3 * 4096 + 1, b"y").expect("pwrite");
    }
    let mut other_model = vec![0u8; 3 * 4096 + 2];
    other_model[3 * 4096 + 1] = b'y';
    assert_bytes_eq(
        &fs::read(&other).expect("read"),
        &other_model,
        "after O_TRUNC and write",
    );
    m.unmount();

    let m = f.mount();
    assert_bytes_eq(
        &fs::read(&path).expect("read"),
        &model,
        "truncated file after remount",
    );
    assert_bytes_eq(
        &fs::read(&other).expect("read"),
        &other_model,
        "O_TRUNC file after remount",
    );
    // Truncate down again after the remount, with a cold cache.
    {
        let file = open_rw(&path);
        file.set_len(10).expect("truncate");
        file.set_len(5_000).expect("grow");
        model.truncate(10);
        model.resize(5_000, 0);
    }
    m.unmount();
    let m = f.mount();
    assert_bytes_eq(
        &fs::read(&path).expect("read"),
        &model,
        "cold truncate after remount",
    );
    m.unmount();
}

/// rename moves, replaces an existing target atomically, and an fd open on
/// the replaced target still reads what it held.
fn rename_replaces_target_and_open_target_keeps_old_contents(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let a_data = pattern(1, 3 * BLOCK + 17);
    let b_data = pattern(2, 2 * BLOCK + 5);
    fs::write(d.join("a"), &a_data).expect("write a");
    fs::write(d.join("b"), &b_data).expect("write b");
    fs::rename(d.join("a"), d.join("c")).expect("rename a -> c");
    assert!(!d.join("a").exists(), "a still exists after rename");
    assert_eq!(fs::read(d.join("c")).expect("read c"), a_data);

    let mut open_b = File::open(d.join("b")).expect("open b");
    fs::rename(d.join("c"), d.join("b")).expect("rename c over b");
    assert!(!d.join("c").exists());
    let mut old = Vec::new();
    open_b
        .read_to_end(&mut old)
        .expect("read replaced b through its fd");
    assert_bytes_eq(&old, &b_data, "fd open on the replaced target");
    drop(open_b);
    assert_bytes_eq(
        &fs::read(d.join("b")).expect("read b"),
        &a_data,
        "b after rename over it",
    );

    // Across directories, and directories themselves.
    fs::create_dir_all(d.join("d1/inner")).expect("mkdir");
    fs::create_dir(d.join("d2")).expect("mkdir");
    fs::write(d.join("d1/x"), b"x-data").expect("write");
    fs::write(d.join("d1/inner/deep"), b"deep-data").expect("write");
    fs::rename(d.join("d1/x"), d.join("d2/y")).expect("rename across directories");
    fs::rename(d.join("d1"), d.join("d3")).expect("rename directory");
    assert_eq!(
        fs::read(d.join("d3/inner/deep")).expect("read"),
        b"deep-data"
    );
    fs::create_dir(d.join("e1")).expect("mkdir");
    fs::create_dir(d.join("e2")).expect("mkdir");
    fs::rename(d.join("e1"), d.join("e2")).expect("rename directory over empty directory");
    assert_errno(
        fs::rename(d.join("e2"), d.join("d3")),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "rename directory over non-empty directory",
    );
    // Overwrite by rename on the os disk too.
    fs::write(f.disk("os").join("cfg.tmp"), b"new config").expect("write");
    fs::write(f.disk("os").join("cfg"), b"old config").expect("write");
    fs::rename(f.disk("os").join("cfg.tmp"), f.disk("os").join("cfg")).expect("rename");
    m.unmount();

    let m = f.mount();
    assert_eq!(list(&d), vec!["b", "d2", "d3", "e2"]);
    assert_bytes_eq(
        &fs::read(d.join("b")).expect("read"),
        &a_data,
        "b after remount",
    );
    assert_eq!(fs::read(d.join("d2/y")).expect("read"), b"x-data");
    assert_eq!(
        fs::read(d.join("d3/inner/deep")).expect("read"),
        b"deep-data"
    );
    assert_eq!(list(&d.join("d3")), vec!["inner"]);
    assert_eq!(
        fs::read(f.disk("os").join("cfg")).expect("read"),
        b"new config"
    );
    assert_eq!(list(&f.disk("os")), vec!["cfg"]);
    m.unmount();
}

/// A file unlinked while open keeps working through its fd (read, write,
/// fsync, fdatasync, fstat, ftruncate), and leaves nothing behind once
/// closed.
fn unlinked_open_file_stays_readable_writable_and_syncable(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    for disk in DISKS {
        let path = f.disk(disk).join("doomed");
        let file = open_rw(&path);
        let mut model = pattern(3, 10_000);
        write_at(&file, 0, &model).expect("pwrite");
        fs::remove_file(&path).expect("unlink while open");
        assert!(!path.exists(), "{disk}: name still there after unlink");
        assert!(
            list(&f.disk(disk)).is_empty(),
            "{disk}: listing after unlink"
        );
        assert_bytes_eq(
            &read_at(&file, 0, 20_000).expect("pread"),
            &model,
            "read after unlink",
        );
        let more = pattern(4, 9_000);
        write_at(&file, 6_000, &more).expect("pwrite after unlink");
        model.resize(15_000, 0);
        model[6_000..15_000].copy_from_slice(&more);
        file.sync_all().expect("fsync after unlink");
        file.sync_data().expect("fdatasync after unlink");
        let st = file.metadata().expect("fstat after unlink");
        assert_eq!(st.len(), 15_000, "{disk}: fstat size after unlink");
        assert_bytes_eq(
            &read_at(&file, 0, 20_000).expect("pread"),
            &model,
            "read back after unlink",
        );
        file.set_len(4_100).expect("ftruncate after unlink");
        model.truncate(4_100);
        assert_bytes_eq(
            &read_at(&file, 0, 20_000).expect("pread"),
            &model,
            "after ftruncate",
        );
        // A new file under the same name is a different file.
        fs::write(&path, b"new").expect("recreate");
        assert_bytes_eq(
            &read_at(&file, 0, 20_000).expect("pread"),
            &model,
            "old fd after recreate",
        );
        fs::remove_file(&path).expect("unlink new");
        drop(file);
    }
    m.unmount();
    for disk in ["os", "data"] {
        let left = backing_user_files(&f.backing(disk));
        assert!(
            left.is_empty(),
            "{disk}: backing files left after unlinked files closed: {left:?}"
        );
    }
    let m = f.mount();
    for disk in ["os", "data"] {
        assert!(
            list(&f.disk(disk)).is_empty(),
            "{disk}: not empty after remount"
        );
    }
    m.unmount();
}

/// Hard links: one file under several names, nlink counted, content shared.
fn hard_links_share_content_and_count_links(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let a = d.join("a");
    let b = d.join("b");
    fs::create_dir(d.join("sub")).expect("mkdir");
    let c = d.join("sub/c");
    fs::write(&a, pattern(5, 5_000)).expect("write");
    fs::hard_link(&a, &b).expect("link");
    fs::hard_link(&a, &c).expect("link into another directory");
    let (ma, mb, mc) = (
        fs::metadata(&a).expect("stat"),
        fs::metadata(&b).expect("stat"),
        fs::metadata(&c).expect("stat"),
    );
    assert_eq!(
        (ma.nlink(), mb.nlink(), mc.nlink()),
        (3, 3, 3),
        "nlink after two links"
    );
    assert_eq!(ma.ino(), mb.ino(), "links share an inode number");
    assert_eq!(ma.ino(), mc.ino(), "links share an inode number");
    let patch = pattern(6, 3_000);
    write_at(&open_rw(&b), 4_000, &patch).expect("write through b");
    let mut model = pattern(5, 5_000);
    model.resize(7_000, 0);
    model[4_000..7_000].copy_from_slice(&patch);
    assert_bytes_eq(
        &fs::read(&a).expect("read a"),
        &model,
        "a after writing through b",
    );
    assert_bytes_eq(
        &fs::read(&c).expect("read c"),
        &model,
        "c after writing through b",
    );
    fs::remove_file(&a).expect("unlink a");
    assert_eq!(
        fs::metadata(&b).expect("stat").nlink(),
        2,
        "nlink after unlink"
    );
    m.unmount();

    let m = f.mount();
    assert!(!a.exists());
    let (mb, mc) = (
        fs::metadata(&b).expect("stat"),
        fs::metadata(&c).expect("stat"),
    );
    assert_eq!((mb.nlink(), mc.nlink()), (2, 2), "nlink after remount");
    assert_eq!(
        mb.ino(),
        mc.ino(),
        "links share an inode number after remount"
    );
    assert_bytes_eq(&fs::read(&b).expect("read b"), &model, "b after remount");
    write_at(&open_rw(&c), 0, b"shared").expect("write through c");
    assert_eq!(&fs::read(&b).expect("read b")[..6], b"shared");
    fs::remove_file(&b).expect("unlink b");
    assert_eq!(fs::metadata(&c).expect("stat").nlink(), 1);
    m.unmount();
    let m = f.mount();
    assert_eq!(&fs::read(&c).expect("read c")[..6], b"shared");
    assert_eq!(fs::metadata(&c).expect("stat").nlink(), 1);
    m.unmount();
}

/// Symlinks of every length up to PATH_MAX - 1, dangling or not, relative
/// or absolute, keep their exact targets.
fn symlinks_keep_their_targets_up_to_path_max(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    fs::write(d.join("target-file"), b"through the link").expect("write");
    let long_4000: String = (0..1000)
        .map(|i| format!("{:03}/", i % 1000))
        .collect::<String>()[..4000]
        .to_string();
    let long_4095: String = "abcdefghijklmno/".repeat(256)[..4095].to_string();
    let links: Vec<(&str, String)> = vec![
        ("rel", "target-file".to_string()),
        ("abs", "/etc/hostname".to_string()),
        ("dangling", "no/such/file".to_string()),
        ("long4000", long_4000),
        ("long4095", long_4095),
        ("dots", "../data/./target-file".to_string()),
    ];
    for (name, target) in &links {
        std::os::unix::fs::symlink(target, d.join(name))
            .unwrap_or_else(|e| panic!("symlink {name} ({} bytes): {e}", target.len()));
    }
    let check = || {
        for (name, target) in &links {
            let got =
                fs::read_link(d.join(name)).unwrap_or_else(|e| panic!("readlink {name}: {e}"));
            assert_eq!(got, PathBuf::from(target), "target of {name}");
            let st = fs::symlink_metadata(d.join(name)).expect("lstat");
            assert!(st.file_type().is_symlink(), "{name} is not a symlink");
            assert_eq!(st.len(), target.len() as u64, "lstat size of {name}");
        }
        assert_eq!(
            fs::read(d.join("rel")).expect("read through link"),
            b"through the link"
        );
        assert_eq!(
            fs::read(d.join("dots")).expect("read through link"),
            b"through the link"
        );
    };
    check();
    m.unmount();
    let m = f.mount();
    check();
    m.unmount();
}

/// mkdir honours its mode, nests, refuses duplicates; rmdir refuses
/// non-empty directories with ENOTEMPTY; a big directory lists fully.
fn mkdir_rmdir_and_non_empty_directories(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let top = d.join("top");
    fs::DirBuilder::new()
        .mode(0o750)
        .create(&top)
        .expect("mkdir 0750");
    let mode = fs::metadata(&top).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o750 & !umask(), "mode of a new directory");
    fs::create_dir_all(top.join("e/f")).expect("mkdir -p");
    fs::write(top.join("e/f/file"), b"content").expect("write");
    assert_errno(
        fs::remove_dir(&top),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "rmdir non-empty top",
    );
    assert_errno(
        fs::remove_dir(top.join("e/f")),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "rmdir dir with a file",
    );
    assert_errno(
        fs::create_dir(top.join("e")),
        &[libc::EEXIST],
        "mkdir existing",
    );
    assert_errno(
        fs::remove_dir(top.join("e/f/file")),
        &[libc::ENOTDIR],
        "rmdir on a file",
    );
    fs::remove_file(top.join("e/f/file")).expect("unlink");
    fs::remove_dir(top.join("e/f")).expect("rmdir empty");
    assert_eq!(list(&top.join("e")), Vec::<String>::new());
    // A directory with many entries lists every one (readdir continues).
    let big = d.join("big");
    fs::create_dir(&big).expect("mkdir");
    let mut names: Vec<String> = (0..400)
        .map(|i| format!("entry-{i:04}-{}", "n".repeat(i % 60)))
        .collect();
    for n in &names {
        File::create(big.join(n)).expect("create");
    }
    names.sort();
    assert_eq!(list(&big), names, "listing of a 400-entry directory");
    m.unmount();

    let m = f.mount();
    assert_eq!(
        list(&big),
        names,
        "listing of a 400-entry directory after remount"
    );
    assert_eq!(list(&top), vec!["e"]);
    assert_eq!(
        fs::metadata(&top).expect("stat").mode() & 0o7777,
        0o750 & !umask()
    );
    fs::remove_dir(top.join("e")).expect("rmdir");
    fs::remove_dir(&top).expect("rmdir");
    for n in &names {
        fs::remove_file(big.join(n)).expect("unlink");
    }
    fs::remove_dir(&big).expect("rmdir emptied directory");
    assert!(list(&d).is_empty());
    m.unmount();
}

/// Permission bits, ownership and timestamps (to the nanosecond) read back,
/// on files, directories and symlinks, before and after a remount.
fn chmod_chown_utimens_read_back(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let file = d.join("file");
    let dir = d.join("dir");
    let link = d.join("link");
    fs::write(&file, b"meta").expect("write");
    fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::symlink("file", &link).expect("symlink");

    fs::set_permissions(&file, fs::Permissions::from_mode(0o604)).expect("chmod file");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1751)).expect("chmod dir");
    std::os::unix::fs::chown(&file, Some(1234), Some(5678)).expect("chown file");
    std::os::unix::fs::chown(&dir, Some(4321), Some(8765)).expect("chown dir");
    std::os::unix::fs::lchown(&link, Some(2222), Some(3333)).expect("lchown symlink");
    let atime = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    let mtime = UNIX_EPOCH + Duration::new(1_500_000_000, 987_654_321);
    let times = FileTimes::new().set_accessed(atime).set_modified(mtime);
    File::options()
        .write(true)
        .open(&file)
        .expect("open")
        .set_times(times)
        .expect("utimens file");
    File::open(&dir)
        .expect("open dir")
        .set_times(times)
        .expect("utimens dir");

    let check = || {
        let st = fs::metadata(&file).expect("stat file");
        assert_eq!(st.mode() & 0o7777, 0o604, "file mode");
        assert_eq!((st.uid(), st.gid()), (1234, 5678), "file owner");
        assert_eq!(
            (st.atime(), st.atime_nsec()),
            (1_000_000_000, 123_456_789),
            "file atime"
        );
        assert_eq!(
            (st.mtime(), st.mtime_nsec()),
            (1_500_000_000, 987_654_321),
            "file mtime"
        );
        let st = fs::metadata(&dir).expect("stat dir");
        assert_eq!(st.mode() & 0o7777, 0o1751, "dir mode");
        assert_eq!((st.uid(), st.gid()), (4321, 8765), "dir owner");
        assert_eq!(
            (st.mtime(), st.mtime_nsec()),
            (1_500_000_000, 987_654_321),
            "dir mtime"
        );
        let st = fs::symlink_metadata(&link).expect("lstat link");
        assert_eq!((st.uid(), st.gid()), (2222, 3333), "symlink owner");
    };
    check();
    // A later write moves mtime forward from the set value.
    let before = SystemTime::now() - Duration::from_secs(5);
    let other = d.join("other");
    fs::write(&other, b"x").expect("write");
    let mt = fs::metadata(&other)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert!(mt >= before, "mtime of a new file is not recent: {mt:?}");
    m.unmount();
    let m = f.mount();
    check();
    m.unmount();
}

/// statfs answers on the root and on every disk with plausible numbers.
fn statfs_reports_a_sane_filesystem(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let mut paths = vec![f.mnt.clone()];
    paths.extend(DISKS.iter().map(|d| f.disk(d)));
    for p in &paths {
        let st = statvfs(p).unwrap_or_else(|e| panic!("statfs {}: {e}", p.display()));
        assert!(st.f_bsize > 0, "{}: f_bsize 0", p.display());
        assert!(st.f_blocks > 0, "{}: f_blocks 0", p.display());
        assert!(
            st.f_bfree <= st.f_blocks,
            "{}: more free than total",
            p.display()
        );
        assert!(
            st.f_bavail <= st.f_blocks,
            "{}: more available than total",
            p.display()
        );
        assert!(
            st.f_namemax >= 255,
            "{}: f_namemax {}",
            p.display(),
            st.f_namemax
        );
    }
    m.unmount();
}

/// user.* extended attributes on files and directories: set, get, list,
/// replace, remove, with binary and empty values.
fn user_xattrs_set_get_list_remove(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let file = d.join("file");
    let dir = d.join("dir");
    fs::write(&file, b"x").expect("write");
    fs::create_dir(&dir).expect("mkdir");
    let binary = pattern(9, 3_000);
    let long_name = format!("user.{}", "k".repeat(200));
    set_xattr(&file, "user.alpha", b"one").expect("setxattr alpha");
    set_xattr(&file, "user.beta", &binary).expect("setxattr beta");
    set_xattr(&file, "user.empty", b"").expect("setxattr empty");
    set_xattr(&file, &long_name, b"long").expect("setxattr long name");
    set_xattr(&dir, "user.d", b"dirval").expect("setxattr on a directory");
    assert_eq!(get_xattr(&file, "user.alpha").expect("getxattr"), b"one");
    assert_eq!(get_xattr(&file, "user.beta").expect("getxattr"), binary);
    assert_eq!(get_xattr(&file, "user.empty").expect("getxattr"), b"");
    set_xattr(&file, "user.alpha", b"two").expect("replace alpha");
    fs::write(d.join("gone"), b"").expect("write");
    set_xattr(&d.join("gone"), "user.z", b"z").expect("setxattr");
    fs::remove_file(d.join("gone")).expect("unlink");
    assert_errno(
        get_xattr(&file, "user.missing"),
        &[strata::platform::errno::ENOATTR],
        "getxattr missing",
    );
    let user_names = |p: &Path| {
        let mut v: Vec<String> = list_xattr(p)
            .expect("listxattr")
            .into_iter()
            .filter(|n| n.starts_with("user."))
            .collect();
        v.sort();
        v
    };
    let mut want = vec![
        "user.alpha".to_string(),
        "user.beta".into(),
        "user.empty".into(),
        long_name.clone(),
    ];
    want.sort();
    assert_eq!(user_names(&file), want);
    remove_xattr(&file, "user.beta").expect("removexattr");
    assert_errno(
        get_xattr(&file, "user.beta"),
        &[strata::platform::errno::ENOATTR],
        "getxattr removed",
    );
    assert_errno(
        remove_xattr(&file, "user.beta"),
        &[strata::platform::errno::ENOATTR],
        "removexattr twice",
    );
    want.retain(|n| n != "user.beta");
    m.unmount();

    let m = f.mount();
    assert_eq!(user_names(&file), want, "xattr names after remount");
    assert_eq!(get_xattr(&file, "user.alpha").expect("getxattr"), b"two");
    assert_eq!(get_xattr(&file, "user.empty").expect("getxattr"), b"");
    assert_eq!(get_xattr(&file, &long_name).expect("getxattr"), b"long");
    assert_eq!(get_xattr(&dir, "user.d").expect("getxattr"), b"dirval");
    assert_errno(
        get_xattr(&file, "user.beta"),
        &[strata::platform::errno::ENOATTR],
        "removed xattr after remount",
    );
    m.unmount();
}

/// setxattr's XATTR_CREATE and XATTR_REPLACE reach the store as such (a
/// flag is never dropped), other namespaces are not stored, and a name
/// that begins like the stored form of a long name (`user.~L…`) is listed
/// like any other, on the temp disk (names in plaintext without host
/// encryption) as on a data disk.
fn xattr_create_replace_flags_and_names_like_the_long_form_are_kept(preset: &str) {
    use rustix::fs::XattrFlags;
    let f = Fixture::new(preset);
    let m = f.mount();
    for disk in ["data", "temp"] {
        let file = f.disk(disk).join("x");
        fs::write(&file, b"x").expect("write");
        let set = |name: &str, v: &[u8], fl: XattrFlags| {
            rustix::fs::lsetxattr(&file, name, v, fl).map_err(std::io::Error::from)
        };
        assert_errno(
            set("user.c", b"1", XattrFlags::REPLACE),
            &[strata::platform::errno::ENOATTR],
            "replace of a missing xattr",
        );
        set("user.c", b"1", XattrFlags::CREATE).expect("create");
        assert_errno(
            set("user.c", b"2", XattrFlags::CREATE),
            &[libc::EEXIST],
            "create over an existing xattr",
        );
        set("user.c", b"3", XattrFlags::REPLACE).expect("replace");
        assert_eq!(get_xattr(&file, "user.c").expect("get"), b"3");
        assert_errno(
            set("trusted.strata", b"1", XattrFlags::empty()),
            &[libc::ENOTSUP, libc::EPERM],
            "another namespace",
        );
        set_xattr(&file, "user.~Lookalike", b"v").expect("set ~L");
        let mut names = list_xattr(&file).expect("list");
        names.sort();
        assert_eq!(names, ["user.c", "user.~Lookalike"], "{disk}");
        assert_eq!(get_xattr(&file, "user.~Lookalike").expect("get ~L"), b"v");
    }
    m.unmount();
}

/// mkfifo makes a named pipe that works and stays a pipe.
fn fifos_can_be_made_and_used(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let p = f.disk("data").join("pipe");
    mkfifo(&p, 0o644).expect("mkfifo");
    let st = fs::symlink_metadata(&p).expect("lstat");
    assert!(st.file_type().is_fifo(), "mkfifo made {:?}", st.file_type());
    {
        let mut pipe = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .expect("open fifo");
        pipe.write_all(b"ping").expect("write to fifo");
        let mut buf = [0u8; 4];
        pipe.read_exact(&mut buf).expect("read from fifo");
        assert_eq!(&buf, b"ping");
    }
    m.unmount();
    let m = f.mount();
    assert!(
        fs::symlink_metadata(&p)
            .expect("lstat")
            .file_type()
            .is_fifo(),
        "not a fifo after remount"
    );
    m.unmount();
}

/// A shared writable mapping written, msync'ed and unmapped reaches the
/// file: read(2) sees it, and so does a fresh mount.
fn shared_writable_mmap_reaches_the_store(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let path = f.disk("data").join("mapped");
    let len = 3 * BLOCK + 1_000;
    let mut model = pattern(10, len);
    fs::write(&path, &model).expect("write");
    let file = open_rw(&path);
    let patch = pattern(11, 3 * BLOCK - 500);
    let at = 1_000;
    // SAFETY: a fresh shared mapping of a file we own, of its exact length;
    // we write only inside it and unmap it before the file is closed.
    unsafe {
        use std::os::fd::AsRawFd;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let bytes = std::slice::from_raw_parts_mut(p.cast::<u8>(), len);
        assert_bytes_eq(&bytes[..len], &model, "mapping shows the file");
        bytes[at..at + patch.len()].copy_from_slice(&patch);
        assert_eq!(
            libc::msync(p, len, libc::MS_SYNC),
            0,
            "msync: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::munmap(p, len), 0, "munmap");
    }
    model[at..at + patch.len()].copy_from_slice(&patch);
    assert_bytes_eq(
        &read_at(&file, 0, len + 10).expect("pread"),
        &model,
        "read(2) after msync",
    );
    drop(file);
    m.unmount();
    let m = f.mount();
    assert_bytes_eq(
        &fs::read(&path).expect("read"),
        &model,
        "mmap writes after remount",
    );
    m.unmount();
}

/// fsync and fdatasync succeed on files (including after growth) and fsync
/// succeeds on directories (SQLite syncs the directory of its journal).
fn fsync_and_fdatasync_succeed_on_files_and_directories(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    for disk in DISKS {
        let dir = f.disk(disk).join("sub");
        fs::create_dir(&dir).expect("mkdir");
        let path = dir.join("synced");
        let file = open_rw(&path);
        write_at(&file, 0, &pattern(12, 3 * BLOCK)).expect("pwrite");
        file.sync_all().expect("fsync");
        write_at(&file, 10 * BLOCK as u64 + 7, b"grown").expect("pwrite");
        file.sync_data().expect("fdatasync");
        file.set_len(5 * BLOCK as u64).expect("ftruncate");
        file.sync_all().expect("fsync after truncate");
        File::open(&dir)
            .expect("open dir")
            .sync_all()
            .expect("fsync directory");
        File::open(f.disk(disk))
            .expect("open disk")
            .sync_all()
            .expect("fsync disk directory");
    }
    m.unmount();
    let m = f.mount();
    let mut want = pattern(12, 3 * BLOCK);
    want.resize(5 * BLOCK, 0);
    for disk in ["os", "data"] {
        let got = fs::read(f.disk(disk).join("sub/synced")).expect("read");
        assert_bytes_eq(&got, &want, &format!("{disk} synced file after remount"));
    }
    m.unmount();
}

/// Names of exactly 255 bytes (multi-byte UTF-8 included) work for files and
/// directories, list back exactly, survive a remount; 256 bytes is refused.
fn names_of_255_bytes_round_trip(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let name_a = format!("{}{}", "é".repeat(100), "a".repeat(55));
    let name_b = format!("b{}", "z".repeat(254));
    let name_dir = format!("d{}", "ü".repeat(127));
    assert_eq!(
        (name_a.len(), name_b.len(), name_dir.len()),
        (255, 255, 255)
    );
    fs::write(d.join(&name_a), b"long a").expect("create 255-byte name");
    fs::create_dir(d.join(&name_dir)).expect("mkdir 255-byte name");
    fs::write(d.join(&name_dir).join(&name_b), b"long b").expect("create inside long dir");
    fs::write(d.join("short"), b"short").expect("create");
    let mut want = vec![name_a.clone(), name_dir.clone(), "short".to_string()];
    want.sort();
    assert_eq!(list(&d), want);
    assert_eq!(fs::read(d.join(&name_a)).expect("read"), b"long a");
    let renamed = format!("r{}", "é".repeat(127));
    fs::rename(d.join(&name_a), d.join(&renamed)).expect("rename to another long name");
    want = vec![renamed.clone(), name_dir.clone(), "short".to_string()];
    want.sort();
    assert_eq!(list(&d), want);
    assert_errno(
        fs::write(d.join("x".repeat(256)), b""),
        &[libc::ENAMETOOLONG],
        "create a 256-byte name",
    );
    m.unmount();
    let m = f.mount();
    assert_eq!(list(&d), want, "listing after remount");
    assert_eq!(fs::read(d.join(&renamed)).expect("read"), b"long a");
    assert_eq!(
        fs::read(d.join(&name_dir).join(&name_b)).expect("read"),
        b"long b"
    );
    assert_eq!(list(&d.join(&name_dir)), vec![name_b.clone()]);
    m.unmount();
}

/// Builds a varied tree on a disk: sizes around block boundaries, nesting,
/// empty files and directories, symlinks, fifos.
fn build_tree(root: &Path, seed: u64) {
    let sizes = [
        0usize,
        1,
        15,
        16,
        4095,
        4096,
        4097,
        8191,
        8192,
        65_537,
        1_048_576 + 123,
    ];
    fs::create_dir_all(root.join("nested/a/b/c")).expect("mkdir -p");
    fs::create_dir(root.join("empty-dir")).expect("mkdir");
    for (i, size) in sizes.iter().enumerate() {
        fs::write(
            root.join(format!("file-{size}")),
            pattern(seed + i as u64, *size),
        )
        .expect("write");
    }
    fs::write(root.join("nested/a/b/c/deep"), pattern(seed + 99, 12_345)).expect("write");
    std::os::unix::fs::symlink("nested/a/b/c/deep", root.join("link")).expect("symlink");
    mkfifo(&root.join("fifo"), 0o600).expect("mkfifo");
}

/// Everything written survives unmount and several remounts.
fn data_survives_unmount_and_remount(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    build_tree(&f.disk("os"), 1_000);
    build_tree(&f.disk("data"), 2_000);
    let os = snapshot(&f.disk("os"));
    let data = snapshot(&f.disk("data"));
    assert!(os.len() > 10 && data.len() > 10);
    m.unmount();
    for round in 0..2 {
        let m = f.mount();
        assert!(
            snapshot(&f.disk("os")) == os,
            "os tree differs after remount {round}"
        );
        assert!(
            snapshot(&f.disk("data")) == data,
            "data tree differs after remount {round}"
        );
        m.unmount();
    }
}

/// `--ro` serves every read and refuses every change with EROFS.
fn read_only_mount_serves_reads_and_refuses_writes(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    build_tree(&f.disk("data"), 3_000);
    let data = snapshot(&f.disk("data"));
    m.unmount();
    let conf = fs::read(f.config()).expect("read config");
    let m = f.mount_with(&["--ro"]);
    assert!(
        snapshot(&f.disk("data")) == data,
        "read-only mount shows a different tree"
    );
    let d = f.disk("data");
    assert_errno(
        fs::write(d.join("new"), b"x"),
        &[libc::EROFS],
        "create on --ro",
    );
    assert_errno(
        OpenOptions::new().write(true).open(d.join("file-1")),
        &[libc::EROFS],
        "open for writing on --ro",
    );
    assert_errno(
        fs::create_dir(d.join("newdir")),
        &[libc::EROFS],
        "mkdir on --ro",
    );
    assert_errno(
        fs::remove_file(d.join("file-1")),
        &[libc::EROFS],
        "unlink on --ro",
    );
    assert_errno(
        fs::rename(d.join("file-1"), d.join("file-x")),
        &[libc::EROFS],
        "rename on --ro",
    );
    m.unmount();
    assert_eq!(
        fs::read(f.config()).expect("read config"),
        conf,
        "--ro mount changed the config"
    );
    let m = f.mount();
    assert!(
        snapshot(&f.disk("data")) == data,
        "tree changed by a read-only mount"
    );
    m.unmount();
}

/// temp/ behaves like any disk while mounted, and every mount starts it
/// empty, in the mount and in the backing store.
fn temp_disk_works_and_is_empty_after_remount(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let t = f.disk("temp");
    build_tree(&t, 4_000);
    let tree = snapshot(&t);
    assert!(tree.len() > 10);
    fs::rename(t.join("file-4096"), t.join("renamed")).expect("rename on temp");
    fs::remove_file(t.join("file-0")).expect("unlink on temp");
    assert_eq!(
        fs::read(t.join("renamed")).expect("read"),
        pattern(4_005, 4096)
    );
    fs::write(f.disk("data").join("keep"), b"kept").expect("write");
    m.unmount();

    let m = f.mount();
    assert!(
        list(&t).is_empty(),
        "temp not empty after remount: {:?}",
        list(&t)
    );
    let left = backing_user_files(&f.backing("temp"));
    assert!(
        left.is_empty(),
        "temp backing store not emptied at mount: {left:?}"
    );
    assert_eq!(
        fs::read(f.disk("data").join("keep")).expect("read"),
        b"kept"
    );
    fs::write(t.join("again"), b"fresh").expect("write on temp after remount");
    assert_eq!(fs::read(t.join("again")).expect("read"), b"fresh");
    m.unmount();
}

/// The mount root lists exactly the disks and refuses anything new.
fn mount_root_holds_exactly_the_disks(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let root = &f.mnt;
    assert_eq!(list(root), vec!["data", "os", "temp"]);
    let denied = [libc::EPERM, libc::EACCES];
    assert_errno(
        fs::write(root.join("file"), b"x"),
        &denied,
        "create file at root",
    );
    assert_errno(fs::create_dir(root.join("dir")), &denied, "mkdir at root");
    assert_errno(
        std::os::unix::fs::symlink("os", root.join("link")),
        &denied,
        "symlink at root",
    );
    assert_errno(mkfifo(&root.join("fifo"), 0o644), &denied, "mkfifo at root");
    assert!(
        fs::remove_dir(root.join("temp")).is_err(),
        "rmdir of a disk succeeded"
    );
    assert!(
        fs::rename(root.join("os"), root.join("os2")).is_err(),
        "rename of a disk succeeded"
    );
    assert_eq!(list(root), vec!["data", "os", "temp"]);
    m.unmount();
}
