"""xDS discovery: how long a change on the management server takes to come out of ``watch()``.

    python benches/bench_xds.py [--quick]

meshcore's test control plane (``meshcore.testing.xds.XdsServer``) and an ``XdsDiscovery`` run in
one process and event loop on 127.0.0.1, as in the tests. One update is ``set_endpoints`` of a
3-endpoint set that differs from the last, timed until ``watch()`` yields it; the next update
waits for the previous ACK, so none is superseded. Reported: p50, p99 and max over the pushes
(ms). Then a ``ClusterLoadAssignment`` of 10 000 endpoints: the time to build it (test-server
side, not part of the client's cost), and from ``set_resource`` to the set out of ``watch()``
(serialisation, loopback, parsing and validation, 10 000 ``Endpoint`` objects). The machine is
shared and noisy: figures are indications.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from meshcore.discovery import EndpointSet, XdsDiscovery
from meshcore.testing.xds import ENDPOINT_TYPE, XdsServer, cluster_load_assignment

HOST = "127.0.0.1"


async def main(pushes: int, big: int) -> None:
    async with XdsServer() as server:
        server.set_endpoints("echo", [(HOST, 1)])
        async with XdsDiscovery(server.address, "echo") as source:
            queue: asyncio.Queue[EndpointSet] = asyncio.Queue()

            async def drain() -> None:
                async for endpoints in source.watch():
                    queue.put_nowait(endpoints)

            task = asyncio.create_task(drain())
            await queue.get()
            samples: list[float] = []
            for i in range(pushes):
                while len(server.acks) < i + 1:
                    await asyncio.sleep(0.001)
                start = time.perf_counter()
                server.set_endpoints("echo", [(HOST, 2 + (i + k) % 60000) for k in range(3)])
                await queue.get()
                samples.append((time.perf_counter() - start) * 1e3)
            samples.sort()
            p99 = samples[min(len(samples) - 1, round(0.99 * len(samples)))]
            print(
                f"update latency over {pushes} pushes: p50 {statistics.median(samples):.2f} ms, "
                f"p99 {p99:.2f} ms, max {samples[-1]:.2f} ms"
            )

            start = time.perf_counter()
            cla = cluster_load_assignment(
                "echo", [(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 8080) for i in range(big)]
            )
            built = time.perf_counter() - start
            size = cla.ByteSize()
            start = time.perf_counter()
            server.set_resource(ENDPOINT_TYPE, "echo", cla)
            got = await queue.get()
            seen = time.perf_counter() - start
            assert len(got) == big
            print(
                f"{big} endpoints ({size / 1e6:.2f} MB): built in {built * 1e3:.0f} ms, "
                f"set_resource -> watch() {seen * 1e3:.0f} ms"
            )
            task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 pushes, 1000 endpoints")
    args = parser.parse_args()
    asyncio.run(main(20, 1000) if args.quick else main(200, 10_000))
