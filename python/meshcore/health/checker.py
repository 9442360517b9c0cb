"""Active health checking: probe every endpoint of a set on an interval, with Envoy's thresholds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshcore._meshcore import Balancer
from meshcore.discovery._base import DiscoverySource, EndpointSet
from meshcore.discovery.static import StaticDiscovery, parse_endpoint
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError
from meshcore.health._binding import BalancerHealth, as_binding
from meshcore.health.outlier import OutlierDetector
from meshcore.health.probes import CheckResult, Probe

__all__ = ["EndpointHealth", "HealthChecker"]

log = logging.getLogger("meshcore.health")

_Endpoints = Iterable[Endpoint | str | Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """One endpoint's state in a :class:`HealthChecker`: whether it is ``healthy``, its ``last``
    check result (None before the first), and the passes / failures counted toward the
    thresholds since its last transition."""

    endpoint: Endpoint
    healthy: bool
    last: CheckResult | None
    passes: int
    failures: int


class _State:
    __slots__ = ("checked", "endpoint", "failures", "healthy", "last", "passes")

    def __init__(self, endpoint: Endpoint, healthy: bool) -> None:
        self.endpoint = endpoint
        self.healthy = healthy
        self.checked = False
        self.last: CheckResult | None = None
        self.passes = 0
        self.failures = 0


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _seconds(name: str, value: Any, *, zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value >= 0 if zero else value > 0) or value != value:
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{name} must be a number of seconds {bound}, got {value!r}")
    return float(value)


class HealthChecker(DiscoverySource):
    """Probe every endpoint of a set on an interval and keep each one's health with Envoy's
    active health checking rules; itself a discovery source whose sets are the healthy endpoints.

    ::

        async with HealthChecker(HttpProbe("/healthz"), DnsDiscovery("_http._tcp.api.")) as h:
            async for healthy in h.watch():      # frozenset[Endpoint], each time it changes
                ...

    ``source`` is a discovery source (entered by the checker unless it is already running; the
    checker follows its changes) or a fixed list of endpoints (:class:`Endpoint`, ``"host:port"``
    or mappings); None starts empty, for :meth:`set_endpoints`.

    Each endpoint is checked every ``interval`` seconds (``unhealthy_interval`` while it is
    unhealthy, default the same) plus a uniform random ``jitter`` in [0, jitter) seconds, counted
    from the end of the previous check; at most ``max_concurrency`` checks run at once.
    ``timeout`` belongs to the probe.

    The state machine is Envoy's:

    - a new endpoint is unhealthy until its first check (``initially_healthy=True`` starts it
      healthy instead); a pass on that *first* check makes it healthy at once;
    - a healthy endpoint turns unhealthy after ``unhealthy_threshold`` consecutive network
      failures, or at once on a definitive failure (the endpoint answered "not healthy", see
      :class:`~meshcore.health.CheckResult`);
    - an unhealthy endpoint turns healthy after ``healthy_threshold`` consecutive passes.

    Envoy has no defaults for the interval and thresholds; these are 5 s, 3 failures, 2 passes.
    With a streaming probe (``GrpcProbe(use_watch=True)``) a status the server pushes applies at
    once (it comes once per change, not per interval); a broken stream is a network failure and
    is reopened every ``unhealthy_interval`` / ``interval``.
    ``watch()`` yields the healthy set once every endpoint of the first set has had one result,
    then each time it changes (an empty set too). ``stale`` follows the source.
    ``await resolve()`` reads the source and probes every endpoint once, now.

    The probe's connections belong to whoever uses it: a running checker, or a one-shot
    ``resolve()`` outside ``async with``. The last of them to finish closes the probe
    (``probe.aclose()``), so a one-shot leaks no gRPC channel or HTTP client, and a probe shared
    with a running checker stays open until that checker stops.

    Nothing stops the checking but closing the checker: an exception from a probe, the balancer,
    the outlier detector or ``on_change`` is logged once per distinct error on the
    ``meshcore.health`` logger (at most 1024 kept) and checking goes on.

    ``on_change(endpoint, healthy)`` is called on every transition. ``balancer`` (a
    :class:`~meshcore.Balancer`, or a :class:`~meshcore.health.BalancerHealth` shared with an
    :class:`~meshcore.health.OutlierDetector`) is kept in step: the checker owns its endpoint set
    (name ``endpoint.address``, weight ``endpoint.weight``) and sets each endpoint's health.
    ``outlier``: an :class:`~meshcore.health.OutlierDetector` whose ejection of an endpoint ends
    when an active check of it passes (Envoy's ``successful_active_health_check_uneject_host``).
    ``sleep``: the coroutine function that waits the delay (seconds) between two checks of an
    endpoint, ``asyncio.sleep`` by default; a test injects one to see the schedule.
    """

    def __init__(
        self,
        probe: Probe,
        source: DiscoverySource | _Endpoints | None = None,
        *,
        interval: float = 5.0,
        unhealthy_interval: float | None = None,
        jitter: float = 0.0,
        healthy_threshold: int = 2,
        unhealthy_threshold: int = 3,
        initially_healthy: bool = False,
        max_concurrency: int = 32,
        on_change: Callable[[Endpoint, bool], None] | None = None,
        balancer: Balancer | BalancerHealth | None = None,
        outlier: OutlierDetector | None = None,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__()
        if not isinstance(probe, Probe):
            raise ConfigError(f"probe must be a meshcore.health.Probe, got {probe!r}")
        self.probe = probe
        if source is None or isinstance(source, DiscoverySource):
            self._source = source
        else:
            self._source = StaticDiscovery(source)
        self.interval = _seconds("interval", interval)
        self.unhealthy_interval = (
            self.interval
            if unhealthy_interval is None
            else _seconds("unhealthy_interval", unhealthy_interval)
        )
        self.jitter = _seconds("jitter", jitter, zero=True)
        self.healthy_threshold = _count("healthy_threshold", healthy_threshold)
        self.unhealthy_threshold = _count("unhealthy_threshold", unhealthy_threshold)
        self.initially_healthy = bool(initially_healthy)
        self._max_concurrency = _count("max_concurrency", max_concurrency)
        self._on_change = on_change
        self._binding = as_binding(balancer)
        self._outlier = outlier
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._states: dict[str, _State] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sem: asyncio.Semaphore | None = None
        self._pending: set[str] = set()
        self._ready = False
        self._loop_running = False
        self._aux: set[asyncio.Task[None]] = set()
        self._logged: set[tuple[str, ...]] = set()

    def _describe(self) -> str:
        return f"{self.probe!r}, {len(self._states)} endpoints"

    # -- introspection ----------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """True while the source serves its last good set because it cannot be read."""
        return self._source is not None and self._source.stale

    @property
    def healthy(self) -> EndpointSet:
        """The endpoints healthy now (may differ from the last set ``watch()`` yielded only
        before the first round of checks completed)."""
        return frozenset(s.endpoint for s in self._states.values() if s.healthy)

    def status(self) -> dict[str, EndpointHealth]:
        """Every endpoint's state, by ``address``."""
        return {
            name: EndpointHealth(s.endpoint, s.healthy, s.last, s.passes, s.failures)
            for name, s in self._states.items()
        }

    # -- the endpoint set -----------------------------------------------------------------------

    def set_endpoints(self, endpoints: _Endpoints) -> None:
        """Replace the set to check, for a checker without a source (RuntimeError otherwise).
        Endpoints are keyed by ``address``: one that stays keeps its state even if its weight or
        metadata changed; new ones start as ``initially_healthy`` says and are checked at once."""
        if self._source is not None:
            raise RuntimeError("this checker follows a source; change the source instead")
        self._update(frozenset(parse_endpoint(e) for e in endpoints))

    def _update(self, endpoints: EndpointSet) -> None:
        by_name = {e.address: e for e in endpoints}
        for name in list(self._states):
            if name not in by_name:
                del self._states[name]
                task = self._tasks.pop(name, None)
                if task is not None:
                    task.cancel()
        for name, ep in by_name.items():
            state = self._states.get(name)
            if state is None:
                self._states[name] = _State(ep, self.initially_healthy)
                if self._loop_running:
                    self._start(name)
            else:
                state.endpoint = ep
        self._pending &= set(by_name)
        if self._binding is not None:
            self._guard("the balancer", self._sync_binding)
        if self._loop_running:
            # set_endpoints() is synchronous; publishing (taking the condition's lock) is not.
            task = asyncio.get_running_loop().create_task(self._maybe_publish())
            self._aux.add(task)
            task.add_done_callback(self._aux.discard)

    def _sync_binding(self) -> None:
        assert self._binding is not None
        self._binding.set_endpoints({n: float(s.endpoint.weight) for n, s in self._states.items()})
        for name, state in self._states.items():
            self._binding.set(name, "active", state.healthy)

    # -- errors ---------------------------------------------------------------------------------

    def _log_once(self, what: str, exc: BaseException) -> None:
        """Log ``exc`` with its traceback the first time this (``what``, type, message) is seen;
        at most 1024 are remembered, later ones go to debug."""
        kind = (what, type(exc).__qualname__, str(exc)[:200])
        if kind not in self._logged and len(self._logged) < 1024:
            self._logged.add(kind)
            log.error("%r: %s raised (logged once): %r", self, what, exc, exc_info=exc)
        else:
            log.debug("%r: %s raised again: %r", self, what, exc)

    def _guard(self, what: str, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)``; an exception is logged once and does not stop the checker."""
        try:
            fn(*args)
        except Exception as exc:
            self._log_once(what, exc)

    # -- checking -------------------------------------------------------------------------------

    def _start(self, name: str) -> None:
        self._tasks[name] = asyncio.create_task(self._probe_loop(name), name=f"health {name}")

    def _delay(self, state: _State) -> float:
        base = self.interval if state.healthy else self.unhealthy_interval
        return base + (self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)

    async def _check(self, endpoint: Endpoint) -> CheckResult:
        try:
            return await self.probe.check(endpoint)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe bug must not stop the checker
            return self._probe_error(endpoint, exc)

    def _probe_error(self, endpoint: Endpoint, exc: Exception) -> CheckResult:
        kind = ("probe", endpoint.address, type(exc).__name__)
        if kind not in self._logged and len(self._logged) < 1024:  # once each, bounded
            self._logged.add(kind)
            log.error("%r: probe raised for %s (logged once)", self, endpoint.address, exc_info=exc)
        return CheckResult(False, f"probe error: {type(exc).__name__}: {exc}")

    async def _stream(self, endpoint: Endpoint) -> AsyncGenerator[CheckResult, None]:
        """``probe.watch(endpoint)``, with an exception from the probe turned into a last
        (network) failure."""
        try:
            it = self.probe.watch(endpoint)
        except Exception as exc:
            yield self._probe_error(endpoint, exc)
            return
        try:
            while True:
                try:
                    result = await anext(it)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    yield self._probe_error(endpoint, exc)
                    return
                yield result
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _probe_loop(self, name: str) -> None:
        state = self._states[name]
        try:
            while self._states.get(name) is state:
                try:
                    if self.probe.streaming:
                        # aclosing: a stream left early is cancelled now, not at GC
                        async with contextlib.aclosing(self._stream(state.endpoint)) as stream:
                            async for result in stream:
                                if self._states.get(name) is not state:
                                    break
                                await self._apply(name, state, result, pushed=True)
                    else:
                        assert self._sem is not None
                        async with self._sem:
                            result = await self._check(state.endpoint)
                        if self._states.get(name) is not state:
                            break
                        await self._apply(name, state, result)
                except Exception as exc:  # never reached by design; the loop must not die
                    self._log_once(f"checking {name}", exc)
                await self._sleep(self._delay(state))
        finally:
            if self._states.get(name) is not state:  # it left the set (not: we are closing)
                with contextlib.suppress(Exception):
                    await self.probe.forget(state.endpoint)

    async def _apply(
        self, name: str, state: _State, result: CheckResult, pushed: bool = False
    ) -> None:
        """Envoy's transitions (``HealthCheckerImplBase::ActiveHealthCheckSession``). A status
        pushed on a stream is the server's own word, sent once per change: it applies at once."""
        first = not state.checked or pushed
        state.checked = True
        state.last = result
        was = state.healthy
        if result.healthy:
            state.failures = 0
            if not state.healthy:
                state.passes += 1
                if first or state.passes >= self.healthy_threshold:
                    state.healthy = True
                    state.passes = 0
        else:
            state.passes = 0
            if state.healthy:
                state.failures += 1
                if result.definitive or state.failures >= self.unhealthy_threshold:
                    state.healthy = False
                    state.failures = 0
        if result.healthy and state.healthy and self._outlier is not None:
            self._guard("the outlier detector", self._outlier.active_check_passed, name)
        if state.healthy != was:
            verdict = "healthy" if state.healthy else "unhealthy"
            log.info("%s is now %s (%s)", name, verdict, result.reason)
            if self._binding is not None:
                self._guard("the balancer", self._binding.set, name, "active", state.healthy)
            if self._on_change is not None:
                self._guard("on_change", self._on_change, state.endpoint, state.healthy)
        pending = name in self._pending
        self._pending.discard(name)
        if state.healthy != was or pending:
            await self._maybe_publish()

    async def _maybe_publish(self) -> None:
        # Nothing before the first set is known and each of its endpoints has a result.
        if not self._ready or self._pending or self._cond is None:
            return
        healthy = self.healthy
        if healthy != self._current:
            self._current = healthy
            log.debug("%r: %d healthy", self, len(healthy))
            await self._notify()

    # -- the DiscoverySource machinery -------------------------------------------------------------

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        """One fresh read: the source's set, each endpoint probed once now; the healthy ones."""
        self._use_probe()
        try:
            if self._source is not None:
                endpoints = await self._source.resolve()
            else:
                endpoints = frozenset(s.endpoint for s in self._states.values())
            sem = asyncio.Semaphore(self._max_concurrency)

            async def one(ep: Endpoint) -> tuple[Endpoint, CheckResult]:
                async with sem:
                    return ep, await self._check(ep)

            results = await asyncio.gather(*(one(ep) for ep in endpoints))
        finally:
            await self._release_probe()
        return frozenset(ep for ep, result in results if result), None

    def _use_probe(self) -> None:
        self.probe._users += 1

    async def _release_probe(self) -> None:
        """One user of the probe is done; the last one closes it (see the class docstring)."""
        self.probe._users -= 1
        if self.probe._users <= 0:
            self.probe._users = 0
            try:
                await self.probe.aclose()
            except Exception as exc:
                self._log_once("probe.aclose()", exc)

    async def _run(self) -> None:
        self._sem = asyncio.Semaphore(self._max_concurrency)
        self._loop_running = True
        self._ready = False
        self._use_probe()
        try:
            for name in self._states:
                self._start(name)
            if self._source is None:
                self._begin()
                await self._maybe_publish()
                await asyncio.Event().wait()
            while True:
                try:
                    await self._follow(self._source)
                except Exception as exc:  # the checker's task must never die
                    self._log_once("following the source", exc)
                    await self._sleep(self.unhealthy_interval)
        finally:
            self._loop_running = False
            tasks = [*self._tasks.values(), *self._aux]
            self._tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release_probe()

    def _begin(self) -> None:
        """The first set is known: publish once each of its endpoints has a result."""
        self._pending = {n for n, s in self._states.items() if not s.checked}
        self._ready = True

    async def _follow(self, source: DiscoverySource | None) -> None:
        assert source is not None
        if source.running:  # already running (shared with someone else): just watch
            await self._follow_running(source)
            return
        async with source:
            await self._follow_running(source)

    async def _follow_running(self, source: DiscoverySource) -> None:
        async for endpoints in source.watch():
            self._update(endpoints)
            if not self._ready:
                self._begin()
            await self._maybe_publish()
        await asyncio.Event().wait()  # the source closed: keep the last set until we close
