//! Django's `signing.dumps`/`loads` as `--codec django` runs them on every
//! write and read, at the sizes sessions come in: 200 B (a bare login),
//! 1 KiB (login and some app state, the load generator's default) and
//! 16 KiB (a session used as a cache, past where zlib pays off most).
//!
//! `cargo bench -p sessiond-signing`; figures, not assertions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};
use sessiond_signing::{DEFAULT_SALT, Signer};

const SIZES: [(usize, &str); 3] = [(200, "200B"), (1024, "1KiB"), (16 * 1024, "16KiB")];

const NOW: i64 = 1_767_225_600;

/// A logged-in Django session padded with letters and digits to about
/// `bytes` bytes of JSON, so that zlib works as hard as on real data.
fn session(bytes: usize) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("_auth_user_id".into(), "4217".into());
    map.insert(
        "_auth_user_backend".into(),
        "django.contrib.auth.backends.ModelBackend".into(),
    );
    map.insert(
        "_auth_user_hash".into(),
        "9c1185a5c5e9fc54612808977ee8f548b2258d31e4dfc8d7c2ad1d2a1f2c1a6d".into(),
    );
    let fixed = serde_json::to_string(&map).unwrap().len() + r#","app":"""#.len();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let pad: String = (0..bytes.saturating_sub(fixed))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(state % 36) as usize])
        })
        .collect();
    map.insert("app".into(), pad.into());
    map
}

fn signing(c: &mut Criterion) {
    let signer = Signer::new("django-insecure-bench-secret-key", DEFAULT_SALT).unwrap();
    let mut dumps = c.benchmark_group("dumps");
    for (bytes, name) in SIZES {
        let object = session(bytes);
        dumps.throughput(Throughput::Bytes(bytes as u64));
        dumps.bench_with_input(BenchmarkId::from_parameter(name), &object, |b, object| {
            b.iter(|| signer.dumps(black_box(object), NOW));
        });
    }
    dumps.finish();

    let mut loads = c.benchmark_group("loads");
    for (bytes, name) in SIZES {
        let signed = signer.dumps(&session(bytes), NOW);
        loads.throughput(Throughput::Bytes(bytes as u64));
        loads.bench_with_input(BenchmarkId::from_parameter(name), &signed, |b, signed| {
            b.iter(|| signer.loads(black_box(signed), None, NOW).unwrap());
        });
    }
    loads.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
