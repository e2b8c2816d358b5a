"""Limiters per service, from one configuration, with a switch that turns them all off."""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar, Union

from ._native import Decision, Limiter, Rate, RateUsage, _admitted
from ._waiting import Limit

__all__ = ["Registry", "NoOpLimiter", "RateSpec"]

RateSpec = Union[str, Rate, Sequence[Union[str, Rate]]]
F = TypeVar("F", bound=Callable[..., Any])


class NoOpLimiter:
    """A limiter that admits everything at once: what ``Registry`` hands out when it is
    disabled. Same methods as ``Limiter``; nothing is shared, counted or waited for."""

    path: Optional[str] = None
    journal: Optional[str] = None
    journal_error: Optional[str] = None
    closed = False

    @property
    def rates(self) -> List[Rate]:
        return []

    def try_acquire(self, weight: int = 1) -> Decision:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        return _admitted()

    def acquire(self, weight: int = 1, timeout: Optional[float] = None) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")

    async def acquire_async(self, weight: int = 1, timeout: Optional[float] = None) -> None:
        self.acquire(weight, timeout)

    def limit(self, weight: Union[int, Callable[..., int], None] = None, *, timeout: Optional[float] = None) -> Limit:
        return Limit(self, weight, timeout)  # type: ignore[arg-type]

    def usage(self) -> List[RateUsage]:
        return []

    def admitted(self) -> int:
        return 0

    def journal_flush(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoOpLimiter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<hostlimit.NoOpLimiter>"


class Registry:
    """The limiters of an application, one per service, opened on first use and reused.

    ``services`` maps a service name to its rates (one rate or a list, as ``Rate`` objects
    or text): ``Registry({"openai": ["60req/min", "90000tok/min"], "github": "5000/h"})``.
    Each service is the named limiter ``<prefix><service>`` in ``directory`` (default
    ``default_dir()``), so every process with the same configuration shares it.
    ``journal_dir`` gives each service a journal ``<journal_dir>/<prefix><service>.sqlite``.
    Other keyword arguments go to ``Limiter.open`` (``mode``, ``durability``, ...).

    With ``enabled=False`` (or the environment variable named by ``disable_env``, default
    ``HOSTLIMIT_DISABLED``, set to a non-empty value other than ``0``) every service gets
    one shared ``NoOpLimiter``. Thread-safe.
    """

    def __init__(
        self,
        services: Mapping[str, RateSpec],
        *,
        enabled: bool = True,
        directory: Optional[Union[str, os.PathLike[str]]] = None,
        journal_dir: Optional[Union[str, os.PathLike[str]]] = None,
        prefix: str = "",
        default: Optional[RateSpec] = None,
        disable_env: Optional[str] = "HOSTLIMIT_DISABLED",
        **options: Any,
    ) -> None:
        switched_off = disable_env is not None and os.environ.get(disable_env, "") not in ("", "0")
        self.enabled = enabled and not switched_off
        self._services: Dict[str, RateSpec] = dict(services)
        self._default = default
        self._directory = None if directory is None else os.fspath(directory)
        self._journal_dir = None if journal_dir is None else os.fspath(journal_dir)
        self._prefix = prefix
        self._options = options
        self._limiters: Dict[str, Limiter] = {}
        self._lock = threading.Lock()
        self._noop = NoOpLimiter()

    def get(self, service: str) -> Union[Limiter, NoOpLimiter]:
        """The service's limiter (opened the first time), or the ``NoOpLimiter`` when the
        registry is disabled. ``KeyError`` for a service without rates and no ``default``."""
        if not self.enabled:
            return self._noop
        limiter = self._limiters.get(service)
        if limiter is not None and not limiter.closed:
            return limiter
        with self._lock:
            limiter = self._limiters.get(service)
            if limiter is None or limiter.closed:
                limiter = self._open(service)
                self._limiters[service] = limiter
            return limiter

    __getitem__ = get

    def _open(self, service: str) -> Limiter:
        rates = self._services.get(service, self._default)
        if rates is None:
            raise KeyError(f"no rates configured for service {service!r}")
        from ._native import path_for

        name = self._prefix + service
        path = path_for(name, self._directory)
        options = dict(self._options)
        if self._journal_dir is not None:
            options.setdefault("journal", os.path.join(self._journal_dir, name + ".sqlite"))
        return Limiter.open(path, rates, **options)

    def services(self) -> List[str]:
        """The configured service names."""
        return list(self._services)

    def close(self) -> None:
        """Closes every limiter opened so far; the next ``get`` opens them again."""
        with self._lock:
            for limiter in self._limiters.values():
                limiter.close()
            self._limiters.clear()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<hostlimit.Registry {state} services={sorted(self._services)}>"
