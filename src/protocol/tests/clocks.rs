//! Clock readings: a stale clock, a clock at 0, readings below the window, and a clock at the
//! end of time (`Record::stamp`).

use super::*;

#[test]
fn a_stale_clock_records_the_previous_timestamp() {
    let rules = [rule(2, SEC)];
    let heap = Heap::new(&rules);
    let Outcome::Admitted(first) = heap.acquire(&rules, 5 * SEC, 1) else {
        panic!()
    };
    // A caller preempted since reading 4 s commits with the newest timestamp, 5 s.
    let Outcome::Admitted(second) = heap.acquire(&rules, 4 * SEC, 1) else {
        panic!()
    };
    assert_eq!((first.ts, second.ts), (5 * SEC, 5 * SEC));
    assert_eq!(
        heap.acquire(&rules, 4 * SEC, 1),
        Outcome::Denied {
            rate: 0,
            retry_at: 6 * SEC
        }
    );
}

/// Issue 9, defect 10: a clock that reads 0 (`ManualClock::new(0)`, or any clock that starts
/// there) admitted without limit (1,000 of 1,000 under 1/s), because records at timestamp 0
/// were never counted. Now an admission at clock 0 is recorded at 1 ns and counts like any.
#[test]
fn a_clock_at_zero_is_counted_like_any_other() {
    for rules in [[rule(1, SEC)], [requests(1, SEC)]] {
        let heap = Heap::new(&rules);
        let admitted = (0..1000)
            .filter(|_| matches!(heap.acquire(&rules, 0, 1), Outcome::Admitted(_)))
            .count();
        assert_eq!(admitted, 1, "{rules:?}");
        assert_eq!(heap.head().ts, Record::FIRST_TS);
        // It leaves the window at 1 s + 1 ns.
        for now in [0, 1, SEC - 1, SEC] {
            assert_eq!(
                heap.acquire(&rules, now, 1),
                Outcome::Denied {
                    rate: 0,
                    retry_at: SEC + 1
                },
                "{rules:?} at {now}"
            );
        }
        assert_eq!(heap.usage(&rules, 0).rates[0].used, 1);
        assert!(matches!(
            heap.acquire(&rules, SEC + 1, 1),
            Outcome::Admitted(_)
        ));
    }
}

/// Issue 9, defect 10: clock readings below the window (the window reaches back before time
/// 0) count every admission since 0, those at 0 included, for weight and request rates.
#[test]
fn clock_readings_below_the_window_count_every_admission() {
    let nows = [
        0,
        0,
        5,
        7,
        1_000,
        SEC - 1,
        SEC,
        SEC + 1,
        SEC + 4,
        SEC + 5,
        SEC + 6,
    ];
    for (rules, weight) in [
        ([rule(3, SEC)], 1),
        ([requests(3, SEC)], 1),
        ([requests(3, SEC)], 7),
        ([rule(6, SEC)], 2),
    ] {
        let heap = Heap::new(&rules);
        let mut model = Model::default();
        let outcomes: Vec<Outcome> = nows
            .iter()
            .map(|&now| {
                let outcome = heap.acquire(&rules, now, weight);
                assert_eq!(outcome, model.acquire(&rules, now, weight), "at {now}");
                outcome
            })
            .collect();
        // Admitted at 1 (clock 0), 1 (clock 0) and 5; denied until the two at 1 ns leave at
        // 1 s + 1 ns; then admitted at 1 s + 1, 1 s + 4 and, once the one at 5 has left,
        // 1 s + 5.
        let admitted: Vec<u64> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Admitted(record) => Some(record.ts),
                _ => None,
            })
            .collect();
        assert_eq!(admitted, [1, 1, 5, SEC + 1, SEC + 4, SEC + 5], "{rules:?}");
        assert_eq!(
            outcomes[3],
            Outcome::Denied {
                rate: 0,
                retry_at: SEC + 1
            }
        );
    }
}

/// A clock reading of `u64::MAX` is recorded just below the tombstone's timestamp: it does
/// not close the log.
#[test]
fn a_clock_at_the_end_of_time_does_not_close_the_log() {
    let rules = [requests(2, SEC)];
    let heap = Heap::new(&rules);
    assert_eq!(heap.admit(&rules, u64::MAX, 1).ts, Record::LAST_TS);
    assert_eq!(heap.admit(&rules, 5, 1).ts, Record::LAST_TS);
    assert_eq!(
        heap.acquire(&rules, u64::MAX, 1),
        Outcome::Denied {
            rate: 0,
            retry_at: u64::MAX
        }
    );
    assert_eq!(heap.usage(&rules, u64::MAX).at, Record::LAST_TS);
    let Ok(retired) = retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true), "the log was open");
}
