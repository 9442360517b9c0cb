"""Seeded discrete-event simulations of the load-balancing policies.

Each request picks one endpoint at arrival through a :class:`meshcore.Balancer` whose clock is
the simulation time (``clock=``), and reports its latency to it at completion, as a client
would. Two oracle baselines see the global state instead: JSQ (join the shortest queue, counting
the request in service) and SED (shortest expected delay, (queue + 1) / service rate). Ties
are broken uniformly at random; every run is reproducible from its seed. Percentiles are
computed per seed over all requests, then averaged over seeds.

The scenarios (each a function returning a :class:`Table`, sized by its arguments so tests can
run small versions):

- :func:`beyond_round_robin` -- Buoyant's "Beyond Round Robin" (2016): 11 delay-line backends
  (latency ~ N(167 ms, 5 ms), no queueing), one client at 1000 requests/s (Poisson) for 60 s,
  backend 0 stuck at 2 s for requests sent in [15, 45) s.
- :func:`heterogeneous_pool` -- 10 FIFO single-worker servers with exponential service, nine at
  rate 1 and one at 0.5, Poisson arrivals at load rho, each handed to one of 10 independent
  clients (each with its own Balancer). The time unit is a fast server's mean service time.
- :func:`homogeneous_pool` -- n >= 100 identical FIFO servers and one client: mean time in
  system under ``random`` and ``least_request`` against Mitzenmacher's supermarket model,
  1 / (1 - rho) and sum over i >= 1 of rho ** (2 ** i - 2) (10.0 and 2.61 at rho = 0.9).

Policies are the Balancer's (``round_robin``, ``random``, ``least_request``, ``peak_ewma``),
plus ``least_request_full`` (least request comparing every endpoint: ``choice_count`` = n),
``wrr_oracle`` (round robin with weights proportional to the true service rates) and the
oracles ``jsq`` and ``sed``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from meshcore._meshcore import Balancer

__all__ = [
    "ORACLES",
    "Check",
    "Result",
    "Table",
    "beyond_round_robin",
    "heterogeneous_pool",
    "homogeneous_pool",
    "plot",
    "run_all",
    "supermarket_mean",
]

ORACLES = ("jsq", "sed")
_Latencies = npt.NDArray[np.float64]
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class Result:
    """One policy at one load, averaged over seeds. Latencies are in the scenario's unit
    (seconds for :func:`beyond_round_robin`, mean service times for the queueing pools)."""

    policy: str
    load: float | None
    requests: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    #: Share of requests slower than the table's threshold (NaN without one).
    over: float = math.nan
    #: The policy sends some server more than it can serve: its numbers grow with the run.
    unstable: bool = False


@dataclass(frozen=True)
class Check:
    """One target of the scenario, measured."""

    name: str
    value: float
    target: str
    ok: bool


@dataclass
class Table:
    """The results of one scenario, with its targets checked."""

    title: str
    unit: str
    #: Factor from the simulation's time unit to ``unit`` (1000 for seconds shown as ms).
    scale: float
    rows: list[Result] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    #: The latency above which ``Result.over`` counts, in the simulation's time unit.
    threshold: float | None = None

    def row(self, policy: str, load: float | None = None) -> Result:
        for r in self.rows:
            if r.policy == policy and r.load == load:
                return r
        raise KeyError((policy, load))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def format(self) -> str:
        s = self.scale
        head = f"{'policy':<20} {'load':>5} {'mean':>8} {'p50':>8} {'p90':>8} {'p95':>8}"
        head += f" {'p99':>8} {'p99.9':>8}"
        if self.threshold is not None:
            head += f" {'>' + format(self.threshold * s, 'g') + ' ' + self.unit:>10}"
        lines = [f"{self.title} (latencies in {self.unit})", head]
        for r in self.rows:
            load = "" if r.load is None else f"{r.load:.2f}"
            vals = (r.mean, r.p50, r.p90, r.p95, r.p99, r.p999)
            line = f"{r.policy:<20} {load:>5} " + " ".join(f"{v * s:>8.4g}" for v in vals)
            if self.threshold is not None:
                line += f" {r.over:>10.3%}"
            if r.unstable:
                line += "  (unstable)"
            lines.append(line)
        for c in self.checks:
            mark = "ok  " if c.ok else "MISS"
            lines.append(f"  [{mark}] {c.name}: {c.value:.4g} (target {c.target})")
        return "\n".join(lines)


# --- pickers ---------------------------------------------------------------------------------


class _Clock:
    """The simulation time, as the Balancer's ``clock=``."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Picker(Protocol):
    def pick(self) -> int: ...
    def done(self, i: int, latency: float) -> None: ...


class _LbPicker:
    """A client's Balancer over servers ``s0 .. s{n-1}``, by index."""

    def __init__(
        self,
        policy: str,
        n: int,
        clock: _Clock,
        seed: int,
        weights: Sequence[float] | None = None,
        options: dict[str, float] | None = None,
    ) -> None:
        names = [f"s{i}" for i in range(n)]
        eps: list[str] | dict[str, float] = (
            names if weights is None else dict(zip(names, weights, strict=True))
        )
        self.lb = Balancer(policy, eps, seed=seed, clock=clock, **(options or {}))
        # The Balancer's own str objects: done() finds them without hashing the text.
        self.names = self.lb.names()
        self.index = {name: i for i, name in enumerate(self.names)}

    def pick(self) -> int:
        return self.index[self.lb.pick()]

    def done(self, i: int, latency: float) -> None:
        self.lb.done(self.names[i], latency)


class _Oracle:
    """JSQ or SED over the true queue lengths (``pending``, kept by the simulator)."""

    def __init__(self, kind: str, pending: list[int], rates: Sequence[float], seed: int) -> None:
        self.pending: list[int] = pending
        self.inv = [1.0 / r for r in rates]
        self.sed = kind == "sed"
        self.rng = random.Random(seed)
        self.all = range(len(pending))

    def pick(self) -> int:
        q = self.pending
        costs: Sequence[float]
        if self.sed:
            inv = self.inv
            costs = [(q[i] + 1) * inv[i] for i in self.all]
        else:
            costs = q
        best = min(costs)
        ties = [i for i in self.all if costs[i] == best]
        return ties[0] if len(ties) == 1 else self.rng.choice(ties)

    def done(self, i: int, latency: float) -> None:
        pass


def _picker(
    policy: str,
    clock: _Clock,
    pending: list[int],
    rates: Sequence[float],
    seed: int,
    options: dict[str, float],
) -> _Picker:
    n = len(rates)
    if policy in ORACLES:
        return _Oracle(policy, pending, rates, seed)
    if policy == "least_request_full":
        return _LbPicker("least_request", n, clock, seed, options={"choice_count": min(n, 64)})
    if policy == "wrr_oracle":
        top = max(rates)
        return _LbPicker("round_robin", n, clock, seed, weights=[r / top for r in rates])
    if policy == "peak_ewma":
        return _LbPicker(policy, n, clock, seed, options=options)
    return _LbPicker(policy, n, clock, seed)


def _summary(
    policy: str,
    load: float | None,
    runs: list[_Latencies],
    threshold: float | None,
    unstable: bool = False,
) -> Result:
    per = np.array([np.percentile(r, PERCENTILES) for r in runs]).mean(axis=0)
    over = float(np.mean([(r > threshold).mean() for r in runs])) if threshold else math.nan
    return Result(
        policy=policy,
        load=load,
        requests=sum(len(r) for r in runs),
        mean=float(np.mean([r.mean() for r in runs])),
        p50=float(per[0]),
        p90=float(per[1]),
        p95=float(per[2]),
        p99=float(per[3]),
        p999=float(per[4]),
        over=over,
        unstable=unstable,
    )


# --- (a) delay lines -------------------------------------------------------------------------


def _run_delay_lines(
    policy: str,
    seed: int,
    *,
    servers: int,
    rate: float,
    duration: float,
    slow_from: float,
    slow_until: float,
    slow_latency: float,
    mean: float,
    sd: float,
    options: dict[str, float],
) -> _Latencies:
    rng = random.Random(seed)
    clock = _Clock()
    pending = [0] * servers
    picker = _picker(policy, clock, pending, [1.0] * servers, seed + 1, options)
    pick, done = picker.pick, picker.done
    heap: list[tuple[float, int, int, float]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = itertools.count()
    out: list[float] = []
    record = out.append
    gauss, expo = rng.gauss, rng.expovariate
    t = expo(rate)
    while t < duration or heap:
        if heap and (heap[0][0] <= t or t >= duration):
            tc, _, i, lat = pop(heap)
            clock.t = tc
            pending[i] -= 1
            done(i, lat)
            record(lat)
            continue
        clock.t = t
        i = pick()
        pending[i] += 1
        if i == 0 and slow_from <= t < slow_until:
            lat = slow_latency
        else:
            lat = max(gauss(mean, sd), 1e-3)
        push(heap, (t + lat, next(seq), i, lat))
        t += expo(rate)
    return np.asarray(out)


A_POLICIES = ("round_robin", "random", "least_request", "least_request_full", "peak_ewma")


def beyond_round_robin(
    *,
    duration: float = 60.0,
    rate: float = 1000.0,
    slow_from: float = 15.0,
    slow_until: float = 45.0,
    servers: int = 11,
    seeds: Sequence[int] = (1, 2, 3),
    policies: Sequence[str] = A_POLICIES,
    decay: float = 10.0,
) -> Table:
    """Scenario (a). Targets: ``peak_ewma`` puts under 0.1 % of requests over 1 s with p99.9
    under 200 ms; round robin puts about 4.5 % over 1 s (1/11 of requests for half the run)."""
    table = Table(
        f"(a) Beyond round robin: {servers} delay lines ~N(167 ms, 5 ms), {rate:g} req/s for "
        f"{duration:g} s, server 0 at 2 s in [{slow_from:g}, {slow_until:g}) s, "
        f"{len(seeds)} seed(s)",
        "ms",
        1000.0,
        threshold=1.0,
    )
    for policy in policies:
        runs = [
            _run_delay_lines(
                policy,
                seed,
                servers=servers,
                rate=rate,
                duration=duration,
                slow_from=slow_from,
                slow_until=slow_until,
                slow_latency=2.0,
                mean=0.167,
                sd=0.005,
                options={"decay": decay},
            )
            for seed in seeds
        ]
        table.rows.append(_summary(policy, None, runs, 1.0))
    names = {r.policy for r in table.rows}
    if "peak_ewma" in names:
        pe = table.row("peak_ewma")
        table.checks.append(Check("peak_ewma share over 1 s", pe.over, "< 0.1 %", pe.over < 1e-3))
        table.checks.append(Check("peak_ewma p99.9 (ms)", pe.p999 * 1e3, "< 200", pe.p999 < 0.2))
    if "round_robin" in names:
        rr = table.row("round_robin")
        expect = (slow_until - slow_from) / duration / servers
        table.checks.append(
            Check(
                "round_robin share over 1 s",
                rr.over,
                f"about {expect:.2%}",
                abs(rr.over - expect) < 0.15 * expect,
            )
        )
    return table


# --- (b), (c) FIFO queues --------------------------------------------------------------------


def _run_fifo(
    policy: str,
    seed: int,
    *,
    rates: Sequence[float],
    load: float,
    requests: int,
    clients: int,
    warmup: float,
    options: dict[str, float],
) -> _Latencies:
    rng = random.Random(seed)
    n = len(rates)
    clock = _Clock()
    pending = [0] * n
    pickers = [
        _picker(policy, clock, pending, rates, seed * 1_000_003 + c + 1, options)
        for c in range(clients)
    ]
    queues: list[deque[tuple[float, int, int]]] = [deque() for _ in range(n)]
    lat = np.empty(requests)
    heap: list[tuple[float, int]] = []  # (completion time, server): one per busy server
    push, pop = heapq.heappush, heapq.heappop
    expo, below = rng.expovariate, rng.randrange
    arrival_rate = load * sum(rates)
    t = expo(arrival_rate)
    k = 0
    one = pickers[0]
    while k < requests or heap:
        if heap and (k >= requests or heap[0][0] <= t):
            tc, i = pop(heap)
            clock.t = tc
            q = queues[i]
            start, c, idx = q.popleft()
            pending[i] -= 1
            w = tc - start
            lat[idx] = w
            (one if clients == 1 else pickers[c]).done(i, w)
            if q:
                push(heap, (tc + expo(rates[i]), i))
            continue
        clock.t = t
        c = 0 if clients == 1 else below(clients)
        i = pickers[c].pick()
        q = queues[i]
        q.append((t, c, k))
        pending[i] += 1
        if len(q) == 1:
            push(heap, (t + expo(rates[i]), i))
        k += 1
        t += expo(arrival_rate)
    return lat[int(warmup * requests) :]


B_POLICIES = (
    "round_robin",
    "random",
    "wrr_oracle",
    "least_request",
    "least_request_full",
    "peak_ewma",
    "jsq",
    "sed",
)


def heterogeneous_pool(
    *,
    loads: Sequence[float] = (0.5, 0.7, 0.9),
    requests: int = 100_000,
    seeds: Sequence[int] = (1, 2),
    clients: int = 10,
    rates: Sequence[float] = (1.0,) * 9 + (0.5,),
    policies: Sequence[str] = B_POLICIES,
    decay: float = 1000.0,
) -> Table:
    """Scenario (b). Targets at every load: ``peak_ewma`` p99 at least 1.4x lower than
    ``least_request``'s and within 2x of the JSQ oracle's."""
    table = Table(
        f"(b) Heterogeneous pool: {len(rates)} FIFO servers, rates {_rates(rates)}, "
        f"{clients} independent clients, {requests:,} requests x {len(seeds)} seed(s)",
        "mean service times",
        1.0,
    )
    total = sum(rates)
    for load in loads:
        for policy in policies:
            runs = [
                _run_fifo(
                    policy,
                    seed,
                    rates=rates,
                    load=load,
                    requests=requests,
                    clients=clients,
                    warmup=0.0,
                    options={"decay": decay},
                )
                for seed in seeds
            ]
            # Round robin and random send every server 1/n of the load, whatever its speed.
            unstable = policy in ("round_robin", "random") and load * total / len(rates) >= min(
                rates
            )
            table.rows.append(_summary(policy, load, runs, None, unstable))
        names = set(policies)
        if {"peak_ewma", "least_request"} <= names:
            pe, lr = table.row("peak_ewma", load), table.row("least_request", load)
            ratio = lr.p99 / pe.p99
            table.checks.append(
                Check(f"least_request / peak_ewma p99 at {load:g}", ratio, ">= 1.4", ratio >= 1.4)
            )
        if {"peak_ewma", "jsq"} <= names:
            pe, jsq = table.row("peak_ewma", load), table.row("jsq", load)
            ratio = pe.p99 / jsq.p99
            table.checks.append(
                Check(f"peak_ewma / jsq p99 at {load:g}", ratio, "<= 2", ratio <= 2.0)
            )
    return table


def supermarket_mean(load: float, d: int) -> float:
    """Mean time in system of the supermarket model (n -> infinity, Poisson arrivals at rate
    load x n, exponential service at rate 1, each job to the shortest of ``d`` random queues):
    1 / (1 - load) for d = 1, else the sum over i >= 1 of load ** ((d ** i - d) / (d - 1))."""
    if d == 1:
        return 1.0 / (1.0 - load)
    total, i = 0.0, 1
    while True:
        term: float = load ** ((d**i - d) / (d - 1))
        total += term
        if term < 1e-12:
            return total
        i += 1


def homogeneous_pool(
    *,
    servers: int = 100,
    load: float = 0.9,
    requests: int = 400_000,
    seeds: Sequence[int] = (1,),
    policies: Sequence[str] = ("random", "least_request"),
    warmup: float = 0.25,
    tolerance: float = 0.05,
) -> Table:
    """Scenario (c). Target: mean time in system within ``tolerance`` of the supermarket model
    (``random``: d = 1, ``least_request``: d = 2); the first ``warmup`` share of requests, sent
    while the queues fill from empty, is left out."""
    table = Table(
        f"(c) Homogeneous pool: {servers} FIFO servers at rate 1, one client, load {load:g}, "
        f"{requests:,} requests x {len(seeds)} seed(s) ({warmup:.0%} warm-up left out)",
        "mean service times",
        1.0,
    )
    for policy in policies:
        runs = [
            _run_fifo(
                policy,
                seed,
                rates=[1.0] * servers,
                load=load,
                requests=requests,
                clients=1,
                warmup=warmup,
                options={},
            )
            for seed in seeds
        ]
        row = _summary(policy, load, runs, None)
        table.rows.append(row)
        d = {"random": 1, "least_request": 2}.get(policy)
        if d is not None:
            want = supermarket_mean(load, d)
            table.checks.append(
                Check(
                    f"{policy} mean time in system (model {want:.3g})",
                    row.mean,
                    f"within {tolerance:.0%}",
                    abs(row.mean - want) <= tolerance * want,
                )
            )
    return table


def _rates(rates: Sequence[float]) -> str:
    groups = [(r, len(list(g))) for r, g in itertools.groupby(rates)]
    return ", ".join(f"{r:g}" if k == 1 else f"{r:g} x{k}" for r, k in groups)


# --- plot ------------------------------------------------------------------------------------


def plot(tables: Sequence[Table], path: str | Path) -> Path | None:
    """Latency percentiles per policy, one panel per table (per load for tables with several),
    as a PNG at ``path``. Returns the path, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels: list[tuple[str, Table, float | None]] = []
    for t in tables:
        loads = sorted({r.load for r in t.rows if r.load is not None})
        if not loads:
            panels.append((t.title.split(":")[0], t, None))
        for load in loads:
            panels.append((f"{t.title.split(':')[0]}, load {load:g}", t, load))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    labels = ["p50", "p90", "p95", "p99", "p99.9"]
    for ax, (title, t, at) in zip(axes[0], panels, strict=True):
        for r in t.rows:
            if r.load != at:
                continue
            vals = [v * t.scale for v in (r.p50, r.p90, r.p95, r.p99, r.p999)]
            style = ":" if r.unstable else ("--" if r.policy in ORACLES else "-")
            ax.plot(labels, vals, style, marker="o", label=r.policy)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(t.unit, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_all(*, scale: float = 1.0, progress: Callable[[str], None] | None = None) -> list[Table]:
    """The three scenarios at ``scale`` times their full size (1.0: the reference runs; the
    stuck window of (a) scales with its duration)."""
    say = progress or (lambda _: None)
    say("simulating (a) beyond round robin ...")
    a = beyond_round_robin(duration=60.0 * scale, slow_from=15.0 * scale, slow_until=45.0 * scale)
    say("simulating (b) heterogeneous pool ...")
    b = heterogeneous_pool(requests=max(1000, int(100_000 * scale)))
    say("simulating (c) homogeneous pool ...")
    c = homogeneous_pool(requests=max(1000, int(400_000 * scale)))
    return [a, b, c]
