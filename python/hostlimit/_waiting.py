"""Waiting in asyncio, and the ``Limiter.limit`` decorator and context manager."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from types import TracebackType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar, Union, cast

from ._errors import RateLimited

if TYPE_CHECKING:
    from ._native import Decision, Limiter

F = TypeVar("F", bound=Callable[..., Any])
Weight = Union[int, Callable[..., int], None]


def _give_up(decision: Decision, timeout: Optional[float]) -> RateLimited:
    if decision.kind == "exhausted" and timeout is not None:
        message = f"not admitted within the timeout ({timeout}s): {decision.reason}"
    else:
        message = str(decision.reason)
    return RateLimited(
        message,
        retry_after=decision.retry_after,
        rate=decision.rate,
        kind=decision.kind or "exhausted",
    )


async def acquire_async(
    limiter: Limiter, weight: int = 1, timeout: Optional[float] = None
) -> None:
    """``Limiter.acquire`` for asyncio: between attempts it awaits ``asyncio.sleep`` until
    the moment the log says the request fits (plus a small random delay), so no thread is
    blocked. Nothing is admitted until an attempt succeeds, so cancelling it (task cancel,
    ``asyncio.wait_for``) leaves the limiter's use unchanged."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None or timeout == float("inf") else loop.time() + timeout
    while True:
        decision = limiter.try_acquire(weight)
        if decision:
            return None
        wait = decision.retry_after
        if wait is None:
            raise _give_up(decision, None)
        now = loop.time()
        if deadline is not None and now + wait > deadline:
            raise _give_up(decision, timeout)
        pause = wait + random.uniform(0.0, min(wait / 8 + 0.0002, 0.05))
        if deadline is not None:
            pause = min(pause, max(deadline - now, 0.0))
        await asyncio.sleep(pause)


class Limit:
    """What ``Limiter.limit(weight, timeout=...)`` returns: a decorator, and a (sync or
    async) context manager that acquires on entry.

    ``weight`` is an int, or (for the decorator) a callable that gets the decorated call's
    arguments and returns the weight: ``@lim.limit(weight=lambda prompt, **kw: len(prompt))``.
    """

    def __init__(self, limiter: Limiter, weight: Weight = None, timeout: Optional[float] = None) -> None:
        self.limiter = limiter
        self.weight: Weight = 1 if weight is None else weight
        self.timeout = timeout
        if not callable(self.weight):
            if isinstance(self.weight, bool) or not isinstance(self.weight, int):
                raise TypeError("weight must be an int or a callable returning one")
            if self.weight < 0:
                raise ValueError(f"weight must be >= 0, got {self.weight}")

    def _weight_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        if callable(self.weight):
            return int(self.weight(*args, **kwargs))
        return self.weight if self.weight is not None else 1

    def _fixed_weight(self) -> int:
        if callable(self.weight):
            raise TypeError(
                "a weight computed from call arguments works only as a decorator; "
                "use `with limiter.limit(<int>)` in a with block"
            )
        return self.weight if self.weight is not None else 1

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                await self.limiter.acquire_async(self._weight_for(args, kwargs), self.timeout)
                return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.limiter.acquire(self._weight_for(args, kwargs), self.timeout)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    def __enter__(self) -> None:
        self.limiter.acquire(self._fixed_weight(), self.timeout)

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None

    async def __aenter__(self) -> None:
        await self.limiter.acquire_async(self._fixed_weight(), self.timeout)

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        return None

