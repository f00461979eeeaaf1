//! Progress of long operations as counts: the library says how much work
//! there is and how much is done; the command line draws it (a bar on a
//! terminal, plain lines otherwise, nothing for `--json`). Nothing here
//! prints.

/// Receives the progress of one operation. Called from several threads
/// by the parallel ones (verify).
pub trait Progress: Sync {
    /// There are `total` units of work in all (known once counted; may be
    /// called again when the count changes).
    fn total(&self, total: u64);
    /// `n` more units are done.
    fn inc(&self, n: u64);
}

/// Reports nowhere.
pub struct Silent;

impl Progress for Silent {
    fn total(&self, _total: u64) {}
    fn inc(&self, _n: u64) {}
}
