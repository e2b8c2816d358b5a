//! The protocol against a sequential reference model, over heap-backed words (runs under Miri).
//!
//! Besides the model comparisons, deterministic tests use the [`Hook`] the loom models use
//! for crashes: [`Inject`] runs an action (other callers' commits) just before a chosen
//! shared-memory step, which puts a full lap of commits in the middle of a walk, or a commit
//! between a denial's check and its re-read, and counts the steps a call takes.

use std::cell::Cell;
use std::convert::Infallible;

use proptest::prelude::*;

use super::*;
use crate::layout::{MAX_SLOTS, capacity_for};

const SEC: u64 = 1_000_000_000;

/// Heap-backed words sized for `rules`, as a new file would have them.
struct Heap {
    hint: AtomicU64,
    laps: AtomicU64,
    ring: Vec<AtomicPair>,
    hints: std::sync::Mutex<Hints>,
}

impl Heap {
    fn new(rules: &[Rule]) -> Heap {
        Heap::with_capacity(capacity_for(rules).unwrap() as usize)
    }

    fn with_capacity(capacity: usize) -> Heap {
        Heap {
            hint: AtomicU64::new(0),
            laps: AtomicU64::new(0),
            ring: (0..capacity as u32)
                .map(|i| AtomicPair::new(Record::initial(i, capacity as u32).pack()))
                .collect(),
            hints: std::sync::Mutex::new(Hints::default()),
        }
    }

    fn words(&self) -> Words<'_> {
        Words::new(&self.hint, &self.laps, &self.ring).unwrap()
    }

    fn capacity(&self) -> u32 {
        self.ring.len() as u32
    }

    fn acquire(&self, rules: &[Rule], now: u64, weight: u64) -> Outcome {
        self.acquire_with(rules, now, weight, &NoHook)
    }

    /// An acquire with this heap's carried hints, through `hook`.
    fn acquire_with<H: Hook<Stop = Infallible>>(
        &self,
        rules: &[Rule],
        now: u64,
        weight: u64,
        hook: &H,
    ) -> Outcome {
        let mut hints = *self.hints.lock().unwrap();
        let Ok(outcome) = acquire(&self.words(), rules, now, weight, &mut hints, hook);
        *self.hints.lock().unwrap() = hints;
        outcome
    }

    /// Admits `weight` at `now`, or fails the test.
    fn admit(&self, rules: &[Rule], now: u64, weight: u64) -> Record {
        match self.acquire(rules, now, weight) {
            Outcome::Admitted(record) => record,
            other => panic!("acquire at {now} of {weight}: {other:?}"),
        }
    }

    /// The newest record.
    fn head(&self) -> Record {
        self.usage(&[], 0).head
    }

    fn usage(&self, rules: &[Rule], now: u64) -> Usage {
        let Ok(usage) = usage(&self.words(), rules, now, &NoHook);
        usage.unwrap()
    }

    /// Overwrites slot `index` with `record` (garbage, or a state built by hand).
    fn set(&self, index: u32, record: Record) {
        let slot = &self.ring[index as usize];
        slot.compare_exchange(slot.load(), record.pack()).unwrap();
    }

    /// The records since `after`, as `records_since` visits them, and what it returned.
    fn since<H: Hook<Stop = Infallible>>(
        &self,
        after: u32,
        hook: &H,
    ) -> (Vec<(Record, u32)>, Result<Since, &'static str>) {
        let mut visited = Vec::new();
        let Ok(result) = records_since(&self.words(), after, hook, |record, weight| {
            visited.push((record, weight));
        });
        (visited, result)
    }
}

/// A hook that counts the shared-memory steps of the calls it is passed to, runs `action`
/// once just before step `at` (0-based), and counts the walks that were overtaken. It fails
/// the test beyond `limit` steps, so that a call that would walk for seconds fails at once.
struct Inject<F: Fn()> {
    at: Option<usize>,
    action: F,
    limit: usize,
    taken: Cell<usize>,
    overtaken: Cell<usize>,
}

impl<F: Fn()> Inject<F> {
    fn new(at: Option<usize>, action: F) -> Inject<F> {
        Inject {
            at,
            action,
            limit: usize::MAX,
            taken: Cell::new(0),
            overtaken: Cell::new(0),
        }
    }

    fn limit(mut self, limit: usize) -> Inject<F> {
        self.limit = limit;
        self
    }

    fn taken(&self) -> usize {
        self.taken.get()
    }

    fn overtaken(&self) -> usize {
        self.overtaken.get()
    }
}

impl<F: Fn()> Hook for Inject<F> {
    type Stop = Infallible;

    fn step(&self) -> Result<(), Infallible> {
        let step = self.taken.get();
        assert!(step < self.limit, "more than {} steps", self.limit);
        if Some(step) == self.at {
            (self.action)();
        }
        self.taken.set(step + 1);
        Ok(())
    }

    fn overtaken(&self) {
        self.overtaken.set(self.overtaken.get() + 1);
    }
}

/// A hook that only counts (and fails the test beyond `limit` steps).
fn counting(limit: usize) -> Inject<impl Fn()> {
    Inject::new(None, || {}).limit(limit)
}

/// The sequential sliding-window log the protocol must be indistinguishable from.
#[derive(Default)]
struct Model {
    log: Vec<(u64, u64)>, // (recorded timestamp, weight)
}

impl Model {
    fn last_ts(&self) -> u64 {
        self.log.last().map_or(0, |r| r.0)
    }

    /// The timestamp an acquire at `now` records: `now`, kept within 1..=2^64 - 2 (0 is the
    /// sentinel's time, 2^64 - 1 the tombstone's), and never before the last record.
    fn stamp(&self, now: u64) -> u64 {
        now.clamp(1, u64::MAX - 1).max(self.last_ts())
    }

    /// Records with `ts` in `(t - window, t]`, oldest first.
    fn inside(&self, rule: &Rule, t: u64) -> Vec<(u64, u64)> {
        let from = t.saturating_sub(rule.window);
        self.log
            .iter()
            .copied()
            .filter(|&(ts, _)| ts > from && ts <= t)
            .collect()
    }

    fn used(&self, rule: &Rule, t: u64) -> u64 {
        let inside = self.inside(rule, t);
        if rule.requests {
            inside.len() as u64
        } else {
            inside.iter().map(|r| r.1).sum()
        }
    }

    fn acquire(&mut self, rules: &[Rule], now: u64, weight: u64) -> Outcome {
        let units = |r: &Rule| if r.requests { 1 } else { weight };
        if let Some(rate) = rules.iter().position(|r| units(r) > r.limit) {
            return Outcome::NeverFits { rate };
        }
        if rules.iter().all(|r| units(r) == 0) {
            return Outcome::Free;
        }
        let t = self.stamp(now);
        let mut refusal: Option<(usize, u64)> = None;
        for (index, rule) in rules.iter().enumerate() {
            let u = units(rule);
            if u == 0 || self.used(rule, t) + u <= rule.limit {
                continue;
            }
            // Earliest expiry after which the request fits: drop records oldest first.
            let inside = self.inside(rule, t);
            let mut used = self.used(rule, t);
            let mut retry_at = None;
            for &(ts, w) in &inside {
                used -= if rule.requests { 1 } else { w };
                // Records sharing this timestamp leave together.
                if used + u <= rule.limit {
                    retry_at = Some(ts.saturating_add(rule.window));
                    break;
                }
            }
            let retry_at = retry_at.expect("dropping every record makes room");
            if refusal.is_none_or(|(_, at)| retry_at > at) {
                refusal = Some((index, retry_at));
            }
        }
        if let Some((rate, retry_at)) = refusal {
            return Outcome::Denied { rate, retry_at };
        }
        self.log.push((t, weight));
        Outcome::Admitted(Record {
            ts: t,
            seq: self.log.len() as u32,
            cum: self
                .log
                .iter()
                .map(|r| r.1 as u32)
                .fold(0u32, u32::wrapping_add),
        })
    }
}

fn rule(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: false,
    }
}

fn requests(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: true,
    }
}

#[test]
fn record_packing_round_trips() {
    for record in [
        Record::SENTINEL,
        Record {
            ts: u64::MAX,
            seq: u32::MAX,
            cum: u32::MAX,
        },
        Record {
            ts: 123_456_789,
            seq: 7,
            cum: 0xdead_beef,
        },
    ] {
        assert_eq!(Record::unpack(record.pack()), record);
    }
    assert_eq!(Record::SENTINEL.pack(), 0, "a zeroed file is the sentinel");
}

#[test]
fn words_reject_bad_rings() {
    let (hint, laps) = (AtomicU64::new(0), AtomicU64::new(0));
    let ring: Vec<AtomicPair> = (0..3).map(|_| AtomicPair::new(0)).collect();
    assert!(Words::new(&hint, &laps, &ring).is_none());
    assert!(Words::new(&hint, &laps, &ring[..1]).is_none());
    assert!(Words::new(&hint, &laps, &ring[..2]).is_some());
}

#[test]
fn a_new_ring_is_an_empty_history() {
    let heap = Heap::with_capacity(8);
    assert_eq!(heap.head(), Record::SENTINEL);
    assert_eq!(Record::initial(0, 8), Record::SENTINEL);
    assert_eq!(Record::initial(3, 8).seq, 3u32.wrapping_sub(8));
}

#[test]
fn a_stale_hint_only_costs_a_walk() {
    let rules = [requests(100, SEC)];
    let heap = Heap::new(&rules);
    for i in 0..50 {
        assert!(matches!(
            heap.acquire(&rules, SEC + i, 1),
            Outcome::Admitted(_)
        ));
    }
    for stale in [0, 7, 49, 50, 1000] {
        heap.hint.store(stale, Ordering::Relaxed);
        assert_eq!(heap.head().seq, 50, "hint {stale}");
    }
    // A hint from garbage that no lap explains is reported, not trusted.
    heap.hint.store(3, Ordering::Relaxed);
    let slot = &heap.ring[3];
    slot.compare_exchange(
        slot.load(),
        Record {
            ts: 0,
            seq: 4,
            cum: 0,
        }
        .pack(),
    )
    .unwrap();
    assert!(matches!(
        heap.acquire(&rules, 2 * SEC, 1),
        Outcome::Corrupt(_)
    ));
}

#[test]
fn the_lap_counter_extends_the_sequence() {
    let rules = [requests(1, 1)];
    let heap = Heap::new(&rules);
    // Pretend 2^32 - 2 records were committed: slot of record u32::MAX - 1 holds it.
    let last = u32::MAX - 1;
    let cap = heap.ring.len() as u32;
    for i in 0..cap {
        let seq = last.wrapping_sub(i);
        heap.ring[(seq % cap) as usize]
            .compare_exchange(
                heap.ring[(seq % cap) as usize].load(),
                Record { ts: 0, seq, cum: 0 }.pack(),
            )
            .unwrap();
    }
    heap.hint.store(u64::from(last), Ordering::Relaxed);
    assert!(matches!(
        heap.acquire(&rules, 10, 1),
        Outcome::Admitted(Record { seq: u32::MAX, .. })
    ));
    assert!(matches!(
        heap.acquire(&rules, 20, 1),
        Outcome::Admitted(Record { seq: 0, .. })
    ));
    assert!(matches!(
        heap.acquire(&rules, 30, 1),
        Outcome::Admitted(Record { seq: 1, .. })
    ));
    assert_eq!(heap.words().admitted(heap.head()), (1u64 << 32) + 1);
}

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

/// Random rings, hints and clocks: every entry point returns, without a panic, within a bound
/// of steps.
#[test]
fn garbage_in_the_words_never_panics() {
    let rules = [rule(10, SEC), requests(3, 60 * SEC)];
    let heap = Heap::new(&rules);
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..if cfg!(miri) { 10 } else { 2_000 } {
        heap.hint.store(next() % 64, Ordering::Relaxed);
        let mut seq = next() as u32;
        for slot in &heap.ring {
            // Mostly plausible records (so the search runs), sometimes pure noise.
            let record = if next() % 4 == 0 {
                Record::unpack(u128::from(next()) | (u128::from(next()) << 64))
            } else {
                seq = seq.wrapping_add(1);
                Record {
                    ts: next() % (1 << (round % 64)),
                    seq,
                    cum: next() as u32,
                }
            };
            slot.compare_exchange(slot.load(), record.pack()).unwrap();
        }
        // Every call returns within a bound: a lap for the walk, a few searches per rate.
        let bound = 2 * heap.ring.len() + 64;
        let now = next();
        let _ = heap.acquire_with(&rules, now, next() % 12, &counting(bound));
        let Ok(_) = usage(&heap.words(), &rules, now, &counting(bound));
        let _ = heap.since(next() as u32, &counting(bound));
        if round % 16 == 0 {
            let Ok(_) = retire(&heap.words(), &counting(bound));
        }
    }
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

#[test]
fn what_the_next_slot_says() {
    let mask = 7;
    assert_eq!(Seen::of(5, 6, mask), Seen::Next);
    assert_eq!(Seen::of(5, 6u32.wrapping_sub(8), mask), Seen::PreviousLap);
    assert_eq!(Seen::of(5, 14, mask), Seen::OtherLap, "a later lap");
    assert_eq!(
        Seen::of(5, 6 + 3 * 8, mask),
        Seen::OtherLap,
        "three laps later"
    );
    assert_eq!(
        Seen::of(5, 6u32.wrapping_sub(16), mask),
        Seen::OtherLap,
        "two laps older"
    );
    for other_slot in [5, 7, 13, 6 + 8 + 1, 6u32.wrapping_sub(1)] {
        assert_eq!(
            Seen::of(5, other_slot, mask),
            Seen::OtherSlot,
            "{other_slot}"
        );
    }
    // Across the wrap of the sequence number.
    assert_eq!(Seen::of(u32::MAX, 0, mask), Seen::Next);
    assert_eq!(
        Seen::of(u32::MAX, 0u32.wrapping_sub(8), mask),
        Seen::PreviousLap
    );
    assert_eq!(Seen::of(u32::MAX - 8, 0, mask), Seen::OtherLap);
    // Capacity 2: every other record is in the same slot.
    assert_eq!(Seen::of(4, 5, 1), Seen::Next);
    assert_eq!(Seen::of(4, 3, 1), Seen::PreviousLap);
    assert_eq!(Seen::of(4, 7, 1), Seen::OtherLap);
    assert_eq!(Seen::of(4, 4, 1), Seen::OtherSlot);
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

/// Fills `heap`'s ring with `slot(index)` and sets the hint.
fn fill(heap: &Heap, hint: u64, slot: impl Fn(u32) -> Record) {
    for index in 0..heap.capacity() {
        heap.set(index, slot(index));
    }
    heap.hint.store(hint, Ordering::Relaxed);
}

/// Issue 9, defect 1: a ring whose slots form one consistent chain except that the last slot
/// claims a record a lap later, with hint 0, sent every walk back to the hint 1,000 times:
/// 9-15 s per call with 2^22 slots, whatever the call. On a ring nobody writes meanwhile, a
/// walk now reads each slot at most once (plus the hinted one again): every call on the
/// largest ring reports the garbage within `capacity + 2` shared-memory steps.
#[test]
fn garbage_costs_at_most_a_lap_in_the_largest_ring() {
    // Miri: the 2^22-slot ring would take hours there.
    let capacity = if cfg!(miri) { 1 << 6 } else { MAX_SLOTS as u32 };
    let heap = Heap::with_capacity(capacity as usize);
    let last = capacity - 1;
    let chain = |i: u32| Record {
        ts: u64::from(i) + 1,
        seq: i,
        cum: i,
    };
    // Sequence numbers that step forward by one record or by laps at every slot, all the way
    // round the sequence space: every step looks like commits overtaking the walk, and only
    // the distance travelled tells that it is going round in circles.
    let laps_total = u64::from(u32::MAX / capacity); // 2^32 / capacity - 1
    let jumps = |i: u32| {
        let per_slot = laps_total / u64::from(capacity);
        per_slot + u64::from(u64::from(i) < laps_total % u64::from(capacity))
    };
    let mut circle = vec![0u32; capacity as usize];
    for i in 1..capacity as usize {
        let delta = 1 + jumps(i as u32 - 1) * u64::from(capacity);
        circle[i] = circle[i - 1].wrapping_add(delta as u32);
    }
    type Pattern = Box<dyn Fn(u32) -> Record>;
    let patterns: Vec<(&str, u64, Pattern)> = vec![
        (
            "a chain whose last slot claims the next lap",
            0,
            Box::new(move |i| Record {
                seq: if i == last { i + capacity } else { i },
                ..chain(i)
            }),
        ),
        (
            "laps ahead all the way round",
            0,
            Box::new(move |i| Record {
                seq: circle[i as usize],
                ..chain(i)
            }),
        ),
        (
            "a slot two laps behind",
            0,
            Box::new(move |i| Record {
                seq: if i == 1 {
                    1u32.wrapping_sub(2 * capacity)
                } else {
                    i
                },
                ..chain(i)
            }),
        ),
    ];
    let rules = [rule(4_000_000, 60 * SEC)];
    let bound = capacity as usize + 2;
    for (what, hint, pattern) in patterns {
        fill(&heap, hint, pattern);
        let hook = counting(bound);
        let Ok(outcome) = acquire(&heap.words(), &rules, SEC, 1, &mut Hints::default(), &hook);
        assert!(
            matches!(outcome, Outcome::Corrupt(_)),
            "{what}: {outcome:?}"
        );
        let hook = counting(bound);
        let Ok(result) = usage(&heap.words(), &rules, SEC, &hook);
        assert!(result.is_err(), "{what}: {result:?}");
        let hook = counting(bound);
        let Ok(result) = retire(&heap.words(), &hook);
        assert!(result.is_err(), "{what}: {result:?}");
        let (visited, result) = heap.since(0, &counting(bound));
        assert!(result.is_err() && visited.is_empty(), "{what}: {result:?}");
    }
}

/// A walk that travels 2^31 records (as far as sequence numbers mod 2^32 can order) is
/// corrupt, even if what it finds next looks like the newest record: no consistent ring is
/// overtaken by that many commits within one call.
#[test]
fn a_walk_that_travels_half_the_sequence_space_is_corrupt() {
    let heap = Heap::with_capacity(4);
    // Slot 0 holds record 0; slots 1, 2, 3 records 1 + 2^30, 2 + 2^30, 3 + 2^30 (a jump of
    // 2^28 laps, then steps of one).
    let record = |seq: u32| Record { ts: 1, seq, cum: 0 };
    fill(&heap, 0, |i| record(if i == 0 { 0 } else { i + (1 << 30) }));
    // Before the walk reads slot 0 again, another writer puts record 2^31 there and record
    // 2^31 - 3 (its previous lap) in slot 1: the walk steps to 2^31, 2^31 records from where it
    // started, and slot 1 would say it is the newest.
    let rewrite = || {
        heap.set(0, record(1 << 31));
        heap.set(1, record((1 << 31) - 3));
    };
    // Steps: the hint, slot 0, then slots 1, 2, 3, and slot 0 again (step 5).
    let hook = Inject::new(Some(5), rewrite).limit(16);
    let Ok(result) = usage(&heap.words(), &[], SEC, &hook);
    assert_eq!(result, Err("the ring's sequence numbers are inconsistent"));
    assert_eq!(hook.taken(), 6);
    assert_eq!(hook.overtaken(), 1, "the jump to 1 + 2^30");
    // A lap less, and the same walk finds its newest record.
    fill(&heap, 0, |i| record(if i == 0 { 0 } else { i + (1 << 30) }));
    let rewrite = || {
        heap.set(0, record((1 << 31) - 4));
        heap.set(1, record((1 << 31) - 7));
    };
    let hook = Inject::new(Some(5), rewrite).limit(16);
    let Ok(result) = usage(&heap.words(), &[], SEC, &hook);
    assert_eq!(result.map(|usage| usage.head.seq), Ok((1 << 31) - 4));
}

/// Issue 17: a walk overtaken by a full lap of commits (by callers killed before they raised
/// the hint) goes on from the later record it found: it is neither corrupt nor sent back.
/// The outcome is the model's with those commits first.
#[test]
fn a_walk_overtaken_by_a_full_lap_goes_on_from_the_later_record() {
    let rules = [requests(2, SEC)];
    // A lap of 4 and one more record, each admitted.
    let lap = [10 * SEC, 12 * SEC, 14 * SEC, 16 * SEC, 16 * SEC + SEC / 2];
    for (now, expected) in [(30 * SEC, None), (16 * SEC + SEC * 6 / 10, Some(17 * SEC))] {
        let heap = Heap::new(&rules);
        assert_eq!(heap.capacity(), 4);
        let mut model = Model::default();
        for at in [SEC, 3 * SEC] {
            assert_eq!(heap.acquire(&rules, at, 1), model.acquire(&rules, at, 1));
        }
        let hint = heap.hint.load(Ordering::Relaxed);
        let commit_a_lap = || {
            for &at in &lap {
                heap.admit(&rules, at, 1);
            }
            heap.hint.store(hint, Ordering::Relaxed);
        };
        // Steps: the hint (0), the hinted slot (1), the slot after it (2).
        let hook = Inject::new(Some(2), commit_a_lap).limit(64);
        let outcome = heap.acquire_with(&rules, now, 1, &hook);
        for &at in &lap {
            assert!(matches!(model.acquire(&rules, at, 1), Outcome::Admitted(_)));
        }
        assert_eq!(outcome, model.acquire(&rules, now, 1));
        assert_eq!(hook.overtaken(), 1);
        match expected {
            None => assert!(matches!(outcome, Outcome::Admitted(Record { seq: 8, .. }))),
            Some(retry_at) => assert_eq!(outcome, Outcome::Denied { rate: 0, retry_at }),
        }
    }
}

/// One scenario of [`a_commit_injected_before_any_step_is_ordered_around_it`].
struct Race {
    rules: Vec<Rule>,
    setup: Vec<(u64, u64)>,
    ours: (u64, u64),
    theirs: (u64, u64),
}

impl Race {
    fn heap(&self) -> Heap {
        let heap = Heap::new(&self.rules);
        for &(now, weight) in &self.setup {
            heap.admit(&self.rules, now, weight);
        }
        heap
    }

    /// The model's outcomes (ours, theirs) with `theirs` first or ours first.
    fn model(&self, theirs_first: bool) -> (Outcome, Outcome) {
        let mut model = Model::default();
        for &(now, weight) in &self.setup {
            let _ = model.acquire(&self.rules, now, weight);
        }
        let (ours, theirs) = (self.ours, self.theirs);
        if theirs_first {
            let theirs = model.acquire(&self.rules, theirs.0, theirs.1);
            (model.acquire(&self.rules, ours.0, ours.1), theirs)
        } else {
            let ours = model.acquire(&self.rules, ours.0, ours.1);
            (ours, model.acquire(&self.rules, theirs.0, theirs.1))
        }
    }
}

/// Issue 17: another caller's acquire injected before each shared-memory step of a call in
/// turn. Before the call's linearization point (its compare-exchange, or a denial's re-read
/// of the next slot) the call must decide on the state with the other commit, after it on
/// the state without: so a commit between a denial's check and its re-read gets the call
/// decided again, and so does one before a compare-exchange.
#[test]
fn a_commit_injected_before_any_step_is_ordered_around_it() {
    let races = [
        // Ours is denied by the record at 1 s (retry at 2 s); theirs, at 2.5 s, is admitted
        // and, if first, makes ours a denial until 3.5 s.
        Race {
            rules: vec![requests(1, SEC)],
            setup: vec![(SEC, 1)],
            ours: (SEC + SEC / 2, 1),
            theirs: (2 * SEC + SEC / 2, 1),
        },
        // Both at 10 s, room for one: whoever commits first is admitted.
        Race {
            rules: vec![requests(1, SEC), rule(5, 2 * SEC)],
            setup: vec![(SEC, 1)],
            ours: (10 * SEC, 2),
            theirs: (10 * SEC, 3),
        },
        // Weights: ours denied by the weight rate until the setup's 3 leave; theirs (weight
        // 1, later) fits, and if first moves the retry time.
        Race {
            rules: vec![rule(4, SEC), requests(3, 4 * SEC)],
            setup: vec![(SEC, 3), (SEC + 1, 1)],
            ours: (SEC + 2, 2),
            theirs: (2 * SEC + 1, 2),
        },
        // A ring that wraps (capacity 4): ours admitted either way, as record 5 or 6.
        Race {
            rules: vec![requests(2, SEC)],
            setup: vec![(SEC, 1), (3 * SEC, 1), (5 * SEC, 1), (7 * SEC, 1)],
            ours: (9 * SEC, 1),
            theirs: (9 * SEC, 1),
        },
    ];
    for (index, race) in races.iter().enumerate() {
        let (before, after) = (race.model(true), race.model(false));
        assert_ne!(before, after, "race {index} does not tell the orders apart");
        let dry = counting(1000);
        let heap = race.heap();
        let ours = heap.acquire_with(&race.rules, race.ours.0, race.ours.1, &dry);
        assert_eq!(ours, after.0, "race {index}, nothing injected");
        let steps = dry.taken();
        // The linearization point: a denial's last step (the re-read), or an admission's
        // compare-exchange, which the hint's load and store follow.
        let point = match ours {
            Outcome::Denied { .. } => steps - 1,
            Outcome::Admitted(_) => steps - 3,
            other => panic!("race {index}: {other:?}"),
        };
        for at in 0..=steps {
            let heap = race.heap();
            let theirs = Cell::new(None);
            let inject = || {
                let mut hints = Hints::default();
                let (now, weight) = race.theirs;
                let Ok(outcome) =
                    acquire(&heap.words(), &race.rules, now, weight, &mut hints, &NoHook);
                theirs.set(Some(outcome));
            };
            let hook = Inject::new(Some(at), inject).limit(1000);
            let ours = heap.acquire_with(&race.rules, race.ours.0, race.ours.1, &hook);
            let theirs = theirs
                .get()
                .unwrap_or_else(|| heap.acquire(&race.rules, race.theirs.0, race.theirs.1));
            let expected = if at <= point { before } else { after };
            assert_eq!(
                (ours, theirs),
                expected,
                "race {index}: theirs injected before step {at} of {steps} (linearization \
                 point: step {point})"
            );
        }
    }
}

/// The hint follows the head (and a commit never moves it back from a value ahead).
#[test]
fn the_hint_follows_the_head() {
    let rules = [requests(2, SEC)];
    let heap = Heap::new(&rules);
    for i in 1..=9u64 {
        heap.admit(&rules, i * SEC, 1);
        assert_eq!(heap.hint.load(Ordering::Relaxed), i);
    }
    // A hint from garbage, ahead of the head: walking from it still finds the head, and
    // the commit leaves it (only a hint behind the head is raised).
    heap.hint.store(13, Ordering::Relaxed);
    assert_eq!(heap.admit(&rules, 20 * SEC, 1).seq, 10);
    assert_eq!(heap.hint.load(Ordering::Relaxed), 13);
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

/// `records_since` visits each record after `after` once, with its own weight, oldest
/// first; nothing for an `after` at or ahead of the head (by less than 2^31).
#[test]
fn records_since_visits_what_came_after() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    let records: Vec<Record> = (1..=5u64)
        .map(|i| heap.admit(&rules, 2 * i * SEC, i))
        .collect();
    let (visited, since) = heap.since(2, &NoHook);
    assert_eq!(
        since,
        Ok(Since {
            head: 5,
            retired: false
        })
    );
    assert_eq!(visited, [(records[2], 3), (records[3], 4), (records[4], 5)]);
    for after in [5, 6, 9, 5 + (1 << 31) - 1, 5u32.wrapping_sub(1 << 31)] {
        let (visited, since) = heap.since(after, &NoHook);
        assert_eq!(since.map(|since| since.head), Ok(5), "after {after}");
        assert!(visited.is_empty(), "after {after}: {visited:?}");
    }
    // Far behind (by 2^31 - 1): what the ring holds, the fakes of the new ring included.
    let (visited, _) = heap.since(5u32.wrapping_sub((1 << 31) - 1), &NoHook);
    assert_eq!(visited.len(), 7);
    assert_eq!(visited.last(), Some(&(records[4], 5)));
}

/// Issue 17: a slot overwritten by a later lap while `records_since` walks is skipped, and so
/// is the record after it (its weight needs its predecessor); the rest is visited, and the
/// next call takes the records committed meanwhile.
#[test]
fn records_since_skips_a_slot_overwritten_during_the_walk() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    let records: Vec<Record> = (1..=5u64)
        .map(|i| heap.admit(&rules, 2 * i * SEC, i))
        .collect();
    // Dry run: find_head's steps, then one per slot from record 0 to record 5.
    let dry = counting(100);
    let (visited, _) = heap.since(0, &dry);
    assert_eq!(visited.len(), 5);
    let walk = dry.taken() - 6;
    // Before the walk reads record 2, five more commits overwrite the slots of records 1
    // and 2 (records 9 and 10).
    let later = || {
        for i in 6..=10u64 {
            heap.admit(&rules, 2 * i * SEC, i);
        }
    };
    let hook = Inject::new(Some(walk + 2), later).limit(100);
    let (visited, since) = heap.since(0, &hook);
    assert_eq!(
        since,
        Ok(Since {
            head: 5,
            retired: false
        })
    );
    assert_eq!(visited, [(records[0], 1), (records[3], 4), (records[4], 5)]);
    let (visited, since) = heap.since(5, &NoHook);
    assert_eq!(since.map(|since| since.head), Ok(10));
    assert_eq!(
        visited.iter().map(|(r, w)| (r.seq, *w)).collect::<Vec<_>>(),
        [(6, 6), (7, 7), (8, 8), (9, 9), (10, 10)]
    );
    // A tombstone ends the log: it is not visited, and says so.
    let Ok(retired) = retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true));
    let (visited, since) = heap.since(9, &NoHook);
    assert_eq!(visited.iter().map(|(r, _)| r.seq).collect::<Vec<_>>(), [10]);
    assert_eq!(
        since,
        Ok(Since {
            head: 11,
            retired: true
        })
    );
}

/// A garbage record in the middle of what `records_since` walks (one that belongs to
/// another slot) is reported.
#[test]
fn records_since_reports_a_record_in_the_wrong_slot() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    for i in 1..=5u64 {
        heap.admit(&rules, 2 * i * SEC, i);
    }
    heap.set(
        3,
        Record {
            ts: 6 * SEC,
            seq: 4,
            cum: 6,
        },
    );
    let (_, since) = heap.since(0, &NoHook);
    assert_eq!(since, Err("the ring's sequence numbers are inconsistent"));
}

/// `retire` racing a commit: its compare-exchange fails, and it closes the log after the
/// new record.
#[test]
fn retire_closes_the_log_after_a_commit_that_raced_it() {
    let rules = [requests(5, SEC)];
    let heap = Heap::new(&rules);
    heap.admit(&rules, SEC, 1);
    // Steps: the hint, the hinted slot, the slot after it, then the compare-exchange (3).
    let hook = Inject::new(Some(3), || {
        heap.admit(&rules, 2 * SEC, 1);
    })
    .limit(32);
    let Ok(retired) = retire(&heap.words(), &hook);
    assert_eq!(retired, Ok(true));
    assert!(
        hook.taken() > 4,
        "the compare-exchange failed and was retried"
    );
    let head = Record::unpack(heap.ring[3].load());
    assert_eq!((head.seq, head.ts), (3, Record::RETIRED_TS));
    assert_eq!(heap.acquire(&rules, 3 * SEC, 1), Outcome::Retired);
}

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

/// One caller's acquire on `heap` with its own `hints` (another process, or another handle
/// on the same file), counting its steps.
fn acquire_as(
    heap: &Heap,
    hints: &mut Hints,
    rules: &[Rule],
    now: u64,
    weight: u64,
) -> (Outcome, usize) {
    let hook = counting(10_000);
    let Ok(outcome) = acquire(&heap.words(), rules, now, weight, hints, &hook);
    (outcome, hook.taken())
}

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

/// A fresh acquire at `now` with `rules` on a ring holding `inside` admissions, one per
/// second from 1 s; returns the outcome and the shared-memory steps it took, from fresh
/// window hints (so that a search would start at the head).
fn fresh_call(rules: &[Rule], inside: u64, now: u64) -> (Outcome, usize) {
    let heap = Heap::new(rules);
    for i in 1..=inside {
        heap.admit(rules, i * SEC, 1);
    }
    let hook = counting(10_000);
    let Ok(outcome) = acquire(&heap.words(), rules, now, 1, &mut Hints::default(), &hook);
    (outcome, hook.taken())
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

/// A caller's clock reading, chosen per call independently of the others.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The shared clock moves on by this much (ns), and the call reads it.
    Later(u64),
    /// A reading this much (ns) older than the shared clock: a caller preempted since.
    Stale(u64),
    /// A reading of 0.
    Zero,
    /// A small reading (ns), below most windows.
    Small(u64),
}

impl Clock {
    fn read(self, now: &mut u64) -> u64 {
        match self {
            Clock::Later(by) => {
                *now += by;
                *now
            }
            Clock::Stale(back) => now.saturating_sub(back),
            Clock::Zero => 0,
            Clock::Small(at) => at,
        }
    }
}

/// A hint a call starts with, chosen per call: the shared hint word, or the per-rate
/// window hints.
#[derive(Debug, Clone, Copy)]
enum Hint {
    /// As the previous call left it.
    Carried,
    /// As a process that just opened the file has it (0).
    Fresh,
    /// This many records behind the head, mod `capacity + 2`: every offset inside the ring,
    /// its oldest slot, and just beyond.
    Back(u32),
    /// More than a lap behind the head (by a lap plus this, mod two laps).
    LapStale(u32),
    /// Anything.
    Garbage(u64),
}

impl Hint {
    /// The value for the `index`-th hint, given the head's sequence number and the capacity;
    /// `None` for [`Hint::Carried`].
    fn value(self, head: u32, capacity: u32, index: u32) -> Option<u32> {
        match self {
            Hint::Carried => None,
            Hint::Fresh => Some(0),
            Hint::Back(by) => Some(head.wrapping_sub(by.wrapping_add(index) % (capacity + 2))),
            Hint::LapStale(by) => Some(
                head.wrapping_sub(capacity)
                    .wrapping_sub(by % (2 * capacity))
                    .wrapping_sub(index),
            ),
            Hint::Garbage(bits) => Some((bits.rotate_left(8 * index) as u32) ^ index),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        clock: Clock,
        weight: u64,
        shared: Hint,
        windows: Hint,
    },
    Peek {
        clock: Clock,
        shared: Hint,
    },
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        6 => (0u64..1500).prop_map(|ms| Clock::Later(ms * 1_000_000)),
        2 => (0u64..2000).prop_map(|ms| Clock::Stale(ms * 1_000_000)),
        1 => Just(Clock::Zero),
        1 => (1u64..4_000_000_000).prop_map(Clock::Small),
    ]
}

fn hint() -> impl Strategy<Value = Hint> {
    prop_oneof![
        6 => Just(Hint::Carried),
        1 => Just(Hint::Fresh),
        2 => any::<u32>().prop_map(Hint::Back),
        2 => any::<u32>().prop_map(Hint::LapStale),
        1 => any::<u64>().prop_map(Hint::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (clock(), 0u64..5, hint(), hint()).prop_map(|(clock, weight, shared, windows)| {
            Op::Acquire { clock, weight, shared, windows }
        }),
        1 => (clock(), hint()).prop_map(|(clock, shared)| Op::Peek { clock, shared }),
    ]
}

fn rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
    proptest::collection::vec(
        ((1u64..6), (1u64..4000), any::<bool>()).prop_map(|(limit, ms, requests)| Rule {
            limit,
            window: ms * 1_000_000,
            requests,
        }),
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        // Miri's isolation has no `getcwd`, which proptest's failure file needs.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    /// Every outcome, retry time and usage equals the sequential reference model's, whatever
    /// each call's clock reads (ahead, stale, 0, small) and whatever hints it starts from
    /// (carried, fresh, any offset behind the head, more than a lap stale, garbage), each
    /// chosen per call.
    #[test]
    fn matches_the_reference_model(rules in rules_strategy(), ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 200 })) {
        let heap = Heap::new(&rules);
        let capacity = heap.capacity();
        let mut model = Model::default();
        let mut now = 0;
        for op in ops {
            let head = model.log.len() as u32;
            let shared = match op {
                Op::Acquire { shared, .. } | Op::Peek { shared, .. } => shared,
            };
            if let Some(value) = shared.value(head, capacity, 0) {
                heap.hint.store(u64::from(value), Ordering::Relaxed);
            }
            match op {
                Op::Acquire { clock, weight, windows, .. } => {
                    let at = clock.read(&mut now);
                    {
                        let mut hints = heap.hints.lock().unwrap();
                        for (index, hint) in hints.windows.iter_mut().enumerate() {
                            if let Some(value) = windows.value(head, capacity, index as u32) {
                                *hint = value;
                            }
                        }
                    }
                    prop_assert_eq!(heap.acquire(&rules, at, weight), model.acquire(&rules, at, weight), "at {}", at);
                }
                Op::Peek { clock, .. } => {
                    let at = clock.read(&mut now);
                    let usage = heap.usage(&rules, at);
                    let t = model.stamp(at);
                    prop_assert_eq!(usage.at, t);
                    prop_assert_eq!(usage.head.seq, head);
                    for (i, rule) in rules.iter().enumerate() {
                        prop_assert_eq!(usage.rates[i].used, model.used(rule, t));
                        let oldest = model.inside(rule, t).first().map(|r| r.0.saturating_add(rule.window));
                        prop_assert_eq!(usage.rates[i].next_free_at, oldest);
                    }
                }
            }
        }
    }
}

/// Threads hammer one heap limiter; the committed log, rebuilt from the admissions each
/// thread saw, never exceeds a window, and every admission appears exactly once.
#[test]
#[cfg_attr(miri, ignore)] // long; the loom models cover interleavings
fn concurrent_threads_never_over_admit() {
    let rules = [rule(500, 10_000), requests(2000, 100_000)];
    let heap = std::sync::Arc::new(Heap::new(&rules));
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(SEC));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let heap = heap.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                for i in 0..20_000u64 {
                    let now = clock.fetch_add(1 + (i + t) % 3, Ordering::Relaxed);
                    if let Outcome::Admitted(r) = heap.acquire(&rules, now, 1 + (i % 3)) {
                        admitted.push(r);
                    }
                }
                admitted
            })
        })
        .collect();
    let mut all: Vec<Record> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_by_key(|r| r.seq);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            r.seq,
            i as u32 + 1,
            "every sequence number committed exactly once"
        );
    }
    // Rebuild weights from cumulative sums and check every window.
    let mut log = Vec::new();
    let mut prev = 0u32;
    for r in &all {
        log.push((r.ts, u64::from(r.cum.wrapping_sub(prev))));
        prev = r.cum;
    }
    assert!(
        log.windows(2).all(|w| w[0].0 <= w[1].0),
        "timestamps never decrease"
    );
    for rule in &rules {
        let mut start = 0;
        let mut sum = 0u64;
        for end in 0..log.len() {
            sum += if rule.requests { 1 } else { log[end].1 };
            while log[start].0 + rule.window <= log[end].0 {
                sum -= if rule.requests { 1 } else { log[start].1 };
                start += 1;
            }
            assert!(sum <= rule.limit, "{rule:?} exceeded at record {end}");
        }
    }
    assert!(all.len() > 2000, "only {} admitted", all.len());
}

/// Issue 17, round 4: what `usage` reports for each rate, checked deterministically (the
/// mutation run found `next_free_at` checked only by the property test's random cases).
mod usage_per_rate {
    use super::*;

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
}
