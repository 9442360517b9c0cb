"""A small in-process xDS management server (Envoy v3, state of the world) on ``grpc.aio``.

It serves ``AggregatedDiscoveryService.StreamAggregatedResources`` (ADS) and
``EndpointDiscoveryService.StreamEndpoints`` (plain EDS) from resources the test sets::

    async with XdsServer() as server:                  # 127.0.0.1, a free port
        server.set_service("echo", "echo-cluster")     # Listener + Cluster for xds:///echo
        server.set_endpoints("echo-cluster", [("127.0.0.1", 50051), ("127.0.0.1", 50052, 3)])
        ...                                            # point a client at server.address

Protocol, per stream and type URL (Envoy's "xDS REST and gRPC protocol"): the server tracks the
subscribed names and the nonce of its last response. A request carrying that nonce is an ACK, or a
NACK when it has ``error_detail``; either is answered only when the subscribed names changed. A
request with an older nonce is stale and ignored. A request without a nonce (the first one of a
stream for a type) subscribes, and is answered with the current resources, whatever version the
client says it has. Each change of a resource pushes the new state of its type to every stream
subscribed to it. An empty name list subscribes to every resource for listeners and clusters (the
wildcard), and to none for endpoints and routes.

Every request is recorded in :attr:`XdsServer.requests` (and the ACKs and NACKs among them in
:attr:`~XdsServer.acks` and :attr:`~XdsServer.nacks`), every response in
:attr:`~XdsServer.responses`, so tests can assert on the conversation. Fault hooks:
:meth:`~XdsServer.set_resource` serves any message (or a raw ``Any``, even of the wrong type),
:func:`cluster_load_assignment` builds one without validating ports, :meth:`~XdsServer.drop_streams`
aborts every open stream with UNAVAILABLE, and :meth:`~XdsServer.stop` then
:meth:`~XdsServer.start` restarts the server on the same port with the same resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import grpc
import grpc.aio
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, message, struct_pb2, wrappers_pb2

from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "EndpointSpec",
    "Received",
    "XdsServer",
    "cluster_load_assignment",
]

log = logging.getLogger("meshcore.testing.xds")

_PREFIX = "type.googleapis.com/"
LISTENER_TYPE = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_TYPE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
# Types whose empty name list means "every resource" (the others: "none").
_WILDCARD_TYPES = frozenset({LISTENER_TYPE, CLUSTER_TYPE})

EndpointSpec = Endpoint | tuple[str, int] | tuple[str, int, int] | tuple[str, int, int, str | int]
"""An endpoint to serve: a meshcore :class:`Endpoint` (served HEALTHY, its metadata under the
``meshcore`` filter-metadata namespace) or a tuple ``(host, port[, weight[, health]])`` where
health is an Envoy ``HealthStatus`` name (``"UNHEALTHY"``) or number. Tuples are not validated, so
a test can serve port 0 or 70000."""


def _health(value: str | int) -> int:
    if isinstance(value, str):
        try:
            return int(health_check_pb2.HealthStatus.Value(value.upper()))
        except ValueError:
            raise ConfigError(f"unknown health status {value!r}") from None
    return int(value)


def cluster_load_assignment(
    cluster: str,
    endpoints: Iterable[EndpointSpec],
    *,
    region: str = "",
    zone: str = "",
    sub_zone: str = "",
    locality_weight: int | None = 1,
    priority: int = 0,
) -> Any:
    """A ``ClusterLoadAssignment`` named ``cluster`` with one locality (weighted
    ``locality_weight``; None leaves the weight unset, which gRPC ignores) holding ``endpoints``.
    Merge several with ``cla.endpoints.extend(other.endpoints)`` for more localities."""
    group = endpoint_components_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone),
        priority=priority,
    )
    if locality_weight is not None:
        group.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=locality_weight))
    for spec in endpoints:
        lb = group.lb_endpoints.add()
        if isinstance(spec, Endpoint):
            host, port, weight, health = spec.host, spec.port, spec.weight, _health("HEALTHY")
            if spec.metadata:
                fields = struct_pb2.Struct()
                fields.update(dict(spec.metadata))
                lb.metadata.filter_metadata["meshcore"].CopyFrom(fields)
        else:
            host, port = spec[0], spec[1]
            weight = spec[2] if len(spec) > 2 else 1
            health = _health(spec[3] if len(spec) > 3 else "HEALTHY")
        socket = lb.endpoint.address.socket_address
        socket.address = host
        socket.port_value = port
        lb.health_status = health
        lb.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=weight))
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster, endpoints=[group])


@dataclass(frozen=True)
class Received:
    """One request the server read: the stream it came on (numbered from 1 in order of opening),
    what the server made of it, and the ``DiscoveryRequest`` itself."""

    stream: int
    kind: Literal["subscribe", "ack", "nack", "stale"]
    request: Any


@dataclass
class _Subscription:
    names: frozenset[str] | None  # None: the wildcard
    nonce: str = ""


@dataclass
class _Stream:
    id: int
    default_type: str
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    node: Any = None


class _Push:
    """Queue marker: the resources of ``type_url`` changed."""

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url


# Accept keepalive pings as often as every half second on an idle stream (grpc's default is one
# per 5 minutes, and a client pinging faster gets GOAWAY "too_many_pings"), so that clients with
# short keepalive times (tests, XdsDiscovery's channel_options) keep their streams.
_SERVER_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_pings_without_data", 0),
)

_EOF = object()  # queue marker: the client closed its side
_DROP = object()  # queue marker: abort the stream


class XdsServer:
    """An xDS management server for tests, on ``host:port`` (port 0: a free one, kept across
    :meth:`stop` / :meth:`start`). Use as ``async with XdsServer() as server:`` or call
    :meth:`start` and :meth:`stop`. Resources can be set before or after starting; each change
    is pushed at once to the streams subscribed to it. Not thread-safe: call it from the event
    loop it runs on. ``record`` bounds how many requests and responses are kept."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, record: int = 10_000) -> None:
        self.host = host
        self._port = port
        self._server: grpc.aio.Server | None = None
        self._resources: dict[str, dict[str, any_pb2.Any]] = {}
        self._versions: dict[str, int] = {}
        self._streams: dict[int, _Stream] = {}
        self._stream_ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self.requests: deque[Received] = deque(maxlen=record)
        """Every request read, oldest first."""
        self.responses: deque[tuple[int, Any]] = deque(maxlen=record)
        """Every ``(stream, DiscoveryResponse)`` sent, oldest first."""

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port``, a gRPC target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port}"

    async def start(self) -> None:
        """Listen and serve; after :meth:`stop`, on the same port again."""
        if self._server is not None:
            raise RuntimeError("the xDS server is already running")
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        server.add_generic_rpc_handlers((self._handlers(),))
        port = server.add_insecure_port(f"{self.host}:{self._port}")
        if port == 0:
            raise OSError(f"cannot listen on {self.host}:{self._port}")
        self._port = port
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (open streams end with UNAVAILABLE, or when ``grace`` seconds are up)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        self._streams.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def send_unrequested(self, type_url: str, resources: Sequence[message.Message]) -> None:
        """Send every open stream a response of ``type_url`` holding ``resources``, whatever the
        stream subscribed to (a misbehaving or a shared server)."""
        packed = []
        for resource in resources:
            item = any_pb2.Any()
            item.Pack(resource)
            packed.append(item)
        response = discovery_pb2.DiscoveryResponse(
            version_info="unrequested", resources=packed, type_url=type_url, nonce="unrequested"
        )
        for stream in self._streams.values():
            stream.queue.put_nowait(response)

    def drop_streams(self) -> None:
        """Abort every open stream with UNAVAILABLE; the server keeps serving new ones."""
        for stream in self._streams.values():
            stream.queue.put_nowait(_DROP)

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return len(self._streams)

    @property
    def nodes(self) -> list[Any]:
        """The ``Node`` of each open stream that sent one."""
        return [s.node for s in self._streams.values() if s.node is not None]

    @property
    def acks(self) -> list[Received]:
        """The requests that ACKed a response."""
        return [r for r in self.requests if r.kind == "ack"]

    @property
    def nacks(self) -> list[Received]:
        """The requests that NACKed a response (``request.error_detail`` says why)."""
        return [r for r in self.requests if r.kind == "nack"]

    def version(self, type_url: str = ENDPOINT_TYPE) -> str:
        """The current ``version_info`` of a type ("0" before any resource was set)."""
        return str(self._versions.get(type_url, 0))

    # -- resources ------------------------------------------------------------------------------

    def set_resource(self, type_url: str, name: str, resource: message.Message) -> None:
        """Serve ``resource`` as ``name`` among the resources of ``type_url``. A message is packed
        into an ``Any``; an ``Any`` is served as it is (whatever type it claims)."""
        if isinstance(resource, any_pb2.Any):
            packed = resource
        else:
            packed = any_pb2.Any()
            packed.Pack(resource)
        self._resources.setdefault(type_url, {})[name] = packed
        self._changed(type_url, name)

    def remove_resource(self, type_url: str, name: str) -> None:
        """Stop serving ``name`` (for endpoints, state-of-the-world clients keep what they had)."""
        if self._resources.get(type_url, {}).pop(name, None) is not None:
            self._changed(type_url, name)

    def set_endpoints(
        self,
        cluster: str,
        endpoints: Iterable[EndpointSpec],
        *,
        region: str = "",
        zone: str = "",
        sub_zone: str = "",
        locality_weight: int | None = 1,
        priority: int = 0,
    ) -> None:
        """Serve the ``ClusterLoadAssignment`` of ``cluster``: one locality, weighted
        ``locality_weight``, holding ``endpoints`` (see :data:`EndpointSpec`)."""
        cla = cluster_load_assignment(
            cluster,
            endpoints,
            region=region,
            zone=zone,
            sub_zone=sub_zone,
            locality_weight=locality_weight,
            priority=priority,
        )
        self.set_resource(ENDPOINT_TYPE, cluster, cla)

    def set_service(self, name: str, cluster: str) -> None:
        """Serve what a proxyless gRPC client dialing ``xds:///<name>`` needs besides the
        endpoints: a Listener ``name`` whose API listener routes every call to ``cluster``, and
        a Cluster ``cluster`` of type EDS (endpoints over ADS, round robin)."""
        route = route_pb2.RouteConfiguration(
            name=f"{name}-route",
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name=name,
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix=""),
                            route=route_components_pb2.RouteAction(cluster=cluster),
                        )
                    ],
                )
            ],
        )
        router = any_pb2.Any()
        router.Pack(router_pb2.Router())
        manager = hcm_pb2.HttpConnectionManager(
            stat_prefix=name,
            route_config=route,
            http_filters=[
                hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=router)
            ],
        )
        api = any_pb2.Any()
        api.Pack(manager)
        listener = listener_pb2.Listener(
            name=name, api_listener=api_listener_pb2.ApiListener(api_listener=api)
        )
        ads = config_source_pb2.ConfigSource(
            ads=config_source_pb2.AggregatedConfigSource(),
            resource_api_version=config_source_pb2.ApiVersion.V3,
        )
        eds_cluster = cluster_pb2.Cluster(
            name=cluster,
            type=cluster_pb2.Cluster.DiscoveryType.EDS,
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
                eds_config=ads, service_name=cluster
            ),
            lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
        )
        self.set_resource(CLUSTER_TYPE, cluster, eds_cluster)
        self.set_resource(LISTENER_TYPE, name, listener)

    def _changed(self, type_url: str, name: str) -> None:
        self._versions[type_url] = self._versions.get(type_url, 0) + 1
        for stream in self._streams.values():
            subscription = stream.subscriptions.get(type_url)
            if subscription is not None and (
                subscription.names is None or name in subscription.names
            ):
                stream.queue.put_nowait(_Push(type_url))

    # -- the protocol ---------------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler:
        def method(default_type: str) -> grpc.RpcMethodHandler[Any, Any]:
            async def serve(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                async for response in self._serve(requests, context, default_type):
                    yield response

            return grpc.stream_stream_rpc_method_handler(
                serve,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
            )

        return _Handlers(
            {
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
                "StreamAggregatedResources": method(""),
                "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints": method(
                    ENDPOINT_TYPE
                ),
            }
        )

    async def _serve(
        self, requests: AsyncIterator[Any], context: Any, default_type: str
    ) -> AsyncIterator[Any]:
        stream = _Stream(next(self._stream_ids), default_type)
        self._streams[stream.id] = stream
        reader = asyncio.create_task(self._read(requests, stream.queue))
        try:
            while True:
                item = await stream.queue.get()
                if item is _EOF:
                    return
                if item is _DROP:
                    # Not context.abort(): it leaves the async generator suspended, not closed.
                    context.set_code(grpc.StatusCode.UNAVAILABLE)
                    context.set_details("stream dropped by the test")
                    return
                if isinstance(item, _Push):
                    responses = [self._response(stream, item.type_url)]
                elif isinstance(item, discovery_pb2.DiscoveryResponse):  # send_unrequested
                    responses = [item]
                else:
                    responses = self._on_request(stream, item)
                for response in responses:
                    self.responses.append((stream.id, response))
                    yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._streams.pop(stream.id, None)

    @staticmethod
    async def _read(requests: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        try:
            async for request in requests:
                queue.put_nowait(request)
        except grpc.aio.AioRpcError:
            pass
        finally:
            queue.put_nowait(_EOF)

    def _on_request(self, stream: _Stream, request: Any) -> list[Any]:
        type_url = request.type_url or stream.default_type
        if stream.node is None and request.HasField("node"):
            stream.node = request.node
        names: frozenset[str] | None = frozenset(request.resource_names)
        if not names and type_url in _WILDCARD_TYPES:
            names = None
        subscription = stream.subscriptions.get(type_url)
        if subscription is not None and request.response_nonce:
            if request.response_nonce != subscription.nonce:
                self.requests.append(Received(stream.id, "stale", request))
                return []
            nack = request.HasField("error_detail")
            self.requests.append(Received(stream.id, "nack" if nack else "ack", request))
            if nack:
                log.info("stream %d NACKed %s: %s", stream.id, type_url, request.error_detail)
            if names == subscription.names:
                return []
            subscription.names = names
        else:
            self.requests.append(Received(stream.id, "subscribe", request))
            subscription = stream.subscriptions[type_url] = _Subscription(names)
        return [self._response(stream, type_url)]

    def _response(self, stream: _Stream, type_url: str) -> Any:
        subscription = stream.subscriptions[type_url]
        served = self._resources.get(type_url, {})
        if subscription.names is None:
            resources = list(served.values())
        else:
            resources = [served[n] for n in sorted(subscription.names) if n in served]
        subscription.nonce = str(next(self._nonces))
        return discovery_pb2.DiscoveryResponse(
            version_info=self.version(type_url),
            resources=resources,
            type_url=type_url,
            nonce=subscription.nonce,
        )


class _Handlers(grpc.GenericRpcHandler):
    def __init__(self, methods: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._methods = methods

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._methods.get(handler_call_details.method)
