//! Operations racing on one name or one inode, through a real mount, held
//! to what a local filesystem gives: a name that is always there (replaced
//! atomically by rename) never answers ENOENT, and each reader sees one
//! whole version.

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
