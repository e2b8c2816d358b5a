//! Finding the newest record: the walk from the hint (`find_head`) and what each slot it reads
//! means (`Seen`).

use super::{Hook, Record, Words, broken};
use crate::sync::Ordering;

/// How far (in records) one walk for the newest record may travel before the ring is called
/// corrupt: half the sequence space, the most that sequence numbers mod 2^32 can order.
///
/// In a consistent ring a walk travels at most `capacity - 1` records plus those committed
/// while it walks (see [`find_head`]), and the protocol already assumes that fewer than 2^31
/// commits overtake one call (the compare-exchange's no-ABA argument needs fewer than 2^32).
pub(super) const MAX_TRAVEL: u64 = 1 << 31;

/// Result of looking for the newest record.
pub(super) enum Head {
    /// The newest record, and the raw value of the slot after it (its previous lap).
    Found(Record, u128),
    /// Slots that no consistent state explains.
    Corrupt,
}

/// What the slot after the walk's current record holds, relative to the record expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// The next record: walk on.
    Next,
    /// The expected record's previous lap: the current record is the newest.
    PreviousLap,
    /// Another lap of the expected record: a later lap if the walk was overtaken, an older
    /// one if garbage.
    OtherLap,
    /// A record that belongs to another slot: garbage.
    OtherSlot,
}

impl Seen {
    /// Classifies record number `next`, found in the slot after record `seq` of a ring with
    /// `mask = capacity - 1`.
    pub(super) fn of(seq: u32, next: u32, mask: u32) -> Seen {
        let ahead = next.wrapping_sub(seq.wrapping_add(1));
        if ahead == 0 {
            Seen::Next
        } else if ahead & mask != 0 {
            Seen::OtherSlot
        } else if ahead == (mask + 1).wrapping_neg() {
            Seen::PreviousLap
        } else {
            Seen::OtherLap
        }
    }
}

/// Finds the newest committed record, starting from the hint.
///
/// The walk starts at the record the hinted slot holds and reads, at each step, the slot
/// after the current record `s` ([`Seen`] names the cases). Why each case means what it
/// says, in a consistent ring:
///
/// * Every record a slot holds was committed (or is a fake of the new ring, committed
///   "before" the sentinel), and walking forward from a committed record reaches the newest.
/// * Slot `s + 1` holds at least record `s + 1 - capacity`: that record was committed before
///   record `s` (commits go in sequence order, each compare-exchange reading its
///   predecessor's slot), the load that saw record `s` happens after `s` was committed, and a
///   slot's sequence number only grows, a lap at a time. So a lap older than the previous one
///   is garbage, and so is a record that belongs to another slot.
/// * A later lap `L = s + 1 + j * capacity` means at least a lap of commits overtook the walk
///   between its two loads. `L` was committed, so the newest record is at or after it: the
///   walk continues from `L` (where restarting from the hint would walk again what it has
///   seen, and a second lap of commits could send it back again).
///
/// **Bounded, whatever the file holds.** Each step moves the walk forward by at least one
/// record, and it reads the slots in index order, one after the other. Consider the two reads
/// of the same slot `capacity` steps apart: if nothing wrote that slot in between, they read
/// the same record, so the steps in between travelled a positive multiple of 2^32 records,
/// at least [`MAX_TRAVEL`]: the walk stops as corrupt. So a walk takes at most
/// `capacity + 1` slot loads on a ring that nobody writes meanwhile (a walk that sees again
/// exactly what it saw before is garbage, not contention), and every step beyond that reads
/// a slot that was written during the walk: a call is delayed only by what other processes
/// write, as lock-freedom allows. In a consistent ring the walk travels at most
/// `capacity - 1` records (from a record of the last lap when it was read to the newest) plus
/// those committed while it walks, far below [`MAX_TRAVEL`]: the bound never fires on a
/// consistent ring.
#[inline(always)]
pub(super) fn find_head<H: Hook>(words: &Words<'_>, hook: &H) -> Result<Head, H::Stop> {
    hook.step()?;
    // Acquire: the hint names a record committed before it was stored; pairs with the
    // Release store in `raise_hint`.
    let hint = words.hint.load(Ordering::Acquire) as u32;
    hook.step()?;
    let mut head = Record::unpack(words.slot(hint).load());
    if head.seq.wrapping_sub(hint) & words.mask != 0 {
        // The hinted slot holds a record that does not belong in it: garbage.
        return Ok(Head::Corrupt);
    }
    if broken::is(broken::Variant::TrustHint) {
        // BROKEN (loom tests only): the hinted record taken as the newest, no walk.
        hook.step()?;
        return Ok(Head::Found(
            head,
            words.slot(head.seq.wrapping_add(1)).load(),
        ));
    }
    let mut travelled = 0u64;
    loop {
        hook.step()?;
        let next_raw = words.slot(head.seq.wrapping_add(1)).load();
        let next = Record::unpack(next_raw);
        match Seen::of(head.seq, next.seq, words.mask) {
            Seen::PreviousLap => return Ok(Head::Found(head, next_raw)),
            Seen::OtherSlot => return Ok(Head::Corrupt),
            seen => {
                // Forward to `next`: the next record, or laps further (overtaken). An older
                // lap is "negative", more than 2^31 records ahead mod 2^32: garbage, which
                // the travel bound reports at once.
                travelled += u64::from(next.seq.wrapping_sub(head.seq));
                if travelled >= MAX_TRAVEL {
                    return Ok(Head::Corrupt);
                }
                if seen == Seen::OtherLap {
                    if broken::is(broken::Variant::OvertakenIsCorrupt) {
                        // BROKEN (loom tests only): contention taken for garbage.
                        return Ok(Head::Corrupt);
                    }
                    hook.overtaken();
                }
                head = next;
            }
        }
    }
}
