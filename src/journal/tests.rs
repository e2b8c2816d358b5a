//! Unit tests of the journal: clock conversion, history building, the journal's reads of a ring.

use proptest::prelude::*;

use super::restore::{Restored, RingBound, build_history, to_file_clock, wall_at};
use super::schema::rates_text;
use crate::layout::capacity_for;
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

/// The history `entries` restore at `now`, in the ring `rules` get.
fn restore(entries: &[Restored], rules: &[Rule], now: u64) -> Vec<Record> {
    build_history(entries, rules, capacity_for(rules).unwrap(), now)
}

/// One admission of `weight` at `ts`.
fn one(ts: u64, weight: u64) -> Restored {
    Restored {
        ts,
        weight,
        records: 1,
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
    let history = restore(&entries, &rules, now);
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
    let history = restore(&entries, &rules, 6 * SEC);
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].cum, 40);
    assert!(history.iter().all(|r| r.ts == 5 * SEC));
    // Without a request rate, a weight-0 record counts nothing and is dropped.
    let weights = [rule(1_000, 10 * SEC, false)];
    assert_eq!(restore(&entries, &weights, 6 * SEC).len(), 1);
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
    let restored = restore(&entries, &rules, SEC);
    // The weight is capped at the limit, newest first: four records (30+30+30+10).
    assert_eq!(restored.len(), 4);
    assert_eq!(restored[0].ts, 1_700);
    assert_eq!(restored[3].cum, 100);
    // Requests are capped at the request limit, newest first.
    let requests = [rule(15, 10 * SEC, true)];
    let restored = restore(&entries, &requests, SEC);
    assert_eq!(restored.len(), 15);
    assert_eq!(restored[0].ts, 600);
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
    let history = restore(&entries, &rules, 4 * SEC);
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

/// One acquire on a heap ring.
fn acquire_on(heap: &Heap, rules: &[Rule], now: u64, weight: u64, hints: &mut Hints) -> Outcome {
    let Ok(outcome) = protocol::acquire(&heap.words(), rules, now, weight, hints, &NoHook);
    outcome
}

/// A restored ring, then `calls` acquires of weight 1 every `every` ns from `now`: how many
/// were admitted before the first call that was not.
fn admitted_in_a_row(rules: &[Rule], restored: &[Record], now: u64, every: u64, calls: u64) -> u64 {
    let heap = Heap::new(capacity_for(rules).unwrap() as u32, restored);
    let mut hints = Hints::default();
    for call in 0..calls {
        match acquire_on(&heap, rules, now + call * every, 1, &mut hints) {
            Outcome::Admitted(_) => {}
            outcome => {
                println!("call {call}: {outcome:?}");
                return call;
            }
        }
    }
    calls
}

/// Issue 9, item 2, at the level of the history: 10,000 rows of another boot, all older than
/// the uptime (timestamp 1), for 10/s and 1,000,000 per 1000 s (16,384 slots).
#[test]
fn rows_older_than_the_boot_become_a_few_heavy_records_not_a_burst() {
    let rules = [rule(10, SEC, false), rule(1_000_000, 1_000 * SEC, false)];
    let entries = vec![one(1, 1); 10_000];
    let restored = restore(&entries, &rules, 60 * SEC);
    // At most 10 records at the boot (10/s), carrying every unit of weight.
    assert!(restored.len() <= 10, "{} records", restored.len());
    assert!(restored.iter().all(|r| r.ts == 1));
    assert_eq!(restored.last().unwrap().cum, 10_000);
    // 10/s from 60 s on fits both rates for longer than a lap of the ring.
    assert_eq!(
        admitted_in_a_row(&rules, &restored, 60 * SEC, SEC / 10, 20_000),
        20_000
    );
    // The same with request-counting rates: the long rate (implied by 10/s) needs no record,
    // so 10 records stand for the boot's second.
    let requests = [rule(10, SEC, true), rule(1_000_000, 1_000 * SEC, true)];
    let restored = restore(&entries, &requests, 60 * SEC);
    assert_eq!(restored.len(), 10);
    assert_eq!(
        admitted_in_a_row(&requests, &restored, 60 * SEC, SEC / 10, 20_000),
        20_000
    );
}

#[test]
fn a_request_rate_that_bounds_the_ring_keeps_every_record_it_needs() {
    // 500 per 1000 s bounds the ring (500 slots beat 10/s's 10,000): rows of another boot at
    // timestamp 1 keep 500 records there, which fill that rate until 1000 s.
    let rules = [rule(10, SEC, true), rule(500, 1_000 * SEC, true)];
    assert_eq!(
        RingBound::choose(&rules, capacity_for(&rules).unwrap()),
        Some(RingBound {
            limit: 500,
            window: 1_000 * SEC
        })
    );
    let restored = restore(&vec![one(1, 1); 10_000], &rules, 60 * SEC);
    assert_eq!(restored.len(), 500);
    assert_eq!(admitted_in_a_row(&rules, &restored, 60 * SEC, SEC, 100), 0);
    assert_eq!(
        admitted_in_a_row(&rules, &restored, 1_000 * SEC + 1, SEC / 10, 100),
        100
    );
}

#[test]
fn rows_stacked_at_now_keep_their_weight_in_fewer_records() {
    // A wall clock that stepped back stacks 50 rows at `now`: 10 records carry all 50.
    let rules = [rule(10, SEC, false), rule(1_000_000, 1_000 * SEC, false)];
    let now = 500 * SEC;
    let restored = restore(&vec![one(now, 1); 50], &rules, now);
    assert_eq!(restored.len(), 10);
    assert_eq!(restored.last().unwrap().cum, 50);
    // The second after `now` is full (50 > 10), as the journal says.
    assert_eq!(admitted_in_a_row(&rules, &restored, now, SEC / 2, 3), 0);
    assert_eq!(
        admitted_in_a_row(&rules, &restored, now + SEC, SEC / 10, 100),
        100
    );
}

/// Is `rules` one of the configurations `build_history` documents as its exception: a
/// request-counting rate with a longer window than the bounding rate's that the bounding rate
/// does not imply?
fn is_the_documented_exception(rules: &[Rule]) -> bool {
    let Some(bound) = RingBound::choose(rules, capacity_for(rules).unwrap()) else {
        return true;
    };
    rules.iter().any(|r| {
        r.requests
            && r.window > bound.window
            && u128::from(r.limit)
                < u128::from(bound.limit) * u128::from(r.window.div_ceil(bound.window))
    })
}

#[derive(Debug, Clone)]
struct Reboot {
    rules: Vec<Rule>,
    /// Acquires of the real history: (pause before it in ms, weight).
    before: Vec<(u64, u64)>,
    /// When the machine booted: this many ms after the start of the history, or (if
    /// `boot_after_end`) after its last acquire.
    boot_ms: u64,
    boot_after_end: bool,
    /// How long after the boot the journal is restored, in ms.
    uptime_ms: u64,
    /// Rows moved later than they were (a wall clock that stepped back): (row, ms later).
    moved: Vec<(usize, u64)>,
    /// Rows that were never admissions (lease remainders): (ms after the boot, weight).
    extra: Vec<(u64, u64)>,
    /// Acquires after the restore: (pause before it in ms, weight).
    after: Vec<(u64, u64)>,
}

fn reboots() -> impl Strategy<Value = Reboot> {
    let limits = prop_oneof![1u64..=12, 20u64..=150];
    let any_rule = (limits, 1u64..=10, any::<bool>())
        .prop_map(|(limit, seconds, requests)| rule(limit, seconds * SEC, requests));
    // Often the shape a dense history strains most: a short bounding rate and a generous
    // long one.
    let short_and_long = (
        1u64..=5,
        1u64..=2,
        any::<bool>(),
        20u64..=150,
        5u64..=10,
        any::<bool>(),
    )
        .prop_map(
            |(small, short, short_requests, large, long, long_requests)| {
                vec![
                    rule(small, short * SEC, short_requests),
                    rule(large, long * SEC, long_requests),
                ]
            },
        );
    let rules = prop_oneof![prop::collection::vec(any_rule, 1..=3), short_and_long];
    let acquires = |n| prop::collection::vec((0u64..=1_500, 0u64..=40), 0..=n);
    (
        rules,
        acquires(200),
        (0u64..=60_000, any::<bool>()),
        prop_oneof![1u64..=3_000, 1u64..=15_000],
        prop::collection::vec((0usize..200, 0u64..=15_000), 0..=10),
        prop::collection::vec((0u64..=15_000, 0u64..=40), 0..=10),
        acquires(300),
    )
        .prop_map(
            |(rules, before, boot, uptime_ms, moved, extra, after)| Reboot {
                rules,
                before,
                boot_ms: if boot.1 { boot.0 / 10 } else { boot.0 },
                boot_after_end: boot.1,
                uptime_ms,
                moved,
                extra,
                after,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// A real history (admitted by the protocol) up to a reboot and a little after; its rows
    /// in the new boot's clock (older than the boot: timestamp 1), some moved later, some
    /// added; the restored ring then never runs short (no `Corrupt`), and never admits what
    /// the real history would refuse.
    #[test]
    fn a_restored_history_never_runs_the_ring_short_and_never_admits_more(case in reboots()) {
        let rules = &case.rules;
        prop_assume!(!is_the_documented_exception(rules));
        let capacity = capacity_for(rules).unwrap();
        const MS: u64 = 1_000_000;
        // The real clock: the history starts at 100,000 s; the boot is at `boot`.
        let start = 100_000 * SEC;
        let span: u64 = case.before.iter().map(|a| a.0 * MS).sum();
        let boot = start + case.boot_ms * MS + if case.boot_after_end { span } else { 0 };
        let now = case.uptime_ms * MS; // in the new boot's clock
        let truth = Heap::new(capacity as u32, &[]);
        let mut hints = Hints::default();
        let mut t = start;
        let mut rows: Vec<Restored> = Vec::new();
        for &(pause, weight) in &case.before {
            t += pause * MS;
            if t > boot + now {
                break;
            }
            if let Outcome::Admitted(record) = acquire_on(&truth, rules, t, weight, &mut hints) {
                let ts = record.ts.saturating_sub(boot).max(1);
                rows.push(one(ts, weight));
            }
        }
        for &(row, later) in &case.moved {
            if let Some(entry) = rows.get_mut(row) {
                entry.ts = (entry.ts + later * MS).min(now.max(1));
            }
        }
        for &(at, weight) in &case.extra {
            rows.push(Restored { ts: (at * MS).clamp(1, now.max(1)), weight, records: 1 + weight % 3 });
        }
        let restored = build_history(&rows, rules, capacity, now);
        prop_assert!(restored.len() as u64 <= capacity - 2);
        let mut previous = Record::SENTINEL;
        for record in &restored {
            prop_assert_eq!(record.seq, previous.seq + 1);
            prop_assert!(record.ts >= previous.ts.max(1) && record.ts <= now.max(1));
            previous = *record;
        }
        let ring = Heap::new(capacity as u32, &restored);
        let mut ring_hints = Hints::default();
        let mut x = 0;
        for &(pause, weight) in &case.after {
            x += pause * MS;
            match acquire_on(&ring, rules, now + x, weight, &mut ring_hints) {
                Outcome::Admitted(_) | Outcome::Free => {
                    let real = acquire_on(&truth, rules, boot + now + x, weight, &mut hints);
                    prop_assert!(
                        matches!(real, Outcome::Admitted(_) | Outcome::Free),
                        "admitted {} at {} ms after the restore, the real history says {:?}",
                        weight, x / MS, real
                    );
                }
                Outcome::Corrupt(reason) => prop_assert!(false, "{reason}"),
                Outcome::Denied { .. } | Outcome::NeverFits { .. } | Outcome::Retired => {}
            }
        }
    }
}
