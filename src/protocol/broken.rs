//! Deliberately broken variants of this protocol, for `loom-tests/` only.
//!
//! The loom tests switch one variant on at a time (on the OS thread that runs the model: loom
//! runs every modelled thread there) to show that each invariant check catches a real bug.
//! The protocol consults [`is`] at a few points, each marked `BROKEN (loom tests only)`; outside
//! `--cfg loom` [`is`] is a constant `false` (inlined), so production never takes these paths.

use super::{Hook, Record};
use crate::sync::AtomicPair;

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
