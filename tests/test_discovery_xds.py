"""XdsDiscovery against meshcore's test xDS management server (``meshcore.testing.xds``), and that
server against a client no one here wrote: grpcio's own ``xds:`` resolver, dialing real backends.

Everything runs in-process on 127.0.0.1 (the gRPC client in a subprocess of its own, so that its
bootstrap comes from its own environment); nothing needs installing beyond grpcio and xds-protos.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2

from meshcore import ConfigError, DiscoveryError, Endpoint
from meshcore.discovery import XdsDiscovery
from meshcore.testing.xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EndpointSpec,
    XdsServer,
    cluster_load_assignment,
)
from watching import Watcher, eventually, run

HOST = "127.0.0.1"
FAST: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.5}


def addresses(endpoints: Iterable[Endpoint]) -> set[tuple[int, int]]:
    """(port, weight) of each endpoint: what most tests look at."""
    return {(e.port, e.weight) for e in endpoints}


async def acks_reach(server: XdsServer, n: int) -> None:
    await eventually(lambda: len(server.acks) == n)


async def nacks_reach(server: XdsServer, n: int) -> None:
    await eventually(lambda: len(server.nacks) == n)


def client_requests(server: XdsServer, node_id: str) -> list[Any]:
    """The requests of the streams whose node is ``node_id``, oldest first."""
    streams = {r.stream for r in server.requests if r.request.node.id == node_id}
    return [r for r in server.requests if r.stream in streams]


# -- XdsDiscovery -------------------------------------------------------------------------------


def test_initial_set_node_and_resolve() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001), (HOST, 8002, 3)], region="eu", zone="a")
            source = XdsDiscovery(server.address, "echo", node_id="n1", node_cluster="mesh")
            resolved = await source.resolve()
            assert addresses(resolved) == {(8001, 1), (8002, 3)}
            first = next(e for e in resolved if e.port == 8001)
            assert dict(first.metadata) == {
                "region": "eu",
                "zone": "a",
                "priority": "0",
                "locality_weight": "1",
            }
            async with source:
                watcher = Watcher(source.watch())
                assert await watcher.next() == resolved
                assert not source.stale
            node = server.requests[0].request.node
            assert (node.id, node.cluster, node.user_agent_name) == ("n1", "mesh", "meshcore")
            assert node.user_agent_version
            subscribe = server.requests[0].request
            assert subscribe.type_url == ENDPOINT_TYPE
            assert list(subscribe.resource_names) == ["echo"]
            assert subscribe.version_info == "" and subscribe.response_nonce == ""
            await eventually(lambda: server.streams == 0)  # closed on exit, and resolve()'s too

    run(main())


def test_updates_are_pushed_and_acked_with_version_and_nonce() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo", node_id="n1") as source:
                watcher = Watcher(source.watch())
                assert addresses(await watcher.next()) == {(8001, 1)}
                steps: list[tuple[list[EndpointSpec], set[tuple[int, int]]]] = [
                    ([(HOST, 8001), (HOST, 8002)], {(8001, 1), (8002, 1)}),  # add
                    ([(HOST, 8002)], {(8002, 1)}),  # remove
                    ([(HOST, 8002, 7)], {(8002, 7)}),  # change a weight
                ]
                for n, (served, expected) in enumerate(steps, 1):
                    # A push before the ACK of the previous response arrived would make that
                    # ACK stale (ignored by the server): wait for it.
                    await acks_reach(server, n)
                    server.set_endpoints("echo", served)
                    assert addresses(await watcher.next()) == expected
                await eventually(lambda: len(server.acks) == 4)
                assert source.version_info == server.version() == "4"
            sent = [response for _, response in server.responses]
            assert [(a.request.version_info, a.request.response_nonce) for a in server.acks] == [
                (r.version_info, r.nonce) for r in sent
            ]
            assert all(not a.request.HasField("node") for a in server.acks)
            assert not server.nacks

    run(main())


@pytest.mark.parametrize("port", [70000, 0])
def test_invalid_port_is_nacked_and_last_good_set_kept(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo") as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                for n in (1, 2):  # the same problem twice: one warning
                    server.set_endpoints("echo", [(HOST, 8002), (HOST, port)])
                    await nacks_reach(server, n)
                nack = server.nacks[0].request
                assert nack.version_info == "1"  # the last good version
                assert nack.response_nonce == server.responses[1][1].nonce
                assert nack.error_detail.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
                assert f"invalid port {port}" in nack.error_detail.message
                assert source.current == good and not source.stale
                assert source.version_info == "1"
                server.set_endpoints("echo", [(HOST, 8003)])  # a later good push is taken
                assert addresses(await watcher.next()) == {(8003, 1)}
                # The ACK of version 1 can arrive after version 2 went out (then the server
                # counts it stale), so there may be no ACK at all until version 4's.
                await eventually(
                    lambda: [a.request.version_info for a in server.acks][-1:] == ["4"]
                )
        warnings = [r for r in caplog.records if "NACK" in r.getMessage()]
        assert len(warnings) == 1, warnings

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _no_address() -> Any:
    cla = cluster_load_assignment("echo", [(HOST, 8002)])
    cla.endpoints[0].lb_endpoints[0].endpoint.ClearField("address")
    return cla


def _zero_weight() -> Any:
    return cluster_load_assignment("echo", [(HOST, 8002, 0)])


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (_no_address(), "without a socket address"),
        (_zero_weight(), "weight 0"),
        # A Cluster packed into an endpoint response: not something to skip by name.
        (_packed(cluster_pb2.Cluster(name="echo")), "resource of type"),
        (any_pb2.Any(type_url=ENDPOINT_TYPE, value=b"\xff\xff"), "undecodable"),
    ],
    ids=["no-address", "zero-weight", "wrong-resource-type", "garbage"],
)
def test_invalid_resources_are_nacked(resource: Any, reason: str) -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo") as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                server.set_resource(ENDPOINT_TYPE, "echo", resource)
                await eventually(lambda: len(server.nacks) == 1)
                assert reason in server.nacks[0].request.error_detail.message
                assert source.current == good and not source.stale
                server.set_endpoints("echo", [(HOST, 8003)])
                assert addresses(await watcher.next()) == {(8003, 1)}

    run(main())


def test_unrequested_resources_are_skipped_and_acked(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo") as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                # A response holding only another cluster's resource: ACKed, the set kept.
                server.set_resource(
                    ENDPOINT_TYPE, "echo", cluster_load_assignment("other", [(HOST, 8002)])
                )
                version = server.version()
                await eventually(lambda: source.version_info == version)
                assert source.current == good and not source.stale
                # Ours among unrequested ones in one response: ours is applied.
                server.send_unrequested(
                    ENDPOINT_TYPE,
                    [
                        cluster_load_assignment("other", [(HOST, 8002)]),
                        cluster_load_assignment("echo", [(HOST, 8003)]),
                        cluster_load_assignment("third", [(HOST, 8004)]),
                    ],
                )
                assert addresses(await watcher.next()) == {(8003, 1)}
                assert not server.nacks

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert caplog.text.count("'other' skipped: it was not requested") == 1  # once per name
    assert caplog.text.count("'third' skipped") == 1


def test_a_response_of_another_type_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # On an ADS stream shared with other subscriptions: neither ACKed nor NACKed by this source.
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo") as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                requests = len(server.requests)
                server.send_unrequested(CLUSTER_TYPE, [cluster_pb2.Cluster(name="echo")])
                server.set_endpoints("echo", [(HOST, 8002)])  # the next one of ours
                assert addresses(await watcher.next()) == {(8002, 1)}
                # The source applies a response before its ACK reaches the server: wait for it.
                await eventually(
                    lambda: any(a.request.version_info == server.version() for a in server.acks)
                )
                # Only ACKs of our own responses were sent: nothing about the Cluster one.
                sent = [r.request for r in list(server.requests)[requests:]]
                assert sent and all(r.type_url == ENDPOINT_TYPE for r in sent)
                assert all(r.response_nonce != "unrequested" for r in sent)
                assert not server.nacks and source.current != good

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert "response of type" in caplog.text and "ignored" in caplog.text


def test_keepalive_defaults_merge_with_channel_options() -> None:
    options = dict(XdsDiscovery("127.0.0.1:1", "echo")._channel_options)
    assert options["grpc.keepalive_time_ms"] == 330_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    mine = XdsDiscovery(
        "127.0.0.1:1", "echo", channel_options=[("grpc.keepalive_time_ms", 1000), ("x", 1)]
    )
    options = dict(mine._channel_options)
    assert options["grpc.keepalive_time_ms"] == 1000 and options["x"] == 1
    assert options["grpc.keepalive_timeout_ms"] == 20_000


def test_an_idle_stream_survives_keepalive_pings() -> None:
    # Keepalive pings (grpc sends them about every second here) over 8 s of silence: the server
    # accepts them. A gRPC server with default settings ends such a stream with UNAVAILABLE "Too
    # many pings" after 4 to 8 s (measured), so a shorter silence would not show the difference.
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            options = [("grpc.keepalive_time_ms", 500), ("grpc.keepalive_timeout_ms", 5000)]
            async with XdsDiscovery(server.address, "echo", channel_options=options) as source:
                watcher = Watcher(source.watch())
                await watcher.next()
                await asyncio.sleep(8.0)  # idle: no data either way, only pings
                server.set_endpoints("echo", [(HOST, 8002)])
                assert addresses(await watcher.next()) == {(8002, 1)}
                assert source.streams == 1 and not source.stale

    run(main())


def test_health_status() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            statuses = ["HEALTHY", "UNKNOWN", "DEGRADED", "UNHEALTHY", "DRAINING", "TIMEOUT"]
            server.set_endpoints("echo", [(HOST, 8001 + i, 1, s) for i, s in enumerate(statuses)])
            source = XdsDiscovery(server.address, "echo")
            got = {e.port: e.metadata.get("health") for e in await source.resolve()}
            assert got == {8001: None, 8002: None, 8003: "degraded"}
            server.set_endpoints("echo", [(HOST, 8001, 1, "UNHEALTHY")])
            assert await source.resolve() == frozenset()  # an empty set, not an error

    run(main())


def test_priorities_and_localities() -> None:
    async def main() -> None:
        async with XdsServer() as server:

            def serve(primary_health: str) -> None:
                cla = cluster_load_assignment(
                    "echo", [(HOST, 8001, 1, primary_health)], zone="a", locality_weight=3
                )
                standby = cluster_load_assignment("echo", [(HOST, 8002)], zone="b", priority=1)
                cla.endpoints.extend(standby.endpoints)
                server.set_resource(ENDPOINT_TYPE, "echo", cla)

            serve("HEALTHY")
            lowest = XdsDiscovery(server.address, "echo")
            everything = XdsDiscovery(server.address, "echo", priority="all")
            (only,) = await lowest.resolve()
            assert (only.port, only.metadata["zone"], only.metadata["locality_weight"]) == (
                8001,
                "a",
                "3",
            )
            both = {(e.port, e.metadata["priority"]) for e in await everything.resolve()}
            assert both == {(8001, "0"), (8002, "1")}
            serve("UNHEALTHY")  # priority 0 has nothing usable: fail over to priority 1
            assert {e.port for e in await lowest.resolve()} == {8002}

    run(main())


def test_filter_metadata() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            cla = cluster_load_assignment("echo", [Endpoint(HOST, 8001, 2, {"canary": "yes"})])
            lb = cla.endpoints[0].lb_endpoints[0]
            lb.metadata.filter_metadata["envoy.lb"].update({"version": "v2", "n": 3})
            server.set_resource(ENDPOINT_TYPE, "echo", cla)
            (endpoint,) = await XdsDiscovery(server.address, "echo").resolve()
            assert endpoint.weight == 2
            assert endpoint.metadata["canary"] == "yes"
            assert endpoint.metadata["envoy.lb/version"] == "v2"
            assert "envoy.lb/n" not in endpoint.metadata  # only string fields

    run(main())


def test_absent_resource_keeps_the_set() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo") as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                await eventually(lambda: len(server.acks) == 1)
                server.remove_resource(ENDPOINT_TYPE, "echo")
                await eventually(lambda: len(server.acks) == 2)  # ACKed, not a deletion
                assert source.current == good and not source.stale
                server.set_endpoints("echo", [(HOST, 8002)])
                assert addresses(await watcher.next()) == {(8002, 1)}

    run(main())


def test_server_stopped_then_restarted() -> None:
    async def main() -> None:
        server = XdsServer()
        await server.start()
        try:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo", node_id="n1", **FAST) as source:
                watcher = Watcher(source.watch())
                good = await watcher.next()
                await server.stop()
                await eventually(lambda: source.stale)
                assert source.current == good
                with pytest.raises(DiscoveryError):
                    await XdsDiscovery(server.address, "echo", timeout=1.0).resolve()
                await asyncio.sleep(0.3)  # several failed reconnects
                await server.start()  # same port, same resources: recovers by itself
                await eventually(lambda: not source.stale)
                assert source.current == good
                resubscribe = [r for r in server.requests if r.kind == "subscribe"][-1].request
                assert resubscribe.version_info == "1"  # the last ACKed version
                assert resubscribe.node.id == "n1"
                server.set_endpoints("echo", [(HOST, 8002)])
                assert addresses(await watcher.next()) == {(8002, 1)}
                assert source.streams == 2
        finally:
            await server.stop()

    run(main())


def test_set_changed_while_server_down_is_seen_after_restart() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo", **FAST) as source:
                watcher = Watcher(source.watch())
                await watcher.next()
                await server.stop()
                await eventually(lambda: source.stale)
                server.set_endpoints("echo", [(HOST, 8009)])
                await server.start()
                assert addresses(await watcher.next()) == {(8009, 1)}
                assert not source.stale

    run(main())


def test_stream_drop_reconnects() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 8001)])
            async with XdsDiscovery(server.address, "echo", **FAST) as source:
                watcher = Watcher(source.watch())
                await watcher.next()
                server.drop_streams()
                await eventually(lambda: source.streams == 2 and not source.stale)
                server.drop_streams()
                await eventually(lambda: source.streams == 3 and not source.stale)
                server.set_endpoints("echo", [(HOST, 8002)])
                assert addresses(await watcher.next()) == {(8002, 1)}
                assert server.streams == 1

    run(main())


@pytest.mark.parametrize("mode", ["ads", "eds"])
def test_two_clusters_are_independent(mode: Any) -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("a", [(HOST, 8001)])
            server.set_endpoints("b", [(HOST, 9001)])
            source_a = XdsDiscovery(server.address, "a", mode=mode)
            source_b = XdsDiscovery(server.address, "b", mode=mode)
            async with source_a, source_b:
                watch_a, watch_b = Watcher(source_a.watch()), Watcher(source_b.watch())
                assert addresses(await watch_a.next()) == {(8001, 1)}
                assert addresses(await watch_b.next()) == {(9001, 1)}
                server.set_endpoints("a", [(HOST, 8002)])
                assert addresses(await watch_a.next()) == {(8002, 1)}
                server.set_endpoints("b", [(HOST, 9001), (HOST, 70000)])  # bad for b only
                await eventually(lambda: len(server.nacks) == 1)
                server.set_endpoints("a", [(HOST, 8003)])
                assert addresses(await watch_a.next()) == {(8003, 1)}
                assert addresses(source_b.current or ()) == {(9001, 1)}
                with pytest.raises(TimeoutError):
                    await watch_b.next(timeout=0.3)

    run(main())


def test_resolve_errors() -> None:
    async def main() -> None:
        async with XdsServer() as server:
            server.set_endpoints("echo", [(HOST, 70000)])
            with pytest.raises(DiscoveryError, match="no valid 'ghost' endpoints within"):
                await XdsDiscovery(server.address, "ghost", timeout=0.3).resolve()
            with pytest.raises(DiscoveryError, match="no valid 'echo' endpoints"):
                await XdsDiscovery(server.address, "echo", timeout=0.3).resolve()
            # The response was NACKed (the NACK may land after resolve() gave up).
            await eventually(lambda: len(server.nacks) == 1)
            port = server.port
        with pytest.raises(DiscoveryError, match="UNAVAILABLE"):
            await XdsDiscovery(f"{HOST}:{port}", "echo").resolve()

    run(main())


def test_bad_parameters() -> None:
    for kwargs in ({"mode": "delta"}, {"priority": "first"}, {"timeout": 0}, {"node_id": ""}):
        with pytest.raises(ConfigError):
            XdsDiscovery("127.0.0.1:1", "echo", **kwargs)
    with pytest.raises(ConfigError):
        XdsDiscovery("", "echo")
    with pytest.raises(ConfigError):
        XdsDiscovery("127.0.0.1:1", "")


# -- the server against grpcio's own xds: resolver -----------------------------------------------

METHOD = "/meshcore.test.Echo/Name"


class _NameHandler(grpc.GenericRpcHandler):
    """Answers every call of METHOD with the backend's name."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler_call_details.method != METHOD:
            return None

        async def name(request: bytes, context: Any) -> bytes:
            return self.name

        return grpc.unary_unary_rpc_method_handler(name)


class GrpcClient:
    """grpcio's ``xds:`` client in a subprocess (``grpc_xds_client.py``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def calls(self, n: int) -> list[str]:
        """The backend names that answered ``n`` calls."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{n}\n".encode())
        await self.process.stdin.drain()
        answers: list[str] = json.loads(await self.process.stdout.readline())
        return answers

    async def covering(self, n: int, expected: set[str], timeout: float = 20.0) -> None:
        """Calls in rounds of ``n`` until every backend in ``expected`` has answered, checking
        that no other one does (round robin may start with only some backends connected)."""
        seen: set[str] = set()
        async with asyncio.timeout(timeout):
            while seen != expected:
                answers = set(await self.calls(n))
                assert answers <= expected, (answers, expected)
                seen |= answers

    async def until(self, n: int, expected: set[str], timeout: float = 20.0) -> list[str]:
        """Calls in rounds of ``n`` until a round is answered only by ``expected`` backends."""
        async with asyncio.timeout(timeout):
            while not set(answers := await self.calls(n)) <= expected:
                await asyncio.sleep(0.05)
        return answers


@asynccontextmanager
async def xds_world(
    tmp_path: Path, backends: int = 3
) -> AsyncIterator[tuple[XdsServer, GrpcClient, dict[str, int]]]:
    """The control plane serving ``xds:///echo``, ``backends`` gRPC backends named b0, b1, ...
    and a grpcio client bootstrapped to the control plane."""
    servers: list[grpc.aio.Server] = []
    ports: dict[str, int] = {}
    process = None
    try:
        for i in range(backends):
            backend = grpc.aio.server()
            backend.add_generic_rpc_handlers((_NameHandler(f"b{i}"),))
            ports[f"b{i}"] = backend.add_insecure_port(f"{HOST}:0")
            await backend.start()
            servers.append(backend)
        async with XdsServer() as server:
            server.set_service("echo", "echo-cluster")
            bootstrap = {
                "xds_servers": [
                    {
                        "server_uri": server.address,
                        "channel_creds": [{"type": "insecure"}],
                        "server_features": ["xds_v3"],
                    }
                ],
                "node": {"id": "grpc-client"},
            }
            env = dict(os.environ, GRPC_XDS_BOOTSTRAP_CONFIG=json.dumps(bootstrap))
            env.pop("GRPC_XDS_BOOTSTRAP", None)
            with (tmp_path / "client.stderr").open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(Path(__file__).with_name("grpc_xds_client.py")),
                    "xds:///echo",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                )
            yield server, GrpcClient(process), ports
    finally:
        if process is not None and process.returncode is None:
            process.kill()  # by its own PID
            await process.wait()
        for backend in servers:
            await backend.stop(None)


def test_grpc_xds_client_follows_the_server(tmp_path: Path) -> None:
    async def main() -> None:
        async with xds_world(tmp_path) as (server, client, ports):
            b0, b1, b2 = ((HOST, ports[f"b{i}"]) for i in range(3))
            server.set_endpoints("echo-cluster", [b0, b1])
            await client.covering(10, {"b0", "b1"})  # spread over both endpoints
            server.set_endpoints("echo-cluster", [b2])  # the set replaced
            await client.until(10, {"b2"})
            assert set(await client.calls(20)) == {"b2"}
            server.set_endpoints("echo-cluster", [(*b1, 1, "HEALTHY"), (*b2, 1, "UNHEALTHY")])
            await client.until(10, {"b1"})
            assert set(await client.calls(20)) == {"b1"}
            # The client subscribed to the listener, the cluster and its endpoints, and ACKed.
            requests = client_requests(server, "grpc-client")
            subscribed = {r.request.type_url.rsplit(".", 1)[-1] for r in requests}
            assert subscribed == {"Listener", "Cluster", "ClusterLoadAssignment"}
            assert server.acks and not server.nacks

    run(main(), timeout=60)


def test_grpc_xds_client_keeps_last_good_config_on_nack(tmp_path: Path) -> None:
    async def main() -> None:
        async with xds_world(tmp_path, backends=2) as (server, client, ports):
            server.set_endpoints("echo-cluster", [(HOST, ports["b0"]), (HOST, ports["b1"])])
            await client.covering(10, {"b0", "b1"})
            server.set_endpoints("echo-cluster", [(HOST, ports["b0"]), (HOST, 70000)])
            await eventually(lambda: len(server.nacks) == 1)
            nack = server.nacks[0].request
            assert "port" in nack.error_detail.message
            assert nack.version_info == "1"  # its last good version
            await client.covering(10, {"b0", "b1"})  # still the last good config
            server.set_endpoints("echo-cluster", [(HOST, ports["b1"])])
            await client.until(10, {"b1"})

    run(main(), timeout=60)
