//! The commit protocol's edges through real files and the public API: a garbage ring of the
//! largest size, and clocks that read 0 (issue 9, defects 1 and 10). The protocol's own unit
//! tests (`src/protocol/tests/`) cover the same over heap-backed words, step by step.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostlimit::{DenialKind, Limiter, ManualClock, Rate};

use crate::support;

const SEC: Duration = Duration::from_secs(1);

/// Offsets in a limiter file (`src/layout.rs`).
const HINT_OFFSET: u64 = 1024;
const RING_OFFSET: u64 = 12_288;

fn slot(ts: u64, cum: u32, seq: u32) -> [u8; 16] {
    (u128::from(ts) | u128::from(cum) << 64 | u128::from(seq) << 96).to_le_bytes()
}

/// Issue 9, defect 1: the largest ring (2^22 slots) holding one consistent chain whose last
/// slot claims a record a lap later, with hint 0, made every `try_acquire`, `usage` and
/// `acquire` (whatever its timeout) take 9-15 s: each walk restarted from the hint 1,000
/// times. Now each reports the garbage after one lap, at once, and `acquire` with a deadline
/// returns the final denial immediately instead of waiting.
#[test]
fn a_garbage_ring_of_the_largest_size_is_reported_at_once() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("large");
    let rates = [Rate::new(4_000_000, Duration::from_secs(60))];
    let limiter = Limiter::open(&path, &rates).unwrap();
    let capacity = limiter.info().capacity;
    assert_eq!(capacity, 1 << 22, "the largest ring");
    let last = capacity as u32 - 1;
    let ring: Vec<u8> = (0..=last)
        .flat_map(|i| {
            let seq = if i == last { i + capacity as u32 } else { i };
            slot(u64::from(i) + 1, i, seq)
        })
        .collect();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&ring, RING_OFFSET).unwrap();
    file.write_all_at(&0u64.to_le_bytes(), HINT_OFFSET).unwrap();
    // A lap of 2^22 loads takes milliseconds (tens in a debug build); the old walk took 9-15
    // s in release builds.
    let bound = Duration::from_secs(2);
    let timed = |what: &str, f: &dyn Fn()| {
        let start = Instant::now();
        f();
        let took = start.elapsed();
        assert!(took < bound, "{what} took {took:?}");
    };
    let unavailable = |denied: hostlimit::Denied| {
        assert!(
            matches!(denied.kind(), DenialKind::Unavailable { .. }) && denied.is_final(),
            "{denied}"
        );
    };
    timed("try_acquire", &|| {
        unavailable(limiter.try_acquire(1).unwrap_err())
    });
    timed("usage", &|| assert!(limiter.usage().is_err()));
    timed("acquire with a 30 s deadline", &|| {
        unavailable(limiter.acquire(1, Duration::from_secs(30)).unwrap_err())
    });
    timed("a new handle's try_acquire", &|| {
        unavailable(
            Limiter::open(&path, &rates)
                .unwrap()
                .try_acquire(1)
                .unwrap_err(),
        )
    });
}

/// Issue 9, defect 10: with a clock that starts at 0, 1,000 of 1,000 calls were admitted
/// under 1/s (a record at timestamp 0 was never counted). An admission at clock 0 is
/// recorded at 1 ns and counts like any other, for weight and request rates.
#[test]
fn a_clock_that_starts_at_zero_is_limited_like_any_other() {
    for rate in [Rate::new(1, SEC), Rate::requests(1, SEC)] {
        let dir = support::temp_dir();
        let clock = Arc::new(ManualClock::new(0));
        let limiter = Limiter::builder(&[rate])
            .clock(clock.clone())
            .open(dir.path().join("zero"))
            .unwrap();
        let admitted = (0..1000).filter(|_| limiter.try_acquire(1).is_ok()).count();
        assert_eq!(admitted, 1, "{rate}");
        let usage = limiter.usage().unwrap();
        assert_eq!(usage[0].used, 1, "{rate}");
        // Recorded at 1 ns, it leaves the window at 1 s + 1 ns.
        clock.advance(SEC);
        let denied = limiter.try_acquire(1).unwrap_err();
        assert_eq!(
            denied.retry_after(),
            Some(Duration::from_nanos(1)),
            "{rate}"
        );
        clock.advance(Duration::from_nanos(1));
        limiter.try_acquire(1).unwrap();
    }
}

/// The memo of the last denial (process-local, one per open handle) answers a repeat only
/// while nothing was committed: another handle's commits on the same file and a reset are
/// seen at the next call, and every denial is counted, memo or not.
#[test]
fn a_remembered_denial_sees_other_handles_and_a_reset() {
    let dir = support::temp_dir();
    let path = dir.path().join("memo");
    let clock = Arc::new(ManualClock::new(1_000 * 1_000_000_000));
    let rates = [Rate::new(10, 10 * SEC)];
    let open = || {
        Limiter::builder(&rates)
            .clock(clock.clone())
            .open(&path)
            .unwrap()
    };
    let (theirs, ours) = (open(), open());
    let retry = |limiter: &Limiter, weight| limiter.try_acquire(weight).unwrap_err().retry_after();
    theirs.try_acquire(5).unwrap();
    assert_eq!(retry(&ours, 6), Some(10 * SEC));
    assert_eq!(retry(&ours, 6), Some(10 * SEC), "the repeat, from the memo");
    assert_eq!(retry(&ours, 7), Some(10 * SEC), "another weight");
    assert_eq!(retry(&ours, 6), Some(10 * SEC));
    clock.advance(SEC);
    assert_eq!(
        retry(&ours, 6),
        Some(9 * SEC),
        "the memo's retry time, a second later"
    );
    // The other handle commits 5 more: our repeat must wait for both fives to leave.
    theirs.try_acquire(5).unwrap();
    assert_eq!(retry(&ours, 6), Some(10 * SEC));
    assert_eq!(retry(&theirs, 6), Some(10 * SEC));
    assert_eq!(ours.usage().unwrap()[0].denied, 7);
    // The first five has left (at 1010 s), not the second: then the request fits.
    clock.advance(9 * SEC);
    assert_eq!(retry(&ours, 6), Some(SEC));
    clock.advance(SEC);
    ours.try_acquire(6).unwrap();
    // A reset (on the host clock: a reset makes the new file with it) closes the file under
    // a memo: the next call attaches to the new, empty one.
    let path = dir.path().join("memo-reset");
    let ours = Limiter::open(&path, &[Rate::new(10, 3600 * SEC)]).unwrap();
    ours.try_acquire(10).unwrap();
    assert!(ours.try_acquire(6).is_err());
    assert!(ours.try_acquire(6).is_err(), "the repeat, from the memo");
    hostlimit::reset(&path).unwrap();
    ours.try_acquire(6).unwrap();
    assert_eq!(ours.usage().unwrap()[0].used, 6);
}
