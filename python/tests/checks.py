"""Exact checks of the guarantees on what worker processes recorded (a port of the Rust
integration tests' checks in tests/support/checks.rs).

An admission is ``(before, ts, seq, after, weight)``: the caller's clock reads around the
call (``CLOCK_BOOTTIME`` ns, the file's clock) and the recorded timestamp and sequence
number. A denial is ``(before, after, weight, rate_index, retry_ns, kind)``.
"""

from __future__ import annotations

import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import hostlimit


class Admission(NamedTuple):
    before: int
    ts: int
    seq: int
    after: int
    weight: int


class Denial(NamedTuple):
    before: int
    after: int
    weight: int
    rate_index: Optional[int]
    retry_ns: Optional[int]
    kind: Optional[str]


def now_ns() -> int:
    """The clock limiter files use."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def attempt(limiter: hostlimit.Limiter, weight: int) -> Tuple[bool, Tuple[int, ...]]:
    """One try_acquire, with the clock read around it, as a plain tuple (picklable)."""
    before = now_ns()
    d = limiter.try_acquire(weight)
    after = now_ns()
    if d:
        assert d.timestamp_ns is not None and d.sequence is not None
        return True, (before, d.timestamp_ns, d.sequence, after, weight)
    retry = None if d.retry_after is None else int(round(d.retry_after * 1e9))
    return False, (before, after, weight, d.rate_index, retry, d.kind)


def units(rate: hostlimit.Rate, weight: int) -> int:
    return 1 if rate.counts == "requests" else weight


def check_stamps(log: Sequence[Admission]) -> None:
    """Each recorded timestamp lies within its call."""
    for a in log:
        assert a.before <= a.ts <= a.after, f"timestamp outside its call: {a}"


def check_sequence(log: Sequence[Admission]) -> None:
    """The admissions are the whole log: sequence numbers exactly 1..n, timestamps never
    decreasing along them."""
    ordered = sorted(log, key=lambda a: a.seq)
    assert [a.seq for a in ordered] == list(range(1, len(ordered) + 1)), "sequence numbers not 1..n"
    for first, second in zip(ordered, ordered[1:]):
        assert first.ts <= second.ts, f"timestamps decrease along the log: {first} {second}"


def check_windows(log: Sequence[Admission], rates: Sequence[hostlimit.Rate]) -> None:
    """For every rate and every instant t, what was recorded in (t - window, t] is at most
    the limit; the most is reached at some admission's timestamp, so check those."""
    ordered = sorted(log, key=lambda a: a.ts)
    for index, rate in enumerate(rates):
        window = rate.window_ns
        start = total = i = 0
        while i < len(ordered):
            t = ordered[i].ts
            while i < len(ordered) and ordered[i].ts == t:
                total += units(rate, ordered[i].weight)
                i += 1
            while ordered[start].ts + window <= t:
                total -= units(rate, ordered[start].weight)
                start += 1
            assert total <= rate.limit, (
                f"rate {index} ({rate}) exceeded: {total} > {rate.limit} in the window ending at {t}"
            )


def used_at(log: Sequence[Admission], rate: hostlimit.Rate, t: int) -> int:
    window = rate.window_ns
    return sum(units(rate, a.weight) for a in log if a.ts <= t < a.ts + window)


def check_denials(log: Sequence[Admission], denials: Sequence[Denial], rates: Sequence[hostlimit.Rate]) -> None:
    """No false denial (conservatively): a denial by rate r during [before, after] is false
    if at every instant of that interval the admissions in r's window left room for it.
    Every denial is an exhausted one with a retry-after in (0, window]."""
    stamps = sorted(a.ts for a in log)
    for d in denials:
        assert d.kind == "exhausted", f"unexpected denial kind: {d}"
        assert d.rate_index is not None and d.retry_ns is not None, d
        rate = rates[d.rate_index]
        assert 0 < d.retry_ns <= rate.window_ns + (d.after - d.before), f"retry-after outside (0, window]: {d}"
        candidates = [d.before] + [ts for ts in stamps if d.before < ts <= d.after]
        most = max(used_at(log, rate, t) for t in candidates)
        assert most + units(rate, d.weight) > rate.limit, (
            f"false denial by {rate}: at most {most} used during the call, {units(rate, d.weight)} asked: {d}"
        )


def split(results: Sequence[Tuple[bool, Tuple[int, ...]]]) -> Tuple[List[Admission], List[Denial]]:
    admitted = [Admission(*r) for ok, r in results if ok]
    denied = [Denial(*r) for ok, r in results if not ok]  # type: ignore[arg-type]
    return admitted, denied
