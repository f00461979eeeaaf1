//! Raw extended attributes of open backing objects, read whole whatever
//! their size: each list and value is sized by asking the kernel first
//! (Linux caps both at 64 KiB; APFS takes far larger values), so a copy
//! never leaves one out for want of buffer.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

/// The names of every xattr of `fd` that are UTF-8 (all strata writes);
/// none on a filesystem without xattrs.
pub fn names(fd: BorrowedFd<'_>) -> std::io::Result<Vec<String>> {
    let unsupported = |e: Errno| e == Errno::NOTSUP || e == Errno::OPNOTSUPP;
    loop {
        let size = match rustix::fs::flistxattr_query(fd) {
            Ok(s) => s,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|b| !b.is_empty())
                    .filter_map(|b| std::str::from_utf8(b).ok().map(str::to_string))
                    .collect());
            }
            // One was added between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The value of xattr `name` of `fd`; `None` if it is gone (removed since
/// it was listed).
pub fn get(fd: BorrowedFd<'_>, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let gone = |e: Errno| e.raw_os_error() == crate::platform::errno::ENOATTR;
    loop {
        let size = match rustix::fs::fgetxattr_query(fd, name) {
            Ok(s) => s,
            Err(e) if gone(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            // It grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) if gone(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn every_name_and_value_is_read_whole_and_a_missing_one_is_none() {
        // ext4 keeps an inode's xattrs in one block: sizes that fit it.
        let f = tempfile::tempfile().expect("file");
        let big = vec![7u8; 2000];
        let mut want = Vec::new();
        for i in 0..20 {
            let n = format!("user.{}-{i}", "n".repeat(30));
            rustix::fs::fsetxattr(&f, n.as_str(), b"v", rustix::fs::XattrFlags::empty())
                .expect("set");
            want.push(n);
        }
        rustix::fs::fsetxattr(&f, "user.big", &big, rustix::fs::XattrFlags::empty())
            .expect("set big");
        want.push("user.big".into());
        let mut got = names(f.as_fd()).expect("names");
        got.retain(|n| n.starts_with("user."));
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(get(f.as_fd(), "user.big").expect("get"), Some(big));
        assert_eq!(get(f.as_fd(), "user.none").expect("get"), None);
        let empty = tempfile::tempfile().expect("file");
        assert!(names(empty.as_fd())
            .expect("names")
            .iter()
            .all(|n| !n.starts_with("user.")));
    }
}
