//! Denials ([`Denied`], [`DenialKind`]): a refused request is a value, not an error.
//!
//! # Why a denial is two words
//!
//! A denial is what the hot path returns most often under load, so `Result<(), Denied>`
//! is kept to 16 bytes, which the calling convention returns in two registers.
//! Before, a denial carried its rate and its kind by value (72 bytes, returned through
//! memory): a caller that moved the result (`?`, a `black_box`, a store) read it back with
//! 16-byte loads from the callee's narrower stores, which the CPU cannot forward, and that
//! stall cost as much as the rest of a repeated denial.
//!
//! So a denial is one 128-bit scalar (a single scalar, not a pair: a caller that spills it
//! stores and reloads it in the same halves, which forward) holding a number (the retry
//! time in ns, or the weight that never fits) and a code: the kind, the rate's index (a
//! limiter has at most 8 rates; the byte holds up to 254), and the rate as an id into a
//! process-wide table of the rates limiters were opened with ([`RateId`], interned once per
//! distinct rate when a limiter is opened, never freed: bounded by the distinct rates a
//! process uses). The rare kinds that carry a message (an unusable file, an unreachable
//! server) keep it in a process-wide table too, under a key held in the number, removed
//! when the denial is dropped. Everything stays safe Rust: no pointer is hidden in an
//! integer.

use std::collections::HashMap;
use std::fmt;
use std::num::{NonZeroU64, NonZeroU128};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::rate::Rate;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialKind {
    /// The rate is full now; the request could fit after `retry_after`.
    Exhausted {
        /// How long until the request could first fit, given what was admitted so far.
        retry_after: Duration,
    },
    /// The weight is larger than the rate's limit: it can never be admitted.
    NeverFits {
        /// The weight asked for (or 1 for a rate that counts requests).
        weight: u64,
    },
    /// The Redis server could not be reached, or did not answer within the call's timeout,
    /// and the outage policy is to deny (the default): nothing was admitted on the server.
    /// Retrying can help once the server is back; no retry time is known.
    Unreachable {
        /// What went wrong.
        reason: String,
    },
    /// The shared state could not be trusted (garbage in the file, or the file was replaced
    /// by one that cannot be attached); nothing was admitted.
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// A request that was not admitted: which rate refused, and whether and when to retry.
///
/// A denial changes nothing in the shared state.
// Packed: the low 64 bits are the number (`Code::EXHAUSTED`: the retry time in ns;
// `Code::NEVER_FITS`: the weight; a kind with a message: its key in `MESSAGES`), the high 64
// bits the code (the kind, the rate's index and the rate's id, see `Code`), which is never 0,
// so neither is the whole and `Result<(), Denied>` needs no more room.
pub struct Denied(NonZeroU128);

/// How a denial's code is packed: bits 0..8 the kind (never 0, so the code is never 0),
/// bits 8..16 the rate's index ([`Code::NO_INDEX`] for none), bits 32..64 the rate's
/// [`RateId`] (0 for none).
struct Code;

impl Code {
    const EXHAUSTED: u64 = 1;
    const NEVER_FITS: u64 = 2;
    const UNREACHABLE: u64 = 3;
    const UNAVAILABLE: u64 = 4;
    /// The index of a denial that no rate made (`rate_index()` is `usize::MAX`).
    const NO_INDEX: u64 = 0xff;

    /// The code of a denial of `kind` (one of the kinds above) with `rate` (see
    /// [`Code::rate`]).
    #[inline(always)]
    fn pack(kind: u64, rate: u64) -> NonZeroU64 {
        // Never 0: no kind is (the `MIN` is never taken).
        NonZeroU64::new(kind | rate).unwrap_or(NonZeroU64::MIN)
    }

    /// The bits of a code that name the rate: its index and id.
    fn rate(rate_index: usize, rate: Option<RateId>) -> u64 {
        let index = u64::try_from(rate_index)
            .ok()
            .filter(|&index| index < Code::NO_INDEX)
            .unwrap_or(Code::NO_INDEX);
        let id = rate.map_or(0, |id| u64::from(id.0.get()));
        (index << 8) | (id << 32)
    }
}

/// A rate's place in the process-wide table of rates (its index + 1), for a denial to name
/// it in 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateId(std::num::NonZeroU32);

/// The rates denials name, each once: an append-only list (a rate's id is its place + 1)
/// and its index.
#[derive(Default)]
struct Rates {
    list: Vec<Rate>,
    ids: HashMap<Rate, RateId>,
}

static RATES: Mutex<Option<Rates>> = Mutex::new(None);

/// The messages of live denials of the kinds that carry one, by key.
static MESSAGES: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);
static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(0);

impl RateId {
    /// The id of `rate`, added to the table if it is new; `None` past 2^32 - 1 distinct
    /// rates (the denial then names no rate).
    pub(crate) fn of(rate: Rate) -> Option<RateId> {
        let mut table = RATES.lock().unwrap_or_else(PoisonError::into_inner);
        let rates = table.get_or_insert_with(Rates::default);
        if let Some(id) = rates.ids.get(&rate) {
            return Some(*id);
        }
        let id = RateId(
            u32::try_from(rates.list.len() + 1)
                .ok()
                .and_then(std::num::NonZeroU32::new)?,
        );
        rates.list.push(rate);
        rates.ids.insert(rate, id);
        Some(id)
    }

    fn rate(self) -> Option<Rate> {
        let table = RATES.lock().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(self.0.get() - 1).ok()?;
        table.as_ref()?.list.get(index).copied()
    }
}

/// What the hot path keeps per rate to build its denials without a lock: the rate's index
/// and id, packed once when the file is attached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateCode(u64);

impl RateCode {
    /// The code for denials by rate number `rate_index`, `rate`.
    pub(crate) fn new(rate_index: usize, rate: Rate) -> RateCode {
        RateCode(Code::rate(rate_index, RateId::of(rate)))
    }

    /// "Full for `retry_after_ns` more nanoseconds".
    #[inline(always)]
    pub(crate) fn exhausted(self, retry_after_ns: u64) -> Denied {
        self.denial(Code::EXHAUSTED, retry_after_ns)
    }

    /// "`weight` can never fit" (1 for a rate that counts requests).
    #[inline]
    pub(crate) fn never_fits(self, weight: u64) -> Denied {
        self.denial(Code::NEVER_FITS, weight)
    }

    #[inline(always)]
    fn denial(self, kind: u64, value: u64) -> Denied {
        Denied::of(value, Code::pack(kind, self.0))
    }
}

impl Denied {
    /// A denial of `kind` by rate number `rate_index`, `rate` (`usize::MAX` and `None` when
    /// no rate made it). Takes a lock (the rate's id, a message's table): for the paths
    /// that do not repeat; the hot one uses [`RateCode`].
    pub(crate) fn new(rate_index: usize, rate: Option<Rate>, kind: DenialKind) -> Denied {
        let id = rate.and_then(RateId::of);
        let (kind, value) = match kind {
            DenialKind::Exhausted { retry_after } => (
                Code::EXHAUSTED,
                u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX),
            ),
            DenialKind::NeverFits { weight } => (Code::NEVER_FITS, weight),
            DenialKind::Unreachable { reason } => (Code::UNREACHABLE, keep(reason)),
            DenialKind::Unavailable { reason } => (Code::UNAVAILABLE, keep(reason)),
        };
        Denied::of(value, Code::pack(kind, Code::rate(rate_index, id)))
    }

    #[inline(always)]
    fn of(value: u64, code: NonZeroU64) -> Denied {
        // Never 0: the code is not (the `MIN` is never taken).
        let code = NonZeroU128::new(u128::from(code.get()) << 64).unwrap_or(NonZeroU128::MIN);
        Denied(code | u128::from(value))
    }

    /// The number: a retry time, a weight or a message's key, as the kind says.
    #[inline(always)]
    fn value(&self) -> u64 {
        self.0.get() as u64
    }

    #[inline(always)]
    fn code(&self) -> u64 {
        (self.0.get() >> 64) as u64
    }

    /// Whether a rate was full (the kind, without building it).
    #[inline]
    pub(crate) fn is_exhausted(&self) -> bool {
        self.kind_code() == Code::EXHAUSTED
    }

    /// Whether the weight can never fit a rate (the kind, without building it).
    #[inline]
    pub(crate) fn is_never_fits(&self) -> bool {
        self.kind_code() == Code::NEVER_FITS
    }

    #[inline(always)]
    fn kind_code(&self) -> u64 {
        self.code() & 0xff
    }

    #[inline(always)]
    fn has_message(&self) -> bool {
        matches!(self.kind_code(), Code::UNREACHABLE | Code::UNAVAILABLE)
    }

    /// How long until the request could first be admitted, or `None` if it never can
    /// (weight above a limit, or an unusable file).
    ///
    /// Computed from the admission log, exactly: the moment enough of the refusing rate's
    /// admissions leave its window (other processes may of course take that room first).
    pub fn retry_after(&self) -> Option<Duration> {
        (self.kind_code() == Code::EXHAUSTED).then(|| Duration::from_nanos(self.value()))
    }

    /// The refusing rate, if a rate refused.
    pub fn rate(&self) -> Option<Rate> {
        let id = u32::try_from(self.code() >> 32).ok()?;
        RateId(std::num::NonZeroU32::new(id)?).rate()
    }

    /// Index of the refusing rate in the limiter's configuration (`usize::MAX` when no rate
    /// refused).
    pub fn rate_index(&self) -> usize {
        match (self.code() >> 8) & 0xff {
            Code::NO_INDEX => usize::MAX,
            index => index as usize,
        }
    }

    /// Why the request was refused.
    pub fn kind(&self) -> DenialKind {
        match self.kind_code() {
            Code::EXHAUSTED => DenialKind::Exhausted {
                retry_after: Duration::from_nanos(self.value()),
            },
            Code::NEVER_FITS => DenialKind::NeverFits {
                weight: self.value(),
            },
            Code::UNREACHABLE => DenialKind::Unreachable {
                reason: self.message(),
            },
            _ => DenialKind::Unavailable {
                reason: self.message(),
            },
        }
    }

    /// True if retrying can never help: the weight exceeds a limit or the file is unusable
    /// (an unreachable Redis server is not final: it may come back).
    pub fn is_final(&self) -> bool {
        !matches!(self.kind_code(), Code::EXHAUSTED | Code::UNREACHABLE)
    }

    fn message(&self) -> String {
        let messages = MESSAGES.lock().unwrap_or_else(PoisonError::into_inner);
        messages
            .as_ref()
            .and_then(|messages| messages.get(&self.value()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Keeps a denial's message; its key.
fn keep(reason: String) -> u64 {
    // Relaxed: only needs to be unique, and a 64-bit count does not wrap.
    let key = NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed);
    let mut messages = MESSAGES.lock().unwrap_or_else(PoisonError::into_inner);
    messages
        .get_or_insert_with(Default::default)
        .insert(key, reason);
    key
}

/// Lets a denial's message go.
#[cold]
#[inline(never)]
fn release(key: u64) {
    let mut messages = MESSAGES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(messages) = messages.as_mut() {
        messages.remove(&key);
    }
}

impl Drop for Denied {
    #[inline(always)]
    fn drop(&mut self) {
        // Small enough to be inlined where a denial is dropped: most kinds hold nothing.
        if self.has_message() {
            release(self.value());
        }
    }
}

impl Clone for Denied {
    fn clone(&self) -> Denied {
        let value = if self.has_message() {
            keep(self.message())
        } else {
            self.value()
        };
        Denied::of(
            value,
            NonZeroU64::new(self.code()).unwrap_or(NonZeroU64::MIN),
        )
    }
}

impl PartialEq for Denied {
    fn eq(&self, other: &Denied) -> bool {
        self.rate_index() == other.rate_index()
            && self.rate() == other.rate()
            && self.kind() == other.kind()
    }
}

impl Eq for Denied {}

impl fmt::Debug for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Denied")
            .field("rate_index", &self.rate_index())
            .field("rate", &self.rate())
            .field("kind", &self.kind())
            .finish()
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.rate();
        let name = rate.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
        match self.kind() {
            DenialKind::Exhausted { retry_after } => {
                write!(
                    f,
                    "rate {name} is full; retry after {}",
                    Readable(retry_after)
                )
            }
            DenialKind::NeverFits { weight } => match rate {
                Some(r) => write!(
                    f,
                    "weight {weight} can never fit rate {name}, whose limit is {}",
                    r.limit()
                ),
                None => write!(f, "weight {weight} can never fit rate {name}"),
            },
            DenialKind::Unavailable { reason } => write!(f, "limiter unavailable: {reason}"),
            DenialKind::Unreachable { reason } => {
                write!(f, "limiter server unreachable, denied: {reason}")
            }
        }
    }
}

impl std::error::Error for Denied {}

/// A duration printed for people: three significant digits in the largest fitting unit
/// (`952ms`, `1.25s`, `40.0us`), never `952.182849ms`.
struct Readable(Duration);

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos() as f64;
        let (value, unit) = if ns >= 1e9 {
            (ns / 1e9, "s")
        } else if ns >= 1e6 {
            (ns / 1e6, "ms")
        } else if ns >= 1e3 {
            (ns / 1e3, "us")
        } else {
            return write!(f, "{ns}ns");
        };
        let decimals = if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        };
        write!(f, "{value:.decimals$}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_print_readable_durations() {
        let cases = [
            (Duration::from_nanos(952_182_849), "952ms"),
            (Duration::from_millis(1250), "1.25s"),
            (Duration::from_micros(40), "40.0us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_secs(3600), "3600s"),
        ];
        for (duration, text) in cases {
            assert_eq!(Readable(duration).to_string(), text);
        }
        let rate = Some(Rate::new(10, Duration::from_secs(1)));
        let denied = Denied::new(
            0,
            rate,
            DenialKind::Exhausted {
                retry_after: Duration::from_nanos(952_182_849),
            },
        );
        assert_eq!(denied.to_string(), "rate 10/s is full; retry after 952ms");
        let never = Denied::new(0, rate, DenialKind::NeverFits { weight: 20 });
        assert_eq!(
            never.to_string(),
            "weight 20 can never fit rate 10/s, whose limit is 10"
        );
    }

    #[test]
    fn a_result_comes_back_in_two_words() {
        // Two scalars: returned in two registers, which is the point of the packing.
        assert_eq!(std::mem::size_of::<Result<(), Denied>>(), 16);
        assert_eq!(std::mem::size_of::<Denied>(), 16);
    }

    #[test]
    fn every_kind_reads_back_as_built() {
        let rate = Rate::requests(7, Duration::from_millis(1500));
        let kinds = [
            DenialKind::Exhausted {
                retry_after: Duration::new(3, 5),
            },
            DenialKind::Exhausted {
                retry_after: Duration::ZERO,
            },
            DenialKind::NeverFits { weight: u64::MAX },
            DenialKind::Unreachable {
                reason: "connection refused".into(),
            },
            DenialKind::Unavailable {
                reason: "garbage".into(),
            },
        ];
        for (index, kind) in kinds.into_iter().enumerate() {
            let denied = Denied::new(index, Some(rate), kind.clone());
            assert_eq!(denied.kind(), kind);
            assert_eq!(denied.rate_index(), index);
            assert_eq!(denied.rate(), Some(rate));
            let retry = match &kind {
                DenialKind::Exhausted { retry_after } => Some(*retry_after),
                _ => None,
            };
            assert_eq!(denied.retry_after(), retry);
            assert_eq!(
                denied.is_final(),
                !matches!(
                    kind,
                    DenialKind::Exhausted { .. } | DenialKind::Unreachable { .. }
                )
            );
        }
        let nobody = Denied::new(usize::MAX, None, DenialKind::NeverFits { weight: 2 });
        assert_eq!(nobody.rate_index(), usize::MAX);
        assert_eq!(nobody.rate(), None);
    }

    #[test]
    fn the_hot_paths_denial_is_the_same_as_the_general_one() {
        let rate = Rate::new(90_000, Duration::from_secs(60));
        let hot = RateCode::new(3, rate).exhausted(1_250_000_000);
        let general = Denied::new(
            3,
            Some(rate),
            DenialKind::Exhausted {
                retry_after: Duration::from_millis(1250),
            },
        );
        assert_eq!(hot, general);
        assert_eq!(format!("{hot:?}"), format!("{general:?}"));
        assert_eq!(hot.to_string(), general.to_string());
        let never = RateCode::new(3, rate).never_fits(90_001);
        assert_eq!(
            never,
            Denied::new(3, Some(rate), DenialKind::NeverFits { weight: 90_001 })
        );
    }

    #[test]
    fn denials_differ_by_index_rate_and_kind_and_say_which() {
        let a = Rate::requests(5, Duration::from_secs(1));
        let b = Rate::requests(6, Duration::from_secs(1));
        let full = RateCode::new(0, a).exhausted(10);
        assert_eq!(full, RateCode::new(0, a).exhausted(10));
        assert_ne!(
            full,
            RateCode::new(0, a).exhausted(11),
            "another retry time"
        );
        assert_ne!(full, RateCode::new(1, a).exhausted(10), "another index");
        assert_ne!(full, RateCode::new(0, b).exhausted(10), "another rate");
        assert_ne!(full, RateCode::new(0, a).never_fits(10), "another kind");

        let never = RateCode::new(0, a).never_fits(10);
        let unreachable = Denied::new(
            0,
            Some(a),
            DenialKind::Unreachable {
                reason: "down".into(),
            },
        );
        assert!(full.is_exhausted() && !full.is_never_fits());
        assert!(never.is_never_fits() && !never.is_exhausted());
        assert!(!unreachable.is_exhausted() && !unreachable.is_never_fits());

        let debug = format!("{full:?}");
        for part in [
            "rate_index: 0",
            "Exhausted",
            "retry_after: 10ns",
            "limit: 5",
        ] {
            assert!(debug.contains(part), "{debug} lacks {part}");
        }
    }

    #[test]
    fn rates_are_kept_once_and_told_apart() {
        let a = Rate::new(10, Duration::from_secs(1));
        let b = Rate::requests(10, Duration::from_secs(1));
        assert_eq!(RateId::of(a), RateId::of(a));
        assert_ne!(RateId::of(a), RateId::of(b));
        let units = Rate::new(10, Duration::from_secs(1)).with_unit(crate::WeightUnit::Tokens);
        assert_ne!(RateId::of(a), RateId::of(units));
        assert_eq!(
            Denied::new(0, Some(units), DenialKind::NeverFits { weight: 11 }).rate(),
            Some(units)
        );
    }

    #[test]
    fn a_message_lives_as_long_as_its_denials() {
        let key_of = |denied: &Denied| denied.value();
        let held = |key: u64| {
            MESSAGES
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|messages| messages.contains_key(&key))
        };
        let denied = Denied::new(
            usize::MAX,
            None,
            DenialKind::Unavailable {
                reason: "the file is garbage".into(),
            },
        );
        let copy = denied.clone();
        let (first, second) = (key_of(&denied), key_of(&copy));
        assert_ne!(first, second, "a clone keeps its own message");
        drop(denied);
        assert!(!held(first), "a dropped denial leaves its message behind");
        assert_eq!(
            copy.kind(),
            DenialKind::Unavailable {
                reason: "the file is garbage".into()
            }
        );
        drop(copy);
        assert!(!held(second));
        // A denial without a message never touches the table: its number is not a key.
        let full = Denied::new(0, None, DenialKind::NeverFits { weight: second });
        assert!(!full.has_message());
    }
}
