//! Tampered backing files never yield wrong data: a block whose integrity
//! tag fails reads as EIO (and only that block), the daemon's log names the
//! backing file and the block, and a damaged header makes the file fail as
//! a whole. Block tags bind the file id and the block index, so blocks moved
//! within a file or copied from another file fail too.

#[macro_use]
mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

per_preset!(
    flipped_ciphertext_byte_fails_only_its_block_and_is_logged,
    flipped_tag_byte_fails_its_block,
    block_moved_within_a_file_fails_its_tag,
    block_from_another_file_fails_its_tag,
    flipped_header_byte_fails_the_file_with_eio,
    torn_block_at_the_end_fails_with_eio,
);

/// Plaintext of block `i` of a test file `seed`.
fn block_data(seed: u64, i: usize) -> Vec<u8> {
    pattern(seed * 1_000 + i as u64, BLOCK)
}

/// Writes `name` on data/ with `blocks` full blocks of known contents.
fn write_file(f: &Fixture, name: &str, seed: u64, blocks: usize) {
    let body: Vec<u8> = (0..blocks).flat_map(|i| block_data(seed, i)).collect();
    fs::write(f.disk("data").join(name), body).expect("write test file");
}

/// The one backing file on data/ that holds exactly `blocks` blocks.
fn backing_with_blocks(f: &Fixture, blocks: u64) -> PathBuf {
    let size = HEADER_LEN + blocks * STORED_BLOCK;
    let all = backing_user_files(&f.backing("data"));
    let found: Vec<PathBuf> = all
        .iter()
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() == size))
        .cloned()
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one backing file of {size} bytes ({blocks} blocks); backing files: {:?}",
        all.iter()
            .map(|p| (p.clone(), fs::metadata(p).map(|m| m.len()).unwrap_or(0)))
            .collect::<Vec<_>>()
    );
    found[0].clone()
}

fn stored_block_offset(i: u64) -> u64 {
    HEADER_LEN + i * STORED_BLOCK
}

/// XORs one byte of a file with 0x01.
fn flip_byte(path: &Path, at: u64) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open backing file");
    let mut b = [0u8; 1];
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.read_exact(&mut b).expect("read byte");
    b[0] ^= 0x01;
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.write_all(&b).expect("write byte");
    file.sync_all().expect("fsync");
}

fn read_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let file = File::open(path).expect("open backing file");
    read_at(&file, at, len).expect("read backing file")
}

fn write_range(path: &Path, at: u64, data: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open backing file");
    write_at(&file, at, data).expect("write backing file");
    file.sync_all().expect("fsync");
}

/// Reads block `i` through the mount.
fn read_block(file: &File, i: usize) -> std::io::Result<Vec<u8>> {
    read_at(file, (i * BLOCK) as u64, BLOCK)
}

/// Asserts block `bad` of `name` fails with EIO and every other block of
/// its `blocks` reads its known contents.
fn assert_only_block_fails(f: &Fixture, name: &str, seed: u64, blocks: usize, bad: usize) {
    let file = File::open(f.disk("data").join(name)).expect("open tampered file");
    assert_errno(
        read_block(&file, bad),
        &[libc::EIO],
        &format!("read of tampered block {bad}"),
    );
    for i in (0..blocks).filter(|&i| i != bad) {
        let got = read_block(&file, i).unwrap_or_else(|e| panic!("read of intact block {i}: {e}"));
        assert_bytes_eq(&got, &block_data(seed, i), &format!("intact block {i}"));
    }
    // Still failing: the bad block was not cached as something else.
    assert_errno(
        read_block(&file, bad),
        &[libc::EIO],
        &format!("second read of block {bad}"),
    );
    // A read spanning the bad block never returns it.
    assert_errno(
        read_at(&file, 0, blocks * BLOCK),
        &[libc::EIO],
        "read of the whole tampered file",
    );
}

/// Waits until the daemon's log has a line naming `backing` and `block N`.
fn assert_logged(m: &MountGuard, backing: &Path, block: u64) {
    let name = backing
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let word = format!("block {block}");
    let named = |log: &str| {
        log.lines().any(|l| {
            l.contains(&name)
                && l.match_indices(&word)
                    .any(|(at, _)| !l[at + word.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
    };
    let found = poll_until(Duration::from_secs(5), || named(&m.log()));
    assert!(
        found,
        "no log line names {} and {word}; log:\n{}",
        backing.display(),
        m.log()
    );
}

fn flipped_ciphertext_byte_fails_only_its_block_and_is_logged(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    write_file(&f, "five", 1, 5);
    m.unmount();
    let backing = backing_with_blocks(&f, 5);
    flip_byte(&backing, stored_block_offset(2) + 1_000);
    let m = f.mount();
    assert_only_block_fails(&f, "five", 1, 5, 2);
    assert_logged(&m, &backing, 2);
    let log = m.log();
    assert!(!log.contains(PASSPHRASE), "log shows the passphrase");
    m.unmount();
}

fn flipped_tag_byte_fails_its_block(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    write_file(&f, "six", 2, 6);
    m.unmount();
    let backing = backing_with_blocks(&f, 6);
    flip_byte(&backing, stored_block_offset(3) + BLOCK as u64 + 5);
    let m = f.mount();
    assert_only_block_fails(&f, "six", 2, 6, 3);
    assert_logged(&m, &backing, 3);
    m.unmount();
}

fn block_moved_within_a_file_fails_its_tag(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    write_file(&f, "seven", 3, 7);
    m.unmount();
    let backing = backing_with_blocks(&f, 7);
    let block1 = read_range(&backing, stored_block_offset(1), STORED_BLOCK as usize);
    write_range(&backing, stored_block_offset(4), &block1);
    let m = f.mount();
    assert_only_block_fails(&f, "seven", 3, 7, 4);
    assert_logged(&m, &backing, 4);
    m.unmount();
}

fn block_from_another_file_fails_its_tag(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    write_file(&f, "victim", 4, 3);
    write_file(&f, "donor", 4, 4);
    m.unmount();
    let victim = backing_with_blocks(&f, 3);
    let donor = backing_with_blocks(&f, 4);
    let block = read_range(&donor, stored_block_offset(1), STORED_BLOCK as usize);
    write_range(&victim, stored_block_offset(1), &block);
    let m = f.mount();
    assert_only_block_fails(&f, "victim", 4, 3, 1);
    assert_logged(&m, &victim, 1);
    let donor_file = File::open(f.disk("data").join("donor")).expect("open donor");
    for i in 0..4 {
        assert_bytes_eq(
            &read_block(&donor_file, i).expect("read donor"),
            &block_data(4, i),
            "donor",
        );
    }
    drop(donor_file);
    m.unmount();
}

/// Header bytes in every field (version, type, layers, flags, file id, key
/// generations, sealed size, reserved, tag), each flipped in its own file.
fn flipped_header_byte_fails_the_file_with_eio(preset: &str) {
    const OFFSETS: [u64; 10] = [3, 9, 10, 11, 13, 20, 36, 50, 80, 120];
    let f = Fixture::new(preset);
    let m = f.mount();
    fs::write(f.disk("data").join("intact"), block_data(9, 0)).expect("write");
    for (n, _) in OFFSETS.iter().enumerate() {
        write_file(&f, &format!("h{n}"), 10 + n as u64, n + 2);
    }
    m.unmount();
    for (n, at) in OFFSETS.iter().enumerate() {
        flip_byte(&backing_with_blocks(&f, n as u64 + 2), *at);
    }
    let m = f.mount();
    let mut wrong = Vec::new();
    for (n, at) in OFFSETS.iter().enumerate() {
        let path = f.disk("data").join(format!("h{n}"));
        let outcome = File::open(&path).and_then(|file| read_at(&file, 0, (n + 2) * BLOCK));
        match outcome {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            Err(e) => wrong.push(format!("header byte {at}: {e} instead of EIO")),
            Ok(data) => {
                let intact: Vec<u8> = (0..n + 2)
                    .flat_map(|i| block_data(10 + n as u64, i))
                    .collect();
                let verdict = if data == intact {
                    "the right data"
                } else {
                    "wrong data"
                };
                wrong.push(format!(
                    "header byte {at}: read returned {} bytes of {verdict}",
                    data.len()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "damaged headers did not fail with EIO:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        fs::read(f.disk("data").join("intact")).expect("read"),
        block_data(9, 0)
    );
    m.unmount();
}

/// A backing file cut in the middle of a stored block: that block fails with
/// EIO rather than reading short or padded; earlier blocks still read.
fn torn_block_at_the_end_fails_with_eio(preset: &str) {
    let f = Fixture::new(preset);
    let m = f.mount();
    write_file(&f, "torn", 5, 4);
    m.unmount();
    let backing = backing_with_blocks(&f, 4);
    OpenOptions::new()
        .write(true)
        .open(&backing)
        .expect("open backing")
        .set_len(stored_block_offset(3) + 1_000)
        .expect("truncate backing");
    let m = f.mount();
    let file = File::open(f.disk("data").join("torn")).expect("open torn file");
    for i in 0..3 {
        assert_bytes_eq(
            &read_block(&file, i).expect("read intact block"),
            &block_data(5, i),
            "intact block",
        );
    }
    assert_errno(read_block(&file, 3), &[libc::EIO], "read of the torn block");
    drop(file);
    m.unmount();
}
