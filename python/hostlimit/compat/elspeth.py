"""A drop-in for elspeth's rate limiting (``elspeth.core.rate_limit``), backed by hostlimit.

Change ``from elspeth.core.rate_limit import RateLimiter, RateLimitRegistry, NoOpLimiter``
to ``from hostlimit.compat.elspeth import ...``. What changes:

* Several rates are one all-or-nothing limiter: a request is admitted by every rate or by
  none, so a denial by the per-minute rate never consumes per-second capacity (the first
  bug of the original reports: leaked tokens).
* Windows are exact sliding windows on a host-wide log: a request is denied only while a
  rate is really full, so after ``1/s`` and a 1.5 s pause the next request is admitted (the
  second bug: a stale count rejecting a request after the window had passed).
* The limiter is host-wide whether or not ``persistence_path`` is given: every process that
  opens ``RateLimiter("openai", ...)`` shares the file ``<default_dir()>/elspeth.openai``
  (``$HOSTLIMIT_DIR`` or ``/dev/shm/hostlimit``). ``persistence_path`` adds a SQLite journal
  next to it (``<persistence_path>.hostlimit-<name>``) so that the limits survive a reboot.
* ``acquire`` sleeps until the moment the log says the request fits instead of polling
  every 10 ms, and raises ``hostlimit.RateLimited`` (a ``TimeoutError``) as soon as the
  request cannot fit before the timeout, or at once if the weight can never fit.
"""

from __future__ import annotations

import math
import os
import re
import threading
from types import TracebackType
from typing import Any, Dict, Optional, Protocol, Union

from .. import Limiter, Rate

__all__ = ["RateLimiter", "RateLimitRegistry", "NoOpLimiter"]

# Names become file names (elspeth used them in SQL table names): same rule as elspeth.
_VALID_NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")

_MINUTE_MS = 60_000


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be int, got {type(value).__name__}: {value!r}")
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return value


def _validate_timeout(timeout: object) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be int or float, got {type(timeout).__name__}: {timeout!r}")
    if not math.isfinite(timeout):
        raise ValueError(f"timeout must be finite, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"timeout must be non-negative, got {timeout!r}")
    return float(timeout)


class RateLimiter:
    """A rate limiter for calls to an external service, shared by every process on the host.

    ``RateLimiter("openai", requests_per_second=10, requests_per_minute=500)`` admits a
    request only if both rates have room, and charges both or neither. ``window_ms``
    replaces the per-minute window (``requests_per_minute`` per ``window_ms``).
    """

    def __init__(
        self,
        name: str,
        *,
        requests_per_second: Optional[int] = None,
        requests_per_minute: Optional[int] = None,
        persistence_path: Optional[str] = None,
        window_ms: Optional[int] = None,
        directory: Optional[str] = None,
    ) -> None:
        if not isinstance(name, str) or not _VALID_NAME_PATTERN.match(name):
            raise ValueError(
                f"Invalid rate limiter name: {name!r}. Name must start with a letter and "
                "contain only alphanumeric characters and underscores."
            )
        rates = []
        if requests_per_second is not None:
            rates.append(Rate(_positive_int(requests_per_second, "requests_per_second"), 1))
        if window_ms is not None:
            window_ms = _positive_int(int(window_ms), "window_ms")
            if requests_per_minute is None:
                raise ValueError("window_ms is the window of requests_per_minute, which is not given")
        if requests_per_minute is not None:
            limit = _positive_int(requests_per_minute, "requests_per_minute")
            rates.append(Rate(limit, (window_ms or _MINUTE_MS) / 1000))
        if not rates:
            raise ValueError("give requests_per_second, requests_per_minute, or both")
        self.name = name
        self._persistence_path = persistence_path
        options: Dict[str, Any] = {}
        if persistence_path:
            journal = f"{persistence_path}.hostlimit-{name}"
            parent = os.path.dirname(os.path.abspath(journal))
            os.makedirs(parent, mode=0o700, exist_ok=True)
            options["journal"] = journal
        from .. import path_for

        self._limiter = Limiter.open(path_for(f"elspeth.{name}", directory), rates, **options)
        self._closed = False

    @property
    def limiter(self) -> Limiter:
        """The hostlimit limiter behind it (``usage()``, ``try_acquire`` with a ``Decision``)."""
        return self._limiter

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RateLimiter '{self.name}' has been closed")

    def acquire(self, weight: int = 1, timeout: Optional[float] = None) -> None:
        """Waits until ``weight`` is admitted (``timeout`` seconds at most; ``None``: as long
        as needed). Raises ``TimeoutError`` (``hostlimit.RateLimited``) when it is not."""
        self._check_open()
        _positive_int(weight, "weight")
        self._limiter.acquire(weight, _validate_timeout(timeout))

    def try_acquire(self, weight: int = 1) -> bool:
        """Admits ``weight`` now if every rate has room; never waits."""
        self._check_open()
        _positive_int(weight, "weight")
        return bool(self._limiter.try_acquire(weight))

    def close(self) -> None:
        """Releases the limiter (flushing its journal). Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._limiter.close()

    def __enter__(self) -> RateLimiter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        self.close()


class NoOpLimiter:
    """What the registry hands out when rate limiting is disabled: admits everything."""

    def acquire(self, weight: int = 1, timeout: Optional[float] = None) -> None:
        """Returns at once."""

    def try_acquire(self, weight: int = 1) -> bool:
        """Always ``True``."""
        return True

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> NoOpLimiter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        self.close()


class _ServiceConfig(Protocol):
    requests_per_minute: int


class _RuntimeConfig(Protocol):
    enabled: bool
    persistence_path: Optional[str]

    def get_service_config(self, service_name: str) -> _ServiceConfig: ...


class RateLimitRegistry:
    """Limiters per service, created on demand from elspeth's runtime configuration
    (``enabled``, ``persistence_path``, ``get_service_config(name)`` with
    ``requests_per_minute`` and optionally ``requests_per_second``); a ``NoOpLimiter`` for
    every service when ``enabled`` is false. Thread-safe."""

    def __init__(self, config: _RuntimeConfig) -> None:
        self._config = config
        self._limiters: Dict[str, RateLimiter] = {}
        self._lock = threading.Lock()
        self._noop_limiter = NoOpLimiter()

    def get_limiter(self, service_name: str) -> Union[RateLimiter, NoOpLimiter]:
        """The service's limiter (created the first time), or the no-op limiter."""
        if not self._config.enabled:
            return self._noop_limiter
        with self._lock:
            if service_name not in self._limiters:
                service = self._config.get_service_config(service_name)
                self._limiters[service_name] = RateLimiter(
                    service_name,
                    requests_per_second=getattr(service, "requests_per_second", None),
                    requests_per_minute=getattr(service, "requests_per_minute", None),
                    persistence_path=self._config.persistence_path,
                )
            return self._limiters[service_name]

    def reset_all(self) -> None:
        """Closes every limiter and forgets them (the shared files stay)."""
        self.close()

    def close(self) -> None:
        """Closes every limiter."""
        with self._lock:
            for limiter in self._limiters.values():
                limiter.close()
            self._limiters.clear()
