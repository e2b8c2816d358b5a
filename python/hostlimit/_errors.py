"""The exceptions of hostlimit.

Setup errors (a bad rate or name, a file that cannot be used) derive from
``HostlimitError``; those that are the caller's mistake are also ``ValueError``s. I/O
failures are the standard ``OSError`` subclasses (``FileNotFoundError``,
``PermissionError``, ...). A denial is not an exception (``try_acquire`` returns a
``Decision``); only a blocking ``acquire`` that gives up raises ``RateLimited``, a
``TimeoutError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from ._native import Rate

__all__ = [
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


class HostlimitError(Exception):
    """A limiter could not be opened, created or read (not a denial)."""

    def __init__(self, message: str, *, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path
        """The limiter (or journal) file concerned, when there is one."""


class InvalidRateError(HostlimitError, ValueError):
    """A rate, or a list of rates, that cannot be used: a zero limit or window, a limit
    above ``MAX_LIMIT``, unreadable text, the same rate twice, more than 8 rates, or rates
    that would need an unreasonably large file."""


class InvalidNameError(HostlimitError, ValueError):
    """A limiter name that cannot be a file name in the limiter directory."""


class ConfigMismatchError(HostlimitError):
    """The file exists with other rates than the ones asked for.

    ``Limiter.attach`` adopts the file's rates; removing the file changes them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Optional[str] = None,
        file_rates: Sequence[Rate] = (),
        requested: Sequence[Rate] = (),
    ) -> None:
        super().__init__(message, path=path)
        self.file_rates = list(file_rates)
        """The rates recorded in the file."""
        self.requested = list(requested)
        """The rates asked for."""


class CorruptFileError(HostlimitError):
    """The file is not a hostlimit limiter, is damaged or truncated, or has another layout
    version."""


class ClockMismatchError(HostlimitError):
    """The file was made with a clock this process cannot share: another boot, another time
    namespace (a container), or a manual clock."""


class UnsupportedError(HostlimitError):
    """This machine lacks a lock-free 128-bit compare-exchange."""


class JournalError(HostlimitError):
    """The SQLite journal cannot be used (not a database, corrupt, another schema, other
    rates, locked too long, not writable). Nothing falls back silently: open the limiter
    without ``journal=`` to go on without it, or move the file away to start a new one."""


class ClosedError(HostlimitError, ValueError):
    """The limiter was closed."""


class RateLimited(TimeoutError):
    """A blocking acquire was not admitted.

    ``retry_after`` is how many seconds off admission was (``None`` if it never can be:
    ``kind == "never_fits"``, a weight above a limit, ``"unavailable"``, an unusable
    file, or ``"unreachable"``, a Redis server out of reach); ``rate`` is the rate that
    refused.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        rate: Optional[Rate] = None,
        kind: str = "exhausted",
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate = rate
        self.kind = kind

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rate_limited,
            (str(self), self.retry_after, self.rate, self.kind),
        )


def _rate_limited(
    message: str, retry_after: Optional[float], rate: Optional[Rate], kind: str
) -> RateLimited:
    return RateLimited(message, retry_after=retry_after, rate=rate, kind=kind)


# Shown (and pickled) as `hostlimit.X`, where users import them from.
for _cls in (
    HostlimitError,
    InvalidRateError,
    InvalidNameError,
    ConfigMismatchError,
    CorruptFileError,
    ClockMismatchError,
    UnsupportedError,
    JournalError,
    ClosedError,
    RateLimited,
):
    _cls.__module__ = "hostlimit"
del _cls
