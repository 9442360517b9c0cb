"""RedQueue: Floyd-Jacobson RED against its closed forms (reference sections 3 and 6).

The average is pinned with ``w_q = 1`` in byte mode: one packet of ``L`` bytes stays at the
head and zero-size probes follow, so every probe sees ``avg = L``. Statistical checks use fixed
seeds and 4-sigma bounds, so they are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import ConfigError, RedQueue, Verdict

MIN_TH, MAX_TH, MAX_P = 5.0, 15.0, 0.1
RULES = ["fj", "linux", "wait", "geometric"]


def pinned(level: int, **kw: object) -> RedQueue:
    """A queue whose probes all see ``avg == level`` (the limit, which in byte mode caps the
    packets too, is above the zero-byte probes the tests send)."""
    args: dict[str, object] = {"w_q": 1.0, "bytes_mode": True, "limit": 10**6}
    args.update(kw)
    q = RedQueue(MIN_TH, MAX_TH, MAX_P, **args)  # type: ignore[arg-type]
    if level:
        assert q.enqueue(b"x" * level, now=0.0) == Verdict.ENQUEUED
    return q


def probes(q: RedQueue, n: int, ecn: bool = False) -> npt.NDArray[np.uint8]:
    ecn_arr = np.full(n, ecn) if ecn else None
    return q.enqueue_many(np.zeros(n, dtype=np.int64), np.zeros(n), ecn_arr)


def p_b(avg: float, gentle: bool) -> float:
    """p_b with the queue's own IEEE operations (so boundary cases round alike)."""
    slope = MAX_P / (MAX_TH - MIN_TH)
    if avg < MIN_TH:
        return 0.0
    if avg < MAX_TH:
        return (avg - MIN_TH) * slope
    if gentle and avg < 2 * MAX_TH:
        return MAX_P + (1.0 - MAX_P) * (avg - MAX_TH) / MAX_TH
    return 1.0


def gap_law(rule: str, p: float) -> dict[int, float]:
    """P(gap = n) for the rule at constant p_b (n counts the marked packet)."""
    law: dict[int, float] = {}
    if rule == "linux":
        prev = 0.0
        n = 0
        while prev < 1.0:
            n += 1
            cdf = min(1.0, n * p)
            law[n] = cdf - prev
            prev = cdf
        return law

    def hazard(n: int) -> float:
        x = n * p
        if rule == "fj":
            return 1.0 if 1.0 - x <= 0 else min(1.0, p / (1.0 - x))
        if rule == "wait":
            if x < 1.0:
                return 0.0
            return 1.0 if 2.0 - x <= 0 else min(1.0, p / (2.0 - x))
        return p

    survive, n = 1.0, 0
    while survive > 1e-16:
        n += 1
        h = hazard(n)
        law[n] = survive * h
        survive *= 1.0 - h
    return law


def moments(law: dict[int, float]) -> tuple[float, float]:
    mean = sum(n * w for n, w in law.items())
    var = sum((n - mean) ** 2 * w for n, w in law.items())
    return mean, var


def chi2_sf(x: float, df: int) -> float:
    """The chi-square upper tail (exact series for integer df)."""
    if df % 2 == 0:
        term = total = 1.0
        for i in range(1, df // 2):
            term *= (x / 2) / i
            total += term
        return math.exp(-x / 2) * total
    total = math.erfc(math.sqrt(x / 2))
    term = math.sqrt(x / 2) * math.exp(-x / 2) / math.gamma(1.5)
    for i in range(1, (df - 1) // 2 + 1):
        total += term
        term *= (x / 2) / (i + 0.5)
    return total


def gaps_of(verdicts: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    marks = np.flatnonzero(verdicts != Verdict.ENQUEUED)
    return np.diff(marks)


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"min_th": 15, "max_th": 5}, "min_th must be below max_th"),
        ({"min_th": 5, "max_th": 5}, "min_th must be below max_th"),
        ({"max_p": 0.0}, "max_p"),
        ({"max_p": 1.5}, "max_p"),
        ({"w_q": 0.0}, "w_q"),
        ({"w_q": 1.01}, "w_q"),
        ({"min_th": -1.0}, "min_th"),
        ({"max_th": math.inf}, "max_th"),
        ({"limit": 0}, "limit"),
        ({"limit": -3}, "limit"),
        ({"limit": 10}, "limit must be >= max_th"),
        ({"count_rule": "ns2"}, "count_rule"),
        ({"adaptive": True, "max_p": 0.9}, "adaptive"),
        ({"packet_time": -1.0}, "packet_time"),
        ({"packet_time": 0.0}, "packet_time"),
        ({"adapt_interval": 0.0}, "adapt_interval"),
        ({"clock": 3}, "clock"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"min_th": 5, "max_th": 15, "max_p": 0.1}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=needle):
        RedQueue(**args)  # type: ignore[arg-type]


def test_defaults_and_limit() -> None:
    q = RedQueue(5, 15, 0.02)
    assert (q.limit, q.w_q, q.count_rule, q.max_p, q.avg, q.count) == (60, 0.002, "fj", 0.02, 0, -1)
    assert RedQueue(2.5, 7.3, 0.1).limit == 30  # ceil(4 * 7.3)
    assert "count_rule='fj'" in repr(q)
    # Bounded: never more than limit packets (or bytes).
    q = RedQueue(100, 200, 0.1, w_q=1e-4, limit=250)
    for i in range(1000):
        q.enqueue(i, now=0.0)
    assert len(q) == 250 and q.stats()["overlimit_drops"] == 750
    b = RedQueue(1000, 2000, 0.1, limit=2500, bytes_mode=True)
    for _ in range(100):
        b.enqueue(b"y" * 100, now=0.0)
    assert b.backlog == 2500 and len(b) == 25
    with pytest.raises(ConfigError, match="size is required"):
        b.enqueue(object())
    with pytest.raises(ConfigError, match="size"):
        q.enqueue(1, size=-1)


def test_zero_byte_packets_stop_at_the_byte_limit() -> None:
    """In byte mode the limit caps the packets too: zero-byte packets are dropped (overlimit)
    once ``limit`` packets are held, in the batch and one by one alike."""
    q = RedQueue(5, 15, 0.1, bytes_mode=True)  # limit = 60 bytes, and so 60 packets
    v = q.enqueue_many(np.zeros(10**6, np.int64), np.zeros(10**6))
    assert len(q) == 60 and q.backlog == 0
    assert (v[60:] == Verdict.DROPPED).all()
    assert q.stats()["overlimit_drops"] == 10**6 - 60
    one = RedQueue(5, 15, 0.1, bytes_mode=True)
    verdicts = [one.enqueue(object(), size=0, now=0.0) for _ in range(100)]
    assert verdicts[60:] == [Verdict.DROPPED] * 40 and len(one) == 60
    assert v[:100].tolist() == [int(x) for x in verdicts]


def test_static_curve() -> None:
    for gentle in (False, True):
        q = RedQueue(MIN_TH, MAX_TH, MAX_P, gentle=gentle)
        for avg in np.linspace(0, 40, 161):
            assert q.probability(float(avg)) == pytest.approx(p_b(float(avg), gentle), abs=1e-15)
    g = RedQueue(MIN_TH, MAX_TH, MAX_P, gentle=True)
    assert g.probability(14.999999) < MAX_P <= g.probability(15) < g.probability(29.9) < 1
    assert g.probability(30) == 1.0


# --- P1, P2: realized rates and gap laws -------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("gentle", [False, True])
def test_realized_rate_matches_rule(rule: str, gentle: bool) -> None:
    n = 200_000
    rates = []
    for level in [0, 3, 5, 6, 8, 11, 13, 14, 15, 19, 23, 27, 30, 40]:
        q = pinned(level, count_rule=rule, gentle=gentle, seed=level)
        frac = float(np.mean(probes(q, n) == Verdict.DROPPED))
        p = p_b(level, gentle)
        if p == 0.0:
            assert frac == 0.0, level
            rates.append(0.0)
            continue
        if p == 1.0:
            assert frac == 1.0, level
            rates.append(1.0)
            continue
        mean, var = moments(gap_law(rule, p))
        # Renewal-process CLT: the mark count has variance n var / mean**3.
        sigma = math.sqrt(var / mean**3 / n)
        assert abs(frac - 1 / mean) <= 4 * sigma + 3 / n, (level, frac, 1 / mean)
        rates.append(1 / mean)
    assert rates == sorted(rates)


def test_closed_forms_at_one_twentieth() -> None:
    # p_b = 1/20 exactly in Fraction: the rates of reference section 3.2.
    p = Fraction(1, 20)
    expected = {"fj": 2 * p, "linux": 2 * p / (1 + p), "wait": 1 / (Fraction(20) + Fraction(19, 2))}
    for rule, rate in expected.items():
        mean, _ = moments(gap_law(rule, 0.05))
        assert 1 / mean == pytest.approx(float(rate), rel=1e-12), rule
    assert moments(gap_law("geometric", 0.05))[0] == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("rule", "support", "bound"),
    [("fj", range(1, 20), 20), ("linux", range(1, 21), 20), ("wait", range(20, 40), 39)],
)
def test_uniform_gaps(rule: str, support: range, bound: int) -> None:
    q = pinned(10, count_rule=rule, seed=7)  # p_b = 0.05
    gaps = gaps_of(probes(q, 400_000))
    # Hard: F&J and Linux never go more than ceil(1/p_b) packets without a mark; wait, 2/p_b - 1.
    assert gaps.max() <= bound
    assert set(np.unique(gaps)) == set(support)
    counts = np.bincount(gaps, minlength=support.stop)[support.start : support.stop]
    expected = len(gaps) / len(support)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2_sf(chi2, len(support) - 1) > 1e-3, chi2
    mean = (support.start + support.stop - 1) / 2
    assert abs(gaps.mean() - mean) <= 0.02 * mean


def test_geometric_gaps_are_not_bounded() -> None:
    gaps = gaps_of(probes(pinned(10, count_rule="geometric", seed=3), 200_000))
    assert gaps.max() > 100
    # Geometric gaps with p = 0.05: mean 20, variance (1 - p) / p**2 = 380.
    assert abs(gaps.mean() - 20) <= 4 * math.sqrt(380 / len(gaps))


def test_chi2_helper() -> None:
    assert chi2_sf(42.312, 18) == pytest.approx(1e-3, rel=1e-3)
    assert chi2_sf(43.820, 19) == pytest.approx(1e-3, rel=1e-3)


# --- P3: EWMA and idle decay ----------------------------------------------------------------


def test_ewma_step_response() -> None:
    w, big = 0.002, 1000
    q = RedQueue(1e6, 2e6, 0.1, w_q=w, bytes_mode=True, limit=10**7)
    q.enqueue(b"z" * big, now=0.0)
    for n in range(1, 2001):
        q.enqueue(b"", now=0.0)
        want = big * (1 - (1 - w) ** n)
        assert abs(q.avg - want) <= 1e-12 * want, n
    assert q.avg / big == pytest.approx(1 - math.exp(-2000 * -math.log1p(-w)), rel=1e-12)


@pytest.mark.parametrize("idle", [1e-4, 0.012, 0.5, 3.0])
def test_idle_decay(idle: float) -> None:
    w, s = 0.002, 0.0012
    q = RedQueue(1e6, 2e6, 0.1, w_q=w, bytes_mode=True, limit=10**7, packet_time=s)
    for _ in range(300):
        q.enqueue(b"z" * 100, now=1.0)
    before = q.avg
    assert q.dequeue_many(1000, now=2.0)
    assert len(q) == 0
    q.enqueue(b"", now=2.0 + idle)
    want = before * (1 - w) ** (idle / s)
    assert abs(q.avg - want) <= 1e-9 * want


def test_long_idle_is_zero_and_time_never_goes_back() -> None:
    q = RedQueue(5, 15, 0.1, w_q=0.5)
    for _ in range(10):
        q.enqueue("p", now=1.0)
    assert q.avg > 0
    q.dequeue_many(100, now=1.0)
    q.enqueue("p", now=0.5)  # earlier than the last call: no time elapsed, no decay
    assert q.avg > 0
    q.dequeue(now=1.0)
    q.enqueue("p", now=1e6)
    assert q.avg == 0.0


def test_first_packet_after_idle_sees_the_decayed_average() -> None:
    # F&J (and Linux): the arrival at an empty queue is tested against the decayed average and
    # may be dropped (ns-3 and DPDK never drop it).
    q = RedQueue(5, 15, 0.1, w_q=0.5, bytes_mode=True, limit=1000, packet_time=0.001)
    q.enqueue(b"x" * 40, now=0.0)
    probes(q, 100)
    assert q.avg == pytest.approx(40)
    q.dequeue_many(1000, now=0.0)
    assert q.enqueue(b"", now=0.0) == Verdict.DROPPED  # no idle time yet: avg 40, forced
    assert q.enqueue(b"", now=0.005) == Verdict.ENQUEUED  # m = 5: 40 * 0.5**5 = 1.25
    assert q.avg == pytest.approx(1.25, rel=1e-12)


# --- P4: ECN -------------------------------------------------------------------------------


@pytest.mark.parametrize("ecn", [False, True])
@pytest.mark.parametrize("ect", [False, True])
@pytest.mark.parametrize("harddrop", [False, True])
def test_ecn_matrix(ecn: bool, ect: bool, harddrop: bool) -> None:
    # Probabilistic region: ECT packets are marked (never dropped) iff ecn is on.
    q = pinned(10, ecn=ecn, harddrop=harddrop)
    v = probes(q, 10_000, ecn=ect)
    s = q.stats()
    if ecn and ect:
        assert not (v == Verdict.DROPPED).any() and s["early_marks"] > 500
    else:
        assert not (v == Verdict.MARKED).any() and s["early_drops"] > 500
    # Forced region: marked only with ecn, ECT and no harddrop.
    q = pinned(20, ecn=ecn, harddrop=harddrop)
    v = probes(q, 100, ecn=ect)
    want = Verdict.MARKED if (ecn and ect and not harddrop) else Verdict.DROPPED
    assert (v == want).all()
    s = q.stats()
    assert s["forced_marks" if want == Verdict.MARKED else "forced_drops"] == 100


# --- P5: Adaptive RED ------------------------------------------------------------------------


def ared_oracle(p: float, up: bool) -> float:
    if up:
        return min(p + min(0.01, p / 4), 0.5) if p <= 0.5 else p
    return max(p * 0.9, 0.01) if p >= 0.01 else p


def test_adaptive_red_steps() -> None:
    q = RedQueue(5, 15, 0.01, w_q=1.0, adaptive=True)
    while len(q) < 14:  # avg 14 > band top 11
        q.enqueue("p", now=0.0)
    p, steps = 0.01, 0
    for k in range(1, 61):
        q.enqueue("p", now=0.5 * k)
        p = ared_oracle(p, up=True)
        assert q.max_p == p
        if p < 0.5:
            steps = k + 1
    assert steps == 53 and q.max_p == 0.5
    # Hold the queue at 1 packet (below the band): 38 steps down, one per interval.
    while len(q) > 1:
        q.dequeue(now=30.1)
    q.enqueue("p", now=30.2)
    q.dequeue(now=30.2)
    steps = 0
    for k in range(1, 61):
        q.enqueue("p", now=30.0 + 0.5 * k)
        q.dequeue(now=30.0 + 0.5 * k)
        p = ared_oracle(p, up=False)
        assert q.max_p == p, k
        if p > 0.01:
            steps = k + 1
    assert steps == 38 and q.max_p == 0.01


def test_adaptive_red_while_idle() -> None:
    # The timer also runs while the queue is empty, against the decayed average.
    q = RedQueue(5, 15, 0.5, w_q=1.0, adaptive=True)
    q.enqueue("p", now=0.0)
    q.dequeue(now=0.0)
    q.enqueue("p", now=100.0)
    assert q.max_p == 0.01


# --- ns-3 red-queue-disc-test-suite, relational cases -------------------------------------------


def test_ns3_t1_fifo() -> None:
    q = RedQueue(2, 5, 0.02, limit=8)
    verdicts = [q.enqueue(i, now=0.0) for i in range(7)]
    kept = [i for i, v in zip(range(7), verdicts, strict=True) if v != Verdict.DROPPED]
    assert q.dequeue_many(10, now=0.0) == kept
    assert q.dequeue(now=0.0) is None


def run_ns3(w_q: float, rule: str, max_p: float = 0.02, max_th: float = 150) -> int:
    q = RedQueue(70, max_th, max_p, w_q=w_q, limit=300, count_rule=rule, seed=1)
    v = q.enqueue_many(np.full(300, 1000), np.zeros(300))
    return int((v == Verdict.DROPPED).sum())


def test_ns3_t2_to_t4() -> None:
    assert run_ns3(0.002, "wait") == 0  # T2: the average stays low
    t3 = run_ns3(0.02, "wait")
    assert t3 > 0  # T3: a faster average drops
    # T4-T7 in spirit: a steeper curve, and F&J instead of wait, each drop more.
    assert run_ns3(0.02, "wait", max_p=0.2, max_th=100) > t3
    assert run_ns3(0.02, "fj") > t3


# --- batch form --------------------------------------------------------------------------------


def scalar_run(q: RedQueue, sizes: list[int], times: list[float], ecn: list[bool]) -> list[int]:
    return [
        int(q.enqueue(s, size=s, now=t, ecn_capable=e))
        for s, t, e in zip(sizes, times, ecn, strict=True)
    ]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3000), st.floats(0, 0.01), st.booleans()), max_size=300),
    st.sampled_from(RULES),
    st.booleans(),
)
def test_batch_equals_scalar(rows: list[tuple[int, float, bool]], rule: str, gentle: bool) -> None:
    sizes = [r[0] for r in rows]
    times = list(np.cumsum([r[1] for r in rows]))
    ecn = [r[2] for r in rows]

    def make() -> RedQueue:
        return RedQueue(
            2000, 8000, 0.3, w_q=0.05, ecn=True, gentle=gentle, count_rule=rule,
            bytes_mode=True, limit=20_000, seed=5, adaptive=True, adapt_interval=0.05,
        )  # fmt: skip

    a, b = make(), make()
    want = scalar_run(a, sizes, times, ecn)
    got = b.enqueue_many(np.array(sizes, dtype=np.int64), np.array(times), np.array(ecn, bool))
    assert got.dtype == np.uint8 and got.tolist() == want
    assert (a.avg, a.max_p, a.count, len(a), a.backlog) == (
        b.avg,
        b.max_p,
        b.count,
        len(b),
        b.backlog,
    )
    assert a.stats() == b.stats()
    assert a.dequeue_many(10**6) == b.dequeue_many(10**6)


def test_batch_items_and_errors() -> None:
    q = RedQueue(1, 3, 0.1, w_q=1e-4, limit=4)
    v = q.enqueue_many([10, 20, 30, 40, 50], items=["a", "b", "c", "d", "e"])
    assert v.tolist() == [0, 0, 0, 0, 1]
    assert q.dequeue_many(2) == ["a", "b"]
    q.enqueue_many(np.array([7], dtype=np.uint16))
    assert q.dequeue_many(5) == ["c", "d", 7]  # a size-only packet comes back as its size
    before = q.stats()
    bad: list[tuple[dict[str, object], str]] = [
        ({"sizes": [1, -1]}, r"sizes\[1\]"),
        ({"sizes": [1, 2**32]}, r"sizes\[1\]"),
        ({"sizes": [1.5]}, "int64 array, not float64"),
        ({"sizes": [[1]]}, "one-dimensional"),
        ({"sizes": [1, 2], "times": [0.0]}, "times has 1 entries"),
        ({"sizes": [1, 2], "times": [0.0, math.nan]}, r"times\[1\]"),
        ({"sizes": [1, 2], "times": [0.0, -1.0]}, r"times\[1\]"),
        ({"sizes": [1], "ecn_capable": [1]}, "ecn_capable"),
        ({"sizes": [1], "items": []}, "items has 0"),
    ]
    for kwargs, needle in bad:
        with pytest.raises(ConfigError, match=needle):
            q.enqueue_many(**kwargs)  # type: ignore[arg-type]
    assert q.stats() == before and len(q) == 0


def test_batch_sizes_out_of_range_show_their_value() -> None:
    """A size numpy cannot cast to int64 as it is (uint64 from 2**63, Python ints beyond
    uint64) is named with its real value, at the first bad row; bools are refused by type."""
    q = RedQueue(1, 3, 0.1, w_q=1e-4, limit=4)
    before = q.stats()
    top = 2**64 - 1
    bad: list[tuple[object, str]] = [
        (np.array([1, top], np.uint64), rf"sizes\[1\] = {top}"),
        (np.array([1, 2**63, 2**64 - 2], np.uint64), rf"sizes\[1\] = {2**63}"),
        (np.array([2**32, top], np.uint64), rf"sizes\[0\] = {2**32}"),
        (np.array([1, top], ">u8"), rf"sizes\[1\] = {top}"),
        ([1, top], rf"sizes\[1\] = {top}"),  # numpy reads this list as uint64
        ([1, 2**64], rf"sizes\[1\] = {2**64}"),  # and this one as objects
        ([1, 2**32, -(2**70)], rf"sizes\[1\] = {2**32}"),
        ([1, -(2**70)], rf"sizes\[1\] = {-(2**70)}"),
    ]
    for sizes, needle in bad:
        with pytest.raises(ConfigError, match=rf"^{needle} is outside 0\.\.2\*\*32$"):
            q.enqueue_many(sizes)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"^sizes must be a one-dimensional int64 array, not object$"
    ):
        q.enqueue_many([1, None, 2**64])  # type: ignore[arg-type]
    flags: list[tuple[object, str]] = [
        (np.array([True, False]), "an array of bool"),
        ([1, True], r"a bool \(row 1\)"),
        (np.array([np.True_, 2**64], dtype=object), r"a bool \(row 0\)"),
    ]
    for sizes, got in flags:
        with pytest.raises(
            TypeError, match=f"^sizes must be a one-dimensional int64 array, not {got}$"
        ):
            q.enqueue_many(sizes)  # type: ignore[arg-type]
    assert q.stats() == before and len(q) == 0
    assert q.enqueue_many(np.array([1, 2**32 - 1], np.uint64)).tolist() == [0, 0]
    assert q.enqueue_many(np.array([5, 6], dtype=object)).tolist() == [0, 0]
    assert q.dequeue_many(4) == [1, 2**32 - 1, 5, 6]


def test_injected_clock_and_sizes() -> None:
    t = [0.0]

    def clock() -> float:
        return t[0]

    q = RedQueue(5, 15, 0.1, w_q=1.0, clock=clock, packet_time=0.001)
    for _ in range(4):
        q.enqueue(bytearray(b"abc"))
    assert q.backlog == 12 and q.avg == 3
    q.dequeue_many(4)
    t[0] = 0.002
    q.enqueue(memoryview(b"abcd"))
    assert q.avg == 0.0 and q.backlog == 4  # w_q = 1: any idle time decays to 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 500)), max_size=400))
def test_fifo_and_accounting(ops: list[tuple[bool, int]]) -> None:
    q = RedQueue(3, 9, 0.3, w_q=0.2, limit=12, gentle=True, seed=11)
    model: list[tuple[int, int]] = []
    for k, (enq, size) in enumerate(ops):
        if enq:
            if q.enqueue((k, size), size=size, now=k * 1e-3) != Verdict.DROPPED:
                model.append((k, size))
        else:
            got = q.dequeue(now=k * 1e-3)
            assert got == (model.pop(0) if model else None)
        assert len(q) == len(model) <= 12
        assert q.backlog == sum(s for _, s in model)
    s = q.stats()
    dropped = s["early_drops"] + s["forced_drops"] + s["overlimit_drops"]
    assert s["enqueued"] + dropped == sum(1 for enq, _ in ops if enq)


def test_probability_is_pure() -> None:
    q = RedQueue(5, 15, 0.1)
    f: Callable[[float], float] = q.probability
    assert f(10) == pytest.approx(0.05) and f(4.99) == 0.0 and f(15) == 1.0


@pytest.mark.parametrize(
    "t", [0.0, 1.5e-9, 2.5e-9, 0.4999999e-9, 1.0000000005, 12345.0000000005, 3.7e9, 9.19e9]
)
def test_batch_times_round_as_scalar(t: float) -> None:
    # The batch converts seconds to ns without libm; it must round exactly as the scalar path.
    def make() -> RedQueue:
        q = RedQueue(1e6, 2e6, 0.1, w_q=1e-15, bytes_mode=True, limit=10**7, packet_time=1e-9)
        q.enqueue(b"x" * 1000, now=0.0)
        q.enqueue(b"", now=0.0)
        q.dequeue_many(2, now=0.0)
        return q

    a, b = make(), make()
    a.enqueue(b"", now=t)
    b.enqueue_many([0], times=[t])
    assert a.avg == b.avg
