"""Waiting: the GIL is released, Ctrl-C interrupts, asyncio never blocks and cancelling
leaves the use unchanged, timeouts give up as documented."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import hostlimit


def full(path: Path, rate: str = "1/s") -> hostlimit.Limiter:
    limiter = hostlimit.Limiter.open(path, rate)
    assert limiter.try_acquire()
    return limiter


def test_threads_waiting_in_acquire_overlap_and_leave_the_gil_free(limiter_dir: Path) -> None:
    limiters = [full(limiter_dir / f"l{i}", "1/600ms") for i in range(3)]
    started = time.monotonic()
    threads = [threading.Thread(target=lim.acquire) for lim in limiters]
    for t in threads:
        t.start()
    # Pure Python work on this thread while the others wait: it can only run if they
    # released the GIL.
    spins = 0
    while any(t.is_alive() for t in threads):
        spins += 1
    elapsed = time.monotonic() - started
    for t in threads:
        t.join()
    assert elapsed < 1.2, f"three 0.6 s waits took {elapsed:.2f} s: they did not overlap"
    assert spins > 10_000, f"the main thread ran only {spins} loops during the waits"
    assert all(lim.usage()[0].used == 1 for lim in limiters)


CTRL_C = """
import sys, time, hostlimit
lim = hostlimit.Limiter.open(sys.argv[1], "1/min")
assert lim.try_acquire()
print("waiting", flush=True)
try:
    lim.acquire()
except KeyboardInterrupt:
    print("interrupted", time.clock_gettime_ns(time.CLOCK_BOOTTIME), flush=True)
    print("used", lim.usage()[0].used, flush=True)
"""


def test_ctrl_c_interrupts_a_blocked_acquire_within_200_ms(limiter_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, str(limiter_dir / "l")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    time.sleep(0.3)  # well inside acquire's sleep
    sent = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    latency = (int(lines["interrupted"]) - sent) / 1e9
    assert latency < 0.2, f"KeyboardInterrupt came {latency * 1000:.0f} ms after SIGINT"
    assert lines["used"] == "1", "the interrupted acquire admitted nothing"


def test_acquire_async_awaits_without_blocking_and_cancelling_changes_nothing(limiter_dir: Path) -> None:
    limiter = full(limiter_dir / "l", "1/min")
    before = [(u.used, u.remaining) for u in limiter.usage()]

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        task = asyncio.ensure_future(limiter.acquire_async(1))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(limiter.acquire_async(1), 0.2)
        tick.cancel()
        return ticks

    ticks = asyncio.run(main())
    assert ticks > 20, f"the event loop was blocked: {ticks} ticks in 0.5 s"
    assert [(u.used, u.remaining) for u in limiter.usage()] == before


def test_acquire_async_admits_when_the_window_frees(limiter_dir: Path) -> None:
    limiter = full(limiter_dir / "l", "1/300ms")
    started = time.monotonic()
    asyncio.run(limiter.acquire_async())
    waited = time.monotonic() - started
    assert 0.2 < waited < 0.6
    assert limiter.usage()[0].used == 1


def test_timeouts_give_up_at_once_when_the_request_cannot_fit_in_time(limiter_dir: Path) -> None:
    limiter = full(limiter_dir / "l", "1/min")
    started = time.monotonic()
    with pytest.raises(hostlimit.RateLimited) as caught:
        limiter.acquire(timeout=5)
    assert time.monotonic() - started < 0.5, "it waited although a minute was needed"
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.kind == "exhausted"
    assert caught.value.retry_after is not None and 55 < caught.value.retry_after <= 60
    assert caught.value.rate == hostlimit.Rate(1, 60)

    with pytest.raises(hostlimit.RateLimited) as never:
        limiter.acquire(2)
    assert never.value.kind == "never_fits" and never.value.retry_after is None

    async def in_async() -> None:
        await limiter.acquire_async(timeout=1)

    with pytest.raises(hostlimit.RateLimited):
        asyncio.run(in_async())


def test_acquire_waits_for_the_window_then_admits(limiter_dir: Path) -> None:
    limiter = full(limiter_dir / "l", "2/400ms")
    assert limiter.try_acquire()
    started = time.monotonic()
    limiter.acquire(timeout=2)
    assert 0.3 < time.monotonic() - started < 0.8
    with pytest.raises(ValueError):
        limiter.acquire(-1)
    with pytest.raises(ValueError):
        limiter.acquire(timeout=-1)
