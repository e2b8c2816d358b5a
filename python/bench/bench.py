"""try_acquire calls per second from Python: hostlimit against pyrate-limiter (in memory,
and SQLite with its file lock: the cross-process setup of the original users) and limits'
moving window (memory storage), from one process and from several, in one run.

Not a test: run it by hand and paste its table into the README.

    python/.venv/bin/python python/bench/bench.py --seconds 2 --processes 1 2 4 > table.md

Every design gets limits that never bind (every call is admitted), so what is measured is
the cost of a call. Each process calls for ``--seconds`` from a common start instant; the
figure is the calls of all processes divided by the time. Designs marked "per process"
keep their state in each process (no limit is shared): with several processes they run
side by side, each on its own limiter.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

BATCH = 200


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# Each maker runs in the worker process and returns the call to measure.


def make_hostlimit(directory: str) -> Callable[[], object]:
    import hostlimit

    lim = hostlimit.Limiter.open(os.path.join(directory, "hostlimit"), ["1000/10us", "1000000000/100us"])
    return lambda: lim.try_acquire(1)


def make_hostlimit_pyrate_shim(directory: str) -> Callable[[], object]:
    from hostlimit.compat.pyrate import Limiter, Rate

    lim = Limiter([Rate(1_000_000, 1000)], path=os.path.join(directory, "shim-pyrate"))
    return lambda: lim.try_acquire("bench", 1, blocking=False)


def make_hostlimit_limits_storage(directory: str) -> Callable[[], object]:
    from limits import parse, storage, strategies

    import hostlimit.compat.limits  # noqa: F401  (registers hostlimit://)

    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(f"hostlimit://{directory}/limits"))
    item = parse("1000000/second")
    return lambda: limiter.hit(item, "bench")


def make_pyrate_memory(directory: str) -> Callable[[], object]:
    from pyrate_limiter import Limiter, Rate

    lim = Limiter([Rate(1_000_000, 100), Rate(10_000_000, 1000)])
    return lambda: lim.try_acquire("bench", 1, blocking=False)


def make_pyrate_sqlite_filelock(directory: str) -> Callable[[], object]:
    from pyrate_limiter import Limiter, Rate, SQLiteBucket

    rates = [Rate(1_000_000, 100), Rate(10_000_000, 1000)]
    bucket = SQLiteBucket.init_from_file(
        rates, db_path=os.path.join(directory, "pyrate.sqlite"), table="bench", create_new_table=True, use_file_lock=True
    )
    lim = Limiter(bucket)
    # blocking=True never waits here (the limits never bind); blocking=False hands the
    # file lock a bool it rejects with current filelock releases.
    return lambda: lim.try_acquire("bench", 1)


def make_limits_memory(directory: str) -> Callable[[], object]:
    from limits import parse, storage, strategies

    limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    item = parse("1000000/second")
    return lambda: limiter.hit(item, "bench")


DESIGNS: List[Tuple[str, str, bool, Callable[[str], Callable[[], object]]]] = [
    ("hostlimit", "hostlimit.Limiter.try_acquire", True, make_hostlimit),
    ("hostlimit-pyrate-shim", "hostlimit.compat.pyrate (shim)", True, make_hostlimit_pyrate_shim),
    ("hostlimit-limits", "limits moving window on hostlimit://", True, make_hostlimit_limits_storage),
    ("pyrate-memory", "pyrate-limiter, in memory", False, make_pyrate_memory),
    ("pyrate-sqlite", "pyrate-limiter, SQLite + file lock", True, make_pyrate_sqlite_filelock),
    ("limits-memory", "limits moving window, memory storage", False, make_limits_memory),
]


def worker(key: str, directory: str, start: float, seconds: float, queue: "multiprocessing.Queue[Tuple[int, float]]") -> None:
    make = {d[0]: d[3] for d in DESIGNS}[key]
    call = make(directory)
    for _ in range(BATCH):  # warm up, and create the state
        call()
    while time.time() < start:
        time.sleep(0.001)
    begin = time.perf_counter()
    end = begin + seconds
    calls = 0
    while True:
        for _ in range(BATCH):
            call()
        calls += BATCH
        now = time.perf_counter()
        if now >= end:
            break
    queue.put((calls, now - begin))


def measure(key: str, processes: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory(prefix="hostlimit-bench-") as directory:
        start = time.time() + 1.5 + 0.3 * processes
        procs = [context.Process(target=worker, args=(key, directory, start, seconds, queue)) for _ in range(processes)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120 + seconds) for _ in procs]
        for p in procs:
            p.join()
    # All processes ran over the same interval: the total calls over the longest run.
    return sum(calls for calls, _ in results) / max(elapsed for _, elapsed in results)


def human(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k"
    return f"{rate:.0f}"


def ratio(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 1:
        return f"{value:.1f}x"
    return f"{value:.3f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and process (default 2)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    load_before = os.getloadavg()
    results: Dict[Tuple[str, int], float] = {}
    for processes in args.processes:
        for key, *_ in DESIGNS:
            results[key, processes] = measure(key, processes, args.seconds)
            print(f"{key} x{processes}: {human(results[key, processes])} calls/s", file=sys.stderr)
    load_after = os.getloadavg()

    import limits
    import pyrate_limiter

    print(f"Generated by `python/bench/bench.py --seconds {args.seconds:g} --processes {' '.join(map(str, args.processes))}` "
          f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, {cpu_model()}; "
          f"Python {platform.python_version()}, pyrate-limiter {pyrate_limiter.__version__}, limits {limits.__version__}.")
    print(f"Load average before: {' '.join(f'{x:.2f}' for x in load_before)}; after: {' '.join(f'{x:.2f}' for x in load_after)}.")
    print()
    print("| design | shared across processes | processes | calls/s (all processes) | vs pyrate in memory, 1 process | vs pyrate SQLite + file lock, same processes |")
    print("|---|---|---:|---:|---:|---:|")
    base_memory = results["pyrate-memory", args.processes[0]]
    for processes in args.processes:
        base_sqlite = results["pyrate-sqlite", processes]
        for key, label, shared, _ in DESIGNS:
            rate = results[key, processes]
            print(
                f"| {label} | {'yes' if shared else 'no (per process)'} | {processes} | {human(rate)} | "
                f"{ratio(rate / base_memory)} | {ratio(rate / base_sqlite)} |"
            )
    print()
    print("| target | measured | |")
    print("|---|---:|---|")
    for processes in args.processes:
        if processes == 1:
            r = results["hostlimit", 1] / results["pyrate-memory", 1]
            print(f"| 1 process: at least 10x pyrate-limiter in memory | {ratio(r)} | **{'met' if r >= 10 else 'missed'}** |")
        else:
            r = results["hostlimit", processes] / results["pyrate-sqlite", processes]
            print(
                f"| {processes} processes: at least 1,000x pyrate-limiter on SQLite with its file lock "
                f"| {ratio(r)} | **{'met' if r >= 1000 else 'missed'}** |"
            )


if __name__ == "__main__":
    main()
