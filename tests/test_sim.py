"""Small seeded versions of the simulator's scenarios: the qualitative results hold (no timing).

Every run is deterministic (fixed seeds), and the margins asserted are wide compared with the
differences between seeds, so the tests do not flake.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from meshcore import sim


@pytest.fixture(scope="module")
def table_a() -> sim.Table:
    # 20 s at 500 req/s, server 0 stuck for [5, 15): the same shape as the 60 s reference run.
    return sim.beyond_round_robin(
        duration=20.0, rate=500.0, slow_from=5.0, slow_until=15.0, seeds=(1,)
    )


def test_a_peak_ewma_is_far_better_than_round_robin(table_a: sim.Table) -> None:
    rr, pe = table_a.row("round_robin"), table_a.row("peak_ewma")
    lr = table_a.row("least_request")
    # Round robin sends 1/11 of the requests of half the run to the stuck server.
    assert rr.over == pytest.approx(0.5 / 11, rel=0.15)
    # Peak EWMA sends the stuck server only the requests picked before its first 2 s answer.
    assert pe.over < 0.4 * lr.over < rr.over
    assert pe.over < 3e-3
    assert pe.p99 < 0.2 < lr.p999 <= rr.p99
    assert 0.160 < pe.p50 < 0.175
    assert rr.requests == pytest.approx(10_000, rel=0.05)


def test_a_is_reproducible() -> None:
    kw = {"duration": 4.0, "rate": 300.0, "slow_from": 1.0, "slow_until": 3.0, "seeds": (5,)}
    a = sim.beyond_round_robin(policies=("peak_ewma", "random"), **kw)  # type: ignore[arg-type]
    b = sim.beyond_round_robin(policies=("peak_ewma", "random"), **kw)  # type: ignore[arg-type]
    assert a.rows == b.rows
    c = sim.beyond_round_robin(policies=("peak_ewma", "random"), **{**kw, "seeds": (6,)})  # type: ignore[arg-type]
    assert c.rows != a.rows


@pytest.fixture(scope="module")
def table_b() -> sim.Table:
    return sim.heterogeneous_pool(
        loads=(0.7,),
        requests=20_000,
        seeds=(1,),
        policies=("round_robin", "least_request", "peak_ewma", "jsq", "sed"),
    )


def test_b_ordering(table_b: sim.Table) -> None:
    row = {r.policy: r for r in table_b.rows}
    assert row["round_robin"].unstable and not row["peak_ewma"].unstable
    # The oracles beat the local policies, peak EWMA beats least request, and round robin,
    # which overloads the slow server, is far behind.
    assert row["sed"].p99 <= row["jsq"].p99 * 1.2
    assert row["jsq"].p99 < row["peak_ewma"].p99 < row["least_request"].p99
    assert row["least_request"].p99 < row["round_robin"].p99 / 5
    assert row["peak_ewma"].p99 < 3 * row["jsq"].p99
    assert row["least_request"].p99 > 1.2 * row["peak_ewma"].p99
    assert all(r.requests == 20_000 for r in table_b.rows)


def test_c_matches_the_supermarket_model_roughly() -> None:
    assert sim.supermarket_mean(0.9, 1) == pytest.approx(10.0)
    assert sim.supermarket_mean(0.9, 2) == pytest.approx(2.614, abs=1e-3)
    assert sim.supermarket_mean(0.5, 3) == pytest.approx(1.13, abs=0.01)
    t = sim.homogeneous_pool(servers=100, load=0.7, requests=60_000, warmup=0.2)
    rnd, lr = t.row("random", 0.7), t.row("least_request", 0.7)
    # Small run: looser than the 5 % of the full one.
    assert rnd.mean == pytest.approx(sim.supermarket_mean(0.7, 1), rel=0.2)
    assert lr.mean == pytest.approx(sim.supermarket_mean(0.7, 2), rel=0.1)
    assert lr.mean < rnd.mean / 1.5


def test_table_format_and_plot(table_a: sim.Table, tmp_path: Path) -> None:
    text = table_a.format()
    assert "peak_ewma" in text and ">1000 ms" in text and "target" in text
    assert math.isnan(sim.Result("x", None, 1, 0, 0, 0, 0, 0, 0).over)
    with pytest.raises(KeyError):
        table_a.row("nope")
    pytest.importorskip("matplotlib")
    out = sim.plot([table_a], tmp_path / "lat.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
