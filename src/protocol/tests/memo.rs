//! The memo of the last denial: a repeat costs one load, other callers' commits and a closed
//! log are seen, and it packs only what it can keep.

use super::*;

#[test]
fn a_repeated_denial_costs_one_load() {
    // 10 per 10 s, weight 6 at 1 s: a weight of 5 is refused until 11 s.
    let rules = [rule(10, 10 * SEC), requests(100, 10 * SEC)];
    let heap = Heap::new(&rules);
    let mut ours = Hints::default();
    assert!(matches!(
        acquire_as(&heap, &mut ours, &rules, SEC, 6).0,
        Outcome::Admitted(_)
    ));
    let refused = Outcome::Denied {
        rate: 0,
        retry_at: 11 * SEC,
    };
    let (first, full) = acquire_as(&heap, &mut ours, &rules, 2 * SEC, 5);
    assert_eq!(first, refused);
    assert!(full > 1, "the first denial is computed: {full} steps");
    // The repeat, at any clock before the retry time (stale and 0 included): one load.
    for now in [2 * SEC, 5 * SEC, 11 * SEC - 1, 0, 1] {
        assert_eq!(
            acquire_as(&heap, &mut ours, &rules, now, 5),
            (refused, 1),
            "at {now}"
        );
    }
    // Another weight is computed in full (and answered right), and does not spoil the memo
    // of its own denial for the next repeat.
    let (other, steps) = acquire_as(&heap, &mut ours, &rules, 3 * SEC, 7);
    assert_eq!(other, refused);
    assert_eq!(steps, full);
    assert_eq!(
        acquire_as(&heap, &mut ours, &rules, 3 * SEC, 7),
        (refused, 1)
    );
    assert_eq!(
        acquire_as(&heap, &mut ours, &rules, 3 * SEC, 4).0,
        Outcome::Admitted(Record {
            ts: 3 * SEC,
            seq: 2,
            cum: 10
        })
    );
    // Our own commit moved the head: the memo no longer answers, the full path does (the
    // retry time is now 13 s, when the 4 leaves too).
    let (after_commit, steps) = acquire_as(&heap, &mut ours, &rules, 4 * SEC, 7);
    assert_eq!(
        after_commit,
        Outcome::Denied {
            rate: 0,
            retry_at: 13 * SEC
        }
    );
    assert!(steps > 1);
    // At the retry time the memo does not answer: the request fits.
    let mut fresh = Hints::default();
    assert_eq!(
        acquire_as(&heap, &mut fresh, &rules, 4 * SEC, 1).0,
        Outcome::Denied {
            rate: 0,
            retry_at: 11 * SEC
        }
    );
    assert!(matches!(
        acquire_as(&heap, &mut fresh, &rules, 11 * SEC, 1).0,
        Outcome::Admitted(_)
    ));
}

#[test]
fn a_memo_sees_commits_by_other_callers_and_the_log_closing() {
    let rules = [rule(10, 10 * SEC), requests(100, 10 * SEC)];
    let heap = Heap::new(&rules);
    let (mut ours, mut theirs) = (Hints::default(), Hints::default());
    assert!(matches!(
        acquire_as(&heap, &mut theirs, &rules, SEC, 5).0,
        Outcome::Admitted(_)
    ));
    let refused = |retry_at| Outcome::Denied { rate: 0, retry_at };
    assert_eq!(
        acquire_as(&heap, &mut ours, &rules, 2 * SEC, 6).0,
        refused(11 * SEC)
    );
    // Another caller commits a weight that fits: our repeat is computed again and answers
    // the longer wait (the 5 leaves at 11 s, but 5 + 6 still exceeds 10 until 12 s).
    assert!(matches!(
        acquire_as(&heap, &mut theirs, &rules, 2 * SEC, 5).0,
        Outcome::Admitted(_)
    ));
    let (again, steps) = acquire_as(&heap, &mut ours, &rules, 3 * SEC, 6);
    assert_eq!(again, refused(12 * SEC));
    assert!(steps > 1, "a memo answered over another caller's commit");
    // A commit that charges no weight (a request only) moves the head too.
    assert_eq!(
        acquire_as(&heap, &mut ours, &rules, 3 * SEC, 6),
        (refused(12 * SEC), 1)
    );
    assert!(matches!(
        acquire_as(&heap, &mut theirs, &rules, 3 * SEC, 0).0,
        Outcome::Admitted(_)
    ));
    let (again, steps) = acquire_as(&heap, &mut ours, &rules, 3 * SEC, 6);
    assert_eq!(again, refused(12 * SEC));
    assert!(steps > 1);
    // The log closed (a reset or a remove): the repeat says so instead of the memo.
    let Ok(retired) = retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true));
    assert_eq!(
        acquire_as(&heap, &mut ours, &rules, 3 * SEC, 6).0,
        Outcome::Retired
    );
}

#[test]
fn a_memo_packs_and_keeps_only_what_it_can() {
    let memo = Memo::of(u32::MAX, Memo::MAX_WEIGHT, MAX_RATES - 1, u64::MAX);
    assert_eq!(Memo::unpack(memo.pack()), memo);
    assert_eq!(
        memo.answers(u64::MAX - 2, Memo::MAX_WEIGHT),
        Some((MAX_RATES - 1, u64::MAX))
    );
    assert_eq!(Memo::unpack(Memo::NONE.pack()), Memo::NONE);
    assert_eq!(Memo::NONE.answers(0, 0), None);
    // A weight or a rate beyond the packing is not remembered.
    assert_eq!(Memo::of(7, Memo::MAX_WEIGHT + 1, 0, 9), Memo::NONE);
    assert_eq!(Memo::of(7, 1, MAX_RATES, 9), Memo::NONE);
    let memo = Memo::of(7, 3, 2, 9);
    assert_eq!(memo.answers(8, 3), Some((2, 9)));
    assert_eq!(memo.answers(9, 3), None, "at the retry time");
    assert_eq!(memo.answers(8, 4), None, "another weight");
    // Weight 0 is a weight like any other (a request rate counts it).
    assert_eq!(Memo::of(7, 0, 0, 9).answers(0, 0), Some((0, 9)));
    // A heavy weight is refused in full every time, and still right.
    let rules = [requests(1, 10 * SEC)];
    let heap = Heap::new(&rules);
    let mut hints = Hints::default();
    heap.admit(&rules, SEC, 1);
    for _ in 0..2 {
        let (outcome, steps) = acquire_as(&heap, &mut hints, &rules, SEC, 1 << 28);
        assert_eq!(
            outcome,
            Outcome::Denied {
                rate: 0,
                retry_at: 11 * SEC
            }
        );
        assert!(steps > 1);
    }
}
