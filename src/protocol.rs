//! The commit protocol: one log of admissions, every rate a sliding window over it.
//!
//! This module does no I/O, never reads the clock and never allocates. It works on words it
//! borrows ([`Words`]): in production they live in the shared mapping, in the loom models and
//! the Miri tests on the heap. Time comes in as `now` (nanoseconds of the file's clock).
//!
//! # The algorithm
//!
//! This is "one log, every rate a window over it" (option 1 of `DESIGN-NOTES.md`): a ring of
//! 128-bit records, where a commit is a single compare-exchange of the next slot that carries
//! all of the record's data.
//!
//! * **The ring** ([`Words::new`]: `capacity` [`AtomicPair`] slots, a power of two). Record
//!   `k` lives in slot `k mod capacity` as its timestamp, its sequence number (mod 2^32) and
//!   the cumulative weight of records `0..=k` (mod 2^32). Record 0 is a sentinel (timestamp 0,
//!   weight 0); a new file holds, in slot `k`, a fake record `k - capacity` with timestamp 0
//!   and weight 0. Admissions are recorded at timestamps 1 or later ([`Record::FIRST_TS`]),
//!   so time 0 is before every admission and no window ever counts a record there, whatever
//!   the clock reads (0 included).
//! * **The hint** (an `AtomicU64`): the sequence number of a recently committed record. It only
//!   saves walking; any value is safe. A second word counts how often the sequence number
//!   wrapped, for 64-bit totals.
//!
//! **State.** The newest record `n` is the one whose slot holds `n` while the next slot still
//! holds `n + 1 - capacity` (its previous lap). Slots hold records `n - capacity + 1 ..= n`.
//!
//! An acquire:
//! 0. answers a repeat of the caller's last denial (same weight, before its retry time) with
//!    one load: if slot `head + 1` of the denial's head still holds its previous lap, nothing
//!    was committed since and the denial stands, linearized at that load ([`recall`] has the
//!    argument); otherwise:
//! 1. finds the newest record `n`: from the hint, walks forward while the next slot holds the
//!    next record, and keeps the raw value of slot `n + 1` (record `n + 1 - capacity`);
//! 2. takes `t = max(now, n.ts)` (`now` kept within `1..=2^64 - 2`, [`Record::stamp`]): the
//!    timestamp it will record;
//! 3. for every rate finds the newest record with `ts <= t - window` (galloping from a
//!    per-rate hint) and so the weight inside `(t - window, t]`, unless the weight after
//!    the hinted record, when it lies one to two windows back, already leaves room
//!    (`View::bound_from_hint`); a request-counting rate
//!    needs no search: one load of the record `limit - 1` places back says whether one more
//!    request fits (`View::count_requests` has the argument);
//! 4. if some rate cannot take the request, reloads slot `n + 1`: unchanged means nothing was
//!    committed meanwhile, so the answer was computed on one state, and the denial
//!    linearizes at that reload;
//! 5. otherwise compare-exchanges slot `n + 1` from record `n + 1 - capacity` to the new
//!    record `n + 1`: **that compare-exchange is the linearization point and the whole
//!    commit**, for every rate at once. Then it raises the hint (a plain store).
//!
//! Why the answer is exact: overwriting any slot read in step 3 means committing a record
//! after `n`, which first needs slot `n + 1` to hold record `n + 1`. If the compare-exchange
//! in step 5 (or the reload in step 4) finds slot `n + 1` still holding its previous lap, no
//! record after `n` exists, so every slot read held the record it was read as. A slot's
//! sequence number only grows, by `capacity` per lap, so the previous-lap value never comes
//! back (no ABA short of 2^32 admissions within one timestamp). The ring is sized (see
//! `layout.rs`) to reach back past the longest window; a ring that does not (garbage in the
//! file) gives [`Outcome::Corrupt`], never a guess.
//!
//! Progress: a process that dies or stops anywhere holds nothing. Before its compare-exchange
//! it has written nothing; after it, the record is complete, and at worst the hint is stale,
//! which costs the next caller a step of walking. A failed compare-exchange means another
//! caller committed: the system as a whole always progresses (lock-freedom).
//!
//! # What the guarantee is stated in
//!
//! Recorded timestamps: a record's timestamp is `max(clock read by the caller, previous
//! record's timestamp)`, so timestamps never decrease along the log, and each lies between the
//! caller's clock read and the real moment of its commit. For every rate and every `t`, the
//! weight of the records with timestamps in `(t - window, t]` never exceeds the limit: the
//! newest record inside any window was checked, at its commit, against a window that held
//! every older record inside it. (A clock reading of exactly 0 is recorded as 1 and one of
//! `u64::MAX` as `u64::MAX - 1`: 0 is the time of the sentinel and `u64::MAX` the tombstone's.
//! Any clock value is legal input.)
//!
//! # Where the code is
//!
//! Each concern in a file of its own, in reading order: the records, the words and what an
//! acquire is told and answers (`records`), the memo of the last denial (`memo`), finding the
//! newest record (`head`), the window searches and the check of every rate on one state
//! (`view`), the operations that commit (`commit`: `acquire`, `recall`, `retire`), reading
//! without changing anything (`read`: `usage`, `records_since`), and the deliberately broken
//! variants for the loom models (`broken`). Every public item is re-exported here: its path
//! is `protocol::NAME`, whichever file it is in.
//!
//! [`AtomicPair`]: crate::sync::AtomicPair

mod commit;
mod head;
mod memo;
mod read;
mod records;
mod view;
// Deliberately broken variants: loom tests only. Nothing in the other files changes behaviour
// unless a loom test switched a variant on; outside `--cfg loom`, `broken::is` is `false`.
#[doc(hidden)]
pub mod broken;

pub use commit::{acquire, recall, retire};
pub use memo::Memo;
pub use read::{RETIRED, Since, Usage, records_since, usage};
pub use records::{Hints, Hook, MAX_RATES, NoHook, Outcome, Record, Rule, Words};
#[allow(
    unused_imports,
    reason = "no other module of the crate names them: `RateUse` is the type of `Usage::rates` \
              (the tests name it), `MAX_CAPACITY` the largest ring `Words::new` takes"
)]
pub use {read::RateUse, records::MAX_CAPACITY};

// What the files share, private to the protocol (and its tests).
use head::{Head, Seen, find_head};
use view::{Check, View};

#[cfg(all(test, not(loom)))]
mod tests;
