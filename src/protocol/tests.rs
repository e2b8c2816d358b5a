//! The protocol against a sequential reference model, over heap-backed words (runs under Miri).

use proptest::prelude::*;

use super::*;
use crate::layout::capacity_for;

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

    fn acquire(&self, rules: &[Rule], now: u64, weight: u64) -> Outcome {
        let mut hints = *self.hints.lock().unwrap();
        let Ok(outcome) = acquire(&self.words(), rules, now, weight, &mut hints, &NoHook);
        *self.hints.lock().unwrap() = hints;
        outcome
    }

    /// The newest record.
    fn head(&self) -> Record {
        self.usage(&[], 0).head
    }

    fn usage(&self, rules: &[Rule], now: u64) -> Usage {
        let Ok(usage) = usage(&self.words(), rules, now, &NoHook);
        usage.unwrap()
    }
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
        let t = now.max(self.last_ts());
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
                    retry_at = Some(ts + rule.window);
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
        let now = next();
        let _ = heap.acquire(&rules, now, next() % 12);
        let Ok(_) = usage(&heap.words(), &rules, now, &NoHook);
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

#[derive(Debug, Clone)]
enum Op {
    Wait(u64),
    Acquire(u64),
    Stale(u64, u64),
    Peek,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..1500).prop_map(|ms| Op::Wait(ms * 1_000_000)),
        6 => (0u64..5).prop_map(Op::Acquire),
        1 => ((0u64..2000), (0u64..5)).prop_map(|(ms, w)| Op::Stale(ms * 1_000_000, w)),
        1 => Just(Op::Peek),
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

    /// Every outcome, retry time and usage equals the sequential reference model's.
    #[test]
    fn matches_the_reference_model(rules in rules_strategy(), ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 200 })) {
        let heap = Heap::new(&rules);
        let mut model = Model::default();
        let mut now = SEC;
        for op in ops {
            match op {
                Op::Wait(d) => now += d,
                Op::Acquire(w) => prop_assert_eq!(heap.acquire(&rules, now, w), model.acquire(&rules, now, w)),
                Op::Stale(back, w) => {
                    let then = now.saturating_sub(back);
                    prop_assert_eq!(heap.acquire(&rules, then, w), model.acquire(&rules, then, w));
                }
                Op::Peek => {
                    let usage = heap.usage(&rules, now);
                    let t = now.max(model.last_ts());
                    prop_assert_eq!(usage.at, t);
                    for (i, rule) in rules.iter().enumerate() {
                        prop_assert_eq!(usage.rates[i].used, model.used(rule, t));
                        let oldest = model.inside(rule, t).first().map(|r| r.0 + rule.window);
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
