//! strata: a FUSE filesystem that gives one machine the disk-encryption
//! layers of a cloud VM (guest, storage, host), with keys from a local,
//! passphrase-sealed vault.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backing;
pub mod cache;
pub mod cli;
pub mod control;
pub mod crypto;
pub mod custody;
mod faults;
pub mod file;
pub mod forensics;
pub mod format;
pub mod fs;
pub mod fuse;
pub mod kms;
pub mod layers;
pub mod logging;
pub mod names;
pub mod platform;
pub mod progress;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod vault;
