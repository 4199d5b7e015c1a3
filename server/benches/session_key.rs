//! Drawing a session key, which every Create and CycleKey does: 32
//! characters of `[a-z0-9]` from the thread's CSPRNG.
//!
//! `cargo bench -p sessiond`; figures, not assertions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sessiond::session::SessionKey;

fn generate(c: &mut Criterion) {
    c.bench_function("SessionKey::generate", |b| {
        b.iter(|| black_box(SessionKey::generate()));
    });
}

criterion_group!(benches, generate);
criterion_main!(benches);
