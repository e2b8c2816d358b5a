//! A model: its rates, setup and threads, and its exploration under loom (one run, or one
//! per crash point), with what each exploration saw.

use super::*;

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
    pub(crate) rules: Vec<Rule>,
    pub(crate) capacity: u32,
    setup: Vec<Op>,
    threads: Vec<Vec<Op>>,
    crash: Option<Crash>,
    checks: Vec<Invariant>,
    preemptions: Option<usize>,
    variant: Variant,
    pub(crate) first_seq: u32,
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
    pub(crate) fn explore(&self) -> (Stats, std::thread::Result<()>) {
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
