//! The one switch between std and loom atomics.
//!
//! Nothing else in the crate names `std::sync::atomic` or `loom::sync::atomic`: the protocol
//! imports its atomic types from here, so the loom models in `loom-tests/` run the very same
//! protocol code over loom's atomics, while production runs it over std atomics that live in
//! the shared mapping.
//!
//! [`AtomicPair`] is the 128-bit word that holds the newest committed record. In production it
//! is the machine's lock-free 128-bit atomics over 16 aligned bytes of the mapping (`cmpxchg16b`
//! on x86_64, `casp` or `ldxp/stxp` on aarch64: see `region/atomic.rs`, which with `region.rs`
//! holds all the `unsafe`); under Miri it is nightly's `AtomicU128` over the same bytes; under
//! loom it is a value behind loom's mutex, which gives the model the same single-step atomicity.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use crate::region::AtomicPair;

/// Process-local counters (clocks, check timers): never placed in a mapping, never modelled.
pub(crate) use std::sync::atomic::{AtomicU32 as StdAtomicU32, AtomicU64 as StdAtomicU64};

/// The loom stand-in for the 128-bit word: one value behind loom's mutex.
///
/// Every operation takes the lock once, so a load or a compare-exchange is one indivisible
/// step in the model, as the machine's 128-bit compare-exchange is.
#[cfg(loom)]
#[derive(Debug)]
pub struct AtomicPair {
    value: loom::sync::Mutex<u128>,
}

#[cfg(loom)]
impl AtomicPair {
    /// A word holding `value`.
    pub fn new(value: u128) -> Self {
        Self {
            value: loom::sync::Mutex::new(value),
        }
    }

    /// Reads the word (acquire).
    pub fn load(&self) -> u128 {
        *self.value.lock().unwrap()
    }

    /// Replaces `current` by `new` if the word holds `current`; returns what it held.
    pub fn compare_exchange(&self, current: u128, new: u128) -> Result<u128, u128> {
        let mut guard = self.value.lock().unwrap();
        if *guard == current {
            *guard = new;
            Ok(current)
        } else {
            Err(*guard)
        }
    }
}
