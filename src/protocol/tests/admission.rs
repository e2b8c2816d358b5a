//! Admission and denial: what a denial charges (nothing), what leaves a window, requests and
//! weight together, a weight that never fits, a ring that wraps or is too small for its
//! window, a retired log, and which rate a denial names.

use super::*;

/// Seed bug 1, leaked tokens: a per-minute denial must not charge the per-second rate.
#[test]
fn a_denial_charges_no_rate() {
    let rules = [rule(5, SEC), rule(6, 60 * SEC)];
    let heap = Heap::new(&rules);
    for i in 0..5 {
        assert!(matches!(
            heap.acquire(&rules, SEC + i, 1),
            Outcome::Admitted(_)
        ));
    }
    assert!(matches!(
        heap.acquire(&rules, 2 * SEC + 10, 1),
        Outcome::Admitted(_)
    ));
    // The minute is full: denied by rate 1, and rate 0 keeps exactly 1 in its window.
    for i in 0..100 {
        let outcome = heap.acquire(&rules, 2 * SEC + 20 + i, 1);
        assert_eq!(
            outcome,
            Outcome::Denied {
                rate: 1,
                retry_at: SEC + 60 * SEC
            }
        );
    }
    let usage = heap.usage(&rules, 2 * SEC + 500);
    assert_eq!(
        usage.rates[0].used, 1,
        "the per-second rate was charged by denied calls"
    );
    assert_eq!(usage.rates[1].used, 6);
}

/// Seed bug 2, stale pre-check: with 1 per second, a second acquire 1.5 s later is admitted.
#[test]
fn an_expired_admission_no_longer_counts() {
    let rules = [rule(1, SEC)];
    let heap = Heap::new(&rules);
    assert!(matches!(
        heap.acquire(&rules, 10 * SEC, 1),
        Outcome::Admitted(_)
    ));
    assert_eq!(
        heap.acquire(&rules, 10 * SEC + SEC / 2, 1),
        Outcome::Denied {
            rate: 0,
            retry_at: 11 * SEC
        }
    );
    assert!(matches!(
        heap.acquire(&rules, 10 * SEC + 3 * SEC / 2, 1),
        Outcome::Admitted(_)
    ));
    // Exactly at the boundary: the window is (t - 1 s, t], so the first record has left.
    let heap = Heap::new(&rules);
    assert!(matches!(
        heap.acquire(&rules, 5 * SEC, 1),
        Outcome::Admitted(_)
    ));
    assert!(matches!(
        heap.acquire(&rules, 6 * SEC - 1, 1),
        Outcome::Denied { .. }
    ));
    assert!(matches!(
        heap.acquire(&rules, 6 * SEC, 1),
        Outcome::Admitted(_)
    ));
}

#[test]
fn requests_and_weight_commit_together_or_not_at_all() {
    let rules = [requests(3, 60 * SEC), rule(1000, 60 * SEC)];
    let heap = Heap::new(&rules);
    assert!(matches!(
        heap.acquire(&rules, SEC, 600),
        Outcome::Admitted(_)
    ));
    // 600 + 500 > 1000: the token rate refuses, and the request is not counted either.
    assert_eq!(
        heap.acquire(&rules, 2 * SEC, 500),
        Outcome::Denied {
            rate: 1,
            retry_at: 61 * SEC
        }
    );
    assert!(matches!(
        heap.acquire(&rules, 3 * SEC, 400),
        Outcome::Admitted(_)
    ));
    assert!(matches!(
        heap.acquire(&rules, 4 * SEC, 0),
        Outcome::Admitted(_)
    ));
    // Three requests used: the request rate refuses now, whatever the weight.
    assert_eq!(
        heap.acquire(&rules, 5 * SEC, 0),
        Outcome::Denied {
            rate: 0,
            retry_at: 61 * SEC
        }
    );
    let usage = heap.usage(&rules, 5 * SEC);
    assert_eq!((usage.rates[0].used, usage.rates[1].used), (3, 1000));
}

#[test]
fn a_weight_above_a_limit_never_fits_and_touches_nothing() {
    let rules = [requests(10, SEC), rule(100, SEC)];
    let heap = Heap::new(&rules);
    assert_eq!(
        heap.acquire(&rules, SEC, 101),
        Outcome::NeverFits { rate: 1 }
    );
    assert_eq!(heap.head(), Record::SENTINEL);
    // Weight 0 with only weight rates charges nothing and records nothing.
    let weight_only = [rule(1, SEC)];
    let heap = Heap::new(&weight_only);
    assert_eq!(heap.acquire(&weight_only, SEC, 0), Outcome::Free);
    assert_eq!(heap.head(), Record::SENTINEL);
}

#[test]
fn weight_costs_no_per_unit_work() {
    // Cumulative sums: one record for 100,000 units, and the window math is exact.
    let rules = [rule(250_000, SEC)];
    // Miri: the 262,144-slot ring these rules size takes minutes to build there; three
    // records need far fewer.
    let heap = if cfg!(miri) {
        Heap::with_capacity(8)
    } else {
        Heap::new(&rules)
    };
    assert!(matches!(
        heap.acquire(&rules, SEC, 100_000),
        Outcome::Admitted(_)
    ));
    assert!(matches!(
        heap.acquire(&rules, SEC + 1, 100_000),
        Outcome::Admitted(_)
    ));
    assert_eq!(
        heap.acquire(&rules, SEC + 2, 100_000),
        Outcome::Denied {
            rate: 0,
            retry_at: 2 * SEC
        }
    );
    assert_eq!(heap.head().seq, 2);
}

#[test]
fn the_ring_wraps_many_times() {
    // Capacity 4: 2 per second keeps at most 2 records per window.
    let rules = [requests(2, SEC)];
    let heap = Heap::new(&rules);
    assert_eq!(heap.ring.len(), 4);
    let mut model = Model::default();
    let mut now = SEC;
    let steps = if cfg!(miri) { 120 } else { 2_000 };
    for i in 0..steps {
        now += [SEC / 3, SEC / 2, SEC / 7, 0][i % 4];
        assert_eq!(
            heap.acquire(&rules, now, 1),
            model.acquire(&rules, now, 1),
            "step {i}"
        );
    }
    assert!(
        model.log.len() > 4 * 10,
        "wrapped only {} records",
        model.log.len()
    );
}

#[test]
fn a_ring_too_small_for_the_window_is_reported_not_guessed() {
    // Capacity 2 with a rule that needs more: garbage-equivalent configuration.
    let rules = [requests(5, SEC)];
    let heap = Heap::with_capacity(2);
    assert!(matches!(heap.acquire(&rules, SEC, 1), Outcome::Admitted(_)));
    assert!(matches!(
        heap.acquire(&rules, SEC + 1, 1),
        Outcome::Admitted(_)
    ));
    assert!(matches!(
        heap.acquire(&rules, SEC + 2, 1),
        Outcome::Corrupt(_)
    ));
}

#[test]
fn a_retired_log_admits_nothing_more() {
    let rules = [rule(10, SEC)];
    let heap = Heap::new(&rules);
    assert!(matches!(heap.acquire(&rules, SEC, 1), Outcome::Admitted(_)));
    let Ok(retired) = retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true));
    let Ok(again) = retire(&heap.words(), &NoHook);
    assert_eq!(again, Ok(false));
    assert_eq!(heap.acquire(&rules, 2 * SEC, 1), Outcome::Retired);
    let Ok(usage) = usage(&heap.words(), &rules, 2 * SEC, &NoHook);
    assert_eq!(usage, Err(RETIRED));
}

/// Of rates that refuse and free up at the same moment, the first is reported; otherwise
/// the one that frees up last.
#[test]
fn the_rate_reported_is_the_one_that_frees_up_last_then_the_first() {
    for rules in [
        [requests(1, SEC), rule(1, SEC)],
        [rule(1, SEC), requests(1, SEC)],
    ] {
        let heap = Heap::new(&rules);
        heap.admit(&rules, SEC, 1);
        assert_eq!(
            heap.acquire(&rules, SEC + 1, 1),
            Outcome::Denied {
                rate: 0,
                retry_at: 2 * SEC
            },
            "{rules:?}"
        );
    }
    let rules = [
        requests(1, SEC),
        requests(2, 10 * SEC),
        requests(1, 2 * SEC),
    ];
    let heap = Heap::new(&rules);
    heap.admit(&rules, SEC, 1);
    assert_eq!(
        heap.acquire(&rules, SEC + 1, 1),
        Outcome::Denied {
            rate: 2,
            retry_at: 3 * SEC
        }
    );
}
