//! The log as seen from one newest record (`View`): the window searches, the one-load answers
//! (a request rate's, a weight rate's bound from its hint) and the check of every rate.

use super::{Hints, Hook, Record, Rule, Words, broken};

/// Result of checking every rate against one state.
pub(super) enum Check {
    Admit,
    Deny { rate: usize, retry_at: u64 },
    Corrupt(&'static str),
}

/// The log as seen from one newest record.
pub(super) struct View<'w, 'a, H> {
    pub(super) words: &'w Words<'a>,
    pub(super) hook: &'w H,
    pub(super) head: Record,
    /// Raw value of the slot after the head (record head.seq + 1 - capacity).
    pub(super) next_raw: u128,
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
    pub(super) fn ts_at(&self, back: u32) -> Result<u64, H::Stop> {
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
    pub(super) fn records_after(&self, threshold: u64, hint: u32) -> Result<Option<u32>, H::Stop> {
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
    pub(super) fn used_by(&self, rule: &Rule, back: u32) -> Result<u64, H::Stop> {
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
    pub(super) fn check(
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
    pub(super) fn still_current(&self) -> Result<bool, H::Stop> {
        self.hook.step()?;
        Ok(self.words.slot(self.head.seq.wrapping_add(1)).load() == self.next_raw)
    }
}
