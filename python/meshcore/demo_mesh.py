"""The service-mesh part of ``python -m meshcore demo``: discovery, health checking and load
balancing working together on loopback.

An in-process xDS control plane (:class:`meshcore.testing.xds.XdsServer`) serves the endpoints of
a service; real TCP backends on 127.0.0.1 answer requests with their name. An
:class:`~meshcore.discovery.XdsDiscovery` follows the control plane, a
:class:`~meshcore.health.HealthChecker` with a TCP probe follows the discovery source and keeps a
weighted round-robin :class:`~meshcore.Balancer` up to date, and a client sends real requests
through the balancer. Three phases: the initial set (weights 3 : 2 : 1), a backend that dies (the
checker takes it out), and a new backend pushed by the control plane.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from meshcore._meshcore import Balancer
from meshcore.discovery import XdsDiscovery
from meshcore.endpoint import Endpoint
from meshcore.health import HealthChecker, TcpProbe
from meshcore.testing.xds import XdsServer

__all__ = ["mesh_summary"]


class _Backend:
    """A TCP server on 127.0.0.1 that answers every connection with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(self.name.encode() + b"\n")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def _request(address: str) -> str:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"hello\n")
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def _phase(balancer: Balancer, requests: int) -> tuple[Counter[str], int]:
    """Send ``requests`` requests through the balancer: answers per backend, and failures."""
    answers: Counter[str] = Counter()
    failed = 0
    for _ in range(requests):
        address = balancer.pick()
        start = time.monotonic()
        try:
            answers[await _request(address)] += 1
            balancer.done(address, time.monotonic() - start, True)
        except OSError:
            failed += 1
            balancer.done(address, time.monotonic() - start, False)
    return answers, failed


async def _run(requests: int) -> list[str]:
    lines: list[str] = []
    backends = {name: _Backend(name) for name in ("a", "b", "c", "d")}
    for b in backends.values():
        await b.start()

    def endpoint(name: str, weight: int) -> Endpoint:
        return Endpoint("127.0.0.1", backends[name].port, weight, {"name": name})

    def names(endpoints: frozenset[Endpoint]) -> str:
        return ", ".join(sorted(f"{e.metadata['name']} (weight {e.weight})" for e in endpoints))

    balancer = Balancer("round_robin", [])
    probe = TcpProbe(timeout=2.0)
    try:
        async with XdsServer() as control:
            control.set_endpoints("echo", [endpoint("a", 3), endpoint("b", 2), endpoint("c", 1)])
            source = XdsDiscovery(control.address, "echo", node_id="meshcore-demo")
            checker = HealthChecker(
                probe, source, interval=0.1, healthy_threshold=1, unhealthy_threshold=2,
                balancer=balancer,
            )  # fmt: skip
            async with checker:
                healthy = checker.watch()

                async def settle(want: int) -> frozenset[Endpoint]:
                    while True:
                        got = await asyncio.wait_for(anext(healthy), 30)
                        if len(got) == want:
                            return got

                async def report(title: str, got: frozenset[Endpoint]) -> None:
                    answers, failed = await _phase(balancer, requests)
                    shares = "  ".join(f"{name}: {answers[name]:>3}" for name in sorted(answers))
                    lines.append(f"  {title}")
                    lines.append(f"    healthy: {names(got)}")
                    lines.append(f"    {requests} requests -> {shares}   failed: {failed}")

                await report("xDS serves a, b, c", await settle(3))
                await backends["b"].stop()
                start = time.monotonic()
                got = await settle(2)
                await report(
                    f"b stops; the TCP checks take it out in {time.monotonic() - start:.2f} s", got
                )
                new = [endpoint("a", 3), endpoint("c", 1), endpoint("d", 2)]
                control.set_endpoints("echo", new)
                start = time.monotonic()
                got = await settle(3)
                await report(
                    f"the control plane adds d: in the balancer {time.monotonic() - start:.2f} s"
                    " later",
                    got,
                )
    finally:
        await probe.aclose()
        for b in backends.values():
            await b.stop()
    return lines


def mesh_summary(requests: int = 300) -> str:
    """Run the three phases and describe them (a few seconds, loopback only)."""
    lines = [
        "Discovery, health checks and balancing on loopback (xDS -> TCP health checks ->"
        " weighted round robin):"
    ]
    lines += asyncio.run(_run(requests))
    return "\n".join(lines)
