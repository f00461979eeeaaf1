//! The size attribute (`user.strata.size` on a backing file, FORMAT.md
//! section 4) is a hint that spares a cold `stat` the header read: the
//! header stays the truth. Checked through real mounts: the attribute is
//! used when it is right, and never makes strata report a wrong size, after
//! a crash between the header and the attribute, a backing file rewritten
//! in place, an attribute carried onto another inode, a read-only mount
//! after a crash, or a user's xattr of the same name; and `disk rekey`
//! still works on a store whose files carry it.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;

const NAME: &str = "user.strata.size";

/// The backing file of the only regular file on disk `data`.
fn only_backing_file(f: &Fixture) -> PathBuf {
    let files = backing_user_files(&f.backing("data"));
    assert_eq!(files.len(), 1, "one backing file: {files:?}");
    files[0].clone()
}

/// The raw size attribute of backing file `p`, if any.
fn raw_attr(p: &Path) -> Option<Vec<u8>> {
    get_xattr(p, NAME).ok()
}

/// Modification time of `p`, exactly.
fn mtime(p: &Path) -> rustix::fs::Timespec {
    let st = rustix::fs::stat(p).expect("stat backing file");
    rustix::fs::Timespec {
        tv_sec: st.st_mtime as _,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

/// Sets the modification (and access) time of `p` to `t`.
fn set_mtime(p: &Path, t: rustix::fs::Timespec) {
    let ts = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::empty())
        .expect("utimensat");
}

fn size_through_mount(f: &Fixture, name: &str) -> u64 {
    fs::metadata(f.disk("data").join(name))
        .expect("stat through the mount")
        .len()
}

#[test]
fn a_cold_stat_believes_the_attribute_and_no_user_sees_it() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), pattern(1, 5000)).expect("write");
    assert!(
        list_xattr(&f.disk("data").join("f"))
            .expect("listxattr")
            .is_empty(),
        "the attribute is no user's xattr"
    );
    m.unmount();
    let b = only_backing_file(&f);
    let attr = raw_attr(&b).expect("the backing file carries a size attribute");
    assert_eq!(attr.len(), 48);
    // Zero the header, keeping the modification time: only the attribute
    // can tell the size now.
    let t = mtime(&b);
    let file = fs::OpenOptions::new().write(true).open(&b).expect("open");
    file.write_all_at(&[0u8; 128], 0).expect("zero header");
    drop(file);
    set_mtime(&b, t);
    let m = f.mount();
    assert_eq!(size_through_mount(&f, "f"), 5000, "size from the attribute");
    assert!(
        fs::read(f.disk("data").join("f")).map_or(true, |d| d != pattern(1, 5000)),
        "reading still needs the header, which is gone"
    );
    m.unmount();
}

#[test]
fn a_backing_file_rewritten_in_place_is_not_believed() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), pattern(2, 5000)).expect("write");
    m.unmount();
    let b = only_backing_file(&f);
    let old = fs::read(&b).expect("read backing file");
    let m = f.mount();
    let mut more = pattern(2, 5000);
    more.extend(pattern(3, 20000));
    fs::write(f.disk("data").join("f"), &more).expect("grow");
    m.unmount();
    assert!(raw_attr(&b).is_some());
    // A restore of the older contents in place (as `cp` without xattrs
    // does): the attribute of the newer size stays on the inode.
    fs::write(&b, &old).expect("restore in place");
    let m = f.mount();
    assert_eq!(size_through_mount(&f, "f"), 5000, "the header's size");
    assert_eq!(
        fs::read(f.disk("data").join("f")).expect("read"),
        pattern(2, 5000)
    );
    m.unmount();
}

/// A crash can leave the header of a write on the disk without the
/// attribute written after it (and, timestamps being coarse, with the same
/// modification time): the next mount, read-only or not, must not believe
/// any attribute of the crashed session's time.
#[test]
fn after_a_crash_an_attribute_older_than_its_header_is_not_believed() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), pattern(4, 5000)).expect("write");
    m.unmount();
    let b = only_backing_file(&f);
    let (old_attr, old_time) = (raw_attr(&b).expect("attribute"), mtime(&b));
    let m = f.mount();
    let mut more = pattern(4, 5000);
    more.extend(pattern(5, 9000));
    let file = fs::OpenOptions::new()
        .write(true)
        .open(f.disk("data").join("f"))
        .expect("open");
    file.write_all_at(&more[5000..], 5000).expect("grow");
    file.sync_all().expect("fsync");
    drop(file);
    m.kill9();
    // What the crash may leave: the new header, the old attribute, the
    // old modification time.
    set_xattr(&b, NAME, &old_attr).expect("put the old attribute back");
    set_mtime(&b, old_time);
    let ro = f.mount_with(&["--ro"]);
    assert_eq!(
        size_through_mount(&f, "f"),
        14000,
        "read-only after a crash"
    );
    ro.unmount();
    set_mtime(&b, old_time);
    let m = f.mount();
    assert_eq!(
        size_through_mount(&f, "f"),
        14000,
        "read-write after a crash"
    );
    assert_eq!(fs::read(f.disk("data").join("f")).expect("read"), more);
    m.unmount();
}

/// An attribute copied onto another inode (`tar --xattrs`, `cp -a`,
/// `setfattr --restore`), even with the modification time it was sealed
/// with, is not believed there.
#[test]
fn an_attribute_carried_to_another_inode_is_not_believed() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("a"), pattern(6, 30000)).expect("write a");
    m.unmount();
    let a = only_backing_file(&f);
    let (a_attr, a_time) = (raw_attr(&a).expect("attribute"), mtime(&a));
    let m = f.mount();
    fs::write(f.disk("data").join("b"), pattern(7, 100)).expect("write b");
    m.unmount();
    let b = backing_user_files(&f.backing("data"))
        .into_iter()
        .find(|p| *p != a)
        .expect("b's backing file");
    set_xattr(&b, NAME, &a_attr).expect("carry a's attribute to b");
    set_mtime(&b, a_time);
    let m = f.mount();
    assert_eq!(size_through_mount(&f, "b"), 100);
    assert_eq!(size_through_mount(&f, "a"), 30000);
    m.unmount();
}

/// A user's xattr named `user.strata.size`: on a disk with encrypted names
/// it is stored under another name; on the temp disk of `general` (plain
/// names) it is stored under this very name, and is the user's there.
#[test]
fn a_user_xattr_of_the_same_name_is_the_users() {
    let f = Fixture::new("general");
    let m = f.mount();
    for disk in ["data", "temp"] {
        let p = f.disk(disk).join("x");
        fs::write(&p, pattern(8, 7000)).expect("write");
        set_xattr(&p, NAME, b"mine").expect("setxattr");
        fs::write(&p, pattern(8, 9000)).expect("rewrite");
        assert_eq!(get_xattr(&p, NAME).expect("getxattr"), b"mine", "{disk}");
        assert_eq!(
            list_xattr(&p).expect("list"),
            vec![NAME.to_string()],
            "{disk}"
        );
        assert_eq!(fs::metadata(&p).expect("stat").len(), 9000, "{disk}");
    }
    m.unmount();
    let m = f.mount();
    let p = f.disk("data").join("x");
    assert_eq!(get_xattr(&p, NAME).expect("getxattr"), b"mine");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 9000);
    m.unmount();
}

/// `disk rekey` re-encrypts every file with its xattrs: the attribute is
/// strata's, not an xattr to carry over (it would not decrypt as one).
#[test]
fn rekey_of_a_store_with_size_attributes_works_and_sizes_stay_right() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("f"), pattern(9, 12345)).expect("write");
    set_xattr(&f.disk("data").join("f"), "user.k", b"v").expect("setxattr");
    m.unmount();
    let store = f.store.to_string_lossy().into_owned();
    let rekey = ["disk", "rekey", &store, "data", "--layer", "storage"];
    assert_ok(&f.cli(&rekey, true), "rekey");
    let m = f.mount();
    let p = f.disk("data").join("f");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 12345);
    assert_eq!(fs::read(&p).expect("read"), pattern(9, 12345));
    assert_eq!(list_xattr(&p).expect("list"), vec!["user.k".to_string()]);
    m.unmount();
}
