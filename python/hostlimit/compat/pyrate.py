"""A drop-in for PyrateLimiter's ``Limiter`` (v3/v4 API), backed by hostlimit.

Change ``from pyrate_limiter import Duration, Rate, Limiter`` to
``from hostlimit.compat.pyrate import Duration, Rate, Limiter``; ``Limiter(rates)``,
``try_acquire(name, weight, blocking, timeout)``, ``try_acquire_async`` and
``as_decorator(name=..., weight=...)`` behave as documented by PyrateLimiter. What changes:

* The limits are host-wide: every process that creates ``Limiter(rates)`` (with the same
  ``name=``, default ``"pyrate"``) shares the file ``<default_dir()>/pyrate.<name>``
  (``path=`` names a file directly). As with PyrateLimiter's default bucket, all item names
  passed to ``try_acquire`` share the limiter's rates.
* Several rates are checked and charged together, in one atomic step; windows are exact
  sliding windows, and a blocking acquire sleeps until the moment the request fits (so
  ``buffer_ms`` is accepted and unused).
* There are no buckets: passing a bucket or a ``BucketFactory`` is a ``TypeError``. Rates
  may also be ``pyrate_limiter.Rate`` objects, or hostlimit rates and their text.
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
from types import TracebackType
from typing import Any, Awaitable, Callable, List, Optional, Sequence, TypeVar, Union, cast

from .. import Limiter as _HostLimiter
from .. import Rate as _HostRate
from .. import RateLimited

__all__ = ["Duration", "Rate", "Limiter", "BucketFullException", "LimiterDelayException"]

F = TypeVar("F", bound=Callable[..., Any])


class Duration(enum.Enum):
    """Intervals in milliseconds, as in PyrateLimiter (``Duration.SECOND * 5`` is 5000)."""

    SECOND = 1000
    MINUTE = 1000 * 60
    HOUR = 1000 * 60 * 60
    DAY = 1000 * 60 * 60 * 24
    WEEK = 1000 * 60 * 60 * 24 * 7

    def __mul__(self, multiplier: float) -> int:
        return int(self.value * multiplier)

    def __rmul__(self, multiplier: float) -> int:
        return self.__mul__(multiplier)

    def __add__(self, other: Union[Duration, int]) -> int:
        return int(self.value) + int(other)

    def __radd__(self, other: Union[Duration, int]) -> int:
        return self.__add__(other)

    def __int__(self) -> int:
        return int(self.value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (Duration, int)):
            return NotImplemented
        return bool(self.value == int(other))

    __hash__ = enum.Enum.__hash__

    @staticmethod
    def readable(value: int) -> str:
        for unit, short in (
            (Duration.WEEK, "w"),
            (Duration.DAY, "d"),
            (Duration.HOUR, "h"),
            (Duration.MINUTE, "m"),
            (Duration.SECOND, "s"),
        ):
            if value >= unit.value:
                return f"{value / unit.value:0.1f}{short}"
        return f"{value}ms"


class Rate:
    """``limit`` units of weight per ``interval`` milliseconds (an int or a ``Duration``).
    ``burst`` is accepted for compatibility; window limits do not use it (as in
    PyrateLimiter's window algorithms)."""

    def __init__(self, limit: int, interval: Union[int, Duration], burst: Optional[int] = None) -> None:
        self.limit = int(limit)
        self.interval = int(interval)
        self.burst = self.limit if burst is None else int(burst)
        if self.limit <= 0:
            raise ValueError(f"Rate's limit must be positive, got {limit!r}")
        if self.interval <= 0:
            raise ValueError(f"Rate's interval must be positive, got {interval!r}")
        if self.burst < 1:
            raise ValueError("Rate's burst must be >= 1")

    def __str__(self) -> str:
        return f"limit={self.limit}/{Duration.readable(self.interval)}"

    def __repr__(self) -> str:
        return f"limit={self.limit}/{self.interval}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rate):
            return NotImplemented
        return (self.limit, self.interval) == (other.limit, other.interval)

    def __hash__(self) -> int:
        return hash((self.limit, self.interval))


class BucketFullException(Exception):
    """Kept for imports that expect it; this Limiter reports a refusal as ``False``."""


class LimiterDelayException(Exception):
    """Kept for imports that expect it; this Limiter reports a refusal as ``False``."""


RateArgument = Union[Rate, _HostRate, str, Sequence[Union[Rate, _HostRate, str]], Any]


def _host_rate(rate: Any) -> Union[_HostRate, str]:
    if isinstance(rate, (_HostRate, str)):
        return rate
    limit, interval = getattr(rate, "limit", None), getattr(rate, "interval", None)
    if isinstance(limit, int) and interval is not None:
        return _HostRate(limit, int(interval) / 1000)
    raise TypeError(
        f"hostlimit.compat.pyrate.Limiter takes rates (Rate, a list of Rate), not "
        f"{type(rate).__name__}: buckets and bucket factories are replaced by the shared "
        "file; pass the bucket's rates instead"
    )


def _host_rates(argument: RateArgument) -> List[Union[_HostRate, str]]:
    if isinstance(argument, (list, tuple)):
        if not argument:
            raise ValueError("Rates must not be empty")
        return [_host_rate(r) for r in argument]
    return [_host_rate(argument)]


def _check_timeout(blocking: bool, timeout: Union[int, float]) -> Optional[float]:
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout must be -1 or >= 0")
    if not blocking and timeout != -1:
        raise RuntimeError("Can't set timeout with non-blocking")
    return None if timeout == -1 else float(timeout)


class Limiter:
    """PyrateLimiter's ``Limiter`` over one host-wide hostlimit limiter.

    ``Limiter(Rate(5, Duration.SECOND))`` or ``Limiter([Rate(5, Duration.SECOND),
    Rate(100, Duration.MINUTE)])``; ``name=``/``path=``/``directory=`` choose the shared file,
    other keyword arguments go to ``hostlimit.Limiter.open`` (``journal=``, ...).
    """

    def __init__(
        self,
        argument: RateArgument,
        buffer_ms: int = 50,
        *,
        name: str = "pyrate",
        path: Optional[Union[str, os.PathLike[str]]] = None,
        directory: Optional[str] = None,
        **options: Any,
    ) -> None:
        from .. import path_for

        self.buffer_ms = buffer_ms
        self.rates = _host_rates(argument)
        target = os.fspath(path) if path is not None else path_for(f"pyrate.{name}", directory)
        self.limiter = _HostLimiter.open(target, self.rates, **options)

    def try_acquire(
        self, name: str = "pyrate", weight: int = 1, blocking: bool = True, timeout: Union[int, float] = -1
    ) -> bool:
        """Acquires ``weight``: with ``blocking`` (the default) waits until admitted, at most
        ``timeout`` seconds (``-1``: no limit); returns ``False`` on timeout, if the weight
        can never fit, or at once when not blocking and the rates are full."""
        wait = _check_timeout(blocking, timeout)
        if weight == 0:
            return True
        if not blocking:
            return bool(self.limiter.try_acquire(weight))
        try:
            self.limiter.acquire(weight, wait)
        except RateLimited:
            return False
        return True

    async def try_acquire_async(
        self, name: str = "pyrate", weight: int = 1, blocking: bool = True, timeout: Union[int, float] = -1
    ) -> bool:
        """``try_acquire`` for asyncio: awaits instead of sleeping."""
        wait = _check_timeout(blocking, timeout)
        if weight == 0:
            return True
        if not blocking:
            return bool(self.limiter.try_acquire(weight))
        try:
            await self.limiter.acquire_async(weight, wait)
        except RateLimited:
            return False
        return True

    def as_decorator(
        self, *, name: str = "ratelimiter", weight: Union[int, Callable[..., int]] = 1
    ) -> Callable[[F], F]:
        """A decorator that acquires ``weight`` (or ``weight(*args, **kwargs)``) before each
        call, waiting as long as needed; ``RuntimeError`` if the weight can never fit."""

        def weight_for(args: Any, kwargs: Any) -> int:
            return int(weight(*args, **kwargs)) if callable(weight) else weight

        def never_fits(w: int) -> RuntimeError:
            return RuntimeError(f"Rate limit for {name!r} can never admit weight={w}; call denied.")

        def deco(func: F) -> F:
            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    w = weight_for(args, kwargs)
                    if not await self.try_acquire_async(name, w):
                        raise never_fits(w)
                    return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                w = weight_for(args, kwargs)
                if not self.try_acquire(name, w):
                    raise never_fits(w)
                return func(*args, **kwargs)

            return cast(F, wrapper)

        return deco

    def buckets(self) -> List[Any]:
        """Always empty: there are no buckets, only the shared file."""
        return []

    def close(self) -> None:
        """Releases the shared file."""
        self.limiter.close()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
