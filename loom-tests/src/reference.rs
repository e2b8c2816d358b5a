//! The sequential reference model.

use super::*;

/// The sequential sliding-window log the protocol must be indistinguishable from (the same
/// model as `src/protocol/tests.rs`).
#[derive(Debug, Default, Clone)]
pub struct Reference {
    /// `(recorded timestamp, weight)` of every admission, oldest first.
    pub log: Vec<(u64, u64)>,
}

impl Reference {
    pub(crate) fn units(rule: &Rule, weight: u64) -> u64 {
        if rule.requests { 1 } else { weight }
    }

    /// Records with `ts` in `(t - window, t]`, oldest first.
    fn inside(&self, rule: &Rule, t: u64) -> Vec<(u64, u64)> {
        let from = t.saturating_sub(rule.window);
        self.log
            .iter()
            .copied()
            .filter(|&(ts, _)| ts > from && ts <= t)
            .collect()
    }

    fn used(&self, rule: &Rule, t: u64) -> u64 {
        self.inside(rule, t)
            .iter()
            .map(|&(_, w)| Reference::units(rule, w))
            .sum()
    }

    /// What an acquire of `weight` at `now` gets on this log (the log is not changed).
    pub fn answer(&self, rules: &[Rule], now: u64, weight: u64) -> Outcome {
        if let Some(rate) = rules
            .iter()
            .position(|r| Reference::units(r, weight) > r.limit)
        {
            return Outcome::NeverFits { rate };
        }
        if rules.iter().all(|r| Reference::units(r, weight) == 0) {
            return Outcome::Free;
        }
        // As `Record::stamp`: 0 is the sentinel's time, `u64::MAX` the tombstone's.
        let t = now
            .clamp(Record::FIRST_TS, Record::LAST_TS)
            .max(self.log.last().map_or(0, |r| r.0));
        let mut refusal: Option<(usize, u64)> = None;
        for (index, rule) in rules.iter().enumerate() {
            let units = Reference::units(rule, weight);
            if units == 0 || self.used(rule, t) + units <= rule.limit {
                continue;
            }
            // Earliest expiry after which the request fits: drop records oldest first.
            let mut used = self.used(rule, t);
            let mut retry_at = None;
            for (ts, w) in self.inside(rule, t) {
                used -= Reference::units(rule, w);
                if used + units <= rule.limit {
                    retry_at = Some(ts + rule.window);
                    break;
                }
            }
            let retry_at = retry_at.expect("dropping every record makes room");
            if refusal.is_none_or(|(_, at)| retry_at > at) {
                refusal = Some((index, retry_at));
            }
        }
        if let Some((rate, retry_at)) = refusal {
            return Outcome::Denied { rate, retry_at };
        }
        Outcome::Admitted(Record {
            ts: t,
            seq: self.log.len() as u32 + 1,
            cum: self
                .log
                .iter()
                .map(|r| r.1 as u32)
                .fold(weight as u32, u32::wrapping_add),
        })
    }
}
