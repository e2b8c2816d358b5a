#!/usr/bin/env bash
# Instructions per try_acquire call, counted by callgrind (for machines without hardware
# counters): examples/hotloop.rs under `valgrind --tool=callgrind` at two loop lengths, the
# difference of the totals divided by the difference of the lengths (the setup cancels out).
#
#   benches/callgrind.sh [HOTLOOP_BINARY]    default: builds and runs target/release/examples/hotloop
#
# Prints one line per case: mode, weight, instructions per call. Environment: N1, N2 (loop
# lengths, default 20000 and 120000), CASES (default below).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
    cargo build --release --example hotloop >&2
    bin="${CARGO_TARGET_DIR:-target}/release/examples/hotloop"
fi
n1="${N1:-20000}"
n2="${N2:-120000}"
cases="${CASES:-floor-cas:1 floor-load:1 admit2:1 admit2:100000 admit1:1 admit4:1 deny2:1 deny2:100000 deny1:1 deny4:1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
total() { # total MODE N WEIGHT -> instructions of the whole run
    valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin" "$1" "$2" "$3" >/dev/null 2>"$work/log"
    grep -E '^summary:|^totals:' "$work/out" | head -1 | awk '{print $2}'
}
printf '%-10s %8s %12s\n' mode weight instr/call
for case in $cases; do
    mode="${case%%:*}"
    weight="${case##*:}"
    a="$(total "$mode" "$n1" "$weight")"
    b="$(total "$mode" "$n2" "$weight")"
    printf '%-10s %8s %12.1f\n' "$mode" "$weight" "$(echo "($b - $a) / ($n2 - $n1)" | bc -l)"
done
