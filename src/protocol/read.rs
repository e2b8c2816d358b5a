//! Reading the log without changing it: every rate's use (`usage`) and the journal's walk over
//! the records committed since a given one (`records_since`).

use super::{Head, Hook, MAX_RATES, Record, Rule, View, Words, find_head};

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
    ///
    /// [`retire`]: super::retire
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
