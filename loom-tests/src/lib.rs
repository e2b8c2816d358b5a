//! The harness for the loom models of hostlimit's commit protocol.
//!
//! The models drive the very protocol code that production runs (`src/protocol.rs` and its
//! files in `src/protocol/`, reached through the hidden `hostlimit::model` module that exists
//! only under `--cfg loom`), over heap-allocated loom atomics laid out as a new file lays out
//! its words: a hint word, a lap counter and a ring of 128-bit slots holding
//! [`Record::initial`].
//!
//! A [`Scenario`] names the rates, a sequential setup (committed before any thread starts),
//! and per modelled thread a list of acquires, each with its own clock reading: the clock is
//! an input, so a thread may commit with a reading older than the last committed timestamp,
//! as a process preempted between reading the clock and committing does. [`Scenario::run`]
//! explores every interleaving loom allows under its preemption bound and, in every explored
//! execution, rebuilds the committed history from the final ring and the returned outcomes
//! and checks each [`Invariant`]. A crash (a process killed at any instruction) is a thread
//! whose [`CrashHook`] stops it for good before its k-th shared-memory step;
//! [`Scenario::run_every_crash`] runs the model once for every k the thread can reach.
//!
//! Run the suite with `loom-tests/run.sh`.

#![cfg(loom)]

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use hostlimit::model::broken::{self, Variant};
use hostlimit::model::{AtomicPair, Hints, Hook, NoHook, Outcome, Record, Rule, Words, acquire};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` is not set.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// A rate that counts weight.
pub fn weight(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: false,
    }
}

/// A rate that counts requests.
pub fn requests(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: true,
    }
}

/// One acquire: the caller's clock reading and the weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The clock reading the caller passes (nanoseconds of the file's clock).
    pub now: u64,
    /// The weight asked for.
    pub weight: u64,
}

/// An acquire of `weight` with the clock reading `now`.
pub fn op(now: u64, weight: u64) -> Op {
    Op { now, weight }
}

/// The invariants checked in every explored execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// (1) For every rate, the admissions never hold more than the limit inside any window
    /// `(t - window, t]` of recorded timestamps.
    NoOverAdmission,
    /// (2) Each acquire is visible in every rate or in none: every admitted acquire owns
    /// exactly one record of the history, whose weight (its cumulative sum minus the previous
    /// record's) is exactly the acquire's weight, so every weight rate is charged that weight
    /// and every request rate counts it once; a denied acquire owns none; a crashed acquire
    /// owns one such record or none.
    AllOrNothing,
    /// (3) A denial is the reference model's answer (same rate, same retry time) on some
    /// prefix of the committed history that is consistent with the denial's position among
    /// its own thread's operations.
    NoFalseDenial,
    /// (4) The admitted acquires are exactly the committed records: sequence numbers unique
    /// and contiguous, every record in the final ring is the one its acquire was told (or the
    /// crashed acquire's), and no admitted record that should still be in the ring is gone.
    NoLostCommit,
    /// (5) Every outcome is the reference model's: each record is what the sequential model
    /// admits on the history before it (timestamp `max(now, previous)`, sequence, cumulative
    /// weight), and no acquire returns `Corrupt`, `Retired` or a wrong `NeverFits`/`Free`.
    Reference,
}

impl Invariant {
    /// All of them, in the order they are checked.
    pub const ALL: [Invariant; 5] = [
        Invariant::NoLostCommit,
        Invariant::AllOrNothing,
        Invariant::NoOverAdmission,
        Invariant::NoFalseDenial,
        Invariant::Reference,
    ];

    /// The name a violation's panic message carries.
    pub fn label(self) -> &'static str {
        match self {
            Invariant::NoOverAdmission => "invariant (1) no over-admission",
            Invariant::AllOrNothing => "invariant (2) all or nothing",
            Invariant::NoFalseDenial => "invariant (3) no false denial",
            Invariant::NoLostCommit => "invariant (4) no lost or duplicated commit",
            Invariant::Reference => "invariant (5) every outcome is the reference model's",
        }
    }
}

/// Why a crashed thread stopped: it was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crashed;

/// A hook that counts the caller's shared-memory steps and stops it for good before step
/// `stop_at` (counted from 0 over all of the thread's acquires): a process killed there.
#[derive(Debug)]
pub struct CrashHook {
    taken: Cell<usize>,
    stop_at: Option<usize>,
    overtaken: Cell<usize>,
}

impl CrashHook {
    /// A hook that stops its thread before step `stop_at`, or never.
    pub fn new(stop_at: Option<usize>) -> Self {
        CrashHook {
            taken: Cell::new(0),
            stop_at,
            overtaken: Cell::new(0),
        }
    }

    /// Steps taken so far.
    pub fn taken(&self) -> usize {
        self.taken.get()
    }

    /// Walks for the newest record that a lap of commits overtook so far.
    pub fn overtaken(&self) -> usize {
        self.overtaken.get()
    }
}

impl Hook for CrashHook {
    type Stop = Crashed;

    fn step(&self) -> Result<(), Crashed> {
        if Some(self.taken.get()) == self.stop_at {
            return Err(Crashed);
        }
        self.taken.set(self.taken.get() + 1);
        Ok(())
    }

    fn overtaken(&self) {
        self.overtaken.set(self.overtaken.get() + 1);
    }
}

/// How one acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It returned.
    Returned(Outcome),
    /// Its thread was killed during it.
    Crashed,
}

/// The words of one limiter, on the heap, as a new file holds them.
struct Heap {
    hint: AtomicU64,
    laps: AtomicU64,
    ring: Vec<AtomicPair>,
}

impl Heap {
    /// A new file's words when `first_seq` is 0; otherwise the ring as if record
    /// `first_seq` were the newest, it and the records before it with timestamp and weight 0.
    fn new(capacity: u32, first_seq: u32) -> Heap {
        let ring = (0..capacity).map(|index| {
            if first_seq == 0 {
                return Record::initial(index, capacity);
            }
            // The record of this slot among first_seq - capacity + 1 ..= first_seq.
            let back = first_seq.wrapping_sub(index) % capacity;
            Record {
                ts: 0,
                seq: first_seq.wrapping_sub(back),
                cum: 0,
            }
        });
        Heap {
            hint: AtomicU64::new(u64::from(first_seq)),
            laps: AtomicU64::new(0),
            ring: ring.map(|record| AtomicPair::new(record.pack())).collect(),
        }
    }

    fn words(&self) -> Words<'_> {
        Words::new(&self.hint, &self.laps, &self.ring).expect("a power-of-two ring")
    }
}

/// The ring capacity production gives these rules: `layout::capacity_for`, restated here
/// because `layout` is not part of the loom build. Every record inside the longest window,
/// plus the newest record before it, plus the head's slot, rounded up to a power of two.
pub fn capacity_for(rules: &[Rule]) -> u32 {
    let longest = rules
        .iter()
        .map(|r| r.window)
        .max()
        .expect("at least one rate");
    let any_requests = rules.iter().any(|r| r.requests);
    let bound = rules
        .iter()
        .filter(|r| r.requests || !any_requests)
        .map(|r| r.limit * longest.div_ceil(r.window))
        .min()
        .expect("some rate bounds the records");
    u32::try_from(bound + 2)
        .expect("a small model")
        .next_power_of_two()
}

/// A crash point: thread `thread` (index into [`Scenario::thread`]'s order) stops before its
/// shared-memory step `step`.
#[derive(Clone, Copy, Debug)]
struct Crash {
    thread: usize,
    step: usize,
}

/// One loom model: rates, a sequential setup, concurrent threads of acquires.
#[derive(Clone, Debug)]
pub struct Scenario {
    name: &'static str,
    rules: Vec<Rule>,
    capacity: u32,
    setup: Vec<Op>,
    threads: Vec<Vec<Op>>,
    crash: Option<Crash>,
    checks: Vec<Invariant>,
    preemptions: Option<usize>,
    variant: Variant,
    first_seq: u32,
}

/// What exploring one model saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Executions explored.
    pub executions: usize,
    /// Executions in which the crashing thread really stopped.
    pub crashed: usize,
    /// Of those, executions in which the killed acquire had already committed.
    pub crashed_committed: usize,
    /// Distinct outcome patterns (per thread, in order: `A<seq>`, `D<rate>`, `X` for a crash).
    pub patterns: BTreeSet<String>,
    /// Executions in which a lap of commits overtook some walk for the newest record.
    pub overtaken: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} executions, {} distinct outcome patterns",
            self.executions,
            self.patterns.len()
        )?;
        if self.crashed > 0 {
            write!(
                f,
                ", {} killed ({} after committing)",
                self.crashed, self.crashed_committed
            )?;
        }
        if self.overtaken > 0 {
            write!(f, ", {} with a walk overtaken by a lap", self.overtaken)?;
        }
        Ok(())
    }
}

/// Totals over every crash point of one model.
#[derive(Debug, Default)]
pub struct CrashStats {
    /// Crash points: the thread was killed before step 0, 1, ..., `points - 1`.
    pub points: usize,
    /// Executions over all crash points.
    pub executions: usize,
    /// Executions in which the thread was killed.
    pub killed: usize,
    /// Of those, executions in which its acquire had committed.
    pub killed_after_commit: usize,
}

impl fmt::Display for CrashStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} crash points, {} executions, {} killed ({} after committing)",
            self.points, self.executions, self.killed, self.killed_after_commit
        )
    }
}

#[derive(Default)]
struct Counters {
    executions: AtomicUsize,
    crashed: AtomicUsize,
    crashed_committed: AtomicUsize,
    overtaken: AtomicUsize,
    patterns: StdMutex<BTreeSet<String>>,
}

/// Switches a broken variant on for the models this OS thread runs, and off again when
/// dropped (also while a caught panic unwinds).
struct VariantGuard;

impl VariantGuard {
    fn set(variant: Variant) -> VariantGuard {
        broken::set(variant);
        VariantGuard
    }
}

impl Drop for VariantGuard {
    fn drop(&mut self) {
        broken::set(Variant::None);
    }
}

impl Scenario {
    /// A model named `name` over `rules`, with the ring production would size for them.
    pub fn new(name: &'static str, rules: &[Rule]) -> Scenario {
        Scenario {
            name,
            rules: rules.to_vec(),
            capacity: capacity_for(rules),
            setup: Vec::new(),
            threads: Vec::new(),
            crash: None,
            checks: Invariant::ALL.to_vec(),
            preemptions: None,
            variant: Variant::None,
            first_seq: 0,
        }
    }

    /// Starts from a ring whose newest record is number `seq` (timestamp 0, weight 0), as
    /// after `seq` admissions long ago, so that the sequence number can wrap (`u32::MAX - 1`)
    /// and the lap counter step runs. Sequence numbers in checks and reports are relative to
    /// it.
    pub fn first_seq(mut self, seq: u32) -> Scenario {
        self.first_seq = seq;
        self
    }

    /// Acquires committed one after another before any thread starts (all must be admitted).
    pub fn setup(mut self, ops: &[Op]) -> Scenario {
        self.setup = ops.to_vec();
        self
    }

    /// Adds a modelled thread that runs `ops` in order.
    pub fn thread(mut self, ops: &[Op]) -> Scenario {
        self.threads.push(ops.to_vec());
        self
    }

    /// Kills thread `thread` (0-based, in the order [`thread`](Scenario::thread) added them;
    /// reports number modelled threads from 1, the setup being 0) before its shared-memory
    /// step `step` (0-based, counted over all of its acquires).
    pub fn crash(mut self, thread: usize, step: usize) -> Scenario {
        assert!(thread < self.threads.len(), "no thread {thread}");
        self.crash = Some(Crash { thread, step });
        self
    }

    /// Checks only `invariant` (to show that it alone catches a broken variant).
    pub fn only(mut self, invariant: Invariant) -> Scenario {
        self.checks = vec![invariant];
        self
    }

    /// Explores with this preemption bound whatever `LOOM_MAX_PREEMPTIONS` says.
    pub fn preemptions(mut self, bound: usize) -> Scenario {
        self.preemptions = Some(bound);
        self
    }

    /// Runs the protocol with a deliberately broken variant switched on.
    pub fn variant(mut self, variant: Variant) -> Scenario {
        self.variant = variant;
        self
    }

    /// The model's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The ring capacity the model uses.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The preemption bound this model explores with.
    pub fn bound(&self) -> usize {
        self.preemptions.unwrap_or_else(|| {
            std::env::var("LOOM_MAX_PREEMPTIONS")
                .map(|v| v.parse().expect("LOOM_MAX_PREEMPTIONS is a number"))
                .unwrap_or(DEFAULT_PREEMPTIONS)
        })
    }

    /// Explores every execution within the bound; panics with the violated invariant's
    /// [`label`](Invariant::label) and the execution if any check fails.
    pub fn run(&self) -> Stats {
        let (stats, outcome) = self.explore();
        if let Err(panic) = outcome {
            eprintln!(
                "model `{}` failed in execution {} (bound {})",
                self.name,
                stats.executions,
                self.bound()
            );
            std::panic::resume_unwind(panic);
        }
        stats
    }

    /// Explores the model, catching a failure.
    fn explore(&self) -> (Stats, std::thread::Result<()>) {
        let counters = std::sync::Arc::new(Counters::default());
        let outcome = {
            let scenario = std::sync::Arc::new(self.clone());
            let counters = counters.clone();
            let mut builder = loom::model::Builder::new();
            builder.preemption_bound = Some(self.bound());
            let _guard = VariantGuard::set(self.variant);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                builder.check(move || scenario.execute(&counters));
            }))
        };
        let stats = Stats {
            executions: counters.executions.load(StdOrdering::Relaxed),
            crashed: counters.crashed.load(StdOrdering::Relaxed),
            crashed_committed: counters.crashed_committed.load(StdOrdering::Relaxed),
            patterns: std::mem::take(&mut counters.patterns.lock().unwrap()),
            overtaken: counters.overtaken.load(StdOrdering::Relaxed),
        };
        (stats, outcome)
    }

    /// Runs the model once for every crash point of thread `thread`: k = 0, 1, ... until the
    /// thread finishes before step k in every explored execution, so that every step the
    /// protocol can take, in any interleaving explored, has been a crash point. Checks that
    /// the killed acquire was seen both before and after its commit. Returns the totals.
    pub fn run_every_crash(&self, thread: usize) -> CrashStats {
        let mut total = CrashStats::default();
        for step in 0.. {
            assert!(
                step < 1_000,
                "thread {thread} of `{}` never finishes",
                self.name
            );
            let stats = self.clone().crash(thread, step).run();
            assert!(stats.executions > 1, "crash point {step}: only {stats}");
            total.executions += stats.executions;
            total.killed += stats.crashed;
            total.killed_after_commit += stats.crashed_committed;
            if stats.crashed == 0 {
                total.points = step;
                break;
            }
        }
        assert!(
            total.killed_after_commit > 0 && total.killed_after_commit < total.killed,
            "the killed acquire should be seen both before and after committing: {total:?}"
        );
        total
    }

    /// One execution (the body loom explores).
    fn execute(&self, counters: &Counters) {
        counters.executions.fetch_add(1, StdOrdering::Relaxed);
        let heap = Arc::new(Heap::new(self.capacity, self.first_seq));
        let mut calls: Vec<Call> = Vec::new();
        {
            let words = heap.words();
            let mut hints = Hints::default();
            for (index, &op) in self.setup.iter().enumerate() {
                let Ok(outcome) =
                    acquire(&words, &self.rules, op.now, op.weight, &mut hints, &NoHook);
                assert!(
                    matches!(outcome, Outcome::Admitted(_)),
                    "setup acquire {index} of `{}` was not admitted: {outcome:?}",
                    self.name
                );
                calls.push(Call {
                    thread: 0,
                    index,
                    op,
                    ended: Ended::Returned(relative(outcome, self.first_seq)),
                });
            }
        }
        let handles: Vec<_> = self
            .threads
            .iter()
            .enumerate()
            .map(|(thread, ops)| {
                let heap = heap.clone();
                let rules = self.rules.clone();
                let ops = ops.clone();
                let first_seq = self.first_seq;
                let stop_at = self
                    .crash
                    .filter(|crash| crash.thread == thread)
                    .map(|crash| crash.step);
                loom::thread::spawn(move || {
                    let words = heap.words();
                    let hook = CrashHook::new(stop_at);
                    let mut hints = Hints::default();
                    let mut ended = Vec::new();
                    for op in ops {
                        match acquire(&words, &rules, op.now, op.weight, &mut hints, &hook) {
                            Ok(outcome) => {
                                ended.push((op, Ended::Returned(relative(outcome, first_seq))));
                            }
                            Err(Crashed) => {
                                ended.push((op, Ended::Crashed));
                                break;
                            }
                        }
                    }
                    (ended, hook.overtaken())
                })
            })
            .collect();
        let mut overtaken = 0;
        for (thread, handle) in handles.into_iter().enumerate() {
            let (ended, walks) = handle.join().expect("a modelled thread panicked");
            overtaken += walks;
            for (index, (op, ended)) in ended.into_iter().enumerate() {
                calls.push(Call {
                    thread: thread + 1,
                    index,
                    op,
                    ended,
                });
            }
        }
        let ring: Vec<Record> = heap
            .ring
            .iter()
            .map(|slot| relative_record(Record::unpack(slot.load()), self.first_seq))
            .collect();

        if overtaken > 0 {
            counters.overtaken.fetch_add(1, StdOrdering::Relaxed);
        }
        let crashed = calls.iter().any(|call| call.ended == Ended::Crashed);
        if crashed {
            counters.crashed.fetch_add(1, StdOrdering::Relaxed);
        }
        counters
            .patterns
            .lock()
            .unwrap()
            .insert(pattern(&calls, self.threads.len()));

        let execution = Execution {
            scenario: self,
            calls: &calls,
            ring: &ring,
            laps: heap.laps.load(Ordering::Relaxed),
        };
        if let Some(crashed) = execution.crashed_call()
            && execution.history().owner.contains(&Some(crashed))
        {
            counters
                .crashed_committed
                .fetch_add(1, StdOrdering::Relaxed);
        }
        for &invariant in Invariant::ALL.iter() {
            if !self.checks.contains(&invariant) {
                continue;
            }
            if let Err(why) = execution.check(invariant) {
                panic!(
                    "{}: {why}\n  in model `{}` (variant {:?}, bound {}), execution {}:\n{execution}",
                    invariant.label(),
                    self.name,
                    self.variant,
                    self.bound(),
                    counters.executions.load(StdOrdering::Relaxed),
                );
            }
        }
    }
}

/// `record` with its sequence number counted from `first_seq`.
fn relative_record(record: Record, first_seq: u32) -> Record {
    Record {
        seq: record.seq.wrapping_sub(first_seq),
        ..record
    }
}

/// `outcome` with sequence numbers counted from `first_seq`.
fn relative(outcome: Outcome, first_seq: u32) -> Outcome {
    match outcome {
        Outcome::Admitted(record) => Outcome::Admitted(relative_record(record, first_seq)),
        other => other,
    }
}

/// One acquire of one execution. Thread 0 is the setup; modelled threads are 1, 2, ...
#[derive(Debug, Clone, Copy)]
struct Call {
    thread: usize,
    index: usize,
    op: Op,
    ended: Ended,
}

impl Call {
    fn admitted(&self) -> Option<Record> {
        match self.ended {
            Ended::Returned(Outcome::Admitted(record)) => Some(record),
            _ => None,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.thread == 0 {
            "setup".to_string()
        } else {
            format!("thread {}", self.thread)
        };
        write!(
            f,
            "{who} acquire {} (now {}, weight {})",
            self.index, self.op.now, self.op.weight
        )
    }
}

fn pattern(calls: &[Call], threads: usize) -> String {
    let mut out = String::new();
    for thread in 1..=threads {
        out.push('[');
        for call in calls.iter().filter(|call| call.thread == thread) {
            match call.ended {
                Ended::Returned(Outcome::Admitted(record)) => write!(out, "A{}", record.seq),
                Ended::Returned(Outcome::Denied { rate, .. }) => write!(out, "D{rate}"),
                Ended::Returned(other) => write!(out, "{other:?}"),
                Ended::Crashed => write!(out, "X"),
            }
            .unwrap();
            out.push(' ');
        }
        out.push(']');
    }
    out
}

/// The sequential sliding-window log the protocol must be indistinguishable from (the same
/// model as `src/protocol/tests.rs`).
#[derive(Debug, Default, Clone)]
pub struct Reference {
    /// `(recorded timestamp, weight)` of every admission, oldest first.
    pub log: Vec<(u64, u64)>,
}

impl Reference {
    fn units(rule: &Rule, weight: u64) -> u64 {
        if rule.requests { 1 } else { weight }
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
        self.inside(rule, t)
            .iter()
            .map(|&(_, w)| Reference::units(rule, w))
            .sum()
    }

    /// What an acquire of `weight` at `now` gets on this log (the log is not changed).
    pub fn answer(&self, rules: &[Rule], now: u64, weight: u64) -> Outcome {
        if let Some(rate) = rules
            .iter()
            .position(|r| Reference::units(r, weight) > r.limit)
        {
            return Outcome::NeverFits { rate };
        }
        if rules.iter().all(|r| Reference::units(r, weight) == 0) {
            return Outcome::Free;
        }
        // As `Record::stamp`: 0 is the sentinel's time, `u64::MAX` the tombstone's.
        let t = now
            .clamp(Record::FIRST_TS, Record::LAST_TS)
            .max(self.log.last().map_or(0, |r| r.0));
        let mut refusal: Option<(usize, u64)> = None;
        for (index, rule) in rules.iter().enumerate() {
            let units = Reference::units(rule, weight);
            if units == 0 || self.used(rule, t) + units <= rule.limit {
                continue;
            }
            // Earliest expiry after which the request fits: drop records oldest first.
            let mut used = self.used(rule, t);
            let mut retry_at = None;
            for (ts, w) in self.inside(rule, t) {
                used -= Reference::units(rule, w);
                if used + units <= rule.limit {
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
        Outcome::Admitted(Record {
            ts: t,
            seq: self.log.len() as u32 + 1,
            cum: self
                .log
                .iter()
                .map(|r| r.1 as u32)
                .fold(weight as u32, u32::wrapping_add),
        })
    }
}

/// One finished execution, ready to be checked.
struct Execution<'a> {
    scenario: &'a Scenario,
    calls: &'a [Call],
    /// The final ring, sequence numbers relative to [`Scenario::first_seq`].
    ring: &'a [Record],
    /// The final lap counter.
    laps: u64,
}

/// The committed history rebuilt from the final ring and the returned outcomes.
struct History {
    /// `records[k]` is record `k` (index 0 is the sentinel); `None` where nothing tells.
    records: Vec<Option<Record>>,
    /// `owner[k]`: the call whose record `k` is (index into the calls).
    owner: Vec<Option<usize>>,
}

impl Execution<'_> {
    /// The records in the final ring that are real (not the sentinel, not a fake previous-lap
    /// record of the new ring), by sequence number.
    fn ring_records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .ring
            .iter()
            .copied()
            .filter(|r| r.seq != 0 && (r.seq as i32) > 0)
            .collect();
        records.sort_by_key(|r| r.seq);
        records
    }

    fn crashed_call(&self) -> Option<usize> {
        self.calls.iter().position(|c| c.ended == Ended::Crashed)
    }

    /// The newest sequence number anyone knows of.
    fn newest(&self) -> u32 {
        let in_ring = self.ring_records().last().map_or(0, |r| r.seq);
        let told = self
            .calls
            .iter()
            .filter_map(Call::admitted)
            .map(|r| r.seq)
            .max()
            .unwrap_or(0);
        in_ring.max(told)
    }

    fn history(&self) -> History {
        let n = self.newest() as usize;
        let mut records = vec![None; n + 1];
        records[0] = Some(Record::SENTINEL);
        for call in self.calls.iter().filter_map(Call::admitted) {
            records[call.seq as usize] = Some(call);
        }
        // The ring wins: it is what later acquires read.
        for record in self.ring_records() {
            records[record.seq as usize] = Some(record);
        }
        let mut owner = vec![None; n + 1];
        for (k, record) in records.iter().enumerate().skip(1) {
            let Some(record) = record else { continue };
            owner[k] = self
                .calls
                .iter()
                .position(|c| c.admitted() == Some(*record))
                .or_else(|| {
                    // Not told to anyone: the crashed acquire's, if still in the ring.
                    let in_ring = self.ring_records().contains(record);
                    self.crashed_call().filter(|_| in_ring)
                });
        }
        History { records, owner }
    }

    fn check(&self, invariant: Invariant) -> Result<(), String> {
        match invariant {
            Invariant::NoOverAdmission => self.no_over_admission(),
            Invariant::AllOrNothing => self.all_or_nothing(),
            Invariant::NoFalseDenial => self.no_false_denial(),
            Invariant::NoLostCommit => self.no_lost_commit(),
            Invariant::Reference => self.reference(),
        }
    }

    /// (1) Over the admissions (every acquire told `Admitted`, plus the crashed acquire's
    /// record if it committed), no window of any rate holds more than the limit.
    fn no_over_admission(&self) -> Result<(), String> {
        let history = self.history();
        let mut admissions: Vec<(u64, u64, usize)> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.admitted().map(|r| (r.ts, c.op.weight, i)))
            .collect();
        if let Some(crashed) = self.crashed_call() {
            for (k, owner) in history.owner.iter().enumerate() {
                if *owner == Some(crashed) {
                    let record = history.records[k].unwrap();
                    admissions.push((record.ts, self.calls[crashed].op.weight, crashed));
                }
            }
        }
        for (index, rule) in self.scenario.rules.iter().enumerate() {
            for &(t, _, _) in &admissions {
                let inside: Vec<_> = admissions
                    .iter()
                    .filter(|&&(ts, _, _)| ts > t.saturating_sub(rule.window) && ts <= t)
                    .collect();
                let used: u64 = inside
                    .iter()
                    .map(|&&(_, w, _)| Reference::units(rule, w))
                    .sum();
                if used > rule.limit {
                    let who: Vec<String> = inside
                        .iter()
                        .map(|&&(ts, _, i)| format!("{} at {ts}", self.calls[i]))
                        .collect();
                    return Err(format!(
                        "rate {index} ({rule:?}) holds {used} > {} in ({}, {t}]: {}",
                        rule.limit,
                        t.saturating_sub(rule.window),
                        who.join("; ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// (2) Every admitted acquire owns one record whose weight is its weight; a crashed one
    /// owns at most one, with its full weight.
    fn all_or_nothing(&self) -> Result<(), String> {
        let history = self.history();
        for (i, call) in self.calls.iter().enumerate() {
            let owned: Vec<usize> = (1..history.owner.len())
                .filter(|&k| history.owner[k] == Some(i))
                .collect();
            let admitted = call.admitted().is_some();
            if admitted && owned.len() != 1 {
                return Err(format!(
                    "{call} was admitted but the history holds {} records of it: it is \
                     visible in no rate",
                    owned.len()
                ));
            }
            if !admitted && call.ended != Ended::Crashed && !owned.is_empty() {
                return Err(format!(
                    "{call} was not admitted but owns records {owned:?}"
                ));
            }
            if call.ended == Ended::Crashed && owned.len() > 1 {
                return Err(format!("{call} crashed but owns records {owned:?}"));
            }
            for k in owned {
                let (Some(record), Some(previous)) = (history.records[k], history.records[k - 1])
                else {
                    continue;
                };
                let charged = record.cum.wrapping_sub(previous.cum);
                if u64::from(charged) != call.op.weight {
                    return Err(format!(
                        "{call} is record {k}, counted once by the request rates but charged \
                         {charged} (not {}) to the weight rates",
                        call.op.weight
                    ));
                }
            }
        }
        Ok(())
    }

    /// (3) Every denial is the reference model's answer on a prefix of the history that its
    /// thread's own admissions allow.
    fn no_false_denial(&self) -> Result<(), String> {
        let history = self.history();
        let n = history.records.len() - 1;
        let setup = self.calls.iter().filter(|c| c.thread == 0).count();
        'calls: for call in self.calls {
            let Ended::Returned(denial @ Outcome::Denied { .. }) = call.ended else {
                continue;
            };
            let own = |before: bool| {
                self.calls
                    .iter()
                    .filter(move |c| c.thread == call.thread && (c.index < call.index) == before)
                    .filter(|c| c.index != call.index)
                    .filter_map(Call::admitted)
                    .map(|r| r.seq as usize)
            };
            let low = own(true).max().unwrap_or(0).max(setup);
            let high = own(false).min().map_or(n, |seq| seq - 1);
            let mut answers = Vec::new();
            for p in low..=high.min(n) {
                let Some(reference) = self.prefix(&history, p) else {
                    continue;
                };
                let answer = reference.answer(&self.scenario.rules, call.op.now, call.op.weight);
                if answer == denial {
                    continue 'calls;
                }
                answers.push(format!("{p}: {answer:?}"));
            }
            return Err(format!(
                "{call} returned {denial:?}, but the reference model answers, on the \
                 prefixes its position allows: [{}]",
                answers.join(", ")
            ));
        }
        Ok(())
    }

    /// The reference model holding records `1..=p` of the history, if they are all known.
    fn prefix(&self, history: &History, p: usize) -> Option<Reference> {
        let mut log = Vec::new();
        for k in 1..=p {
            let record = history.records[k]?;
            let owner = history.owner[k]?;
            log.push((record.ts, self.calls[owner].op.weight));
        }
        Some(Reference { log })
    }

    /// (4) Sequence numbers unique and contiguous; the final ring holds exactly what the
    /// acquires were told.
    fn no_lost_commit(&self) -> Result<(), String> {
        let n = self.newest();
        let capacity = self.scenario.capacity;
        let mut told: Vec<Option<(usize, Record)>> = vec![None; n as usize + 1];
        for (i, call) in self.calls.iter().enumerate() {
            let Some(record) = call.admitted() else {
                continue;
            };
            if record.seq == 0 {
                return Err(format!("{call} was told record 0, the sentinel"));
            }
            if let Some((other, _)) = told[record.seq as usize] {
                return Err(format!(
                    "record {} was committed twice: by {} and by {call}",
                    record.seq, self.calls[other]
                ));
            }
            told[record.seq as usize] = Some((i, record));
        }
        let ring = self.ring_records();
        let mut unclaimed = Vec::new();
        for record in &ring {
            match told[record.seq as usize] {
                Some((_, mine)) if mine == *record => {}
                Some((i, mine)) => {
                    return Err(format!(
                        "{} was told {mine:?} but the log holds {record:?}: its commit was lost",
                        self.calls[i]
                    ));
                }
                None => unclaimed.push(*record),
            }
        }
        let crashed = self.crashed_call();
        if unclaimed.len() > usize::from(crashed.is_some()) {
            return Err(format!(
                "the log holds records that no acquire was told: {unclaimed:?}"
            ));
        }
        for k in 1..=n {
            let in_ring = ring.iter().any(|r| r.seq == k);
            if told[k as usize].is_none() && !in_ring {
                return Err(format!(
                    "record {k} is neither in the log nor told to any acquire"
                ));
            }
            // Records n - capacity + 1 ..= n must still be in the ring.
            if k + capacity > n && !in_ring {
                let (i, mine) = told[k as usize].unwrap();
                return Err(format!(
                    "{} was told {mine:?}, but the ring no longer holds it while it should: \
                     its commit was lost",
                    self.calls[i]
                ));
            }
        }
        // The 64-bit total counts a lap each time the sequence number passes 0. A thread
        // killed between committing that record and counting the lap leaves it one short
        // (documented on `Words::admitted`).
        let first = self.scenario.first_seq;
        let wrapping = (1..=n).find(|&k| first.wrapping_add(k) == 0);
        let expected = u64::from(wrapping.is_some());
        let owner_killed = wrapping.is_some_and(|k| {
            let owner = self.history().owner[k as usize];
            owner.is_some() && owner == self.crashed_call()
        });
        if self.laps != expected && !(owner_killed && self.laps + 1 == expected) {
            return Err(format!(
                "the lap counter is {} after {n} records from {first}: expected {expected}",
                self.laps
            ));
        }
        Ok(())
    }

    /// (5) Every record is the reference model's admission on the history before it, and
    /// every other outcome is one the reference model can give.
    fn reference(&self) -> Result<(), String> {
        let history = self.history();
        for k in 1..history.records.len() {
            let (Some(record), Some(owner)) = (history.records[k], history.owner[k]) else {
                return Err(format!("record {k} is unknown or owned by no acquire"));
            };
            let call = &self.calls[owner];
            let Some(reference) = self.prefix(&history, k - 1) else {
                continue;
            };
            let answer = reference.answer(&self.scenario.rules, call.op.now, call.op.weight);
            if answer != Outcome::Admitted(record) {
                return Err(format!(
                    "{call} committed {record:?}; on the history before it the reference \
                     model answers {answer:?}"
                ));
            }
        }
        for call in self.calls {
            match call.ended {
                Ended::Crashed | Ended::Returned(Outcome::Admitted(_) | Outcome::Denied { .. }) => {
                }
                Ended::Returned(other) => {
                    let answer = Reference::default().answer(
                        &self.scenario.rules,
                        call.op.now,
                        call.op.weight,
                    );
                    if answer != other {
                        return Err(format!(
                            "{call} returned {other:?}; the reference model answers {answer:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Execution<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  rules: {:?}", self.scenario.rules)?;
        if self.scenario.first_seq != 0 {
            writeln!(
                f,
                "  sequence numbers relative to {}",
                self.scenario.first_seq
            )?;
        }
        for call in self.calls {
            writeln!(f, "  {call} -> {:?}", call.ended)?;
        }
        write!(f, "  final ring:")?;
        for (slot, record) in self.ring.iter().enumerate() {
            write!(f, "\n    slot {slot}: {record:?}")?;
        }
        Ok(())
    }
}

std::thread_local! {
    /// Set while this OS thread runs a model that is expected to fail.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` without printing the panics it is expected to raise (loom runs every modelled
/// thread on the calling OS thread, so a thread-local flag covers them all); panics
/// elsewhere still print.
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
    struct Loud;
    impl Drop for Loud {
        fn drop(&mut self) {
            QUIET.with(|quiet| quiet.set(false));
        }
    }
    QUIET.with(|quiet| quiet.set(true));
    let _loud = Loud;
    f()
}

/// The text of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// A deliberately broken variant caught by one invariant.
#[derive(Debug)]
pub struct Caught {
    /// The failing execution (1-based: how many executions loom explored to find it).
    pub at_execution: usize,
    /// The clean model's statistics (same scenario, protocol intact, same bound).
    pub clean: Stats,
    /// The violation's message.
    pub message: String,
}

/// Runs `scenario` checking only `invariant`: first with the protocol intact (it must pass
/// and explore more than one execution), then with `variant` switched on (it must fail with
/// `invariant`'s message). `Err` says what happened otherwise.
pub fn catches(
    scenario: &Scenario,
    variant: Variant,
    invariant: Invariant,
) -> Result<Caught, String> {
    let (clean, outcome) = scenario.clone().only(invariant).explore();
    if let Err(payload) = outcome {
        return Err(format!(
            "the clean model fails: {}",
            panic_message(payload.as_ref())
        ));
    }
    if clean.executions <= 1 {
        return Err(format!("the clean model explored only {clean}"));
    }
    let (stats, outcome) = quietly(|| scenario.clone().only(invariant).variant(variant).explore());
    match outcome {
        Ok(()) => Err(format!(
            "{variant:?} was not caught by {} ({stats})",
            invariant.label()
        )),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            if !message.contains(invariant.label()) {
                return Err(format!("{variant:?} failed otherwise: {message}"));
            }
            Ok(Caught {
                at_execution: stats.executions,
                clean,
                message,
            })
        }
    }
}
