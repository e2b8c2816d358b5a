//! try_acquire with each journal mode against no journal, in the same run; and what one
//! background flush costs.
//!
//! * `try_acquire/no journal`: the baseline.
//! * `try_acquire/periodic`: the hot path of periodic mode is the baseline's plus one branch;
//!   the flush interval is long (10 s) so that the background thread's writes (measured
//!   apart, below) do not land inside the measurement on a small machine.
//! * `try_acquire/strict`: every 1/64 of the request limit a new lease is committed
//!   (`synchronous=FULL`), in one transaction with the ring's records since the last write;
//!   in between, a mutex-protected reservation per acquire.
//! * `flush/1000 records`: one `journal_flush` after 1000 admissions (a background round).
//!
//! Run: `cargo bench --bench journal`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hostlimit::{Durability, Limiter, Rate};

fn rates() -> [Rate; 2] {
    [
        Rate::requests(100_000, Duration::from_millis(1)),
        Rate::new(1_000_000_000, Duration::from_millis(1)),
    ]
}

fn bench(c: &mut Criterion) {
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let disk = tempfile::tempdir().unwrap();
    let open = |name: &str, durability: Option<Durability>| {
        let builder = Limiter::builder(&rates());
        let builder = match durability {
            Some(durability) => {
                builder.journal(disk.path().join(format!("{name}.journal")), durability)
            }
            None => builder,
        };
        builder.open(shm.path().join(name)).unwrap()
    };
    let mut group = c.benchmark_group("journal/try_acquire");
    let none = open("none", None);
    group.bench_function("no journal", |b| b.iter(|| black_box(none.try_acquire(1))));
    let periodic = open(
        "periodic",
        Some(Durability::Periodic(Duration::from_secs(10))),
    );
    group.bench_function("periodic", |b| {
        b.iter(|| black_box(periodic.try_acquire(1)))
    });
    let strict = open(
        "strict",
        Some(Durability::Strict {
            lease: Duration::from_secs(10),
        }),
    );
    group.bench_function("strict", |b| b.iter(|| black_box(strict.try_acquire(1))));
    group.finish();
    drop((none, periodic, strict));

    let mut group = c.benchmark_group("journal/flush");
    let flushed = open(
        "flush",
        Some(Durability::Periodic(Duration::from_secs(3600))),
    );
    group.bench_function("1000 records", |b| {
        b.iter_custom(|rounds| {
            let mut spent = Duration::ZERO;
            for _ in 0..rounds {
                for _ in 0..1000 {
                    flushed.try_acquire(1).unwrap();
                }
                let start = Instant::now();
                flushed.journal_flush().unwrap();
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
