//! The protocol against a sequential reference model, over heap-backed words (runs under Miri).
//!
//! Besides the model comparisons, deterministic tests use the [`Hook`] the loom models use
//! for crashes: [`Inject`] runs an action (other callers' commits) just before a chosen
//! shared-memory step, which puts a full lap of commits in the middle of a walk, or a commit
//! between a denial's check and its re-read, and counts the steps a call takes.
//!
//! Here: the heap-backed words (`Heap`), the hooks (`Inject`, `counting`), the reference
//! model (`Model`) and the helpers the tests call (`rule`, `requests`, `fill`,
//! `acquire_as`, `fresh_call`). The tests, by concern: `records` (records and words),
//! `admission` (admission and denial), `clocks`, `garbage`, `walks` (and `records_since`),
//! `hints` (what a rate's check costs), `memo`, `usage`, `model` (the property test) and
//! `threads`.

use std::cell::Cell;
use std::convert::Infallible;

use super::*;
use crate::layout::capacity_for;
use crate::sync::{AtomicPair, AtomicU64, Ordering};

mod admission;
mod clocks;
mod garbage;
mod hints;
mod memo;
mod model;
mod records;
mod threads;
mod usage;
mod walks;

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

/// Fills `heap`'s ring with `slot(index)` and sets the hint.
fn fill(heap: &Heap, hint: u64, slot: impl Fn(u32) -> Record) {
    for index in 0..heap.capacity() {
        heap.set(index, slot(index));
    }
    heap.hint.store(hint, Ordering::Relaxed);
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
