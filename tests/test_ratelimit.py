"""meshcore.RateLimiter: per-key exact token buckets, the LRU bound, and asyncio acquire."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshcore
from meshcore import ConfigError, RateLimiter


class FakeTime:
    """A clock and a matching sleep: sleeping advances the clock by exactly the time asked for."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def test_exported() -> None:
    assert meshcore.RateLimiter is RateLimiter
    assert "RateLimiter" in meshcore.__all__


def test_keys_are_independent() -> None:
    clock = FakeTime()
    lim = RateLimiter(10, 3, clock=clock)
    assert [lim.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    assert [lim.try_acquire("b") for _ in range(4)] == [True, True, True, False]
    assert lim.time_until("a") == pytest.approx(0.1)
    clock.t = 0.1
    assert lim.try_acquire("a") and not lim.try_acquire("a")
    assert len(lim) == 2 and "a" in lim and "c" not in lim
    # A new key starts full and is not created by asking.
    assert lim.time_until("c", 3) == 0.0 and "c" not in lim


def test_lru_bound_forgets_the_least_recently_used() -> None:
    clock = FakeTime()
    lim = RateLimiter(1, 2, max_keys=3, clock=clock)
    for k in ("a", "b", "c"):
        assert lim.try_acquire(k, 2)
    assert lim.try_acquire("a") is False  # touches "a": now "b" is the oldest
    assert lim.try_acquire("d", 2)
    assert len(lim) == 3 and "b" not in lim
    assert "a" in lim and "c" in lim and "d" in lim
    # "b" comes back with a fresh, full bucket.
    assert lim.try_acquire("b", 2)
    assert "c" not in lim
    lim.forget("b")
    lim.forget("never-seen")
    assert "b" not in lim and len(lim) == 2


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="max_keys"):
        RateLimiter(1, 1, max_keys=0)
    with pytest.raises(ConfigError):
        RateLimiter(-1, 1)
    with pytest.raises(ConfigError):
        RateLimiter(1, 0)
    lim = RateLimiter(1, 5)
    with pytest.raises(ConfigError):
        lim.try_acquire("k", 6)
    with pytest.raises(ConfigError):
        asyncio.run(lim.acquire("k", 6))


def test_a_cost_above_the_burst_adds_no_key() -> None:
    lim = RateLimiter(1, 5, max_keys=2, clock=FakeTime())
    assert lim.try_acquire("a") and lim.try_acquire("b")
    with pytest.raises(ConfigError):
        lim.try_acquire("c", 6)
    with pytest.raises(ConfigError):
        asyncio.run(lim.acquire("d", 6))
    # Neither refused key joined, nor pushed out "a" or "b".
    assert "c" not in lim and "d" not in lim
    assert "a" in lim and "b" in lim and len(lim) == 2


def _hammer(work: list[threading.Thread]) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in work:
            t.start()
        for t in work:
            t.join()
    finally:
        sys.setswitchinterval(old)


def test_threads_share_one_bucket_per_key() -> None:
    # No refill to speak of: across all threads, each key admits exactly its burst (a second
    # bucket made for a new key by a racing thread would admit more). Many new keys, each
    # met by every thread at about the same time, so that the creation races.
    lim = RateLimiter(1e-9, 3, clock=lambda: 1.0)
    admitted = [0] * 4
    errors: list[BaseException] = []

    def take(i: int) -> None:
        try:
            for key in range(3000):
                for _ in range(2):
                    admitted[i] += lim.try_acquire(("flow", key))
        except BaseException as e:  # reported below
            errors.append(e)

    _hammer([threading.Thread(target=take, args=(i,)) for i in range(4)])
    assert errors == []
    assert sum(admitted) == 3 * 3000


def test_threads_evicting_keys_never_fail() -> None:
    # More keys than the bound, from several threads: lookups, reorders and evictions race.
    lim = RateLimiter(1e6, 1e6, max_keys=2)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        keys = random.Random(seed)
        try:
            for i in range(30_000):
                lim.try_acquire(keys.randrange(4), 1, now=1.0)
                if i % 1000 == 0:
                    lim.forget(keys.randrange(4))
        except BaseException as e:  # reported below
            errors.append(e)

    _hammer([threading.Thread(target=churn, args=(s,)) for s in range(4)])
    assert errors == []
    assert len(lim) <= 2


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 50),
    events=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2_000_000), st.integers(1, 5)),
        min_size=1,
        max_size=200,
    ),
)
def test_matches_a_model_bucket_per_key(
    rate: int, burst: int, events: list[tuple[int, int, int]]
) -> None:
    """Each key admits exactly what an exact (Fraction) token bucket admits."""
    lim = RateLimiter(rate, burst)
    level: dict[int, Fraction] = {}
    last: dict[int, int] = {}
    t_us = 0
    for key, gap_us, n in events:
        t_us += gap_us
        now = t_us / 1e6
        if key not in level:
            level[key], last[key] = Fraction(burst), t_us
        level[key] = min(
            Fraction(burst), level[key] + Fraction(rate) * Fraction(t_us - last[key], 10**6)
        )
        last[key] = t_us
        want = n <= burst and level[key] >= n
        if n > burst:
            with pytest.raises(ConfigError):
                lim.try_acquire(key, n, now)
            continue
        if want:
            level[key] -= n
        assert lim.try_acquire(key, n, now) is want


def test_acquire_sleeps_exactly_what_is_missing() -> None:
    clock = FakeTime()
    lim = RateLimiter(10, 1, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for _ in range(5):
            await lim.acquire("k")

    asyncio.run(run())
    # The first passes at once; each later one waits one token time, once, with no polling.
    assert clock.slept == pytest.approx([0.1] * 4)
    assert clock.t == pytest.approx(0.4)


def test_acquire_ends_where_float_times_are_coarse() -> None:
    """At 4e9 s floats are 477 ns apart: each wait still brings the clock to the token."""
    clock = FakeTime()
    clock.t = 4000000000.00013
    lim = RateLimiter(1000, 1, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for _ in range(5):
            await asyncio.wait_for(lim.acquire("k"), timeout=5)

    asyncio.run(run())
    assert len(clock.slept) == 4  # one sleep per token after the first, no retries
    assert clock.t == pytest.approx(4000000000.00413, abs=2e-6)


def test_acquire_serves_waiters_in_arrival_order() -> None:
    clock = FakeTime()
    lim = RateLimiter(1, 3, clock=clock, sleep=clock.sleep)
    assert lim.try_acquire("k", 3)  # empty at t = 0
    done: list[tuple[str, float]] = []

    async def want(name: str, n: int) -> None:
        await lim.acquire("k", n)
        done.append((name, clock.t))

    async def run() -> None:
        big = asyncio.create_task(want("big", 3))
        await asyncio.sleep(0)
        small = asyncio.create_task(want("small", 1))
        await asyncio.gather(big, small)

    asyncio.run(run())
    # Without first-in-first-out service the small request would pass at t = 1 and delay the
    # big one; with it the big one passes at t = 3 and the small one a second later.
    assert [name for name, _ in done] == ["big", "small"]
    assert done[0][1] == pytest.approx(3.0) and done[1][1] == pytest.approx(4.0)
    assert lim._locks == {}  # the per-key waiter state is gone once nobody waits


def test_acquire_on_the_real_event_loop_clock() -> None:
    lim = RateLimiter(200, 1)

    async def run() -> float:
        t0 = time.monotonic()
        for _ in range(6):
            await lim.acquire("k")
        return time.monotonic() - t0

    elapsed = asyncio.run(run())
    # Five waits of 5 ms each must have happened (a lower bound: never admitted early).
    assert elapsed >= 5 * 0.005 - 1e-3
