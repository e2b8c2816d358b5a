"""The drop-in shims, against the real packages' documented behaviour where they are
installed (PyrateLimiter and limits, from PyPI), and elspeth's API as documented."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List

import pytest

import hostlimit
from hostlimit.compat import elspeth, pyrate

pyrate_limiter = pytest.importorskip("pyrate_limiter")
limits = pytest.importorskip("limits")
import hostlimit.compat.limits as hl_limits  # noqa: E402  (needs limits)


# --- PyrateLimiter ---------------------------------------------------------------------


def both(rates: Any, tmp: Path) -> List[Any]:
    real = pyrate_limiter.Limiter([pyrate_limiter.Rate(r.limit, r.interval) for r in rates])
    ours = pyrate.Limiter(rates, path=tmp / "pyrate")
    return [real, ours]


def test_pyrate_non_blocking_bursts_match_the_real_limiter(limiter_dir: Path) -> None:
    rates = [pyrate.Rate(3, pyrate.Duration.SECOND), pyrate.Rate(5, pyrate.Duration.MINUTE)]
    real, ours = both(rates, limiter_dir)
    for weight in [1, 1, 2, 1, 3, 1]:
        assert ours.try_acquire("item", weight, blocking=False) == real.try_acquire("item", weight, blocking=False)
    assert ours.try_acquire("item", 0) is True and real.try_acquire("item", 0) is True
    real.close()
    ours.close()


def test_pyrate_blocking_waits_and_times_out_as_documented(limiter_dir: Path) -> None:
    for limiter in both([pyrate.Rate(1, 300)], limiter_dir):
        assert limiter.try_acquire("x")
        started = time.monotonic()
        assert limiter.try_acquire("x") is True  # blocks until the window frees
        assert 0.2 < time.monotonic() - started < 1.0
        assert limiter.try_acquire("x", timeout=0.05) is False
        assert limiter.try_acquire("x", 2) is False, "a weight above the limit never fits"
        with pytest.raises(ValueError):
            limiter.try_acquire("x", timeout=-5)
        with pytest.raises(RuntimeError):
            limiter.try_acquire("x", blocking=False, timeout=1)
        limiter.close()


def test_pyrate_async_and_decorator(limiter_dir: Path) -> None:
    ours = pyrate.Limiter(pyrate.Rate(2, pyrate.Duration.SECOND), path=limiter_dir / "p")

    async def main() -> List[bool]:
        return [await ours.try_acquire_async("x", blocking=False) for _ in range(3)]

    assert asyncio.run(main()) == [True, True, False]
    calls = []

    @ours.as_decorator(name="api", weight=1)
    def call(n: int) -> int:
        calls.append(n)
        return n

    started = time.monotonic()
    assert call(1) == 1  # waits for the window
    assert time.monotonic() - started > 0.5

    @ours.as_decorator(weight=3)
    def too_heavy() -> None:
        pass

    with pytest.raises(RuntimeError, match="can never admit"):
        too_heavy()

    @ours.as_decorator(weight=lambda n: n)
    async def weighted(n: int) -> int:
        return n

    assert asyncio.run(weighted(1)) == 1
    ours.close()


def test_pyrate_rates_and_durations_are_interchangeable(limiter_dir: Path) -> None:
    D, R = pyrate.Duration, pyrate_limiter.Duration
    for ours, real in zip(D, R):
        assert ours.name == real.name and ours.value == real.value
        assert ours * 5 == real * 5 and 2 * ours == 2 * real and ours + 1 == real + 1
        assert int(ours) == int(real) and D.readable(ours.value * 3) == R.readable(real.value * 3)
    assert str(pyrate.Rate(5, D.SECOND)) == str(pyrate_limiter.Rate(5, R.SECOND))
    # The real package's Rate objects work too, and a shim limiter is host-wide.
    a = pyrate.Limiter([pyrate_limiter.Rate(2, R.MINUTE)], name="shared")
    b = pyrate.Limiter([pyrate.Rate(2, D.MINUTE)], name="shared")
    assert a.try_acquire("x", blocking=False) and b.try_acquire("y", blocking=False)
    assert not a.try_acquire("z", blocking=False)
    with pytest.raises(TypeError, match="bucket"):
        pyrate.Limiter(pyrate_limiter.InMemoryBucket([pyrate_limiter.Rate(1, 1000)]))
    with pytest.raises(ValueError):
        pyrate.Rate(0, D.SECOND)


# --- limits ----------------------------------------------------------------------------


def test_limits_moving_window_matches_the_memory_storage(limiter_dir: Path) -> None:
    from limits import parse, storage, strategies

    memory = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    backend = storage.storage_from_string(f"hostlimit://{limiter_dir}/limits")
    assert isinstance(backend, hl_limits.HostlimitStorage) and backend.check()
    ours = strategies.MovingWindowRateLimiter(backend)
    item = parse("3 per 2 seconds")
    for limiter in (memory, ours):
        assert limiter.test(item, "client")
        assert [limiter.hit(item, "client") for _ in range(4)] == [True, True, True, False]
        assert not limiter.test(item, "client")
        assert limiter.hit(item, "other", cost=3) and not limiter.hit(item, "other2", cost=4)
        stats = limiter.get_window_stats(item, "client")
        assert stats.remaining == 0 and time.time() < stats.reset_time <= time.time() + 2
        assert limiter.get_window_stats(item, "fresh").remaining == 3
    time.sleep(2.05)
    assert ours.hit(item, "client") and memory.hit(item, "client")
    ours.clear(item, "client")
    assert ours.get_window_stats(item, "client").remaining == 3
    assert backend.reset() == 1, "only \"other\" is left (a refused or read-only key makes no file)"
    with pytest.raises(NotImplementedError, match="moving-window"):
        strategies.FixedWindowRateLimiter(backend).hit(item, "client")


def _hit_many(uri: str, count: int) -> int:
    from limits import parse, storage, strategies

    import hostlimit.compat.limits  # noqa: F401  (registers hostlimit://)

    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(uri))
    return sum(limiter.hit(parse("25/minute"), "shared-key") for _ in range(count))


def test_limits_storage_is_host_wide(limiter_dir: Path) -> None:
    uri = f"hostlimit://{limiter_dir}/web"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        admitted = pool.starmap(_hit_many, [(uri, 20)] * 3)
    assert sum(admitted) == 25, admitted


def test_limits_async_storage(limiter_dir: Path) -> None:
    from limits import parse
    from limits.aio import strategies
    from limits.storage import storage_from_string

    limiter = strategies.MovingWindowRateLimiter(storage_from_string(f"async+hostlimit://{limiter_dir}/a"))

    async def main() -> List[bool]:
        return [await limiter.hit(parse("2/second"), "k") for _ in range(3)]

    assert asyncio.run(main()) == [True, True, False]


# --- elspeth ---------------------------------------------------------------------------


def test_elspeth_api_as_documented(limiter_dir: Path) -> None:
    with elspeth.RateLimiter("openai", requests_per_minute=2) as limiter:
        assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()
        with pytest.raises(TimeoutError):
            limiter.acquire(timeout=0.05)
        for bad, error in [(0, ValueError), (1.5, TypeError), (True, TypeError)]:
            with pytest.raises(error):
                limiter.try_acquire(bad)  # type: ignore[arg-type]
        for timeout, error in [(-1, ValueError), (float("inf"), ValueError), ("1", TypeError)]:
            with pytest.raises(error):
                limiter.acquire(1, timeout)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="closed"):
        limiter.try_acquire()
    limiter.close()
    for name in ["1abc", "with-dash", "", "a b"]:
        with pytest.raises(ValueError, match="Invalid rate limiter name"):
            elspeth.RateLimiter(name, requests_per_minute=1)
    with pytest.raises(ValueError):
        elspeth.RateLimiter("x")
    with pytest.raises(ValueError):
        elspeth.RateLimiter("x", requests_per_minute=0)
    with pytest.raises(ValueError):
        elspeth.RateLimiter("x", requests_per_second=1, window_ms=500)
    windowed = elspeth.RateLimiter("w", requests_per_minute=1, window_ms=200)
    assert windowed.try_acquire() and not windowed.try_acquire()
    time.sleep(0.25)
    assert windowed.try_acquire()
    noop = elspeth.NoOpLimiter()
    with noop:
        assert noop.try_acquire(10**9) and noop.acquire(5, 0) is None


def test_elspeth_registry(limiter_dir: Path) -> None:
    services = {"openai": SimpleNamespace(requests_per_minute=3, requests_per_second=1)}
    config = SimpleNamespace(
        enabled=True,
        persistence_path=str(limiter_dir / "state" / "limits.db"),
        get_service_config=lambda name: services[name],
    )
    registry = elspeth.RateLimitRegistry(config)
    first = registry.get_limiter("openai")
    assert first is registry.get_limiter("openai")
    assert isinstance(first, elspeth.RateLimiter)
    assert first.try_acquire() and not first.try_acquire(), "1 per second"
    assert first.limiter.journal == str(limiter_dir / "state" / "limits.db.hostlimit-openai")
    registry.reset_all()
    with pytest.raises(RuntimeError):
        first.try_acquire()
    assert not registry.get_limiter("openai").try_acquire(), "the host-wide state outlives the registry"
    registry.close()
    config.enabled = False
    disabled = elspeth.RateLimitRegistry(config)
    assert isinstance(disabled.get_limiter("anything"), elspeth.NoOpLimiter)
    assert hostlimit.Limiter.attach(limiter_dir / "elspeth.openai").usage()[0].used == 1
