//! Operations racing on one name or one inode, through a real mount, held
//! to what a local filesystem gives: a name that is always there (replaced
//! atomically by rename) never answers ENOENT, and each reader sees one
//! whole version; threads mixing writes, truncates, renames (of files and
//! of the directories holding open files), hard links, unlinks and xattrs
//! on a few names, while the kernel keeps forgetting inodes, get no error
//! a local filesystem would not give, never read a misplaced block, and
//! find the same contents after a remount.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// How long the writer keeps replacing the name.
const RACE_TIME: Duration = Duration::from_secs(3);

fn atomic_replace_races(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let target = d.join("config");
    fs::write(&target, b"version 0").expect("write");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut readers = Vec::new();
    for kind in ["open and read", "getxattr", "chmod"] {
        let target = target.clone();
        let stop = stop.clone();
        let failures = failures.clone();
        readers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = match kind {
                    "open and read" => fs::read(&target).map(|v| {
                        if !v.starts_with(b"version ") {
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("read a partial version: {v:?}"));
                        }
                    }),
                    "getxattr" => match get_xattr(&target, "user.none") {
                        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
                        r => r.map(|_| ()),
                    },
                    _ => fs::set_permissions(&target, fs::Permissions::from_mode(0o644)),
                };
                if let Err(e) = r {
                    failures.lock().expect("lock").push(format!("{kind}: {e}"));
                }
                n += 1;
            }
            n
        }));
    }
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < RACE_TIME {
        let tmp = d.join(format!(".config.tmp{}", i % 3));
        fs::write(&tmp, format!("version {i}")).expect("write the new version");
        fs::rename(&tmp, &target).expect("rename over the name");
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = readers.into_iter().map(|h| h.join().expect("reader")).sum();
    m.unmount();
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{preset}: {} of {calls} calls on a name replaced {i} times failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn a_name_replaced_by_rename_never_answers_enoent_general() {
    atomic_replace_races("general");
}

#[test]
fn a_name_replaced_by_rename_never_answers_enoent_max() {
    atomic_replace_races("max");
}

/// Data whose every aligned 16-byte unit names its own offset: a unit read
/// back is all zeros (a hole) or names where it sits, whatever write put it
/// there, so a block misplaced, mixed up with another file's or decrypted
/// wrong shows.
fn units(offset: u64, len: usize, tag: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut at = offset;
    while v.len() < len {
        v.extend_from_slice(&at.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        at += 16;
    }
    v
}

fn check_units(data: &[u8], what: &str) -> Result<(), String> {
    for (i, u) in data.chunks(16).enumerate() {
        if u.iter().all(|&b| b == 0) {
            continue;
        }
        let at = u64::from_le_bytes(u[..8].try_into().expect("8 bytes"));
        if at != (i * 16) as u64 {
            return Err(format!("{what}: unit at {} names offset {at}", i * 16));
        }
    }
    Ok(())
}

fn chaos(preset: &str, seed: u64) {
    let f = Fixture::new(preset);
    let m = f.mount();
    let root = f.disk("data").join("chaos");
    fs::create_dir(&root).expect("mkdir");
    for d in ["a", "b"] {
        fs::create_dir(root.join(d)).expect("mkdir");
    }
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|d| ["x", "y", "z"].iter().map(move |n| format!("{d}/{n}")))
        .collect();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Errnos a name race may give on a local filesystem too.
    let expected = [
        libc::ENOENT,
        libc::EEXIST,
        libc::ENOTEMPTY,
        libc::EISDIR,
        libc::ENOTDIR,
        libc::EBUSY,
        libc::EXDEV,
    ];
    let mut workers = Vec::new();
    for t in 0..4u64 {
        let root = root.clone();
        let names = names.clone();
        let failures = failures.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed * 100 + t);
            let mut held: Vec<fs::File> = Vec::new();
            let pick = |rng: &mut Rng| names[rng.below(names.len() as u64) as usize].clone();
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ops += 1;
                let op = rng.below(100);
                let what;
                let r: std::io::Result<()> = if op < 25 && !held.is_empty() {
                    let f = &held[rng.below(held.len() as u64) as usize];
                    let off = rng.below(40_000) / 16 * 16;
                    let len = (1 + rng.below(12_000) as usize) / 16 * 16 + 16;
                    what = format!("pwrite at {off} len {len}");
                    std::os::unix::fs::FileExt::write_all_at(f, &units(off, len, t), off)
                } else if op < 40 && !held.is_empty() {
                    let f = &held[rng.below(held.len() as u64) as usize];
                    what = "read whole".to_string();
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut &*f, &mut v).and_then(|_| {
                        std::io::Seek::seek(&mut &*f, std::io::SeekFrom::Start(0))?;
                        Ok(())
                    })
                } else if op < 50 && !held.is_empty() {
                    let f = &held[rng.below(held.len() as u64) as usize];
                    let to = rng.below(50_000) / 16 * 16;
                    what = format!("ftruncate {to}");
                    f.set_len(to)
                } else if op < 60 {
                    let n = pick(&mut rng);
                    what = format!("open {n}");
                    fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(rng.below(2) == 0)
                        .open(root.join(&n))
                        .map(|f| {
                            if held.len() >= 4 {
                                held.remove(0);
                            }
                            held.push(f);
                        })
                } else if op < 66 && !held.is_empty() {
                    what = "close".into();
                    held.remove(rng.below(held.len() as u64) as usize);
                    Ok(())
                } else if op < 76 {
                    let (a, b) = (pick(&mut rng), pick(&mut rng));
                    what = format!("rename {a} {b}");
                    fs::rename(root.join(a), root.join(b))
                } else if op < 81 {
                    let (a, b) = (pick(&mut rng), pick(&mut rng));
                    what = format!("link {a} {b}");
                    fs::hard_link(root.join(a), root.join(b))
                } else if op < 88 {
                    let n = pick(&mut rng);
                    what = format!("unlink {n}");
                    fs::remove_file(root.join(n))
                } else if op < 91 {
                    let n = pick(&mut rng);
                    let to = rng.below(50_000) / 16 * 16;
                    what = format!("truncate path {n} {to}");
                    fs::OpenOptions::new()
                        .write(true)
                        .open(root.join(n))
                        .and_then(|f| f.set_len(to))
                } else if op < 94 {
                    let n = pick(&mut rng);
                    what = format!("setxattr {n}");
                    set_xattr(&root.join(n), "user.k", &units(0, 64, t))
                } else if op < 96 && !held.is_empty() {
                    let f = &held[rng.below(held.len() as u64) as usize];
                    what = "fsync".into();
                    f.sync_all()
                } else {
                    let a = ["a", "b", "c"][rng.below(3) as usize];
                    let b = ["a", "b", "c"][rng.below(3) as usize];
                    what = format!("rename dir {a} {b}");
                    fs::rename(root.join(a), root.join(b))
                };
                if let Err(e) = r {
                    if !expected.contains(&e.raw_os_error().unwrap_or(-1)) {
                        failures.lock().expect("lock").push(format!("{what}: {e}"));
                    }
                }
            }
            ops
        }));
    }
    // The kernel forgetting every inode nothing holds, now and then, so
    // the node table drops and finds nodes under the other operations.
    let started = Instant::now();
    while started.elapsed() < RACE_TIME * 2 {
        std::thread::sleep(Duration::from_millis(150));
        fs::write("/proc/sys/vm/drop_caches", "2\n").expect("drop caches (needs root)");
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = workers.into_iter().map(|h| h.join().expect("worker")).sum();
    eprintln!("{preset}: {ops} operations");
    // What each name holds now, checked unit by unit, must be what it holds
    // after a remount.
    let mut seen = Vec::new();
    for n in &names {
        let p = root.join(n);
        match fs::read(&p) {
            Ok(v) => {
                if let Err(e) = check_units(&v, n) {
                    failures.lock().expect("lock").push(e);
                }
                seen.push((n.clone(), Some(v)));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => seen.push((n.clone(), None)),
            Err(e) => failures
                .lock()
                .expect("lock")
                .push(format!("final read {n}: {e}")),
        }
    }
    let log = m.log();
    m.unmount();
    let m = f.mount();
    for (n, before) in &seen {
        let now = fs::read(root.join(n)).ok();
        if &now != before {
            failures.lock().expect("lock").push(format!(
                "{n} changed across a remount: {:?} bytes, then {:?}",
                before.as_ref().map(Vec::len),
                now.as_ref().map(Vec::len)
            ));
        }
    }
    m.unmount();
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty() && !log.contains("ERROR"),
        "{preset}: {} failures in {ops} operations, e.g. {:#?}\nlog errors: {:?}",
        failures.len(),
        &failures[..failures.len().min(8)],
        log.lines()
            .filter(|l| l.contains("ERROR"))
            .take(5)
            .collect::<Vec<_>>()
    );
}

#[test]
fn concurrent_mixed_operations_never_fail_and_survive_a_remount_general() {
    chaos("general", 1);
}

#[test]
fn concurrent_mixed_operations_never_fail_and_survive_a_remount_max() {
    chaos("max", 2);
}

/// A directory made while a removed one is still held open (a shell whose
/// working directory was `rm -rf`ed, then made again): the backing
/// filesystem may give the new directory the removed one's inode number,
/// and the new one must still work, while the old stays removed.
fn reused_inode_numbers(preset: &str) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new(preset);
    let m = f.mount();
    let d = f.disk("data");
    let mut reused = 0;
    for round in 0..20 {
        let old = d.join(format!("build{round}"));
        fs::create_dir(&old).expect("mkdir");
        fs::write(old.join("obj"), b"old").expect("write");
        let old_ino = fs::metadata(&old).expect("stat").ino();
        let held = fs::File::open(&old).expect("hold the directory open");
        fs::remove_file(old.join("obj")).expect("unlink");
        fs::remove_dir(&old).expect("rmdir");
        fs::create_dir(&old).expect("mkdir again");
        if fs::metadata(&old).expect("stat").ino() == old_ino {
            reused += 1;
        }
        fs::write(old.join("obj"), b"new").unwrap_or_else(|e| {
            panic!("{preset}: round {round}: a file in the new directory: {e}")
        });
        assert_eq!(fs::read(old.join("obj")).expect("read"), b"new");
        assert_eq!(list(&old), ["obj"], "the new directory lists its file");
        // The removed directory stays removed: nothing can be made in it,
        // and nothing made through it lands in the new one.
        let through_old = rustix::fs::openat(
            held.as_fd(),
            "stray",
            rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o644),
        );
        assert!(
            through_old.is_err(),
            "a file was made in a removed directory"
        );
        assert_eq!(
            list(&old),
            ["obj"],
            "nothing came in through the removed directory"
        );
        drop(held);
    }
    m.unmount();
    assert!(
        reused > 0,
        "{preset}: no inode number was reused in 20 rounds"
    );
}

#[test]
fn a_directory_made_again_while_the_removed_one_is_held_open_works_general() {
    reused_inode_numbers("general");
}

#[test]
fn a_directory_made_again_while_the_removed_one_is_held_open_works_max() {
    reused_inode_numbers("max");
}

/// rmdir, and rename over an empty directory, racing reads of that
/// directory (listxattr and opendir, which the kernel sends without the
/// directory's lock): a read that found the ids the removal had just
/// cleared gave the directory new ones, the removal then failed with
/// ENOTEMPTY, and the old id written back disagreed with the one the daemon
/// kept, so a file created there later was gone after a remount. The
/// daemon (a debug build) pauses between clearing the ids and removing the
/// directory, and both reads land there.
#[test]
fn removing_an_empty_directory_while_it_is_read_succeeds_and_loses_nothing() {
    let f = Fixture::new("general");
    let m = f.mount_under(&[
        std::ffi::OsStr::new("env"),
        std::ffi::OsStr::new("STRATA_TEST_PAUSE_AT=ids-cleared"),
    ]);
    let d = f.disk("data");
    let mut refused = Vec::new();
    for round in 0..4 {
        let victim = d.join(format!("v{round}"));
        let moved = d.join(format!("m{round}"));
        fs::create_dir(&victim).expect("mkdir");
        fs::create_dir(&moved).expect("mkdir");
        let by_rename = round % 2 == 1;
        let remover = {
            let (victim, moved) = (victim.clone(), moved.clone());
            std::thread::spawn(move || {
                if by_rename {
                    fs::rename(&moved, &victim)
                } else {
                    fs::remove_dir(&victim)
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let mut names = [0u8; 256];
        let _ = rustix::fs::listxattr(&victim, &mut names[..]);
        if let Ok(list) = fs::read_dir(&victim) {
            let _ = list.count();
        }
        match remover.join().expect("remover thread") {
            Ok(()) => assert_eq!(victim.exists(), by_rename, "{}", victim.display()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => refused.push(victim),
            Err(e) => panic!("removing {}: {e}", victim.display()),
        }
    }
    for dir in &refused {
        fs::write(dir.join("f"), b"kept").expect("create in a directory whose removal was refused");
    }
    m.unmount();
    let m = f.mount();
    let lost = refused
        .iter()
        .filter(|dir| fs::read(dir.join("f")).ok().as_deref() != Some(&b"kept"[..]))
        .count();
    m.unmount();
    assert!(
        refused.is_empty(),
        "{} of 4 empty directories refused removal with ENOTEMPTY; {lost} of them then lost a file created in them",
        refused.len()
    );
}
