//! The commit protocol: one log of admissions, every rate a sliding window over it.
//!
//! This module does no I/O, never reads the clock and never allocates on the acquire path. It
//! works on words it borrows ([`Words`]): in production they live in the shared mapping, in the
//! loom models and the Miri tests on the heap. Time comes in as `now` (nanoseconds of the
//! file's clock).
//!
//! # The algorithm
//!
//! This is "one log, every rate a window over it" (option 1 of `DESIGN-NOTES.md`), with the
//! newest record held in one 128-bit word so that a commit is a single compare-exchange that
//! carries all of its data.
//!
//! * **The head** ([`Words::head`], an [`AtomicPair`]) holds the newest committed record
//!   `n`: its recorded timestamp, its sequence number (mod 2^32) and the cumulative weight of
//!   records `0..=n` (mod 2^32). Record 0 is a sentinel with timestamp 0 and weight 0.
//! * **The ring** ([`Words::ring`], `capacity` [`Slot`]s, a power of two) holds the history:
//!   record `k` lives in slot `k mod capacity` as its timestamp and its cumulative weight (full
//!   64 bits, so that both words only ever grow from one lap of the ring to the next).
//!
//! **Invariant (I1).** While the head holds record `n`, the slots of records
//! `n - capacity + 1 ..= n - 1` hold exactly those records. The slot of `n` itself may still
//! hold record `n - capacity`: it is filled by anyone who needs it, before the next commit.
//!
//! An acquire:
//! 1. loads the head `n` and takes `t = max(now, head.ts)`: the timestamp it will record;
//! 2. for every rate finds the newest record with `ts <= t - window` (a galloping search back
//!    from the head) and so the weight (or request count) inside `(t - window, t]`;
//! 3. if some rate cannot take the request, reloads the head: unchanged means the answer was
//!    computed on one consistent state, and the denial linearizes at that reload;
//! 4. otherwise makes sure slot `n` is filled (I1 for the next record), then
//!    compare-exchanges the head from `n` to `n + 1`: **that compare-exchange is the
//!    linearization point and the whole commit**, for every rate at once;
//! 5. after a successful commit, fills slot `n + 1` so that the next caller finds it ready.
//!
//! A process that dies or stops anywhere leaves at most one unfilled slot, which the next
//! caller fills from the head: nobody ever waits for anybody (lock-freedom). Slots are only
//! written with `fetch_max` of values that are fixed by the committed record, and both words
//! of a slot grow from lap to lap, so a helper that wakes up late and writes an old record
//! changes nothing. A helper computes the values from slot `n - 1` and writes them only after
//! reloading the head and finding it unchanged, so it never writes values derived from a slot
//! that had already moved on.
//!
//! Why the answer is exact: the head does not change between the load in step 1 and the
//! successful compare-exchange in step 4, so by (I1) the slots read in step 2 held exactly
//! records `n - capacity + 1 ..= n`. The ring is sized (see `layout.rs`) so that it always
//! reaches back past the longest window; a ring that does not (garbage in the file) is reported
//! as [`Outcome::Corrupt`], never as a guess.
//!
//! # What the guarantee is stated in
//!
//! Recorded timestamps: a record's timestamp is `max(clock read by the caller, previous
//! record's timestamp)`, so timestamps never decrease along the log, and each lies between the
//! caller's clock read and the real moment of its commit. For every rate and every `t`, the
//! weight of the records with timestamps in `(t - window, t]` never exceeds the limit.

use crate::sync::{AtomicPair, AtomicU64, Ordering, fence};

/// The most rates one limiter can have.
pub const MAX_RATES: usize = 8;

/// The largest ring the protocol accepts (slots), so that sequence numbers mod 2^32 index it.
pub const MAX_CAPACITY: u32 = 1 << 31;

/// One committed admission, as packed in the head word.
///
/// Bit layout of the 128-bit head word:
///
/// | bits     | field | meaning                                               |
/// |----------|-------|-------------------------------------------------------|
/// | 0..64    | `ts`  | recorded timestamp, nanoseconds of the file's clock  |
/// | 64..96   | `cum` | cumulative weight of records `0..=seq`, mod 2^32      |
/// | 96..128  | `seq` | sequence number of the record, mod 2^32               |
///
/// The only transition is `n -> n + 1` by one compare-exchange in [`acquire`]: `seq` grows by
/// one, `cum` by the charged weight, `ts` never decreases.
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

    /// Packs the record into the head word's layout.
    pub fn pack(self) -> u128 {
        u128::from(self.ts) | (u128::from(self.cum) << 64) | (u128::from(self.seq) << 96)
    }

    /// Unpacks a head word. Every bit pattern is some record, so garbage unpacks too; the
    /// protocol validates what it derives from it.
    pub fn unpack(word: u128) -> Record {
        Record {
            ts: word as u64,
            cum: (word >> 64) as u32,
            seq: (word >> 96) as u32,
        }
    }
}

/// One ring slot: the timestamp and the full cumulative weight of one record.
///
/// Both words only grow from one lap to the next and are only written with `fetch_max`.
#[derive(Debug)]
#[repr(C)]
pub struct Slot {
    /// Recorded timestamp of the record in this slot.
    pub ts: AtomicU64,
    /// Cumulative weight of records up to and including this one (64 bits, never wraps).
    pub cum: AtomicU64,
}

impl Slot {
    /// An empty slot (timestamp 0, weight 0), as in a new file.
    pub fn new() -> Self {
        Slot {
            ts: AtomicU64::new(0),
            cum: AtomicU64::new(0),
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// The shared words one limiter works on, borrowed from the mapping or from the heap.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a> {
    head: &'a AtomicPair,
    ring: &'a [Slot],
    mask: u32,
}

impl<'a> Words<'a> {
    /// Borrows a head word and a ring. `None` unless the ring's length is a power of two
    /// between 2 and [`MAX_CAPACITY`].
    pub fn new(head: &'a AtomicPair, ring: &'a [Slot]) -> Option<Self> {
        let len = u32::try_from(ring.len()).ok()?;
        (len.is_power_of_two() && (2..=MAX_CAPACITY).contains(&len)).then(|| Words {
            head,
            ring,
            mask: len - 1,
        })
    }

    /// The ring slot of record `seq`.
    fn slot(&self, seq: u32) -> &Slot {
        // Masked with capacity - 1, so always in bounds whatever `seq` a garbage head holds.
        &self.ring[(seq & self.mask) as usize]
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
    /// The timestamp the windows were evaluated at: `max(now, head.ts)`.
    pub at: u64,
    /// Per rate, in configuration order; only the first `rules.len()` entries are meaningful.
    pub rates: [RateUse; MAX_RATES],
}

/// Result of making sure the head's slot is filled.
enum Fill {
    /// Filled; the head record's full cumulative weight.
    Ready(u64),
    /// The head moved on while we looked: start over.
    Moved,
    /// The slot holds values beyond the head record: garbage.
    Corrupt,
}

/// Result of checking every rate against one head.
enum Check {
    Admit,
    Deny { rate: usize, retry_at: u64 },
    Corrupt(&'static str),
}

/// A consistent-until-proven-otherwise view of the log from one head.
struct View<'w, 'a, H> {
    words: &'w Words<'a>,
    hook: &'w H,
    raw: u128,
    head: Record,
}

impl<H: Hook> View<'_, '_, H> {
    /// Timestamp of the record `back` places before the head (`back = 0` is the head).
    fn ts_at(&self, back: u32) -> Result<u64, H::Stop> {
        if back == 0 {
            return Ok(self.head.ts);
        }
        self.hook.step()?;
        // Relaxed: the slots behind the head were published before the head (I1) and the
        // head was loaded with acquire; a value from a later lap is caught by the reload of
        // the head (denial) or by the failing compare-exchange (admission).
        Ok(self
            .words
            .slot(self.head.seq.wrapping_sub(back))
            .ts
            .load(Ordering::Relaxed))
    }

    /// Cumulative weight (mod 2^32) of the record `back` places before the head.
    fn cum_at(&self, back: u32) -> Result<u32, H::Stop> {
        if back == 0 {
            return Ok(self.head.cum);
        }
        self.hook.step()?;
        // Relaxed: as in `ts_at`.
        Ok(self
            .words
            .slot(self.head.seq.wrapping_sub(back))
            .cum
            .load(Ordering::Relaxed) as u32)
    }

    /// The number of records inside `(threshold, head.ts]`, i.e. the smallest `back` whose
    /// record has `ts <= threshold`; `None` if the ring does not reach back that far.
    fn records_after(&self, threshold: u64) -> Result<Option<u32>, H::Stop> {
        if self.head.ts <= threshold {
            return Ok(Some(0));
        }
        let oldest = self.words.mask; // capacity - 1 records back is the oldest kept.
        // Gallop back: `newer` is known to be inside the window.
        let mut newer = 0u32;
        let mut older = 1u32;
        loop {
            if self.ts_at(older)? <= threshold {
                break;
            }
            if older == oldest {
                return Ok(None);
            }
            newer = older;
            older = older.saturating_mul(2).min(oldest);
        }
        // Binary search in (newer, older]: ts(newer) > threshold >= ts(older).
        while older - newer > 1 {
            let mid = newer + (older - newer) / 2;
            if self.ts_at(mid)? <= threshold {
                older = mid;
            } else {
                newer = mid;
            }
        }
        Ok(Some(older))
    }

    /// Weight (or requests) of the newest `back` records.
    fn used_by(&self, rule: &Rule, back: u32) -> Result<u64, H::Stop> {
        if rule.requests {
            Ok(u64::from(back))
        } else {
            Ok(u64::from(self.head.cum.wrapping_sub(self.cum_at(back)?)))
        }
    }

    /// Checks every rate at timestamp `t` for a request of `weight`.
    fn check(&self, rules: &[Rule], weight: u64, t: u64) -> Result<Check, H::Stop> {
        let mut refusal: Option<(usize, u64)> = None;
        for (index, rule) in rules.iter().enumerate() {
            let units = rule.units(weight);
            if units == 0 {
                continue;
            }
            let Some(inside) = self.records_after(t.saturating_sub(rule.window))? else {
                return Ok(Check::Corrupt(
                    "the ring does not reach back over the window",
                ));
            };
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

    /// Is the head still the one this view was taken from?
    fn still_current(&self) -> Result<bool, H::Stop> {
        // Acquire: every slot value read above that came from a later lap was written after
        // its writer saw a later head; this fence makes that head visible to the reload.
        fence(Ordering::Acquire);
        self.hook.step()?;
        Ok(self.words.head.load() == self.raw)
    }

    /// Makes sure the head record's slot is filled (I1 for the next record).
    fn ensure_filled(&self) -> Result<Fill, H::Stop> {
        let seq = self.head.seq;
        self.hook.step()?;
        // Acquire: pairs with the Release `fetch_max` of whoever filled slot seq - 1.
        let prev_cum = self
            .words
            .slot(seq.wrapping_sub(1))
            .cum
            .load(Ordering::Acquire);
        let cum = prev_cum.wrapping_add(u64::from(self.head.cum.wrapping_sub(prev_cum as u32)));
        let slot = self.words.slot(seq);
        self.hook.step()?;
        // Acquire: pairs with the Release `fetch_max` in `fill`.
        let slot_ts = slot.ts.load(Ordering::Acquire);
        self.hook.step()?;
        let slot_cum = slot.cum.load(Ordering::Acquire);
        if slot_ts == self.head.ts && slot_cum == cum {
            return Ok(Fill::Ready(cum));
        }
        // Before writing anything derived from `prev_cum`, make sure it came from the state
        // of this head and not from a lap that overwrote slot seq - 1 meanwhile.
        if !self.still_current()? {
            return Ok(Fill::Moved);
        }
        if slot_ts > self.head.ts || slot_cum > cum {
            return Ok(Fill::Corrupt);
        }
        fill(self.words, self.hook, seq, self.head.ts, cum)?;
        Ok(Fill::Ready(cum))
    }
}

/// Writes record `seq`'s values into its slot. Idempotent, and harmless when late.
fn fill<H: Hook>(words: &Words<'_>, hook: &H, seq: u32, ts: u64, cum: u64) -> Result<(), H::Stop> {
    let slot = words.slot(seq);
    hook.step()?;
    // Release: publishes the slot to whoever reads it with acquire in `ensure_filled`, and
    // (through the next commit's compare-exchange) to every reader of later heads.
    slot.ts.fetch_max(ts, Ordering::Release);
    hook.step()?;
    slot.cum.fetch_max(cum, Ordering::Release);
    Ok(())
}

/// Tries to admit `weight` at `now` under `rules`: commits to every rate or to none.
///
/// `rules` must be the rules the ring was sized for (see `layout.rs`).
pub fn acquire<H: Hook>(
    words: &Words<'_>,
    rules: &[Rule],
    now: u64,
    weight: u64,
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
    // With any weight-counting rate the weight is at most its limit (< 2^32, see rate.rs);
    // without one the cumulative weight is never read, so truncation is harmless.
    let charge = weight as u32;
    loop {
        hook.step()?;
        let raw = words.head.load();
        let head = Record::unpack(raw);
        let view = View {
            words,
            hook,
            raw,
            head,
        };
        let t = now.max(head.ts);
        match view.check(rules, weight, t)? {
            Check::Admit => {}
            Check::Deny { rate, retry_at } => {
                if view.still_current()? {
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
        let cum = match view.ensure_filled()? {
            Fill::Ready(cum) => cum,
            Fill::Moved => continue,
            Fill::Corrupt => return Ok(Outcome::Corrupt("a ring slot is ahead of the head")),
        };
        let next = Record {
            ts: t,
            seq: head.seq.wrapping_add(1),
            cum: head.cum.wrapping_add(charge),
        };
        hook.step()?;
        // The commit: AcqRel, so that the slot filled above is published with the new head,
        // and the slots read above belong to the head this compare-exchange replaces.
        if words.head.compare_exchange(raw, next.pack()).is_ok() {
            fill(
                words,
                hook,
                next.seq,
                next.ts,
                cum.wrapping_add(u64::from(charge)),
            )?;
            return Ok(Outcome::Admitted(next));
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
        hook.step()?;
        let raw = words.head.load();
        let head = Record::unpack(raw);
        let view = View {
            words,
            hook,
            raw,
            head,
        };
        let at = now.max(head.ts);
        let mut rates = [RateUse {
            used: 0,
            next_free_at: None,
        }; MAX_RATES];
        for (rule, out) in rules.iter().zip(rates.iter_mut()) {
            let Some(inside) = view.records_after(at.saturating_sub(rule.window))? else {
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

#[cfg(all(test, not(loom)))]
mod tests;
