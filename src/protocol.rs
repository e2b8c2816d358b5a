//! The commit protocol: one log of admissions, every rate a sliding window over it.
//!
//! This module does no I/O, never reads the clock and never allocates. It works on words it
//! borrows ([`Words`]): in production they live in the shared mapping, in the loom models and
//! the Miri tests on the heap. Time comes in as `now` (nanoseconds of the file's clock).
//!
//! # The algorithm
//!
//! This is "one log, every rate a window over it" (option 1 of `DESIGN-NOTES.md`): a ring of
//! 128-bit records, where a commit is a single compare-exchange of the next slot that carries
//! all of the record's data.
//!
//! * **The ring** ([`Words::new`]: `capacity` [`AtomicPair`] slots, a power of two). Record
//!   `k` lives in slot `k mod capacity` as its timestamp, its sequence number (mod 2^32) and
//!   the cumulative weight of records `0..=k` (mod 2^32). Record 0 is a sentinel (timestamp 0,
//!   weight 0); a new file holds, in slot `k`, a fake record `k - capacity` with timestamp 0
//!   and weight 0. Admissions are recorded at timestamps 1 or later ([`Record::FIRST_TS`]),
//!   so time 0 is before every admission and no window ever counts a record there, whatever
//!   the clock reads (0 included).
//! * **The hint** (an `AtomicU64`): the sequence number of a recently committed record. It only
//!   saves walking; any value is safe. A second word counts how often the sequence number
//!   wrapped, for 64-bit totals.
//!
//! **State.** The newest record `n` is the one whose slot holds `n` while the next slot still
//! holds `n + 1 - capacity` (its previous lap). Slots hold records `n - capacity + 1 ..= n`.
//!
//! An acquire:
//! 0. answers a repeat of the caller's last denial (same weight, before its retry time) with
//!    one load: if slot `head + 1` of the denial's head still holds its previous lap, nothing
//!    was committed since and the denial stands, linearized at that load ([`recall`] has the
//!    argument); otherwise:
//! 1. finds the newest record `n`: from the hint, walks forward while the next slot holds the
//!    next record, and keeps the raw value of slot `n + 1` (record `n + 1 - capacity`);
//! 2. takes `t = max(now, n.ts)` (`now` kept within `1..=2^64 - 2`, [`Record::stamp`]): the
//!    timestamp it will record;
//! 3. for every rate finds the newest record with `ts <= t - window` (galloping from a
//!    per-rate hint) and so the weight inside `(t - window, t]`, unless the weight after
//!    the hinted record, when it lies one to two windows back, already leaves room
//!    (`View::bound_from_hint`); a request-counting rate
//!    needs no search: one load of the record `limit - 1` places back says whether one more
//!    request fits (`View::count_requests` has the argument);
//! 4. if some rate cannot take the request, reloads slot `n + 1`: unchanged means nothing was
//!    committed meanwhile, so the answer was computed on one state, and the denial
//!    linearizes at that reload;
//! 5. otherwise compare-exchanges slot `n + 1` from record `n + 1 - capacity` to the new
//!    record `n + 1`: **that compare-exchange is the linearization point and the whole
//!    commit**, for every rate at once. Then it raises the hint (a plain store).
//!
//! Why the answer is exact: overwriting any slot read in step 3 means committing a record
//! after `n`, which first needs slot `n + 1` to hold record `n + 1`. If the compare-exchange
//! in step 5 (or the reload in step 4) finds slot `n + 1` still holding its previous lap, no
//! record after `n` exists, so every slot read held the record it was read as. A slot's
//! sequence number only grows, by `capacity` per lap, so the previous-lap value never comes
//! back (no ABA short of 2^32 admissions within one timestamp). The ring is sized (see
//! `layout.rs`) to reach back past the longest window; a ring that does not (garbage in the
//! file) gives [`Outcome::Corrupt`], never a guess.
//!
//! Progress: a process that dies or stops anywhere holds nothing. Before its compare-exchange
//! it has written nothing; after it, the record is complete, and at worst the hint is stale,
//! which costs the next caller a step of walking. A failed compare-exchange means another
//! caller committed: the system as a whole always progresses (lock-freedom).
//!
//! # What the guarantee is stated in
//!
//! Recorded timestamps: a record's timestamp is `max(clock read by the caller, previous
//! record's timestamp)`, so timestamps never decrease along the log, and each lies between the
//! caller's clock read and the real moment of its commit. For every rate and every `t`, the
//! weight of the records with timestamps in `(t - window, t]` never exceeds the limit: the
//! newest record inside any window was checked, at its commit, against a window that held
//! every older record inside it. (A clock reading of exactly 0 is recorded as 1 and one of
//! `u64::MAX` as `u64::MAX - 1`: 0 is the time of the sentinel and `u64::MAX` the tombstone's.
//! Any clock value is legal input.)

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
    hint: &'a AtomicU64,
    laps: &'a AtomicU64,
    ring: &'a [AtomicPair],
    mask: u32,
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
    fn slot(&self, seq: u32) -> &AtomicPair {
        // Masked with capacity - 1 (the length is a power of two, `Words::new`): always in
        // bounds, whatever a garbage slot says, which the compiler sees from the length
        // itself (no bounds check).
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
    fn units(&self, weight: u64) -> u64 {
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
    Retired,
}

/// What one caller carries from one [`acquire`] to the next: process-local, for one `words`
/// and one `rules`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// Per weight-counting rate, the sequence number of the newest record outside its window
    /// at the last call: where the next search starts. Any value is safe.
    pub windows: [u32; MAX_RATES],
    /// The last denial `acquire` answered (or [`Memo::NONE`]). Not any value is safe: it must
    /// be one that `acquire` wrote, with the same `words` and `rules`.
    pub denial: Memo,
}

/// The last denial a caller got, so that a repeat of it before its retry time costs one load
/// (see [`acquire`]'s step 0). Process-local, packed into 16 bytes so that threads sharing a
/// limiter can keep it in one lock-free word:
///
/// | bits     | field      | meaning                                                    |
/// |----------|------------|------------------------------------------------------------|
/// | 0..64    | `retry_at` | when the request first fits (file clock, ns)               |
/// | 64..96   | `head`     | sequence number of the newest record it was computed on    |
/// | 96..124  | `weight`   | the weight asked for (a weight of 2^28 or more is not kept) |
/// | 124..128 | `rate`     | the refusing rate's index + 1; 0 for no memo               |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    retry_at: u64,
    head: u32,
    weight: u32,
    rate: u8,
}

impl Memo {
    /// No denial remembered.
    pub const NONE: Memo = Memo {
        retry_at: 0,
        head: 0,
        weight: 0,
        rate: 0,
    };

    /// The largest weight a memo keeps (28 bits).
    const MAX_WEIGHT: u64 = (1 << 28) - 1;

    /// The denial of `weight` by rate `rate` with `retry_at`, computed on head `head`; none
    /// if the weight or the rate index does not fit the packing.
    fn of(head: u32, weight: u64, rate: usize, retry_at: u64) -> Memo {
        if weight > Memo::MAX_WEIGHT || rate >= MAX_RATES {
            return Memo::NONE;
        }
        Memo {
            retry_at,
            head,
            weight: weight as u32,
            rate: rate as u8 + 1,
        }
    }

    /// Packs the memo into 16 bytes.
    pub fn pack(self) -> u128 {
        u128::from(self.retry_at)
            | (u128::from(self.head) << 64)
            | (u128::from(self.weight) << 96)
            | (u128::from(self.rate) << 124)
    }

    /// Unpacks what [`Memo::pack`] packed.
    #[inline]
    pub fn unpack(word: u128) -> Memo {
        Memo {
            retry_at: word as u64,
            head: (word >> 64) as u32,
            weight: (word >> 96) as u32 & Memo::MAX_WEIGHT as u32,
            rate: (word >> 124) as u8,
        }
    }

    /// The remembered denial, if it answers a request of `weight` at `now`, provided that
    /// the memo's head is still the newest record; `(rate, retry_at)`.
    #[inline]
    fn answers(self, now: u64, weight: u64) -> Option<(usize, u64)> {
        // BROKEN (loom tests only): the memo outlives its retry time.
        let in_time = broken::is(broken::Variant::MemoIgnoresRetryTime)
            || now.clamp(Record::FIRST_TS, Record::LAST_TS) < self.retry_at;
        (self.rate != 0 && u64::from(self.weight) == weight && in_time)
            .then(|| (usize::from(self.rate - 1), self.retry_at))
    }
}

/// Use of one rate at one consistent moment, from [`usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateUse {
    /// Weight (or requests) inside the current window.
    pub used: u64,
    /// When the oldest admission in the window leaves it (file clock, ns); `None` if empty.
    pub next_free_at: Option<u64>,
}

/// Everything [`usage`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The newest committed record.
    pub head: Record,
    /// The timestamp the windows were evaluated at: [`Record::stamp`]`(now, head)`, the one an
    /// acquire would record.
    pub at: u64,
    /// Per rate, in configuration order; only the first `rules.len()` entries are meaningful.
    pub rates: [RateUse; MAX_RATES],
}

/// What [`usage`] reports for a retired log.
pub const RETIRED: &str = "the file was reset or removed";

/// How far (in records) one walk for the newest record may travel before the ring is called
/// corrupt: half the sequence space, the most that sequence numbers mod 2^32 can order.
///
/// In a consistent ring a walk travels at most `capacity - 1` records plus those committed
/// while it walks (see [`find_head`]), and the protocol already assumes that fewer than 2^31
/// commits overtake one call (the compare-exchange's no-ABA argument needs fewer than 2^32).
const MAX_TRAVEL: u64 = 1 << 31;

/// Result of looking for the newest record.
enum Head {
    /// The newest record, and the raw value of the slot after it (its previous lap).
    Found(Record, u128),
    /// Slots that no consistent state explains.
    Corrupt,
}

/// What the slot after the walk's current record holds, relative to the record expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The next record: walk on.
    Next,
    /// The expected record's previous lap: the current record is the newest.
    PreviousLap,
    /// Another lap of the expected record: a later lap if the walk was overtaken, an older
    /// one if garbage.
    OtherLap,
    /// A record that belongs to another slot: garbage.
    OtherSlot,
}

impl Seen {
    /// Classifies record number `next`, found in the slot after record `seq` of a ring with
    /// `mask = capacity - 1`.
    fn of(seq: u32, next: u32, mask: u32) -> Seen {
        let ahead = next.wrapping_sub(seq.wrapping_add(1));
        if ahead == 0 {
            Seen::Next
        } else if ahead & mask != 0 {
            Seen::OtherSlot
        } else if ahead == (mask + 1).wrapping_neg() {
            Seen::PreviousLap
        } else {
            Seen::OtherLap
        }
    }
}

/// Finds the newest committed record, starting from the hint.
///
/// The walk starts at the record the hinted slot holds and reads, at each step, the slot
/// after the current record `s` ([`Seen`] names the cases). Why each case means what it
/// says, in a consistent ring:
///
/// * Every record a slot holds was committed (or is a fake of the new ring, committed
///   "before" the sentinel), and walking forward from a committed record reaches the newest.
/// * Slot `s + 1` holds at least record `s + 1 - capacity`: that record was committed before
///   record `s` (commits go in sequence order, each compare-exchange reading its
///   predecessor's slot), the load that saw record `s` happens after `s` was committed, and a
///   slot's sequence number only grows, a lap at a time. So a lap older than the previous one
///   is garbage, and so is a record that belongs to another slot.
/// * A later lap `L = s + 1 + j * capacity` means at least a lap of commits overtook the walk
///   between its two loads. `L` was committed, so the newest record is at or after it: the
///   walk continues from `L` (where restarting from the hint would walk again what it has
///   seen, and a second lap of commits could send it back again).
///
/// **Bounded, whatever the file holds.** Each step moves the walk forward by at least one
/// record, and it reads the slots in index order, one after the other. Consider the two reads
/// of the same slot `capacity` steps apart: if nothing wrote that slot in between, they read
/// the same record, so the steps in between travelled a positive multiple of 2^32 records,
/// at least [`MAX_TRAVEL`]: the walk stops as corrupt. So a walk takes at most
/// `capacity + 1` slot loads on a ring that nobody writes meanwhile (a walk that sees again
/// exactly what it saw before is garbage, not contention), and every step beyond that reads
/// a slot that was written during the walk: a call is delayed only by what other processes
/// write, as lock-freedom allows. In a consistent ring the walk travels at most
/// `capacity - 1` records (from a record of the last lap when it was read to the newest) plus
/// those committed while it walks, far below [`MAX_TRAVEL`]: the bound never fires on a
/// consistent ring.
#[inline(always)]
fn find_head<H: Hook>(words: &Words<'_>, hook: &H) -> Result<Head, H::Stop> {
    hook.step()?;
    // Acquire: the hint names a record committed before it was stored; pairs with the
    // Release store in `raise_hint`.
    let hint = words.hint.load(Ordering::Acquire) as u32;
    hook.step()?;
    let mut head = Record::unpack(words.slot(hint).load());
    if head.seq.wrapping_sub(hint) & words.mask != 0 {
        // The hinted slot holds a record that does not belong in it: garbage.
        return Ok(Head::Corrupt);
    }
    if broken::is(broken::Variant::TrustHint) {
        // BROKEN (loom tests only): the hinted record taken as the newest, no walk.
        hook.step()?;
        return Ok(Head::Found(
            head,
            words.slot(head.seq.wrapping_add(1)).load(),
        ));
    }
    let mut travelled = 0u64;
    loop {
        hook.step()?;
        let next_raw = words.slot(head.seq.wrapping_add(1)).load();
        let next = Record::unpack(next_raw);
        match Seen::of(head.seq, next.seq, words.mask) {
            Seen::PreviousLap => return Ok(Head::Found(head, next_raw)),
            Seen::OtherSlot => return Ok(Head::Corrupt),
            seen => {
                // Forward to `next`: the next record, or laps further (overtaken). An older
                // lap is "negative", more than 2^31 records ahead mod 2^32: garbage, which
                // the travel bound reports at once.
                travelled += u64::from(next.seq.wrapping_sub(head.seq));
                if travelled >= MAX_TRAVEL {
                    return Ok(Head::Corrupt);
                }
                if seen == Seen::OtherLap {
                    if broken::is(broken::Variant::OvertakenIsCorrupt) {
                        // BROKEN (loom tests only): contention taken for garbage.
                        return Ok(Head::Corrupt);
                    }
                    hook.overtaken();
                }
                head = next;
            }
        }
    }
}

/// Result of checking every rate against one state.
enum Check {
    Admit,
    Deny { rate: usize, retry_at: u64 },
    Corrupt(&'static str),
}

/// The log as seen from one newest record.
struct View<'w, 'a, H> {
    words: &'w Words<'a>,
    hook: &'w H,
    head: Record,
    /// Raw value of the slot after the head (record head.seq + 1 - capacity).
    next_raw: u128,
}

impl<H: Hook> View<'_, '_, H> {
    /// The record `back` places before the head (`back = 0` is the head).
    fn record_at(&self, back: u32) -> Result<Record, H::Stop> {
        if back == 0 {
            return Ok(self.head);
        }
        self.hook.step()?;
        // Acquire load (see AtomicPair::load): a value from a later lap is caught by the
        // reload in `still_current` (denial) or by the failing compare-exchange (admission).
        Ok(Record::unpack(
            self.words.slot(self.head.seq.wrapping_sub(back)).load(),
        ))
    }

    /// Timestamp of the record `back` places before the head.
    fn ts_at(&self, back: u32) -> Result<u64, H::Stop> {
        Ok(self.record_at(back)?.ts)
    }

    /// Cumulative weight (mod 2^32) of the record `back` places before the head.
    fn cum_at(&self, back: u32) -> Result<u32, H::Stop> {
        Ok(self.record_at(back)?.cum)
    }

    /// The number of records inside `(threshold, head.ts]`, i.e. the smallest `back` whose
    /// record has `ts <= threshold`; `None` if the ring does not reach back that far.
    ///
    /// The search starts from `hint`, the sequence number of this rate's boundary record in
    /// an earlier call (boundaries only move forward in time, so it is usually a step or two
    /// away), and gallops from there: O(log distance) probes, whatever the window holds. Any
    /// hint is safe: one outside the ring is ignored, and the search is exact from anywhere.
    fn records_after(&self, threshold: u64, hint: u32) -> Result<Option<u32>, H::Stop> {
        if self.head.ts <= threshold {
            return Ok(Some(0));
        }
        let oldest = self.words.mask; // capacity - 1 records back is the oldest kept.
        // Invariant of the searches below: ts(inside) > threshold >= ts(outside), where
        // `inside` < `outside` are offsets back from the head.
        let start = self.head.seq.wrapping_sub(hint);
        let (mut inside, mut outside);
        if start == 0 || start > oldest || self.ts_at(start)? > threshold {
            // Gallop back (away from the head) from the hint, or from the head.
            inside = if start > oldest { 0 } else { start };
            let mut step = 1u32;
            loop {
                let probe = inside.saturating_add(step).min(oldest);
                if self.ts_at(probe)? <= threshold {
                    outside = probe;
                    break;
                }
                if probe == oldest {
                    return Ok(None);
                }
                inside = probe;
                step = step.saturating_mul(2);
            }
        } else {
            // The hint is outside the window: gallop forward (towards the head).
            outside = start;
            let mut step = 1u32;
            loop {
                let probe = outside.saturating_sub(step);
                if probe == 0 || self.ts_at(probe)? > threshold {
                    inside = probe;
                    break;
                }
                outside = probe;
                step = step.saturating_mul(2);
            }
        }
        while outside - inside > 1 {
            let mid = inside + (outside - inside) / 2;
            if self.ts_at(mid)? <= threshold {
                outside = mid;
            } else {
                inside = mid;
            }
        }
        Ok(Some(outside))
    }

    /// Weight (or requests) of the newest `back` records.
    fn used_by(&self, rule: &Rule, back: u32) -> Result<u64, H::Stop> {
        if rule.requests {
            Ok(u64::from(back))
        } else {
            Ok(u64::from(self.head.cum.wrapping_sub(self.cum_at(back)?)))
        }
    }

    /// A request-counting rate at timestamp `t`, by one load and no search: `None` when the
    /// ring holds fewer than `limit` records (then the search decides), else `Some(None)` if
    /// one more request fits and `Some(Some(retry_at))` if not.
    ///
    /// Why one load is exact: timestamps never decrease along the log, so the records inside
    /// `(t - window, t]` are the newest few, and fewer than `limit` of them are inside iff
    /// the record `limit - 1` places back (the head is 0 places back) has `ts <= t - window`.
    /// If it is inside, the request first fits once that record leaves the window, at its
    /// `ts + window`: the answer the search of [`View::check`] gives for a request rate
    /// (the largest `fits` with `fits + 1 <= limit` is `limit - 1`). The record read may be
    /// from a later lap (a commit raced us): the reload of `still_current` (denial) or the
    /// failing compare-exchange (admission) catches that, as for every search probe.
    fn count_requests(&self, rule: &Rule, t: u64) -> Result<Option<Option<u64>>, H::Stop> {
        // `limit >= 1` here: a request rate of limit 0 never fits (checked in `acquire`).
        let mut back = rule.limit.saturating_sub(1);
        if broken::is(broken::Variant::RequestsOneTooFar) {
            // BROKEN (loom tests only): the record `limit` places back, one too many inside.
            back += 1;
        }
        if back > u64::from(self.words.mask) {
            return Ok(None);
        }
        let ts = self.ts_at(back as u32)?;
        Ok(Some(if ts <= t.saturating_sub(rule.window) {
            None
        } else {
            Some(ts.saturating_add(rule.window))
        }))
    }

    /// An upper bound on a weight rate's use at `t`, from its hint alone (one load, no
    /// search): the weight committed after the hinted record, when that record lies between
    /// one and two windows back. `None` when the hint does not qualify (then the search
    /// decides).
    ///
    /// Why it is a bound, and exact in 32 bits: the hinted record `r` has `ts <= t - window`,
    /// so every record inside the window comes after it, and the weight after `r` is at least
    /// the window's use. Timestamps never decrease, so the records after `r` lie in
    /// `[r.ts, t]`; with `r.ts > t - 2 window` (or `t <= 2 window`, where everything after
    /// time 0 lies in two windows and the records at time 0 weigh nothing) that is inside the
    /// two windows ending at `t` and at `t - window`, each holding at most `limit`: the weight
    /// after `r` is at most `2 limit < 2^32` when `limit < 2^31`, so its difference of
    /// cumulative weights mod 2^32 is the true weight. Without the lower bound on the hint's
    /// age the true weight may exceed 2^32 and the modular difference wraps to a small
    /// number: over-admission (the loom variant `WeightBoundWithoutAge`). The record read may
    /// be from a later lap, or the hint garbage: its sequence number must be the hint's, and
    /// a later lap is caught by the commit's compare-exchange, as for every search probe.
    fn bound_from_hint(&self, rule: &Rule, t: u64, hint: u32) -> Result<Option<u64>, H::Stop> {
        let back = self.head.seq.wrapping_sub(hint);
        if back > self.words.mask || rule.limit >= 1 << 31 {
            return Ok(None);
        }
        let record = self.record_at(back)?;
        if record.seq != hint {
            return Ok(None);
        }
        let outside = record.ts <= t.saturating_sub(rule.window);
        let floor = t.saturating_sub(rule.window.saturating_mul(2));
        // BROKEN (loom tests only): any hint outside the window, however old.
        let young =
            broken::is(broken::Variant::WeightBoundWithoutAge) || floor == 0 || floor < record.ts;
        if !outside || !young {
            return Ok(None);
        }
        Ok(Some(u64::from(self.head.cum.wrapping_sub(record.cum))))
    }

    /// Checks every rate at timestamp `t` for a request of `weight`.
    #[inline(always)]
    fn check(
        &self,
        rules: &[Rule],
        weight: u64,
        t: u64,
        hints: &mut Hints,
    ) -> Result<Check, H::Stop> {
        let mut refusal: Option<(usize, u64)> = None;
        let rules = if broken::is(broken::Variant::SkipLastRate) {
            // BROKEN (loom tests only): the last rate is never checked.
            &rules[..rules.len().saturating_sub(1)]
        } else {
            rules
        };
        for ((index, rule), hint) in rules.iter().enumerate().zip(hints.windows.iter_mut()) {
            let units = rule.units(weight);
            if units == 0 {
                continue;
            }
            if rule.requests
                && let Some(verdict) = self.count_requests(rule, t)?
            {
                if let Some(retry_at) = verdict
                    && refusal.is_none_or(|(_, at)| retry_at > at)
                {
                    refusal = Some((index, retry_at));
                }
                continue;
            }
            if let Some(bound) = self.bound_from_hint(rule, t, *hint)?
                && bound.saturating_add(units) <= rule.limit
            {
                continue;
            }
            let Some(inside) = self.records_after(t.saturating_sub(rule.window), *hint)? else {
                return Ok(Check::Corrupt(
                    "the ring does not reach back over the window",
                ));
            };
            *hint = self.head.seq.wrapping_sub(inside);
            if self.used_by(rule, inside)?.saturating_add(units) <= rule.limit {
                continue;
            }
            // Denied by this rate: find the newest record whose expiry frees enough.
            // `fits(back)`: once the records `back..` have left, the request fits.
            // fits(0) holds (units <= limit), fits(inside) does not; find the largest that fits.
            let (mut fits, mut fails) = (0u32, inside);
            while fails - fits > 1 {
                let mid = fits + (fails - fits) / 2;
                if self.used_by(rule, mid)?.saturating_add(units) <= rule.limit {
                    fits = mid;
                } else {
                    fails = mid;
                }
            }
            let retry_at = self.ts_at(fits)?.saturating_add(rule.window);
            if refusal.is_none_or(|(_, at)| retry_at > at) {
                refusal = Some((index, retry_at));
            }
        }
        Ok(match refusal {
            None => Check::Admit,
            Some((rate, retry_at)) => Check::Deny { rate, retry_at },
        })
    }

    /// Is the head still the newest record? True means nothing was committed since the head
    /// was found, so everything read in between belongs to one state.
    fn still_current(&self) -> Result<bool, H::Stop> {
        self.hook.step()?;
        Ok(self.words.slot(self.head.seq.wrapping_add(1)).load() == self.next_raw)
    }
}

/// Tries to admit `weight` at `now` under `rules`: commits to every rate or to none.
///
/// `rules` must be the rules the ring was sized for (see `layout.rs`). `hints` carries each
/// weight rate's window boundary and the last denial from one call to the next (start with
/// [`Hints::default`]; see [`Hints`] for what values are safe). A repeat of the last denial
/// (same weight, before its retry time) is answered by one load if nothing was committed
/// since (step 0 in the code).
#[inline]
pub fn acquire<H: Hook>(
    words: &Words<'_>,
    rules: &[Rule],
    now: u64,
    weight: u64,
    hints: &mut Hints,
    hook: &H,
) -> Result<Outcome, H::Stop> {
    if let Some(rate) = rules
        .iter()
        .position(|rule| rule.units(weight) > rule.limit)
    {
        return Ok(Outcome::NeverFits { rate });
    }
    if rules.iter().all(|rule| rule.units(weight) == 0) {
        return Ok(Outcome::Free);
    }
    if let Some(denied) = recall(words, hints.denial, now, weight, hook)? {
        return Ok(denied);
    }
    // With any weight-counting rate the weight is at most its limit (< 2^32, see rate.rs);
    // without one the cumulative weight is never read, so truncation is harmless.
    let charge = weight as u32;
    loop {
        let Head::Found(head, next_raw) = find_head(words, hook)? else {
            return Ok(Outcome::Corrupt(
                "the ring's sequence numbers are inconsistent",
            ));
        };
        if head.ts == Record::RETIRED_TS {
            return Ok(Outcome::Retired);
        }
        let view = View {
            words,
            hook,
            head,
            next_raw,
        };
        let t = Record::stamp(now, head);
        match view.check(rules, weight, t, hints)? {
            Check::Admit => {}
            Check::Deny { rate, retry_at } => {
                // BROKEN (loom tests only): the denial is not revalidated.
                if broken::is(broken::Variant::DenyWithoutRecheck) || view.still_current()? {
                    hints.denial = Memo::of(head.seq, weight, rate, retry_at);
                    return Ok(Outcome::Denied { rate, retry_at });
                }
                continue;
            }
            Check::Corrupt(why) => {
                if view.still_current()? {
                    return Ok(Outcome::Corrupt(why));
                }
                continue;
            }
        }
        let next = Record {
            // BROKEN (loom tests only): the caller's clock recorded as is.
            ts: if broken::is(broken::Variant::RecordNow) {
                now
            } else {
                t
            },
            seq: head.seq.wrapping_add(1),
            cum: head.cum.wrapping_add(charge),
        };
        hook.step()?;
        // The commit: one sequentially consistent compare-exchange of the next slot, from its
        // previous lap to the new record.
        let committed = if broken::commit_is_broken() {
            // BROKEN (loom tests only): a commit in two steps.
            broken::commit(words.slot(next.seq), next_raw, next, head.cum, hook)?
        } else {
            words
                .slot(next.seq)
                .compare_exchange(next_raw, next.pack())
                .is_ok()
        };
        if committed {
            if next.seq == 0 {
                // The sequence number wrapped: count the lap so that totals stay 64-bit.
                hook.step()?;
                // Relaxed: a statistic.
                words.laps.fetch_add(1, Ordering::Relaxed);
            }
            raise_hint(words, next.seq, hook)?;
            return Ok(Outcome::Admitted(next));
        }
    }
}

/// Step 0 of [`acquire`]: the memo of the last denial answers a repeat of it (same weight,
/// before its retry time) with one load, if nothing was committed since. `None`: ask the
/// log. Callers that keep the memo elsewhere (the file backend) call this first, then
/// [`acquire`] with [`Memo::NONE`].
#[inline]
pub fn recall<H: Hook>(
    words: &Words<'_>,
    memo: Memo,
    now: u64,
    weight: u64,
    hook: &H,
) -> Result<Option<Outcome>, H::Stop> {
    let Some((rate, retry_at)) = memo.answers(now, weight) else {
        return Ok(None);
    };
    // The memo was computed on the log whose newest record is `memo.head` (validated then
    // by `still_current`); if slot `head + 1` still
    // holds its previous lap, no record was committed after `head` (commits go in order),
    // so the log is the same one. On it, at every `t >= head.ts` the window's use only
    // falls as `t` grows (no record is later than the head), so the request is refused
    // exactly for `t < retry_at`, by the same rate (the one that frees up last stays
    // refusing, and wins ties as before), and `stamp(now, head) < retry_at` iff
    // `now < retry_at` (`head.ts < retry_at`, both after clamping). The denial
    // linearizes at this load. A commit (a tombstone included) changes the slot's
    // sequence number by a lap, which comes back only after 2^32 commits: the memo
    // assumes fewer than 2^32 commits between a denial and its repeat before its retry
    // time, as the commit's compare-exchange does within one call.
    let head = memo.head;
    hook.step()?;
    let next = Record::unpack(words.slot(head.wrapping_add(1)).load());
    // BROKEN (loom tests only): the memo trusted without the load.
    if broken::is(broken::Variant::MemoWithoutReload)
        || Seen::of(head, next.seq, words.mask) == Seen::PreviousLap
    {
        return Ok(Some(Outcome::Denied { rate, retry_at }));
    }
    Ok(None)
}

/// Raises the hint to record `seq`, just committed, unless it is already there or ahead.
#[inline(always)]
fn raise_hint<H: Hook>(words: &Words<'_>, seq: u32, hook: &H) -> Result<(), H::Stop> {
    hook.step()?;
    // Relaxed load, Release store: the hint only moves forward here (a racing store may move
    // it back a little; `find_head` walks forward from any value). Release pairs with the
    // Acquire load in `find_head`.
    let hinted = words.hint.load(Ordering::Relaxed) as u32;
    if (seq.wrapping_sub(hinted) as i32) > 0 {
        hook.step()?;
        words.hint.store(u64::from(seq), Ordering::Release);
    }
    Ok(())
}

/// Closes the log for good: commits a tombstone record (timestamp [`Record::RETIRED_TS`])
/// after which every acquire returns [`Outcome::Retired`]. Used when a file is reset or
/// removed, so that every process still mapping it notices at its next call. Returns false
/// if the log was already closed.
pub fn retire<H: Hook>(words: &Words<'_>, hook: &H) -> Result<Result<bool, &'static str>, H::Stop> {
    loop {
        let Head::Found(head, next_raw) = find_head(words, hook)? else {
            return Ok(Err("the ring's sequence numbers are inconsistent"));
        };
        if head.ts == Record::RETIRED_TS {
            return Ok(Ok(false));
        }
        let tombstone = Record {
            ts: Record::RETIRED_TS,
            seq: head.seq.wrapping_add(1),
            cum: head.cum,
        };
        hook.step()?;
        if words
            .slot(tombstone.seq)
            .compare_exchange(next_raw, tombstone.pack())
            .is_ok()
        {
            return Ok(Ok(true));
        }
    }
}

/// Reads every rate's use at `now` on one consistent state, without changing anything.
pub fn usage<H: Hook>(
    words: &Words<'_>,
    rules: &[Rule],
    now: u64,
    hook: &H,
) -> Result<Result<Usage, &'static str>, H::Stop> {
    'retry: loop {
        let Head::Found(head, next_raw) = find_head(words, hook)? else {
            return Ok(Err("the ring's sequence numbers are inconsistent"));
        };
        if head.ts == Record::RETIRED_TS {
            return Ok(Err(RETIRED));
        }
        let view = View {
            words,
            hook,
            head,
            next_raw,
        };
        let at = Record::stamp(now, head);
        let mut rates = [RateUse {
            used: 0,
            next_free_at: None,
        }; MAX_RATES];
        for (rule, out) in rules.iter().zip(rates.iter_mut()) {
            let Some(inside) = view.records_after(at.saturating_sub(rule.window), head.seq)? else {
                if view.still_current()? {
                    return Ok(Err("the ring does not reach back over the window"));
                }
                continue 'retry;
            };
            out.used = view.used_by(rule, inside)?;
            if inside > 0 {
                out.next_free_at = Some(view.ts_at(inside - 1)?.saturating_add(rule.window));
            }
        }
        if view.still_current()? {
            return Ok(Ok(Usage { head, at, rates }));
        }
    }
}

/// What [`records_since`] found.
#[cfg_attr(
    not(feature = "journal"),
    allow(dead_code, reason = "read only by the journal")
)]
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// The newest record when the walk started: the records up to it have all been visited,
    /// except those the ring no longer held.
    pub head: u32,
    /// The log was closed by [`retire`]; its tombstone was not visited.
    pub retired: bool,
}

/// Visits, oldest first, the records committed after record `after` that the ring still
/// holds, each with its own weight (mod 2^32): the journal's reader. Changes nothing.
///
/// A slot holds either the record it was read as or a later one; a record is immutable once
/// committed, so each visited record is exactly what was committed, without any snapshot
/// check. A record the ring no longer holds (overwritten by a later lap while the walk ran, or
/// before it) is skipped, as is the record after it (its weight needs its predecessor): the
/// ring is sized so that a record overwritten by a later lap is outside every window of every
/// moment from then on (see `layout.rs`), so nothing that still counts is skipped. Records
/// committed after the walk started are left for the next call. At most `capacity - 1`
/// records are visited.
#[cfg_attr(
    not(feature = "journal"),
    allow(dead_code, reason = "read only by the journal")
)]
pub fn records_since<H: Hook>(
    words: &Words<'_>,
    after: u32,
    hook: &H,
    mut visit: impl FnMut(Record, u32),
) -> Result<Result<Since, &'static str>, H::Stop> {
    let Head::Found(head, _) = find_head(words, hook)? else {
        return Ok(Err("the ring's sequence numbers are inconsistent"));
    };
    let retired = head.ts == Record::RETIRED_TS;
    let pending = head.seq.wrapping_sub(after);
    if pending == 0 || pending > i32::MAX as u32 {
        // Nothing new (or `after` is ahead of the log: nothing to do either).
        return Ok(Ok(Since {
            head: head.seq,
            retired,
        }));
    }
    // The ring holds records head - capacity + 1 ..= head; the first visited one needs its
    // predecessor, so at most capacity - 1 records are visited.
    let count = pending.min(words.mask);
    let first = head.seq.wrapping_sub(count);
    let mut previous: Option<Record> = None;
    for offset in 0..=count {
        let seq = first.wrapping_add(offset);
        hook.step()?;
        let record = Record::unpack(words.slot(seq).load());
        if record.seq == seq {
            match previous {
                Some(before) if record.ts != Record::RETIRED_TS => {
                    visit(record, record.cum.wrapping_sub(before.cum));
                }
                _ => {}
            }
            previous = Some(record);
        } else if record.seq.wrapping_sub(seq) & words.mask != 0 {
            return Ok(Err("the ring's sequence numbers are inconsistent"));
        } else {
            // A later lap overwrote it: outside every window (see above).
            previous = None;
        }
    }
    Ok(Ok(Since {
        head: head.seq,
        retired,
    }))
}

// ---------------------------------------------------------------------------------------------
// Deliberately broken variants: loom tests only. Nothing above this line changes behaviour
// unless a loom test switched a variant on; outside `--cfg loom`, `broken::is` is `false`.
// ---------------------------------------------------------------------------------------------

/// Deliberately broken variants of this protocol, for `loom-tests/` only.
///
/// The loom tests switch one variant on at a time (on the OS thread that runs the model: loom
/// runs every modelled thread there) to show that each invariant check catches a real bug.
/// The protocol consults [`is`] at a few points, each marked `BROKEN (loom tests only)`; outside
/// `--cfg loom` [`is`] is a constant `false` (inlined), so production never takes these paths.
#[doc(hidden)]
pub mod broken {
    use super::{AtomicPair, Hook, Record};

    /// One deliberately broken protocol.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[cfg_attr(
        not(loom),
        allow(dead_code, reason = "`None` is only set by the loom tests")
    )]
    pub enum Variant {
        /// The correct protocol.
        None,
        /// The commit compares the slot with its previous lap, then stores the record: two
        /// steps instead of one compare-exchange.
        SplitCommit,
        /// The commit publishes the record with the request counted but its weight not yet
        /// charged, then charges the weight in a second step.
        TwoPhaseWeight,
        /// A denial is returned without the `still_current` revalidation.
        DenyWithoutRecheck,
        /// `find_head` takes the hinted record as the newest without walking forward.
        TrustHint,
        /// The per-rate check skips the last rate.
        SkipLastRate,
        /// The record carries the caller's `now` instead of `max(now, head.ts)`.
        RecordNow,
        /// A walk for the newest record overtaken by a lap of commits reports the ring
        /// corrupt instead of going on from the later record.
        OvertakenIsCorrupt,
        /// A request-counting rate reads the record `limit` places back instead of
        /// `limit - 1`: one request too many fits in a window.
        RequestsOneTooFar,
        /// The memo of the last denial answers a repeat without checking that nothing was
        /// committed since.
        MemoWithoutReload,
        /// The memo of the last denial answers a repeat after its retry time too.
        MemoIgnoresRetryTime,
        /// A weight rate's bound from its hint is used however old the hinted record is, so
        /// that the weight after it may wrap mod 2^32.
        WeightBoundWithoutAge,
    }

    #[cfg(loom)]
    std::thread_local! {
        static VARIANT: std::cell::Cell<Variant> = const { std::cell::Cell::new(Variant::None) };
    }

    /// Switches `variant` on for every model this OS thread runs next.
    #[cfg(loom)]
    pub fn set(variant: Variant) {
        VARIANT.with(|current| current.set(variant));
    }

    /// Whether `variant` is switched on; always false outside `--cfg loom`.
    #[inline(always)]
    pub fn is(variant: Variant) -> bool {
        #[cfg(loom)]
        {
            VARIANT.with(|current| current.get() == variant)
        }
        #[cfg(not(loom))]
        {
            let _ = variant;
            false
        }
    }

    /// Whether one of the broken commits is switched on.
    pub(super) fn commit_is_broken() -> bool {
        is(Variant::SplitCommit) || is(Variant::TwoPhaseWeight)
    }

    /// The broken commits of [`Variant::SplitCommit`] and [`Variant::TwoPhaseWeight`]: true
    /// if the record was (believed) committed.
    pub(super) fn commit<H: Hook>(
        slot: &AtomicPair,
        previous: u128,
        next: Record,
        head_cum: u32,
        hook: &H,
    ) -> Result<bool, H::Stop> {
        let first = if is(Variant::SplitCommit) {
            slot.load() == previous
        } else {
            let counted = Record {
                cum: head_cum,
                ..next
            };
            slot.compare_exchange(previous, counted.pack()).is_ok()
        };
        if first {
            hook.step()?;
            // A store, as a compare-exchange loop (the pair has no plain store).
            let mut current = slot.load();
            while let Err(actual) = slot.compare_exchange(current, next.pack()) {
                current = actual;
            }
        }
        Ok(first)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
