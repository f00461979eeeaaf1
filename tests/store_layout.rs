//! The shape of a backing store as the daemon finds it, when someone with
//! write access to the store (or an administrator) changed it: symlinks
//! planted where strata expects its own directories, and disks or
//! directories on another filesystem. The daemon never follows such a
//! symlink out of the store (it runs as root: a chmod, chown or removal
//! there would land on whatever the link names), and never mixes objects of
//! two filesystems, whose inode numbers repeat.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn copy_tree(from: &Path, to: &Path) {
    for e in fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            fs::create_dir(&t).expect("mkdir");
            copy_tree(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).expect("copy");
        }
    }
}

#[test]
fn a_disk_root_symlinked_out_of_the_store_is_refused_and_nothing_outside_changes() {
    let f = Fixture::new("general");
    let outside = f.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).expect("chmod");
    let b = f.backing("data");
    fs::rename(&b, f.store.join("disks").join("data.real")).expect("move the disk away");
    std::os::unix::fs::symlink(&outside, &b).expect("plant a symlink");

    match f.try_mount_with(&[]) {
        Ok(m) => {
            // Had it mounted, a chmod of the disk would have reached the
            // symlink's target.
            let r = fs::set_permissions(f.disk("data"), fs::Permissions::from_mode(0o700));
            m.unmount();
            panic!(
                "the mount came up with a symlinked disk root (chmod: {r:?}); outside mode now {:o}",
                mode(&outside)
            );
        }
        Err(log) => assert!(
            log.contains("disks/data") && log.contains("symlink"),
            "the refusal names the disk's backing tree and why:\n{log}"
        ),
    }
    assert_eq!(mode(&outside), 0o755, "the symlink's target was changed");
}

#[test]
fn emptying_temp_never_follows_a_symlinked_disks_directory() {
    let f = Fixture::new("general");
    let outside = f.path().join("outside");
    fs::create_dir_all(outside.join("temp")).expect("mkdir");
    fs::write(outside.join("temp/precious"), b"keep me").expect("write");
    let disks = f.store.join("disks");
    let real = f.store.join("disks.real");
    fs::rename(&disks, &real).expect("move disks away");
    std::os::unix::fs::symlink(&outside, &disks).expect("plant a symlink");

    let refused = match f.try_mount_with(&[]) {
        Ok(m) => {
            m.unmount();
            false
        }
        Err(_) => true,
    };
    assert_eq!(
        fs::read(outside.join("temp/precious")).ok().as_deref(),
        Some(&b"keep me"[..]),
        "emptying the temp disk removed a file outside the store"
    );
    assert!(
        refused,
        "a store whose disks directory is a symlink was mounted"
    );

    // Put back, the store mounts and its temp disk is emptied as usual.
    fs::remove_file(&disks).expect("remove the symlink");
    fs::rename(&real, &disks).expect("move disks back");
    let m = f.mount();
    fs::write(f.disk("temp").join("scratch"), b"x").expect("write temp");
    m.unmount();
    let m = f.mount();
    assert!(list(&f.disk("temp")).is_empty(), "temp emptied at mount");
    m.unmount();
}

#[test]
fn a_disk_on_another_filesystem_is_refused_at_mount() {
    let base = tempfile::tempdir().expect("tmp");
    let a = Tmpfs::mount(&base.path().join("a"), "64m");
    let f = Fixture::new_with_store("general", a.dir.join("store"));
    let data = f.backing("data");
    let saved = base.path().join("saved");
    fs::create_dir(&saved).expect("mkdir");
    copy_tree(&data, &saved);
    // Two filesystems of one kind number their inodes alike: a directory
    // of one disk and of the other would be taken for one another.
    let b = Tmpfs::mount(&data, "64m");
    copy_tree(&saved, &b.dir);

    let result = f.try_mount_with(&[]);
    let refusal = match result {
        Ok(m) => {
            let mut errors = Vec::new();
            for i in 0..40 {
                for (disk, tag) in [("os", "o"), ("data", "d")] {
                    let dir = f.disk(disk).join(format!("{tag}{i}"));
                    let r = fs::create_dir(&dir)
                        .and_then(|()| fs::write(dir.join("f"), format!("{disk} {i}")));
                    if let Err(e) = r {
                        errors.push(format!("{}: {e}", dir.display()));
                    }
                }
            }
            m.unmount();
            Err(errors)
        }
        Err(log) => Ok(log),
    };
    drop(b);
    drop(f);
    drop(a);
    match refusal {
        Ok(log) => assert!(
            log.contains("another filesystem"),
            "the refusal says why:\n{log}"
        ),
        Err(errors) => panic!("a disk on another filesystem was mounted; errors: {errors:#?}"),
    }
}

#[test]
fn a_filesystem_mounted_inside_a_disk_is_refused_not_confused() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::create_dir(f.disk("data").join("sub")).expect("mkdir");
    fs::write(f.disk("data").join("sub/f"), b"on the store's filesystem").expect("write");
    m.unmount();
    let backing_sub = fs::read_dir(f.backing("data"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("the backing directory of sub");
    let saved = f.path().join("saved");
    fs::create_dir(&saved).expect("mkdir");
    copy_tree(&backing_sub, &saved);
    let t = Tmpfs::mount(&backing_sub, "16m");
    copy_tree(&saved, &t.dir);

    let m = f.mount();
    // Listed (a listing with attributes included), so that it can be seen
    // and dealt with; its lookup is refused.
    let listed: Vec<String> = fs::read_dir(f.disk("data"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let looked = fs::metadata(f.disk("data").join("sub"));
    let log = m.log();
    m.unmount();
    drop(t);
    assert_eq!(listed, vec!["sub".to_string()], "the listing");
    assert_errno(
        looked,
        &[libc::EIO],
        "lookup of a directory on another filesystem",
    );
    assert!(
        log.contains("another filesystem"),
        "the log says why:\n{log}"
    );
}

#[test]
fn a_symlink_planted_as_the_session_record_temp_file_is_never_written_through() {
    let f = Fixture::new("general");
    let victim = f.path().join("victim");
    fs::write(&victim, b"precious").expect("write");
    std::os::unix::fs::symlink(&victim, f.store.join(".strata.sessions.tmp"))
        .expect("plant a symlink");
    // Mounting and unmounting write the session record.
    if let Ok(m) = f.try_mount_with(&[]) {
        m.unmount();
    }
    assert_eq!(
        fs::read(&victim).expect("read"),
        b"precious",
        "a write of the session record went through a planted symlink"
    );
    let m = f.mount();
    m.unmount();
}

#[test]
fn a_fifo_or_a_device_as_the_session_record_neither_hangs_nor_exhausts_the_mount() {
    let f = Fixture::new("general");
    let record = f.store.join("strata.sessions");
    let _ = fs::remove_file(&record);
    mkfifo(&record, 0o600).expect("mkfifo");
    let m = f
        .try_mount_with(&[])
        .unwrap_or_else(|log| panic!("a FIFO as the session record stopped the mount:\n{log}"));
    m.unmount();
    assert!(
        fs::symlink_metadata(&record).expect("stat").is_file(),
        "the mount replaced the FIFO with a record"
    );
    fs::remove_file(&record).expect("remove");
    std::os::unix::fs::symlink("/dev/zero", &record).expect("symlink");
    let m = f
        .try_mount_with(&[])
        .unwrap_or_else(|log| panic!("/dev/zero as the session record stopped the mount:\n{log}"));
    m.unmount();
}

#[test]
fn a_fifo_as_the_config_is_refused_not_waited_on() {
    let f = Fixture::new("general");
    let conf = f.config();
    fs::rename(&conf, f.path().join("strata.conf.saved")).expect("move the config away");
    mkfifo(&conf, 0o600).expect("mkfifo");
    let out = run_for(
        &mut strata([
            std::ffi::OsStr::new("disk"),
            std::ffi::OsStr::new("list"),
            f.store.as_os_str(),
        ]),
        std::time::Duration::from_secs(20),
    );
    assert!(!out.status.success(), "a FIFO config was accepted");
    match f.try_mount_with(&[]) {
        Ok(m) => {
            m.unmount();
            panic!("a store whose config is a FIFO was mounted");
        }
        Err(log) => assert!(
            log.contains("strata.conf"),
            "the refusal names the config:\n{log}"
        ),
    }
}

#[test]
fn a_directory_left_with_only_an_orphan_long_name_sidecar_can_be_removed() {
    let f = Fixture::new("general");
    let m = f.mount();
    let dir = f.disk("data").join("d");
    fs::create_dir(&dir).expect("mkdir");
    let long = "l".repeat(200);
    fs::write(dir.join(&long), b"x").expect("create a long-named file");
    m.unmount();
    // What a crash between unlinking a long-named entry and its sidecar
    // leaves: the sidecar alone.
    let backing_dir = fs::read_dir(f.backing("data"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("backing directory of d");
    let entry = fs::read_dir(&backing_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("~L") && !n.ends_with(".name"))
        .expect("the long entry");
    fs::remove_file(backing_dir.join(&entry)).expect("remove the entry only");
    assert!(backing_dir.join(format!("{entry}.name")).exists());

    let m = f.mount();
    assert!(list(&dir).is_empty(), "the directory lists empty");
    let r = fs::remove_dir(&dir);
    let gone = !dir.exists();
    m.unmount();
    r.expect("rmdir of a directory that lists empty");
    assert!(gone);
}
