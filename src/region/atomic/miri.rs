//! Miri: nightly's `AtomicU128` over the same bytes, so that the protocol tests run there.
//!
//! Miri interprets and cannot run the assembly of the other architectures' files; it checks
//! every access of the protocol for alignment, provenance and data races instead.

use std::sync::atomic::{AtomicU128, Ordering};

use super::Primitives;

/// Compare-exchange, sequentially consistent.
///
/// # Safety
///
/// - `dst` is aligned to 16 bytes and valid for reads and writes;
/// - every concurrent access to `*dst` is atomic.
pub(super) unsafe fn compare_exchange(
    dst: *mut u128,
    current: u128,
    new: u128,
) -> Result<u128, u128> {
    // SAFETY: the caller guarantees alignment, validity and atomic access.
    unsafe { AtomicU128::from_ptr(dst) }.compare_exchange(
        current,
        new,
        Ordering::SeqCst,
        Ordering::SeqCst,
    )
}

/// Load, sequentially consistent.
///
/// # Safety
///
/// As [`compare_exchange`].
pub(super) unsafe fn load(src: *mut u128) -> u128 {
    // SAFETY: as in `compare_exchange`.
    unsafe { AtomicU128::from_ptr(src) }.load(Ordering::SeqCst)
}

/// Nothing to choose.
pub(super) fn select() -> Result<(), String> {
    Ok(())
}

/// The primitives in use.
pub(super) fn primitives() -> Primitives {
    Primitives {
        compare_exchange: "AtomicU128",
        load: "AtomicU128",
        load_writes: false,
    }
}
