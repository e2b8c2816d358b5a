"""The two bugs of the original reports, through the elspeth shim, with real processes.

1. Per-second plus per-minute limits in two processes leaked capacity: a request refused
   by one rate had already been charged to the other.
2. With 1/s, acquire, sleep 1.5 s, acquire: the second was refused by a stale count.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import hostlimit
import workers
from checks import now_ns
from hostlimit.compat.elspeth import RateLimiter


def test_per_second_and_per_minute_in_two_processes_leak_nothing(limiter_dir: Path) -> None:
    db = str(limiter_dir / "rates.db")
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        start = now_ns() + int(2.0e9)
        outputs = pool.starmap(workers.elspeth_hammer, [("svc", db, start, 3.5)] * 2)
    calls = sorted((c for out in outputs for c in out), key=lambda c: c[0])
    admitted = [c for c in calls if c[2]]

    # The minute's 12 are all handed out, not one more and not one less: no denial
    # consumed anything, and no capacity was invented.
    assert len(admitted) == 12, f"{len(admitted)} admitted"
    # A refusal needs a full rate when it was decided, at some t within the call: the
    # minute's 12 committed before t (each began before the call ended), or five committed
    # in (t - 1 s, t] (each began before the call ended and ended after its start - 1 s).
    # The first calls by start time need not be the first to commit: a process can be
    # descheduled inside its call, or be slow in its first, while the other fills the second.
    for c in calls:
        if not c[2]:
            before = [a for a in admitted if a[0] < c[1]]
            second = [a for a in before if a[1] > c[0] - 1e9]
            assert len(before) >= 12 or len(second) >= 5, (
                f"refused while every rate had room: {c}, admissions {admitted}"
            )
    # And no second ever holds more than five.
    # (Any six admissions span at least a second; each was recorded within its call.)
    for i in range(len(admitted) - 5):
        six = admitted[i : i + 6]
        assert max(a[1] for a in six) - min(a[0] for a in six) >= 1e9, "a second held more than 5"
    # After the minute's limit was reached, the many refused calls charged nothing to the
    # per-second rate: it has drained, and the minute holds exactly the admissions.
    limiter = RateLimiter("svc", requests_per_second=5, requests_per_minute=12, persistence_path=db)
    usage = limiter.limiter.usage()
    last = max(a[1] for a in admitted)
    assert now_ns() - last > 1e9, "the run should end well after the last admission"
    assert usage[0].used == 0, f"the per-second rate kept {usage[0].used}: leaked by denials"
    assert usage[1].used == 12
    refused = sum(1 for c in calls if not c[2])
    assert usage[1].denied + usage[0].denied == refused
    limiter.close()


def test_one_per_second_admits_again_after_a_pause_of_one_and_a_half_seconds(limiter_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        first = pool.apply(workers.elspeth_once, ("one", True))
        refused = pool.apply(workers.elspeth_once, ("one", False))
    assert first[0], "the first acquire"
    assert not refused[0], "1/s refuses a second request at once"
    time.sleep(1.5)
    with context.Pool(1) as pool:
        again = pool.apply(workers.elspeth_once, ("one", True))
    assert again[0], "refused 1.5 s after the only admission: a stale count"

    # And within one process, the report's exact steps.
    with RateLimiter("single", requests_per_second=1) as limiter:
        limiter.acquire()
        time.sleep(1.5)
        assert limiter.try_acquire()


def test_the_limiter_is_shared_between_processes(limiter_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert pool.apply(workers.elspeth_once, ("shared", False))[0]
    with RateLimiter("shared", requests_per_second=1) as limiter:
        assert not limiter.try_acquire(), "another process's admission counts here"
    assert hostlimit.Limiter.attach(limiter_dir / "elspeth.shared").usage()[0].used == 1
