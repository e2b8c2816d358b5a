"""The Python API: rates, decisions, usage, opening by path or name, attach, reset and
remove, close and the context manager, the decorator, the registry, pickling, the manual
clock, and every exception type."""

from __future__ import annotations

import asyncio
import datetime
import os
import pickle
from pathlib import Path

import pytest

import hostlimit
from hostlimit import Rate


def test_rates_from_text_and_objects() -> None:
    assert Rate.parse("10/s") == Rate(10, 1)
    assert Rate.parse("60req/min") == Rate.requests(60, 60) == Rate(60, 60, counts="requests")
    tokens = Rate.parse("90000tok/min")
    assert (tokens.limit, tokens.window_ns, tokens.counts) == (90_000, 60 * 10**9, "weight")
    assert str(tokens) == "90000tok/min", "the unit word is kept"
    assert Rate(90_000, datetime.timedelta(minutes=1)) == Rate.parse("90000/min")
    assert Rate(5, 0.25).window_ns == 250_000_000
    assert str(Rate.parse("5/2s")) == "5/2s" and repr(Rate(1, 1)) == "Rate.parse('1/s')"
    assert Rate.parse("60req/min").counts == "requests" and Rate(1, 1).counts == "weight"
    assert len({Rate(1, 1), Rate.parse("1/s"), Rate(2, 1)}) == 2
    assert pickle.loads(pickle.dumps(Rate.parse("7/100ms"))) == Rate.parse("7/100ms")
    for bad in ["", "10", "10/parsec", "0/s", "10/0s", "5000000000/s"]:
        with pytest.raises(hostlimit.InvalidRateError):
            Rate.parse(bad)
    with pytest.raises(hostlimit.InvalidRateError):
        Rate(0, 1)
    with pytest.raises(ValueError):
        Rate(1, -1)
    with pytest.raises(ValueError):
        Rate(1, 1, counts="bytes")
    with pytest.raises(TypeError):
        Rate("10", 1)  # type: ignore[arg-type]


def test_a_decision_is_truthy_iff_admitted_and_says_why_not(limiter_dir: Path) -> None:
    lim = hostlimit.Limiter.open(limiter_dir / "openai", ["60req/min", "90000tok/min"])
    d = lim.try_acquire(1200)
    assert d and d.admitted and d.retry_after is None and d.rate is None and d.kind is None
    assert d.timestamp_ns is not None and d.sequence == 1
    assert lim.try_acquire(88_800)
    full = lim.try_acquire(1)
    assert not full and full.kind == "exhausted" and not full.is_final
    assert full.rate == Rate.parse("90000tok/min") and full.rate_index == 1
    assert full.retry_after is not None and 59 < full.retry_after <= 60
    assert "90000tok/min is full" in str(full.reason)
    never = lim.try_acquire(90_001)
    assert not never and never.kind == "never_fits" and never.retry_after is None and never.is_final
    assert lim.try_acquire(0), "weight 0 is admitted: one request, no tokens"
    with pytest.raises(ValueError):
        lim.try_acquire(-1)

    requests, tokens = lim.usage()
    assert (requests.rate, requests.used, requests.remaining, requests.denied) == (Rate.requests(60, 60), 3, 57, 0)
    # Refused twice by the token rate: once full, once a weight that can never fit.
    assert (tokens.used, tokens.remaining, tokens.denied) == (90_000, 0, 2)
    assert tokens.next_free is not None and 59 < tokens.next_free <= 60
    assert lim.admitted() == 3
    assert lim.rates == [Rate.requests(60, 60), Rate.parse("90000tok/min")]
    info = lim.info()
    assert info.path == lim.path == str(limiter_dir / "openai")
    assert info.creator_pid == os.getpid() and info.capacity >= 60 and info.size > 0
    assert info.rates == lim.rates and info.created > 0


def test_named_attach_reset_remove(limiter_dir: Path) -> None:
    lim = hostlimit.Limiter.named("api", "2/min", mode=0o640)
    assert lim.path == str(limiter_dir / "api") == hostlimit.path_for("api")
    assert hostlimit.default_dir() == str(limiter_dir)
    assert os.stat(lim.path).st_mode & 0o777 == 0o640
    assert lim.try_acquire() and lim.try_acquire() and not lim.try_acquire()
    other = hostlimit.Limiter.attach(lim.path)
    assert other.rates == [Rate(2, 60)] and not other.try_acquire()
    lim.reset()
    assert lim.try_acquire() and other.try_acquire() and not lim.try_acquire()
    hostlimit.reset(lim.path)
    assert other.try_acquire()
    lim.remove()
    assert lim.closed and not os.path.exists(lim.path)
    # A process still using it creates it again, empty.
    assert other.try_acquire() and os.path.exists(other.path)
    hostlimit.remove(other.path)
    assert not os.path.exists(other.path)


def test_close_and_the_context_manager(limiter_dir: Path) -> None:
    with hostlimit.Limiter.open(limiter_dir / "l", "5/s") as lim:
        assert lim.try_acquire()
    assert lim.closed and "closed" in repr(lim)
    with pytest.raises(hostlimit.ClosedError):
        lim.try_acquire()
    with pytest.raises(hostlimit.ClosedError):
        lim.usage()
    lim.close()  # twice is harmless


def test_dropping_a_journaled_limiter_stops_its_thread(limiter_dir: Path) -> None:
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    before = threads()
    lim = hostlimit.Limiter.open(limiter_dir / "l", "5/s", journal=limiter_dir / "j.sqlite")
    assert lim.try_acquire() and threads() == before + 1
    del lim
    assert threads() == before
    again = hostlimit.Limiter.open(limiter_dir / "l", "5/s", journal=limiter_dir / "j.sqlite")
    assert again.usage()[0].used == 1
    again.close()
    assert threads() == before


def test_the_decorator_computes_the_weight_from_the_call(limiter_dir: Path) -> None:
    lim = hostlimit.Limiter.open(limiter_dir / "l", ["10req/min", "100tok/min"])

    @lim.limit(weight=lambda prompt, **_: len(prompt))
    def complete(prompt: str, temperature: float = 0.0) -> str:
        return prompt.upper()

    assert complete("hello", temperature=1.0) == "HELLO"
    assert complete.__name__ == "complete"

    @lim.limit(weight=lambda prompt: len(prompt))
    async def complete_async(prompt: str) -> str:
        return prompt

    assert asyncio.run(complete_async("abc")) == "abc"
    with lim.limit(10):
        pass

    async def block() -> None:
        async with lim.limit(2):
            pass

    asyncio.run(block())
    assert [u.used for u in lim.usage()] == [4, 5 + 3 + 10 + 2]
    with pytest.raises(hostlimit.RateLimited):
        complete("x" * 101)
    with pytest.raises(TypeError):
        with lim.limit(lambda: 1):
            pass
    with pytest.raises(ValueError):
        lim.limit(-1)


def test_the_registry_and_its_disabled_mode(limiter_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = hostlimit.Registry(
        {"openai": ["60req/min", "90000tok/min"], "github": "2/h"}, prefix="app.", default="1/s"
    )
    github = registry.get("github")
    assert github is registry["github"] and isinstance(github, hostlimit.Limiter)
    assert github.path == str(limiter_dir / "app.github")
    assert github.try_acquire() and github.try_acquire() and not github.try_acquire()
    assert registry.get("other").rates == [Rate(1, 1)]
    assert sorted(registry.services()) == ["github", "openai"]
    registry.close()
    assert github.closed and not registry.get("github").try_acquire(), "shared through the file"

    with pytest.raises(KeyError):
        hostlimit.Registry({}).get("nothing")
    journaled = hostlimit.Registry({"x": "5/s"}, journal_dir=limiter_dir)
    assert journaled.get("x").journal == str(limiter_dir / "x.sqlite")
    journaled.close()

    for off in (hostlimit.Registry({"a": "1/h"}, enabled=False), None):
        if off is None:
            monkeypatch.setenv("HOSTLIMIT_DISABLED", "1")
            off = hostlimit.Registry({"a": "1/h"})
        noop = off.get("a")
        assert isinstance(noop, hostlimit.NoOpLimiter) and noop is off.get("unknown")
        assert all(noop.try_acquire(10**9) for _ in range(3))
        noop.acquire(5, timeout=0)
        asyncio.run(noop.acquire_async(5))

        @noop.limit(weight=lambda n: n)
        def f(n: int) -> int:
            return n

        assert f(7) == 7 and noop.usage() == [] and noop.rates == []
        with noop:
            pass
    assert not os.path.exists(limiter_dir / "a")


def test_pickled_limiters_open_the_same_file(limiter_dir: Path) -> None:
    lim = hostlimit.Limiter.open(limiter_dir / "l", ["1/min"], journal=limiter_dir / "j", durability="strict")
    copy = pickle.loads(pickle.dumps(lim))
    assert copy.path == lim.path and copy.rates == lim.rates and copy.journal == lim.journal
    assert lim.try_acquire() and not copy.try_acquire()
    with pytest.raises(TypeError):
        pickle.dumps(hostlimit.Limiter.open(limiter_dir / "m", "1/s", clock=hostlimit.ManualClock()))


def test_a_manual_clock_moves_the_windows(limiter_dir: Path) -> None:
    clock = hostlimit.ManualClock()
    lim = hostlimit.Limiter.open(limiter_dir / "l", ["2/s", "3/min"], clock=clock)
    assert lim.try_acquire() and lim.try_acquire() and not lim.try_acquire()
    clock.advance(0.999)
    assert not lim.try_acquire()
    clock.advance(datetime.timedelta(milliseconds=1))
    assert lim.try_acquire()
    d = lim.try_acquire()
    assert not d and d.rate == Rate(3, 60)
    assert d.retry_after is not None and abs(d.retry_after - 59.0) < 1e-6
    assert clock.now_ns == 2_000_000_000


def test_every_exception_type(limiter_dir: Path) -> None:
    path = limiter_dir / "l"
    hostlimit.Limiter.open(path, "5/s")
    with pytest.raises(hostlimit.InvalidRateError):
        hostlimit.Limiter.open(limiter_dir / "x", [])
    with pytest.raises(hostlimit.InvalidRateError):
        hostlimit.Limiter.open(limiter_dir / "x", ["1/s", "1/s"])
    with pytest.raises(hostlimit.InvalidRateError, match="ring"):
        hostlimit.Limiter.open(limiter_dir / "x", "4000000000/s")
    with pytest.raises(TypeError):
        hostlimit.Limiter.open(limiter_dir / "x", [1])
    with pytest.raises(hostlimit.InvalidNameError):
        hostlimit.Limiter.named("../escape", "1/s")
    with pytest.raises(hostlimit.ConfigMismatchError) as mismatch:
        hostlimit.Limiter.open(path, "6/s")
    assert mismatch.value.file_rates == [Rate(5, 1)] and mismatch.value.requested == [Rate(6, 1)]
    assert mismatch.value.path == str(path)
    garbage = limiter_dir / "garbage"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(hostlimit.CorruptFileError):
        hostlimit.Limiter.attach(garbage)
    manual = limiter_dir / "manual"
    hostlimit.Limiter.open(manual, "1/s", clock=hostlimit.ManualClock())
    with pytest.raises(hostlimit.ClockMismatchError):
        hostlimit.Limiter.open(manual, "1/s")
    not_sqlite = limiter_dir / "journal"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    with pytest.raises(hostlimit.JournalError):
        hostlimit.Limiter.open(limiter_dir / "j", "1/s", journal=not_sqlite)
    with pytest.raises(FileNotFoundError):
        hostlimit.Limiter.attach(limiter_dir / "missing")
    with pytest.raises(NotADirectoryError):
        hostlimit.Limiter.open(garbage / "below-a-file", "1/s")
    with pytest.raises(hostlimit.UnsupportedError):
        hostlimit._native._raise_for_test("unsupported")  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        hostlimit._native._raise_for_test("io")  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        hostlimit.Limiter.open(limiter_dir / "x", "1/s", durability="sometimes", journal=limiter_dir / "j2")
    with pytest.raises(ValueError):
        hostlimit.Limiter.open(limiter_dir / "x", "1/s", mode=0o1777)
    lim = hostlimit.Limiter.open(limiter_dir / "r", "1/min")
    assert lim.try_acquire()
    with pytest.raises(hostlimit.RateLimited) as limited:
        lim.acquire(timeout=0.1)
    assert isinstance(limited.value, TimeoutError)
    again = pickle.loads(pickle.dumps(limited.value))
    assert (again.retry_after, again.rate, again.kind) == (
        limited.value.retry_after,
        limited.value.rate,
        "exhausted",
    )
    lim.close()
    with pytest.raises(hostlimit.ClosedError):
        lim.acquire()
    for cls in (
        hostlimit.InvalidRateError,
        hostlimit.InvalidNameError,
        hostlimit.ConfigMismatchError,
        hostlimit.CorruptFileError,
        hostlimit.ClockMismatchError,
        hostlimit.UnsupportedError,
        hostlimit.JournalError,
        hostlimit.ClosedError,
    ):
        assert issubclass(cls, hostlimit.HostlimitError)
    assert issubclass(hostlimit.InvalidRateError, ValueError)
    assert issubclass(hostlimit.RateLimited, TimeoutError)
    assert not issubclass(hostlimit.RateLimited, hostlimit.HostlimitError)
