"""Endpoints from an xDS management server: Envoy's v3 endpoint discovery (EDS), state of the world,
over ADS or a plain EDS stream, on ``grpc.aio`` with the ``xds-protos`` messages."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import Any, Literal

import grpc
import grpc.aio
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import message

from meshcore import __version__
from meshcore.discovery._base import DiscoverySource, EndpointSet, _require_positive
from meshcore.endpoint import Endpoint, Metadata
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["ENDPOINT_TYPE", "XdsDiscovery"]

ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_EDS = "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints"
_INVALID_ARGUMENT = 3  # google.rpc.Code
_HealthStatus = health_check_pb2.HealthStatus
# Envoy routes to HEALTHY and UNKNOWN hosts, and to DEGRADED ones (as a fallback); UNHEALTHY,
# DRAINING and TIMEOUT hosts get no new requests.
_USABLE = frozenset({_HealthStatus.UNKNOWN, _HealthStatus.HEALTHY, _HealthStatus.DEGRADED})
_DEGRADED = _HealthStatus.DEGRADED
# Keepalive pings on the channel, so that a server that vanished without resetting the connection
# (a host gone, a partition) fails the stream instead of leaving ``call.read()`` waiting forever.
# The time is above 5 minutes because that is the default minimum ping interval both gRPC
# servers enforce on a connection that sends no data (grpc core's
# grpc.http2.min_ping_interval_without_data_ms, grpc-go's EnforcementPolicy.MinTime): an idle
# xDS stream pinged more often by default would be closed with GOAWAY "too_many_pings" about
# every half minute. Lower it with ``channel_options`` when the server allows it.
_KEEPALIVE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 330_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


class _RejectError(Exception):
    """A response that must be NACKed; the message goes into ``error_detail``."""


class XdsDiscovery(DiscoverySource):
    """Endpoints of the EDS resource ``cluster`` (a ``ClusterLoadAssignment``'s ``cluster_name``)
    from the xDS management server at ``server`` (a gRPC target such as ``"127.0.0.1:18000"``).

    **Protocol.** One long-lived stream, ADS (``AggregatedDiscoveryService``) by default or
    ``mode="eds"`` for ``EndpointDiscoveryService.StreamEndpoints``, speaking the state-of-the-world
    protocol: the first request of each stream carries the ``node`` (``node_id``, ``node_cluster``,
    user agent ``meshcore`` and its version) and the last ACKed ``version_info``, so a server may
    skip resending what the client has. Each response is ACKed (its ``version_info`` and nonce) or,
    when anything in it is invalid, NACKed as a whole (the last good version, the nonce, and an
    ``error_detail`` saying why) while the last good set stays in use; a warning is logged once per
    distinct problem. Invalid: a resource packed with another type, an undecodable one, two
    resources for the name, an endpoint without a socket address or with a port outside 1..65535,
    a weight of 0. Resources for other cluster names are not invalid: they are skipped (a warning
    once per name) and the response is ACKed, as gRPC's xDS client does; a whole response of
    another type (on an ADS stream shared with other subscriptions) is ignored: neither ACKed nor
    NACKed on this subscription's behalf.

    **Mapping.** Each ``lb_endpoints`` entry is an :class:`Endpoint` with the socket address and
    ``port_value``, ``weight`` = its ``load_balancing_weight`` (1 when unset). Endpoints whose
    ``health_status`` is UNHEALTHY, DRAINING or TIMEOUT are dropped, as Envoy sends them no
    traffic; HEALTHY and UNKNOWN are kept, and DEGRADED too, marked ``health=degraded`` in the
    metadata (Envoy uses degraded hosts only when too few healthy ones are left: a balancer may do
    the same). Metadata also carries the locality (``region``, ``zone``, ``sub_zone`` when set),
    ``priority``, ``locality_weight`` when the locality has one (it is not folded into the weight:
    Envoy picks a locality by it first, then an endpoint within it), and every string field of the
    endpoint's ``metadata.filter_metadata``: a field of namespace ``metadata_namespace`` (default
    ``"meshcore"``) under its own key, any other as ``<namespace>/<key>``.

    **Priority.** With ``priority="lowest"`` (the default) only the endpoints of the lowest
    priority that has a usable endpoint are kept: the higher ones are Envoy's failover levels
    (Envoy spills over gradually as a level degrades; here a level is used while any of it is
    usable). ``priority="all"`` keeps every level, with ``priority`` in the metadata.

    **Removal.** A response that does not hold the resource leaves the set as it is: in the state
    of the world protocol the absence of an EDS resource is not a deletion (unlike listeners and
    clusters). A served ``ClusterLoadAssignment`` with no endpoints is an empty set.

    **Faults.** A failed or closed stream (server down, UNAVAILABLE, any status) makes the source
    ``stale`` with the last good set kept; it reconnects with backoff (a new channel each time, so
    gRPC's own reconnect backoff does not add up), resubscribes, and is fresh again at the first
    valid response. ``resolve()`` opens its own stream, returns the first valid set and closes it;
    it raises :class:`DiscoveryError` when none comes within ``timeout`` seconds.

    **Liveness.** The channel sends HTTP/2 keepalive pings (``grpc.keepalive_time_ms`` 330 000,
    ``grpc.keepalive_timeout_ms`` 20 000, also while no call is open and without data): a server
    that vanished without closing the connection makes the stream fail (so ``stale``, then a
    reconnect) within about 6 minutes. The interval respects the 5-minute minimum that gRPC
    servers enforce by default; against a server that permits more frequent pings
    (``grpc.http2.min_ping_interval_without_data_ms`` in grpc core, ``EnforcementPolicy.MinTime``
    in grpc-go), pass a shorter ``grpc.keepalive_time_ms`` in ``channel_options``.

    ``credentials`` (``grpc.ssl_channel_credentials(...)``, ...) secure the channel, which is
    insecure by default; ``channel_options`` are passed to the gRPC channel, merged over the
    keepalive defaults above (an option given here wins).
    """

    def __init__(
        self,
        server: str,
        cluster: str,
        *,
        node_id: str | None = None,
        node_cluster: str = "",
        mode: Literal["ads", "eds"] = "ads",
        priority: Literal["lowest", "all"] = "lowest",
        metadata_namespace: str = "meshcore",
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(backoff_initial=backoff_initial, backoff_max=backoff_max)
        if not isinstance(server, str) or not server:
            raise ConfigError(f"server must be a gRPC target ('127.0.0.1:18000'), got {server!r}")
        if not isinstance(cluster, str) or not cluster:
            raise ConfigError(f"cluster must be a non-empty resource name, got {cluster!r}")
        if mode not in ("ads", "eds"):
            raise ConfigError(f"mode must be 'ads' or 'eds', got {mode!r}")
        if priority not in ("lowest", "all"):
            raise ConfigError(f"priority must be 'lowest' or 'all', got {priority!r}")
        if node_id is None:
            node_id = f"meshcore~{socket.gethostname()}~{os.getpid()}"
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty str, got {node_id!r}")
        self.server = server
        self.cluster = cluster
        self.mode = mode
        self._priority = priority
        self._namespace = metadata_namespace
        self._credentials = credentials
        options = dict(_KEEPALIVE_OPTIONS)
        options.update(channel_options)  # the caller's options win
        self._channel_options = list(options.items())
        self._timeout = _require_positive("timeout", timeout)
        self._node = base_pb2.Node(
            id=node_id,
            cluster=node_cluster,
            user_agent_name="meshcore",
            user_agent_version=__version__,
        )
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall[Any, Any] | None = None
        # The last good response's endpoints by (locality, the LbEndpoint's bytes): state of the
        # world resends every endpoint on every change, and most are the same as before.
        self._known: dict[tuple[tuple[tuple[str, str], ...], bytes], tuple[Endpoint, int]] = {}
        self.version_info = ""
        """The ``version_info`` of the last ACKed response ("" before the first)."""
        self.streams = 0
        """How many streams were opened (for tests and metrics)."""

    def _describe(self) -> str:
        return f"{self.server} {self.cluster}"

    # -- the stream -----------------------------------------------------------------------------

    def _open_channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self.server, options=self._channel_options)
        return grpc.aio.secure_channel(self.server, self._credentials, self._channel_options)

    async def _open_stream(
        self, channel: grpc.aio.Channel, version: str
    ) -> grpc.aio.StreamStreamCall[Any, Any]:
        method = channel.stream_stream(
            _ADS if self.mode == "ads" else _EDS,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )
        call: grpc.aio.StreamStreamCall[Any, Any] = method()
        first = discovery_pb2.DiscoveryRequest(
            version_info=version,
            node=self._node,
            resource_names=[self.cluster],
            type_url=ENDPOINT_TYPE,
        )
        await call.write(first)
        return call

    async def _close_stream(self) -> None:
        call, self._call = self._call, None
        channel, self._channel = self._channel, None
        if call is not None:
            call.cancel()
        if channel is not None:
            await channel.close()

    async def _reply(
        self, call: grpc.aio.StreamStreamCall[Any, Any], response: Any, version: str
    ) -> tuple[bool, EndpointSet | None]:
        """Validate ``response`` and ACK or NACK it on ``call``: whether it was valid (False
        too for a response of another type, which is ignored), and the new set (None when it
        does not hold the resource). ``version`` is the last good one."""
        if response.type_url != ENDPOINT_TYPE:
            # Another subscription's response on a shared ADS stream (or a server's mistake): it
            # is not ours to ACK or NACK, and its nonce is not ours (a NACK of it would carry
            # our type with another type's nonce, which a server drops as stale).
            self._warn_once(
                f"response of type {response.type_url!r} ignored: only {ENDPOINT_TYPE!r} was "
                "subscribed"
            )
            return False, None
        request = discovery_pb2.DiscoveryRequest(
            resource_names=[self.cluster], type_url=ENDPOINT_TYPE, response_nonce=response.nonce
        )
        endpoints: EndpointSet | None
        try:
            endpoints = self._decode(response)
        except _RejectError as exc:
            self._warn_once(f"NACK of version {response.version_info!r}: {exc}", problem=str(exc))
            request.version_info = version
            request.error_detail.code = _INVALID_ARGUMENT
            request.error_detail.message = str(exc)
            await call.write(request)
            return False, None
        request.version_info = response.version_info
        await call.write(request)
        return True, endpoints

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        try:
            if self._call is None:
                self._channel = self._open_channel()
                self._call = await self._open_stream(self._channel, self.version_info)
                self.streams += 1
            call = self._call
            while True:
                response: Any = await call.read()
                if response is grpc.aio.EOF:
                    raise DiscoveryError(f"{self.server}: the server closed the stream")
                valid, endpoints = await self._reply(call, response, self.version_info)
                if not valid:
                    continue
                self.version_info = response.version_info
                if endpoints is None:
                    # Valid, but without the resource: nothing changes; the stream is alive.
                    if self.current is None:
                        continue
                    endpoints = self.current
                return endpoints, 0.0
        except grpc.aio.AioRpcError as exc:
            await self._close_stream()
            raise DiscoveryError(
                f"{self.server}: stream failed: {exc.code().name}: {exc.details()}"
            ) from exc
        except asyncio.InvalidStateError as exc:  # a write after the server ended the call
            await self._close_stream()
            raise DiscoveryError(f"{self.server}: the server closed the stream") from exc
        except Exception:
            await self._close_stream()
            raise

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        channel = self._open_channel()
        try:
            async with asyncio.timeout(self._timeout):
                call = await self._open_stream(channel, "")
                try:
                    while True:
                        response = await call.read()
                        if response is grpc.aio.EOF:
                            raise DiscoveryError(f"{self.server}: the server closed the stream")
                        _, endpoints = await self._reply(call, response, "")
                        if endpoints is not None:
                            return endpoints, None
                finally:
                    call.cancel()
        except TimeoutError:
            raise DiscoveryError(
                f"{self.server}: no valid {self.cluster!r} endpoints within {self._timeout} s"
            ) from None
        except grpc.aio.AioRpcError as exc:
            raise DiscoveryError(
                f"{self.server}: stream failed: {exc.code().name}: {exc.details()}"
            ) from exc
        finally:
            await channel.close()

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:  # also when the caller is cancelled: no stream or channel is left behind
            await self._close_stream()

    # -- decoding -------------------------------------------------------------------------------

    def _decode(self, response: Any) -> EndpointSet | None:
        """The set a response gives, None when it does not hold the resource; raises
        :class:`_RejectError` when anything in it is invalid."""
        found: Any = None
        for packed in response.resources:
            if packed.type_url != ENDPOINT_TYPE:
                raise _RejectError(f"resource of type {packed.type_url!r} in an endpoint response")
            cla = endpoint_pb2.ClusterLoadAssignment()
            try:
                packed.Unpack(cla)
            except message.DecodeError as exc:
                raise _RejectError(f"undecodable ClusterLoadAssignment: {exc}") from None
            if cla.cluster_name != self.cluster:
                # Not requested: skipped, and the response still ACKed. gRPC's xDS client drops
                # a resource it holds no watch for in the same way, rather than rejecting the
                # response (a server may group several clients' resources in one response).
                self._warn_once(
                    f"resource {cla.cluster_name!r} skipped: it was not requested",
                    problem=f"unrequested {cla.cluster_name}",
                )
                continue
            if found is not None:
                raise _RejectError(f"two resources named {self.cluster!r}")
            found = cla
        return None if found is None else self._endpoints(found)

    def _endpoints(self, cla: Any) -> EndpointSet:
        levels: dict[int, list[Endpoint]] = {}
        known = self._known
        seen: dict[tuple[tuple[tuple[str, str], ...], bytes], tuple[Endpoint, int]] = {}
        for group in cla.endpoints:
            locality: dict[str, str] = {"priority": str(group.priority)}
            for key in ("region", "zone", "sub_zone"):
                if value := getattr(group.locality, key):
                    locality[key] = value
            if group.HasField("load_balancing_weight"):
                if group.load_balancing_weight.value == 0:
                    raise _RejectError(f"locality {group.locality} has weight 0")
                locality["locality_weight"] = str(group.load_balancing_weight.value)
            where = tuple(locality.items())
            shared: Metadata | None = None  # one object for the endpoints without metadata
            level = levels.setdefault(group.priority, [])
            for lb in group.lb_endpoints:
                raw = lb.SerializeToString()
                entry = known.get((where, raw))
                if entry is None:
                    if shared is None:
                        shared = Metadata(locality)
                    entry = (self._endpoint(lb, shared), lb.health_status)
                seen[where, raw] = entry
                if entry[1] in _USABLE:
                    level.append(entry[0])
        self._known = seen  # only what this response holds: the memory follows the set
        if self._priority == "all":
            return frozenset(e for level in levels.values() for e in level)
        for priority in sorted(levels):
            if levels[priority]:
                return frozenset(levels[priority])
        return frozenset()

    def _endpoint(self, lb: Any, locality: Metadata) -> Endpoint:
        if not lb.HasField("endpoint") or not lb.endpoint.address.HasField("socket_address"):
            raise _RejectError("an endpoint without a socket address")
        address = lb.endpoint.address.socket_address
        host, port = address.address, address.port_value
        if not host:
            raise _RejectError("an endpoint with an empty address")
        if not 1 <= port <= 65535:  # a named_port leaves port_value at 0
            raise _RejectError(f"endpoint {host}: invalid port {port}")
        weight = 1
        if lb.HasField("load_balancing_weight"):
            weight = lb.load_balancing_weight.value
            if weight == 0:
                raise _RejectError(f"endpoint {host}:{port}: weight 0")
        metadata = locality
        degraded = lb.health_status == _DEGRADED
        if degraded or lb.HasField("metadata"):
            own = dict(locality)
            if degraded:
                own["health"] = "degraded"
            for namespace, fields in lb.metadata.filter_metadata.items():
                for key, value in fields.fields.items():
                    if value.WhichOneof("kind") == "string_value":
                        name = key if namespace == self._namespace else f"{namespace}/{key}"
                        own[name] = value.string_value
            metadata = Metadata(own)
        return Endpoint(host, port, weight, metadata)
