use std::collections::HashSet;
use std::path::Path;

use super::*;
use crate::crypto::Key64;
use crate::layers::{DiskKeys, Layer};
use crate::platform::errno;

fn pipeline() -> Arc<Pipeline> {
    let mut k = DiskKeys::default();
    k.set(Layer::Guest, Key64::random(), 1);
    k.set(Layer::StoragePmk, Key64::random(), 1);
    Arc::new(Pipeline::new(&k, b"t"))
}

fn ctx(p: &Arc<Pipeline>, cache: Arc<BlockCache>, current: u64, crashed: &[u64]) -> FileCtx {
    FileCtx {
        pipeline: p.clone(),
        cache,
        scope: 1,
        sessions: Arc::new(Sessions {
            current,
            crashed: crashed.iter().copied().collect::<HashSet<u64>>(),
            ..Sessions::default()
        }),
    }
}

fn spec(dir: &Path) -> OpenSpec {
    let path = dir.join("f");
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("open");
    OpenSpec {
        fd,
        label: "f".into(),
        ino: 7,
        writable: true,
        size_cell: None,
    }
}

fn open_in(dir: &Path, c: FileCtx) -> EncFile {
    EncFile::open(spec(dir), c, FileType::Regular).expect("header")
}

fn open(dir: &Path, p: &Arc<Pipeline>) -> EncFile {
    open_in(dir, ctx(p, Arc::new(BlockCache::new(0)), 11, &[]))
}

fn raw(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("f")).expect("read")
}

fn put_raw(dir: &Path, b: &[u8]) {
    std::fs::write(dir.join("f"), b).expect("write");
}

fn header_of(dir: &Path) -> Header {
    Header::decode(&raw(dir)[..HEADER_LEN]).expect("header")
}

#[test]
fn random_writes_match_a_model() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    let mut model: Vec<u8> = Vec::new();
    let mut seed = 12345u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let off = next() % 40_000;
        let len = (next() % 9000) as usize + 1;
        let byte = (round % 251) as u8 + 1;
        let data = vec![byte; len];
        f.write(off, &data).expect("write");
        if model.len() < (off as usize + len) {
            model.resize(off as usize + len, 0);
        }
        model[off as usize..off as usize + len].copy_from_slice(&data);
        if round % 37 == 0 {
            let t = next() % 45_000;
            f.truncate(t).expect("truncate");
            model.resize(t as usize, 0);
        }
    }
    assert_eq!(f.size(), model.len() as u64);
    assert_eq!(f.read(0, model.len() + 10).expect("read"), model);
    drop(f);
    let f = open(dir.path(), &p);
    assert_eq!(f.read(0, model.len()).expect("read"), model);
    let len = std::fs::metadata(dir.path().join("f")).expect("stat").len();
    assert_eq!(len, backing_len(model.len() as u64));
}

#[test]
fn large_reads_bypass_the_cache_and_small_reads_fill_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Arc::new(BlockCache::new(16 << 20));
    let f = open_in(dir.path(), ctx(&pipeline(), cache.clone(), 11, &[]));
    let n = CACHE_BYPASS_BLOCKS * 2;
    let data: Vec<u8> = (0..n * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
    f.write(0, &data).expect("write");
    assert_eq!(f.read(0, data.len()).expect("large read"), data);
    assert_eq!(cache.stats().blocks, 0, "a scan fills no cache entry");
    assert_eq!(
        f.read(5 * 4096 + 7, 100).expect("small read"),
        &data[5 * 4096 + 7..5 * 4096 + 107]
    );
    assert_eq!(cache.stats().blocks, 1);
    // A write after the block was cached: both paths see it.
    f.write(5 * 4096, b"new bytes").expect("write");
    assert_eq!(&f.read(5 * 4096, 9).expect("small")[..], b"new bytes");
    assert_eq!(
        &f.read(0, data.len()).expect("large")[5 * 4096..5 * 4096 + 9],
        b"new bytes"
    );
}

#[test]
fn partial_block_writes_keep_exactly_the_old_bytes_they_do_not_cover() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = open(dir.path(), &pipeline());
    f.write(0, &[1u8; 6000]).expect("write");
    // From a block start, ending before the old end: the rest stays.
    f.write(4096, &[2u8; 100]).expect("write");
    let mut want = vec![1u8; 6000];
    want[4096..4196].fill(2);
    assert_eq!(f.read(0, 7000).expect("read"), want);
    // From a block start, past the old end (an append re-sent whole by
    // the page cache): nothing old to keep, zeros past the end.
    f.write(4096, &[3u8; 2500]).expect("write");
    want[4096..].fill(3);
    want.resize(4096 + 2500, 3);
    assert_eq!(f.read(0, 9000).expect("read"), want);
    f.truncate(8192).expect("grow");
    want.resize(8192, 0);
    assert_eq!(f.read(0, 9000).expect("read"), want);
}

#[test]
fn holes_read_as_zeros_cost_no_space_and_are_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = open(dir.path(), &pipeline());
    f.write(1 << 30, b"end").expect("write");
    assert_eq!(f.read(4096 * 1000, 10).expect("read"), vec![0u8; 10]);
    assert_eq!(f.read((1 << 30) - 2, 5).expect("read"), b"\0\0end");
    use std::os::unix::fs::MetadataExt;
    assert!(
        std::fs::metadata(dir.path().join("f"))
            .expect("stat")
            .blocks()
            < 100
    );
    assert_eq!(
        header_of(dir.path()).holes,
        BlockRange {
            first: 0,
            end: (1 << 30) / 4096
        }
    );
}

#[test]
fn zeroed_data_block_outside_the_hole_range_is_damage() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    f.write(0, &[9u8; 3 * BLOCK_SIZE]).expect("write");
    drop(f);
    let mut b = raw(dir.path());
    let at = BlockIndex(1).backing_offset() as usize;
    b[at..at + STORED_BLOCK].fill(0);
    put_raw(dir.path(), &b);
    let f = open(dir.path(), &p);
    assert!(matches!(
        f.read(BLOCK_SIZE as u64, 10),
        Err(FileError::Zeroed { block: 1, .. })
    ));
    assert_eq!(f.read(0, 10).expect("intact"), vec![9u8; 10]);
}

#[test]
fn flipped_stored_byte_fails_only_its_block() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    let data: Vec<u8> = (0..5 * BLOCK_SIZE).map(|i| (i % 253) as u8).collect();
    f.write(0, &data).expect("write");
    drop(f);
    let mut b = raw(dir.path());
    b[BlockIndex(2).backing_offset() as usize + 100] ^= 1;
    put_raw(dir.path(), &b);
    let f = open(dir.path(), &p);
    assert!(matches!(
        f.read(2 * 4096, 10),
        Err(FileError::BlockTag { block: 2, .. })
    ));
    assert_eq!(f.read(0, 2 * 4096).expect("read"), data[..2 * 4096]);
    assert_eq!(f.read(3 * 4096, 2 * 4096).expect("read"), data[3 * 4096..]);
}

#[test]
fn every_block_of_a_large_read_is_checked_whatever_its_tag_batch() {
    // Reads hash their blocks' tags in batches; a flipped byte must fail
    // its own block and no other, wherever it falls in a batch, and blocks
    // from the cache may sit between blocks from the backing file. Two
    // threads, as on the machines this runs on, make the batches the same
    // on any machine: a 53-block read is groups of 16, 16, 16 and 5 (four
    // batched, the last through the hasher), a 9-block read 5 and 4.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    let n = 3 * crate::crypto::tag::TAG_BATCH + 5;
    let data: Vec<u8> = (0..n * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
    f.write(0, &data).expect("write");
    drop(f);
    let clean = raw(dir.path());
    pool.install(|| {
        for bad in [0, 1, 3, 15, 16, 17, n / 2, 47, 48, n - 1] {
            let mut b = clean.clone();
            b[BlockIndex(bad as u64).backing_offset() as usize + 7] ^= 0x40;
            put_raw(dir.path(), &b);
            let cache = Arc::new(BlockCache::new(1 << 20));
            let f = open_in(dir.path(), ctx(&p, cache, 11, &[]));
            match f.read(0, n * BLOCK_SIZE) {
                Err(FileError::BlockTag { block, .. }) => assert_eq!(block, bad as u64),
                other => panic!(
                    "block {bad} flipped: whole read gave {:?}",
                    other.map(|d| d.len())
                ),
            }
            if bad > 0 {
                assert_eq!(
                    f.read(0, bad * BLOCK_SIZE).expect("before"),
                    data[..bad * BLOCK_SIZE]
                );
            }
            assert_eq!(
                f.read(((bad + 1) * BLOCK_SIZE) as u64, n * BLOCK_SIZE)
                    .expect("after"),
                data[(bad + 1) * BLOCK_SIZE..]
            );
            // Small reads fill the cache: with a fresh one, blocks 3 and 5
            // come from it and the rest of blocks 0 to 8 from the backing
            // file, mixed in both groups.
            if !(0..9).contains(&bad) {
                let cache = Arc::new(BlockCache::new(1 << 20));
                let f = open_in(dir.path(), ctx(&p, cache.clone(), 11, &[]));
                f.read(3 * BLOCK_SIZE as u64, 1).expect("cache block 3");
                f.read(5 * BLOCK_SIZE as u64, 1).expect("cache block 5");
                // The cached blocks' stored copies are damaged now: only a
                // read that takes them from the cache still succeeds, and
                // only one that checks the others' own tags gets them right.
                let mut b = b.clone();
                for k in [3u64, 5] {
                    b[BlockIndex(k).backing_offset() as usize + 9] ^= 0x20;
                }
                put_raw(dir.path(), &b);
                assert_eq!(
                    f.read(0, 9 * BLOCK_SIZE).expect("mixed"),
                    data[..9 * BLOCK_SIZE]
                );
            }
        }
        // Damage of two kinds in one group: the first bad block is named.
        let mut b = clean.clone();
        b[BlockIndex(0).backing_offset() as usize + 7] ^= 0x40;
        let at = BlockIndex(1).backing_offset() as usize;
        b[at..at + STORED_BLOCK].fill(0);
        put_raw(dir.path(), &b);
        let f = open(dir.path(), &p);
        assert!(matches!(
            f.read(0, 2 * BLOCK_SIZE),
            Err(FileError::BlockTag { block: 0, .. })
        ));
        assert!(matches!(
            f.read(BLOCK_SIZE as u64, 2 * BLOCK_SIZE),
            Err(FileError::Zeroed { block: 1, .. })
        ));
    });
}

#[test]
fn swapped_blocks_fail_their_tags() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    f.write(0, &vec![7u8; 2 * BLOCK_SIZE]).expect("write");
    drop(f);
    let mut b = raw(dir.path());
    let (x, y) = (HEADER_LEN, HEADER_LEN + STORED_BLOCK);
    let first: Vec<u8> = b[x..y].to_vec();
    b.copy_within(y..y + STORED_BLOCK, x);
    b[y..y + STORED_BLOCK].copy_from_slice(&first);
    put_raw(dir.path(), &b);
    let f = open(dir.path(), &p);
    assert!(f.read(0, 10).is_err());
    assert!(f.read(4096, 10).is_err());
}

#[test]
fn truncated_backing_file_fails_only_the_missing_block() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    f.write(0, &vec![1u8; 3 * BLOCK_SIZE]).expect("write");
    drop(f);
    let b = raw(dir.path());
    put_raw(dir.path(), &b[..b.len() - 10]);
    let f = open(dir.path(), &p);
    assert_eq!(
        f.read(0, 2 * BLOCK_SIZE).expect("intact"),
        vec![1u8; 2 * BLOCK_SIZE]
    );
    assert!(matches!(
        f.read(2 * BLOCK_SIZE as u64, 10),
        Err(FileError::Truncated { block: 2, .. })
    ));
}

/// Writes `new` over a file holding `old` everywhere, then tears block 1
/// (old sectors from 1 KiB on), as a power cut in the middle can.
fn torn_file(dir: &Path, p: &Arc<Pipeline>, session: u64) -> (Vec<u8>, Vec<u8>) {
    let f = open_in(dir, ctx(p, Arc::new(BlockCache::new(0)), 1, &[]));
    f.write(0, &[b'o'; 3 * BLOCK_SIZE]).expect("old");
    f.sync(true).expect("sync");
    drop(f);
    let before = raw(dir);
    let f = open_in(dir, ctx(p, Arc::new(BlockCache::new(0)), session, &[]));
    f.write(0, &[b'n'; 3 * BLOCK_SIZE]).expect("new");
    drop(f);
    let mut after = raw(dir);
    let at = BlockIndex(1).backing_offset() as usize;
    after[at + 1024..at + STORED_BLOCK].copy_from_slice(&before[at + 1024..at + STORED_BLOCK]);
    put_raw(dir, &after);
    (before, after)
}

#[test]
fn block_torn_by_a_crashed_session_reads_as_old_and_new_sectors() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    torn_file(dir.path(), &p, 42);
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 43, &[42]));
    let got = f
        .read(BLOCK_SIZE as u64, BLOCK_SIZE)
        .expect("torn block reads");
    assert!(got[..1024].iter().all(|&b| b == b'n'));
    assert!(got[1024..].iter().all(|&b| b == b'o'));
    // The first write of the new session makes it whole, so that the old
    // window can go: from then on the block is checked strictly.
    f.write(0, b"x").expect("write");
    drop(f);
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 44, &[]));
    assert_eq!(
        f.read(BLOCK_SIZE as u64 + 1020, 8).expect("whole"),
        b"nnnnoooo"
    );
}

#[test]
fn sectors_a_crash_left_unwritten_read_as_zeros_before_and_after_recovery() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 42, &[]));
    f.write(0, &[b'a'; BLOCK_SIZE]).expect("first block");
    f.sync(true).expect("sync");
    f.write(BLOCK_SIZE as u64, &[b'b'; BLOCK_SIZE])
        .expect("appended block");
    drop(f);
    // The power cut kept the new size and the appended block's first
    // sector (its first 368 bytes: the block starts at 4240), not the rest.
    let mut b = raw(dir.path());
    let at = BlockIndex(1).backing_offset() as usize;
    let kept = 4608 - at;
    b[at + kept..at + STORED_BLOCK].fill(0);
    put_raw(dir.path(), &b);
    let mut want = vec![b'b'; kept];
    want.resize(BLOCK_SIZE, 0);
    let f = open_in(
        dir.path(),
        ctx(&p, Arc::new(BlockCache::new(1 << 20)), 43, &[42]),
    );
    for _ in 0..2 {
        assert_eq!(f.read(BLOCK_SIZE as u64, BLOCK_SIZE).expect("read"), want);
    }
    f.write(0, b"x").expect("the first write recovers");
    drop(f);
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 44, &[]));
    assert_eq!(f.read(BLOCK_SIZE as u64, BLOCK_SIZE).expect("sealed"), want);
}

#[test]
fn torn_block_of_a_session_not_known_to_have_crashed_is_damage() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    torn_file(dir.path(), &p, 42);
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 43, &[41]));
    assert!(matches!(
        f.read(BLOCK_SIZE as u64, 10),
        Err(FileError::BlockTag { block: 1, .. })
    ));
}

#[test]
fn window_is_durable_before_blocks_outside_it_are_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open_in(dir.path(), ctx(&p, Arc::new(BlockCache::new(0)), 5, &[]));
    f.write(0, b"a").expect("write");
    let w = header_of(dir.path()).window;
    assert_eq!(w.session, 5);
    assert!(w.blocks.contains(0));
    let far = w.blocks.end + 100;
    f.write(far * BLOCK_SIZE as u64, b"b").expect("write");
    let w = header_of(dir.path()).window;
    assert!(w.blocks.contains(far), "{w:?}");
}

#[test]
fn header_less_file_reads_empty_and_its_first_write_drops_stray_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let mut junk = vec![0u8; HEADER_LEN];
    junk.extend_from_slice(&[0xAA; 5000]);
    put_raw(dir.path(), &junk);
    let f = open(dir.path(), &p);
    assert_eq!(f.size(), 0);
    assert!(f.read(0, 100).expect("read").is_empty());
    f.write(0, b"fresh").expect("write");
    drop(f);
    let f = open(dir.path(), &p);
    assert_eq!(f.read(0, 100).expect("read"), b"fresh");
    assert_eq!(raw(dir.path()).len() as u64, backing_len(5));
}

#[test]
fn symlink_target_never_opens_as_file_contents() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let c = ctx(&p, Arc::new(BlockCache::new(0)), 3, &[]);
    let l = write_symlink(spec(dir.path()), c.clone(), b"/target").expect("symlink");
    assert_eq!(read_symlink(&l).expect("read"), b"/target");
    drop(l);
    assert!(matches!(
        EncFile::open(spec(dir.path()), c.clone(), FileType::Regular),
        Err(FileError::WrongType { .. })
    ));
    let f = EncFile::open(spec(dir.path()), c, FileType::Symlink).expect("as symlink");
    assert_eq!(read_symlink(&f).expect("read"), b"/target");
}

#[test]
fn sizes_past_the_limit_are_efbig() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = open(dir.path(), &pipeline());
    assert_eq!(
        f.truncate(MAX_SIZE + 1).map_err(|e| e.errno()),
        Err(errno::EFBIG)
    );
    assert_eq!(
        f.write(MAX_SIZE, b"x").map_err(|e| e.errno()),
        Err(errno::EFBIG)
    );
    assert_eq!(
        f.allocate(MAX_SIZE, 1, false).map_err(|e| e.errno()),
        Err(errno::EFBIG)
    );
    assert_eq!(f.size(), 0);
}

#[test]
fn allocate_grows_with_zeros_and_keep_size_does_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = pipeline();
    let f = open(dir.path(), &p);
    f.write(0, b"head").expect("write");
    f.allocate(100, 20_000, true).expect("keep size");
    assert_eq!(f.size(), 4);
    f.allocate(0, 20_000, false).expect("grow");
    assert_eq!(f.size(), 20_000);
    let mut want = b"head".to_vec();
    want.resize(20_000, 0);
    assert_eq!(f.read(0, 30_000).expect("read"), want);
    drop(f);
    let f = open(dir.path(), &p);
    assert_eq!(f.read(0, 30_000).expect("read"), want);
}

#[test]
fn a_stored_block_is_zero_only_when_every_byte_is() {
    let mut s = vec![0u8; STORED_BLOCK];
    assert!(super::stored::stored_is_zero(&s));
    for at in [0, 1, 63, 64, BLOCK_SIZE - 1, BLOCK_SIZE, STORED_BLOCK - 1] {
        s[at] = 1;
        assert!(!super::stored::stored_is_zero(&s), "a 1 at {at}");
        s[at] = 0;
    }
    assert!(super::stored::stored_is_zero(&[]));
}
