"""The guarantees across real processes on one real file, under every start method:
exact sliding windows on the recorded timestamps, no false denial, every admission in the
log; a worker SIGKILLed mid-loop neither leaks nor invents capacity."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import List

import pytest

import hostlimit
import workers
from checks import (
    Admission,
    check_denials,
    check_sequence,
    check_stamps,
    check_windows,
    now_ns,
    split,
)

RATES = [hostlimit.Rate(10, 0.5), hostlimit.Rate(30, 2)]
WORKERS = 3


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_processes_hammering_two_rates_never_exceed_a_window_nor_deny_falsely(
    limiter_dir: Path, method: str
) -> None:
    path = str(limiter_dir / "shared")
    limiter = hostlimit.Limiter.open(path, RATES)
    context = multiprocessing.get_context(method)
    weights = [1, 2, 3]
    if method == "fork":
        # The children use the limiter exactly as they inherited it.
        workers.INHERITED = limiter
    with context.Pool(WORKERS) as pool:
        start = now_ns() + int(2.0e9)
        if method == "fork":
            jobs = [(start, 2.5, weights, 0.002)] * WORKERS
            outputs = pool.starmap(workers.hammer_inherited, jobs)
        elif method == "spawn":
            # The limiter itself is pickled, and opened again in each worker.
            outputs = pool.starmap(workers.hammer, [(limiter, start, 2.5, weights, 0.002)] * WORKERS)
        else:
            jobs = [(path, [str(r) for r in RATES], start, 2.5, weights, 0.002)] * WORKERS
            outputs = pool.starmap(workers.hammer_path, jobs)
    workers.INHERITED = None
    admitted, denied = split([r for out in outputs for r in out])
    assert all(out for out in outputs), "a worker made no call"

    check_stamps(admitted)
    check_sequence(admitted)
    check_windows(admitted, RATES)
    check_denials(admitted, denied, RATES)
    assert limiter.admitted() == len(admitted), "the file's log holds exactly the workers' admissions"
    usage = limiter.usage()
    for index, rate in enumerate(RATES):
        by_rate = sum(1 for d in denied if d.rate_index == index)
        assert by_rate > 0, f"{rate} never refused anything: not a test of it"
        assert usage[index].denied == by_rate, f"{rate}'s denial counter"
    print(f"{method}: {len(admitted)} admissions, {len(denied)} denials")


def _read_log(path: Path) -> List[Admission]:
    lines = path.read_text().splitlines()
    return [Admission(*map(int, line.split())) for line in lines if line != "ready"]


def test_a_worker_killed_mid_loop_neither_leaks_nor_invents_capacity(limiter_dir: Path) -> None:
    path = str(limiter_dir / "shared")
    rates = [hostlimit.Rate(40, 1)]
    limiter = hostlimit.Limiter.open(path, rates)
    context = multiprocessing.get_context("spawn")
    logs = [limiter_dir / f"log.{i}" for i in range(3)]
    procs = [
        context.Process(target=workers.log_admissions, args=(path, ["40/s"], str(log), 3.0, 0.002))
        for log in logs
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while not all(log.exists() and log.read_text().startswith("ready") for log in logs):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    time.sleep(1.0)
    assert procs[0].pid is not None
    os.kill(procs[0].pid, signal.SIGKILL)
    killed_at = now_ns()
    for p in procs:
        p.join(60)
        assert not p.is_alive(), "a worker hangs"
    assert procs[0].exitcode == -signal.SIGKILL
    assert all(p.exitcode == 0 for p in procs[1:])

    known = [a for log in logs for a in _read_log(log)]
    check_stamps(known)
    check_windows(known, rates)
    survivors_after = [a for log in logs[1:] for a in _read_log(log) if a.before > killed_at]
    assert len(survivors_after) > 40, "the others did not go on after the kill"
    # At most the one admission the killed worker made and did not get to write down.
    assert limiter.admitted() - len(known) in (0, 1)

    # Once every window has passed, exactly the full capacity is there again.
    time.sleep(1.05)
    burst = [bool(limiter.try_acquire()) for _ in range(41)]
    assert burst == [True] * 40 + [False]
