//! Repeated denials, answered by the memo: counted exactly by every thread, in the file at
//! once for threads past the per-thread table, and within their lag for the others.

use super::*;

/// Repeated denials (answered by the memo, without the locked count) are counted exactly:
/// by this process at once, by another handle (another process's view: only what reached
/// the file) at most 63 behind per thread, and exactly once the handle is let go. Threads
/// past the per-thread table (16) count in the file directly.
#[test]
fn repeated_denials_are_counted_exactly_by_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeats");
    let hour = Rate::requests(1, Duration::from_secs(3600));
    let limiter = Arc::new(Limiter::open(&path, &[hour]).unwrap());
    let other = Limiter::open(&path, &[hour]).unwrap();
    limiter.try_acquire(1).unwrap();
    let (threads, each) = (24u64, 500u64);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert!(limiter.try_acquire(1).is_err());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let refused = threads * each;
    assert_eq!(limiter.counters().unwrap().denied, [Some(refused)]);
    assert_eq!(limiter.usage().unwrap()[0].denied, refused);
    let seen = other.counters().unwrap().denied[0].unwrap();
    assert!(
        (refused - 16 * 63..=refused).contains(&seen),
        "another handle sees {seen} of {refused}"
    );
    // Let go, the handle's kept repeats reach the file.
    drop(limiter);
    assert_eq!(other.counters().unwrap().denied, [Some(refused)]);
}

/// A thread past the per-thread table (16 slots, one per live thread) counts its repeats in
/// the file at once: with 24 threads alive together, at least 8 of them have no slot, so
/// another handle sees at least their repeats although no lag or batch has passed (a
/// frozen clock, fewer than 64 repeats each), and the kept ones arrive when the handle is
/// let go.
#[test]
fn threads_past_the_table_count_their_repeats_in_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("past");
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let open = || {
        Limiter::builder(&[Rate::requests(1, Duration::from_secs(3600))])
            .clock(clock.clone())
            .open(&path)
            .unwrap()
    };
    let (limiter, other) = (Arc::new(open()), open());
    limiter.try_acquire(1).unwrap();
    let (threads, each) = (24u64, 50u64);
    let counted = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let checked = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (limiter, counted, checked) = (limiter.clone(), counted.clone(), checked.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert!(limiter.try_acquire(1).is_err());
                }
                // Alive until the check: a thread's slot is its own while it lives.
                counted.wait();
                checked.wait();
            })
        })
        .collect();
    counted.wait();
    let seen = other.counters().unwrap().denied[0].unwrap();
    checked.wait();
    for worker in workers {
        worker.join().unwrap();
    }
    let refused = threads * each;
    assert!(
        ((threads - 16) * each..=refused).contains(&seen),
        "another handle sees {seen} of {refused}: threads without a slot kept theirs"
    );
    assert_eq!(limiter.counters().unwrap().denied, [Some(refused)]);
    drop(limiter);
    assert_eq!(other.counters().unwrap().denied, [Some(refused)]);
}

/// A thread that keeps being refused sends its kept repeats to the file within 20 ms
/// (`Repeats::LAG`) or 64 repeats, and at its next call the memo does not answer: a monitor
/// in another process is never further behind while the thread is active.
#[test]
fn kept_repeats_reach_the_file_within_their_lag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lag");
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let open = || {
        Limiter::builder(&[Rate::requests(1, SEC)])
            .clock(clock.clone())
            .open(&path)
            .unwrap()
    };
    let (limiter, monitor) = (open(), open());
    let seen = || monitor.counters().unwrap().denied[0].unwrap();
    limiter.try_acquire(1).unwrap();
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 1, "a fresh denial is counted in the file at once");
    for _ in 0..3 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 1, "repeats are kept");
    assert_eq!(limiter.counters().unwrap().denied, [Some(4)]);
    clock.advance(Duration::from_millis(19));
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 1, "19 ms: still kept");
    clock.advance(Duration::from_millis(1));
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(
        seen(),
        6,
        "20 ms after the first kept repeat, all of them are in the file"
    );
    // 64 kept repeats go at once, whatever the time.
    for _ in 0..63 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 6);
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 70);
    // The next call the memo does not answer (here an admission, once the window has
    // passed) sends what is kept.
    for _ in 0..5 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 70);
    clock.advance(SEC);
    limiter.try_acquire(1).unwrap();
    assert_eq!(seen(), 75);
    assert_eq!(limiter.counters().unwrap().denied, [Some(75)]);
}
