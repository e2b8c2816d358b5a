//! The words of the protocol and what it is told and answers: an admission record as packed in
//! a ring slot (`Record`), the borrowed shared words (`Words`), one rate (`Rule`), the hook
//! called before every shared-memory step (`Hook`, `NoHook`), what an acquire did (`Outcome`)
//! and what a caller carries from one acquire to the next (`Hints`).

use super::Memo;
use crate::sync::{AtomicPair, AtomicU64, Ordering};

/// The most rates one limiter can have.
pub const MAX_RATES: usize = 8;

/// The largest ring the protocol accepts (slots), so that sequence numbers mod 2^32 index it.
pub const MAX_CAPACITY: u32 = 1 << 31;

/// One admission record, as packed in a 128-bit ring slot.
///
/// | bits     | field | meaning                                               |
/// |----------|-------|-------------------------------------------------------|
/// | 0..64    | `ts`  | recorded timestamp, nanoseconds of the file's clock  |
/// | 64..96   | `cum` | cumulative weight of records `0..=seq`, mod 2^32      |
/// | 96..128  | `seq` | sequence number of the record, mod 2^32               |
///
/// A slot's only transition is from record `k - capacity` to record `k`, by one
/// compare-exchange in [`acquire`]: `seq` grows by `capacity`, `ts` never decreases.
///
/// [`acquire`]: super::acquire
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Recorded timestamp (ns of the file's clock).
    pub ts: u64,
    /// Sequence number, mod 2^32.
    pub seq: u32,
    /// Cumulative weight, mod 2^32.
    pub cum: u32,
}

impl Record {
    /// The sentinel record 0 that a new file starts with.
    pub const SENTINEL: Record = Record {
        ts: 0,
        seq: 0,
        cum: 0,
    };

    /// The timestamp of a tombstone: the record [`retire`] commits to close the log.
    ///
    /// [`retire`]: super::retire
    pub const RETIRED_TS: u64 = u64::MAX;

    /// The earliest timestamp an admission is recorded with. Time 0 belongs to the sentinel
    /// and to the fake records of a new ring, strictly before every admission: the window
    /// searches count the records with `ts > t - window` (0 when `t < window`), so those at 0
    /// are outside every window, wherever it starts, and every admission up to `t` is inside
    /// a window that reaches back before time 0. A clock reading 0 is recorded as 1.
    pub const FIRST_TS: u64 = 1;

    /// The latest timestamp an admission is recorded with: the one after it is the
    /// tombstone's. A clock reading `u64::MAX` is recorded as this.
    pub const LAST_TS: u64 = Record::RETIRED_TS - 1;

    /// The timestamp an acquire with clock reading `now` records after `head` (not a
    /// tombstone): `now` within [`FIRST_TS`](Record::FIRST_TS)..=[`LAST_TS`](Record::LAST_TS),
    /// and never before `head`'s, so that timestamps never decrease along the log.
    #[inline]
    pub fn stamp(now: u64, head: Record) -> u64 {
        now.clamp(Record::FIRST_TS, Record::LAST_TS).max(head.ts)
    }

    /// Packs the record into a slot's layout.
    pub fn pack(self) -> u128 {
        u128::from(self.ts) | (u128::from(self.cum) << 64) | (u128::from(self.seq) << 96)
    }

    /// Unpacks a slot. Every bit pattern is some record, so garbage unpacks too; the protocol
    /// validates what it derives from it.
    pub fn unpack(word: u128) -> Record {
        Record {
            ts: word as u64,
            cum: (word >> 64) as u32,
            seq: (word >> 96) as u32,
        }
    }

    /// What slot `index` of a new ring of `capacity` slots holds: the sentinel in slot 0, a
    /// fake previous-lap record with timestamp 0 and weight 0 elsewhere. Timestamp 0 is before
    /// every admission ([`Record::FIRST_TS`]), so no window counts them.
    pub fn initial(index: u32, capacity: u32) -> Record {
        Record {
            ts: 0,
            seq: if index == 0 {
                0
            } else {
                index.wrapping_sub(capacity)
            },
            cum: 0,
        }
    }
}

/// The shared words one limiter works on, borrowed from the mapping or from the heap.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a> {
    pub(super) hint: &'a AtomicU64,
    pub(super) laps: &'a AtomicU64,
    ring: &'a [AtomicPair],
    pub(super) mask: u32,
}

impl<'a> Words<'a> {
    /// Borrows the hint word, the lap counter and the ring. `None` unless the ring's length
    /// is a power of two between 2 and [`MAX_CAPACITY`].
    #[inline]
    pub fn new(hint: &'a AtomicU64, laps: &'a AtomicU64, ring: &'a [AtomicPair]) -> Option<Self> {
        let len = u32::try_from(ring.len()).ok()?;
        (len.is_power_of_two() && (2..=MAX_CAPACITY).contains(&len)).then(|| Words {
            hint,
            laps,
            ring,
            mask: len - 1,
        })
    }

    /// Total records committed since the file was made (64-bit: laps of 2^32 plus `seq`).
    /// Off by a lap only if a process died between wrapping the sequence and counting it.
    pub fn admitted(&self, head: Record) -> u64 {
        // Relaxed: a statistic.
        (self.laps.load(Ordering::Relaxed) << 32) | u64::from(head.seq)
    }

    /// The ring slot of record `seq`.
    #[inline(always)]
    pub(super) fn slot(&self, seq: u32) -> &AtomicPair {
        // Masked with capacity - 1 (the length is a power of two, `Words::new`): always in
        // bounds, whatever a garbage slot says. The compiler keeps a bounds check (it cannot
        // see that the length is not 0), which never fails: a compare and a branch.
        &self.ring[seq as usize & (self.ring.len() - 1)]
    }
}

/// One rate as the protocol sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Most weight (or requests) inside any window.
    pub limit: u64,
    /// Window length in nanoseconds (at least 1).
    pub window: u64,
    /// Counts requests (each acquire counts 1) rather than weight.
    pub requests: bool,
}

impl Rule {
    /// What an acquire of `weight` costs under this rule.
    pub(super) fn units(&self, weight: u64) -> u64 {
        if self.requests { 1 } else { weight }
    }
}

/// Called before every shared-memory step of the protocol.
///
/// Production uses [`NoHook`], which compiles to nothing (its `Stop` is uninhabited). The loom
/// models pass a hook that stops at its k-th step, which models a process killed at that
/// instruction: every shared write of the protocol is one atomic operation, so stopping
/// between steps is stopping at any instruction.
pub trait Hook {
    /// Why the caller stopped; [`std::convert::Infallible`] when it never does.
    type Stop;
    /// One shared-memory step is about to happen; `Err` stops the caller for good.
    fn step(&self) -> Result<(), Self::Stop>;

    /// The walk for the newest record was overtaken by at least a lap of commits and goes on
    /// from the later record it found (see [`find_head`]). Only tests and models listen: it
    /// shows that they reached that path.
    ///
    /// [`find_head`]: super::find_head
    #[inline(always)]
    fn overtaken(&self) {}
}

/// The production hook: no crash, no cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl Hook for NoHook {
    type Stop = std::convert::Infallible;

    #[inline(always)]
    fn step(&self) -> Result<(), Self::Stop> {
        Ok(())
    }
}

/// What an acquire did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed as this record.
    Admitted(Record),
    /// Nothing to charge (weight 0 and no request-counting rate): admitted without a record.
    Free,
    /// Rate `rate` had no room; the request could first fit at `retry_at` (file clock, ns).
    Denied {
        /// Index of the refusing rate (the one that frees up last).
        rate: usize,
        /// When the request could first fit, given the committed history.
        retry_at: u64,
    },
    /// The weight exceeds rate `rate`'s limit: it can never fit.
    NeverFits {
        /// Index of the rate whose limit is below the weight.
        rate: usize,
    },
    /// The shared state is inconsistent (garbage was written into the file).
    Corrupt(&'static str),
    /// The log was closed by [`retire`] (the file was reset or removed): attach to the file
    /// that replaced it.
    ///
    /// [`retire`]: super::retire
    Retired,
}

/// What one caller carries from one [`acquire`] to the next: process-local, for one `words`
/// and one `rules`.
///
/// [`acquire`]: super::acquire
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// Per weight-counting rate, the sequence number of the newest record outside its window
    /// at the last call: where the next search starts. Any value is safe.
    pub windows: [u32; MAX_RATES],
    /// The last denial `acquire` answered (or [`Memo::NONE`]). Not any value is safe: it must
    /// be one that `acquire` wrote, with the same `words` and `rules`.
    pub denial: Memo,
}
