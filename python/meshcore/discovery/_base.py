"""The machinery every discovery source shares.

A source implements ``_fetch()`` (one fresh read: the set and the seconds until the next read)
and may override ``_poll()`` (what the background loop calls; by default ``_fetch()``). This module
turns that into the public shape: ``async with``, ``watch()``, ``resolve()``, ``stale``, and the
fault rule (a failed read keeps the last good set, logs once, retries with backoff and jitter).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

from meshcore._aio import stop_task
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["DiscoverySource", "EndpointSet"]

log = logging.getLogger("meshcore.discovery")

# How many distinct warnings a source remembers (so each is logged once) before it forgets them
# all: a server inventing new problems forever must not grow the memory.
_MAX_WARNED = 1024


EndpointSet = frozenset[Endpoint]


class DiscoverySource:
    """Base of every discovery source.

    Use as ``async with source as d:``; inside, ``d.watch()`` yields the full current set each time
    it changes and ``d.stale`` tells whether the last read failed. ``await d.resolve()`` does one
    fresh read and works inside or outside the ``async with``.

    ``backoff_initial`` and ``backoff_max`` (seconds) bound the retry delay after a failed read; it
    doubles after each failure, with +-20 % jitter, and resets on success.
    """

    def __init__(self, *, backoff_initial: float = 0.5, backoff_max: float = 30.0) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ConfigError("need 0 < backoff_initial <= backoff_max")
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._current: EndpointSet | None = None
        self._stale = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._cond: asyncio.Condition | None = None
        self._failures = 0
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"

    # -- what a source implements ---------------------------------------------------------------

    def _describe(self) -> str:
        """A short name for logs (the file path, the DNS name)."""
        return ""

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        """One fresh read: the set and the seconds until the next read (None: never again).
        Raises :class:`DiscoveryError` when the source cannot be read."""
        raise NotImplementedError

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        """What the watch loop calls. A set of None means "unchanged since the last poll": the
        current set and the ``stale`` flag stay as they are."""
        return await self._fetch()

    # -- public surface -------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """True while the last read failed and ``watch()`` serves the last good set (if any)."""
        return self._stale

    @property
    def running(self) -> bool:
        """True inside ``async with`` (between ``__aenter__`` and ``aclose()``)."""
        return self._task is not None

    @property
    def current(self) -> EndpointSet | None:
        """The last good set, or None before the first successful read."""
        return self._current

    async def resolve(self) -> EndpointSet:
        """Read the source once, now; raises :class:`DiscoveryError` when it cannot be read."""
        endpoints, _ = await self._fetch()
        return endpoints

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._closed = False
        self._cond = asyncio.Condition()
        self._task = asyncio.create_task(self._run(), name=f"meshcore-discovery {self!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background reads; every ``watch()`` iterator then ends. A cancellation of the
        caller while it waits for the background task to end is raised (after the watchers are
        woken)."""
        task, self._task = self._task, None
        self._closed = True
        try:
            if task is not None:
                await stop_task(task, self, log)
        finally:
            await self._notify()

    async def watch(self) -> AsyncIterator[EndpointSet]:
        """Yield the full current set after the first successful read, then each time it changes
        (an equal set is not yielded again). Ends when the source is closed. A slow consumer skips
        intermediate sets and gets the newest."""
        cond = self._cond
        if cond is None or self._task is None:
            raise RuntimeError("watch() needs the source to be running: use `async with source:`")
        last: EndpointSet | None = None
        while True:
            async with cond:
                await cond.wait_for(functools.partial(self._changed_since, last))
                if self._closed:
                    return
                last = self._current
            assert last is not None
            yield last

    def _changed_since(self, last: EndpointSet | None) -> bool:
        return self._closed or (self._current is not None and self._current != last)

    def _warn_once(self, message: str, *, problem: str | None = None) -> None:
        """Log ``message`` as a warning on the ``meshcore.discovery`` logger the first time
        ``problem`` (default: the message itself) is seen, at debug level afterwards. At most
        ``_MAX_WARNED`` problems are remembered; then the memory is reset (so a long-running
        source may repeat a warning, but never grows without bound)."""
        key = message if problem is None else problem
        if key in self._warned:
            log.debug("%r: %s", self, message)
            return
        if len(self._warned) >= _MAX_WARNED:
            self._warned.clear()
        self._warned.add(key)
        log.warning("%r: %s", self, message)

    # -- the loop -------------------------------------------------------------------------------

    async def _notify(self) -> None:
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    async def _run(self) -> None:
        while True:
            delay: float | None
            try:
                endpoints, delay = await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watcher must never die, whatever a source raises
                delay = self._failed(exc)
            else:
                if endpoints is not None:
                    await self._publish(endpoints)
            if delay is None:
                await asyncio.Event().wait()  # never again: sleep until cancelled
            else:
                await asyncio.sleep(delay)

    async def _publish(self, endpoints: EndpointSet) -> None:
        if self._failures:
            log.warning("%r: recovered after %d failed reads", self, self._failures)
        self._failures = 0
        self._stale = False
        if endpoints != self._current:
            self._current = endpoints
            log.debug("%r: %d endpoints", self, len(endpoints))
            await self._notify()

    def _failed(self, exc: Exception) -> float:
        self._failures += 1
        self._stale = True
        kept = "no set yet" if self._current is None else f"{len(self._current)} endpoints"
        if self._failures == 1:
            if isinstance(exc, DiscoveryError):
                log.warning("%r: unavailable (%s); keeping the last good set (%s)", self, exc, kept)
            else:
                log.exception("%r: unexpected error; keeping the last good set (%s)", self, kept)
        else:
            log.debug("%r: still unavailable (%s), failure %d", self, exc, self._failures)
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** (self._failures - 1))
        return base * random.uniform(0.8, 1.2)


def _require_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
