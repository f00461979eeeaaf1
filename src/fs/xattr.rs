//! Extended attributes in the `user.` namespace, stored on the backing
//! object with encrypted names and values bound to the owner's id (a file's
//! id, a directory's id). Which names a caller may use and how they map to
//! the stored `user.` names (macOS names have no namespace) is
//! [`crate::platform::xattr`]'s to say.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::{Errno, Fs, FsResult, Kind};
use crate::platform::errno;
use crate::platform::xattr as names;

const USER: &str = "user.";
/// Backing-name prefix of an xattr whose encrypted name would not fit the
/// backing filesystem's 255-byte limit: the name is a keyed hash, and the
/// value carries the sealed name (`u16 LE length ‖ sealed name ‖ sealed
/// value`).
const LONG: &str = "user.~L";
/// Associated-data name under which a long xattr's own name is sealed; no
/// real xattr name can equal it (they all begin with `user.`).
const LONG_NAME_AD: &str = "strata:xattr-name";

/// How an xattr is stored.
pub struct Stored {
    /// Its backing name.
    pub backing: String,
    /// Whether it uses the long form (hashed name, sealed name in the value).
    pub long: bool,
}

/// The backing name of xattr `name` of the owner `id` (a file or directory
/// id) under a disk's pipeline and name codec.
pub fn backing_name(
    pipeline: &crate::layers::Pipeline,
    codec: &crate::names::NameCodec,
    id: &[u8; 16],
    name: &str,
) -> FsResult<Stored> {
    if codec.is_encrypted() && name.len() > crate::names::XATTR_NAME_MAX {
        let key: crate::crypto::Key32 = crate::crypto::kdf::derive(
            &[pipeline.name_key().expose()],
            b"",
            b"strata long xattr name v1",
        );
        let h = crate::crypto::tag::tag(&key, b"strata xattr name", &[id, name.as_bytes()]);
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h);
        return Ok(Stored {
            backing: format!("{LONG}{b}"),
            long: true,
        });
    }
    Ok(Stored {
        backing: codec.encrypt_xattr_name(id, name)?,
        long: false,
    })
}

/// The stored value of xattr `name` (with the sealed name first in the long
/// form).
pub fn seal_value(
    codec: &crate::names::NameCodec,
    id: &[u8; 16],
    name: &str,
    long: bool,
    value: &[u8],
) -> FsResult<Vec<u8>> {
    let mut stored = Vec::new();
    if long {
        let sealed = codec.encrypt_xattr_value(id, LONG_NAME_AD, name.as_bytes());
        let len = u16::try_from(sealed.len()).map_err(|_| Errno(errno::ERANGE))?;
        stored.extend_from_slice(&len.to_le_bytes());
        stored.extend_from_slice(&sealed);
    }
    stored.extend_from_slice(&codec.encrypt_xattr_value(id, name, value));
    Ok(stored)
}

/// Decodes one backing xattr (`user.` namespace) into its plaintext name
/// and value, checking a long name against its hash.
pub fn open_stored(
    pipeline: &crate::layers::Pipeline,
    codec: &crate::names::NameCodec,
    id: &[u8; 16],
    backing: &str,
    stored: &[u8],
) -> FsResult<(String, Vec<u8>)> {
    if codec.is_encrypted() && backing.starts_with(LONG) {
        let (sealed, value) = split_long(stored)?;
        let raw = codec.decrypt_xattr_value(id, LONG_NAME_AD, sealed)?;
        let name = String::from_utf8(raw).map_err(|_| Errno::EIO)?;
        if backing_name(pipeline, codec, id, &name)?.backing != backing {
            return Err(Errno::EIO);
        }
        let v = codec.decrypt_xattr_value(id, &name, value)?;
        return Ok((name, v));
    }
    let name = codec.decrypt_xattr_name(id, backing)?;
    let v = codec.decrypt_xattr_value(id, &name, stored)?;
    Ok((name, v))
}

/// Whether an xattr operation may write (give a never-written file its
/// header, and so its id).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Fs {
    /// The owner id and backing target of an inode's xattrs; `None` when it
    /// has none to read yet (a file never written has no id, and reads never
    /// write one).
    fn xattr_owner(
        &self,
        ino: u64,
        access: Access,
    ) -> FsResult<Option<(usize, [u8; 16], XTarget)>> {
        let (disk, kind) = {
            let nodes = self.nodes();
            let n = nodes.get(ino).ok_or(Errno::ENOENT)?;
            (n.disk, n.kind)
        };
        match kind {
            Kind::Dir => {
                let d = self.dir_fd(ino)?;
                let id = self.cached_dir_id(ino, disk, &d)?;
                Ok(Some((disk, id, XTarget::Dir(d))))
            }
            Kind::File => {
                let f = self.file_of(ino)?;
                let id = match (f.file_id(), access) {
                    (Some(id), _) => id,
                    (None, Access::Read) => return Ok(None),
                    (None, Access::Write) => f.ensure_id()?,
                };
                Ok(Some((disk, id, XTarget::File(f))))
            }
            // Linux allows user xattrs only on files and directories; strata
            // keeps to that on every system.
            _ => match access {
                Access::Read => Ok(None),
                Access::Write => Err(Errno::EPERM),
            },
        }
    }

    /// The backing name of xattr `name` of the owner `id` on `disk`.
    fn xattr_backing(&self, disk: usize, id: &[u8; 16], name: &str) -> FsResult<Stored> {
        let (pipeline, codec) = self.disk(disk)?.check()?;
        backing_name(&pipeline, &codec, id, name)
    }

    /// Sets an xattr: `flags` and `position` as the system's setxattr
    /// gives them (XATTR_CREATE / XATTR_REPLACE; a position only macOS has).
    pub fn setxattr(
        &self,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
    ) -> FsResult<()> {
        self.writable_at(ino)?;
        let name = names::stored_name(name.as_bytes()).map_err(Errno)?;
        let name = name.as_str();
        let mode = names::set_mode(flags, position).map_err(Errno)?;
        let (disk, id, target) = self.xattr_owner(ino, Access::Write)?.ok_or(Errno::EPERM)?;
        let (_, codec) = self.disk(disk)?.check()?;
        let st = self.xattr_backing(disk, &id, name)?;
        let stored = seal_value(&codec, &id, name, st.long, value)?;
        rustix::fs::fsetxattr(
            target.fd(),
            st.backing.as_str(),
            &stored,
            mode.backing_flags(),
        )?;
        Ok(())
    }

    /// Gets an xattr's value.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let name = names::stored_name(name.as_bytes()).map_err(|_| Errno(errno::ENOATTR))?;
        let name = name.as_str();
        let Some((disk, id, target)) = self.xattr_owner(ino, Access::Read)? else {
            return Err(Errno(errno::ENOATTR));
        };
        let (_, codec) = self.disk(disk)?.check()?;
        let st = self.xattr_backing(disk, &id, name)?;
        let stored = read_xattr(&target, &st.backing)?;
        let value = if st.long {
            split_long(&stored)?.1
        } else {
            &stored[..]
        };
        Ok(codec.decrypt_xattr_value(&id, name, value)?)
    }

    /// Lists xattr names, each followed by NUL.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let Some((disk, id, target)) = self.xattr_owner(ino, Access::Read)? else {
            return Ok(Vec::new());
        };
        let (_, codec) = self.disk(disk)?.check()?;
        let raw = list_xattrs(&target)?;
        let mut out = Vec::new();
        for bname in raw.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Ok(b) = std::str::from_utf8(bname) else {
                continue;
            };
            // strata's size attribute is no user's (on a disk with plain
            // names, where a user's xattr could have its name, there is none).
            if !b.starts_with(USER) || (codec.is_encrypted() && b == crate::format::SIZE_ATTR_NAME)
            {
                continue;
            }
            // Only encrypted names have a long form: a plaintext name may
            // begin with `~L` itself.
            let stored = if codec.is_encrypted() && b.starts_with(LONG) {
                match self.long_xattr_name(disk, &id, &target, b) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(
                            "skipping a long xattr whose name does not decrypt: errno {}",
                            e.0
                        );
                        continue;
                    }
                }
            } else {
                match codec.decrypt_xattr_name(&id, b) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!("skipping an xattr whose name does not decrypt: {e}");
                        continue;
                    }
                }
            };
            if let Some(n) = names::visible_name(&stored) {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Removes an xattr.
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        self.writable_at(ino)?;
        let name = names::stored_name(name.as_bytes()).map_err(|_| Errno(errno::ENOATTR))?;
        let name = name.as_str();
        let Some((disk, id, target)) = self.xattr_owner(ino, Access::Read)? else {
            return Err(Errno(errno::ENOATTR));
        };
        let st = self.xattr_backing(disk, &id, name)?;
        rustix::fs::fremovexattr(target.fd(), st.backing.as_str())?;
        Ok(())
    }
}

impl Fs {
    /// The plaintext name of a long xattr, checked against its backing name.
    fn long_xattr_name(
        &self,
        disk: usize,
        id: &[u8; 16],
        target: &XTarget,
        backing: &str,
    ) -> FsResult<String> {
        let (_, codec) = self.disk(disk)?.check()?;
        let stored = read_xattr(target, backing)?;
        let (sealed, _) = split_long(&stored)?;
        let raw = codec.decrypt_xattr_value(id, LONG_NAME_AD, sealed)?;
        let name = String::from_utf8(raw).map_err(|_| Errno::EIO)?;
        if self.xattr_backing(disk, id, &name)?.backing != backing {
            return Err(Errno::EIO);
        }
        Ok(name)
    }
}

/// Splits a long xattr's stored value into (sealed name, sealed value).
fn split_long(stored: &[u8]) -> FsResult<(&[u8], &[u8])> {
    let (len, rest) = stored.split_at_checked(2).ok_or(Errno::EIO)?;
    let n = usize::from(u16::from_le_bytes([len[0], len[1]]));
    rest.split_at_checked(n).ok_or(Errno::EIO)
}

enum XTarget {
    Dir(std::sync::Arc<crate::backing::Dir>),
    File(std::sync::Arc<crate::file::EncFile>),
}

impl XTarget {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            XTarget::Dir(d) => d.fd(),
            XTarget::File(f) => f.fd().as_fd(),
        }
    }
}

fn read_xattr(t: &XTarget, name: &str) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let r = rustix::fs::fgetxattr(t.fd(), name, &mut buf[..]);
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == rustix::io::Errno::RANGE && buf.len() < (1 << 20) => {
                buf.resize(buf.len() * 4, 0)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn list_xattrs(t: &XTarget) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let r = rustix::fs::flistxattr(t.fd(), &mut buf[..]);
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == rustix::io::Errno::RANGE && buf.len() < (1 << 22) => {
                buf.resize(buf.len() * 4, 0)
            }
            Err(e) => return Err(e.into()),
        }
    }
}
