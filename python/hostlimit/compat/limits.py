"""A storage for the ``limits`` library (and so flask-limiter and slowapi) on hostlimit:
``storage_uri="hostlimit://"`` with the moving-window strategy gives a web application
host-wide limits across its worker processes, with no Redis.

Import this module once (it registers the schemes), then::

    from limits import parse, storage, strategies
    import hostlimit.compat.limits

    backend = storage.storage_from_string("hostlimit://")   # or hostlimit:///some/dir
    limiter = strategies.MovingWindowRateLimiter(backend)
    limiter.hit(parse("10/second"), "client-1")

flask-limiter: ``Limiter(key_func, app=app, storage_uri="hostlimit://",
strategy="moving-window")``; slowapi: ``Limiter(key_func, storage_uri="hostlimit://",
strategy="moving-window")``. ``async+hostlimit://`` is the same for ``limits.aio``.

Each rate-limit key (limit, window and identifiers) is one hostlimit limiter file in the
directory (default ``<default_dir()>/limits``), named after the key. A hit is one
lock-free ``try_acquire``; ``get_moving_window`` reads the file without consuming. Only
the moving-window strategy is supported: the fixed-window counters (``incr``, ``get``)
raise ``NotImplementedError``. Files are not expired: ``clear(key)`` and ``reset()``
remove them.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import urllib.parse
from typing import Any, Dict, Tuple, Type, Union

from limits.aio.storage import MovingWindowSupport as AsyncMovingWindowSupport
from limits.aio.storage import Storage as AsyncStorage
from limits.storage import MovingWindowSupport, Storage

from .. import HostlimitError, Limiter, Rate, default_dir, remove

__all__ = ["HostlimitStorage", "HostlimitAsyncStorage"]

_PREFIX = "limits."
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

_ONLY_MOVING_WINDOW = (
    "the hostlimit:// storage supports the moving-window strategy only "
    '(strategy="moving-window" in flask-limiter and slowapi)'
)


class _Files:
    """The limiter files of one directory, opened on first use and kept open."""

    def __init__(self, uri: Union[str, None], options: Dict[str, Any]) -> None:
        path = urllib.parse.urlparse(uri).path if uri else ""
        self.directory = path or os.path.join(default_dir(), "limits")
        # The storage's URL names its directory: made here, once, on purpose (the core makes
        # no directory that may be a typo).
        os.makedirs(self.directory, exist_ok=True)
        self.mode = int(options.get("mode", 0o600))
        self.max_open = int(options.get("max_open", 4096))
        self.open: Dict[Tuple[str, int, int], Limiter] = {}
        self.lock = threading.Lock()

    def path(self, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
        return os.path.join(self.directory, f"{_PREFIX}{_UNSAFE.sub('_', key)[:150]}.{digest}")

    def limiter(self, key: str, limit: int, expiry: int, create: bool = True) -> Union[Limiter, None]:
        slot = (key, limit, expiry)
        limiter = self.open.get(slot)
        if limiter is not None:
            return limiter
        path = self.path(key)
        if not create and not os.path.exists(path):
            return None
        limiter = Limiter.open(path, [Rate(limit, expiry)], mode=self.mode)
        with self.lock:
            if len(self.open) >= self.max_open:
                oldest = next(iter(self.open))
                self.open.pop(oldest).close()
            self.open[slot] = limiter
        return limiter

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        limiter = self.limiter(key, limit, expiry)
        assert limiter is not None
        return bool(limiter.try_acquire(amount))

    def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[float, int]:
        now = time.time()
        limiter = self.limiter(key, limit, expiry, create=False)
        if limiter is None:
            return now, 0
        usage = limiter.usage()[0]
        if usage.used == 0 or usage.next_free is None:
            return now, 0
        # The oldest admission in the window is the one that leaves it at next_free.
        return now - expiry + usage.next_free, int(usage.used)

    def forget(self, key: str) -> None:
        with self.lock:
            for slot in [s for s in self.open if s[0] == key]:
                self.open.pop(slot).close()

    def clear(self, key: str) -> None:
        self.forget(key)
        try:
            remove(self.path(key))
        except FileNotFoundError:
            pass

    def reset(self) -> int:
        with self.lock:
            for limiter in self.open.values():
                limiter.close()
            self.open.clear()
        removed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith(_PREFIX):
                try:
                    remove(os.path.join(self.directory, name))
                    removed += 1
                except (FileNotFoundError, HostlimitError):
                    pass
        return removed

    def check(self) -> bool:
        return os.path.isdir(self.directory) or not os.path.exists(self.directory)


class HostlimitStorage(Storage, MovingWindowSupport):
    """``hostlimit://[/directory]``: host-wide moving windows for ``limits``."""

    STORAGE_SCHEME = ["hostlimit"]

    def __init__(self, uri: Union[str, None] = None, wrap_exceptions: bool = False, **options: Any) -> None:
        self._files = _Files(uri, options)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def directory(self) -> str:
        """Where the limiter files are."""
        return self._files.directory

    @property
    def base_exceptions(self) -> Union[Type[Exception], Tuple[Type[Exception], ...]]:
        return (HostlimitError, OSError)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self._files.acquire_entry(key, limit, expiry, amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[float, int]:
        return self._files.get_moving_window(key, limit, expiry)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    def get(self, key: str) -> int:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    def check(self) -> bool:
        return self._files.check()

    def reset(self) -> int:
        return self._files.reset()

    def clear(self, key: str) -> None:
        self._files.clear(key)


class HostlimitAsyncStorage(AsyncStorage, AsyncMovingWindowSupport):
    """``async+hostlimit://[/directory]``: the same for ``limits.aio`` (no call waits)."""

    STORAGE_SCHEME = ["async+hostlimit"]

    def __init__(self, uri: Union[str, None] = None, wrap_exceptions: bool = False, **options: Any) -> None:
        plain = uri.replace("async+", "", 1) if uri else None
        self._files = _Files(plain, options)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> Union[Type[Exception], Tuple[Type[Exception], ...]]:
        return (HostlimitError, OSError)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self._files.acquire_entry(key, limit, expiry, amount)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[float, int]:
        return self._files.get_moving_window(key, limit, expiry)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    async def get(self, key: str) -> int:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError(_ONLY_MOVING_WINDOW)

    async def check(self) -> bool:
        return self._files.check()

    async def reset(self) -> int:
        return self._files.reset()

    async def clear(self, key: str) -> None:
        self._files.clear(key)
