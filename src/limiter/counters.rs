//! The counters a limiter file keeps for monitoring: refused requests per rate, weights that
//! can never fit, waits that timed out. Statistics only: any value in them is safe.

use crate::denied::Denied;
use crate::error::Error;
use crate::layout::Tally;
use crate::protocol::MAX_RATES;
use crate::region::{Region, thread_index};
use crate::sync::{Ordering, StdAtomicU64};

use super::FileLimiter;
#[cfg(doc)]
use super::Limiter;

/// What the counters of a limiter file say, from [`Limiter::counters`]. Every process that
/// uses the file adds to them, from its creation (or its last reset) on.
///
/// A counter that holds a value no real use could reach (garbage written into the file) is
/// `None`, rather than a number that means nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Per rate, in the file's order: requests this rate refused. A request is counted once,
    /// when it is finally refused: a waiting acquire that is admitted in the end is not a
    /// denial, one that gives up is one. A weight that can never fit counts against the rate
    /// whose limit it exceeds.
    ///
    /// Exact for the process that reads them. A repeat of a denial (same weight, before its
    /// retry time) is kept by its thread for a moment before it reaches the file: another
    /// process sees a thread that keeps being refused at most 20 ms late, and one that
    /// stopped calling at most 63 refusals per rate short until its next call or until its
    /// limiter is dropped.
    pub denied: Vec<Option<u64>>,
    /// Requests refused because their weight can never fit a limit (also in `denied`).
    pub never_fits: Option<u64>,
    /// Waiting acquires that gave up because they could not be admitted within their timeout
    /// (also in `denied`).
    pub timed_out: Option<u64>,
}

impl Counters {
    /// Refused requests over all rates; `None` if a counter is implausible.
    pub fn denied_total(&self) -> Option<u64> {
        self.denied
            .iter()
            .try_fold(0u64, |total, count| total.checked_add((*count)?))
    }
}

/// How a request came to be refused, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// One try, refused.
    Try,
    /// A waiting acquire that gave up.
    Wait,
}

impl FileLimiter {
    /// The file's counters now.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub(super) fn counters(&self) -> Result<Counters, Error> {
        // Follows a reset to the new file, as `usage` does.
        self.admitted()?;
        let attached = self.attached.get();
        let region = &attached.region;
        Ok(Counters {
            denied: (0..attached.rules.len())
                .map(|i| attached.denials(i))
                .collect(),
            never_fits: region.tally(Tally::NeverFits),
            timed_out: region.tally(Tally::TimedOut),
        })
    }

    /// Counts a request refused for good (never for an inner try of a waiting acquire).
    #[cold]
    pub(super) fn count_refusal(&self, denied: &Denied, how: Refusal) {
        count_on(&self.attached.get().region, denied, how);
    }
}

/// Counts a refusal in `region`'s counters (the file that refused, still pinned by the
/// caller: one pin per call, not two).
#[inline]
pub(super) fn count_on(region: &Region, denied: &Denied, how: Refusal) {
    let tally = if denied.is_exhausted() {
        (how == Refusal::Wait).then_some(Tally::TimedOut)
    } else if denied.is_never_fits() {
        Some(Tally::NeverFits)
    } else {
        // Not a rate's refusal: the file could not be used.
        return;
    };
    // Relaxed: statistics; no other memory depends on them.
    region
        .denial_counter(denied.rate_index())
        .fetch_add(1, Ordering::Relaxed);
    if let Some(tally) = tally {
        region.tally_counter(tally).fetch_add(1, Ordering::Relaxed);
    }
}

/// Repeated denials (those the memo answers, `protocol::recall`) counted per thread before
/// they reach the file: a repeat then costs no locked read-modify-write, which is most of
/// what it would cost otherwise. Process-local, one cache line per thread slot.
///
/// A thread owns slot [`thread_index`] (no other live thread has that index), so its own
/// load and store count exactly. It adds its slot to the file's counters, with one
/// `fetch_add` per rate, once a rate has [`Repeats::BATCH`] repeats kept or the oldest kept
/// repeat is [`Repeats::LAG`] old, and at its next call that the memo does not answer;
/// whatever is left is added when the file is let go ([`Repeats::flush_all`], from
/// `Attached`'s drop). So while a thread keeps being refused, another process (`hostlimit
/// top`, `status`) reads its count at most `LAG` late; a thread that stops calling leaves at
/// most `BATCH - 1` per rate unseen by others until its next call. This process reads its
/// counts exact ([`Repeats::pending`]). Threads past the table's slots count in the file
/// directly.
#[derive(Debug, Default)]
pub(super) struct Repeats {
    slots: [Slot; Repeats::SLOTS],
}

/// One thread's repeats per rate, and when (file clock) the oldest of them was kept (0 for
/// none kept); its own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    kept: [StdAtomicU64; MAX_RATES],
    since: StdAtomicU64,
}

impl Repeats {
    /// Threads with a slot of their own.
    const SLOTS: usize = 16;
    /// Repeats of one rate a thread keeps before it adds them to the file.
    pub(super) const BATCH: u64 = 64;
    /// How long (ns) a thread keeps repeats before it adds them to the file, at its next
    /// repeat: well under the shortest interval of `hostlimit top` and `watch` (100 ms).
    pub(super) const LAG: u64 = 20_000_000;

    /// Counts a repeated refusal by rate `rate` of `region`, at `now` (file clock).
    #[inline]
    pub(super) fn count(&self, region: &Region, rate: usize, now: u64) {
        let Some(slot) = thread_index().and_then(|index| self.slots.get(index)) else {
            // Relaxed: statistics.
            region.denial_counter(rate).fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(kept) = slot.kept.get(rate) else {
            return;
        };
        // Relaxed: only this thread writes its slot; readers add it up as statistics.
        let since = slot.since.load(Ordering::Relaxed);
        let kept_now = kept.load(Ordering::Relaxed) + 1;
        kept.store(kept_now, Ordering::Relaxed);
        if since == 0 {
            slot.since.store(now.max(1), Ordering::Relaxed);
        } else if kept_now >= Repeats::BATCH || now.saturating_sub(since) >= Repeats::LAG {
            Repeats::flush(slot, region, MAX_RATES);
        }
    }

    /// Adds this thread's kept repeats of the first `rates` rates (the file's) to
    /// `region`'s counters.
    #[inline]
    pub(super) fn flush_mine(&self, region: &Region, rates: usize) {
        if let Some(slot) = thread_index().and_then(|index| self.slots.get(index))
            // Relaxed: as in `count`.
            && slot.since.load(Ordering::Relaxed) != 0
        {
            Repeats::flush(slot, region, rates);
        }
    }

    /// Adds every thread's kept repeats to `region`'s counters; for when no thread counts
    /// any more (the file is let go).
    pub(super) fn flush_all(&self, region: &Region) {
        for slot in &self.slots {
            Repeats::flush(slot, region, MAX_RATES);
        }
    }

    /// Adds `slot`'s kept repeats of the first `rates` rates to `region`'s counters, and
    /// marks the slot empty.
    fn flush(slot: &Slot, region: &Region, rates: usize) {
        for (rate, kept) in slot.kept.iter().enumerate().take(rates) {
            // Relaxed: as in `count`.
            let repeats = kept.load(Ordering::Relaxed);
            if repeats != 0 {
                kept.store(0, Ordering::Relaxed);
                region
                    .denial_counter(rate)
                    .fetch_add(repeats, Ordering::Relaxed);
            }
        }
        slot.since.store(0, Ordering::Relaxed);
    }

    /// Repeats of rate `rate` kept by this process's threads, not in the file yet.
    pub(super) fn pending(&self, rate: usize) -> u64 {
        self.slots
            .iter()
            .filter_map(|slot| slot.kept.get(rate))
            // Relaxed: statistics.
            .map(|kept| kept.load(Ordering::Relaxed))
            .sum()
    }
}
