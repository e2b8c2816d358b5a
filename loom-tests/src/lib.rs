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
//! Here the rates, the acquires and the invariants; by concern: `scenario` (a model and its
//! exploration), `execution` (one execution rebuilt and checked), `reference` (the sequential
//! model), `crash` (the crash hook), `heap` (the words on the heap) and `caught` (broken
//! variants caught by one invariant).
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

mod caught;
mod crash;
mod execution;
mod heap;
mod reference;
mod scenario;

pub use caught::{Caught, catches, panic_message};
pub use crash::{CrashHook, Crashed};
pub use execution::Ended;
use execution::{Call, Execution, pattern};
use heap::Heap;
pub use heap::capacity_for;
pub use reference::Reference;
pub use scenario::{CrashStats, Scenario, Stats};

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
