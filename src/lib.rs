//! strata: a FUSE filesystem that gives one machine the disk-encryption
//! layers of a cloud VM (guest, storage, host), with keys from a local,
//! passphrase-sealed vault.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod vault;
