"""Load balancers: meshcore.Balancer's pick + done from Python, against a pure-Python peer.

    python benches/bench_balance.py [--quick]

For every policy, one request is a ``pick`` then a ``done`` with its latency, called as bound
methods in a tight loop over 20 endpoints (best of several rounds, ns per pair, loop overhead
included), with ``now=None`` as a live client calls them (the monotonic clock is read where the
policy uses time: peak EWMA, slow start), and again with ``now=`` passed. The peer is the P2C
peak-EWMA a Python user would write (Finagle's rules: two distinct random endpoints, cost
decayed on read, peak on a slower sample), tuned by hand: lists indexed by position, a dict from
name to position, ``time.monotonic`` and ``math.exp``. Targets: at most 300 ns a pair for every
policy, at least 10x the peer. Also timed: building a Maglev table (65537 slots) for 1000
endpoints (target under 10 ms) and a ring of 1000 endpoints. The machine is shared and noisy:
read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time
from collections.abc import Callable
from functools import partial

import meshcore

POLICIES = ("round_robin", "random", "least_request", "peak_ewma", "ring_hash", "maglev")
ENDPOINTS = [f"10.0.{i // 250}.{i % 250 + 1}:8080" for i in range(20)]


def pairs_once(
    pick: Callable[..., str], done: Callable[..., None], key: str | None, n: int
) -> float:
    """Seconds for ``n`` of ``done(pick(), latency)`` (the loop written out, so no Python call
    but the two measured is timed)."""
    loop = range(n)
    gc.collect()
    t0 = time.perf_counter()
    if key is None:
        for _ in loop:
            done(pick(), 0.010)
    else:
        for _ in loop:
            done(pick(key), 0.010)
    return time.perf_counter() - t0


def pairs_now_once(
    pick: Callable[..., str], done: Callable[..., None], key: str | None, n: int
) -> float:
    """As :func:`pairs_once`, with ``now=`` passed (a simulation's clock)."""
    times = [i * 1e-4 for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    for now in times:
        done(pick(key, now), 0.010, True, now)
    return time.perf_counter() - t0


def best_ns(runs: dict[str, Callable[[], float]], n: int, rounds: int) -> dict[str, float]:
    """Best of ``rounds`` in ns per pair for each run, the runs interleaved round by round so
    that they all see the same noise of a shared machine."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return {name: t / n * 1e9 for name, t in best.items()}


class PyPeakEwma:
    """P2C peak EWMA in pure Python, as small and fast as it goes."""

    def __init__(self, names: list[str], decay: float = 10.0, default_rtt: float = 0.030) -> None:
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        n = len(names)
        self.cost = [0.0] * n
        self.stamp = [0.0] * n
        self.sampled = [False] * n
        self.pending = [0] * n
        self.tau = decay
        self.default = default_rtt
        self.rng = random.Random(1)

    def _load(self, i: int, now: float) -> float:
        if not self.sampled[i]:
            return self.default * (self.pending[i] + 1)
        c = self.cost[i] * math.exp(-(now - self.stamp[i]) / self.tau)
        self.cost[i] = c
        self.stamp[i] = now
        return c * (self.pending[i] + 1)

    def pick(self) -> str:
        now = time.monotonic()
        n = len(self.names)
        a = int(self.rng.random() * n)
        b = int(self.rng.random() * (n - 1))
        if b >= a:
            b += 1
        i = b if self._load(b, now) < self._load(a, now) else a
        self.pending[i] += 1
        return self.names[i]

    def done(self, name: str, latency: float) -> None:
        now = time.monotonic()
        i = self.index.get(name)
        if i is None:
            return
        if self.pending[i] > 0:
            self.pending[i] -= 1
        if self.sampled[i] and latency <= self.cost[i]:
            w = math.exp(-(now - self.stamp[i]) / self.tau)
            self.cost[i] = self.cost[i] * w + latency * (1.0 - w)
        else:
            self.cost[i] = latency
            self.sampled[i] = True
        self.stamp[i] = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    n = 20_000 if ap.parse_args().quick else 100_000

    peer = PyPeakEwma(ENDPOINTS)
    runs: dict[str, Callable[[], float]] = {
        "peer": partial(pairs_once, peer.pick, peer.done, None, n)
    }
    for policy in POLICIES:
        key = "user-42" if policy in ("ring_hash", "maglev") else None
        lb = meshcore.Balancer(policy, ENDPOINTS, seed=1)
        runs[policy] = partial(pairs_once, lb.pick, lb.done, key, n)
        lb2 = meshcore.Balancer(policy, ENDPOINTS, seed=1)
        runs[policy + " now="] = partial(pairs_now_once, lb2.pick, lb2.done, key, n)
    rounds = 15
    ns = best_ns(runs, n, rounds)
    peer_ns = ns["peer"]
    print(f"pick + done, {len(ENDPOINTS)} endpoints, ns per pair (best of {rounds} x {n:,})")
    print(f"{'policy':<16} {'now=None':>9} {'now=':>8} {'peer / now=None':>16}  target <= 300 ns")
    for policy in POLICIES:
        t = ns[policy]
        mark = "ok" if t <= 300 else "MISS"
        print(f"{policy:<16} {t:>9.0f} {ns[policy + ' now=']:>8.0f} {peer_ns / t:>15.1f}x  {mark}")
    print(f"{'pure-Python P2C peak EWMA (peer)':<26} {peer_ns:>9.0f}")
    worst = max(ns[p] for p in POLICIES)
    print(
        f"peak_ewma vs the peer: {peer_ns / ns['peak_ewma']:.1f}x (target >= 10x); "
        f"slowest policy {worst:.0f} ns (target <= 300)"
    )

    names = [f"10.1.{i // 250}.{i % 250 + 1}:8080" for i in range(1000)]
    for policy, what in (("maglev", "Maglev table (65537 slots)"), ("ring_hash", "ring")):
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            lb = meshcore.Balancer(policy, names, seed=1)
            lb.pick("k", now=0.0)  # the table is there by the first pick, whenever it is built
            best = min(best, time.perf_counter() - t0)
        target = " (target < 10 ms)" if policy == "maglev" else ""
        print(f"build a {what} for 1000 endpoints: {best * 1e3:.2f} ms{target}")


if __name__ == "__main__":
    main()
