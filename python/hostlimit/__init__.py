"""hostlimit: host-wide rate limits that every process on the machine shares, lock-free.

Each limiter is a memory-mapped file (by default under ``/dev/shm/hostlimit``). An acquire
checks every rate and commits to all of them or to none, in one atomic instruction, across
processes; a process killed at any instruction never blocks the others and never leaks or
invents capacity.

>>> import hostlimit
>>> lim = hostlimit.Limiter.open("/dev/shm/hostlimit/openai", ["60req/min", "90000tok/min"])
>>> d = lim.try_acquire(1200)        # never waits; a Decision, truthy iff admitted
>>> if not d:
...     print(d.rate, d.retry_after)  # the refusing rate; seconds, or None: can never fit
>>> lim.acquire(1200, timeout=30.0)  # waits; raises hostlimit.RateLimited (a TimeoutError)
"""

from __future__ import annotations

import os as _os

from ._errors import (
    ClockMismatchError,
    ClosedError,
    ConfigMismatchError,
    CorruptFileError,
    HostlimitError,
    InvalidNameError,
    InvalidRateError,
    JournalError,
    RateLimited,
    UnsupportedError,
)
from ._native import (
    DEFAULT_DIR,
    DIR_ENV,
    MAX_LIMIT,
    MAX_WINDOW,
    Decision,
    FileInfo,
    Limiter,
    ManualClock,
    Rate,
    RateUsage,
    _before_fork,
    default_dir,
    path_for,
    remove,
    reset,
)
from ._waiting import Limit
from .registry import NoOpLimiter, Registry

__version__ = "0.1.0"

__all__ = [
    "Limiter",
    "Rate",
    "Decision",
    "RateUsage",
    "FileInfo",
    "ManualClock",
    "Limit",
    "Registry",
    "NoOpLimiter",
    "reset",
    "remove",
    "default_dir",
    "path_for",
    "DEFAULT_DIR",
    "DIR_ENV",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "HostlimitError",
    "InvalidRateError",
    "InvalidNameError",
    "ConfigMismatchError",
    "CorruptFileError",
    "ClockMismatchError",
    "UnsupportedError",
    "JournalError",
    "ClosedError",
    "RateLimited",
]

# No journal thread or SQLite connection of a limiter crosses os.fork(): journals are
# flushed and stopped before it, and every limiter opens its file again in the child.
_os.register_at_fork(before=_before_fork)
