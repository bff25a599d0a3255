"""A bounded expiring cache with single-flight loading, for credentials.

Many concurrent requests by one user must cost one call to Agent Identity, not twenty; a failed call must
not be cached (the next request retries) and every waiter must see the same exception. Keys are hashes of
tokens (`token_key`), so a raw token never becomes a dict key that could end up in a log or a debugger dump.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


def token_key(*parts: str) -> str:
    """A stable, non-reversible key for one or more secrets."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:40]


class ExpiringLru(Generic[V]):
    """At most `max_size` entries, each dropped at its own wall-clock expiry or when least recently used."""

    def __init__(self, max_size: int, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()
        self._max_size = max_size
        self._clock = clock

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, expires_at: float) -> None:
        if expires_at <= self._clock():
            return
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def pop(self, key: Hashable) -> V | None:
        entry = self._entries.pop(key, None)
        return entry[0] if entry else None

    def __len__(self) -> int:
        return len(self._entries)


class CachedFlights(Generic[V]):
    """`ExpiringLru` + single flight: one loader call per key at a time, its result cached until it expires.

    The loader runs in its own task, so a caller that is cancelled (its client went away) does not cancel the
    call the other waiters share.
    """

    def __init__(self, max_size: int, clock: Callable[[], float] = time.time) -> None:
        self.cache: ExpiringLru[V] = ExpiringLru(max_size, clock)
        self._flights: dict[Hashable, asyncio.Task[tuple[V, float]]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        """The cached value for `key`, or the result of `load()` -> (value, expires_at), shared by concurrent
        callers."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.create_task(self._load(key, load))
            flight.add_done_callback(_consume_exception)  # no "never retrieved" noise if every waiter left
            self._flights[key] = flight
        value, _ = await asyncio.shield(flight)
        return value

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[tuple[V, float]]]) -> tuple[V, float]:
        try:
            value, expires_at = await load()
            self.cache.put(key, value, expires_at)
            return value, expires_at
        finally:
            self._flights.pop(key, None)

    def invalidate(self, key: Hashable) -> None:
        self.cache.pop(key)

    async def aclose(self) -> None:
        """Cancel loads still in flight (at shutdown)."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)


def _consume_exception(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
