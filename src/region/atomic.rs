//! The 128-bit atomic word of the ring, on every machine hostlimit supports.
//!
//! [`AtomicPair`] is 16 aligned bytes of the mapping, accessed only through the machine's
//! lock-free 128-bit atomics, so that processes on the same file agree on every slot. Each
//! architecture has one file behind the same four functions (`compare_exchange`, `load`,
//! `select`, `primitives`); this file picks one and nothing else in the crate names an
//! architecture:
//!
//! | machine | compare-exchange | load |
//! |---------|------------------|------|
//! | x86_64 (`x86_64.rs`) | `lock cmpxchg16b` | `vmovdqa` on Intel and AMD CPUs with AVX, else `cmpxchg16b` |
//! | aarch64 (`aarch64.rs`) | `caspal` with LSE (ARMv8.1+), else an `ldaxp`/`stlxp` loop (ARMv8.0) | `ldp` with LSE2 (ARMv8.4+), else the compare-exchange |
//! | Miri (`miri.rs`) | nightly's `AtomicU128` | the same |
//!
//! The primitives are chosen at run time from what the CPU reports ([`check_machine`], called
//! before any file is opened): x86_64 reads CPUID, aarch64 the kernel's hardware capabilities
//! (`is_aarch64_feature_detected!`). Before that call, or when the environment asks for it
//! (`HOSTLIMIT_NO_VMOVDQA` on x86_64, `HOSTLIMIT_NO_LSE` on aarch64), each architecture uses
//! its baseline, which every CPU of the architecture that hostlimit accepts has. Processes
//! using different primitives on the same file are still atomic with respect to each other:
//! each primitive is a single-copy-atomic access to the same 16 bytes. Nothing here can fall
//! back to a lock: a machine without a lock-free 128-bit compare-exchange is refused at open
//! (x86_64 without `cmpxchg16b`), or at build time (any other architecture).
//!
//! # Loads that write
//!
//! Without `vmovdqa` (x86_64) or LSE2 (aarch64), a 128-bit load is a compare-exchange or an
//! exclusive pair that stores the value it read back to the word: on those CPUs there is no
//! 16-byte load that is atomic without a write (on ARMv8.0, `ldxp` is single-copy atomic only
//! when the `stxp` after it succeeds). The value never changes, so other processes cannot tell,
//! but the page must be writable: on a read-only mapping such a load faults (`SIGSEGV`).
//! [`Primitives::load_writes`] says whether this machine's loads write; a read-only observer
//! (`Region::observe`, which maps the file `PROT_READ`) is refused with a clear error where
//! they do (e.g. AWS Graviton2, Ampere Altra, Raspberry Pi 4: ARMv8.2 and older, without
//! LSE2; x86_64 CPUs without AVX, or with `HOSTLIMIT_NO_VMOVDQA` set). The choice is made
//! once per process, at the first [`check_machine`], so a load that was safe on a read-only
//! mapping when it was opened stays so for the life of the process.
//!
//! Ordering: a compare-exchange is sequentially consistent, a load has at least acquire
//! ordering (the protocol needs no more: see `protocol.rs`).

use std::cell::UnsafeCell;

use crate::error::Error;

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", not(miri)))]
use x86_64 as machine;

#[cfg(all(target_arch = "aarch64", not(miri)))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", not(miri)))]
use aarch64 as machine;

#[cfg(miri)]
mod miri;
#[cfg(miri)]
use miri as machine;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", miri)))]
compile_error!(
    "hostlimit needs a lock-free 128-bit compare-exchange; it supports x86_64 (cmpxchg16b) \
     and aarch64 (LSE casp, or ldxp/stxp)"
);

#[cfg(test)]
mod tests;

/// The 128-bit head word, as it lives in the mapping.
///
/// Every access is one of the machine's 128-bit atomic instructions (see the module docs),
/// atomic across processes. Under Miri it is nightly's `AtomicU128` over the same bytes, so
/// that the protocol tests can run there.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct AtomicPair {
    value: UnsafeCell<u128>,
}

// SAFETY: the value is only ever accessed through the machine's atomic instructions (or
// `AtomicU128` under Miri), so sharing references between threads cannot race.
unsafe impl Sync for AtomicPair {}

const _: () =
    assert!(std::mem::size_of::<AtomicPair>() == 16 && std::mem::align_of::<AtomicPair>() == 16);

impl AtomicPair {
    /// A word holding `value` (for heap-backed tests; files start zeroed).
    pub fn new(value: u128) -> Self {
        AtomicPair {
            value: UnsafeCell::new(value),
        }
    }

    /// Reads the word, atomically and with at least acquire ordering. Where
    /// [`Primitives::load_writes`], the read stores the same value back.
    #[inline]
    pub fn load(&self) -> u128 {
        // SAFETY: `value` is 16-byte aligned (`repr(align(16))`), valid for reads and writes
        // for the life of `self`, and every access to it, in this or another process, is one
        // of these atomic operations (the mapping's ring is never accessed otherwise).
        unsafe { machine::load(self.value.get()) }
    }

    /// Replaces `current` by `new` if the word holds `current`; returns what it held, `Ok`
    /// if it was replaced. Sequentially consistent.
    #[inline]
    pub fn compare_exchange(&self, current: u128, new: u128) -> Result<u128, u128> {
        // SAFETY: as in `load`.
        unsafe { machine::compare_exchange(self.value.get(), current, new) }
    }
}

/// The 128-bit atomics this process uses, as [`check_machine`] chose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Primitives {
    /// The compare-exchange's instruction: `cmpxchg16b`, `casp`, `ldxp/stxp`, `AtomicU128`.
    pub compare_exchange: &'static str,
    /// The load's instruction: `vmovdqa`, `ldp`, or the compare-exchange's.
    pub load: &'static str,
    /// Whether a load stores the value it read back (so it needs a writable mapping).
    pub load_writes: bool,
}

/// The primitives in use now.
pub fn primitives() -> Primitives {
    machine::primitives()
}

/// Checks that this machine has the lock-free atomics the file needs, and chooses the
/// fastest 128-bit primitives it has. Called before any file is touched. The choice is made
/// at the first call and kept for the life of the process (later calls, whatever the
/// environment says by then, return the first call's verdict): a read-only mapping relies on
/// the load it was opened with never changing to one that writes.
pub fn check_machine() -> Result<(), Error> {
    static CHOSEN: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(machine::select)
        .clone()
        .map_err(Error::Unsupported)?;
    // 64-bit atomics must be native too: nothing may fall back to a process-local lock.
    #[cfg(not(target_has_atomic = "64"))]
    return Err(Error::Unsupported("no native 64-bit atomics".into()));
    #[allow(
        unreachable_code,
        reason = "after the return above on machines without them"
    )]
    Ok(())
}
