"""CoDel against a line-by-line Python model of RFC 8289's pseudocode (integer nanoseconds)."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import CoDel, ConfigError, Verdict

MS = 1_000_000
TARGET, INTERVAL, MTU = 5 * MS, 100 * MS, 1514


@dataclass
class Model:
    """RFC 8289 section 5, with Linux's ECN handling; times in ns."""

    limit: int = 1000
    ecn: bool = False
    q: deque[tuple[int, int, int, bool]] = field(default_factory=deque)
    backlog: int = 0
    first_above_time: int = 0
    drop_next: int = 0
    count: int = 0
    lastcount: int = 0
    dropping: bool = False
    drops: list[int] = field(default_factory=list)

    def control_law(self, t: int, count: int) -> int:
        return t + round(INTERVAL / math.sqrt(count))

    def enqueue(self, ident: int, size: int, ect: bool, now: int) -> bool:
        if len(self.q) >= self.limit:
            return False
        self.q.append((ident, size, now, ect))
        self.backlog += size
        return True

    def dodequeue(self, now: int) -> tuple[tuple[int, int, int, bool] | None, bool]:
        if not self.q:
            self.first_above_time = 0
            return None, False
        p = self.q.popleft()
        self.backlog -= p[1]
        ok = False
        if now - p[2] < TARGET or self.backlog <= MTU:
            self.first_above_time = 0
        elif self.first_above_time == 0:
            self.first_above_time = now + INTERVAL
        elif now >= self.first_above_time:
            ok = True
        return p, ok

    def dequeue(self, now: int) -> tuple[int, Verdict] | None:
        p, ok = self.dodequeue(now)
        if self.dropping:
            if not ok:
                self.dropping = False
            while self.dropping and now >= self.drop_next:
                assert p is not None
                self.count += 1
                if self.ecn and p[3]:
                    self.drop_next = self.control_law(self.drop_next, self.count)
                    return p[0], Verdict.MARKED
                self.drops.append(p[0])
                p, ok = self.dodequeue(now)
                if not ok:
                    self.dropping = False
                else:
                    self.drop_next = self.control_law(self.drop_next, self.count)
        elif ok:
            assert p is not None
            verdict = Verdict.ENQUEUED
            if self.ecn and p[3]:
                verdict = Verdict.MARKED
            else:
                self.drops.append(p[0])
                p, _ = self.dodequeue(now)
            self.dropping = True
            delta = self.count - self.lastcount
            self.count = 1
            if delta > 1 and now - self.drop_next < 16 * INTERVAL:
                self.count = delta
            self.drop_next = self.control_law(now, self.count)
            self.lastcount = self.count
            return None if p is None else (p[0], verdict)
        return None if p is None else (p[0], Verdict.ENQUEUED)


def replay(seed: int, n: int, ecn: bool, limit: int = 1000) -> None:
    """Random arrivals and departures, queue and model side by side."""
    rng = random.Random(seed)
    q = CoDel(limit=limit, ecn=ecn)
    m = Model(limit=limit, ecn=ecn)
    now = 0
    ident = 0
    for _ in range(n):
        now += rng.choice([0, 1, 2, 3, 7]) * MS // 2
        if rng.random() < 0.55:
            size, ect = rng.choice([64, 600, 1500]), rng.random() < 0.5
            ok = m.enqueue(ident, size, ect, now)
            v = q.enqueue(ident, size=size, now=now / 1e9, ecn_capable=ect)
            assert v == (Verdict.ENQUEUED if ok else Verdict.DROPPED)
            ident += 1
        else:
            assert q.dequeue_verdict(now=now / 1e9) == m.dequeue(now)
        assert len(q) == len(m.q) and q.backlog == m.backlog
        assert (q.count, q.dropping) == (m.count, m.dropping)
    s = q.stats()
    assert s["drops"] == len(m.drops)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ecn", [False, True])
def test_matches_rfc_pseudocode(seed: int, ecn: bool) -> None:
    replay(seed, 20_000, ecn, limit=400 if seed % 2 else 1000)


def test_control_law_timing() -> None:
    # P9: a standing queue drained one packet per 2 ms; every drop happens at the first dequeue
    # at or after drop_next, and drop_next advances by interval / sqrt(count).
    q = CoDel()
    for i in range(1000):
        q.enqueue(i, size=1500, now=0.0)
    drops: list[tuple[int, int]] = []
    t = 0
    while len(q):
        t += 2 * MS
        before = q.stats()["drops"]
        q.dequeue(now=t / 1e9)
        drops.extend((t, q.count) for _ in range(q.stats()["drops"] - before))
    # Above target from the dequeue at 6 ms (sojourn 6 ms): the first drop one interval later.
    assert drops[0] == (106 * MS, 1)
    # Then drop k (count k) at the first 2 ms tick at or after drop_next_k, where
    # drop_next_2 = 106 ms + interval and drop_next_{k+1} = drop_next_k + interval / sqrt(k).
    sched = [106 * MS]
    nxt = 106 * MS + INTERVAL
    for k in range(2, len(drops) + 1):
        sched.append(-(-nxt // (2 * MS)) * 2 * MS)
        nxt += round(INTERVAL / math.sqrt(k))
    assert [t for t, _ in drops] == sched
    assert [c for _, c in drops] == list(range(1, len(drops) + 1))
    assert len(drops) > 20


def test_a_dequeue_at_drop_next_is_due_at_large_times() -> None:
    """Around 4e9 s floats are 477 ns apart: drop_next still reads as a time at or after the
    deadline, so a dequeue then drops."""
    for k in range(20):
        start = 4e9 + k * 0.0123
        q = CoDel(mtu=0)
        for i in range(10):
            q.enqueue(i, 100, now=start)
        q.dequeue(start + 0.01)  # above target: the interval starts
        q.dequeue(start + 0.111)  # a whole interval above: the dropping state, count 1
        assert q.dropping and q.count == 1
        q.dequeue(q.drop_next)
        assert q.count == 2, k


def test_below_target_never_drops() -> None:
    q = CoDel()
    for k in range(5000):
        t = k * 1e-3
        q.enqueue(k, size=1500, now=t)
        q.enqueue(k, size=1500, now=t)
        assert q.dequeue(now=t + 0.0049) == k
        assert q.dequeue(now=t + 0.0049) == k
    assert q.stats()["drops"] == 0


def test_above_target_shorter_than_interval_never_drops() -> None:
    # Sojourn 20 ms for 90 ms, then a drained queue: no drop (interval not reached).
    q = CoDel()
    for i in range(20):
        q.enqueue(i, size=1500, now=0.0)
    for k in range(1, 10):
        q.dequeue(now=0.02 + 0.01 * k)
    while q.dequeue(now=0.095) is not None:
        pass
    assert q.stats()["drops"] == 0 and not q.dropping


def test_one_mtu_left_never_drops() -> None:
    # Sojourn far above target, but at most one MTU left behind the head.
    q = CoDel()
    for k in range(200):
        q.enqueue(k, size=1000, now=k * 0.01)
        if k:
            q.dequeue(now=k * 0.01 + 0.5)
    assert q.stats()["drops"] == 0


def test_reentry_resumes_count() -> None:
    q = CoDel()
    m = Model()
    t = 0

    def fill(n: int) -> None:
        for i in range(n):
            q.enqueue(i, size=1500, now=t / 1e9)
            m.enqueue(i, 1500, False, t)

    fill(400)
    while q.count < 8:
        t += 10 * MS
        assert q.dequeue(now=t / 1e9) == m.dequeue(t)[0]  # type: ignore[index]
    last = q.count
    while q.dequeue(now=t / 1e9) is not None:
        m.dequeue(t)
    assert not q.dropping
    fill(400)
    while not q.dropping:
        t += 10 * MS
        q.dequeue(now=t / 1e9)
        m.dequeue(t)
    assert q.count == last - 1  # count - lastcount, lastcount = 1
    # Much later (over 16 intervals since the last drop): restart at 1.
    while q.dequeue(now=t / 1e9) is not None:
        pass
    t += 20 * INTERVAL
    fill(400)
    while not q.dropping:
        t += 10 * MS
        q.dequeue(now=t / 1e9)
    assert q.count == 1


def test_ecn_marks_capable_packets_only() -> None:
    q = CoDel(ecn=True)
    for i in range(300):
        q.enqueue(i, size=1500, now=0.0, ecn_capable=i % 2 == 0)
    marked, delivered = [], []
    t = 0.0
    while len(q):
        t += 0.01
        r = q.dequeue_verdict(now=t)
        if r is not None:
            delivered.append(r[0])
            if r[1] == Verdict.MARKED:
                marked.append(r[0])
    s = q.stats()
    assert marked and all(i % 2 == 0 for i in marked) and s["marks"] == len(marked)
    assert s["drops"] > 0  # not-ECT packets are still dropped
    assert s["dequeued"] == len(delivered) and s["dequeued"] + s["drops"] == 300


def test_overflow_and_batch() -> None:
    q = CoDel(limit=3)
    v = q.enqueue_many(np.array([100, 200, 300, 400]), times=np.array([0.0, 0.1, 0.2, 0.3]))
    assert v.tolist() == [0, 0, 0, 1] and v.dtype == np.uint8
    assert q.backlog == 600 and q.stats()["overlimit_drops"] == 1
    assert q.dequeue(now=0.2) == 100  # size-only packets come back as their size
    assert q.enqueue(b"abcd", now=0.3) == Verdict.ENQUEUED
    assert q.backlog == 504
    q.enqueue_many([5], items=["x"], times=[0.3])  # full again: dropped
    assert [q.dequeue(now=0.3) for _ in range(4)] == [200, 300, b"abcd", None]
    # A non-bytes item without a size counts as one MTU.
    q.enqueue(object(), now=0.4)
    assert q.backlog == 1514
    with pytest.raises(ConfigError, match=r"times\[0\]"):
        q.enqueue_many([1], times=[-1.0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 30), st.booleans()), max_size=200))
def test_batch_equals_scalar(rows: list[tuple[int, int, bool]]) -> None:
    a, b = CoDel(limit=50), CoDel(limit=50)
    times = np.cumsum([r[1] for r in rows]) * 1e-3
    want = [
        int(a.enqueue(s, size=s, now=float(t), ecn_capable=e))
        for (s, _, e), t in zip(rows, times, strict=True)
    ]
    sizes = np.array([r[0] for r in rows], dtype=np.int64)
    got = b.enqueue_many(sizes, times=times, ecn_capable=np.array([r[2] for r in rows], bool))
    assert got.tolist() == want and a.stats() == b.stats() and a.backlog == b.backlog
    end = float(times[-1]) if len(rows) else 0.0
    assert [a.dequeue_verdict(now=end + 1) for _ in range(60)] == [
        b.dequeue_verdict(now=end + 1) for _ in range(60)
    ]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"target": 0.0}, "target"),
        ({"target": -1.0}, "target"),
        ({"interval": 0.0}, "interval"),
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"mtu": -1}, "mtu"),
        ({"clock": "no"}, "clock"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        CoDel(**kwargs)  # type: ignore[arg-type]


def test_defaults_and_clock() -> None:
    t = [1.0]
    q = CoDel(clock=lambda: t[0])
    assert (q.target, q.interval, q.limit, q.mtu, q.ecn) == (0.005, 0.1, 1000, 1514, False)
    q.enqueue(b"x" * 100)
    t[0] = 2.0
    assert q.dequeue() == b"x" * 100
    assert "CoDel(target=0.005" in repr(q)


def test_batch_sizes_out_of_range_show_their_value() -> None:
    q = CoDel()
    with pytest.raises(
        ConfigError, match=r"^sizes\[1\] = 18446744073709551615 is outside 0\.\.2\*\*32$"
    ):
        q.enqueue_many(np.array([1, 2**64 - 1], np.uint64))
    with pytest.raises(
        TypeError, match=r"^sizes must be a one-dimensional int64 array, not a bool \(row 0\)$"
    ):
        q.enqueue_many([True, 1])
    assert len(q) == 0
