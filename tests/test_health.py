"""meshcore.health probes and HealthChecker against real servers on 127.0.0.1 (port 0).

TCP: an asyncio listener and a closed port (a socket bound, not listening, held for the test).
HTTP: the standard library's threading HTTP server
with chosen statuses and a slow path. gRPC: grpcio's own ``grpc_health.v1`` HealthServicer on a
real grpc server, stopped and restarted on the same port. Timeouts here are hang guards only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshcore import Balancer, ConfigError, Endpoint
from meshcore.discovery import DiscoverySource, EndpointSet, StaticDiscovery
from meshcore.health import (
    GRPC_KEEPALIVE_OPTIONS,
    BalancerHealth,
    CheckResult,
    GrpcProbe,
    HealthChecker,
    HttpProbe,
    OutlierDetector,
    Probe,
    TcpProbe,
)
from watching import Watcher, eventually, run

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def closed() -> Iterator[Endpoint]:
    """An endpoint nobody listens on: a socket bound to it but not listening, held open for the
    test, so no other process can take the port, and a connect gets ECONNREFUSED."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield Endpoint("127.0.0.1", s.getsockname()[1])


# -- servers --------------------------------------------------------------------------------


async def _drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def tcp_server(port: int = 0) -> tuple[asyncio.Server, Endpoint]:
    server = await asyncio.start_server(_drop, "127.0.0.1", port)
    return server, Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])


async def stop_tcp(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


class HttpServer:
    """``GET /<anything>`` answers ``statuses[path]`` (default 200); ``/slow`` waits until the
    server stops. Records the Host headers it saw."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.hosts: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("host", ""))
                if self.path == "/slow":
                    outer.release.wait(10)
                status = outer.statuses.get(self.path, 200)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = Endpoint("127.0.0.1", self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.stop()


class GrpcServer:
    """A grpc server with grpcio's HealthServicer; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, options: Iterable[tuple[str, int]] = ()) -> None:
        self.port = 0
        self.options = list(options)
        self.server: grpc.Server | None = None
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self.start()

    def start(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=4), options=self.options)
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self.server = server
        self.endpoint = Endpoint("127.0.0.1", self.port)

    def set(self, service: str, status: int) -> None:
        self.servicer.set(service, status)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(None).wait(10)
            self.server = None


@pytest.fixture
def grpc_server() -> Iterator[GrpcServer]:
    server = GrpcServer()
    yield server
    server.stop()


class Recording(Probe):
    """A real probe, with every result kept in order."""

    def __init__(self, inner: Probe) -> None:
        self.inner = inner
        self.streaming = inner.streaming
        self.results: list[CheckResult] = []

    async def check(self, endpoint: Endpoint) -> CheckResult:
        result = await self.inner.check(endpoint)
        self.results.append(result)
        return result

    async def watch(self, endpoint: Endpoint) -> AsyncIterator[CheckResult]:
        async for result in self.inner.watch(endpoint):
            self.results.append(result)
            yield result

    async def aclose(self) -> None:
        await self.inner.aclose()


class Pushed(DiscoverySource):
    """A source whose sets the test pushes (the base class's machinery, no server)."""

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        super().__init__()
        self._set: EndpointSet = frozenset(endpoints)
        self._new = asyncio.Event()
        self._new.set()

    def push(self, endpoints: Iterable[Endpoint]) -> None:
        self._set = frozenset(endpoints)
        self._new.set()

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        return self._set, None

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        await self._new.wait()
        self._new.clear()
        return self._set, 0.0


async def leftover_tasks(*watchers: Watcher) -> list[str]:
    """Tasks still alive besides the test's own and ``run()``'s wrapper around it, once the
    given watchers saw their iteration end (their source is closed). grpc.aio finishes a
    cancelled call in a task of its own: those get until a hang guard to end."""
    for w in watchers:
        await asyncio.wait_for(w.task, 10.0)

    def alive() -> list[str]:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        names = [getattr(t.get_coro(), "__qualname__", "?") for t in others]
        return [n for n in names if n != "run.<locals>.bounded"]

    with contextlib.suppress(AssertionError):
        await eventually(lambda: not alive(), timeout=10.0)
    return alive()


# -- TCP ------------------------------------------------------------------------------------


def test_tcp_probe_listening_and_closed() -> None:
    async def main() -> None:
        server, ep = await tcp_server()
        probe = TcpProbe(timeout=2.0)
        assert await probe.check(ep) == CheckResult(True, "ok")
        await stop_tcp(server)
        result = await probe.check(ep)
        assert not result and not result.definitive and "refused" in result.reason.lower()

    run(main())


def test_checker_thresholds_with_a_server_stopped_and_started() -> None:
    async def main() -> None:
        server, ep = await tcp_server()
        probe = Recording(TcpProbe(timeout=2.0))
        log: list[tuple[int, bool]] = []
        checker = HealthChecker(
            probe,
            [ep],
            interval=0.02,
            healthy_threshold=2,
            unhealthy_threshold=3,
            on_change=lambda e, ok: log.append((len(probe.results), ok)),
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            assert log == [(1, True)]  # unhealthy until the first check, which passed

            await stop_tcp(server)
            assert await w.next() == frozenset()
            n = log[-1][0]
            seen = [r.healthy for r in probe.results[:n]]
            assert seen[-4:] == [True, False, False, False]  # exactly the third failure

            server, _ = await tcp_server(ep.port)
            assert await w.next() == {ep}
            n = log[-1][0]
            seen = [r.healthy for r in probe.results[:n]]
            assert seen[-3:] == [False, True, True]  # exactly the second pass
            assert [ok for _, ok in log] == [True, False, True]
            state = h.status()[ep.address]
            assert state.healthy and state.last is not None and state.last.healthy
        await stop_tcp(server)
        assert await leftover_tasks(w) == []

    run(main())


def test_first_failures_and_initially_healthy(closed: Endpoint) -> None:
    async def main() -> None:
        probe = Recording(TcpProbe(timeout=2.0))
        async with HealthChecker(probe, [closed], interval=0.02) as h:
            assert await Watcher(h.watch()).next() == frozenset()  # published after one result
            assert len(probe.results) >= 1

        probe = Recording(TcpProbe(timeout=2.0))
        log: list[tuple[int, bool]] = []
        checker = HealthChecker(
            probe,
            [closed],
            interval=0.02,
            unhealthy_threshold=3,
            initially_healthy=True,
            on_change=lambda e, ok: log.append((len(probe.results), ok)),
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {closed}  # healthy until proven otherwise
            assert await w.next() == frozenset()
            assert log == [(3, False)]

    run(main())


# -- HTTP -----------------------------------------------------------------------------------


def test_http_probe_statuses_ranges_and_host(http_server: HttpServer) -> None:
    async def main() -> None:
        ep = http_server.endpoint
        http_server.statuses.update({"/ok": 200, "/nc": 204, "/moved": 302, "/down": 503})
        probe = HttpProbe("/ok")
        assert await probe.check(ep) == CheckResult(True, "HTTP 200")
        for path, expected in [("/nc", False), ("/moved", False), ("/down", False)]:
            result = await HttpProbe(path).check(ep)  # Envoy's default: 200 only
            assert bool(result) is expected and result.definitive
        k8s = HttpProbe("/moved", expected_statuses=range(200, 400))
        assert await k8s.check(ep)
        assert await HttpProbe("/nc", expected_statuses=range(200, 400)).check(ep)
        mixed = HttpProbe("/down", expected_statuses=[200, range(500, 504)])
        assert await mixed.check(ep)
        retriable = await HttpProbe("/down", retriable_statuses=[503]).check(ep)
        assert not retriable and not retriable.definitive
        http_server.hosts.clear()
        await HttpProbe("/ok", host="api.example").check(ep)
        await probe.check(ep)
        assert http_server.hosts == ["api.example", ep.address]
        for p in (probe, k8s, mixed):
            await p.aclose()

    run(main())


def test_http_probe_timeout_and_refused(http_server: HttpServer, closed: Endpoint) -> None:
    async def main() -> None:
        probe = HttpProbe("/slow", timeout=0.2)
        result = await probe.check(http_server.endpoint)
        assert not result and not result.definitive and "timed out" in result.reason
        refused = await probe.check(closed)
        assert not refused and not refused.definitive
        await probe.aclose()

    run(main())


def test_checker_http_bad_status_is_immediate_retriable_counts(http_server: HttpServer) -> None:
    async def one(retriable: list[int], path: str) -> list[bool]:
        probe = Recording(HttpProbe(path, retriable_statuses=retriable))
        log: list[int] = []
        checker = HealthChecker(
            probe,
            [http_server.endpoint],
            interval=0.02,
            unhealthy_threshold=4,
            on_change=lambda e, ok: log.append(len(probe.results)) if not ok else None,
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {http_server.endpoint}
            http_server.statuses[path] = 503
            assert await w.next() == frozenset()
        return [r.healthy for r in probe.results[: log[0]]]

    async def main() -> None:
        immediate = await one([], "/a")
        assert immediate[-2:] == [True, False]  # the endpoint answered 503: unhealthy at once
        counted = await one([503], "/b")
        assert counted[-5:] == [True, False, False, False, False]

    run(main())


# -- gRPC -----------------------------------------------------------------------------------


def test_grpc_probe_check_semantics(grpc_server: GrpcServer) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("", SERVING)
        grpc_server.set("echo", NOT_SERVING)
        probe = GrpcProbe(timeout=2.0)
        assert await probe.check(ep) == CheckResult(True, "SERVING")
        echo = GrpcProbe("echo", timeout=2.0)
        assert await echo.check(ep) == CheckResult(False, "NOT_SERVING", definitive=True)
        unknown = await GrpcProbe("nope", timeout=2.0).check(ep)
        assert unknown == CheckResult(False, "NOT_FOUND", definitive=True)

        grpc_server.stop()
        down = await probe.check(ep)
        assert not down and not down.definitive and down.reason.startswith("UNAVAILABLE")
        grpc_server.start()  # same port, fresh servicer
        grpc_server.set("", SERVING)
        assert await probe.check(ep)  # the probe dialled again
        await probe.aclose()
        await echo.aclose()

    run(main())


def test_grpc_watch_probe_pushes(grpc_server: GrpcServer) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("svc", SERVING)
        probe = GrpcProbe("svc", use_watch=True, timeout=5.0)
        it = probe.watch(ep)
        assert await anext(it) == CheckResult(True, "SERVING")
        grpc_server.set("svc", NOT_SERVING)
        assert await anext(it) == CheckResult(False, "NOT_SERVING", definitive=True)
        grpc_server.set("svc", SERVING)
        assert await anext(it)
        grpc_server.stop()
        ended = await anext(it)
        assert not ended and not ended.definitive and ended.reason.startswith("UNAVAILABLE")
        with pytest.raises(StopAsyncIteration):
            await anext(it)

        grpc_server.start()
        unknown = probe.watch(ep)  # a fresh servicer: "svc" is unknown, the stream stays open
        assert await anext(unknown) == CheckResult(False, "SERVICE_UNKNOWN", definitive=True)
        grpc_server.set("svc", SERVING)
        assert await anext(unknown)
        assert isinstance(unknown, AsyncGenerator)
        await unknown.aclose()
        await probe.aclose()

    run(main())


def test_checker_grpc_watch_reacts_to_pushes_at_once(grpc_server: GrpcServer) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("", SERVING)
        # A one-hour interval: every change seen below came from a push, not from polling.
        checker = HealthChecker(GrpcProbe(use_watch=True, timeout=5.0), [ep], interval=3600.0)
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            grpc_server.set("", NOT_SERVING)
            assert await w.next() == frozenset()
            grpc_server.set("", SERVING)
            assert await w.next() == {ep}  # a pushed SERVING applies at once
        assert await leftover_tasks(w) == []

    run(main())


def test_checker_grpc_check_server_stopped_then_back(grpc_server: GrpcServer) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("", SERVING)
        checker = HealthChecker(
            GrpcProbe(timeout=2.0), [ep], interval=0.02, unhealthy_threshold=2, healthy_threshold=1
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            await asyncio.to_thread(grpc_server.stop)
            assert await w.next() == frozenset()
            await asyncio.to_thread(grpc_server.start)
            grpc_server.set("", SERVING)
            assert await w.next() == {ep}

    run(main())


# -- composition: discovery sources, balancers, outlier detection ----------------------------


def test_checker_over_static_discovery(closed: Endpoint) -> None:
    async def main() -> None:
        server, up = await tcp_server()
        down = closed
        async with HealthChecker(TcpProbe(), StaticDiscovery([up, down]), interval=0.05) as h:
            w1 = Watcher(h.watch())
            assert await w1.next() == {up}
            assert not h.stale
            state = h.status()[down.address]
            assert not state.healthy and state.last is not None and not state.last
        assert await HealthChecker(TcpProbe(), [up, down]).resolve() == {up}

        src = StaticDiscovery([up])
        async with src, HealthChecker(TcpProbe(), src, interval=0.05) as h:  # shared source
            w2 = Watcher(h.watch())
            assert await w2.next() == {up}
        await stop_tcp(server)
        assert await leftover_tasks(w1, w2) == []

    run(main())


def test_checker_drives_a_balancer(closed: Endpoint) -> None:
    async def main() -> None:
        server, up = await tcp_server()
        up = Endpoint(up.host, up.port, weight=3)
        down = closed
        b = Balancer("round_robin", [], seed=1)
        async with HealthChecker(TcpProbe(), [up, down], interval=0.05, balancer=b) as h:
            await Watcher(h.watch()).next()
            info = {e.name: (e.health, e.weight) for e in b.endpoints()}
            assert info == {up.address: ("healthy", 3.0), down.address: ("unhealthy", 1.0)}
            assert {b.pick() for _ in range(20)} == {up.address}
            await stop_tcp(server)
            await eventually(
                lambda: {e.name: e.health for e in b.endpoints()}[up.address] == "unhealthy"
            )
        assert {e.health for e in b.endpoints()} == {"unhealthy"}

    run(main())


def test_checker_without_source_follows_set_endpoints() -> None:
    async def main() -> None:
        server, up = await tcp_server()
        h = HealthChecker(TcpProbe(), interval=0.05)
        with pytest.raises(RuntimeError):
            await anext(h.watch())
        async with h:
            w = Watcher(h.watch())
            assert await w.next() == frozenset()
            h.set_endpoints([up.address])
            assert await w.next() == {up}
            h.set_endpoints([])
            assert await w.next() == frozenset()
        await stop_tcp(server)

    run(main())


def test_passing_active_check_ends_an_outlier_ejection() -> None:
    async def main() -> None:
        server, up = await tcp_server()
        b = Balancer("round_robin", [up.address, "10.9.9.9:80"], seed=1)
        shared = BalancerHealth(b)
        d = OutlierDetector([up, "10.9.9.9:80"], always_eject_one_host=True, balancer=shared)
        for _ in range(5):
            d.record(up, 503, now=0.0)
        assert d.is_ejected(up) and b.endpoints()[0].health == "unhealthy"
        async with HealthChecker(TcpProbe(), [up], interval=0.05, outlier=d):
            await eventually(lambda: not d.is_ejected(up))
        assert b.endpoints()[0].health == "healthy"
        await stop_tcp(server)

    run(main())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1.0},
        {"jitter": -0.5},
        {"healthy_threshold": 0},
        {"unhealthy_threshold": 1.5},
        {"max_concurrency": 0},
    ],
)
def test_checker_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        HealthChecker(TcpProbe(), [], **kwargs)


def test_probes_reject_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        TcpProbe(timeout=0)
    with pytest.raises(ConfigError):
        HttpProbe("healthz")
    with pytest.raises(ConfigError):
        HttpProbe(expected_statuses=[600])
    with pytest.raises(ConfigError):
        HttpProbe(scheme="ftp")
    with pytest.raises(ConfigError):
        GrpcProbe(timeout=-1)
    with pytest.raises(ConfigError):
        HealthChecker(object(), [])  # type: ignore[arg-type]  # bad on purpose
    with pytest.raises(ConfigError):
        HealthChecker(TcpProbe(), ["no-port"])


class Broken(Probe):
    """A user probe with a bug: the checker must survive it and log it once."""

    def __init__(self) -> None:
        self.calls = 0

    async def check(self, endpoint: Endpoint) -> CheckResult:
        self.calls += 1
        raise ZeroDivisionError("bug")


def test_a_probe_that_raises_is_a_failure_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        probe = Broken()
        ep = Endpoint("127.0.0.1", 9)
        async with HealthChecker(probe, [ep], interval=0.01, initially_healthy=True) as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            assert await w.next() == frozenset()  # three failures
            await eventually(lambda: probe.calls >= 5)
            last = h.status()[ep.address].last
            assert last is not None and "ZeroDivisionError" in last.reason
        with pytest.raises(RuntimeError):
            h.set_endpoints([ep])  # it follows its (static) source

    with caplog.at_level("WARNING", logger="meshcore.health"):
        run(main())
    assert sum("probe raised" in r.getMessage() for r in caplog.records) == 1


# -- robustness: the checker never dies, owns what it opens ------------------------------------


class RaisingHealth(BalancerHealth):
    """A balancer binding with a bug: every set_endpoints raises."""

    def set_endpoints(self, endpoints: Any) -> None:
        raise RuntimeError("balancer bug")


def test_a_raising_balancer_and_on_change_do_not_stop_the_checker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_change(endpoint: Endpoint, healthy: bool) -> None:
        raise ValueError("callback bug")

    async def main() -> None:
        server, a = await tcp_server()
        server2, b = await tcp_server()
        source = Pushed([a])
        binding = RaisingHealth(Balancer("round_robin", [], seed=1))
        checker = HealthChecker(
            TcpProbe(), source, interval=0.02, balancer=binding, on_change=on_change
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {a}
            source.push([a, b])
            assert await w.next() == {a, b}
            source.push([b])
            assert await w.next() == {b}
            await stop_tcp(server2)
            assert await w.next() == frozenset()  # still checking
            assert h.running
        await stop_tcp(server)
        assert await leftover_tasks(w) == []

    with caplog.at_level("WARNING", logger="meshcore.health"):
        run(main())
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sum("the balancer raised" in m for m in messages) == 1  # once, not per update
    assert sum("on_change raised" in m for m in messages) == 1


def test_one_shot_resolve_closes_what_it_opened(
    grpc_server: GrpcServer, http_server: HttpServer
) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("", SERVING)
        probe = GrpcProbe(timeout=2.0)
        assert await HealthChecker(probe, [ep]).resolve() == {ep}
        assert probe._channels == {}  # the one-shot's channel is closed
        http = HttpProbe()
        assert await HealthChecker(http, [http_server.endpoint]).resolve() == {http_server.endpoint}
        assert http._client is None

        # A probe shared with a running checker: a one-shot on it leaves its channel alone.
        shared = GrpcProbe(use_watch=True, timeout=5.0)
        async with HealthChecker(shared, [ep], interval=3600.0) as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            channel = shared._channels[ep.address]
            assert await HealthChecker(shared, [ep]).resolve() == {ep}
            assert shared._channels[ep.address] is channel
            assert channel.get_state() is not grpc.ChannelConnectivity.SHUTDOWN
            grpc_server.set("", NOT_SERVING)
            assert await w.next() == frozenset()  # its Watch stream still works
        assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN  # closed by the last user
        assert await leftover_tasks(w) == []

    run(main())


def test_checker_aclose_does_not_swallow_the_callers_cancellation() -> None:
    async def main() -> None:
        server, ep = await tcp_server()
        h = HealthChecker(TcpProbe(), [ep], interval=3600.0)
        await h.__aenter__()
        after: list[bool] = []

        async def closer() -> None:
            await h.aclose()
            after.append(True)

        task = asyncio.create_task(closer())
        await asyncio.sleep(0)  # closer cancelled the checker's task and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and after == []
        assert not h.running
        await stop_tcp(server)

    run(main())


# -- gRPC through membership changes, restarts and silent partitions ---------------------------


@pytest.fixture
def grpc_pair() -> Iterator[tuple[GrpcServer, GrpcServer]]:
    a, b = GrpcServer(), GrpcServer()
    yield a, b
    a.stop()
    b.stop()


@pytest.mark.parametrize("use_watch", [False, True])
def test_checker_grpc_follows_membership_and_forgets_the_removed(
    grpc_pair: tuple[GrpcServer, GrpcServer], use_watch: bool
) -> None:
    async def main() -> None:
        a, b = grpc_pair
        a.set("", SERVING)
        b.set("", SERVING)
        probe = GrpcProbe(use_watch=use_watch, timeout=5.0)
        source = Pushed([a.endpoint, b.endpoint])
        async with HealthChecker(probe, source, interval=0.05) as h:
            w = Watcher(h.watch())
            assert await w.next() == {a.endpoint, b.endpoint}
            await eventually(lambda: b.endpoint.address in probe._channels)
            gone = probe._channels[b.endpoint.address]
            source.push([a.endpoint])
            assert await w.next() == {a.endpoint}
            await eventually(lambda: b.endpoint.address not in probe._channels)
            assert gone.get_state() is grpc.ChannelConnectivity.SHUTDOWN  # its stream with it
            assert set(h.status()) == {a.endpoint.address}
            source.push([a.endpoint, b.endpoint])  # back: a fresh channel
            assert await w.next() == {a.endpoint, b.endpoint}
        assert probe._channels == {}
        assert await leftover_tasks(w) == []

    run(main())


def test_checker_grpc_watch_through_a_server_restart(grpc_server: GrpcServer) -> None:
    async def main() -> None:
        ep = grpc_server.endpoint
        grpc_server.set("", SERVING)
        checker = HealthChecker(
            GrpcProbe(use_watch=True, timeout=2.0), [ep], interval=0.05, unhealthy_threshold=1
        )
        async with checker as h:
            w = Watcher(h.watch())
            assert await w.next() == {ep}
            await asyncio.to_thread(grpc_server.stop)
            assert await w.next() == frozenset()  # the stream broke: a network failure
            await asyncio.to_thread(grpc_server.start)
            grpc_server.set("", SERVING)
            assert await w.next() == {ep}  # reopened; the pushed SERVING applies at once
            last = h.status()[ep.address].last
            assert last is not None and last.reason == "SERVING"
        assert await leftover_tasks(w) == []

    run(main())


class FreezingProxy:
    """A TCP relay to ``target``; ``freeze()`` stops relaying without closing anything, as a
    silent network partition (or a host gone without a reset) does."""

    def __init__(self, target: Endpoint) -> None:
        self.target = target
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[Any]] = []

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return Endpoint("127.0.0.1", self.server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        self.thawed.clear()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self.thawed.wait()
                writer.write(data)
                await writer.drain()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.thawed.set()  # the pumps see their sockets closed and end
        await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 10.0)
        await self.server.wait_closed()


def test_grpc_watch_ends_when_the_server_goes_silent() -> None:
    async def main() -> None:
        # The server allows frequent pings, so the test can use a short keepalive.
        server = GrpcServer(
            [
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 50),
                ("grpc.http2.max_ping_strikes", 0),
            ]
        )
        server.set("", SERVING)
        proxy = FreezingProxy(server.endpoint)
        ep = await proxy.start()
        options = {
            "grpc.keepalive_time_ms": 200,
            "grpc.keepalive_timeout_ms": 500,
            "grpc.http2.ping_timeout_ms": 500,
        }
        probe = GrpcProbe(use_watch=True, timeout=5.0, channel_options=options)
        it = probe.watch(ep)
        assert await anext(it) == CheckResult(True, "SERVING")
        proxy.freeze()
        # Without keepalive this read would wait forever; the timeout is only a hang guard.
        ended = await asyncio.wait_for(anext(it), 20.0)
        assert not ended and not ended.definitive and ended.reason.startswith("UNAVAILABLE")
        assert isinstance(it, AsyncGenerator)
        await it.aclose()
        await probe.aclose()
        await proxy.stop()
        server.stop()

    run(main())


def test_grpc_probe_channel_options() -> None:
    defaults = dict(GrpcProbe().channel_options)
    assert defaults == dict(GRPC_KEEPALIVE_OPTIONS)
    assert defaults["grpc.keepalive_time_ms"] == 300_000  # what stock servers permit
    assert defaults["grpc.http2.max_pings_without_data"] == 0
    custom = dict(
        GrpcProbe(
            channel_options=[("grpc.keepalive_time_ms", 10_000), ("grpc.primary_user_agent", "x")]
        ).channel_options
    )
    assert custom == {
        **GRPC_KEEPALIVE_OPTIONS,
        "grpc.keepalive_time_ms": 10_000,
        "grpc.primary_user_agent": "x",
    }
    with pytest.raises(ConfigError):
        GrpcProbe(channel_options={"grpc.keepalive_time_ms": 1.5})  # type: ignore[arg-type]


# -- concurrency and jitter --------------------------------------------------------------------


class Gated(Probe):
    """A real TCP probe whose checks wait at a gate; counts the checks in flight."""

    def __init__(self) -> None:
        self.inner = TcpProbe(timeout=2.0)
        self.gate = asyncio.Event()
        self.in_flight = self.peak = 0
        self.checked: set[str] = set()

    async def check(self, endpoint: Endpoint) -> CheckResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
            result = await self.inner.check(endpoint)
            self.checked.add(endpoint.address)
            return result
        finally:
            self.in_flight -= 1


def test_checker_honours_max_concurrency() -> None:
    async def main() -> None:
        servers = [await tcp_server() for _ in range(6)]
        endpoints = [ep for _, ep in servers]
        probe = Gated()
        async with HealthChecker(probe, endpoints, interval=3600.0, max_concurrency=2) as h:
            w = Watcher(h.watch())
            await eventually(lambda: probe.in_flight == 2)
            for _ in range(20):  # every task had its turn to try: the other four wait
                await asyncio.sleep(0)
            assert probe.in_flight == probe.peak == 2
            probe.gate.set()
            assert await w.next() == set(endpoints)
            assert probe.peak == 2 and probe.checked == {ep.address for ep in endpoints}
        for server, _ in servers:
            await stop_tcp(server)

    run(main())


def test_jitter_spreads_check_times_within_bounds() -> None:
    async def main() -> None:
        server, ep = await tcp_server()
        delays: list[float] = []

        async def recording_sleep(seconds: float) -> None:
            delays.append(seconds)
            await asyncio.sleep(0)

        def schedule(seed: int) -> HealthChecker:
            return HealthChecker(
                TcpProbe(),
                [ep],
                interval=10.0,
                unhealthy_interval=20.0,
                jitter=3.0,
                seed=seed,
                sleep=recording_sleep,
            )

        async with schedule(7):
            await eventually(lambda: len(delays) >= 30)
        first = delays[:30]
        # The first check passed (healthy at once): every delay is interval + [0, jitter].
        assert all(10.0 <= d <= 13.0 for d in first)
        assert len(set(first)) == 30  # spread, not one fixed period
        delays.clear()
        async with schedule(7):
            await eventually(lambda: len(delays) >= 30)
        assert delays[:30] == first  # seeded: the same schedule
        await stop_tcp(server)

        delays.clear()
        down = HealthChecker(
            TcpProbe(),
            [ep],
            interval=10.0,
            unhealthy_interval=20.0,
            jitter=3.0,
            seed=1,
            sleep=recording_sleep,
        )
        async with down:
            await eventually(lambda: len(delays) >= 10)
        assert all(20.0 <= d <= 23.0 for d in delays[:10])  # unhealthy: its own interval
        assert random.Random(1).uniform(0.0, 3.0) + 20.0 == delays[0]

    run(main())
