"""A small program using hostlimit's public API, checked with ``mypy --strict`` in CI."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import List, Optional

import hostlimit
from hostlimit.compat.elspeth import RateLimiter
from hostlimit.compat.pyrate import Duration, Limiter as PyrateLimiter, Rate as PyrateRate


def main(directory: str) -> List[Optional[float]]:
    rates: List[hostlimit.Rate] = [hostlimit.Rate.requests(60, 60), hostlimit.Rate.parse("90000tok/min")]
    lim: hostlimit.Limiter = hostlimit.Limiter.open(os.path.join(directory, "openai"), rates)
    decision: hostlimit.Decision = lim.try_acquire(1200)
    waits: List[Optional[float]] = [decision.retry_after]
    if not decision:
        refused: Optional[hostlimit.Rate] = decision.rate
        print(refused, decision.retry_after)
    try:
        lim.acquire(1200, timeout=1.0)
    except hostlimit.RateLimited as error:
        waits.append(error.retry_after)

    @lim.limit(weight=lambda prompt: len(prompt))
    def call(prompt: str) -> int:
        return len(prompt)

    call("hello")
    with lim.limit(10):
        pass
    asyncio.run(lim.acquire_async(1, timeout=1.0))
    for usage in lim.usage():
        used: int = usage.used
        print(usage.rate, used, usage.remaining, usage.next_free)

    registry = hostlimit.Registry({"github": "5000/h"}, directory=directory)
    limiter = registry.get("github")
    print(bool(limiter.try_acquire()))
    registry.close()

    legacy = RateLimiter("svc", requests_per_second=5, requests_per_minute=100, directory=directory)
    ok: bool = legacy.try_acquire()
    print(ok)
    legacy.close()

    pyrate = PyrateLimiter(PyrateRate(5, Duration.SECOND), path=os.path.join(directory, "pyrate"))
    print(pyrate.try_acquire("item", blocking=False))
    lim.close()
    return waits


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(main(tmp))
