//! `RevocationState::check` against a store of one million revoked serials:
//! cache hits (one key, a hot set within the per-thread front cache, a set
//! only the shared cache holds), cache misses, and good serials.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use portcullis::revocation::{RevocationState, Verdict};
use portcullis_bench::fixture::{config_with_store, serial, write_store};

const STORE_SIZE: u64 = 1_000_000;
const HOT_SET: u64 = 1024;
const MISS_BATCH: u64 = 4096;
const SHARED_HOT_SET: u64 = 65_536;
const ISSUER: &[u8] = b"\x30\x12issuer-of-benchmark";

fn check(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("revoked.json");
    write_store(&store, STORE_SIZE).expect("write store");
    let config = config_with_store(dir.path(), &store).expect("config");
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = state
        .live_site_scope(&config.sites[0].name)
        .expect("site scope");
    let now = SystemTime::now();
    let revoked = serial(42);
    let good = serial(STORE_SIZE + 7);
    assert!(matches!(
        state.check(&scope, ISSUER, &revoked, now),
        Verdict::Revoked { .. }
    ));
    assert_eq!(state.check(&scope, ISSUER, &good, now), Verdict::Good);

    let mut group = c.benchmark_group("revocation_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hit_revoked_same_key", |b| {
        b.iter(|| state.check(&scope, black_box(ISSUER), black_box(&revoked), now))
    });
    group.bench_function("hit_good_same_key", |b| {
        b.iter(|| state.check(&scope, black_box(ISSUER), black_box(&good), now))
    });
    let hot: Vec<[u8; 16]> = (0..HOT_SET).map(|i| serial(i * 977)).collect();
    for key in &hot {
        state.check(&scope, ISSUER, key, now);
    }
    let mut next = 0usize;
    group.bench_function("hit_hot_set_1024", |b| {
        b.iter(|| {
            next = (next + 1) % hot.len();
            state.check(&scope, black_box(ISSUER), black_box(&hot[next]), now)
        })
    });
    // More keys than the per-thread front cache has slots: nearly every
    // check is answered by the shared (moka) cache.
    let warm: Vec<[u8; 16]> = (0..SHARED_HOT_SET).map(|i| serial(i * 3)).collect();
    for key in &warm {
        state.check(&scope, ISSUER, key, now);
    }
    let mut next = 0usize;
    group.bench_function("shared_cache_hit_65536", |b| {
        b.iter(|| {
            next = (next + 1) % warm.len();
            state.check(&scope, black_box(ISSUER), black_box(&warm[next]), now)
        })
    });
    // Serials longer than 32 bytes are never cached: this is the cost of
    // computing a verdict (store lookup) without any cache work.
    let mut long = [0u8; 33];
    long[0] = 1;
    group.bench_function("uncached_long_serial_good", |b| {
        b.iter(|| state.check(&scope, black_box(ISSUER), black_box(&long), now))
    });
    let long_hex: String = long.iter().map(|b| format!("{b:02x}")).collect();
    // One admin change for scale: it rewrites the whole 1M-entry file.
    let started = std::time::Instant::now();
    state
        .put("main", &long_hex, "long")
        .expect("revoke the long serial");
    println!(
        "put into a {STORE_SIZE}-entry store (file rewrite included): {:?}",
        started.elapsed()
    );
    group.bench_function("uncached_long_serial_revoked", |b| {
        b.iter(|| state.check(&scope, black_box(ISSUER), black_box(&long), now))
    });
    group.finish();

    // Misses: every iteration uses a scope id never seen before, so the
    // cache cannot answer; each batch checks MISS_BATCH keys half revoked,
    // half good, inserting their verdicts.
    let mut group = c.benchmark_group("revocation_check_miss");
    group.throughput(Throughput::Elements(MISS_BATCH));
    let keys: Vec<[u8; 16]> = (0..MISS_BATCH)
        .map(|i| serial(if i % 2 == 0 { i * 131 } else { STORE_SIZE + i }))
        .collect();
    group.bench_function("miss_4096_keys", |b| {
        b.iter_batched(
            || scope.with_new_id(),
            |fresh| {
                for key in &keys {
                    black_box(state.check(&fresh, ISSUER, key, now));
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
