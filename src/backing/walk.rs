//! A depth-first walk of a backing tree by descriptor, for the offline
//! tools (verify, scan, snapshot and image copies, re-encryption).
//!
//! Each directory is opened relative to its parent with `O_NOFOLLOW`, each
//! entry is `lstat`ed relative to its directory, and the visitor gets the
//! open parent and the entry's name: no path longer than one name reaches
//! the kernel, so a tree deeper than PATH_MAX is walked whole. Nothing is
//! followed: a symlink planted in the store is reported as a symlink, and
//! a FIFO or device is never opened by the walk. The walk holds one open
//! directory per level it is inside (the tree's depth, not its size).
//! Entries come in byte order of their names, so reports are stable.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use super::Dir;

/// An entry met by a walk.
pub struct Node<'a> {
    /// The open directory holding it.
    pub parent: &'a Dir,
    /// Its name in that directory.
    pub name: &'a OsStr,
    /// Names from the walk's root down to the entry, its own name last.
    pub rel: &'a [OsString],
    /// Its metadata (not following a symlink).
    pub stat: &'a Stat,
}

impl Node<'_> {
    /// Its type.
    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// (device, inode) of a stat result: what names an object across its hard
/// links.
#[allow(clippy::unnecessary_cast)] // the field types differ between systems
pub fn inode_key(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// The device number of a special file's stat result.
#[allow(clippy::unnecessary_cast)] // the field type differs between systems
pub fn rdev(st: &Stat) -> u64 {
    st.st_rdev as u64
}

/// A walk that failed to read the tree itself.
#[derive(Debug)]
pub struct WalkError {
    /// The directory or entry that failed, as a path for messages (it may
    /// be longer than PATH_MAX: it never reaches the kernel).
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// `root` joined with the names `rel` (for messages and reports only).
pub fn join(root: &Path, rel: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(rel);
    p
}

/// What a walk calls back. `Scope` is what the visitor keeps per directory
/// (for a copy: the open destination directory).
pub trait Visitor {
    /// The visitor's error; walk errors convert into it.
    type Error: From<WalkError>;
    /// Per-directory state.
    type Scope;

    /// Called with each directory, the root included, before its entries.
    fn enter(
        &mut self,
        _dir: &Dir,
        _rel: &[OsString],
        _scope: &mut Self::Scope,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called with each entry of a directory. For a directory, returning a
    /// scope descends into it with that scope; `None` skips it.
    fn entry(
        &mut self,
        node: &Node<'_>,
        scope: &mut Self::Scope,
    ) -> Result<Option<Self::Scope>, Self::Error>;

    /// Called with each directory, the root included, after its entries.
    fn leave(
        &mut self,
        _dir: &Dir,
        _rel: &[OsString],
        _scope: Self::Scope,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Walks the tree below `root` (itself entered and left with `scope`);
/// `shown` is how errors name the root.
pub fn walk<V: Visitor>(
    root: &Dir,
    shown: &Path,
    scope: V::Scope,
    v: &mut V,
) -> Result<(), V::Error> {
    let mut rel = Vec::new();
    walk_dir(root, shown, &mut rel, scope, v)
}

fn walk_dir<V: Visitor>(
    dir: &Dir,
    shown: &Path,
    rel: &mut Vec<OsString>,
    mut scope: V::Scope,
    v: &mut V,
) -> Result<(), V::Error> {
    let failed = |rel: &[OsString]| {
        let path = join(shown, rel);
        move |source| WalkError { path, source }
    };
    v.enter(dir, rel, &mut scope)?;
    let mut entries = dir.entries().map_err(failed(rel))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        rel.push(e.name);
        let result = (|| {
            let Some(name) = rel.last() else {
                return Ok(());
            };
            let stat = match dir.stat_at(name) {
                Ok(s) => s,
                // Gone since it was listed (a live tree): nothing to visit.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(failed(rel)(e).into()),
            };
            let node = Node {
                parent: dir,
                name,
                rel,
                stat: &stat,
            };
            let is_dir = node.kind() == FileType::Directory;
            let Some(child_scope) = v.entry(&node, &mut scope)? else {
                return Ok(());
            };
            if !is_dir {
                return Ok(());
            }
            let child = dir.open_dir(name).map_err(failed(rel))?;
            walk_dir(&child, shown, rel, child_scope, v)
        })();
        rel.pop();
        result?;
    }
    v.leave(dir, rel, scope)
}

/// What a tree holds, counted for a progress total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entries below the root, directories included.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
}

/// Counts what the tree below `root` holds.
pub fn tally(root: &Dir, shown: &Path) -> Result<Tally, WalkError> {
    struct Counter(Tally);
    impl Visitor for Counter {
        type Error = WalkError;
        type Scope = ();
        fn entry(&mut self, node: &Node<'_>, _: &mut ()) -> Result<Option<()>, WalkError> {
            self.0.entries += 1;
            if node.kind() == FileType::RegularFile {
                self.0.files += 1;
                self.0.file_bytes += u64::try_from(node.stat.st_size).unwrap_or(0);
            }
            Ok((node.kind() == FileType::Directory).then_some(()))
        }
    }
    let mut c = Counter(Tally::default());
    walk(root, shown, (), &mut c)?;
    Ok(c.0)
}

/// Opens the directory `rel` (names below `root`), one name at a time.
pub fn open_rel(root: &Dir, rel: &[OsString]) -> std::io::Result<Dir> {
    let mut d = root.try_clone()?;
    for name in rel {
        d = d.open_dir(name)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Records what a walk meets.
    struct Log {
        seen: Vec<String>,
    }

    fn show(rel: &[OsString]) -> String {
        rel.iter()
            .map(|n| {
                let s = n.to_string_lossy();
                if s.len() > 8 {
                    format!("{}…", &s[..1])
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    impl Visitor for Log {
        type Error = std::io::Error;
        type Scope = usize;

        fn enter(&mut self, _: &Dir, rel: &[OsString], depth: &mut usize) -> std::io::Result<()> {
            self.seen.push(format!("enter {} at {depth}", show(rel)));
            Ok(())
        }

        fn entry(&mut self, n: &Node<'_>, depth: &mut usize) -> std::io::Result<Option<usize>> {
            self.seen
                .push(format!("{:?} {}", n.kind(), show(n.rel)).replace("RegularFile", "file"));
            Ok((n.name != "skip").then_some(*depth + 1))
        }

        fn leave(&mut self, _: &Dir, rel: &[OsString], _: usize) -> std::io::Result<()> {
            self.seen.push(format!("leave {}", show(rel)));
            Ok(())
        }
    }

    impl From<WalkError> for std::io::Error {
        fn from(e: WalkError) -> Self {
            e.source
        }
    }

    #[test]
    fn visits_in_name_order_enters_and_leaves_and_skips_on_request() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(t.path().join("b/c")).expect("mkdir");
        std::fs::create_dir_all(t.path().join("skip/x")).expect("mkdir");
        std::fs::write(t.path().join("a"), b"").expect("write");
        std::fs::write(t.path().join("b/c/f"), b"").expect("write");
        let mut log = Log { seen: Vec::new() };
        walk(&Dir::open(t.path()).expect("open"), t.path(), 0, &mut log).expect("walk");
        assert_eq!(
            log.seen,
            [
                "enter  at 0",
                "file a",
                "Directory b",
                "enter b at 1",
                "Directory b/c",
                "enter b/c at 2",
                "file b/c/f",
                "leave b/c",
                "leave b",
                "Directory skip",
                "leave ",
            ]
        );
    }

    #[test]
    fn planted_symlinks_and_fifos_are_reported_not_followed_or_opened() {
        let t = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::write(outside.path().join("secret"), b"").expect("write");
        std::os::unix::fs::symlink(outside.path(), t.path().join("l")).expect("symlink");
        let dir = std::fs::File::open(t.path()).expect("open");
        crate::platform::mknodat(
            std::os::fd::AsFd::as_fd(&dir),
            std::ffi::OsStr::new("p"),
            FileType::Fifo,
            0o600,
            0,
        )
        .expect("mkfifo");
        let mut log = Log { seen: Vec::new() };
        walk(&Dir::open(t.path()).expect("open"), t.path(), 0, &mut log).expect("walk");
        assert_eq!(log.seen, ["enter  at 0", "Symlink l", "Fifo p", "leave "]);
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_walked_and_reopened() {
        let t = tempfile::tempdir().expect("tmp");
        let root = Dir::open(t.path()).expect("open");
        let name = OsString::from("d".repeat(250));
        let mut d = root.try_clone().expect("clone");
        let mut rel = Vec::new();
        // 40 levels of 250-byte names: 10 KB of path.
        for _ in 0..40 {
            d.mkdir(&name, 0o700).expect("mkdir");
            d = d.open_dir(&name).expect("open_dir");
            rel.push(name.clone());
        }
        d.create_file(OsStr::new("f"), 0o600)
            .expect("create")
            .write_all(b"x")
            .expect("write");
        let mut log = Log { seen: Vec::new() };
        walk(&root, t.path(), 0, &mut log).expect("walk");
        assert_eq!(log.seen.len(), 1 + 40 * 3 + 1 + 1);
        assert!(log.seen.contains(&"enter d…/d…/d… at 3".to_string()));
        let again = open_rel(&root, &rel).expect("open_rel");
        assert_eq!(
            again.read_small(OsStr::new("f"), 1).expect("read"),
            b"x".to_vec()
        );
        assert!(join(t.path(), &rel).as_os_str().len() > 10_000);
        // What the offline tools rely on to remove such a tree (a temp disk
        // emptied at mount, an old tree after a restore or re-encryption):
        // std's remove_dir_all works by descriptor on this system too.
        std::fs::remove_dir_all(t.path().join(&name)).expect("remove_dir_all of a deep tree");
        assert!(root.entries().expect("ls").is_empty());
    }
}
