//! The memo of the last denial (`Memo`): what lets a repeat of it cost one load
//! ([`recall`](super::recall)).

use super::{MAX_RATES, Record, broken};

/// The last denial a caller got, so that a repeat of it before its retry time costs one load
/// (see [`acquire`]'s step 0). Process-local, packed into 16 bytes so that threads sharing a
/// limiter can keep it in one lock-free word:
///
/// | bits     | field      | meaning                                                    |
/// |----------|------------|------------------------------------------------------------|
/// | 0..64    | `retry_at` | when the request first fits (file clock, ns)               |
/// | 64..96   | `head`     | sequence number of the newest record it was computed on    |
/// | 96..124  | `weight`   | the weight asked for (a weight of 2^28 or more is not kept) |
/// | 124..128 | `rate`     | the refusing rate's index + 1; 0 for no memo               |
///
/// [`acquire`]: super::acquire
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    retry_at: u64,
    pub(super) head: u32,
    weight: u32,
    rate: u8,
}

impl Memo {
    /// No denial remembered.
    pub const NONE: Memo = Memo {
        retry_at: 0,
        head: 0,
        weight: 0,
        rate: 0,
    };

    /// The largest weight a memo keeps (28 bits).
    pub(super) const MAX_WEIGHT: u64 = (1 << 28) - 1;

    /// The denial of `weight` by rate `rate` with `retry_at`, computed on head `head`; none
    /// if the weight or the rate index does not fit the packing.
    pub(super) fn of(head: u32, weight: u64, rate: usize, retry_at: u64) -> Memo {
        if weight > Memo::MAX_WEIGHT || rate >= MAX_RATES {
            return Memo::NONE;
        }
        Memo {
            retry_at,
            head,
            weight: weight as u32,
            rate: rate as u8 + 1,
        }
    }

    /// Packs the memo into 16 bytes.
    pub fn pack(self) -> u128 {
        u128::from(self.retry_at)
            | (u128::from(self.head) << 64)
            | (u128::from(self.weight) << 96)
            | (u128::from(self.rate) << 124)
    }

    /// Unpacks what [`Memo::pack`] packed.
    #[inline]
    pub fn unpack(word: u128) -> Memo {
        Memo {
            retry_at: word as u64,
            head: (word >> 64) as u32,
            weight: (word >> 96) as u32 & Memo::MAX_WEIGHT as u32,
            rate: (word >> 124) as u8,
        }
    }

    /// The remembered denial, if it answers a request of `weight` at `now`, provided that
    /// the memo's head is still the newest record; `(rate, retry_at)`.
    #[inline]
    pub(super) fn answers(self, now: u64, weight: u64) -> Option<(usize, u64)> {
        // BROKEN (loom tests only): the memo outlives its retry time.
        let in_time = broken::is(broken::Variant::MemoIgnoresRetryTime)
            || now.clamp(Record::FIRST_TS, Record::LAST_TS) < self.retry_at;
        (self.rate != 0 && u64::from(self.weight) == weight && in_time)
            .then(|| (usize::from(self.rate - 1), self.retry_at))
    }
}
