//! Uncontended `try_acquire`, admitted and denied, side by side with its floor and with the
//! alternatives, in one run.
//!
//! Two groups, each holding its own baselines:
//!
//! * `admitted`: limits that never bind (short windows, large limits), so every call commits.
//!   Floor: one clock read; one clock read plus one compare-exchange on a word in a shared
//!   mapping (the cheapest conceivable commit). hostlimit with 1, 2 (a request count and a
//!   weight) and 4 rates, weight 1 and 100,000, and a nearly full ring. Alternatives: the
//!   same two-rate log behind a robust process-shared pthread mutex and behind `flock`
//!   (`baselines/mod.rs`), and governor's in-process direct limiter (one rate, GCRA).
//! * `denied`: limits already used up for an hour, so every call is refused. Floor: one clock
//!   read; one clock read plus one atomic load (the cheapest conceivable denial). hostlimit
//!   with 1, 2 and 4 rates, weight 1 and 100,000, and a full ring of 65,534 records (the
//!   retry-time search is longest there). The same alternatives.
//!
//! `benches/report.sh` runs this and turns the medians into ratios.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use governor::{Quota, RateLimiter};
use hostlimit::{Clock, HostClock, Limiter, Rate};

#[allow(
    dead_code,
    reason = "the benchmark binary uses only part of the baselines"
)]
mod baselines;

use baselines::{LockKind, LockedLog};

const US: Duration = Duration::from_micros(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Rates that never bind in a tight loop: the request rate allows 100 M/s, the weight rates
/// 10^13/s; the ring (`limit × ⌈longest / window⌉` records) stays small.
fn admit_rates(n: usize) -> Vec<Rate> {
    let all = [
        Rate::requests(1_000, 10 * US),
        Rate::new(1_000_000_000, 100 * US),
        Rate::requests(20_000, 100 * US),
        Rate::new(2_000_000_000, 200 * US),
    ];
    all[..n].to_vec()
}

/// Rates used up for an hour by one admission of weight 1: the request rate refuses every
/// later call, the weight rates refuse weight 100,000.
fn deny_rates(n: usize) -> Vec<Rate> {
    let all = [
        Rate::requests(1, HOUR),
        Rate::new(100_000, HOUR),
        Rate::requests(10, 2 * HOUR),
        Rate::new(1_000_000, 2 * HOUR),
    ];
    all[..n].to_vec()
}

/// A word in a shared mapping of a file in /dev/shm, for the floor.
struct SharedWord {
    map: memmap2::MmapRaw,
}

impl SharedWord {
    fn new() -> SharedWord {
        let file = tempfile::tempfile_in("/dev/shm").unwrap();
        file.set_len(4096).unwrap();
        SharedWord {
            map: memmap2::MmapRaw::map_raw(&file).unwrap(),
        }
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and 4096 bytes long, only ever accessed
        // atomically, and lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast()) }
    }
}

fn hostlimit(dir: &tempfile::TempDir, name: &str, rates: &[Rate]) -> Limiter {
    Limiter::open(dir.path().join(name), rates).unwrap()
}

fn locked(dir: &tempfile::TempDir, name: &str, kind: LockKind, rates: &[Rate]) -> LockedLog {
    LockedLog::create(&dir.path().join(name), kind, rates).unwrap()
}

/// What a caller reads of an outcome: admitted (0), or the retry time in ns (`u64::MAX`
/// for none). One word, like the floors' results: `black_box` on a 16-byte value stores it in
/// two halves and reloads it in one piece, a store-forwarding stall of several ns that the
/// floors (one word) never pay and that a caller reading its result (`is_ok`,
/// `retry_after`) does not pay either.
#[inline(always)]
fn read(outcome: Result<(), hostlimit::Denied>) -> u64 {
    match outcome {
        Ok(()) => 0,
        Err(denied) => denied
            .retry_after()
            .map_or(u64::MAX, |retry| retry.as_nanos() as u64),
    }
}

fn bench_hostlimit(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    limiter: &Limiter,
    weight: u64,
    admitted: bool,
) {
    group.bench_function(name, |b| {
        b.iter(|| black_box(read(limiter.try_acquire(black_box(weight)))))
    });
    // A bench that does not measure what it says fails loudly instead of reporting.
    assert_eq!(
        limiter.try_acquire(weight).is_ok(),
        admitted,
        "{name}: expected every call to be {}",
        if admitted { "admitted" } else { "denied" }
    );
}

fn bench_locked(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    log: &LockedLog,
    admitted: bool,
) {
    group.bench_function(name, |b| {
        // Read as `read` reads hostlimit's: admitted, or the retry time.
        b.iter(|| black_box(log.try_acquire(black_box(1)).err().unwrap_or(0)))
    });
    assert_eq!(log.try_acquire(1).is_ok(), admitted, "{name}");
}

/// A limiter whose ring is about 85 % full of records inside its window while a tight loop
/// admits: one request rate of 65,534 per window (a 65,536-slot ring), with the window set
/// from the measured cost of a call so that the loop fills most of it.
fn nearly_full(dir: &tempfile::TempDir) -> (Limiter, Duration) {
    let probe = hostlimit(dir, "probe", &admit_rates(1));
    let calls = 200_000u32;
    let start = Instant::now();
    for _ in 0..calls {
        let _ = black_box(probe.try_acquire(1));
    }
    let per_call = start.elapsed() / calls;
    let limit = 65_534;
    let window = per_call * (limit * 85 / 100);
    let limiter = hostlimit(
        dir,
        "nearly-full",
        &[Rate::requests(u64::from(limit), window)],
    );
    (limiter, window)
}

fn admitted(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let shared = SharedWord::new();
    let word = shared.word();
    let mut group = c.benchmark_group("admitted");

    group.bench_function("floor clock", |b| b.iter(|| black_box(HostClock.now())));
    group.bench_function("floor clock+cas", |b| {
        b.iter(|| {
            let now = HostClock.now();
            let current = word.load(Ordering::Relaxed);
            black_box(word.compare_exchange(current, now, Ordering::AcqRel, Ordering::Relaxed))
        })
    });

    let one = hostlimit(&dir, "admit-1", &admit_rates(1));
    bench_hostlimit(&mut group, "hostlimit 1 rate", &one, 1, true);
    let two = hostlimit(&dir, "admit-2", &admit_rates(2));
    bench_hostlimit(&mut group, "hostlimit 2 rates", &two, 1, true);
    let two_heavy = hostlimit(&dir, "admit-2-heavy", &admit_rates(2));
    bench_hostlimit(
        &mut group,
        "hostlimit 2 rates weight 100000",
        &two_heavy,
        100_000,
        true,
    );
    let four = hostlimit(&dir, "admit-4", &admit_rates(4));
    bench_hostlimit(&mut group, "hostlimit 4 rates", &four, 1, true);

    let (full, window) = nearly_full(&dir);
    let before = full.admitted().unwrap();
    let denials_before = full.usage().unwrap()[0].denied;
    // Not asserted admitted: a loop faster than the calibration may meet the limit now and then.
    group.bench_function("hostlimit nearly full ring", |b| {
        b.iter(|| black_box(read(full.try_acquire(black_box(1)))))
    });
    let admitted = full.admitted().unwrap() - before;
    let denied = full.usage().unwrap()[0].denied - denials_before;
    eprintln!(
        "nearly full ring: 65,534 requests per {window:?}, {:.1} % of calls admitted",
        100.0 * admitted as f64 / (admitted + denied).max(1) as f64
    );

    let mutex = locked(&dir, "admit-mutex", LockKind::RobustMutex, &admit_rates(2));
    bench_locked(&mut group, "robust mutex log 2 rates", &mutex, true);
    let flock = locked(&dir, "admit-flock", LockKind::Flock, &admit_rates(2));
    bench_locked(&mut group, "flock log 2 rates", &flock, true);

    let governor = RateLimiter::direct(Quota::per_second(NonZeroU32::MAX));
    group.bench_function("governor 1 rate in-process", |b| {
        b.iter(|| black_box(governor.check()))
    });
    assert!(governor.check().is_ok());
    group.finish();
}

fn denied(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let shared = SharedWord::new();
    let word = shared.word();
    let mut group = c.benchmark_group("denied");

    group.bench_function("floor clock", |b| b.iter(|| black_box(HostClock.now())));
    group.bench_function("floor clock+load", |b| {
        b.iter(|| black_box(HostClock.now().max(word.load(Ordering::Acquire))))
    });

    let used_up = |name: &str, n: usize| {
        let limiter = hostlimit(&dir, name, &deny_rates(n));
        limiter.try_acquire(1).unwrap();
        limiter
    };
    let one = used_up("deny-1", 1);
    bench_hostlimit(&mut group, "hostlimit 1 rate", &one, 1, false);
    let two = used_up("deny-2", 2);
    bench_hostlimit(&mut group, "hostlimit 2 rates", &two, 1, false);
    bench_hostlimit(
        &mut group,
        "hostlimit 2 rates weight 100000",
        &two,
        100_000,
        false,
    );
    let four = used_up("deny-4", 4);
    bench_hostlimit(&mut group, "hostlimit 4 rates", &four, 1, false);

    let full = hostlimit(&dir, "deny-full", &[Rate::requests(65_534, HOUR)]);
    while full.try_acquire(1).is_ok() {}
    assert_eq!(full.info().capacity, 65_536);
    bench_hostlimit(&mut group, "hostlimit full ring", &full, 1, false);

    let mutex = locked(&dir, "deny-mutex", LockKind::RobustMutex, &deny_rates(2));
    mutex.try_acquire(1).unwrap();
    bench_locked(&mut group, "robust mutex log 2 rates", &mutex, false);
    let flock = locked(&dir, "deny-flock", LockKind::Flock, &deny_rates(2));
    flock.try_acquire(1).unwrap();
    bench_locked(&mut group, "flock log 2 rates", &flock, false);

    let governor = RateLimiter::direct(Quota::per_hour(NonZeroU32::MIN));
    assert!(governor.check().is_ok());
    group.bench_function("governor 1 rate in-process", |b| {
        b.iter(|| black_box(governor.check()))
    });
    assert!(governor.check().is_err());
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = admitted, denied
}
criterion_main!(benches);
