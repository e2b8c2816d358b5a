//! The counters a limiter file keeps for monitoring: refused requests per rate, weights that
//! can never fit, waits that timed out. Statistics only: any value in them is safe.

use crate::error::{DenialKind, Denied, Error};
use crate::layout::Tally;
use crate::region::Region;
use crate::sync::Ordering;

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
                .map(|i| region.denials(i))
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
