"""A keyed rate limiter: one exact token bucket per key (client, route, tenant), a bounded number
of keys, and an asyncio :meth:`RateLimiter.acquire` that sleeps exactly as long as it must.

Every key gets its own :class:`meshcore.TokenBucket` with the same ``rate`` (tokens/s) and
``burst`` (tokens), created full on first use. The limiter holds at most ``max_keys`` buckets and
forgets the least recently used one when a new key arrives. Forgetting is exact whenever the
forgotten key has been idle for at least ``burst / rate`` seconds (its bucket was full again, which
is how a new bucket starts); a key evicted sooner gets a fresh, full bucket, so size ``max_keys``
above the number of keys active within that time.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from meshcore._meshcore import TokenBucket
from meshcore.errors import ConfigError

__all__ = ["RateLimiter"]


class _Waiters:
    """The waiters of one key: a FIFO lock and how many are waiting or holding it."""

    __slots__ = ("count", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.count = 0


class RateLimiter:
    """Per-key token buckets with an LRU bound.

    :param rate: tokens per second for every key (> 0).
    :param burst: bucket capacity in tokens for every key (> 0), the largest cost that can pass.
    :param max_keys: the most keys tracked at once (>= 1); the least recently used is forgotten.
    :param clock: a callable returning the time in seconds, for tests and simulations; default
        ``time.monotonic`` (read in Rust).
    :param sleep: the coroutine :meth:`acquire` waits with; default :func:`asyncio.sleep`, which
        follows the event loop's monotonic clock. Pass a matching one with a custom ``clock``.
    """

    __slots__ = (
        "_buckets",
        "_burst",
        "_clock",
        "_locks",
        "_max_keys",
        "_rate",
        "_sleep",
    )

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 65536,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError(f"max_keys must be an int >= 1, got {max_keys!r}")
        # Build one bucket now so bad rate / burst values fail here, not on first use.
        TokenBucket(rate, burst, clock=clock)
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._sleep: Callable[[float], Awaitable[object]] = sleep or asyncio.sleep
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        # Per key with waiters: a FIFO lock and the number of waiters, so waiters on a key are
        # served in arrival order and the entry goes when the last one leaves.
        self._locks: dict[Hashable, _Waiters] = {}

    @property
    def rate(self) -> float:
        """Tokens per second, per key."""
        return float(self._rate)

    @property
    def burst(self) -> float:
        """Bucket capacity in tokens, per key."""
        return float(self._burst)

    @property
    def max_keys(self) -> int:
        """The most keys tracked at once."""
        return self._max_keys

    def bucket(self, key: Hashable) -> TokenBucket:
        """The bucket of ``key``, created full if it is new (which may forget the least recently
        used key) and marked most recently used."""
        b = self._buckets.get(key)
        if b is None:
            return self._add(key, TokenBucket(self._rate, self._burst, clock=self._clock))
        self._touch(key)
        return b

    # Threads share the key map without a lock (one costs more than the bucket's own check):
    # each step is one call into the dict's C code, atomic under the GIL, and the steps are
    # ordered so that a race is harmless. A key has one bucket at a time (setdefault), a key
    # pushed out between its lookup and its use answers from the bucket it had, and a trim
    # that finds the map already trimmed is a no-op.

    def _add(self, key: Hashable, new: TokenBucket) -> TokenBucket:
        # `new`, or the bucket another thread added for `key` first.
        buckets = self._buckets
        b = buckets.setdefault(key, new)
        if b is new:
            while len(buckets) > self._max_keys:
                try:
                    buckets.popitem(last=False)
                except KeyError:
                    break
        return b

    def _touch(self, key: Hashable) -> None:
        # A bare try (not contextlib.suppress, which costs a context manager a call).
        try:  # noqa: SIM105
            self._buckets.move_to_end(key)
        except KeyError:
            pass  # pushed out meanwhile

    def _take(self, key: Hashable, n: int, now: float | None) -> bool:
        """``try_consume`` on ``key``'s bucket. A new key's bucket joins the map only once the
        cost is accepted, so a cost above the burst neither adds the key nor pushes out
        another."""
        b = self._buckets.get(key)
        if b is not None:
            self._touch(key)
            return b.try_consume(n, now)
        new = TokenBucket(self._rate, self._burst, clock=self._clock)
        ok = new.try_consume(n, now)
        b = self._add(key, new)
        # Another thread's bucket for the key came first: take from that one instead.
        return ok if b is new else b.try_consume(n, now)

    def try_acquire(self, key: Hashable, n: int = 1, now: float | None = None) -> bool:
        """Take ``n`` tokens from ``key``'s bucket if they are there; never waits.

        :param now: the time in seconds (default: the clock).
        :raises ConfigError: when ``n`` exceeds ``burst`` (it could never pass).
        """
        return self._take(key, n, now)

    def time_until(self, key: Hashable, n: int = 1, now: float | None = None) -> float:
        """Seconds until ``key``'s bucket holds ``n`` tokens (0.0 if it does now)."""
        b = self._buckets.get(key)
        if b is None:
            # A new key starts full; check n against burst without creating its bucket.
            return TokenBucket(self._rate, self._burst, clock=self._clock).time_until(n, now)
        return b.time_until(n, now)

    async def acquire(self, key: Hashable, n: int = 1) -> None:
        """Wait until ``n`` tokens can be taken from ``key``'s bucket, then take them.

        Sleeps for exactly :meth:`time_until` (no polling); waiters on one key are served first in,
        first out, so a large request is not starved by a stream of small ones.

        :raises ConfigError: when ``n`` exceeds ``burst`` (it could never pass).
        """
        if key not in self._locks and self._take(key, n, None):
            return
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Waiters()
        entry.count += 1
        try:
            async with entry.lock:
                while True:
                    if self._take(key, n, None):
                        return
                    await self._sleep(self.time_until(key, n))
        finally:
            entry.count -= 1
            if entry.count == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s bucket (its next use starts full). Unknown keys are ignored."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        """The number of keys tracked."""
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self._rate!r}, burst={self._burst!r}, "
            f"max_keys={self._max_keys}, keys={len(self._buckets)})"
        )
