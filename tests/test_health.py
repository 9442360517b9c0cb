"""meshcore.health probes and HealthChecker against real servers on 127.0.0.1 (port 0).

TCP: an asyncio listener and a closed port. HTTP: the standard library's threading HTTP server
with chosen statuses and a slow path. gRPC: grpcio's own ``grpc_health.v1`` HealthServicer on a
real grpc server, stopped and restarted on the same port. Timeouts here are hang guards only.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshcore import Balancer, ConfigError, Endpoint
from meshcore.discovery import StaticDiscovery
from meshcore.health import (
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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

    def __init__(self) -> None:
        self.port = 0
        self.server: grpc.Server | None = None
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self.start()

    def start(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
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


async def leftover_tasks() -> list[str]:
    """Tasks still alive besides the test's own and ``run()``'s wrapper around it (a
    :class:`Watcher` drain gets a moment to see its iteration end)."""
    await asyncio.sleep(0.05)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    names = [getattr(t.get_coro(), "__qualname__", "?") for t in others]
    return [n for n in names if n != "run.<locals>.bounded"]


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
        assert await leftover_tasks() == []

    run(main())


def test_first_failures_and_initially_healthy() -> None:
    async def main() -> None:
        closed = Endpoint("127.0.0.1", free_port())
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


def test_http_probe_timeout_and_refused(http_server: HttpServer) -> None:
    async def main() -> None:
        probe = HttpProbe("/slow", timeout=0.2)
        result = await probe.check(http_server.endpoint)
        assert not result and not result.definitive and "timed out" in result.reason
        refused = await probe.check(Endpoint("127.0.0.1", free_port()))
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
        assert await leftover_tasks() == []

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


def test_checker_over_static_discovery() -> None:
    async def main() -> None:
        server, up = await tcp_server()
        down = Endpoint("127.0.0.1", free_port())
        async with HealthChecker(TcpProbe(), StaticDiscovery([up, down]), interval=0.05) as h:
            assert await Watcher(h.watch()).next() == {up}
            assert not h.stale
            state = h.status()[down.address]
            assert not state.healthy and state.last is not None and not state.last
        assert await HealthChecker(TcpProbe(), [up, down]).resolve() == {up}

        src = StaticDiscovery([up])
        async with src, HealthChecker(TcpProbe(), src, interval=0.05) as h:  # shared source
            assert await Watcher(h.watch()).next() == {up}
        await stop_tcp(server)
        assert await leftover_tasks() == []

    run(main())


def test_checker_drives_a_balancer() -> None:
    async def main() -> None:
        server, up = await tcp_server()
        up = Endpoint(up.host, up.port, weight=3)
        down = Endpoint("127.0.0.1", free_port())
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
