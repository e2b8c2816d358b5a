//! `usage`: it reads again after a commit that raced it; and (issue 17, round 4) what it
//! reports for each rate, checked deterministically (the mutation run found `next_free_at`
//! checked only by the property test's random cases).

use super::*;

/// `usage` racing a commit: it reads again and reports the state with it.
#[test]
fn usage_reads_again_after_a_commit_that_raced_it() {
    let rules = [requests(5, SEC), rule(10, SEC)];
    let heap = Heap::new(&rules);
    heap.admit(&rules, SEC, 2);
    let dry = counting(100);
    let Ok(_) = usage(&heap.words(), &rules, SEC, &dry);
    for at in 0..dry.taken() {
        let heap = Heap::new(&rules);
        heap.admit(&rules, SEC, 2);
        let hook = Inject::new(Some(at), || {
            heap.admit(&rules, SEC + 1, 3);
        });
        let Ok(usage) = usage(&heap.words(), &rules, SEC + 1, &hook);
        let usage = usage.unwrap();
        assert_eq!(usage.head.seq, 2, "commit before step {at}");
        assert_eq!(
            (usage.rates[0].used, usage.rates[1].used),
            (2, 5),
            "commit before step {at}"
        );
    }
}

/// Each rate's use and the moment it frees up: the oldest record inside its own window,
/// plus that window; an empty window frees up at no moment (`None`).
#[test]
fn usage_reports_each_rates_oldest_record_inside_its_window() {
    let rules = [rule(10, SEC), requests(5, 2 * SEC)];
    let heap = Heap::new(&rules);
    let first = heap.admit(&rules, SEC, 2);
    let second = heap.admit(&rules, SEC + SEC / 2, 3);
    heap.admit(&rules, 2 * SEC + SEC / 5, 1);

    // At 2.4 s the 1 s window holds the last two records (weight 3 + 1), the 2 s window
    // all three requests.
    let now = 2 * SEC + 2 * SEC / 5;
    let usage = heap.usage(&rules, now);
    assert_eq!(usage.at, now);
    assert_eq!(
        usage.rates[0],
        RateUse {
            used: 4,
            next_free_at: Some(second.ts + SEC),
        }
    );
    assert_eq!(
        usage.rates[1],
        RateUse {
            used: 3,
            next_free_at: Some(first.ts + 2 * SEC),
        }
    );

    // At 3 s the 1 s window holds only the newest record, the 2 s window the last two
    // (the first, at exactly 3 s - 2 s, has left it).
    let usage = heap.usage(&rules, 3 * SEC);
    let newest = heap.head();
    assert_eq!(
        (usage.rates[0], usage.rates[1]),
        (
            RateUse {
                used: 1,
                next_free_at: Some(newest.ts + SEC),
            },
            RateUse {
                used: 2,
                next_free_at: Some(second.ts + 2 * SEC),
            }
        )
    );

    // Long after, both windows are empty.
    let usage = heap.usage(&rules, 10 * SEC);
    for rate in &usage.rates[..2] {
        assert_eq!(
            *rate,
            RateUse {
                used: 0,
                next_free_at: None,
            }
        );
    }
}
