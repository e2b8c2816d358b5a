//! What a rate's check costs: a weight rate from its window hint (one load one to two windows
//! back, no bound where the weight wraps or the limit is 2^31 or more), a request rate by one
//! load, and the window search in the log of the hint's distance.

use super::*;

/// Issue 17: the window search is exact from any hint (the property test), and cheap from a
/// good one: about 2 log2(distance) probes from the hint to the window's boundary, and two
/// to tell, from a hint at the ring's oldest record, that the ring does not reach back.
#[test]
fn a_weight_rate_admits_from_a_hint_one_to_two_windows_back_with_one_load() {
    // 1000 per 10 s, one admission of 1 every 100 ms: about 100 inside any window.
    let rules = [rule(1000, 10 * SEC)];
    let heap = Heap::new(&rules);
    let mut hints = Hints::default();
    let tenth = SEC / 10;
    for i in 1..=300u64 {
        let (outcome, steps) = acquire_as(&heap, &mut hints, &rules, i * tenth, 1);
        assert!(matches!(outcome, Outcome::Admitted(_)), "{i}: {outcome:?}");
        // Up to two windows after time 0 the fresh hint (the sentinel, at time 0) bounds the
        // window: the first call reads no record (the sentinel is the head), the next ones
        // one each.
        if i == 1 {
            assert_eq!(steps, 3 + 1 + 2, "{i}");
        } else if i <= 200 {
            assert_eq!(steps, 3 + 1 + 1 + 2, "{i}");
            assert_eq!(hints.windows[0], 0, "{i}");
        }
    }
    // The hint is the boundary of the last search. While it is one to two windows back, an
    // admission takes the walk's 3 steps, one load of the hinted record, the commit and the
    // hint's 2, however many records the window holds.
    let hinted = hints.windows[0];
    let mut shortcuts = 0;
    for i in 301..=500u64 {
        let (outcome, steps) = acquire_as(&heap, &mut hints, &rules, i * tenth, 1);
        assert!(matches!(outcome, Outcome::Admitted(_)), "{outcome:?}");
        if steps == 3 + 1 + 1 + 2 {
            shortcuts += 1;
        } else {
            // Searched: the hint had aged past two windows, and moved to the boundary.
            assert!(steps > 7);
        }
    }
    assert!(shortcuts > 150, "{shortcuts} of 200 from the hint");
    assert_ne!(hints.windows[0], hinted, "the hint moves on once too old");
    // A request that does not fit under the bound is decided by the search, exactly.
    let (outcome, _) = acquire_as(&heap, &mut hints, &rules, 500 * tenth, 901);
    assert_eq!(
        outcome,
        Outcome::Denied {
            rate: 0,
            retry_at: 401 * tenth + 10 * SEC
        }
    );
}

#[test]
fn a_hint_more_than_two_windows_back_gives_no_bound_where_the_weight_wraps() {
    // Two full windows of 2^31 - 1 and 2 more: the cumulative weight is back where it
    // started, so the weight after the sentinel (a fresh hint) reads as 0 mod 2^32. The
    // request rate keeps the ring small.
    let most = (1 << 31) - 1;
    let rules = [rule(most, 10 * SEC), requests(5, 40 * SEC)];
    let heap = Heap::new(&rules);
    for (at, weight) in [(10, most), (20, most), (30, 2)] {
        heap.admit(&rules, at * SEC, weight);
    }
    assert_eq!(heap.head().cum, 0, "the cumulative weight wrapped");
    let (outcome, _) = acquire_as(&heap, &mut Hints::default(), &rules, 35 * SEC, most);
    assert_eq!(
        outcome,
        Outcome::Denied {
            rate: 0,
            retry_at: 40 * SEC
        }
    );
    // A hint exactly two windows back is too old too: the records after it at its own
    // timestamp are in neither window. Here they weigh 2^31 - 2, and with the next two
    // windows' 2^31 - 1 and 3 the weight after it is 2^32, read as 0.
    let exact = Heap::new(&rules);
    for (at, weight) in [(10, 1), (10, most - 1), (20, most), (30, 3)] {
        exact.admit(&rules, at * SEC, weight);
    }
    let mut hints = Hints::default();
    hints.windows[0] = 1;
    assert_eq!(
        acquire_as(&exact, &mut hints, &rules, 30 * SEC, most).0,
        Outcome::Denied {
            rate: 0,
            retry_at: 40 * SEC
        }
    );
    // The same from a hint at the record of 10 s (2.5 windows back), and from the one at
    // 20 s (1.5 windows back: a bound of 2^31 + 1 that leaves no room, so the search).
    for hint in [1, 2] {
        let mut hints = Hints::default();
        hints.windows[0] = hint;
        let (outcome, _) = acquire_as(&heap, &mut hints, &rules, 35 * SEC, most);
        assert_eq!(
            outcome,
            Outcome::Denied {
                rate: 0,
                retry_at: 40 * SEC
            },
            "hint {hint}"
        );
    }
}

#[test]
fn a_limit_of_2_31_or_more_takes_no_bound_from_its_hint() {
    // Two windows of such a limit can hold 2^32 or more: the weight after a hint 1.5 windows
    // back (2^33 - 3 here) reads as 2^32 - 3 mod 2^32, which would leave room for 1.
    let most = u64::from(u32::MAX);
    let rules = [rule(most, 10 * SEC), requests(5, 40 * SEC)];
    let heap = Heap::new(&rules);
    let ms = SEC / 1000;
    for (at, weight) in [(10_000, 1), (10_500, most - 1), (20_600, most)] {
        heap.admit(&rules, at * ms, weight);
    }
    let mut hints = Hints::default();
    hints.windows[0] = 1;
    assert_eq!(
        acquire_as(&heap, &mut hints, &rules, 21 * SEC, 1).0,
        Outcome::Denied {
            rate: 0,
            retry_at: 30_600 * ms
        }
    );
}

#[test]
fn a_request_rate_costs_one_load_whatever_its_window_holds() {
    // Admitted: the walk's 3 steps (hint, hinted slot, next slot), one probe, the commit,
    // the hint's load and store. A search from the head would gallop over ~2 log2(inside).
    let rules = [requests(1000, 1000 * SEC)];
    for inside in [0, 1, 3, 100, 998, 999] {
        let (outcome, steps) = fresh_call(&rules, inside, (inside + 1) * SEC);
        assert!(
            matches!(outcome, Outcome::Admitted(_)),
            "{inside}: {outcome:?}"
        );
        assert_eq!(steps, 3 + 1 + 1 + 2, "{inside} inside");
    }
    // Denied: the walk, one probe, the reload that validates the denial. The retry time is
    // when the record 999 back (the one at 1 s) leaves the window.
    let (outcome, steps) = fresh_call(&rules, 1000, 1000 * SEC);
    assert_eq!(
        outcome,
        Outcome::Denied {
            rate: 0,
            retry_at: 1001 * SEC
        }
    );
    assert_eq!(steps, 3 + 1 + 1);
    // A limit of 1 reads the head itself: no probe at all.
    let (outcome, steps) = fresh_call(&[requests(1, 10 * SEC)], 1, 2 * SEC);
    assert_eq!(
        outcome,
        Outcome::Denied {
            rate: 0,
            retry_at: 11 * SEC
        }
    );
    assert_eq!(steps, 3 + 1);
}

#[test]
fn a_request_rate_frees_up_exactly_when_its_oldest_counted_record_leaves() {
    // 3 per 10 s, admitted at 1, 2 and 3 s: full until 1 s's record leaves, at 11 s.
    let rules = [requests(3, 10 * SEC)];
    let heap = Heap::new(&rules);
    for at in 1..=3 {
        heap.admit(&rules, at * SEC, 1);
    }
    for now in [3 * SEC, 5 * SEC, 11 * SEC - 1, 0, SEC] {
        assert_eq!(
            heap.acquire(&rules, now, 1),
            Outcome::Denied {
                rate: 0,
                retry_at: 11 * SEC
            },
            "at {now}"
        );
    }
    assert_eq!(heap.admit(&rules, 11 * SEC, 1).ts, 11 * SEC);
    // Now 2, 3 and 11 s are inside: the next frees up at 12 s, whatever the weight asked.
    assert_eq!(
        heap.acquire(&rules, 11 * SEC, 7),
        Outcome::Denied {
            rate: 0,
            retry_at: 12 * SEC
        }
    );
    // A ring shorter than the limit (garbage sizing) still answers through the search.
    let small = Heap::with_capacity(4);
    let big = [requests(10, 10 * SEC)];
    small.admit(&big, SEC, 1);
    small.admit(&big, 2 * SEC, 1);
    assert_eq!(small.admit(&big, 3 * SEC, 1).seq, 3);
}

#[test]
fn the_window_search_costs_the_log_of_the_hints_distance() {
    let heap = Heap::with_capacity(64);
    let fill = [requests(1, SEC)];
    for i in 1..=100u64 {
        heap.admit(&fill, i * SEC, 1);
    }
    // The ring holds records 37..=100, at 37 s..=100 s; the oldest is 63 back from the head.
    let head = heap.head();
    let next_raw = heap.ring[101 % 64].load();
    let words = heap.words();
    let search = |threshold: u64, hint_back: u32| {
        let hook = counting(1000);
        let view = View {
            words: &words,
            hook: &hook,
            head,
            next_raw,
        };
        let Ok(found) = view.records_after(threshold, head.seq.wrapping_sub(hint_back));
        (found, hook.taken())
    };
    let bits = |distance: u32| (32 - distance.leading_zeros()) as usize;
    for boundary in [0u32, 1, 2, 5, 30, 62, 63] {
        // The record `boundary` back is at the threshold, so outside the window.
        let threshold = (100 - u64::from(boundary)) * SEC;
        for hint in 0..=66u32 {
            let (found, probes) = search(threshold, hint);
            assert_eq!(found, Some(boundary), "boundary {boundary}, hint {hint}");
            // A hint outside the ring is ignored: the search starts at the head.
            let distance = if hint > 63 {
                boundary
            } else {
                hint.abs_diff(boundary)
            };
            assert!(
                probes <= 2 * bits(distance) + 2,
                "boundary {boundary}, hint {hint}: {probes} probes"
            );
        }
    }
    // Below the oldest record's 37 s: the ring does not reach back over the window.
    for hint in 0..=66u32 {
        let (found, probes) = search(30 * SEC, hint);
        assert_eq!(found, None, "hint {hint}");
        let distance = if hint > 63 { 63 } else { 63 - hint };
        assert!(
            probes <= 2 * bits(distance) + 2,
            "hint {hint}: {probes} probes"
        );
    }
    assert_eq!(search(30 * SEC, 63).1, 2, "from the oldest record");
}
