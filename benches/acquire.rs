//! Uncontended try_acquire against the floor (clock read, clock read + CAS, clock read + load)
//! in the same run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hostlimit::{Clock, HostClock, Limiter, Rate};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut group = c.benchmark_group("uncontended");
    // The floor: a word in a shared mapping.
    let file = tempfile::tempfile_in("/dev/shm").unwrap();
    file.set_len(4096).unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    // SAFETY: page-aligned, 4096 bytes long, only accessed atomically, outlives the benchmark.
    let word = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().cast()) };
    group.bench_function("clock", |b| b.iter(|| black_box(HostClock.now())));
    group.bench_function("clock+cas", |b| {
        b.iter(|| {
            let now = HostClock.now();
            let cur = word.load(Ordering::Relaxed);
            black_box(word.compare_exchange(cur, now, Ordering::AcqRel, Ordering::Relaxed))
        })
    });
    group.bench_function("clock+load", |b| {
        b.iter(|| black_box(HostClock.now().max(word.load(Ordering::Acquire))))
    });
    let admit = Limiter::open(
        dir.path().join("admit"),
        &[
            Rate::requests(100_000, Duration::from_millis(1)),
            Rate::new(1_000_000_000, Duration::from_millis(10)),
        ],
    )
    .unwrap();
    group.bench_function("try_acquire/admitted/2 rates", |b| {
        b.iter(|| black_box(admit.try_acquire(1)))
    });
    let deny = Limiter::open(
        dir.path().join("deny"),
        &[
            Rate::new(1, Duration::from_secs(3600)),
            Rate::new(10, Duration::from_secs(7200)),
        ],
    )
    .unwrap();
    let _ = deny.try_acquire(1);
    group.bench_function("try_acquire/denied/2 rates", |b| {
        b.iter(|| black_box(deny.try_acquire(1).is_err()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
