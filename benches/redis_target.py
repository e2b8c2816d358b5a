#!/usr/bin/env python3
"""The Redis bench's 1-rate target, measured alternating: hostlimit's 1-rate calls per
second against `limits`' list script (and layout 4's), as a ratio per round.

    HOSTLIMIT_BENCH_ONLY=0,1,9,5,9,1 HOSTLIMIT_BENCH_ROUNDS=41 \
        target/release/deps/redis-* --bench > rounds.txt
    python3 benches/redis_target.py rounds.txt

(`cargo bench --features redis --bench redis --no-run` builds the binary.) Each round runs
the cases SET, ours, limits, layout 4, limits, ours in that order; the ratio of a round is
the mean of its two "ours" over the mean of its two `limits` rows, so that a drift within
the round weighs on both sides. Prints the median and quartiles of the rounds' ratios.
"""
import re
import statistics
import sys

CASES_PER_ROUND = 6

rows = [line for line in open(sys.argv[1]) if "calls/s" in line]
against_limits, against_v4 = [], []
for start in range(0, len(rows) - CASES_PER_ROUND + 1, CASES_PER_ROUND):
    calls = [float(re.search(r": (\d+) calls/s", row).group(1))
             for row in rows[start:start + CASES_PER_ROUND]]
    ours = (calls[1] + calls[5]) / 2
    against_limits.append(ours / ((calls[2] + calls[4]) / 2))
    against_v4.append(ours / calls[3])
if len(against_limits) < 2:
    sys.exit("need at least 2 rounds of the 6 cases")
low, _, high = statistics.quantiles(against_limits, n=4)
print(f"{len(against_limits)} rounds: 1 rate / limits' script: median "
      f"{statistics.median(against_limits):.2f}x (quartiles {low:.2f}x-{high:.2f}x); "
      f"/ layout 4's script: median {statistics.median(against_v4):.2f}x")
