"""RedQueue.enqueue_many without items against enqueue row by row.

A batch without items takes its own path (a loop of its own for the Floyd-Jacobson rule without
Adaptive RED, run a chunk at a time); these seeded cases cover it across the chunk sizes, in
packet and byte mode, with ECN, gentle RED, overflowing limits, idle gaps and times going back,
and check that a bad row anywhere leaves the queue untouched.
"""

from __future__ import annotations

import numpy as np
import pytest

from meshcore import ConfigError, RedQueue

LENGTHS = [0, 1, 2, 1023, 1024, 1025, 2047, 2048, 2049, 5000]


def config(rng: np.random.Generator, bytes_mode: bool, rule: str) -> dict[str, object]:
    unit = 500 if bytes_mode else 1
    min_th = int(rng.integers(1, 20)) * unit
    max_th = min_th + int(rng.integers(1, 30)) * unit
    return {
        "min_th": min_th,
        "max_th": max_th,
        "max_p": float(rng.uniform(0.01, 1.0)),
        "w_q": float(rng.choice([1.0, 0.1, 0.002])),
        "limit": int(max_th * rng.uniform(1.0, 5.0)) + 1,
        "gentle": bool(rng.integers(2)),
        "ecn": bool(rng.integers(2)),
        "seed": int(rng.integers(2**32)),
        "count_rule": rule,
        "bytes_mode": bytes_mode,
        "harddrop": bool(rng.integers(2)),
        "packet_time": 1e-5,
    }


def state(q: RedQueue) -> tuple[object, ...]:
    return (q.avg, q.count, len(q), q.backlog, q.max_p, sorted(q.stats().items()))


def rows(rng: np.random.Generator, n: int, t0: float, bytes_mode: bool) -> tuple[np.ndarray, ...]:
    sizes = rng.integers(0, 1500 if bytes_mode else 2000, n).astype(np.int64)
    steps = rng.choice([0.0, 1e-6, 1e-5, 0.5, -1e-4], n, p=[0.2, 0.5, 0.25, 0.02, 0.03])
    times = np.maximum(t0 + np.cumsum(steps), 0.0)
    return sizes, times, rng.integers(0, 2, n).astype(bool)


@pytest.mark.parametrize("bytes_mode", [False, True])
@pytest.mark.parametrize("rule", ["fj", "linux"])
@pytest.mark.parametrize("n", LENGTHS)
def test_sizes_batch_equals_scalar(bytes_mode: bool, rule: str, n: int) -> None:
    rng = np.random.default_rng(n * 4 + 2 * bytes_mode + (rule == "fj"))
    cfg = config(rng, bytes_mode, rule)
    a, b = RedQueue(**cfg), RedQueue(**cfg)  # type: ignore[arg-type]
    t0 = 1.0
    for _ in range(3):
        sizes, times, ecn = rows(rng, n, t0, bytes_mode)
        with_ecn = bool(rng.integers(2))
        want = [
            int(a.enqueue(int(s), size=int(s), now=float(t), ecn_capable=bool(e) and with_ecn))
            for s, t, e in zip(sizes, times, ecn, strict=True)
        ]
        got = b.enqueue_many(sizes, times, ecn if with_ecn else None)
        assert got.tolist() == want
        assert state(a) == state(b)
        t0 = float(times[-1]) + 1e-3 if n else t0 + 1e-3
        k = int(rng.integers(0, 3 * n + 2))
        assert a.dequeue_many(k, now=t0) == b.dequeue_many(k, now=t0)


@pytest.mark.parametrize("bad", [0, 1, 1023, 1024, 2047, 2048, 4999])
def test_bad_row_changes_nothing(bad: int) -> None:
    rng = np.random.default_rng(bad)
    q = RedQueue(**config(rng, False, "fj"))  # type: ignore[arg-type]
    sizes, times, _ = rows(rng, 5000, 1.0, False)
    q.enqueue_many(sizes[:100], times[:100])
    before = state(q)
    bad_sizes = sizes.copy()
    bad_sizes[bad] = -1
    with pytest.raises(ConfigError, match=rf"sizes\[{bad}\]"):
        q.enqueue_many(bad_sizes, times)
    bad_times = times.copy()
    bad_times[bad] = np.nan
    with pytest.raises(ConfigError, match=rf"times\[{bad}\]"):
        q.enqueue_many(sizes, bad_times)
    assert state(q) == before


@pytest.mark.parametrize("bytes_mode", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("bad", [0, 63, 64, 2047, 2048, 4999])
def test_refused_batch_leaves_no_trace(bytes_mode: bool, adaptive: bool, bad: int) -> None:
    """A batch refused for a bad row, even one found after earlier chunks were offered, leaves
    the queue as if never called: the next batch gives what it gives in a twin queue."""
    rng = np.random.default_rng(bad + 7)
    cfg = config(rng, bytes_mode, "fj") | {"adaptive": adaptive, "adapt_interval": 1e-4}
    if adaptive:
        cfg["max_p"] = 0.1
    a, b = RedQueue(**cfg), RedQueue(**cfg)  # type: ignore[arg-type]
    sizes, times, ecn = rows(rng, 5000, 1.0, bytes_mode)
    n = 64 if bad < 64 else 5000
    for bad_sizes, bad_times, match in [
        (-1, None, rf"sizes\[{bad}\]"),
        (2**32, None, rf"sizes\[{bad}\]"),
        (None, np.inf, rf"times\[{bad}\]"),
        (None, -1.0, rf"times\[{bad}\]"),
        # Both: the sizes are checked first, wherever the bad time is.
        (-5, np.nan, rf"sizes\[{bad}\]"),
    ]:
        s, t = sizes[:n].copy(), times[:n].copy()
        if bad_sizes is not None:
            s[bad] = bad_sizes
        if bad_times is not None:
            t[0 if bad_sizes is not None else bad] = bad_times
        with pytest.raises(ConfigError, match=match):
            a.enqueue_many(s, t, ecn[:n])
    got = a.enqueue_many(sizes[:n], times[:n], ecn[:n])
    assert got.tolist() == b.enqueue_many(sizes[:n], times[:n], ecn[:n]).tolist()
    assert state(a) == state(b)
    # The largest size is a good row.
    s = sizes[:n].copy()
    s[bad] = 2**32 - 1
    assert a.enqueue_many(s, times[:n]).tolist() == b.enqueue_many(s, times[:n]).tolist()
    assert state(a) == state(b)
