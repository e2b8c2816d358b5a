"""Worker processes for the multi-process tests (module level, so that spawn and forkserver
can import them)."""

from __future__ import annotations

import os
import time
from typing import List, Optional, Sequence, Tuple

import hostlimit
from checks import attempt, now_ns


def wait_until(start_ns: int) -> int:
    """Waits for ``start_ns``; returns when this worker starts: then, or now if it came late
    (a slow start on a loaded machine), so that every worker runs for its whole time."""
    while now_ns() < start_ns:
        time.sleep(min(0.01, max(0.0, (start_ns - now_ns()) / 1e9)))
    return max(start_ns, now_ns())


def hammer(
    limiter: hostlimit.Limiter,
    start_ns: int,
    seconds: float,
    weights: Sequence[int],
    pause: float,
) -> List[Tuple[bool, Tuple[int, ...]]]:
    """From ``start_ns``, calls try_acquire with the weights in turn for ``seconds``."""
    begin = wait_until(start_ns)
    results = []
    end = begin + int(seconds * 1e9)
    i = 0
    while now_ns() < end:
        results.append(attempt(limiter, weights[i % len(weights)]))
        i += 1
        if pause:
            time.sleep(pause)
    return results


def hammer_path(
    path: str, rates: Sequence[str], start_ns: int, seconds: float, weights: Sequence[int], pause: float
) -> List[Tuple[bool, Tuple[int, ...]]]:
    """Opens the limiter itself (as a spawned worker would), then hammers it."""
    return hammer(hostlimit.Limiter.open(path, rates), start_ns, seconds, weights, pause)


# The limiter the parent opened before forking: the child uses it as it inherited it.
INHERITED: Optional[hostlimit.Limiter] = None


def hammer_inherited(
    start_ns: int, seconds: float, weights: Sequence[int], pause: float
) -> List[Tuple[bool, Tuple[int, ...]]]:
    assert INHERITED is not None
    return hammer(INHERITED, start_ns, seconds, weights, pause)


def log_admissions(path: str, rates: Sequence[str], out: str, seconds: float, pause: float) -> None:
    """Hammers the limiter and appends each admission to ``out`` as it happens (one
    unbuffered write per admission, so a SIGKILL loses at most the one in flight)."""
    limiter = hostlimit.Limiter.open(path, rates)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, b"ready\n")
    end = now_ns() + int(seconds * 1e9)
    while now_ns() < end:
        ok, record = attempt(limiter, 1)
        if ok:
            os.write(fd, (" ".join(map(str, record)) + "\n").encode())
        time.sleep(pause)
    os.close(fd)


def elspeth_hammer(
    name: str, persistence_path: str, start_ns: int, seconds: float
) -> List[Tuple[int, int, bool]]:
    """Opens elspeth's RateLimiter (the shim) with a per-second and a per-minute rate, and
    calls try_acquire from ``start_ns`` for ``seconds``: (before, after, admitted) each."""
    from hostlimit.compat.elspeth import RateLimiter

    limiter = RateLimiter(
        name, requests_per_second=5, requests_per_minute=12, persistence_path=persistence_path
    )
    begin = wait_until(start_ns)
    calls = []
    end = begin + int(seconds * 1e9)
    while now_ns() < end:
        before = now_ns()
        ok = limiter.try_acquire()
        calls.append((before, now_ns(), ok))
        time.sleep(0.003)
    limiter.close()
    return calls


def elspeth_once(name: str, blocking: bool) -> Tuple[bool, int]:
    """One acquire through the shim with ``1/s``, in a process of its own."""
    from hostlimit.compat.elspeth import RateLimiter

    with RateLimiter(name, requests_per_second=1) as limiter:
        if blocking:
            try:
                limiter.acquire(timeout=0)
                return True, now_ns()
            except TimeoutError:
                return False, now_ns()
        return limiter.try_acquire(), now_ns()
