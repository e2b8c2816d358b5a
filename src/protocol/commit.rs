//! The operations that commit: `acquire` (with `recall`, its step 0, and `raise_hint`) and
//! `retire`.

use super::{
    Check, Head, Hints, Hook, Memo, Outcome, Record, Rule, Seen, View, Words, broken, find_head,
};
use crate::sync::Ordering;

/// Tries to admit `weight` at `now` under `rules`: commits to every rate or to none.
///
/// `rules` must be the rules the ring was sized for (see `layout.rs`). `hints` carries each
/// weight rate's window boundary and the last denial from one call to the next (start with
/// [`Hints::default`]; see [`Hints`] for what values are safe). A repeat of the last denial
/// (same weight, before its retry time) is answered by one load if nothing was committed
/// since (step 0 in the code).
#[inline(always)]
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
pub(super) fn raise_hint<H: Hook>(words: &Words<'_>, seq: u32, hook: &H) -> Result<(), H::Stop> {
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
