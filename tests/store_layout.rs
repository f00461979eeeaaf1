//! The shape of a backing store as the daemon finds it, when someone with
//! write access to the store (or an administrator) changed it: symlinks
//! planted where strata expects its own directories. The daemon never
//! follows such a symlink out of the store (it runs as root: a chmod, chown
//! or removal there would land on whatever the link names).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
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
