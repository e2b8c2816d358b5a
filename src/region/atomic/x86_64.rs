//! x86_64: `lock cmpxchg16b`, and `vmovdqa` loads where the vendor guarantees them atomic.
//!
//! Every access is a `lock cmpxchg16b` (a load is a compare-exchange of 0 with 0, which writes
//! the value back), atomic and sequentially consistent across processes. On Intel and AMD CPUs
//! with AVX an aligned 16-byte `vmovdqa` load is atomic (Intel SDM vol. 3A §9.1.1; AMD APM
//! vol. 2 §7.3.2) and, unlike a `cmpxchg16b` used as a load, does not take the cache line
//! exclusive: denials and peeks then never write shared memory.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Primitives;

/// Set by [`select`] on Intel and AMD CPUs with AVX, whose aligned 16-byte loads are atomic.
/// Setting `HOSTLIMIT_NO_VMOVDQA` in the environment keeps `cmpxchg16b` loads.
static ATOMIC_VMOVDQA: AtomicBool = AtomicBool::new(false);

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
    // SAFETY: the caller guarantees alignment, validity and atomic access; the CPU has
    // `cmpxchg16b`: `select` refuses a CPU without it before any file is mapped (a heap-backed
    // word used without `select` on such a CPU, older than 2006, raises SIGILL).
    let (previous, swapped) = unsafe { cmpxchg16b(dst, current, new) };
    if swapped { Ok(previous) } else { Err(previous) }
}

/// Load, with at least acquire ordering; with `cmpxchg16b` it writes the value back.
///
/// # Safety
///
/// As [`compare_exchange`].
#[inline]
pub(super) unsafe fn load(src: *mut u128) -> u128 {
    // Relaxed: the flag only chooses between two loads that are both correct here.
    if ATOMIC_VMOVDQA.load(Ordering::Relaxed) {
        // SAFETY: `src` is 16-byte aligned and valid for reads (caller); the flag is set only
        // on CPUs that guarantee the load is atomic (see the module docs).
        return unsafe { vmovdqa(src) };
    }
    // SAFETY: as in `compare_exchange`.
    unsafe { cmpxchg16b(src, 0, 0).0 }
}

/// Refuses a CPU without `cmpxchg16b`; chooses `vmovdqa` loads where they are atomic.
pub(super) fn select() -> Result<(), String> {
    if !std::arch::is_x86_feature_detected!("cmpxchg16b") {
        return Err("this x86_64 CPU has no cmpxchg16b".into());
    }
    let vmovdqa = std::env::var_os("HOSTLIMIT_NO_VMOVDQA").is_none() && vendor_guarantees_vmovdqa();
    ATOMIC_VMOVDQA.store(vmovdqa, Ordering::Relaxed);
    Ok(())
}

/// The primitives in use now.
pub(super) fn primitives() -> Primitives {
    let vmovdqa = ATOMIC_VMOVDQA.load(Ordering::Relaxed);
    Primitives {
        compare_exchange: "cmpxchg16b",
        load: if vmovdqa { "vmovdqa" } else { "cmpxchg16b" },
        load_writes: !vmovdqa,
    }
}

/// `lock cmpxchg16b`: if `*dst == old`, store `new`; returns the previous value and whether
/// the store happened.
///
/// # Safety
///
/// - `dst` is aligned to 16 bytes and valid for reads and writes;
/// - every concurrent access to `*dst` is atomic;
/// - the CPU supports `cmpxchg16b` (see [`select`]).
#[inline]
unsafe fn cmpxchg16b(dst: *mut u128, old: u128, new: u128) -> (u128, bool) {
    let (low, high): (u64, u64);
    let swapped: u8;
    // SAFETY: the caller guarantees alignment, validity and CPU support. rbx cannot be named
    // as an operand, so the new value's low half is swapped into it and rbx restored
    // afterwards. The register allocator may still hand rbx to a `reg` operand (it did, in
    // release builds, for the address): the address is pinned to rdi, and `sete` comes after
    // the restore (`mov` leaves the flags alone), so neither can be overwritten by the swap.
    unsafe {
        std::arch::asm!(
            "xchg {saved}, rbx",
            "lock cmpxchg16b xmmword ptr [rdi]",
            "mov rbx, {saved}",
            "sete {swapped}",
            in("rdi") dst,
            saved = inout(reg) new as u64 => _,
            swapped = out(reg_byte) swapped,
            inout("rax") old as u64 => low,
            inout("rdx") (old >> 64) as u64 => high,
            in("rcx") (new >> 64) as u64,
            options(nostack),
        );
    }
    ((u128::from(high) << 64) | u128::from(low), swapped != 0)
}

/// An aligned 16-byte AVX load.
///
/// # Safety
///
/// - `src` is aligned to 16 bytes and valid for reads;
/// - the CPU supports AVX and guarantees atomicity of aligned 16-byte `vmovdqa` loads (Intel or
///   AMD with AVX: [`ATOMIC_VMOVDQA`]).
#[inline]
unsafe fn vmovdqa(src: *const u128) -> u128 {
    let (low, high): (u64, u64);
    // SAFETY: the caller guarantees alignment, validity and CPU support. No `readonly`/`nomem`
    // option: the block is a compiler barrier, so later accesses are not hoisted above the
    // load (the hardware already orders loads, x86-TSO), which gives the load acquire ordering.
    unsafe {
        std::arch::asm!(
            "vmovdqa {x}, xmmword ptr [{src}]",
            "vmovq {low}, {x}",
            "vpextrq {high}, {x}, 1",
            src = in(reg) src,
            x = out(xmm_reg) _,
            low = out(reg) low,
            high = out(reg) high,
            options(nostack, preserves_flags),
        );
    }
    (u128::from(high) << 64) | u128::from(low)
}

/// Whether this CPU guarantees aligned 16-byte `vmovdqa` loads atomic.
fn vendor_guarantees_vmovdqa() -> bool {
    let leaf = std::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf.ecx.to_le_bytes());
    guaranteed_by(&vendor, std::arch::is_x86_feature_detected!("avx"))
}

/// Whether a CPU of `vendor` (CPUID leaf 0), with or without AVX, guarantees aligned 16-byte
/// `vmovdqa` loads atomic: Intel and AMD do for CPUs with AVX (see the module docs), nobody
/// else says so.
fn guaranteed_by(vendor: &[u8; 12], avx: bool) -> bool {
    (vendor == b"GenuineIntel" || vendor == b"AuthenticAMD") && avx
}

#[cfg(test)]
mod tests {
    use super::super::AtomicPair;
    use super::super::tests::{exercise, expect_primitives};
    use super::*;

    fn cas(pair: &AtomicPair, current: u128, new: u128) -> Result<u128, u128> {
        // SAFETY: `pair.value` is a live, 16-byte aligned word, accessed only atomically; the
        // CPU has `cmpxchg16b` (checked by the test before it calls this).
        match unsafe { cmpxchg16b(pair.value.get(), current, new) } {
            (previous, true) => Ok(previous),
            (previous, false) => Err(previous),
        }
    }

    fn cas_load(pair: &AtomicPair) -> u128 {
        cas(pair, 0, 0).unwrap_or_else(|value| value)
    }

    fn avx_load(pair: &AtomicPair) -> u128 {
        assert!(vendor_guarantees_vmovdqa());
        // SAFETY: as in `cas`; the vendor guarantees the load atomic (asserted).
        unsafe { vmovdqa(pair.value.get()) }
    }

    /// Only Intel and AMD CPUs with AVX get `vmovdqa` loads.
    #[test]
    fn vmovdqa_only_where_the_vendor_guarantees_it() {
        for (vendor, avx, guaranteed) in [
            (b"GenuineIntel", true, true),
            (b"AuthenticAMD", true, true),
            (b"GenuineIntel", false, false),
            (b"AuthenticAMD", false, false),
            (b"HygonGenuine", true, false),
            (b"CentaurHauls", true, false),
            (b"  Shanghai  ", true, false),
        ] {
            assert_eq!(
                guaranteed_by(vendor, avx),
                guaranteed,
                "{} with avx {avx}",
                String::from_utf8_lossy(vendor)
            );
        }
    }

    /// The vendor and AVX as CPUID gives them here are what the kernel reports in
    /// `/proc/cpuinfo` (the `vendor_id` line and the `avx` flag).
    #[test]
    fn the_vendor_check_reads_this_cpu() {
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            println!("no /proc/cpuinfo: not checked");
            return;
        };
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    (key.trim() == name).then(|| value.trim().to_string())
                })
                .unwrap_or_default()
        };
        let vendor = field("vendor_id");
        let avx = field("flags").split_whitespace().any(|flag| flag == "avx");
        println!("/proc/cpuinfo: {vendor}, avx {avx}");
        assert_eq!(
            vendor_guarantees_vmovdqa(),
            matches!(vendor.as_str(), "GenuineIntel" | "AuthenticAMD") && avx
        );
    }

    /// `check_machine` (in a fresh process, as a user's would be) takes `vmovdqa` loads
    /// exactly where the vendor guarantees them, and `cmpxchg16b` loads when
    /// `HOSTLIMIT_NO_VMOVDQA` is set.
    #[test]
    #[cfg_attr(miri, ignore)] // spawns processes
    fn check_machine_takes_vmovdqa_where_guaranteed_unless_told_not_to() {
        let best = if vendor_guarantees_vmovdqa() {
            "cmpxchg16b,vmovdqa"
        } else {
            "cmpxchg16b,cmpxchg16b"
        };
        expect_primitives(None, best);
        expect_primitives(Some("HOSTLIMIT_NO_VMOVDQA"), "cmpxchg16b,cmpxchg16b");
    }

    /// Each primitive on its own, whatever `select` chose: `cmpxchg16b`, and `vmovdqa` loads
    /// where the vendor guarantees them.
    #[test]
    fn every_primitive_this_cpu_has() {
        assert!(std::arch::is_x86_feature_detected!("cmpxchg16b"));
        exercise("cmpxchg16b", &cas, &cas_load);
        if vendor_guarantees_vmovdqa() {
            exercise("vmovdqa", &cas, &avx_load);
        } else {
            println!("vmovdqa not guaranteed atomic here: not tested");
        }
    }
}
