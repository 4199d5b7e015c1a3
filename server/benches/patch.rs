//! Applying a `Patch` that removes many keys, which runs while the engine
//! holds its write lock (the memory engine's mutex, SQLite's single writer):
//! every other write waits for it.
//!
//! Each size is N = 1 000, 10 000 and 40 000 removed keys, so the figures
//! show how the cost grows: linear work keeps the time per key (the
//! throughput) flat, quadratic work multiplies it by the growth in N.
//!
//! `cargo bench -p sessiond --bench patch`; figures, not assertions.

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sessiond::session::SessionPatch;

const SIZES: [usize; 3] = [1_000, 10_000, 40_000];

/// The stored text of a session with `len` keys, in order.
fn stored(len: usize) -> String {
    let entries: Vec<String> = (0..len).map(|i| format!("\"{}\":{i}", name(i))).collect();
    format!("{{{}}}", entries.join(","))
}

fn name(i: usize) -> String {
    format!("key{i:06}")
}

/// A patch removing the first `len` keys, in stored order: each key a
/// per-key removal takes out has the most keys behind it to move.
fn removing(len: usize) -> SessionPatch {
    let remove = (0..len).map(name).collect();
    SessionPatch::parse("", remove, false, usize::MAX).expect("an empty set is valid")
}

fn remove(c: &mut Criterion) {
    // The slowest cases took seconds per call before removal was linear:
    // ten samples of one call each bound a run.
    for (group, session_len) in [
        ("patch remove all N keys", 1),
        ("patch remove N keys of 2N", 2),
    ] {
        let mut group = c.benchmark_group(group);
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
        for n in SIZES {
            let stored = stored(n * session_len);
            let patch = removing(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &stored, |b, stored| {
                b.iter(|| patch.apply(Some(black_box(stored)), usize::MAX));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, remove);
criterion_main!(benches);
