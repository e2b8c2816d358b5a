//! The counters a limiter file keeps for monitoring: refused requests per rate, weights that
//! can never fit, waits that timed out. Statistics only: any value in them is safe.

use crate::error::{DenialKind, Denied, Error};
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
    let tally = match denied.kind() {
        DenialKind::Exhausted { .. } => (how == Refusal::Wait).then_some(Tally::TimedOut),
        DenialKind::NeverFits { .. } => Some(Tally::NeverFits),
        // Not a rate's refusal: the file could not be used.
        _ => return,
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
/// load and store count exactly. It adds its slot to the file's counter, with one
/// `fetch_add`, every [`Repeats::BATCH`] repeats of a rate and at its next call that the
/// memo does not answer; whatever is left is added when the file is let go
/// ([`Repeats::flush_all`], from `Attached`'s drop). So another process reads a count at
/// most `BATCH - 1` behind per thread and rate, and this process reads it exact
/// ([`Repeats::pending`]). Threads past the table's slots count in the file directly.
#[derive(Debug, Default)]
pub(super) struct Repeats {
    slots: [Slot; Repeats::SLOTS],
}

/// One thread's repeats per rate, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot([StdAtomicU64; MAX_RATES]);

impl Repeats {
    /// Threads with a slot of their own.
    const SLOTS: usize = 16;
    /// Repeats of one rate a thread keeps before it adds them to the file.
    pub(super) const BATCH: u64 = 64;

    /// Counts a repeated refusal by rate `rate` of `region`.
    #[inline]
    pub(super) fn count(&self, region: &Region, rate: usize) {
        let Some(slot) = thread_index().and_then(|index| self.slots.get(index)) else {
            // Relaxed: statistics.
            region.denial_counter(rate).fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(kept) = slot.0.get(rate) else {
            return;
        };
        // Relaxed: only this thread writes its slot; readers add it up as statistics.
        let kept_now = kept.load(Ordering::Relaxed) + 1;
        if kept_now >= Repeats::BATCH {
            region
                .denial_counter(rate)
                .fetch_add(kept_now, Ordering::Relaxed);
            kept.store(0, Ordering::Relaxed);
        } else {
            kept.store(kept_now, Ordering::Relaxed);
        }
    }

    /// Adds this thread's kept repeats of the first `rates` rates (the file's) to
    /// `region`'s counters.
    #[inline]
    pub(super) fn flush_mine(&self, region: &Region, rates: usize) {
        if let Some(slot) = thread_index().and_then(|index| self.slots.get(index)) {
            Repeats::flush(&slot.0[..rates.min(MAX_RATES)], region);
        }
    }

    /// Adds every thread's kept repeats to `region`'s counters; for when no thread counts
    /// any more (the file is let go).
    pub(super) fn flush_all(&self, region: &Region) {
        for slot in &self.slots {
            Repeats::flush(&slot.0, region);
        }
    }

    #[inline]
    fn flush(kept_by_rate: &[StdAtomicU64], region: &Region) {
        for (rate, kept) in kept_by_rate.iter().enumerate() {
            // Relaxed: as in `count`.
            if kept.load(Ordering::Relaxed) != 0 {
                let repeats = kept.swap(0, Ordering::Relaxed);
                region
                    .denial_counter(rate)
                    .fetch_add(repeats, Ordering::Relaxed);
            }
        }
    }

    /// Repeats of rate `rate` kept by this process's threads, not in the file yet.
    pub(super) fn pending(&self, rate: usize) -> u64 {
        self.slots
            .iter()
            .filter_map(|slot| slot.0.get(rate))
            // Relaxed: statistics.
            .map(|kept| kept.load(Ordering::Relaxed))
            .sum()
    }
}
