"""Rate limiters, meters and AQM: meshcore against the Python limiters people use, side by side.

    python benches/bench_queue.py [--quick]

Peers (``pip install .[bench]``): token-bucket, limits, aiolimiter, pyrate-limiter, ratelimit, and
the tight pure-Python token bucket and Floyd-Jacobson RED a Python user would write. A peer that is
not installed is reported and skipped.

Single calls are timed as a bound method called in a tight loop (best of several rounds, ns per
call, loop overhead included for everyone). ADMIT means every call passes, DENY that the bucket is
empty (the flood path). The exactness probe saturates each limiter for PROBE seconds of real time
at 1000/s with a burst of 100 and compares what it admitted with the ideal 100 + 1000 t; a peer is
"exact" when it is within -2 % / +0.5 % of that (a deficit can come from this process being
descheduled; an excess cannot). Batch figures are ns per element on 1e6-element numpy arrays.
The machine is shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import os

# numpy's BLAS threads would spin on the other core while the benchmark runs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

import meshcore

PROBE_RATE = 1000
PROBE_BURST = 100


def per_call_ns(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Best-of-``rounds`` ns per call of ``fn`` in a tight loop of ``n`` calls."""
    best = math.inf
    loop = range(n)
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        for _ in loop:
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def per_element_ns(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    best = math.inf
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def probe(try_once: Callable[[], bool], seconds: float) -> tuple[int, float]:
    """Call ``try_once`` flat out for ``seconds``; (admitted, ideal)."""
    admitted = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if try_once():
            admitted += 1
    return admitted, PROBE_BURST + PROBE_RATE * (time.monotonic() - t0)


# --- what a Python user writes ------------------------------------------------------------


class PyBucket:
    """The tight pure-Python float token bucket."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, time.monotonic()

    def try_consume(self, n: float = 1, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        tokens = min(self.burst, self.tokens + (t - self.last) * self.rate)
        self.last = t
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False


class PyRed:
    """Floyd-Jacobson RED (1993, Fig. 2) in plain Python: the decision a user would write."""

    def __init__(self, min_th: float, max_th: float, max_p: float, w_q: float, seed: int) -> None:
        self.min_th, self.max_th, self.max_p, self.w_q = min_th, max_th, max_p, w_q
        self.avg, self.count, self.q = 0.0, -1, 0
        self.rng = random.Random(seed)

    def enqueue(self, size: int) -> int:
        self.avg += self.w_q * (self.q - self.avg)
        if self.avg < self.min_th:
            self.count = -1
        elif self.avg >= self.max_th:
            self.count = 0
            return 1
        else:
            self.count += 1
            p_b = self.max_p * (self.avg - self.min_th) / (self.max_th - self.min_th)
            p_a = 1.0 if self.count * p_b >= 1 else p_b / (1 - self.count * p_b)
            if self.rng.random() < p_a:
                self.count = 0
                return 1
        self.q += 1
        return 0


# --- peers -------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    admit: Callable[[], object] | None
    deny: Callable[[], object] | None
    probe: Callable[[], bool] | None
    note: str = ""


def peers() -> tuple[list[Peer], list[str]]:
    out: list[Peer] = []
    missing: list[str] = []

    fast = PyBucket(1e12, 1e12)
    empty = PyBucket(1e-9, 1)
    empty.try_consume()
    pb = PyBucket(PROBE_RATE, PROBE_BURST)
    out.append(
        Peer("pure-Python float bucket", fast.try_consume, empty.try_consume, pb.try_consume)
    )

    try:
        import token_bucket

        tb_fast = token_bucket.Limiter(1e12, 10**12, token_bucket.MemoryStorage())
        tb_empty = token_bucket.Limiter(1e-9, 1, token_bucket.MemoryStorage())
        tb_empty.consume("k")
        tb_probe = token_bucket.Limiter(PROBE_RATE, PROBE_BURST, token_bucket.MemoryStorage())
        out.append(
            Peer(
                "token-bucket Limiter.consume",
                lambda: tb_fast.consume("k"),
                lambda: tb_empty.consume("k"),
                lambda: tb_probe.consume("k"),
            )
        )
    except ImportError:
        missing.append("token-bucket")

    try:
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )

        for cls, tag in (
            (FixedWindowRateLimiter, "fixed window"),
            (MovingWindowRateLimiter, "moving window"),
            (SlidingWindowCounterRateLimiter, "sliding counter"),
        ):
            lim = cls(MemoryStorage())
            big, one, hundred = parse("1000000000/second"), parse("1/day"), parse("1000/second")
            lim.hit(one, "e")
            out.append(
                Peer(
                    f"limits {tag}",
                    partial(lim.hit, big, "k"),
                    partial(lim.hit, one, "e"),
                    partial(lim.hit, hundred, "p"),
                    "window of 1000 per second, not a bucket",
                )
            )
    except ImportError:
        missing.append("limits")

    try:
        from pyrate_limiter import Duration, Limiter, Rate

        pr_fast = Limiter(Rate(10**9, Duration.SECOND))
        pr_empty = Limiter(Rate(1, Duration.DAY))
        pr_empty.try_acquire("k", blocking=False)
        pr_probe = Limiter(Rate(PROBE_BURST, 100))  # 100 per 100 ms
        out.append(
            Peer(
                "pyrate-limiter try_acquire",
                lambda: pr_fast.try_acquire("k", blocking=False),
                lambda: pr_empty.try_acquire("k", blocking=False),
                lambda: bool(pr_probe.try_acquire("k", blocking=False)),
                "sliding log: 100 per 100 ms",
            )
        )
    except ImportError:
        missing.append("pyrate-limiter")

    try:
        from ratelimit import RateLimitException, limits

        def noop() -> None:
            return None

        rl_fast: Callable[[], None] = limits(calls=10**12, period=1)(noop)
        rl_empty: Callable[[], None] = limits(calls=1, period=10**9)(noop)

        rl_empty()

        def rl_deny() -> bool:
            try:
                rl_empty()
            except RateLimitException:
                return False
            return True

        out.append(Peer("ratelimit @limits", rl_fast, rl_deny, None, "fixed window; raises"))
    except ImportError:
        missing.append("ratelimit")
    return out, missing


def ours() -> list[Peer]:
    out = []
    fast = meshcore.TokenBucket(1e12, 1e12)
    empty = meshcore.TokenBucket(1e-6, 1)
    empty.try_consume()
    probe_tb = meshcore.TokenBucket(PROBE_RATE, PROBE_BURST)
    out.append(
        Peer(
            "meshcore TokenBucket.try_consume()",
            fast.try_consume,
            empty.try_consume,
            probe_tb.try_consume,
        )
    )
    t = time.monotonic()
    out.append(
        Peer(
            "meshcore TokenBucket.try_consume(1, now)",
            partial(fast.try_consume, 1, t),
            partial(empty.try_consume, 1, t),
            None,
        )
    )
    g_fast = meshcore.Gcra(1e-9, 1e6)
    g_empty = meshcore.Gcra(1e6, 0.0)
    g_empty.try_consume()
    g_probe = meshcore.Gcra(1 / PROBE_RATE, (PROBE_BURST - 1) / PROBE_RATE)
    out.append(
        Peer(
            "meshcore Gcra.try_consume()",
            g_fast.try_consume,
            g_empty.try_consume,
            g_probe.try_consume,
        )
    )
    lim_fast = meshcore.RateLimiter(1e12, 1e12)
    lim_empty = meshcore.RateLimiter(1e-6, 1)
    lim_empty.try_acquire("k")
    lim_probe = meshcore.RateLimiter(PROBE_RATE, PROBE_BURST)
    out.append(
        Peer(
            "meshcore RateLimiter.try_acquire(key)",
            lambda: lim_fast.try_acquire("k"),
            lambda: lim_empty.try_acquire("k"),
            lambda: lim_probe.try_acquire("k"),
        )
    )
    return out


@dataclass
class Row:
    name: str
    admit: float | None
    deny: float | None
    admitted: int | None
    ideal: float | None
    note: str

    @property
    def exact(self) -> bool | None:
        if self.admitted is None or self.ideal is None:
            return None
        return -0.02 <= self.admitted / self.ideal - 1 <= 0.005


def measure(p: Peer, n: int, probe_s: float) -> Row:
    admit = per_call_ns(p.admit, n) if p.admit else None
    deny = per_call_ns(p.deny, n) if p.deny else None
    admitted, ideal = probe(p.probe, probe_s) if p.probe else (None, None)
    return Row(p.name, admit, deny, admitted, ideal, p.note)


def measure_aiolimiter(n: int, probe_s: float) -> Row | None:
    """aiolimiter is async-only: ``await acquire()`` timed inside one coroutine; DENY is
    ``has_capacity()`` on a full limiter (acquire would wait); the probe acquires only when
    ``has_capacity()`` says it would not wait."""
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        return None

    async def run() -> Row:
        fast = AsyncLimiter(1e12, 1)
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                await fast.acquire()
            best = min(best, time.perf_counter() - t0)
        full = AsyncLimiter(1, 1e9)
        await full.acquire()
        deny = per_call_ns(full.has_capacity, n)
        # A leaky bucket of capacity max_rate draining over time_period: burst 100 at 1000/s.
        lim = AsyncLimiter(PROBE_BURST, PROBE_BURST / PROBE_RATE)
        admitted, t0 = 0, time.monotonic()
        while time.monotonic() < t0 + probe_s:
            if lim.has_capacity():
                await lim.acquire()
                admitted += 1
        ideal = PROBE_BURST + PROBE_RATE * (time.monotonic() - t0)
        return Row(
            "aiolimiter await acquire()",
            best / n * 1e9,
            deny,
            admitted,
            ideal,
            "async; DENY = has_capacity()",
        )

    return asyncio.run(run())


def fmt(x: float | None, spec: str = "8.1f") -> str:
    return format(x, spec) if x is not None else " " * 7 + "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer calls and a shorter probe")
    args = ap.parse_args(argv)
    n = 50_000 if args.quick else 300_000
    probe_s = 0.3 if args.quick else 1.5
    batch = 200_000 if args.quick else 1_000_000

    theirs, missing = peers()
    if missing:
        print(f"not installed (pip install .[bench]): {', '.join(missing)}")
    mine = ours()
    # Interleave ours and theirs so load changes hit both alike.
    rows: list[Row] = []
    for p in [*mine, *theirs]:
        rows.append(measure(p, n // 10 if "limits" in p.name or "pyrate" in p.name else n, probe_s))
    al = measure_aiolimiter(n, probe_s)
    if al is None:
        print("not installed (pip install .[bench]): aiolimiter")
    else:
        rows.append(al)

    print(
        f"\nSingle calls, ns per call (best of 5 x {n} calls); probe {probe_s} s at "
        f"{PROBE_RATE}/s, burst {PROBE_BURST}"
    )
    print(f"{'limiter':42} {'ADMIT':>8} {'DENY':>8} {'probe':>7} {'ideal':>7}  exact  note")
    for r in rows:
        ex = {None: "  -  ", True: " yes ", False: " NO  "}[r.exact]
        print(
            f"{r.name:42} {fmt(r.admit)} {fmt(r.deny)} {fmt(r.admitted, '7d')} "
            f"{fmt(r.ideal, '7.0f')}  {ex}  {r.note}"
        )

    ours_tb = rows[0]
    exact_peers = [r for r in rows[len(mine) :] if r.exact and r.admit and r.name[:4] != "pure"]
    floor = next(r for r in rows if r.name.startswith("pure-Python"))

    # Batch forms.
    rng = np.random.default_rng(1)
    costs = rng.integers(1, 1500, batch)  # int64, numpy's default integer
    times = np.cumsum(rng.exponential(1e-6, batch))  # float64 seconds, one per packet
    out = np.zeros(batch, dtype=bool)
    # Every timed call gets a new bucket (starting full, at 1e9 tokens/s against a demand of
    # about 0.75e9): the same times a second time would all lie in the bucket's past.
    tb_ns = per_element_ns(
        lambda: meshcore.TokenBucket(1e9, 1e6).try_consume_many(costs, times), batch
    )
    tb_out_ns = per_element_ns(
        lambda: meshcore.TokenBucket(1e9, 1e6).try_consume_many(costs, times, out=out), batch
    )
    tb = meshcore.TokenBucket(1e9, 1e6)
    tb_one_ns = per_element_ns(lambda: tb.try_consume_many(costs, out=out), batch)
    # Context for the line above, in the same run: the same call on 65,536 rows that are already
    # in cache (a router's batch, just parsed), and numpy only reading the two columns of the
    # large batch (what streaming them from memory costs on this machine at this moment).
    hot = 65_536
    c_hot, t_hot, o_hot = costs[:hot].copy(), times[:hot].copy(), out[:hot].copy()
    reps = max(1, batch // hot)

    def tb_hot() -> None:
        for _ in range(reps):
            meshcore.TokenBucket(1e9, 1e6).try_consume_many(c_hot, t_hot, out=o_hot)

    tb_hot_ns = per_element_ns(tb_hot, reps * hot)
    read_ns = per_element_ns(lambda: (costs.sum(), times.sum()), batch)
    ones = np.ones(batch, np.int64)
    gcra_ns = per_element_ns(lambda: meshcore.Gcra(1e-9, 1e-3).try_consume_many(ones, times), batch)
    pyb = PyBucket(1e9, 1e6)
    py_n = batch // 10
    c_l, t_l = costs[:py_n].tolist(), times[:py_n].tolist()

    def py_tb_loop() -> None:
        # A full bucket at time 0, as the new buckets above start.
        pyb.tokens, pyb.last = pyb.burst, 0.0
        f = pyb.try_consume
        for c, t in zip(c_l, t_l, strict=True):
            f(c, t)

    py_tb_ns = per_element_ns(py_tb_loop, py_n, rounds=3)

    # RED on one large batch, with the thresholds set so that nearly every arrival is decided in
    # the probabilistic region (min_th is reached after ~1% of the batch) and nothing overflows.
    # The queue is drained between rounds (not timed), so its memory is reused.
    red = meshcore.RedQueue(batch // 100, 4 * batch, 0.1, w_q=0.002, limit=8 * batch, seed=1)
    sizes = np.full(batch, 1000, dtype=np.int64)
    t0 = 0.0
    red_best = math.inf
    for _ in range(5):
        ts = t0 + np.arange(batch, dtype=np.float64) * 1e-6
        t0 = float(ts[-1]) + 1e-6
        gc.collect()
        start = time.perf_counter()
        red.enqueue_many(sizes, ts)
        red_best = min(red_best, time.perf_counter() - start)
        red.dequeue_many(len(red), now=t0)
    red_ns = red_best / batch * 1e9
    stats = red.stats()
    early = (stats["early_drops"] + stats["early_marks"]) / max(1, stats["enqueued"])

    # The router's shape: a batch of 64 packets in, a batch out, in a loop.
    router = meshcore.RedQueue(20, 60, 0.1, w_q=0.002, limit=240, seed=1)
    small = np.full(64, 1000, dtype=np.int64)

    def red_small() -> None:
        enq, deq = router.enqueue_many, router.dequeue_many
        for k in range(200):
            enq(small, np.full(64, k * 1e-4))
            deq(60, k * 1e-4)

    red64_ns = per_element_ns(red_small, 200 * 64)
    pyred = PyRed(batch // 100, 4 * batch, 0.1, 0.002, 1)
    s_l = sizes[:py_n].tolist()

    def py_red_loop() -> None:
        pyred.q = 0
        f = pyred.enqueue
        for s in s_l:
            f(s)

    py_red_ns = per_element_ns(py_red_loop, py_n, rounds=3)
    meter_ns = per_element_ns(
        lambda: meshcore.TrTCM(1e8, 1e5, 2e8, 2e5).color_many(costs, times), batch
    )

    print(f"\nBatch forms, ns per element ({batch} elements; Python loops over {py_n})")
    print(
        f"  TokenBucket.try_consume_many, a time per row   {tb_ns:7.2f}"
        f"   Python loop {py_tb_ns:8.1f}   ratio {py_tb_ns / tb_ns:5.0f}x"
    )
    print(f"    ... with out=                               {tb_out_ns:7.2f}")
    print(f"    ... one clock reading for the batch         {tb_one_ns:7.2f}")
    print(f"    ... {hot:,} rows already in cache, out=      {tb_hot_ns:7.2f}")
    print(f"  numpy only reading costs and times (sum)      {read_ns:7.2f}  (memory floor)")
    print(f"  Gcra.try_consume_many, a time per row         {gcra_ns:7.2f}")
    print(
        f"  RedQueue.enqueue_many, one batch              {red_ns:7.2f}"
        f"   Python loop {py_red_ns:8.1f}   ratio {py_red_ns / red_ns:5.0f}x"
        f"  (Python: the decision only; {early:.1%} early drops)"
    )
    print(f"  RedQueue, 64 in / 60 out per call (router)    {red64_ns:7.2f}  (both calls counted)")
    print(f"  TrTCM.color_many, a time per row              {meter_ns:7.2f}")

    print("\nTargets (issue 5)")

    def target(what: str, ok: bool, got: str) -> None:
        print(f"  [{'met' if ok else 'MISSED'}] {what}: {got}")

    admit = ours_tb.admit or math.inf
    target("try_consume() from Python <= 100 ns", admit <= 100, f"{admit:.1f} ns")
    if exact_peers:
        best_peer = min(exact_peers, key=lambda r: r.admit or math.inf)
        ratio = (best_peer.admit or 0) / admit
        target(
            ">= 5x the fastest exact Python peer",
            ratio >= 5,
            f"{ratio:.1f}x {best_peer.name} ({best_peer.admit:.0f} ns)",
        )
    target(
        "(for reference) ratio to the tight pure-Python bucket",
        True,
        f"{(floor.admit or 0) / admit:.1f}x ({floor.admit:.0f} ns)",
    )
    target(
        "token bucket batch <= 2 ns/element",
        tb_ns <= 2,
        f"{tb_ns:.2f} ns (a time per row), {tb_one_ns:.2f} ns (one clock reading), "
        f"{tb_hot_ns:.2f} ns (in cache); numpy reading the columns {read_ns:.2f} ns",
    )
    target("RED batch <= 12 ns/element", red_ns <= 12, f"{red_ns:.2f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
