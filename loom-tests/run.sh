#!/usr/bin/env bash
# loom models of hostlimit's commit protocol: loom-tests/tests/loom/.
#
# Runs every model: the correct protocol with 2 and 3 concurrent acquirers (`models`), a
# thread killed before each of its shared-memory steps in turn (`crashes`), and the
# deliberately broken protocol variants that the invariant checks must catch (`broken`,
# which fix their own bound, 1, and so ignore LOOM_MAX_PREEMPTIONS).
#
# Bound: LOOM_MAX_PREEMPTIONS, 3 unless set. loom explores every interleaving with at most
# that many preemptions per execution; unbounded does not finish. Release build with debug
# assertions, in its own target directory (the `--cfg loom` reaches every dependency).
#
# Time on a 2-core VM (tests in parallel; the first build adds 1-3 min):
#   LOOM_MAX_PREEMPTIONS=2   ~10 s      (quick check while editing the protocol)
#   LOOM_MAX_PREEMPTIONS=3   ~80 s      (this script's default; CI)
#   LOOM_MAX_PREEMPTIONS=4   ~7.5 min   (the deeper nightly run; 5 would take hours)
# Without LOOM_MAX_PREEMPTIONS, a bare `cargo test` here explores at bound 2.
#
# Usage: loom-tests/run.sh [test name filter] [-- libtest options, e.g. --nocapture]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$here"

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export RUSTFLAGS="--cfg loom -C debug-assertions"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/loom}"

echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, target $CARGO_TARGET_DIR"
start=$(date +%s)
cargo test --release --test loom "$@"
echo "loom: passed in $(( $(date +%s) - start )) s at LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS"
