"""Type stubs of the native module ``hostlimit._native`` (re-exported by ``hostlimit``)."""

import os
from datetime import timedelta
from types import TracebackType
from typing import Any, Callable, Coroutine, Iterable, List, Literal, Optional, Union, final

from typing_extensions import Self

from ._waiting import Limit

_Path = Union[str, os.PathLike[str]]
_Seconds = Union[int, float, timedelta]
_RateLike = Union[str, "Rate"]
_Rates = Union[_RateLike, Iterable[_RateLike]]

__all__ = [
    "MAX_LIMIT",
    "MAX_WINDOW",
    "DEFAULT_DIR",
    "DIR_ENV",
    "_before_fork",
    "_restore",
    "_raise_for_test",
    "_admitted",
    "Decision",
    "FileInfo",
    "Limiter",
    "ManualClock",
    "Rate",
    "RateUsage",
    "default_dir",
    "path_for",
    "remove",
    "reset",
]

MAX_LIMIT: int
MAX_WINDOW: float
DEFAULT_DIR: str
DIR_ENV: str

@final
class Rate:
    """At most ``limit`` in any sliding window of ``window`` seconds."""

    def __new__(
        cls, limit: int, window: _Seconds, *, counts: Literal["weight", "requests"] = "weight"
    ) -> Self: ...
    @staticmethod
    def requests(limit: int, window: _Seconds) -> Rate: ...
    @staticmethod
    def parse(text: str) -> Rate: ...
    @property
    def limit(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def window_ns(self) -> int: ...
    @property
    def counts(self) -> Literal["weight", "requests"]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Decision:
    """The outcome of ``try_acquire``: truthy iff admitted."""

    @property
    def admitted(self) -> bool: ...
    def __bool__(self) -> bool: ...
    @property
    def retry_after(self) -> Optional[float]: ...
    @property
    def rate(self) -> Optional[Rate]: ...
    @property
    def rate_index(self) -> Optional[int]: ...
    @property
    def kind(self) -> Optional[Literal["exhausted", "never_fits", "unavailable", "unreachable"]]: ...
    @property
    def is_final(self) -> bool: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def timestamp_ns(self) -> Optional[int]: ...
    @property
    def sequence(self) -> Optional[int]: ...

@final
class RateUsage:
    """One rate's state at one moment."""

    @property
    def rate(self) -> Rate: ...
    @property
    def used(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def next_free(self) -> Optional[float]: ...
    @property
    def denied(self) -> int: ...

@final
class FileInfo:
    """What a limiter file records about itself."""

    @property
    def path(self) -> str: ...
    @property
    def rates(self) -> List[Rate]: ...
    @property
    def capacity(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def created(self) -> float: ...
    @property
    def creator_pid(self) -> int: ...
    @property
    def creator_uid(self) -> int: ...

@final
class ManualClock:
    """A clock for tests, moved by ``advance``."""

    def __new__(cls, start: Optional[_Seconds] = None) -> Self: ...
    def advance(self, seconds_: _Seconds) -> None: ...
    @property
    def now_ns(self) -> int: ...

@final
class Limiter:
    """A host-wide rate limiter shared by every process that opens the same file."""

    @staticmethod
    def open(
        path: _Path,
        rates: _Rates,
        *,
        mode: int = 0o600,
        journal: Optional[_Path] = None,
        durability: Literal["periodic", "strict"] = "periodic",
        journal_interval: float = 1.0,
        journal_busy_timeout: Optional[float] = None,
        check_interval: float = 1.0,
        clock: Optional[ManualClock] = None,
    ) -> Limiter: ...
    @staticmethod
    def named(
        name: str,
        rates: _Rates,
        *,
        mode: int = 0o600,
        journal: Optional[_Path] = None,
        durability: Literal["periodic", "strict"] = "periodic",
        journal_interval: float = 1.0,
        journal_busy_timeout: Optional[float] = None,
        check_interval: float = 1.0,
        clock: Optional[ManualClock] = None,
    ) -> Limiter: ...
    @staticmethod
    def connect(
        url: str,
        name: str,
        rates: Optional[_Rates] = None,
        *,
        timeout: float = 0.5,
        on_outage: Literal["deny", "allow", "fall_back"] = "deny",
    ) -> Limiter: ...
    @staticmethod
    def attach(path: _Path) -> Limiter: ...
    def try_acquire(self, weight: int = 1) -> Decision: ...
    def acquire(self, weight: int = 1, timeout: Optional[float] = None) -> None: ...
    def acquire_async(
        self, weight: int = 1, timeout: Optional[float] = None
    ) -> Coroutine[Any, Any, None]: ...
    def limit(
        self, weight: Union[int, Callable[..., int], None] = None, *, timeout: Optional[float] = None
    ) -> Limit: ...
    def usage(self) -> List[RateUsage]: ...
    def admitted(self) -> int: ...
    def info(self) -> FileInfo: ...
    @property
    def rates(self) -> List[Rate]: ...
    @property
    def path(self) -> str: ...
    @property
    def journal(self) -> Optional[str]: ...
    @property
    def journal_error(self) -> Optional[str]: ...
    def journal_flush(self) -> None: ...
    def reset(self) -> None: ...
    def remove(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Limiter: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def reset(path: _Path) -> None: ...
def remove(path: _Path) -> None: ...
def default_dir() -> str: ...
def path_for(name: str, directory: Optional[_Path] = None) -> str: ...
def _before_fork() -> None: ...
def _admitted() -> Decision: ...
def _restore(
    path: _Path,
    rates: _Rates,
    mode: int,
    journal: Optional[_Path],
    durability: str,
    journal_interval: float,
    journal_busy_timeout: Optional[float],
    check_interval: float,
) -> Limiter: ...
def _raise_for_test(kind: str) -> None: ...
