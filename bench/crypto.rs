//! Microbenchmarks of the data path's pieces, one core, 4 KiB per
//! operation: one XTS pass, a block through 1–4 layer passes plus its tag
//! (write direction: upper passes, then lower passes and the tag), the tag
//! of one block alone and of sixteen hashed side by side (as reads and
//! writes of many blocks do), the name cipher and the block cache. `bench/micro.sh` prints these beside
//! `openssl speed -evp aes-256-xts` on the same machine.

use std::ffi::OsStr;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::cache::BlockCache;
use strata::crypto::xts::{block_tweak, Xts};
use strata::crypto::Key64;
use strata::format::BLOCK_SIZE;
use strata::layers::{DiskKeys, Layer, Pipeline};
use strata::names::{NameCipher, NameCodec};

fn key(seed: u8) -> Key64 {
    Key64::from_bytes(&[seed; 64])
}

fn pipeline(layers: &[Layer]) -> Pipeline {
    let mut keys = DiskKeys::default();
    for (i, l) in layers.iter().enumerate() {
        keys.set(*l, key(i as u8 + 1), 1);
    }
    Pipeline::new(&keys, b"bench\0data")
}

fn xts_pass(c: &mut Criterion) {
    let mut g = c.benchmark_group("xts");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    let x = Xts::new(&key(7));
    let mut block = [0x5au8; BLOCK_SIZE];
    let tweak = block_tweak(&[1; 16], 42);
    g.bench_function("encrypt 4KiB, one pass", |b| {
        b.iter(|| x.encrypt(black_box(&mut block), &tweak))
    });
    g.bench_function("decrypt 4KiB, one pass", |b| {
        b.iter(|| x.decrypt(black_box(&mut block), &tweak))
    });
    g.finish();
}

fn layer_passes(c: &mut Criterion) {
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    let sets: [(&str, &[Layer]); 5] = [
        ("tag only", &[]),
        ("1 pass + tag", &[Layer::StoragePmk]),
        ("2 passes + tag", &[Layer::StorageCmk, Layer::StoragePmk]),
        (
            "3 passes + tag",
            &[Layer::Host, Layer::StorageCmk, Layer::StoragePmk],
        ),
        ("4 passes + tag", &Layer::ALL),
    ];
    let id = [3u8; 16];
    for (label, layers) in sets {
        let p = pipeline(layers);
        let mut block = [0xa5u8; BLOCK_SIZE];
        g.bench_with_input(BenchmarkId::new("write", label), &p, |b, p| {
            b.iter(|| {
                p.encrypt_upper(&id, 9, black_box(&mut block));
                black_box(p.encrypt_lower(&id, 9, &mut block))
            })
        });
        let mut stored = [0xa5u8; BLOCK_SIZE];
        p.encrypt_upper(&id, 9, &mut stored);
        let tag = p.encrypt_lower(&id, 9, &mut stored);
        g.bench_with_input(BenchmarkId::new("read", label), &p, |b, p| {
            b.iter(|| {
                let mut block = stored;
                p.decrypt_lower(&id, 9, black_box(&mut block), &tag)
                    .expect("tag verifies");
                p.decrypt_upper(&id, 9, &mut block);
                black_box(block)
            })
        });
    }
    g.finish();
}

fn tags(c: &mut Criterion) {
    let mut g = c.benchmark_group("tag");
    let p = pipeline(&[Layer::StoragePmk]);
    let id = [3u8; 16];
    let blocks: Vec<[u8; BLOCK_SIZE]> = (0..16u8).map(|i| [i; BLOCK_SIZE]).collect();
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    g.bench_function("one block", |b| {
        b.iter(|| black_box(p.block_tag(&id, 9, black_box(&blocks[0]))))
    });
    let one = [(9u64, &blocks[0])];
    let mut tag = [[0u8; 16]; 1];
    g.bench_function("one block, batch of one", |b| {
        b.iter(|| p.block_tags(&id, black_box(&one), &mut tag))
    });
    g.throughput(Throughput::Bytes(16 * BLOCK_SIZE as u64));
    let refs: Vec<(u64, &[u8; BLOCK_SIZE])> = (0..16u64).zip(blocks.iter()).collect();
    let mut out = [[0u8; 16]; 16];
    g.bench_function("16 blocks side by side", |b| {
        b.iter(|| p.block_tags(&id, black_box(&refs), &mut out))
    });
    g.finish();
}

fn names(c: &mut Criterion) {
    let mut g = c.benchmark_group("names");
    let codec = NameCodec::Encrypted(NameCipher::new(&key(9)));
    let dir = [4u8; 16];
    let name = OsStr::new("a-typical-file-name.txt");
    let enc = codec.encrypt(&dir, name).expect("encrypt");
    g.bench_function("encrypt 23-byte name", |b| {
        b.iter(|| codec.encrypt(&dir, black_box(name)).expect("encrypt"))
    });
    g.bench_function("decrypt 23-byte name", |b| {
        b.iter(|| {
            codec
                .decrypt(&dir, black_box(enc.entry_name()))
                .expect("decrypt")
        })
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Bytes(BLOCK_SIZE as u64));
    let cache = BlockCache::new(64 << 20);
    let id = strata::cache::FileKey::new(0, 1, &[5u8; 16]);
    let block = [1u8; BLOCK_SIZE];
    for i in 0..1024 {
        cache.put(&id, i, &block);
    }
    let mut out = [0u8; BLOCK_SIZE];
    let mut i = 0u64;
    g.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 1) % 1024;
            black_box(cache.get(&id, i, &mut out))
        })
    });
    let mut j = 1u64 << 20;
    g.bench_function("put (evicting at 64 MiB)", |b| {
        b.iter(|| {
            j += 1;
            cache.put(&id, j, black_box(&block))
        })
    });
    g.finish();
}

criterion_group!(benches, xts_pass, layer_passes, tags, names, cache);
criterion_main!(benches);
