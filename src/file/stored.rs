//! Reading what a backing file holds before it is opened as an encrypted
//! file: nothing yet, a header region a crash left unwritten, or a header
//! (checked against the disk's keys) with the logical size it seals.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{FileError, MAX_SIZE};
use crate::format::{Header, HEADER_LEN};
use crate::layers::Pipeline;

/// What the start of a backing file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing: a file never written (stores before format 3), or one whose
    /// creation a crash interrupted before its header reached the disk.
    Empty,
    /// Bytes, but an all-zero header region: a creation interrupted by a
    /// crash (the header and the first blocks share the first sector, and
    /// the sector was not written), or damage. Read as an empty file;
    /// `verify` reports it.
    NoHeader {
        /// The backing file's length.
        len: u64,
    },
    /// A header that decodes and verifies, and the logical size it seals.
    Header(Header, u64),
}

/// Reads `n` bytes at `offset` as far as the file goes; the count read.
pub(crate) fn read_full_at(fd: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match fd.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Whether stored block `s` (a block and its tag) is all zeros, as a
/// hole or an unwritten block reads. The tag is looked at first: a sealed
/// block's is almost never zero, so a block in use costs 16 bytes. The
/// rest is folded 64 bytes at a time (vectorized), not byte by byte: a
/// plaintext disk's block of zeros is read whole.
pub(crate) fn stored_is_zero(s: &[u8]) -> bool {
    let (body, tag) = s.split_at(s.len().saturating_sub(crate::format::offsets::TAG_SIZE));
    let zero = |b: &[u8]| b.iter().fold(0u8, |acc, &x| acc | x) == 0;
    zero(tag) && body.chunks(64).all(zero)
}

/// Reads and verifies the header of an open backing file; `label` names
/// the file in errors.
pub fn read_header(fd: &File, label: &str, pipeline: &Pipeline) -> Result<Stored, FileError> {
    let io = |source| FileError::Io {
        file: label.to_string(),
        source,
    };
    let len = fd.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(Stored::Empty);
    }
    let mut buf = [0u8; HEADER_LEN];
    let n = read_full_at(fd, &mut buf, 0).map_err(io)?;
    if buf[..n].iter().all(|&b| b == 0) {
        return Ok(Stored::NoHeader { len });
    }
    let bad = |what: String| FileError::Header {
        file: label.to_string(),
        what,
    };
    let header = Header::decode(&buf[..n]).map_err(|e| bad(e.to_string()))?;
    let size = pipeline
        .open_header(&header)
        .map_err(|e| bad(e.to_string()))?;
    if size > MAX_SIZE {
        return Err(bad(format!("impossible size {size}")));
    }
    // A backing file shorter than its size is not refused here: its intact
    // blocks stay readable and the missing ones fail (or read as holes)
    // when read.
    Ok(Stored::Header(header, size))
}
