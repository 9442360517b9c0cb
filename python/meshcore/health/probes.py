"""Active probes: one check of one endpoint, over TCP, HTTP or the gRPC health protocol.

A probe answers ``await probe.check(endpoint)`` with a :class:`CheckResult` (truthy when the
endpoint is healthy) and never raises for a failing endpoint. Failures come in two kinds, as in
Envoy's active health checker:

- *network* failures (connection refused or reset, timeout, gRPC ``UNAVAILABLE``): nobody
  answered, so they count toward the checker's ``unhealthy_threshold``;
- *definitive* failures (``definitive=True``): the endpoint answered and said it is not healthy (an
  HTTP status outside ``expected_statuses``, gRPC ``NOT_SERVING``, an unknown gRPC service). A
  :class:`~meshcore.health.HealthChecker` marks the endpoint unhealthy at once, whatever the
  threshold, as Envoy does.

A probe may hold connections (the HTTP client, one gRPC channel per endpoint); ``forget()`` drops
one endpoint's and ``aclose()`` all of them. A :class:`~meshcore.health.HealthChecker` calls both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import grpc
import grpc.aio
import httpx
from grpc_health.v1 import health_pb2

from meshcore._http import ssl_verify
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError

__all__ = ["GRPC_KEEPALIVE_OPTIONS", "CheckResult", "GrpcProbe", "HttpProbe", "Probe", "TcpProbe"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``healthy``, a human-readable ``reason`` ("connection refused",
    "HTTP 503", "NOT_SERVING"), and whether a failure is ``definitive`` (the endpoint answered
    "unhealthy") rather than a network failure. Truthy exactly when healthy."""

    healthy: bool
    reason: str = ""
    definitive: bool = False

    def __bool__(self) -> bool:
        return self.healthy


_PASS = CheckResult(True, "ok")


def _require_timeout(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


class Probe:
    """Base of every probe. Subclasses implement :meth:`check`; a streaming probe (gRPC Watch)
    also sets ``streaming = True`` and implements :meth:`watch`."""

    #: True when :meth:`watch` pushes results (the checker then keeps one stream per endpoint).
    streaming: bool = False

    #: How many running checkers and one-shot ``resolve()`` calls use this probe now. The
    #: connections a probe holds belong to all of them together: the last one to finish calls
    #: :meth:`aclose` (a probe shared by two checkers is not closed under the other's feet).
    _users: int = 0

    async def check(self, endpoint: Endpoint) -> CheckResult:
        """Check ``endpoint`` once. Never raises for a failing endpoint: the failure is the
        result."""
        raise NotImplementedError

    def watch(self, endpoint: Endpoint) -> AsyncIterator[CheckResult]:
        """Results pushed by ``endpoint`` as they come; the iteration ends (after yielding a
        failure) when the stream breaks. Only for ``streaming`` probes."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def forget(self, endpoint: Endpoint) -> None:
        """Drop whatever the probe keeps for ``endpoint`` (it left the set)."""

    async def aclose(self) -> None:
        """Release every connection the probe holds; it may be used again afterwards."""


class TcpProbe(Probe):
    """Healthy when a TCP connection to the endpoint opens within ``timeout`` seconds (it is closed
    at once). Every failure is a network failure."""

    def __init__(self, *, timeout: float = 1.0) -> None:
        self.timeout = _require_timeout(timeout)

    def __repr__(self) -> str:
        return f"TcpProbe(timeout={self.timeout})"

    async def check(self, endpoint: Endpoint) -> CheckResult:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except TimeoutError:
            return CheckResult(False, f"connect timed out after {self.timeout} s")
        except OSError as exc:
            # asyncio's message is "Connect call failed (...)"; the errno says why.
            reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            return CheckResult(False, reason)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return _PASS


def _status_set(statuses: range | Iterable[int | range]) -> frozenset[int]:
    items: Iterable[int | range] = [statuses] if isinstance(statuses, range) else statuses
    out: set[int] = set()
    for item in items:
        codes = item if isinstance(item, range) else [item]
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ConfigError(f"HTTP statuses must be ints in 100..599, got {code!r}")
            out.add(code)
    return frozenset(out)


class HttpProbe(Probe):
    """An HTTP ``GET`` of ``path`` (httpx, HTTP/1.1, redirects not followed, proxies from the
    environment ignored), healthy when the status is in ``expected_statuses``.

    ``expected_statuses`` is a ``range``, or a list of ints and ranges; the default is 200 only,
    as in Envoy (Kubernetes probes accept 200..399: pass ``range(200, 400)``). A status in
    ``retriable_statuses`` is a failure that counts toward the checker's ``unhealthy_threshold``
    (Envoy's ``retriable_statuses``); any other unexpected status is a definitive failure.
    ``host`` sets the ``Host`` header (default: the endpoint's address), ``scheme`` is "http" or
    "https" (``verify`` as in httpx), ``timeout`` bounds the whole request in seconds.
    """

    def __init__(
        self,
        path: str = "/",
        *,
        expected_statuses: range | Iterable[int | range] = range(200, 201),
        retriable_statuses: range | Iterable[int | range] = (),
        host: str | None = None,
        scheme: str = "http",
        timeout: float = 1.0,
        headers: dict[str, str] | None = None,
        verify: bool = True,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigError(f"path must start with '/', got {path!r}")
        if scheme not in ("http", "https"):
            raise ConfigError(f"scheme must be 'http' or 'https', got {scheme!r}")
        self.path = path
        self.expected_statuses = _status_set(expected_statuses)
        self.retriable_statuses = _status_set(retriable_statuses)
        if not self.expected_statuses:
            raise ConfigError("expected_statuses is empty")
        self.host = host
        self.scheme = scheme
        self.timeout = _require_timeout(timeout)
        self._headers = {"user-agent": "meshcore-health", **(headers or {})}
        self._verify = verify
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"HttpProbe({self.scheme}://*{self.path}, timeout={self.timeout})"

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,
                verify=ssl_verify(self._verify),
                headers=self._headers,
            )
        return self._client

    async def check(self, endpoint: Endpoint) -> CheckResult:
        url = f"{self.scheme}://{endpoint.address}{self.path}"
        headers = {"host": self.host} if self.host is not None else None
        try:
            # The overall bound: httpx's timeout applies per phase (connect, read, ...).
            async with asyncio.timeout(self.timeout):
                response = await self._get_client().get(url, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return CheckResult(False, f"timed out after {self.timeout} s")
        except httpx.HTTPError as exc:
            return CheckResult(False, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if status in self.expected_statuses:
            return CheckResult(True, f"HTTP {status}")
        retriable = status in self.retriable_statuses
        return CheckResult(False, f"HTTP {status}", definitive=not retriable)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


_Status = health_pb2.HealthCheckResponse.ServingStatus
_SERVING = health_pb2.HealthCheckResponse.SERVING
# Codes that mean "nobody answered" (count toward the threshold; the channel is rebuilt).
_NETWORK_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


_CHECK = "/grpc.health.v1.Health/Check"
_WATCH = "/grpc.health.v1.Health/Watch"


def _status_name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


#: The channel options every :class:`GrpcProbe` channel gets unless ``channel_options`` overrides
#: them: HTTP/2 keepalive pings, so that a ``Watch`` stream whose server vanished without a reset
#: (a host gone, a silent partition) fails as ``UNAVAILABLE`` instead of waiting forever.
#: Five minutes is the shortest ping interval stock gRPC servers (C-core, Go, Java) accept on a
#: stream that carries no data: a shorter one gets the connection closed with GOAWAY
#: ``too_many_pings`` after two pings, which would break every idle ``Watch``.
#: No pings without a call (``permit_without_calls`` 0: an idle channel needs no liveness), and no
#: cap on pings without data (``max_pings_without_data`` 0: an idle ``Watch`` sends none). A ping
#: unanswered for 20 s fails the connection: grpcio (1.85) enforces ``grpc.http2.ping_timeout_ms``
#: (default 60 s) on keepalive pings too, so it is set along with ``keepalive_timeout_ms``.
GRPC_KEEPALIVE_OPTIONS: Mapping[str, int] = {
    "grpc.keepalive_time_ms": 300_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.http2.ping_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.http2.max_pings_without_data": 0,
}


class GrpcProbe(Probe):
    """The gRPC Health Checking Protocol (``grpc.health.v1.Health``) for ``service`` (``""``: the
    whole server), on grpc.aio with one channel per endpoint.

    ``SERVING`` is healthy. ``NOT_SERVING``, ``SERVICE_UNKNOWN``, ``UNKNOWN`` and an RPC error
    such as ``NOT_FOUND`` (the stock servicer's answer for an unknown service) or
    ``UNIMPLEMENTED`` (no health service) are definitive failures. ``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED`` (``timeout`` seconds per ``Check``) and ``CANCELLED`` are network
    failures: the endpoint's channel is closed and the next check dials again.

    With ``use_watch=True`` the probe streams: a :class:`~meshcore.health.HealthChecker` keeps one
    ``Watch`` call open per endpoint and reacts to every status the server pushes at once; a broken
    stream is a network failure and is reopened after the checker's interval. ``timeout`` then
    bounds the wait for the first status of each stream. After the first status a stream can
    stay silent for as long as the health does not change, so its liveness rests on HTTP/2
    keepalive: see :data:`GRPC_KEEPALIVE_OPTIONS` (a vanished server is noticed within
    ``keepalive_time + keepalive_timeout``, about 5 min 20 s by default). Against servers that
    allow it (grpc-core ``grpc.http2.min_recv_ping_interval_without_data_ms``, grpc-go
    ``keepalive.EnforcementPolicy.MinTime``) pass a shorter ``grpc.keepalive_time_ms``.

    ``channel_options``: gRPC channel arguments (a mapping or ``(name, value)`` pairs) laid over
    :data:`GRPC_KEEPALIVE_OPTIONS` for every channel; the result is ``probe.channel_options``.
    """

    def __init__(
        self,
        service: str = "",
        *,
        timeout: float = 1.0,
        use_watch: bool = False,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Mapping[str, str | int] | Iterable[tuple[str, str | int]] = (),
    ) -> None:
        self.service = service
        self.timeout = _require_timeout(timeout)
        self.streaming = bool(use_watch)
        if credentials is None and secure:
            credentials = grpc.ssl_channel_credentials()
        self._credentials = credentials
        extra = dict(
            channel_options.items() if isinstance(channel_options, Mapping) else channel_options
        )
        for key, value in extra.items():
            if (
                not isinstance(key, str)
                or isinstance(value, bool)
                or not isinstance(value, str | int)
            ):
                raise ConfigError(
                    f"channel_options: expected str -> int | str, got {key!r}: {value!r}"
                )
        #: The options each channel is created with (name, value), defaults first.
        self.channel_options: tuple[tuple[str, str | int], ...] = tuple(
            {**GRPC_KEEPALIVE_OPTIONS, **extra}.items()
        )
        self._channels: dict[str, grpc.aio.Channel] = {}

    def __repr__(self) -> str:
        mode = "watch" if self.streaming else "check"
        return f"GrpcProbe(service={self.service!r}, {mode}, timeout={self.timeout})"

    def _channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint.address)
        if channel is None:
            options = self.channel_options
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(endpoint.address, self._credentials, options)
            else:
                channel = grpc.aio.insecure_channel(endpoint.address, options)
            self._channels[endpoint.address] = channel
        return channel

    def _result(self, status: int) -> CheckResult:
        if status == _SERVING:
            return CheckResult(True, "SERVING")
        return CheckResult(False, _status_name(status), definitive=True)

    async def _rpc_failed(self, endpoint: Endpoint, exc: grpc.aio.AioRpcError) -> CheckResult:
        code = exc.code()
        if code in _NETWORK_CODES:
            await self.forget(endpoint)  # reconnect on the next check
            return CheckResult(False, f"{code.name}: {exc.details() or ''}".rstrip(": "))
        return CheckResult(False, code.name, definitive=True)

    async def check(self, endpoint: Endpoint) -> CheckResult:
        request = health_pb2.HealthCheckRequest(service=self.service)
        try:
            call = self._channel(endpoint).unary_unary(
                _CHECK,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            response = await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            return await self._rpc_failed(endpoint, exc)
        return self._result(response.status)

    async def watch(self, endpoint: Endpoint) -> AsyncIterator[CheckResult]:
        request = health_pb2.HealthCheckRequest(service=self.service)
        call = self._channel(endpoint).unary_stream(
            _WATCH,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )(request)
        try:
            first = True
            while True:
                try:
                    if first:
                        async with asyncio.timeout(self.timeout):
                            response = await call.read()
                        first = False
                    else:
                        response = await call.read()
                except TimeoutError:
                    await self.forget(endpoint)
                    yield CheckResult(False, f"no status within {self.timeout} s")
                    return
                except grpc.aio.AioRpcError as exc:
                    yield await self._rpc_failed(endpoint, exc)
                    return
                if not isinstance(response, health_pb2.HealthCheckResponse):  # EOF
                    yield CheckResult(False, "UNAVAILABLE: the server ended the stream")
                    return
                yield self._result(response.status)
        finally:
            call.cancel()

    async def forget(self, endpoint: Endpoint) -> None:
        channel = self._channels.pop(endpoint.address, None)
        if channel is not None:
            await channel.close()

    async def aclose(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()
