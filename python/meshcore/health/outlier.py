"""Passive health checking: Envoy's outlier detection, driven by the results of real requests.

Semantics follow Envoy's ``source/common/upstream/outlier_detection_impl.cc`` and the
``envoy.config.cluster.v3.OutlierDetection`` proto, with external and local-origin errors not
split (Envoy's default, ``split_external_local_origin_errors: false``):

- ``record(ep, status)``: a 5xx adds to the endpoint's consecutive-5xx count; 502, 503 and 504
  also add to its consecutive-gateway-failure count (another 5xx resets that one); anything else
  resets both. A count *reaching* its threshold is a detection (it is then reset); ``True`` counts
  as 200 and ``False`` (connect failure, reset, timeout) as 503, as Envoy maps local-origin errors.
- Every ``interval`` (``tick()``): ejected endpoints whose time is up return; the request counts of
  the interval just ended become the success-rate data; the success-rate and failure-percentage
  detectors run on it; the ejection multiplier of every endpoint that has been back for at least
  an interval goes down by one.
- An ejection first checks ``max_ejection_percent``: ``100 * (ejected + 1) / endpoints`` must not
  exceed it (with the default 10 % and fewer than 10 endpoints nothing is ejected, as in current
  Envoy, unless ``always_eject_one_host=True``), else it counts as overflow; then the detector's
  ``enforcing_*`` percentage decides (a seeded draw), else it is detected but not enforced.
- An ejected endpoint stays out ``min(base_ejection_time * multiplier, max_ejection_time)`` plus a
  random jitter in [0, ``max_ejection_time_jitter``]; it returns at the first tick after that, so
  at most one ``interval`` later. Each ejection raises the multiplier by one while
  ``multiplier * base < max + base``.

The order inside a sweep is current Envoy's (``DetectorImpl::onIntervalTimer`` since Envoy 1.28,
envoyproxy/envoy#29711, which fixed #21142 and #26758): returns first, then the detectors, and
only then the multiplier decrement, for endpoints not ejected whose return is at least an
``interval`` old. Before that change Envoy lowered the multiplier in ``checkHostForUneject``,
ahead of the detectors, so a host ejected by success rate or failure percentage right after its
return got the base time again and its ejection time never grew.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from meshcore._aio import stop_task
from meshcore._meshcore import Balancer
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError
from meshcore.health._binding import BalancerHealth, as_binding, endpoint_name

__all__ = ["EjectionType", "OutlierDetector", "OutlierHost"]

log = logging.getLogger("meshcore.health")

_GATEWAY = frozenset({502, 503, 504})


class EjectionType(enum.Enum):
    """Why an endpoint was ejected (Envoy's ``OutlierEjectionType``)."""

    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    SUCCESS_RATE = "success_rate"
    FAILURE_PERCENTAGE = "failure_percentage"


@dataclass(frozen=True, slots=True)
class OutlierHost:
    """A snapshot of one endpoint in an :class:`OutlierDetector` (times in seconds on its clock).

    ``success_rate`` (percent) and ``request_volume`` are those of the last complete interval
    (``success_rate`` None when it had no request); ``multiplier`` is the ejection-time multiplier
    (Envoy's backoff); ``ejected_until`` is when an ejected endpoint's time is up (it returns at
    the next tick after that)."""

    name: str
    ejected: bool
    ejection_type: EjectionType | None
    num_ejections: int
    multiplier: int
    consecutive_5xx: int
    consecutive_gateway_failure: int
    success_rate: float | None
    request_volume: int
    ejected_at: float | None
    ejected_until: float | None


class _Host:
    __slots__ = (
        "backoff",
        "cons_5xx",
        "cons_gw",
        "cur_success",
        "cur_total",
        "ejected",
        "ejected_at",
        "idle",
        "jitter",
        "last_success",
        "last_total",
        "num_ejections",
        "type",
        "unejected_at",
    )

    def __init__(self) -> None:
        self.cons_5xx = 0
        self.cons_gw = 0
        self.cur_total = 0
        self.cur_success = 0
        self.last_total = 0
        self.last_success = 0
        self.ejected = False
        self.type: EjectionType | None = None
        self.num_ejections = 0
        self.backoff = 0
        self.jitter = 0.0
        self.ejected_at: float | None = None
        self.unejected_at: float | None = None
        self.idle = 0  # sweeps in a row whose interval had no record()


def _uint(name: str, value: Any, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"{name} must be at most {upper}, got {value!r}")
    return value


def _secs(name: str, value: Any, *, zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if zero else value > 0):
        raise ConfigError(f"{name} must be a finite number of seconds {'>=' if zero else '>'} 0")
    return float(value)


_STATS = (
    "ejections_active",
    "ejections_overflow",
    "ejections_enforced_total",
    *(f"ejections_{kind}_{t.value}" for kind in ("detected", "enforced") for t in EjectionType),
)


class OutlierDetector:
    """Envoy's outlier detection for one set of endpoints (see the module docstring for the rules).

    Parameters carry Envoy's names, units and defaults (times in seconds,
    ``success_rate_stdev_factor`` in thousandths, percentages as ints 0..100).
    ``max_ejection_time`` defaults to the larger of 300 s and ``base_ejection_time`` and may not be
    smaller than it.

    ``endpoints``: the set (``Endpoint`` or names; a name is ``Endpoint.address``). None leaves it
    open: an endpoint joins at its first ``record()``. Once a set is given (here or with
    :meth:`set_endpoints`), results for other endpoints are ignored, like late results for a host
    that left an Envoy cluster; the set size is the base of ``max_ejection_percent``.

    In the open mode nothing says when an endpoint left, so the detector forgets one by itself:
    an endpoint that is not ejected, has a multiplier of 0 and had no ``record()`` during
    ``idle_intervals`` sweeps in a row is dropped (its counts go with it; None: never). At most
    ``max_hosts`` endpoints are tracked: a new name beyond that drops the endpoint whose last
    ``record()`` is the oldest among those not ejected (a warning is logged the first time);
    when every tracked endpoint is ejected the new name is ignored (a warning, once until a slot
    frees). Both keep memory bounded and dead names out of the ``max_ejection_percent`` base.

    Time: every method takes ``now`` (seconds) or reads ``clock`` (default ``time.monotonic``).
    ``tick(now)`` runs one interval sweep; inside ``async with detector:`` a background task does
    so every ``interval`` seconds. ``seed`` makes the enforcement draws and jitter reproducible.

    ``on_change(name, ejected)`` is called on every ejection and return. ``balancer`` (a
    :class:`~meshcore.Balancer`, or a :class:`~meshcore.health.BalancerHealth` shared with a
    :class:`~meshcore.health.HealthChecker`) gets ``set_health(name, False)`` on ejection and
    back to healthy on return. ``successful_active_health_check_uneject_host``: a
    :class:`~meshcore.health.HealthChecker` given this detector ends an ejection when the
    endpoint passes an active check.
    """

    def __init__(
        self,
        endpoints: Iterable[Endpoint | str] | None = None,
        *,
        consecutive_5xx: int = 5,
        consecutive_gateway_failure: int = 5,
        interval: float = 10.0,
        base_ejection_time: float = 30.0,
        max_ejection_time: float | None = None,
        max_ejection_time_jitter: float = 0.0,
        max_ejection_percent: int = 10,
        always_eject_one_host: bool = False,
        enforcing_consecutive_5xx: int = 100,
        enforcing_consecutive_gateway_failure: int = 0,
        enforcing_success_rate: int = 100,
        success_rate_minimum_hosts: int = 5,
        success_rate_request_volume: int = 100,
        success_rate_stdev_factor: int = 1900,
        failure_percentage_threshold: int = 85,
        enforcing_failure_percentage: int = 0,
        failure_percentage_minimum_hosts: int = 5,
        failure_percentage_request_volume: int = 50,
        successful_active_health_check_uneject_host: bool = True,
        idle_intervals: int | None = 6,
        max_hosts: int = 10_000,
        on_change: Callable[[str, bool], None] | None = None,
        balancer: Balancer | BalancerHealth | None = None,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.consecutive_5xx = _uint("consecutive_5xx", consecutive_5xx)
        self.consecutive_gateway_failure = _uint(
            "consecutive_gateway_failure", consecutive_gateway_failure
        )
        self.interval = _secs("interval", interval)
        self.base_ejection_time = _secs("base_ejection_time", base_ejection_time)
        if max_ejection_time is None:
            max_ejection_time = max(300.0, self.base_ejection_time)
        self.max_ejection_time = _secs("max_ejection_time", max_ejection_time)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigError("max_ejection_time cannot be smaller than base_ejection_time")
        self.max_ejection_time_jitter = _secs(
            "max_ejection_time_jitter", max_ejection_time_jitter, zero=True
        )
        self.max_ejection_percent = _uint("max_ejection_percent", max_ejection_percent, 100)
        self.always_eject_one_host = bool(always_eject_one_host)
        self._enforcing = {
            EjectionType.CONSECUTIVE_5XX: _uint(
                "enforcing_consecutive_5xx", enforcing_consecutive_5xx, 100
            ),
            EjectionType.CONSECUTIVE_GATEWAY_FAILURE: _uint(
                "enforcing_consecutive_gateway_failure", enforcing_consecutive_gateway_failure, 100
            ),
            EjectionType.SUCCESS_RATE: _uint("enforcing_success_rate", enforcing_success_rate, 100),
            EjectionType.FAILURE_PERCENTAGE: _uint(
                "enforcing_failure_percentage", enforcing_failure_percentage, 100
            ),
        }
        self.success_rate_minimum_hosts = _uint(
            "success_rate_minimum_hosts", success_rate_minimum_hosts
        )
        self.success_rate_request_volume = _uint(
            "success_rate_request_volume", success_rate_request_volume
        )
        self.success_rate_stdev_factor = _uint(
            "success_rate_stdev_factor", success_rate_stdev_factor
        )
        self.failure_percentage_threshold = _uint(
            "failure_percentage_threshold", failure_percentage_threshold, 100
        )
        self.failure_percentage_minimum_hosts = _uint(
            "failure_percentage_minimum_hosts", failure_percentage_minimum_hosts
        )
        self.failure_percentage_request_volume = _uint(
            "failure_percentage_request_volume", failure_percentage_request_volume
        )
        self.successful_active_health_check_uneject_host = bool(
            successful_active_health_check_uneject_host
        )
        if idle_intervals is not None and _uint("idle_intervals", idle_intervals) < 1:
            raise ConfigError("idle_intervals must be an int >= 1 or None")
        self.idle_intervals = idle_intervals
        if _uint("max_hosts", max_hosts) < 1:
            raise ConfigError("max_hosts must be an int >= 1")
        self.max_hosts = max_hosts
        self._on_change = on_change
        self._binding = as_binding(balancer)
        self._rng = random.Random(seed)
        self._clock = clock if clock is not None else time.monotonic
        self._hosts: dict[str, _Host] = {}
        # Open mode only: names by their last record(), oldest first (the max_hosts victims).
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._full_logged = self._refused_logged = False
        self._closed_set = endpoints is not None
        self._active = 0
        self._stats = dict.fromkeys(_STATS, 0)
        self._sr_average: float | None = None
        self._sr_threshold: float | None = None
        self._task: asyncio.Task[None] | None = None
        if endpoints is not None:
            self.set_endpoints(endpoints)

    def __repr__(self) -> str:
        return f"<OutlierDetector {len(self._hosts)} endpoints, {self._active} ejected>"

    # -- the endpoint set -----------------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[Endpoint | str]) -> None:
        """Replace the set. Endpoints that stay keep their counts, ejection and multiplier; one
        that leaves while ejected no longer counts toward ``max_ejection_percent`` and its hold on
        the balancer is released (``on_change`` is not called for it)."""
        names = [endpoint_name(e) for e in endpoints]
        keep = set(names)
        for name in list(self._hosts):
            if name not in keep:
                host = self._hosts.pop(name)
                if host.ejected:
                    self._active -= 1
                    if self._binding is not None:
                        self._binding.set(name, "outlier", True)
        for name in names:
            if name not in self._hosts:
                self._hosts[name] = _Host()
        self._closed_set = True
        self._lru.clear()
        self._stats["ejections_active"] = self._active

    def _host(self, endpoint: Endpoint | str) -> tuple[str, _Host | None]:
        """The tracked endpoint for a result; in the open mode a new name joins (room made
        under ``max_hosts``) and the name becomes the most recently used."""
        name = endpoint_name(endpoint)
        host = self._hosts.get(name)
        if self._closed_set:
            return name, host
        if host is None:
            if len(self._hosts) >= self.max_hosts and not self._make_room():
                return name, None
            host = self._hosts[name] = _Host()
            self._lru[name] = None
        else:
            self._lru.move_to_end(name)
        return name, host

    def _make_room(self) -> bool:
        for victim in self._lru:  # oldest record() first
            if not self._hosts[victim].ejected:
                if not self._full_logged:
                    self._full_logged = True
                    log.warning(
                        "%r: max_hosts=%d reached; forgetting the least recently used endpoints",
                        self,
                        self.max_hosts,
                    )
                self._forget(victim)
                self._refused_logged = False
                return True
        if not self._refused_logged:
            self._refused_logged = True
            log.warning(
                "%r: max_hosts=%d endpoints, all ejected; results for new endpoints are ignored",
                self,
                self.max_hosts,
            )
        return False

    def _forget(self, name: str) -> None:
        """Drop a tracked endpoint that is not ejected (open mode)."""
        del self._hosts[name]
        self._lru.pop(name, None)

    # -- passive results ------------------------------------------------------------------------

    def record(
        self, endpoint: Endpoint | str, result: bool | int, now: float | None = None
    ) -> None:
        """Count the result of one request to ``endpoint``: an HTTP status (100..599), True (a
        success, as 200) or False (a connect failure, reset or timeout, as 503). May eject the
        endpoint at once (consecutive 5xx / gateway failures); ``now`` stamps that ejection."""
        if isinstance(result, bool):
            status = 200 if result else 503
        elif isinstance(result, int) and 100 <= result <= 599:
            status = result
        else:
            raise ConfigError(f"result must be a bool or an HTTP status 100..599, got {result!r}")
        name, host = self._host(endpoint)
        if host is None:
            return  # not in the set (it left), or no room in the open mode: ignored
        host.cur_total += 1
        if status < 500:
            host.cur_success += 1
            host.cons_5xx = 0
            host.cons_gw = 0
            return
        gateway_hit = five_hit = False
        if status in _GATEWAY:
            host.cons_gw += 1
            gateway_hit = host.cons_gw == self.consecutive_gateway_failure
        else:
            host.cons_gw = 0
        host.cons_5xx += 1
        five_hit = host.cons_5xx == self.consecutive_5xx
        if gateway_hit or five_hit:
            when = self._now(now)
            if gateway_hit:
                self._consecutive(name, host, EjectionType.CONSECUTIVE_GATEWAY_FAILURE, when)
            if five_hit:
                self._consecutive(name, host, EjectionType.CONSECUTIVE_5XX, when)

    def _consecutive(self, name: str, host: _Host, kind: EjectionType, now: float) -> None:
        if host.ejected:
            return  # as Envoy: no detection, and the count is not reset
        self._stats[f"ejections_detected_{kind.value}"] += 1
        self._eject(name, host, kind, now)
        if kind is EjectionType.CONSECUTIVE_5XX:
            host.cons_5xx = 0
        else:
            host.cons_gw = 0

    # -- ejection -------------------------------------------------------------------------------

    def _enforced(self, kind: EjectionType) -> bool:
        percent = self._enforcing[kind]
        if percent >= 100:
            return True
        if percent <= 0:
            return False
        return self._rng.randrange(100) < percent

    def _eject(self, name: str, host: _Host, kind: EjectionType, now: float) -> None:
        ejected_percent = 100.0 * (self._active + 1) / len(self._hosts)
        allowed = ejected_percent <= self.max_ejection_percent or (
            self.always_eject_one_host and self._active == 0
        )
        if not allowed:
            self._stats["ejections_overflow"] += 1
            return
        if not self._enforced(kind):
            return
        self._active += 1
        self._stats["ejections_active"] = self._active
        self._stats["ejections_enforced_total"] += 1
        self._stats[f"ejections_enforced_{kind.value}"] += 1
        host.ejected = True
        host.type = kind
        host.num_ejections += 1
        host.ejected_at = now
        host.jitter = (
            self._rng.uniform(0.0, self.max_ejection_time_jitter)
            if self.max_ejection_time_jitter
            else 0.0
        )
        base, cap = self.base_ejection_time, self.max_ejection_time
        if host.backoff * base < cap + base:
            host.backoff += 1
        log.info("ejected %s (%s, ejection %d)", name, kind.value, host.num_ejections)
        self._changed(name, True)

    def _ejection_duration(self, host: _Host) -> float:
        base = min(self.base_ejection_time * host.backoff, self.max_ejection_time)
        return base + host.jitter

    def _uneject(self, name: str, host: _Host, now: float) -> None:
        self._active -= 1
        self._stats["ejections_active"] = self._active
        host.ejected = False
        host.type = None
        host.cons_5xx = 0
        host.cons_gw = 0
        host.unejected_at = now
        host.idle = 0  # it can take traffic again: idleness counts from here
        log.info("%s returns after ejection %d", name, host.num_ejections)
        self._changed(name, False)

    def _changed(self, name: str, ejected: bool) -> None:
        if self._binding is not None:
            self._binding.set(name, "outlier", not ejected)
        if self._on_change is not None:
            try:
                self._on_change(name, ejected)
            except Exception:
                log.exception("%r: on_change raised", self)

    def uneject(self, endpoint: Endpoint | str, now: float | None = None) -> bool:
        """End ``endpoint``'s ejection now (its multiplier stays); False if it was not ejected."""
        name = endpoint_name(endpoint)
        host = self._hosts.get(name)  # never joins: a passing active check is no traffic
        if host is None or not host.ejected:
            return False
        self._uneject(name, host, self._now(now))
        return True

    def active_check_passed(self, endpoint: Endpoint | str, now: float | None = None) -> None:
        """An active health check of ``endpoint`` passed: under
        ``successful_active_health_check_uneject_host`` its ejection ends."""
        if self.successful_active_health_check_uneject_host:
            self.uneject(endpoint, now)

    # -- the interval sweep ---------------------------------------------------------------------

    def tick(self, now: float | None = None) -> float:
        """Run one interval sweep at ``now`` and return when the next one is due (seconds)."""
        when = self._now(now)
        for name, host in list(self._hosts.items()):
            host.idle = 0 if host.cur_total else host.idle + 1  # a return below resets it
            if (
                host.ejected
                and host.ejected_at is not None
                and self._ejection_duration(host) <= when - host.ejected_at
            ):
                self._uneject(name, host, when)
            host.last_total, host.last_success = host.cur_total, host.cur_success
            host.cur_total = host.cur_success = 0
        self._success_rate_sweep(when)
        # After the detectors, as Envoy >= 1.28 does (see the module docstring).
        for host in self._hosts.values():
            if (
                not host.ejected
                and host.unejected_at is not None
                and when - host.unejected_at >= self.interval
                and host.backoff > 0
            ):
                host.backoff -= 1
        if not self._closed_set and self.idle_intervals is not None:
            limit = self.idle_intervals
            for name in [
                n
                for n, h in self._hosts.items()
                if h.idle >= limit and not h.ejected and h.backoff == 0
            ]:
                self._forget(name)
        return when + self.interval

    def _success_rate_sweep(self, now: float) -> None:
        self._sr_average = self._sr_threshold = None
        count = len(self._hosts)
        if count < min(self.success_rate_minimum_hosts, self.failure_percentage_minimum_hosts):
            return
        sr_hosts: list[tuple[str, _Host, float]] = []
        fp_hosts: list[tuple[str, _Host, float]] = []
        for name, host in self._hosts.items():
            if host.ejected or host.last_total == 0:
                continue
            rate = host.last_success * 100.0 / host.last_total
            if host.last_total >= self.success_rate_request_volume:
                sr_hosts.append((name, host, rate))
            if host.last_total >= self.failure_percentage_request_volume:
                fp_hosts.append((name, host, rate))
        if sr_hosts and len(sr_hosts) >= self.success_rate_minimum_hosts:
            mean = sum(rate for _, _, rate in sr_hosts) / len(sr_hosts)
            variance = sum((rate - mean) ** 2 for _, _, rate in sr_hosts) / len(sr_hosts)
            threshold = mean - self.success_rate_stdev_factor / 1000.0 * math.sqrt(variance)
            self._sr_average, self._sr_threshold = mean, threshold
            for name, host, rate in sr_hosts:
                if rate < threshold:
                    self._stats["ejections_detected_success_rate"] += 1
                    self._eject(name, host, EjectionType.SUCCESS_RATE, now)
        if fp_hosts and len(fp_hosts) >= self.failure_percentage_minimum_hosts:
            for name, host, rate in fp_hosts:
                # Envoy would eject a host twice if both detectors fire; it is out already.
                if not host.ejected and 100.0 - rate >= self.failure_percentage_threshold:
                    self._stats["ejections_detected_failure_percentage"] += 1
                    self._eject(name, host, EjectionType.FAILURE_PERCENTAGE, now)

    # -- introspection --------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else float(now)

    def is_ejected(self, endpoint: Endpoint | str) -> bool:
        """True while ``endpoint`` is ejected."""
        host = self._hosts.get(endpoint_name(endpoint))
        return host is not None and host.ejected

    @property
    def ejected(self) -> frozenset[str]:
        """The names of the ejected endpoints."""
        return frozenset(name for name, host in self._hosts.items() if host.ejected)

    @property
    def endpoints(self) -> list[str]:
        """The names of the tracked endpoints, in the order they joined."""
        return list(self._hosts)

    @property
    def stats(self) -> dict[str, int]:
        """Envoy's ``outlier_detection.*`` counters: ``ejections_active``,
        ``ejections_overflow``, ``ejections_enforced_total``, and
        ``ejections_detected_<type>`` / ``ejections_enforced_<type>`` per :class:`EjectionType`
        value."""
        return dict(self._stats)

    @property
    def success_rate_average(self) -> float | None:
        """The mean success rate (percent) of the last success-rate sweep; None when it had too
        few endpoints with enough requests."""
        return self._sr_average

    @property
    def success_rate_ejection_threshold(self) -> float | None:
        """``mean - stdev_factor / 1000 * stdev`` of the last sweep (percent), or None."""
        return self._sr_threshold

    def host(self, endpoint: Endpoint | str) -> OutlierHost:
        """A snapshot of ``endpoint``'s state; KeyError if it is not tracked."""
        name = endpoint_name(endpoint)
        h = self._hosts[name]
        until = (
            h.ejected_at + self._ejection_duration(h)
            if h.ejected and h.ejected_at is not None
            else None
        )
        return OutlierHost(
            name=name,
            ejected=h.ejected,
            ejection_type=h.type,
            num_ejections=h.num_ejections,
            multiplier=h.backoff,
            consecutive_5xx=h.cons_5xx,
            consecutive_gateway_failure=h.cons_gw,
            success_rate=h.last_success * 100.0 / h.last_total if h.last_total else None,
            request_volume=h.last_total,
            ejected_at=h.ejected_at if h.ejected else None,
            ejected_until=until,
        )

    # -- the background sweep -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._task = asyncio.create_task(self._run(), name=f"meshcore-outlier {self!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background sweep. A cancellation of the caller while it waits is not
        swallowed: it propagates as ``CancelledError``."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, self, log)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.tick()
            except Exception:  # the sweep must go on, whatever a callback did
                log.exception("%r: sweep failed", self)
