//! The clock a file is bound to, and the single-process contract on a manual clock, where
//! time is exact.

use super::*;

#[test]
fn a_file_made_with_another_clock_is_refused() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let manual = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&path)
        .unwrap();
    assert_eq!(manual.info().clock.clock_id, ManualClock::ID);
    manual.try_acquire(1).unwrap();
    let before = fs::read(&path).unwrap();
    let errors = [
        Limiter::open(&path, &rates()).unwrap_err(),
        Limiter::attach(&path).unwrap_err(),
        hostlimit::reset(&path).unwrap_err(),
    ];
    for error in errors {
        assert!(
            matches!(&error, Error::ClockMismatch { path: p, .. } if *p == path),
            "{error:?}"
        );
        assert!(error.to_string().contains("clock"), "{error}");
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    // A manual clock joins it; the host clock's file refuses the manual clock.
    let again = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&path)
        .unwrap();
    assert_eq!(again.usage().unwrap()[0].used, 1);
    let host = dir.path().join("host");
    Limiter::open(&host, &rates()).unwrap();
    let error = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&host)
        .unwrap_err();
    assert!(matches!(error, Error::ClockMismatch { .. }), "{error:?}");
}

/// On a manual clock every number is exact: recorded timestamps, retry-afters, the sliding
/// window's boundary, usage; and a weight that can never fit charges nothing.
#[test]
fn windows_retry_afters_and_usage_are_exact_on_a_manual_clock() {
    const MS: u64 = 1_000_000;
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let clock = Arc::new(ManualClock::new(1));
    let rates = [Rate::new(2, SEC), Rate::requests(3, 10 * SEC)];
    let limiter = Limiter::builder(&rates)
        .clock(clock.clone())
        .open(&path)
        .unwrap();
    let stamp = |ts, sequence| {
        Ok(Some(Stamp {
            timestamp: ts,
            sequence,
        }))
    };

    assert_eq!(limiter.try_acquire_stamped(1), stamp(1, 1));
    clock.advance(Duration::from_millis(300));
    assert_eq!(limiter.try_acquire_stamped(1), stamp(300 * MS + 1, 2));
    let denied = limiter.try_acquire(1).unwrap_err();
    assert_eq!(denied.rate_index(), 0);
    assert_eq!(denied.rate(), Some(rates[0]));
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(700)));
    assert!(!denied.is_final());
    let usage = limiter.usage().unwrap();
    assert_eq!(
        (usage[0].used, usage[0].remaining, usage[0].denied),
        (2, 0, 1)
    );
    assert_eq!(usage[0].next_free, Some(Duration::from_millis(700)));
    assert_eq!(
        (usage[1].used, usage[1].remaining, usage[1].denied),
        (2, 1, 0)
    );
    assert_eq!(usage[1].next_free, Some(Duration::from_millis(9_700)));
    assert_eq!(limiter.usage().unwrap(), usage, "usage consumed something");

    // Never fits: final, no retry, nothing charged; a refused request of the rate it exceeds,
    // and a never-fits.
    let never = limiter.try_acquire(3).unwrap_err();
    assert_eq!(never.kind(), DenialKind::NeverFits { weight: 3 });
    assert_eq!(never.rate_index(), 0);
    assert!(never.is_final());
    assert_eq!(never.retry_after(), None);
    assert!(never.to_string().contains("never fit"), "{never}");
    let after = limiter.usage().unwrap();
    assert_eq!((after[0].used, after[0].denied), (2, 2));
    assert_eq!((after[1].used, after[1].denied), (2, 0));
    assert_eq!(limiter.admitted().unwrap(), 2);
    let started = std::time::Instant::now();
    assert_eq!(
        limiter.acquire(3, Duration::from_secs(30)).unwrap_err(),
        never
    );
    let counters = limiter.counters().unwrap();
    assert_eq!(counters.denied, [Some(3), Some(0)]);
    assert_eq!(counters.never_fits, Some(2));
    assert_eq!(counters.timed_out, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a final denial waited"
    );

    // One nanosecond before the first admission leaves the window, still full.
    clock.advance(Duration::from_nanos(700 * MS - 1));
    assert_eq!(
        limiter.try_acquire(1).unwrap_err().retry_after(),
        Some(Duration::from_nanos(1))
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(limiter.try_acquire_stamped(1), stamp(1000 * MS + 1, 3));
    // Weight 0 still counts one request: the request rate is now full for 9 s.
    let requests = limiter.try_acquire(0).unwrap_err();
    assert_eq!(requests.rate_index(), 1);
    assert_eq!(requests.retry_after(), Some(Duration::from_secs(9)));
    assert_eq!(limiter.admitted().unwrap(), 3);

    // Where no rate counts requests, weight 0 charges nothing at all.
    let weights_only = Limiter::builder(&[Rate::new(1, SEC)])
        .clock(clock.clone())
        .open(dir.path().join("weights"))
        .unwrap();
    weights_only.try_acquire(1).unwrap();
    assert_eq!(weights_only.try_acquire_stamped(0), Ok(None));
    assert_eq!(weights_only.admitted().unwrap(), 1);
    assert_eq!(weights_only.try_acquire(1).unwrap_err().rate_index(), 0);
}
