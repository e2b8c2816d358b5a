//! One mapped file checked against the caller's rates, and one acquire on it.

use std::time::Duration;

use crate::clock::{ClockIdentity, Nanos};
use crate::denied::{DenialKind, Denied, RateCode};
use crate::error::Error;
use crate::layout;
use crate::protocol::{self, Hints, MAX_RATES, Memo, NoHook, Outcome, Rule};
use crate::rate::Rate;
use crate::region::Region;
use crate::sync::{AtomicPair, Ordering, StdAtomicU32};

use super::Stamp;
use super::counters::{self, Refusal, Repeats};

/// A mapped file with its rates, checked against what the caller wants.
#[derive(Debug)]
pub(super) struct Attached {
    pub(super) region: Region,
    pub(super) rules: Vec<Rule>,
    pub(super) rates: Vec<Rate>,
    /// What a denial by each rate is built from (`RateCode`), without a lock.
    pub(super) codes: Vec<RateCode>,
    /// Where each weight rate's window search starts (see `protocol::Hints`); process-local.
    pub(super) hints: [StdAtomicU32; MAX_RATES],
    /// The last denial on this file (`protocol::Memo`, packed), shared by the threads of this
    /// process: one lock-free 16-byte word, so that a thread never reads half of another's.
    pub(super) denial: AtomicPair,
    /// Repeated denials counted per thread before they reach the file's counters.
    pub(super) repeats: Repeats,
}

/// What an admission answers: its stamp ([`Limiter::try_acquire_stamped`]) or nothing
/// ([`Limiter::try_acquire`]). The answer is built where the outcome is known, in the
/// caller's result, so that `try_acquire` does not copy a denial (several words) from one
/// result type into another on the way out.
///
/// [`Limiter::try_acquire`]: super::Limiter::try_acquire
/// [`Limiter::try_acquire_stamped`]: super::Limiter::try_acquire_stamped
pub(super) trait Answer: Sized {
    /// The answer to an admission recorded as `stamp` (`None`: a weight-0 call).
    fn admitted(stamp: Option<Stamp>) -> Self;
}

impl Answer for () {
    #[inline(always)]
    fn admitted(_: Option<Stamp>) {}
}

impl Answer for Option<Stamp> {
    #[inline(always)]
    fn admitted(stamp: Option<Stamp>) -> Self {
        stamp
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // No thread counts on a file that is let go: what they kept goes to the file.
        self.repeats.flush_all(&self.region);
    }
}

impl Attached {
    pub(super) fn check(
        region: Region,
        rules: Option<&[Rule]>,
        identity: &ClockIdentity,
        requested: Option<&[Rate]>,
    ) -> Result<Attached, Error> {
        let header = region.header();
        if let Some(reason) = header.clock.mismatch(identity) {
            return Err(Error::ClockMismatch {
                path: region.path().to_path_buf(),
                reason,
            });
        }
        let file_rates: Vec<Rate> = header
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| Rate::from_rule_with_unit(rule, layout::unit_of(header.labels, i)))
            .collect();
        if let (Some(rules), Some(requested)) = (rules, requested) {
            // The same rates in another order are the same limiter.
            let mut ours = rules.to_vec();
            let mut theirs = header.rules.clone();
            let key = |r: &Rule| (r.window, r.limit, r.requests);
            ours.sort_by_key(key);
            theirs.sort_by_key(key);
            // A unit both sides name must be the same (`90000tok/min` is not `90000B/min`).
            let units_differ = requested.iter().any(|asked| {
                file_rates.iter().any(|found| {
                    found.rule().ok() == asked.rule().ok()
                        && found.unit().is_some()
                        && asked.unit().is_some()
                        && found.unit() != asked.unit()
                })
            });
            if ours != theirs || units_differ {
                return Err(Error::ConfigMismatch {
                    path: region.path().to_path_buf(),
                    file: file_rates,
                    requested: requested.to_vec(),
                    reconfigured: header.lineage.generation,
                });
            }
        }
        Ok(Attached {
            codes: file_rates
                .iter()
                .enumerate()
                .map(|(index, rate)| RateCode::new(index, *rate))
                .collect(),
            rules: header.rules.clone(),
            rates: file_rates,
            region,
            hints: Default::default(),
            denial: AtomicPair::new(Memo::NONE.pack()),
            repeats: Repeats::default(),
        })
    }
}

impl Attached {
    /// Requests rate `rate` refused, by every process, this one's kept repeats included;
    /// `None` if a counter in the file is implausible.
    pub(super) fn denials(&self, rate: usize) -> Option<u64> {
        self.region
            .denials(rate)?
            .checked_add(self.repeats.pending(rate))
    }

    /// One acquire on this file; `None` if the file was retired. A refusal is counted as
    /// `count` says.
    #[inline]
    pub(super) fn try_acquire<A: Answer>(
        &self,
        now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Option<Result<A, Denied>> {
        match self.repeat(now, weight, count) {
            Ok(denied) => Some(Err(denied)),
            Err(memo) => self.unanswered(memo, now, weight, count),
        }
    }

    /// Step 0 of an acquire: the denial of a repeat of the last one, answered by the memo
    /// (`protocol::recall`); otherwise the memo as read, for the rest of the acquire
    /// ([`Attached::unanswered`]).
    #[inline(always)]
    pub(super) fn repeat(
        &self,
        now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Result<Denied, u128> {
        let memo = self.denial.load();
        let Ok(recalled) = protocol::recall(
            &self.region.words(),
            Memo::unpack(memo),
            now,
            weight,
            &NoHook,
        );
        match recalled {
            Some(Outcome::Denied { rate, retry_at }) => {
                if count.is_some() {
                    self.repeats.count(&self.region, rate, now);
                }
                Ok(self.exhausted(rate, retry_at, now))
            }
            _ => Err(memo),
        }
    }

    /// Steps 1 on of an acquire that the memo (`memo`, as [`Attached::repeat`] read it) did
    /// not answer; `None` if the file was retired.
    #[inline(always)]
    pub(super) fn unanswered<A: Answer>(
        &self,
        memo: u128,
        now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Option<Result<A, Denied>> {
        // A call the memo did not answer: this thread's kept repeats go to the file. Only a
        // memo that answered can have kept any, and once stored a memo is only ever replaced
        // by another denial's, so while it is still none there is nothing to send.
        if count.is_some() && memo != Memo::NONE.pack() {
            self.repeats.flush_mine(&self.region, self.rules.len());
        }
        let result = self.decide(&self.region.words(), memo, now, weight)?;
        if let (Err(denied), Some(how)) = (&result, count) {
            counters::count_on(&self.region, denied, how);
        }
        Some(result)
    }

    /// Steps 1 on of `protocol::acquire`, with this process's hints and memo.
    #[inline(always)]
    fn decide<A: Answer>(
        &self,
        words: &protocol::Words<'_>,
        memo: u128,
        now: Nanos,
        weight: u64,
    ) -> Option<Result<A, Denied>> {
        let mut hints = Hints {
            windows: [0; MAX_RATES],
            denial: Memo::NONE,
        };
        // Request rates need no search hint (`protocol::View::count_requests`).
        for (rule, (hint, kept)) in self
            .rules
            .iter()
            .zip(hints.windows.iter_mut().zip(&self.hints))
        {
            if !rule.requests {
                // Relaxed: a search hint; every value is safe.
                *hint = kept.load(Ordering::Relaxed);
            }
        }
        let Ok(outcome) = protocol::acquire(words, &self.rules, now, weight, &mut hints, &NoHook);
        for (rule, (hint, kept)) in self.rules.iter().zip(hints.windows.iter().zip(&self.hints)) {
            // Written only when it moved, so that threads sharing a limiter do not bounce the
            // line for nothing.
            if !rule.requests && kept.load(Ordering::Relaxed) != *hint {
                kept.store(*hint, Ordering::Relaxed);
            }
        }
        // Compared packed, as it is stored: cheaper than `Memo`'s field-by-field `==`.
        let denial = hints.denial.pack();
        if denial != Memo::NONE.pack() {
            // A new denial, remembered from the value this call started from only: a memo
            // another thread stored meanwhile is as good as ours. Every value stored is one
            // `acquire` wrote on this file with these rules.
            let _ = self.denial.compare_exchange(memo, denial);
        }
        Some(match outcome {
            Outcome::Admitted(record) => Ok(A::admitted(Some(Stamp {
                timestamp: record.ts,
                sequence: record.seq,
            }))),
            Outcome::Free => Ok(A::admitted(None)),
            Outcome::Denied { rate, retry_at } => Err(self.exhausted(rate, retry_at, now)),
            Outcome::NeverFits { rate } => {
                let units = if self.rules.get(rate).is_some_and(|r| r.requests) {
                    1
                } else {
                    weight
                };
                Err(match self.codes.get(rate) {
                    Some(code) => code.never_fits(units),
                    None => self.denied(rate, DenialKind::NeverFits { weight: units }),
                })
            }
            Outcome::Corrupt(reason) => Err(self.denied(
                usize::MAX,
                DenialKind::Unavailable {
                    reason: reason.to_string(),
                },
            )),
            Outcome::Retired => return None,
        })
    }

    /// Rate `rate` is full until `retry_at`; counted by the caller, once per refused request
    /// (`counters.rs`).
    #[inline]
    fn exhausted(&self, rate: usize, retry_at: u64, now: Nanos) -> Denied {
        let retry_after = retry_at.saturating_sub(now);
        match self.codes.get(rate) {
            Some(code) => code.exhausted(retry_after),
            None => self.denied(
                rate,
                DenialKind::Exhausted {
                    retry_after: Duration::from_nanos(retry_after),
                },
            ),
        }
    }

    pub(super) fn denied(&self, rate_index: usize, kind: DenialKind) -> Denied {
        Denied::new(rate_index, self.rates.get(rate_index).copied(), kind)
    }
}
