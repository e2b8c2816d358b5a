//! aarch64: LSE `caspal` or an `ldaxp`/`stlxp` loop, and LSE2 `ldp` loads.
//!
//! - Compare-exchange: `caspal` where the CPU has LSE (FEAT_LSE, ARMv8.1 and later: Graviton2
//!   and later, Ampere, Apple silicon), else the ARMv8.0 exclusive pair: `ldaxp`, compare,
//!   `stlxp` of the new value, retried until the store-exclusive succeeds. On a mismatch the
//!   loop stores the value it read back (`stlxp` of the old pair): ARMv8.0 makes `ldxp` single-
//!   copy atomic only when the `stxp` after it succeeds, so a read without that store could
//!   be torn (Arm Architecture Reference Manual, "Single-copy atomicity"; LLVM and GCC
//!   generate the same loop for a 128-bit `cmpxchg`).
//! - Load: `ldp` followed by `dmb ishld` where the CPU has LSE2 (FEAT_LSE2, ARMv8.4 and later:
//!   Graviton3 and later, Neoverse V1/N2, Apple M1 and later), which makes a 16-byte aligned
//!   `ldp` of two 64-bit registers single-copy atomic on normal cacheable memory (same
//!   section); the barrier gives it acquire ordering. Elsewhere a load is the compare-exchange
//!   of 0 with 0 (`caspal` or the exclusive pair), which stores the value it read back.
//!
//! The choice is made by [`select`] (at every open) from the kernel's hardware capabilities
//! (`is_aarch64_feature_detected!`, from `AT_HWCAP`: `HWCAP_ATOMICS`, `HWCAP_USCAT`). Until
//! then, and with `HOSTLIMIT_NO_LSE` in the environment, every access uses the exclusive pair,
//! which every AArch64 CPU has: the flags only ever choose between correct primitives, so a
//! stale flag costs speed, never atomicity. `casp`, `ldaxp`/`stlxp` and an LSE2 `ldp` are all
//! single-copy atomic over the same 16 bytes, so processes that chose differently still
//! agree: any other write to the word between a load-exclusive and its store-exclusive
//! clears the exclusive monitor, and the store-exclusive fails.
//!
//! Little-endian only: the first register of each pair is the lower-addressed half, the low
//! 64 bits of the `u128`.

use std::arch::asm;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Primitives;

#[cfg(target_endian = "big")]
compile_error!("hostlimit supports little-endian aarch64 only (the register pairs assume it)");

/// Set by [`select`] when the CPU has LSE: compare-exchanges are `caspal`.
static CASP: AtomicBool = AtomicBool::new(false);
/// Set by [`select`] when the CPU has LSE2: loads are `ldp`.
static LDP: AtomicBool = AtomicBool::new(false);

/// Compare-exchange, sequentially consistent.
///
/// # Safety
///
/// - `dst` is aligned to 16 bytes and valid for reads and writes;
/// - every concurrent access to `*dst` is atomic.
#[inline]
pub(super) unsafe fn compare_exchange(
    dst: *mut u128,
    current: u128,
    new: u128,
) -> Result<u128, u128> {
    // Relaxed: the flag only chooses between two primitives that are both correct here.
    let previous = if CASP.load(Ordering::Relaxed) {
        // SAFETY: the caller guarantees alignment, validity and atomic access; the flag is
        // set only when the CPU reports LSE.
        unsafe { caspal(dst, current, new) }
    } else {
        // SAFETY: the caller guarantees alignment, validity and atomic access.
        unsafe { exclusive_pair(dst, current, new) }
    };
    outcome(previous, current)
}

/// A compare-exchange's result from the value it found: it stored exactly when that was the
/// expected one.
fn outcome(previous: u128, current: u128) -> Result<u128, u128> {
    if previous == current {
        Ok(previous)
    } else {
        Err(previous)
    }
}

/// Load, with at least acquire ordering; without LSE2 it writes the value back.
///
/// # Safety
///
/// As [`compare_exchange`].
#[inline]
pub(super) unsafe fn load(src: *mut u128) -> u128 {
    // Relaxed: as in `compare_exchange`.
    if LDP.load(Ordering::Relaxed) {
        // SAFETY: `src` is 16-byte aligned and valid for reads (caller); the flag is set only
        // when the CPU reports LSE2.
        return unsafe { ldp(src) };
    }
    // SAFETY: as in `compare_exchange`.
    match unsafe { compare_exchange(src, 0, 0) } {
        Ok(value) | Err(value) => value,
    }
}

/// Chooses the primitives from the CPU's features. Every AArch64 CPU has the exclusive pair,
/// so nothing is refused.
pub(super) fn select() -> Result<(), String> {
    let baseline = std::env::var_os("HOSTLIMIT_NO_LSE").is_some();
    CASP.store(
        !baseline && std::arch::is_aarch64_feature_detected!("lse"),
        Ordering::Relaxed,
    );
    LDP.store(
        !baseline && std::arch::is_aarch64_feature_detected!("lse2"),
        Ordering::Relaxed,
    );
    Ok(())
}

/// The primitives in use now.
pub(super) fn primitives() -> Primitives {
    let compare_exchange = if CASP.load(Ordering::Relaxed) {
        "casp"
    } else {
        "ldxp/stxp"
    };
    let ldp = LDP.load(Ordering::Relaxed);
    Primitives {
        compare_exchange,
        load: if ldp { "ldp" } else { compare_exchange },
        load_writes: !ldp,
    }
}

/// LSE `caspal`: if `*dst == old`, store `new`; returns the previous value. Acquire and
/// release (sequentially consistent, as `caspal` is what compilers emit for a `SeqCst`
/// 128-bit compare-exchange with LSE).
///
/// # Safety
///
/// - `dst` is aligned to 16 bytes and valid for reads and writes;
/// - every concurrent access to `*dst` is atomic;
/// - the CPU has LSE.
#[inline]
#[target_feature(enable = "lse")]
unsafe fn caspal(dst: *mut u128, old: u128, new: u128) -> u128 {
    let (low, high): (u64, u64);
    // SAFETY: the caller guarantees alignment, validity, atomic access and LSE. `casp` needs
    // each pair in an even register and the next one: x4/x5 hold the expected value and
    // receive the previous one, x6/x7 the new value; the address cannot be given any of them.
    unsafe {
        asm!(
            "caspal x4, x5, x6, x7, [{dst}]",
            dst = in(reg) dst,
            inout("x4") old as u64 => low,
            inout("x5") (old >> 64) as u64 => high,
            in("x6") new as u64,
            in("x7") (new >> 64) as u64,
            options(nostack, preserves_flags),
        );
    }
    (u128::from(high) << 64) | u128::from(low)
}

/// The ARMv8.0 compare-exchange: `ldaxp`, compare, `stlxp` of `new` on a match or of the
/// value read on a mismatch, retried until the store-exclusive succeeds; returns the value
/// read. Acquire and release, like `caspal`.
///
/// # Safety
///
/// - `dst` is aligned to 16 bytes and valid for reads and writes;
/// - every concurrent access to `*dst` is atomic.
#[inline]
unsafe fn exclusive_pair(dst: *mut u128, old: u128, new: u128) -> u128 {
    let (low, high): (u64, u64);
    // SAFETY: the caller guarantees alignment, validity and atomic access. `out` operands are
    // never given an input's register, so the status register of `stlxp` differs from its
    // data and address registers (which the architecture requires), and the two registers of
    // `ldaxp` differ from each other. Numbered local labels: the loop restarts at 2 when a
    // store-exclusive fails; 3 is the mismatch path; 4 the end.
    unsafe {
        asm!(
            "2:",
            "ldaxp {low}, {high}, [{dst}]",
            "cmp {low}, {old_low}",
            "ccmp {high}, {old_high}, #0, eq",
            "b.ne 3f",
            "stlxp {status:w}, {new_low}, {new_high}, [{dst}]",
            "cbnz {status:w}, 2b",
            "b 4f",
            "3:",
            "stlxp {status:w}, {low}, {high}, [{dst}]",
            "cbnz {status:w}, 2b",
            "4:",
            dst = in(reg) dst,
            old_low = in(reg) old as u64,
            old_high = in(reg) (old >> 64) as u64,
            new_low = in(reg) new as u64,
            new_high = in(reg) (new >> 64) as u64,
            low = out(reg) low,
            high = out(reg) high,
            status = out(reg) _,
            options(nostack),
        );
    }
    (u128::from(high) << 64) | u128::from(low)
}

/// An LSE2 load: `ldp` of the aligned pair, then `dmb ishld` (acquire).
///
/// # Safety
///
/// - `src` is aligned to 16 bytes and valid for reads;
/// - every concurrent access to `*src` is atomic;
/// - the CPU has LSE2.
#[inline]
unsafe fn ldp(src: *const u128) -> u128 {
    let (low, high): (u64, u64);
    // SAFETY: the caller guarantees alignment, validity, atomic access and LSE2, under which
    // this `ldp` is single-copy atomic. The two `out` registers differ (an `ldp` into one
    // register twice is unpredictable). `dmb ishld` orders the load before every later load
    // and store; no `readonly`/`nomem` option, so the block is also a compiler barrier.
    unsafe {
        asm!(
            "ldp {low}, {high}, [{src}]",
            "dmb ishld",
            src = in(reg) src,
            low = out(reg) low,
            high = out(reg) high,
            options(nostack, preserves_flags),
        );
    }
    (u128::from(high) << 64) | u128::from(low)
}

#[cfg(test)]
mod tests {
    use super::super::AtomicPair;
    use super::super::tests::exercise;
    use super::*;

    fn exclusive(pair: &AtomicPair, current: u128, new: u128) -> Result<u128, u128> {
        // SAFETY: `pair.value` is a live, 16-byte aligned word, accessed only atomically.
        outcome(
            unsafe { exclusive_pair(pair.value.get(), current, new) },
            current,
        )
    }

    fn exclusive_load(pair: &AtomicPair) -> u128 {
        exclusive(pair, 0, 0).unwrap_or_else(|value| value)
    }

    fn casp(pair: &AtomicPair, current: u128, new: u128) -> Result<u128, u128> {
        assert!(std::arch::is_aarch64_feature_detected!("lse"));
        // SAFETY: as in `exclusive`; the CPU has LSE (asserted).
        outcome(unsafe { caspal(pair.value.get(), current, new) }, current)
    }

    fn casp_load(pair: &AtomicPair) -> u128 {
        casp(pair, 0, 0).unwrap_or_else(|value| value)
    }

    fn lse2_load(pair: &AtomicPair) -> u128 {
        assert!(std::arch::is_aarch64_feature_detected!("lse2"));
        // SAFETY: as in `exclusive`; the CPU has LSE2 (asserted).
        unsafe { ldp(pair.value.get()) }
    }

    /// Each primitive on its own, whatever `select` chose: the exclusive pair always, `caspal`
    /// and `ldp` where the CPU has them (CI runs this under CPU models with and without).
    #[test]
    fn every_primitive_this_cpu_has() {
        exercise("ldxp/stxp", &exclusive, &exclusive_load);
        if std::arch::is_aarch64_feature_detected!("lse") {
            exercise("casp", &casp, &casp_load);
        } else {
            println!("no LSE: casp not tested");
        }
        if std::arch::is_aarch64_feature_detected!("lse2") {
            exercise("ldp", &exclusive, &lse2_load);
        } else {
            println!("no LSE2: ldp not tested");
        }
    }
}
