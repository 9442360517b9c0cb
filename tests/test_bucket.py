"""TokenBucket, Gcra and LeakyBucket against exact Fraction models (reference P6 and P8).

Times are generated as integer nanoseconds and passed as float seconds that round back to the
same nanosecond, so the models and meshcore see the same instants.
"""

from __future__ import annotations

import math
import threading
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshcore
from meshcore import ConfigError, Gcra, LeakyBucket, TokenBucket, Verdict

NS = 10**9


def secs(ns: int) -> float:
    t = ns / NS
    assert round(t * NS) == ns
    return t


class TBModel:
    """The fluid token bucket in exact rationals."""

    def __init__(self, rate: Fraction, burst: Fraction) -> None:
        self.rate, self.burst, self.level, self.last = rate, burst, burst, 0

    def advance(self, ns: int) -> None:
        elapsed = max(0, ns - self.last)
        self.last = max(self.last, ns)
        self.level = min(self.burst, self.level + self.rate * elapsed / NS)

    def consume(self, n: int, ns: int) -> bool:
        self.advance(ns)
        if self.level >= n:
            self.level -= n
            return True
        return False

    def wait_ns(self, n: int, ns: int) -> int:
        self.advance(ns)
        return max(0, math.ceil((n - self.level) * NS / self.rate))


rates = st.one_of(
    st.integers(1, 10**6).map(Fraction),
    st.fractions(min_value=Fraction(1, 1000), max_value=10**4, max_denominator=1000),
    st.sampled_from([0.1, 0.3, 2.5, 1e-3, 123.456]).map(lambda x: Fraction(str(x))),
)
bursts = st.one_of(
    st.integers(1, 50).map(Fraction),
    st.fractions(min_value=Fraction(1, 2), max_value=50, max_denominator=100),
)
steps = st.lists(st.tuples(st.integers(0, 3 * NS), st.integers(0, 60)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(rates, bursts, steps, st.integers(0, 10**15))
def test_token_bucket_matches_the_fraction_model(
    rate: Fraction, burst: Fraction, seq: list[tuple[int, int]], start: int
) -> None:
    tb = TokenBucket(rate, burst)
    model = TBModel(rate, burst)
    ns = start
    costs, times, answers = [], [], []
    for gap, n in seq:
        ns += gap
        n = n % (math.floor(burst) + 1)
        wait = tb.time_until(n, secs(ns))
        assert round(wait * NS) == model.wait_ns(n, ns)
        before = model.level
        ok = tb.try_consume(n, secs(ns))
        assert ok == model.consume(n, ns)
        assert ok == (before >= n)  # refused only when short of tokens (P6 b)
        assert tb.tokens(secs(ns)) == pytest.approx(float(model.level), rel=1e-12, abs=1e-12)
        costs.append(n)
        times.append(secs(ns))
        answers.append(ok)
    # The batch form gives the same answers.
    again = TokenBucket(rate, burst).try_consume_many(np.array(costs), np.array(times))
    assert again.dtype == np.bool_
    assert again.tolist() == answers


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 10**7),
    st.integers(0, 5 * 10**7),
    st.lists(st.tuples(st.integers(0, 2 * 10**7), st.integers(1, 8)), min_size=1, max_size=80),
    st.booleans(),
)
def test_gcra_equals_token_bucket(
    interval: int, tolerance: int, seq: list[tuple[int, int]], whole: bool
) -> None:
    """P6 (c): GCRA(T, tau) admits exactly what TB(1/T, 1 + tau/T) admits."""
    if whole:  # T divides tau: the burst is the whole number 1 + floor(tau/T)
        tolerance -= tolerance % interval
    g = Gcra(Fraction(interval, NS), Fraction(tolerance, NS))
    burst = Fraction(interval + tolerance, interval)
    tb = TokenBucket(Fraction(NS, interval), burst)
    assert g.burst == math.floor(burst) == 1 + tolerance // interval
    if whole:
        assert burst == 1 + tolerance // interval
    ns = 0
    for gap, n in seq:
        ns += gap
        n = min(n, g.burst)
        assert round(g.time_until(n, secs(ns)) * NS) == round(tb.time_until(n, secs(ns)) * NS)
        assert g.try_consume(n, secs(ns)) == tb.try_consume(n, secs(ns))


def test_saturation_for_a_million_seconds_admits_exactly() -> None:
    """P6 (d): greedy use for 1e6 simulated seconds admits burst + floor(rate * t)."""
    tb = TokenBucket(Fraction(7, 3), 5)
    times = np.arange(4_000_001, dtype=np.float64) * 0.25  # every 0.25 s up to 1e6 s
    admitted = int(tb.try_consume_many(np.ones(len(times), dtype=np.int64), times).sum())
    # One attempt per instant: the first five instants spend the burst, never refilled past it.
    assert admitted == 5 + (7 * 10**6) // 3
    # A float rate is read as the decimal it prints as: 0.1 token/s is exactly 1/10.
    tb = TokenBucket(0.1, 3)
    times = np.arange(1_000_001, dtype=np.float64)
    costs = np.ones(len(times), dtype=np.uint64)
    assert int(tb.try_consume_many(costs, times).sum()) == 3 + 100_000


def test_burst_and_never_conforming_costs() -> None:
    """P6 (e) and (f)."""
    tb = TokenBucket(10, 4.5)
    assert sum(tb.try_consume(1, 0.0) for _ in range(20)) == 4
    with pytest.raises(ConfigError, match=r"n = 5 exceeds the burst of 9/2"):
        tb.try_consume(5, 0.0)
    with pytest.raises(ConfigError, match="never conform"):
        tb.time_until(5, 0.0)
    with pytest.raises(ConfigError, match=r"costs\[2\] = 5 exceeds the burst"):
        tb.try_consume_many(np.array([1, 1, 5]), np.zeros(3))
    with pytest.raises(ConfigError, match=r"costs\[1\] = -1 must be >= 0"):
        tb.try_consume_many(np.array([1, -1]), np.zeros(2))
    with pytest.raises(ConfigError, match="n must be >= 0"):
        tb.try_consume(-1, 0.0)
    assert tb.try_consume(0, 0.0)
    g = Gcra(0.1, 0.25)
    assert g.burst == 3
    with pytest.raises(ConfigError, match="n = 4 exceeds the burst of 3"):
        g.try_consume(4, 0.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TokenBucket(0, 1), "rate must be > 0"),
        (lambda: TokenBucket(-1, 1), "rate must be >= 0"),
        (lambda: TokenBucket(1, 0), "burst must be > 0"),
        (lambda: TokenBucket(float("nan"), 1), "rate must be a finite number"),
        (lambda: TokenBucket(1, True), "burst must be a number, got bool"),
        (lambda: TokenBucket(1, "3"), "burst must be a number, got str"),  # type: ignore[arg-type]
        (lambda: TokenBucket(1, 2, clock=3), "clock must be a callable"),  # type: ignore[arg-type]
        (lambda: TokenBucket(Fraction(1, 3**70), 1), "too precise"),
        (lambda: Gcra(0, 1), "interval must be > 0"),
        (lambda: Gcra(-1, 1), "interval must be >= 0"),
        (lambda: Gcra(1, 1e20), "tolerance must be below 9.2e9 seconds"),
        (lambda: LeakyBucket(0), "rate must be > 0 bytes/s"),
        (lambda: LeakyBucket(100, 0), r"limit \(bytes\) must be > 0"),
        (lambda: LeakyBucket(100, packet_limit=-2), "packet_limit must be > 0"),
    ],
)
def test_bad_parameters_raise_config_error(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "value",
    [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"), np.float32("nan")],
)
def test_non_finite_exact_numbers_are_refused_as_not_finite(value: object) -> None:
    """A NaN or an infinity given as a Decimal (or numpy float32) is refused as a float one is,
    not as an argument of the wrong type."""
    makes: list[tuple[object, str]] = [
        (lambda: TokenBucket(value, 1), "rate"),  # type: ignore[arg-type]
        (lambda: TokenBucket(1, value), "burst"),  # type: ignore[arg-type]
        (lambda: Gcra(value, 1), "interval"),  # type: ignore[arg-type]
        (lambda: Gcra(1, value), "tolerance"),  # type: ignore[arg-type]
        (lambda: LeakyBucket(value), "rate"),  # type: ignore[arg-type]
    ]
    for make, name in makes:
        with pytest.raises(
            ConfigError, match=rf"^{name} must be a finite number >= 0, got {value}$"
        ):
            make()  # type: ignore[operator]
    assert TokenBucket(Decimal("2.5"), Decimal(1)).rate == 2.5


def test_batch_columns_refuse_bools_with_type_error() -> None:
    """numpy reads ``[1, True]`` as ``[1, 1]`` and ``[0.0, True]`` as ``[0.0, 1.0]``: costs,
    sizes and times refuse bools by type, and the bucket is left unchanged."""
    tb, g, lb = TokenBucket(10, 5), Gcra(0.1, 0.5), LeakyBucket(100)
    for many in (tb.try_consume_many, g.try_consume_many):
        for costs, got in (
            ([1, True], r"a bool \(row 1\)"),
            (np.array([True]), "an array of bool"),
        ):
            with pytest.raises(
                TypeError, match=f"^costs must be a one-dimensional integer array, not {got}$"
            ):
                many(costs)
        for times, got in (
            ([0.0, True], r"a bool \(row 1\)"),
            (np.array([True, False]), "an array of bool"),
            # numpy would parse text as seconds: text is refused by type too.
            (["0.5", "1.5"], "text"),
            (np.array([b"0.5", b"1.5"]), "text"),
        ):
            with pytest.raises(TypeError, match=f"^times must be an array of seconds, not {got}$"):
                many([1, 1], times)
    with pytest.raises(
        TypeError, match=r"^sizes must be a one-dimensional integer array, not a bool \(row 0\)$"
    ):
        lb.schedule_many((np.True_, 10), [0.0, 0.0])  # type: ignore[arg-type]
    assert tb.tokens(0.0) == 5 and g.try_consume_many([5], [0.0]).tolist() == [True]
    assert len(lb) == 0


def test_bad_batch_arguments() -> None:
    tb = TokenBucket(10, 5)
    with pytest.raises(ConfigError, match="costs must be a one-dimensional integer array"):
        tb.try_consume_many(np.array([1.0, 2.0]))
    with pytest.raises(ConfigError, match="times has 1 rows, the batch 2"):
        tb.try_consume_many(np.array([1, 1]), np.array([0.0]))
    with pytest.raises(ConfigError, match=r"times\[1\] = nan is not a time"):
        tb.try_consume_many(np.array([1, 1]), np.array([0.0, math.nan]))
    with pytest.raises(ConfigError, match=r"times\[0\] = -1.0 is not a time"):
        tb.try_consume_many(np.array([1]), np.array([-1.0]))
    with pytest.raises(ConfigError, match="out has 3 rows"):
        tb.try_consume_many(np.array([1, 1]), out=np.zeros(3, dtype=bool))
    with pytest.raises(ConfigError, match="now must be a time"):
        tb.try_consume(1, -5.0)
    # A bad row past the first chunk of rows: the rows before it are undone.
    costs = np.ones(10_000, dtype=np.int64)
    costs[9_000] = 6
    with pytest.raises(ConfigError, match=r"costs\[9000\] = 6 exceeds the burst"):
        tb.try_consume_many(costs, np.zeros(10_000))
    # Nothing was consumed by the refused batches.
    assert tb.tokens(0.0) == 5.0
    out = np.ones(4, dtype=bool)
    res = tb.try_consume_many([2, 2, 2, 0], np.zeros(4), out=out)
    assert res is out
    assert out.tolist() == [True, True, False, True]
    # Other integer dtypes and lists are converted; None reads the clock once.
    assert TokenBucket(1, 3).try_consume_many(np.array([1, 1, 1, 1], dtype=np.int8)).sum() == 3


def test_injected_clock_and_time_going_backwards() -> None:
    now = [100.0]
    tb = TokenBucket(2, 1, clock=lambda: now[0])
    assert tb.try_consume()
    assert not tb.try_consume()
    assert tb.time_until() == 0.5
    now[0] = 100.5
    assert tb.try_consume()
    now[0] = 50.0  # backwards: no time passes, and no refill comes of it
    assert not tb.try_consume()
    now[0] = 100.999999999
    assert not tb.try_consume()
    now[0] = 101.0
    assert tb.try_consume()
    assert (tb.rate, tb.burst) == (2.0, 1.0)
    assert repr(tb) == "TokenBucket(rate=2, burst=1)"
    g = Gcra(0.5, 0, clock=lambda: now[0])
    assert g.try_consume()
    assert not g.try_consume()
    assert g.time_until() == 0.5
    assert (g.interval, g.tolerance, g.burst) == (0.5, 0.0, 1)


def test_monotonic_default_clock_mixes_with_explicit_times() -> None:
    import time

    tb = TokenBucket(1, 2)
    assert tb.try_consume()
    assert tb.try_consume(1, time.monotonic())
    assert not tb.try_consume()
    assert 0.0 < tb.time_until() <= 1.0
    assert TokenBucket(1000, 10).try_consume_many(np.ones(20, dtype=np.int64)).sum() == 10


def test_threads_admit_exactly_the_burst() -> None:
    tb = TokenBucket(Fraction(1, 10**6), 5000)  # no refill worth a token during the test
    counts = [0] * 4

    def worker(k: int) -> None:
        for _ in range(3000):
            counts[k] += tb.try_consume(1, 1.0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 5000


# ---- LeakyBucket -------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    st.one_of(
        st.integers(1, 10**6).map(Fraction),
        st.fractions(min_value=Fraction(1, 100), max_value=10**5, max_denominator=997),
    ),
    st.lists(st.tuples(st.integers(0, NS), st.integers(0, 3000)), min_size=1, max_size=50),
)
def test_leaky_bucket_paces_exactly_in_fifo_order(
    rate: Fraction, seq: list[tuple[int, int]]
) -> None:
    lb = LeakyBucket(rate)
    ns, free, starts = 0, Fraction(0), []
    for i, (gap, size) in enumerate(seq):
        ns += gap
        assert lb.enqueue(i, size, secs(ns)) is Verdict.ENQUEUED
        start = max(Fraction(ns, NS), free)  # start_i = max(arrival_i, start_{i-1} + size/rate)
        free = start + size / rate
        starts.append(start)
    assert len(lb) == len(seq)
    assert lb.backlog == sum(size for _, size in seq)
    seen = ns  # the latest time the bucket has seen; earlier times count as it
    for i, start in enumerate(starts):
        due = math.ceil(start * NS)
        dep = lb.next_departure()
        assert dep is not None and round(dep * NS) == due
        if due - 1 >= seen:
            assert lb.dequeue(secs(due - 1)) is None
        seen = max(due, seen)
        assert lb.dequeue(secs(seen)) == i
    assert lb.dequeue(1e9) is None
    assert lb.next_departure() is None
    assert lb.backlog == 0


def test_leaky_bucket_limits_and_sizes() -> None:
    lb = LeakyBucket(1000, 2500, packet_limit=2)
    assert lb.enqueue(b"x" * 1000, now=0.0) == Verdict.ENQUEUED
    assert lb.enqueue(bytearray(1000), now=0.0) == Verdict.ENQUEUED
    assert lb.enqueue("third", 1, now=0.0) is Verdict.DROPPED  # packet limit
    assert lb.dequeue(0.0) == b"x" * 1000
    assert lb.enqueue(memoryview(bytes(1600)), now=0.0) is Verdict.DROPPED  # 1000 + 1600 bytes
    assert lb.enqueue(object(), 1500, now=0.0) is Verdict.ENQUEUED
    assert lb.backlog == 2500
    # The dropped packets did not touch the schedule: 1000 B then 1500 B at 1000 B/s.
    assert lb.dequeue(0.999999999) is None
    assert lb.dequeue(1.0) == bytearray(1000)
    assert lb.next_departure() == 2.0
    assert (lb.rate, lb.limit, lb.packet_limit) == (1000.0, 2500, 2)
    one = LeakyBucket(1)
    assert one.enqueue(object(), now=0.0) is Verdict.ENQUEUED  # non-bytes: size 1
    assert one.enqueue("y", now=0.0) is Verdict.ENQUEUED
    assert one.next_departure() == 0.0
    one.dequeue(0.0)
    assert one.next_departure() == 1.0
    with pytest.raises(ConfigError, match="size must be >= 0"):
        one.enqueue("z", -1)


def test_zero_byte_packets_stop_at_the_byte_limit() -> None:
    """``limit`` caps the packets held too: a flood of zero-byte packets is dropped past it."""
    lb = LeakyBucket(rate=1000, limit=3000)
    verdicts = [lb.enqueue(object(), size=0, now=0.0) for _ in range(5000)]
    assert verdicts.count(Verdict.ENQUEUED) == 3000
    assert verdicts[3000:] == [Verdict.DROPPED] * 2000
    assert len(lb) == 3000
    # The self-draining form: zero-byte packets held behind a busy link stop at the limit.
    lb = LeakyBucket(rate=1000, limit=10)
    dep = lb.schedule_many(np.array([10] + [0] * 100), np.zeros(101))
    assert int(np.isfinite(dep).sum()) == 11


def schedule_model(
    rate: Fraction, rows: list[tuple[int, int]], limit: int | None, plimit: int | None
) -> list[int | None]:
    free = Fraction(0)
    held: list[tuple[Fraction, int]] = []  # (start, size) of packets not yet departed
    out: list[int | None] = []
    for ns, size in rows:
        t = Fraction(ns, NS)
        held = [(s, b) for s, b in held if s > t]
        if (
            (limit is not None and sum(b for _, b in held) + size > limit)
            or (plimit is not None and len(held) >= plimit)
            or (limit is not None and len(held) >= limit)
        ):  # the byte limit caps packets too
            out.append(None)
            continue
        start = max(t, free)
        free = start + size / rate
        held.append((start, size))
        out.append(math.ceil(start * NS))
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 10**5).map(Fraction),
    st.lists(st.tuples(st.integers(0, NS // 4), st.integers(0, 1500)), min_size=1, max_size=80),
    st.one_of(st.none(), st.integers(1, 6000)),
    st.one_of(st.none(), st.integers(1, 6)),
)
def test_schedule_many_matches_the_model(
    rate: Fraction, seq: list[tuple[int, int]], limit: int | None, plimit: int | None
) -> None:
    rows, ns = [], 0
    for gap, size in seq:
        ns += gap
        rows.append((ns, size))
    lb = LeakyBucket(rate, limit, packet_limit=plimit)
    got = lb.schedule_many(
        np.array([s for _, s in rows]), np.array([secs(t) for t, _ in rows], dtype=np.float64)
    )
    want = schedule_model(rate, rows, limit, plimit)
    assert [None if math.isnan(x) else round(x * NS) for x in got] == want
    assert len(lb) == 0


def test_shaper_long_run_has_no_drift() -> None:
    """A million 1-byte packets at 3 bytes/s: the last leaves at exactly 999999/3 s."""
    lb = LeakyBucket(3)
    dep = lb.schedule_many(np.ones(10**6, dtype=np.int64), np.zeros(10**6))
    assert round(dep[-1] * NS) == math.ceil(Fraction(999_999, 3) * NS)
    assert np.all(np.diff(dep) > 0)
    # The output rate over the whole run is the configured rate, to the nanosecond.
    assert abs((dep[-1] - dep[0]) - 999_999 / 3) < 1e-9


def test_exports() -> None:
    for name in ["TokenBucket", "Gcra", "LeakyBucket", "Verdict", "Color"]:
        assert name in meshcore.__all__


# The batch forms run in chunks of 2048 rows: each chunk is checked, converted and then run.
CHUNK = 2048


def _rows(n: int, seed: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Costs around the burst (admits and denies interleave) and float-second times that mostly
    rise, sometimes fall back, and sit past 2**32 ns and 2**52 ns (the conversion's splits)."""
    rng = np.random.default_rng(seed)
    costs: np.ndarray = rng.integers(0, 5, n).astype(dtype)
    steps = rng.integers(0, 400_000_000, n)
    steps[rng.random(n) < 0.1] *= -1
    base = [0, 5 * 2**32, 2**52 + 12_345, 9 * 10**18][seed % 4]
    ns = np.maximum(base + np.cumsum(steps), 0)
    return costs, ns / NS


def _single(obj: TokenBucket | Gcra, costs: np.ndarray, times: np.ndarray | None) -> list[bool]:
    if times is None:
        return [obj.try_consume(int(c)) for c in costs]
    return [obj.try_consume(int(c), float(t)) for c, t in zip(costs, times, strict=True)]


@pytest.mark.parametrize("n", [0, 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3])
@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("kind", ["tb", "gcra"])
def test_batch_equals_single_calls_across_chunks(n: int, dtype: type, kind: str) -> None:
    for seed in range(4):
        costs, times = _rows(n, seed, dtype)

        def make() -> TokenBucket | Gcra:
            clock = lambda: 7.5  # noqa: E731  (one clock reading for the batch)
            return (
                TokenBucket(3.5, 4, clock=clock) if kind == "tb" else Gcra(0.25, 0.75, clock=clock)
            )

        a, b = make(), make()
        got = a.try_consume_many(costs, times)
        assert got.tolist() == _single(b, costs, times), seed
        # One clock reading for the whole batch, after the rows above.
        got = a.try_consume_many(costs)
        assert got.tolist() == _single(b, costs, None), seed
        assert a.time_until(1, 1e9) == b.time_until(1, 1e9)


@pytest.mark.parametrize("kind", ["tb", "gcra"])
@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("clock", ["each", "one"])
@pytest.mark.parametrize("row", [0, 255, 256, 5000, 9999])
def test_a_bad_cost_among_rows_that_all_conform_is_named(
    kind: str, dtype: type, clock: str, row: int
) -> None:
    # Rows that all conform but one (a bucket far larger than the demand): the bad cost is
    # still found, wherever it sits, and nothing is taken.
    n = 10_000
    costs: np.ndarray = np.ones(n, dtype=dtype)
    bad = -3 if dtype == np.int64 else 2**64 - 3
    costs[row] = bad
    # A time per row, or one reading of the clock (at 0.5 s) for the whole batch.
    times = np.arange(n, dtype=np.float64) * 1e-6 if clock == "each" else None

    def fresh() -> TokenBucket | Gcra:
        at = lambda: 0.5  # noqa: E731
        return TokenBucket(1e9, 1e6, clock=at) if kind == "tb" else Gcra(1e-9, 1e-3, clock=at)

    lim = fresh()
    msg = (
        rf"costs\[{row}\] = -3 must be >= 0"
        if dtype == np.int64
        else rf"costs\[{row}\] = {bad} exceeds the burst"
    )
    with pytest.raises(ConfigError, match=msg):
        lim.try_consume_many(costs, times)
    # The refused batch took nothing: the same answers as a fresh twin's, at the same times.
    probe: np.ndarray = np.full(2000, 600, dtype=dtype)
    at = np.zeros(2000) + 0.5
    assert lim.try_consume_many(probe, at).tolist() == fresh().try_consume_many(probe, at).tolist()


@pytest.mark.parametrize("kind", ["tb", "gcra"])
@pytest.mark.parametrize(
    "bad",
    [
        # (row, what): a bad cost or time at the edges of chunks; the message names the row.
        (0, "cost"),
        (CHUNK - 1, "cost"),
        (CHUNK, "time"),
        (CHUNK + 1, "neg"),
        (3 * CHUNK - 1, "time"),
        (3 * CHUNK, "nan"),
    ],
)
def test_bad_rows_raise_and_leave_the_object_unchanged(kind: str, bad: tuple[int, str]) -> None:
    row, what = bad
    n = 3 * CHUNK + 10
    costs, times = _rows(n, 1, np.int64)
    costs[costs > 3] = 3

    def make() -> TokenBucket | Gcra:
        return TokenBucket(3.5, 4) if kind == "tb" else Gcra(0.25, 0.75)

    a, b = make(), make()
    a.try_consume_many(costs[:100], times[:100])
    b.try_consume_many(costs[:100], times[:100])
    costs, times = costs.copy(), times + 100.0
    if what == "cost":
        costs[row] = 9
        msg = rf"costs\[{row}\] = 9 exceeds the burst: it can never conform \(at most [34]\)"
    elif what == "neg":
        costs[row] = -2
        msg = rf"costs\[{row}\] = -2 must be >= 0"
    else:
        times[row] = -1.0 if what == "time" else math.nan
        shown = "-1.0" if what == "time" else "nan"
        msg = rf"times\[{row}\] = {shown} is not a time in seconds"
    # A bad time later in the same chunk as a bad cost: the cost is named.
    if what in ("cost", "neg") and row + 5 < n:
        times[row + 5] = math.inf
    with pytest.raises(ConfigError, match=msg):
        a.try_consume_many(costs, times)
    # Unchanged: the same answers as the untouched twin from here on.
    good_costs, good_times = _rows(3000, 2, np.int64)
    good_costs[good_costs > 3] = 3
    good_times = good_times + 200.0
    assert a.try_consume_many(good_costs, good_times).tolist() == (
        b.try_consume_many(good_costs, good_times).tolist()
    )


def test_empty_lists_are_empty_batches() -> None:
    # numpy reads [] as float64; an empty column has no wrong values.
    assert TokenBucket(10, 5).try_consume_many([]).tolist() == []
    assert TokenBucket(10, 5).try_consume_many([], []).tolist() == []
    assert Gcra(0.1, 0.5).try_consume_many([], []).tolist() == []
    red = meshcore.RedQueue(5, 15, 0.1)
    assert list(red.enqueue_many([], [])) == [] and len(red) == 0
    assert list(meshcore.TrTCM(1000, 1500, 2000, 3000).color_many([], [])) == []
    # A non-empty float column is still refused.
    with pytest.raises(ConfigError, match="integer array"):
        TokenBucket(10, 5).try_consume_many([1.5])
    with pytest.raises(ConfigError, match="int64 array"):
        red.enqueue_many([1.5])


def test_numpy_integers_as_parameters() -> None:
    # Integers of numpy's types are exact integers too (floats of numpy's were already taken).
    tb = TokenBucket(np.int64(5), np.uint8(10))
    assert (tb.rate, tb.burst) == (5.0, 10.0)
    assert Gcra(np.float64(0.5), np.int32(2)).burst == 5
    with pytest.raises(ConfigError, match="below 2\\*\\*128, got -1"):
        TokenBucket(np.int64(-1), 1)


def ns_of(seconds: float) -> int:
    """The nanosecond meshcore reads ``seconds`` as (nearest, halves up)."""
    return math.floor(Fraction(seconds * 1e9) + Fraction(1, 2))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["tb", "gcra"]),
    rates,
    bursts,
    st.integers(0, 9 * 10**18),
    st.integers(0, 10**12),
    st.floats(0, 1),
)
def test_waiting_time_until_always_lands(
    kind: str, rate: Fraction, burst: Fraction, t0: int, gap: int, share: float
) -> None:
    """``try_consume(n, now + time_until(n, now))`` succeeds at any time up to 9e9 s (where
    float times are hundreds of nanoseconds apart), and the wait is the least float that does:
    at or above the exact wait, and one float step less either falls short of the exact wait
    or does not land."""
    burst = max(burst, Fraction(1))
    now = min((t0 + gap) / NS, 9e9)
    start = min(t0 / NS, now)

    def make() -> TokenBucket | Gcra:
        if kind == "tb":
            return TokenBucket(rate, burst)
        # T = 1 / rate and tau = (burst - 1) T, rounded to the ns (the model uses the same).
        return Gcra(Fraction(round(NS / rate), NS), Fraction(round((burst - 1) * NS / rate), NS))

    obj, twin = make(), make()
    top = math.floor(burst) if isinstance(obj, TokenBucket) else obj.burst
    n = max(1, round(top * share))
    # Empty it at start, then ask at now.
    assert obj.try_consume(top, start) and twin.try_consume(top, start)
    if kind == "tb":
        model = TBModel(rate, burst)
        model.consume(top, ns_of(start))
        exact = model.wait_ns(n, ns_of(now))
    else:
        g = obj
        assert isinstance(g, Gcra)
        interval, tol = round(g.interval * NS), round(g.tolerance * NS)
        tat = ns_of(start) + top * interval
        exact = max(0, tat + (n - 1) * interval - tol - ns_of(now))
    w = obj.time_until(n, now)
    assert math.isfinite(w)
    assert Fraction(w) >= Fraction(exact, NS)
    if w > 0:
        below = math.nextafter(w, 0.0)
        if Fraction(below) >= Fraction(exact, NS):
            assert not twin.try_consume(n, now + below)
    assert obj.try_consume(n, now + w)


@pytest.mark.parametrize("kind", ["tb", "gcra"])
def test_time_until_from_a_time_before_the_latest_counts_from_it(kind: str) -> None:
    obj = TokenBucket(1, 1) if kind == "tb" else Gcra(1, 0)
    assert obj.try_consume(1, now=10.0)
    # 5.0 counts as 10.0 (the clock never goes back), but the wait is measured from 5.0.
    assert obj.time_until(1, now=5.0) == 6.0
    assert not obj.try_consume(1, now=10.999999999)
    assert obj.try_consume(1, now=5.0 + 6.0)


def test_a_wait_too_long_for_the_clock_is_infinite() -> None:
    tb = TokenBucket(Fraction(1, 10**9), 19)
    assert tb.try_consume(19, now=0.0)
    assert tb.time_until(19, now=0.0) == math.inf  # 1.9e10 s: past 2**64 ns
    g = Gcra(1e9, 9e9)  # 10 cells of 1e9 s each
    assert g.try_consume(10, now=0.0)
    assert g.time_until(10, now=0.0) == math.inf  # 1.9e10 s


def test_departures_at_large_times_are_reached() -> None:
    """next_departure and schedule_many give float times that convert to the departure or later,
    so that dequeue(next_departure()) takes the head even where floats are 477 ns apart."""
    lb = LeakyBucket(1000)
    assert lb.enqueue("a", 1, now=4e9) is Verdict.ENQUEUED
    assert lb.enqueue("b", 1, now=4e9) is Verdict.ENQUEUED
    assert lb.dequeue(4e9) == "a"
    t = lb.next_departure()
    assert t is not None and ns_of(t) >= 4 * 10**18 + 10**6
    assert lb.dequeue(t) == "b"
    dep = LeakyBucket(1000).schedule_many([1, 1, 1], [4e9, 4e9, 4e9])
    assert [ns_of(x) >= 4 * 10**18 + i * 10**6 for i, x in enumerate(dep)] == [True] * 3
