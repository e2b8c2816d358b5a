//! Unit tests of the journal: clock conversion, history building, the journal's reads of a ring.

use super::restore::{Restored, build_history, to_file_clock, wall_at};
use super::schema::rates_text;
use crate::protocol::{self, Hints, NoHook, Outcome, Record, Rule, Words};
use crate::sync::{AtomicPair, AtomicU64};

const SEC: u64 = 1_000_000_000;

fn rule(limit: u64, window: u64, requests: bool) -> Rule {
    Rule {
        limit,
        window,
        requests,
    }
}

#[test]
fn same_clock_is_exact_other_clock_goes_through_the_wall_clock() {
    let now = 1_000 * SEC;
    let wall = 50_000 * SEC;
    // Same clock: the timestamp itself.
    assert_eq!(to_file_clock("a", 900 * SEC, 0, "a", now, wall), 900 * SEC);
    // Never in the future (a lease's end).
    assert_eq!(to_file_clock("a", 2_000 * SEC, 0, "a", now, wall), now);
    // Another boot: as old as the wall clock says.
    assert_eq!(
        to_file_clock("b", 5, wall - 30 * SEC, "a", now, wall),
        now - 30 * SEC
    );
    // Older than this boot: clamped to 1 (younger than it was: expires later).
    assert_eq!(to_file_clock("b", 5, wall - 5_000 * SEC, "a", now, wall), 1);
    // A wall clock that stepped back: the row looks younger, never older.
    let stepped_back = wall - 3_600 * SEC;
    assert_eq!(
        to_file_clock("b", 5, wall - 30 * SEC, "a", now, stepped_back),
        now
    );
    for back in [0, 1, 10 * SEC, 3_600 * SEC] {
        assert!(to_file_clock("b", 5, wall - 30 * SEC, "a", now, wall - back) >= now - 30 * SEC);
    }
}

#[test]
fn wall_at_goes_both_ways() {
    assert_eq!(wall_at(90, 100, 1_000), 990);
    assert_eq!(wall_at(110, 100, 1_000), 1_010);
    assert_eq!(wall_at(0, 100, 50), 0);
}

#[test]
fn history_keeps_the_window_in_order_with_cumulative_weights() {
    let rules = [rule(100, 10 * SEC, false)];
    let now = 100 * SEC;
    let entries = [
        Restored {
            ts: 95 * SEC,
            weight: 3,
            records: 1,
        },
        Restored {
            ts: 80 * SEC, // outside the window
            weight: 50,
            records: 1,
        },
        Restored {
            ts: 91 * SEC,
            weight: 2,
            records: 1,
        },
        Restored {
            ts: 90 * SEC, // exactly at the edge: outside
            weight: 7,
            records: 1,
        },
    ];
    let history = build_history(&entries, &rules, 16, now);
    assert_eq!(
        history,
        vec![
            Record {
                ts: 91 * SEC,
                seq: 1,
                cum: 2
            },
            Record {
                ts: 95 * SEC,
                seq: 2,
                cum: 5
            },
        ]
    );
}

#[test]
fn lease_remainders_become_one_record_per_request() {
    let rules = [rule(10, 10 * SEC, true), rule(1_000, 10 * SEC, false)];
    let entries = [Restored {
        ts: 5 * SEC,
        weight: 40,
        records: 3,
    }];
    let history = build_history(&entries, &rules, 16, 6 * SEC);
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].cum, 40);
    assert!(history.iter().all(|r| r.ts == 5 * SEC));
    // Without a request rate, a weight-0 record counts nothing and is dropped.
    let weights = [rule(1_000, 10 * SEC, false)];
    assert_eq!(build_history(&entries, &weights, 16, 6 * SEC).len(), 1);
}

#[test]
fn history_keeps_the_newest_that_fit_and_caps_weight() {
    let rules = [rule(100, 10 * SEC, false)];
    let entries: Vec<Restored> = (1..=20)
        .map(|i| Restored {
            ts: i * 100,
            weight: 30,
            records: 1,
        })
        .collect();
    let history = build_history(&entries, &rules, 16, SEC);
    // The weight is capped at the limit, newest first: four records (30+30+30+10).
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].ts, 1_700);
    assert_eq!(history[3].cum, 100);
    let requests = [rule(100, 10 * SEC, true)];
    let history = build_history(&entries, &requests, 16, SEC);
    assert_eq!(history.len(), 14);
    assert_eq!(history[0].ts, 700);
}

/// A heap ring that starts as a restored file would.
struct Heap {
    hint: AtomicU64,
    laps: AtomicU64,
    ring: Vec<AtomicPair>,
}

impl Heap {
    fn new(capacity: u32, history: &[Record]) -> Heap {
        Heap {
            hint: AtomicU64::new(history.len() as u64),
            laps: AtomicU64::new(0),
            ring: (0..capacity)
                .map(|i| {
                    let record = match (i as usize).checked_sub(1).and_then(|k| history.get(k)) {
                        Some(r) => *r,
                        None => Record::initial(i, capacity),
                    };
                    AtomicPair::new(record.pack())
                })
                .collect(),
        }
    }

    fn words(&self) -> Words<'_> {
        Words::new(&self.hint, &self.laps, &self.ring).unwrap()
    }

    fn since(&self, after: u32) -> (Vec<(u32, u64, u32)>, u32) {
        let mut seen = Vec::new();
        let Ok(result) = protocol::records_since(&self.words(), after, &NoHook, |r, w| {
            seen.push((r.seq, r.ts, w));
        });
        (seen, result.unwrap().head)
    }
}

#[test]
fn a_restored_ring_counts_its_history_and_takes_new_records_after_it() {
    let rules = [rule(10, 10 * SEC, false)];
    let entries = [
        Restored {
            ts: 2 * SEC,
            weight: 4,
            records: 1,
        },
        Restored {
            ts: 3 * SEC,
            weight: 5,
            records: 1,
        },
    ];
    let history = build_history(&entries, &rules, 16, 4 * SEC);
    let heap = Heap::new(16, &history);
    let mut hints = Hints::default();
    let acquire = |now, weight, hints: &mut Hints| {
        let Ok(outcome) = protocol::acquire(&heap.words(), &rules, now, weight, hints, &NoHook);
        outcome
    };
    assert!(matches!(acquire(4 * SEC, 1, &mut hints), Outcome::Admitted(r) if r.seq == 3));
    // 4 + 5 + 1 = 10: full until the first restored record leaves, at 12 s.
    assert_eq!(
        acquire(5 * SEC, 1, &mut hints),
        Outcome::Denied {
            rate: 0,
            retry_at: 12 * SEC
        }
    );
    assert!(matches!(
        acquire(12 * SEC, 4, &mut hints),
        Outcome::Admitted(_)
    ));
    // The restored records are not read again; the new ones are, with their weights.
    let (seen, head) = heap.since(2);
    assert_eq!(seen, vec![(3, 4 * SEC, 1), (4, 12 * SEC, 4)]);
    assert_eq!(head, 4);
    assert_eq!(heap.since(4).0, vec![]);
}

#[test]
fn records_since_skips_what_the_ring_no_longer_holds() {
    let rules = [rule(1_000, SEC, false)];
    let heap = Heap::new(8, &[]);
    let mut hints = Hints::default();
    for i in 1..=20u64 {
        let Ok(outcome) = protocol::acquire(&heap.words(), &rules, i * SEC, i, &mut hints, &NoHook);
        assert!(matches!(outcome, Outcome::Admitted(_)));
    }
    // Head 20; the ring holds 13..=20, so 14..=20 can be given with their weights.
    let (seen, head) = heap.since(0);
    assert_eq!(head, 20);
    assert_eq!(
        seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
        (14..=20).map(|i| (i, i)).collect::<Vec<_>>()
    );
    assert_eq!(heap.since(18).0.len(), 2);
    assert_eq!(heap.since(20).0.len(), 0);
}

#[test]
fn records_since_stops_at_a_tombstone() {
    let rules = [rule(1_000, SEC, false)];
    let heap = Heap::new(8, &[]);
    let mut hints = Hints::default();
    let Ok(_) = protocol::acquire(&heap.words(), &rules, SEC, 2, &mut hints, &NoHook);
    let Ok(retired) = protocol::retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true));
    let Ok(result) = protocol::records_since(&heap.words(), 0, &NoHook, |_, _| {});
    let since = result.unwrap();
    assert!(since.retired);
    assert_eq!(heap.since(0).0, vec![(1, SEC, 2)]);
}

#[test]
fn rates_text_ignores_order() {
    let a = [rule(10, SEC, false), rule(60, 60 * SEC, true)];
    let b = [rule(60, 60 * SEC, true), rule(10, SEC, false)];
    assert_eq!(rates_text(&a), rates_text(&b));
    assert_eq!(rates_text(&a), "10/s, 60req/min");
}
