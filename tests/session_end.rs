//! A clean unmount ends the mount session: from then on the session's
//! write windows are no longer lenient, so every block it wrote must be on
//! the disk before the record says so. Checked through the page cache of
//! the backing filesystem: after a clean unmount, no page of a backing file
//! the session wrote is still dirty (waiting to be written).

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;

/// Pages of `p` in the page cache, and how many of them are dirty, from
/// /proc/self/pagemap and /proc/kpageflags (needs root, as the mount tests
/// do; works on every kernel).
fn dirty_pages(p: &Path) -> (usize, usize) {
    const PAGE: usize = 4096;
    const KPF_DIRTY: u64 = 1 << 4;
    let f = fs::File::open(p).expect("open backing file");
    let len = usize::try_from(f.metadata().expect("stat").len()).expect("fits");
    assert!(len > 0, "empty backing file");
    // SAFETY: a shared read-only mapping of a file held open for its whole
    // life; only read below, and unmapped before the file closes.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    let pages = len.div_ceil(PAGE);
    for i in 0..pages {
        // SAFETY: every page read lies inside the mapping made above.
        unsafe {
            std::ptr::read_volatile(addr.cast::<u8>().add(i * PAGE));
        }
    }
    let pagemap = fs::File::open("/proc/self/pagemap").expect("pagemap");
    let kflags = fs::File::open("/proc/kpageflags").expect("kpageflags (root)");
    let (mut present, mut dirty) = (0, 0);
    for i in 0..pages {
        let mut e = [0u8; 8];
        let at = (addr as usize + i * PAGE) / PAGE * 8;
        pagemap
            .read_exact_at(&mut e, at as u64)
            .expect("pagemap entry");
        let e = u64::from_le_bytes(e);
        if e & (1 << 63) == 0 {
            continue;
        }
        let pfn = e & ((1 << 55) - 1);
        assert_ne!(pfn, 0, "page frame numbers hidden: run as root");
        present += 1;
        let mut fl = [0u8; 8];
        kflags
            .read_exact_at(&mut fl, pfn * 8)
            .expect("kpageflags entry");
        if u64::from_le_bytes(fl) & KPF_DIRTY != 0 {
            dirty += 1;
        }
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe {
        libc::munmap(addr, len);
    }
    (present, dirty)
}

#[test]
fn a_clean_unmount_leaves_no_block_of_the_session_in_flight() {
    let f = Fixture::new("general");
    let m = f.mount();
    fs::write(f.disk("data").join("big"), pattern(5, 24 << 20)).expect("write");
    m.unmount();
    let record = fs::read_to_string(f.store.join("strata.sessions")).expect("record");
    assert!(
        record.contains("\"running\": null"),
        "the session is recorded as ended: {record}"
    );
    let files = backing_user_files(&f.backing("data"));
    assert_eq!(files.len(), 1);
    let (present, dirty) = dirty_pages(&files[0]);
    assert!(present > 0, "the backing file is in the page cache");
    assert_eq!(
        dirty, 0,
        "{dirty} of {present} cached pages of the backing file are not on the disk, \
         while the session record already says the session ended cleanly"
    );
}
