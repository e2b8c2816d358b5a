#!/usr/bin/env bash
# Miri over the library's unit tests (`cargo +nightly miri test --lib`): the protocol's tests
# (src/protocol/tests.rs and src/protocol/tests/) run over heap-backed words, and Miri checks
# every atomic access for alignment, provenance and data races. Tests that need a real mapping,
# the real clock or /proc are `#[cfg_attr(miri, ignore)]` with the reason; the rest run with
# smaller counts under `cfg!(miri)`. Skipped, with a message, where `cargo +nightly miri` is
# not installed.
#
# Target: aarch64-unknown-linux-gnu, interpreted on this host. `AtomicPair`'s Miri path is
# std's `AtomicU128` (src/region/atomic/miri.rs), which exists only on targets with 128-bit atomics:
# x86_64-unknown-linux-gnu has none in Rust (not even with +cmpxchg16b), aarch64 has them.
# Miri interprets and never runs native code, so no aarch64 machine or toolchain is needed;
# the C compiler variables only let dev-dependency build scripts (criterion's `alloca`)
# finish: Miri never links or calls that C code.
# `--no-default-features`: the SQLite journal is C, reached through FFI, which Miri cannot run.
#
# Time on a 2-core VM: ~1 min, plus ~3 min the first time (Miri's sysroot and the deps).
# Flags as in crossbeam's ci/miri.sh; add your own through MIRIFLAGS (for a deeper nightly
# run: MIRIFLAGS="-Zmiri-many-seeds=0..16", which reruns every test under 16 schedules, two
# at a time on 2 cores, so about 8 times as long; the Miri case counts live in the tests,
# under `cfg!(miri)`).
#
# Usage: loom-tests/miri.sh [test name filter] [-- libtest options]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri.sh: SKIPPED: 'cargo +nightly miri' does not work here" \
        "(rustup toolchain install nightly --component miri rust-src)"
    exit 0
fi

target=aarch64-unknown-linux-gnu
export MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-symbolic-alignment-check ${MIRIFLAGS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/miri}"
export CC_aarch64_unknown_linux_gnu="${CC_aarch64_unknown_linux_gnu:-cc}"
export AR_aarch64_unknown_linux_gnu="${AR_aarch64_unknown_linux_gnu:-ar}"

echo "miri: $(cargo +nightly miri --version), target $target, MIRIFLAGS=$MIRIFLAGS"
start=$(date +%s)
cargo +nightly miri test --lib --no-default-features --target "$target" "$@"
echo "miri: passed in $(( $(date +%s) - start )) s"
