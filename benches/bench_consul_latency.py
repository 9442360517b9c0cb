"""Consul update latency: from a change made through the agent's HTTP API to the new set coming out
of ``ConsulDiscovery.watch()``.

    MESHCORE_CONSUL_BIN=/path/to/consul python benches/bench_consul_latency.py [--updates 100]

Starts a Consul dev agent on loopback (free ports, as the tests do; ``--url`` uses a running agent
instead), opens one watch with a long ``wait`` (so every update is delivered by a blocking query
waking up, never by a timeout), then alternately registers and deregisters an instance with raw
``PUT`` calls. Each latency runs from just before the ``PUT`` is sent to the moment the consumer
of ``watch()`` holds the set with that change, so it includes the ``PUT`` itself, Consul's
catalog write, the blocking query's wake-up, the JSON parse and the mapping. The ``PUT`` alone is
reported too, and the watch's arrival minus the ``PUT``'s response (negative when the watcher
has the set before the writer has its answer).
Then ``ConsulRegistration`` entry (register + first pass) to the endpoint being watched. The
machine is shared and noisy: read the order of magnitude, not the digits.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from meshcore.discovery import ConsulDiscovery, ConsulRegistration, EndpointSet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from consul import ConsulAgent  # the tests' agent fixture (tests/consul.py)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<44} n={len(ms):<4} p50 {quantile(ms, 0.5):7.2f} ms"
        f"  p99 {quantile(ms, 0.99):7.2f} ms  max {max(ms):7.2f} ms"
        f"  mean {statistics.fmean(ms):7.2f} ms"
    )


async def measure(url: str, updates: int) -> None:
    arrivals: asyncio.Queue[tuple[float, EndpointSet]] = asyncio.Queue()
    latencies: list[float] = []
    puts: list[float] = []
    after_put: list[float] = []
    async with (
        httpx.AsyncClient(base_url=url) as http,
        ConsulDiscovery(url, "bench", wait=300, max_rate=1000) as d,
    ):

        async def consume() -> None:
            async for endpoints in d.watch():
                arrivals.put_nowait((time.perf_counter(), endpoints))

        consumer = asyncio.create_task(consume())
        base = {"ID": "bench-base", "Name": "bench", "Port": 9000, "Address": "127.0.0.1"}
        (await http.put("/v1/agent/service/register", json=base)).raise_for_status()
        while True:
            _, got = await arrivals.get()
            if len(got) == 1:
                break
        await asyncio.sleep(0.2)
        for i in range(updates):
            add = i % 2 == 0
            want = 2 if add else 1
            start = time.perf_counter()
            if add:
                body = {"ID": "bench-x", "Name": "bench", "Port": 9001 + i, "Address": "127.0.0.2"}
                response = await http.put("/v1/agent/service/register", json=body)
            else:
                response = await http.put("/v1/agent/service/deregister/bench-x")
            put_done = time.perf_counter()
            puts.append(put_done - start)
            response.raise_for_status()
            while True:
                at, got = await asyncio.wait_for(arrivals.get(), 30)
                if len(got) == want:
                    break
            latencies.append(at - start)
            after_put.append(at - put_done)
            await asyncio.sleep(0.02)
        report("HTTP change -> watch() (register/deregister)", latencies)
        report("  the PUT alone (start -> its response)", puts)
        report("  PUT response -> watch() (< 0: watch first)", after_put)

        entered: list[float] = []
        for i in range(min(updates, 30)):
            start = time.perf_counter()
            async with ConsulRegistration(url, "bench", f"127.0.0.3:{10000 + i}", ttl=10):
                while True:
                    at, got = await asyncio.wait_for(arrivals.get(), 30)
                    if len(got) == 2:
                        break
                entered.append(at - start)
            while True:
                _, got = await asyncio.wait_for(arrivals.get(), 30)
                if len(got) == 1:
                    break
        report("ConsulRegistration enter -> watch()", entered)
        print(f"health queries sent: {d.queries}")
        consumer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--url", help="a running agent's HTTP address (default: start one)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(measure(args.url, args.updates))
        return
    with tempfile.TemporaryDirectory() as tmp:
        agent = ConsulAgent(Path(tmp))
        agent.start()
        try:
            asyncio.run(measure(agent.url, args.updates))
        finally:
            agent.stop()


if __name__ == "__main__":
    main()
