"""meshcore.health.OutlierDetector against Envoy's documented rules, with explicit time.

Every test passes ``now`` (seconds) or an injected clock, so results are exact. References:
Envoy's ``outlier_detection_impl.cc`` and the ``OutlierDetection`` proto (arch overview
"Outlier detection")."""

from __future__ import annotations

import asyncio
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import Balancer, ConfigError, Endpoint
from meshcore.health import BalancerHealth, EjectionType, OutlierDetector
from watching import eventually, run

HOSTS = [f"10.0.0.{i}:80" for i in range(1, 11)]  # ten: the default 10 % allows one ejection


def fail(d: OutlierDetector, name: str, n: int, now: float | None, status: int = 500) -> None:
    for _ in range(n):
        d.record(name, status, now=now)


def ticks_until_back(d: OutlierDetector, name: str, start: float, interval: float) -> float:
    """Tick every ``interval`` from ``start`` until ``name`` is back; the time it came back."""
    t = start
    while d.is_ejected(name):
        t += interval
        d.tick(t)
        assert t - start < 10_000, "never returned"
    return t


# -- consecutive 5xx and gateway failures ----------------------------------------------------


def test_consecutive_5xx_ejects_at_exactly_five() -> None:
    d = OutlierDetector(HOSTS, seed=1)
    fail(d, HOSTS[0], 4, now=0.0)
    assert not d.is_ejected(HOSTS[0]) and d.host(HOSTS[0]).consecutive_5xx == 4
    d.record(HOSTS[0], 500, now=1.0)
    assert d.is_ejected(HOSTS[0]) and d.ejected == {HOSTS[0]}
    h = d.host(HOSTS[0])
    assert h.ejection_type is EjectionType.CONSECUTIVE_5XX and h.num_ejections == 1
    assert h.ejected_at == 1.0 and h.ejected_until == 31.0 and h.consecutive_5xx == 0
    stats = d.stats
    assert stats["ejections_active"] == 1 and stats["ejections_enforced_total"] == 1
    assert stats["ejections_detected_consecutive_5xx"] == 1
    assert stats["ejections_enforced_consecutive_5xx"] == 1


def test_a_success_resets_the_count() -> None:
    d = OutlierDetector(HOSTS)
    for _ in range(3):
        fail(d, HOSTS[0], 4, now=0.0)
        d.record(HOSTS[0], 200, now=0.0)
    fail(d, HOSTS[0], 4, now=0.0, status=503)
    d.record(HOSTS[0], True, now=0.0)  # True is a success (200)
    fail(d, HOSTS[0], 4, now=0.0)
    assert not d.ejected and d.stats["ejections_detected_consecutive_5xx"] == 0
    d.record(HOSTS[0], False, now=0.0)  # False is a local-origin failure, as 503: the fifth
    assert d.ejected == {HOSTS[0]}


def test_non_5xx_statuses_are_successes() -> None:
    d = OutlierDetector(HOSTS)
    for status in (200, 301, 404, 429, 499, 100):
        fail(d, HOSTS[0], 4, now=0.0)
        d.record(HOSTS[0], status, now=0.0)
    assert not d.ejected


def test_gateway_failures_are_detected_but_not_enforced_by_default() -> None:
    d = OutlierDetector(HOSTS, consecutive_5xx=10)
    fail(d, HOSTS[0], 5, now=0.0, status=502)
    assert not d.ejected
    assert d.stats["ejections_detected_consecutive_gateway_failure"] == 1
    assert d.stats["ejections_enforced_consecutive_gateway_failure"] == 0
    assert d.host(HOSTS[0]).consecutive_gateway_failure == 0  # reset after the detection


def test_gateway_failures_enforced_and_a_plain_5xx_resets_them() -> None:
    d = OutlierDetector(HOSTS, consecutive_5xx=10, enforcing_consecutive_gateway_failure=100)
    for status in (502, 503, 504, 504, 500):  # 500 is a 5xx but no gateway error
        d.record(HOSTS[1], status, now=0.0)
    assert d.host(HOSTS[1]).consecutive_gateway_failure == 0
    assert d.host(HOSTS[1]).consecutive_5xx == 5
    for status in (502, 503, 504, 502):
        d.record(HOSTS[1], status, now=0.0)
    assert not d.ejected
    d.record(HOSTS[1], 503, now=2.0)
    assert d.ejected == {HOSTS[1]}
    assert d.host(HOSTS[1]).ejection_type is EjectionType.CONSECUTIVE_GATEWAY_FAILURE


def test_consecutive_5xx_zero_disables() -> None:
    d = OutlierDetector(HOSTS, consecutive_5xx=0)
    fail(d, HOSTS[0], 50, now=0.0)
    assert not d.ejected


# -- ejection time, multiplier and its decay -------------------------------------------------


def test_ejection_time_grows_by_base_and_caps_at_max() -> None:
    d = OutlierDetector(HOSTS)
    t, durations, multipliers = 0.0, [], []
    for _ in range(13):
        fail(d, HOSTS[0], 5, now=t)  # ejected at a tick time, again as soon as it returns
        multipliers.append(d.host(HOSTS[0]).multiplier)
        back = ticks_until_back(d, HOSTS[0], t, 10.0)
        durations.append(back - t)
        t = back
    assert durations == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300, 300]
    # Envoy raises the multiplier while multiplier * base < max + base: it stops at 11.
    assert multipliers == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 11]


def test_return_is_at_the_first_tick_after_the_ejection_time() -> None:
    d = OutlierDetector(HOSTS)
    fail(d, HOSTS[0], 5, now=3.0)  # ejected between ticks: due at 33, back at the tick at 40
    for t in (10.0, 20.0, 30.0):
        d.tick(t)
        assert d.is_ejected(HOSTS[0])
    assert d.tick(40.0) == 50.0  # tick returns when the next one is due
    assert not d.is_ejected(HOSTS[0]) and d.stats["ejections_active"] == 0


def test_multiplier_decays_one_per_healthy_interval() -> None:
    d = OutlierDetector(HOSTS)
    t = 0.0
    for _ in range(3):
        fail(d, HOSTS[0], 5, now=t)
        t = ticks_until_back(d, HOSTS[0], t, 10.0)
    assert d.host(HOSTS[0]).multiplier == 3
    d.tick(t)  # the tick of the return itself does not count
    assert d.host(HOSTS[0]).multiplier == 3
    for expected in (2, 1):
        t += 10.0
        d.tick(t)
        assert d.host(HOSTS[0]).multiplier == expected
    fail(d, HOSTS[0], 5, now=t)  # multiplier 1 -> 2: 60 s
    assert d.host(HOSTS[0]).ejected_until == t + 60.0
    t = ticks_until_back(d, HOSTS[0], t, 10.0)
    for _ in range(5):
        t += 10.0
        d.tick(t)
    assert d.host(HOSTS[0]).multiplier == 0
    fail(d, HOSTS[0], 5, now=t)
    assert d.host(HOSTS[0]).ejected_until == t + 30.0  # back to the base time


def test_counts_reset_on_return() -> None:
    d = OutlierDetector(HOSTS)
    fail(d, HOSTS[0], 5, now=0.0)
    fail(d, HOSTS[0], 3, now=1.0)  # still counted while ejected
    assert d.host(HOSTS[0]).consecutive_5xx == 3
    d.tick(30.0)
    assert d.host(HOSTS[0]).consecutive_5xx == 0


def test_jitter_is_seeded_and_bounded() -> None:
    def until(seed: int) -> float:
        d = OutlierDetector(HOSTS, max_ejection_time_jitter=5.0, seed=seed)
        fail(d, HOSTS[0], 5, now=0.0)
        until = d.host(HOSTS[0]).ejected_until
        assert until is not None
        return until

    values = [until(s) for s in range(20)]
    assert all(30.0 <= v <= 35.0 for v in values) and len(set(values)) > 1
    assert values == [until(s) for s in range(20)]


# -- max_ejection_percent -------------------------------------------------------------------


def test_max_ejection_percent_default_allows_one_in_ten() -> None:
    d = OutlierDetector(HOSTS)
    fail(d, HOSTS[0], 5, now=0.0)
    fail(d, HOSTS[1], 5, now=0.0)
    assert d.ejected == {HOSTS[0]}
    assert d.stats["ejections_overflow"] == 1
    assert d.stats["ejections_detected_consecutive_5xx"] == 2


def test_fewer_than_ten_hosts_eject_nothing_unless_always_eject_one_host() -> None:
    five = HOSTS[:5]
    d = OutlierDetector(five)
    fail(d, five[0], 5, now=0.0)
    assert not d.ejected and d.stats["ejections_overflow"] == 1  # 20 % > 10 %
    d = OutlierDetector(five, always_eject_one_host=True)
    fail(d, five[0], 5, now=0.0)
    fail(d, five[1], 5, now=0.0)
    assert d.ejected == {five[0]} and d.stats["ejections_overflow"] == 1


def test_max_ejection_percent_fifty_of_four() -> None:
    d = OutlierDetector(HOSTS[:4], max_ejection_percent=50)
    for name in HOSTS[:4]:
        fail(d, name, 5, now=0.0)
    assert d.ejected == set(HOSTS[:2]) and d.stats["ejections_overflow"] == 2


def test_removed_ejected_host_frees_its_slot() -> None:
    d = OutlierDetector(HOSTS)
    fail(d, HOSTS[0], 5, now=0.0)
    d.set_endpoints([*HOSTS[1:], "10.0.0.99:80"])
    assert d.stats["ejections_active"] == 0 and not d.ejected
    fail(d, HOSTS[1], 5, now=0.0)
    assert d.ejected == {HOSTS[1]}
    d.record(HOSTS[0], 500, now=0.0)  # left the set: ignored
    assert HOSTS[0] not in d.endpoints


def test_open_set_tracks_endpoints_on_first_record() -> None:
    d = OutlierDetector(always_eject_one_host=True)
    d.record(Endpoint("10.0.0.1", 80), 200, now=0.0)
    d.record("[::1]:80", 200, now=0.0)
    assert d.endpoints == ["10.0.0.1:80", "[::1]:80"]
    fail(d, "[::1]:80", 5, now=0.0)
    assert d.is_ejected(Endpoint("::1", 80))


# -- success rate ---------------------------------------------------------------------------


def load(d: OutlierDetector, rates: dict[str, tuple[int, int]], now: float) -> None:
    """``name -> (successes, total)`` requests in the current interval (failures as 500s; the
    tests that use it turn the consecutive-5xx detector off)."""
    for name, (ok, total) in rates.items():
        for i in range(total):
            d.record(name, 200 if i < ok else 500, now=now)


def test_success_rate_matches_envoys_worked_example() -> None:
    # Envoy's comment: success rates {50, 100, 100, 100, 100}: mean 90, stdev 20, threshold 52.
    five = HOSTS[:5]
    d = OutlierDetector(five, max_ejection_percent=100, consecutive_5xx=0)
    load(d, {five[0]: (50, 100), **{n: (100, 100) for n in five[1:]}}, now=1.0)
    d.tick(10.0)
    assert d.success_rate_average == pytest.approx(90.0)
    assert d.success_rate_ejection_threshold == pytest.approx(90.0 - 1.9 * 20.0)
    assert d.ejected == {five[0]}
    assert d.host(five[0]).ejection_type is EjectionType.SUCCESS_RATE
    assert d.host(five[0]).success_rate == 50.0 and d.host(five[0]).request_volume == 100


def test_success_rate_uses_the_interval_just_ended() -> None:
    five = HOSTS[:5]
    d = OutlierDetector(five, max_ejection_percent=100, consecutive_5xx=0)
    d.tick(10.0)
    load(d, {five[0]: (10, 100), **{n: (100, 100) for n in five[1:]}}, now=11.0)
    assert not d.ejected  # nothing before the tick that ends the interval
    d.tick(20.0)
    assert d.ejected == {five[0]}
    d.tick(30.0)  # an empty interval: no data, no sweep
    assert d.success_rate_average is None


def test_success_rate_needs_volume_and_minimum_hosts() -> None:
    five = HOSTS[:5]
    d = OutlierDetector(five, max_ejection_percent=100, consecutive_5xx=0)
    load(d, {five[0]: (50, 100), **{n: (99, 99) for n in five[1:]}}, now=1.0)  # 4 below volume
    d.tick(10.0)
    assert d.success_rate_average is None and not d.ejected
    d = OutlierDetector(five[:4], max_ejection_percent=100, consecutive_5xx=0)
    load(d, {five[0]: (50, 100), **{n: (100, 100) for n in five[1:4]}}, now=1.0)
    d.tick(10.0)  # four hosts < success_rate_minimum_hosts
    assert d.success_rate_average is None and not d.ejected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 200), min_size=5, max_size=12),
    st.integers(0, 3000),
)
def test_success_rate_threshold_matches_a_mean_stdev_oracle(
    successes: list[int], factor: int
) -> None:
    names = [f"10.1.0.{i}:80" for i in range(len(successes))]
    d = OutlierDetector(
        names,
        max_ejection_percent=100,
        consecutive_5xx=0,
        success_rate_stdev_factor=factor,
        failure_percentage_minimum_hosts=1000,
    )
    total = 200
    load(d, {n: (ok, total) for n, ok in zip(names, successes, strict=True)}, now=0.0)
    d.tick(10.0)
    rates = [ok * 100.0 / total for ok in successes]
    mean, stdev = statistics.fmean(rates), statistics.pstdev(rates)
    threshold = mean - factor / 1000.0 * stdev
    assert d.success_rate_average == pytest.approx(mean)
    assert d.success_rate_ejection_threshold == pytest.approx(threshold, abs=1e-9)
    expected = {n for n, r in zip(names, rates, strict=True) if r < threshold - 1e-9}
    borderline = {n for n, r in zip(names, rates, strict=True) if abs(r - threshold) <= 1e-9}
    assert expected <= d.ejected <= expected | borderline


# -- failure percentage ---------------------------------------------------------------------


def test_failure_percentage_threshold_is_inclusive() -> None:
    five = HOSTS[:5]
    d = OutlierDetector(
        five,
        max_ejection_percent=100,
        consecutive_5xx=0,
        enforcing_success_rate=0,
        enforcing_failure_percentage=100,
    )
    load(
        d,
        {five[0]: (15, 100), five[1]: (16, 100), **{n: (50, 50) for n in five[2:]}},
        now=1.0,
    )
    d.tick(10.0)
    assert d.ejected == {five[0]}  # 85 % failed >= 85; 84 % is not
    assert d.host(five[0]).ejection_type is EjectionType.FAILURE_PERCENTAGE
    # Only two hosts reach success_rate_request_volume (100): the success-rate detector is idle.
    assert d.success_rate_average is None
    assert d.stats["ejections_detected_success_rate"] == 0


def test_failure_percentage_is_not_enforced_by_default_and_needs_volume() -> None:
    five = HOSTS[:5]
    d = OutlierDetector(five, max_ejection_percent=100, consecutive_5xx=0)
    load(d, {five[0]: (0, 49), **{n: (50, 50) for n in five[1:]}}, now=1.0)
    d.tick(10.0)
    assert d.stats["ejections_detected_failure_percentage"] == 0  # 49 < request volume 50
    load(d, {five[0]: (0, 50), **{n: (50, 50) for n in five[1:]}}, now=11.0)
    d.tick(20.0)
    assert d.stats["ejections_detected_failure_percentage"] == 1
    assert not d.ejected  # enforcing_failure_percentage defaults to 0


# -- enforcement ----------------------------------------------------------------------------


def enforced_pattern(percent: int, seed: int, n: int = 200) -> list[bool]:
    d = OutlierDetector(HOSTS, enforcing_consecutive_5xx=percent, seed=seed)
    out = []
    for i in range(n):
        fail(d, HOSTS[0], 5, now=float(i))
        out.append(d.is_ejected(HOSTS[0]))
        d.uneject(HOSTS[0], now=float(i))
    return out


def test_enforcing_zero_and_hundred() -> None:
    assert not any(enforced_pattern(0, seed=1))
    assert all(enforced_pattern(100, seed=1))


def test_enforcing_intermediate_is_seeded() -> None:
    a = enforced_pattern(30, seed=7)
    assert a == enforced_pattern(30, seed=7)
    assert a != enforced_pattern(30, seed=8)
    assert 0 < sum(a) < len(a)


# -- bindings, the background sweep, configuration -------------------------------------------


def test_balancer_binding_follows_ejections() -> None:
    b = Balancer("round_robin", HOSTS, seed=1)
    changes: list[tuple[str, bool]] = []
    d = OutlierDetector(HOSTS, balancer=b, on_change=lambda n, e: changes.append((n, e)))
    fail(d, HOSTS[3], 5, now=0.0)
    health = {e.name: e.health for e in b.endpoints()}
    assert health[HOSTS[3]] == "unhealthy" and list(health.values()).count("healthy") == 9
    assert all(b.pick() != HOSTS[3] for _ in range(50))
    d.tick(30.0)
    assert {e.name: e.health for e in b.endpoints()}[HOSTS[3]] == "healthy"
    assert changes == [(HOSTS[3], True), (HOSTS[3], False)]


def test_shared_balancer_health_keeps_the_other_verdict() -> None:
    b = Balancer("round_robin", HOSTS, seed=1)
    shared = BalancerHealth(b)
    d = OutlierDetector(HOSTS, balancer=shared)
    shared.set(HOSTS[0], "active", False)  # what a HealthChecker would report
    fail(d, HOSTS[0], 5, now=0.0)
    d.tick(30.0)  # back from ejection, but still failing its active checks
    assert {e.name: e.health for e in b.endpoints()}[HOSTS[0]] == "unhealthy"
    shared.set(HOSTS[0], "active", True)
    assert {e.name: e.health for e in b.endpoints()}[HOSTS[0]] == "healthy"


def test_clock_and_background_sweep() -> None:
    async def main() -> None:
        d = OutlierDetector(HOSTS, interval=0.02, base_ejection_time=0.05)
        async with d:
            fail(d, HOSTS[0], 5, now=None)
            assert d.is_ejected(HOSTS[0])
            await eventually(lambda: not d.is_ejected(HOSTS[0]))
            with pytest.raises(RuntimeError):
                await d.__aenter__()
        assert d._task is None

    run(main())


def test_injected_clock() -> None:
    now = [100.0]
    d = OutlierDetector(HOSTS, clock=lambda: now[0])
    fail(d, HOSTS[0], 5, now=None)
    assert d.host(HOSTS[0]).ejected_at == 100.0
    now[0] = 130.0
    d.tick()
    assert not d.ejected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": math.nan},
        {"base_ejection_time": -1},
        {"base_ejection_time": 60.0, "max_ejection_time": 30.0},
        {"max_ejection_percent": 101},
        {"enforcing_success_rate": -1},
        {"enforcing_consecutive_5xx": 150},
        {"consecutive_5xx": 2.5},
        {"failure_percentage_threshold": True},
        {"max_ejection_time_jitter": -0.1},
    ],
)
def test_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        OutlierDetector(**kwargs)  # type: ignore[arg-type]  # bad on purpose


def test_max_ejection_time_defaults_to_at_least_base() -> None:
    assert OutlierDetector().max_ejection_time == 300.0
    assert OutlierDetector(base_ejection_time=600.0).max_ejection_time == 600.0


def test_record_rejects_bad_results() -> None:
    d = OutlierDetector(HOSTS)
    for bad in (99, 600, "500", 500.0, None):
        with pytest.raises(ConfigError):
            d.record(HOSTS[0], bad, now=0.0)  # type: ignore[arg-type]  # bad on purpose


# -- properties -----------------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("rec"), st.integers(0, 7), st.sampled_from([200, 500, 502, 503, 404])),
    st.tuples(st.just("tick"), st.just(0), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_op, max_size=300),
    st.integers(0, 100),
    st.booleans(),
    st.integers(1, 5),
    st.floats(0.0, 7.0),
    st.integers(0, 2**32),
)
def test_properties_ejection_cap_and_bounded_ejection_time(
    ops: list[tuple[str, int, int]],
    max_percent: int,
    one: bool,
    threshold: int,
    jitter: float,
    seed: int,
) -> None:
    names = [f"10.2.0.{i}:80" for i in range(8)]
    d = OutlierDetector(
        names,
        consecutive_5xx=threshold,
        consecutive_gateway_failure=threshold,
        enforcing_consecutive_gateway_failure=50,
        max_ejection_percent=max_percent,
        always_eject_one_host=one,
        interval=10.0,
        base_ejection_time=20.0,
        max_ejection_time=70.0,
        max_ejection_time_jitter=jitter,
        success_rate_minimum_hosts=3,
        success_rate_request_volume=3,
        failure_percentage_minimum_hosts=3,
        failure_percentage_request_volume=3,
        enforcing_failure_percentage=50,
        seed=seed,
    )
    allowed = math.floor(max_percent * len(names) / 100 + 1e-9)
    if one:
        allowed = max(allowed, 1)
    t = 0.0
    for kind, i, status in ops:
        if kind == "rec":
            d.record(names[i], status, now=t + 1.0)
        else:
            t += 10.0
            d.tick(t)
        assert len(d.ejected) <= allowed
        assert d.stats["ejections_active"] == len(d.ejected)
        for name in names:
            h = d.host(name)
            if h.ejected:
                # A tick at t kept it out, so t - ejected_at < its time <= max + jitter: it
                # returns at the latest one interval after max_ejection_time + jitter.
                assert h.ejected_at is not None and t - h.ejected_at < 70.0 + jitter
            # Envoy's cap on the multiplier: the first k with k * base >= max + base.
            assert 0 <= h.multiplier <= math.ceil(70.0 / 20.0) + 1


def test_ejected_hosts_return_within_max_plus_one_interval() -> None:
    d = OutlierDetector(HOSTS, max_ejection_time=45.0, max_ejection_time_jitter=4.0, seed=3)
    for rounds in range(20):
        start = rounds * 1000.0 + 7.0
        fail(d, HOSTS[0], 5, now=start)
        back = ticks_until_back(d, HOSTS[0], rounds * 1000.0, 10.0)
        assert back - start <= 45.0 + 4.0 + 10.0


def test_concurrent_use_from_tasks() -> None:
    async def main() -> None:
        d = OutlierDetector(HOSTS)

        async def client(name: str) -> None:
            for _ in range(5):
                d.record(name, 503, now=0.0)
                await asyncio.sleep(0)

        await asyncio.gather(*(client(n) for n in HOSTS))
        assert len(d.ejected) == 1  # one of ten at most, whatever the interleaving

    run(main())


# -- the order inside a sweep (Envoy >= 1.28, envoyproxy/envoy#29711) -----------------------


def test_success_rate_ejection_right_after_a_return_doubles_the_time() -> None:
    # Host 0: ejected at 0 (multiplier 1), back at the tick at 30, then half its requests fail
    # (never five 5xx in a row). The tick at 40 runs the detectors before the multiplier
    # decrement, as current Envoy does: the success-rate ejection raises 1 -> 2, 60 s. (Envoy
    # before #29711 lowered it first, 1 -> 0 -> 1, 30 s: the bug of #26758.)
    five = HOSTS[:5]
    d = OutlierDetector(five, max_ejection_percent=100)
    fail(d, five[0], 5, now=0.0)
    assert d.host(five[0]).multiplier == 1
    for t in (10.0, 20.0, 30.0):
        d.tick(t)
    assert not d.is_ejected(five[0])
    for i in range(100):
        d.record(five[0], 200 if i % 2 else 500, now=35.0)
        for name in five[1:]:
            d.record(name, 200, now=35.0)
    d.tick(40.0)
    h = d.host(five[0])
    assert h.ejected and h.ejection_type is EjectionType.SUCCESS_RATE
    assert h.multiplier == 2 and h.ejected_until == 100.0


# -- open mode: bounded memory ---------------------------------------------------------------


def test_open_mode_forgets_idle_endpoints() -> None:
    d = OutlierDetector(idle_intervals=3, max_ejection_percent=50)
    for i in range(8):  # churn: eight names seen once, in the interval that ends at 10
        d.record(f"10.1.0.{i}:80", 200, now=0.0)
    live, idle = "10.1.1.1:80", "10.1.1.2:80"
    t = 0.0

    def interval(*names: str) -> None:
        nonlocal t
        t += 10.0
        for name in names:
            d.record(name, 200, now=t - 5.0)
        d.tick(t)

    for _ in range(3):
        interval(live, idle)
    assert len(d.endpoints) == 10  # idle for two sweeps (20, 30): kept
    interval(live, idle)
    assert d.endpoints == [live, idle]  # the third idle sweep (40) forgot them
    fail(d, idle, 5, now=t)
    assert d.ejected == {idle}  # 1 of 2 = 50 %; with the dead names it would be 1 of 10
    for _ in range(3):  # ejected for 30 s with no traffic: kept
        interval(live)
        assert idle in d.endpoints
    assert not d.is_ejected(idle) and d.host(idle).multiplier == 1  # back at 70
    for _ in range(2):  # idleness counts from the return; the multiplier decays at 80
        interval(live)
        assert idle in d.endpoints
    interval(live)
    assert d.endpoints == [live]  # 100: three idle sweeps since the return, multiplier 0


def test_open_mode_idle_intervals_none_and_a_closed_set_keep_everything() -> None:
    d = OutlierDetector(idle_intervals=None)
    d.record("10.1.0.1:80", 200, now=0.0)
    c = OutlierDetector(["10.1.0.1:80"], idle_intervals=1)
    for t in range(1, 20):
        d.tick(t * 10.0)
        c.tick(t * 10.0)
    assert d.endpoints == c.endpoints == ["10.1.0.1:80"]


def test_open_mode_max_hosts_drops_the_least_recently_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = OutlierDetector(max_hosts=3, max_ejection_percent=100)
    with caplog.at_level("WARNING", logger="meshcore.health"):
        for name in ("a:1", "b:1", "c:1", "a:1"):
            d.record(name, 200, now=0.0)
        d.record("d:1", 200, now=0.0)  # full: b is the oldest record()
        assert sorted(d.endpoints) == ["a:1", "c:1", "d:1"]
        d.record("e:1", 200, now=0.0)  # then c
        assert sorted(d.endpoints) == ["a:1", "d:1", "e:1"]
        for name in ("a:1", "d:1", "e:1"):
            fail(d, name, 5, now=0.0)
        assert len(d.ejected) == 3
        d.record("f:1", 500, now=0.0)  # nothing can go: ignored
        d.record("g:1", 500, now=0.0)
        assert sorted(d.endpoints) == ["a:1", "d:1", "e:1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("least recently used" in m for m in warnings) == 1
    assert sum("all ejected" in m for m in warnings) == 1
    d.active_check_passed("h:1")  # a passing active check is not traffic: nobody joins
    assert "h:1" not in d.endpoints


@pytest.mark.parametrize(
    "kwargs", [{"idle_intervals": 0}, {"idle_intervals": 1.5}, {"max_hosts": 0}]
)
def test_open_mode_bad_bounds(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        OutlierDetector(**kwargs)  # type: ignore[arg-type]  # bad on purpose


# -- closing -----------------------------------------------------------------------------------


def test_aclose_does_not_swallow_the_callers_cancellation() -> None:
    async def main() -> None:
        d = OutlierDetector(HOSTS, interval=3600.0)
        await d.__aenter__()
        after: list[bool] = []

        async def closer() -> None:
            await d.aclose()
            after.append(True)

        task = asyncio.create_task(closer())
        await asyncio.sleep(0)  # closer cancelled the sweep and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and after == []
        assert d._task is None
        await d.aclose()  # closing again is a no-op

    run(main())
