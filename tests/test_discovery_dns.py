"""DnsDiscovery against a real Knot DNS server on loopback: SRV, A/AAAA, Consul-style names,
record changes seen by watch(), TTL re-reads, a stopped server and malformed records.

Knot comes from the Debian package ``knot`` (``scripts/test.sh`` installs it when root). Without
it these tests skip, except under CI (``CI`` set), where they fail instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from knotdns import TSIG_NAME, TSIG_SECRET, KnotServer, find_knot
from meshcore import ConfigError, DiscoveryError, Endpoint
from meshcore.discovery import DnsDiscovery
from watching import Watcher, eventually, run

if find_knot() is None:
    if os.environ.get("CI"):
        raise RuntimeError("Knot DNS (Debian package `knot`) is required under CI")
    pytest.skip("Knot DNS (Debian package `knot`) is not installed", allow_module_level=True)


MESH = """\
$ORIGIN mesh.test.
$TTL 30
@    SOA ns1 hostmaster 1 3600 600 86400 5
     NS  ns1
ns1  A   127.0.0.1
a    A   127.0.0.11
a    AAAA ::1
b    A   127.0.0.12
standby A 127.0.0.13
_grpc._tcp.echo SRV 10 60 50051 a
_grpc._tcp.echo SRV 10 40 50052 b
_grpc._tcp.echo SRV 20 0 50053 standby
echo 5 A 127.0.0.11
echo 5 A 127.0.0.12
v6only AAAA ::1
fast 1 A 127.0.0.31
zero 0 A 127.0.0.32
slow 3600 A 127.0.0.33
_bad._tcp.echo SRV 10 10 0 a
_bad._tcp.echo SRV 10 10 50060 ghost
_bad._tcp.echo SRV 10 10 50061 b
_bad._tcp.echo SRV 10 10 50062 nothing.elsewhere.test.
_none._tcp.echo SRV 0 0 0 .
_xzone._tcp.echo SRV 10 5 8300 node1.node.dc1.consul.
txtonly TXT "not an address"
"""

# Consul's DNS interface, as Consul serves it: <svc>.service.consul (A) and
# _<svc>._tcp.service.consul (SRV with <node>.node.<dc>.consul targets).
CONSUL = """\
$ORIGIN consul.
$TTL 0
@    SOA ns1.mesh.test. hostmaster.mesh.test. 1 3600 600 86400 0
     NS  ns1.mesh.test.
web.service A 127.0.0.21
web.service A 127.0.0.22
_web._tcp.service SRV 1 1 8080 node1.node.dc1
_web._tcp.service SRV 1 1 8081 node2.node.dc1
node1.node.dc1 A 127.0.0.21
node2.node.dc1 A 127.0.0.22
"""


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotServer]:
    server = KnotServer(tmp_path / "knot", {"mesh.test": MESH, "consul": CONSUL})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def source(knot: KnotServer, name: str, **kw: Any) -> DnsDiscovery:
    kw.setdefault("min_ttl", 0.1)
    kw.setdefault("timeout", 0.3)
    kw.setdefault("lifetime", 0.8)
    return DnsDiscovery(name, nameservers=["127.0.0.1"], nameserver_port=knot.port, **kw)


def srv(host: str, port: int, weight: int, target: str, priority: int) -> Endpoint:
    return Endpoint(host, port, weight, {"target": target, "priority": str(priority)})


ECHO_10 = frozenset(
    {
        srv("127.0.0.11", 50051, 60, "a.mesh.test", 10),
        srv("::1", 50051, 60, "a.mesh.test", 10),
        srv("127.0.0.12", 50052, 40, "b.mesh.test", 10),
    }
)
STANDBY = srv("127.0.0.13", 50053, 1, "standby.mesh.test", 20)


def test_srv_lowest_priority(knot: KnotServer) -> None:
    assert run(source(knot, "_grpc._tcp.echo.mesh.test").resolve()) == ECHO_10


def test_srv_all_priorities(knot: KnotServer) -> None:
    got = run(source(knot, "_grpc._tcp.echo.mesh.test.", srv_priority="all").resolve())
    assert got == ECHO_10 | {STANDBY}  # weight 0 becomes 1


def test_srv_falls_back_to_the_next_priority(knot: KnotServer) -> None:
    # Every target of priority 10 gone from DNS: the standby group is used.
    knot.change("mesh.test", ("unset", "a", "A"), ("unset", "a", "AAAA"), ("unset", "b", "A"))
    assert run(source(knot, "_grpc._tcp.echo.mesh.test").resolve()) == {STANDBY}


def test_a_and_aaaa_with_port(knot: KnotServer) -> None:
    assert run(source(knot, "a.mesh.test", port=80).resolve()) == {
        Endpoint("127.0.0.11", 80),
        Endpoint("::1", 80),
    }
    assert run(source(knot, "v6only.mesh.test", port=80).resolve()) == {Endpoint("::1", 80)}


def test_missing_names_are_empty_sets(knot: KnotServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        assert run(source(knot, "nope.mesh.test", port=80).resolve()) == frozenset()
        assert run(source(knot, "txtonly.mesh.test", port=80).resolve()) == frozenset()
        assert run(source(knot, "_nope._tcp.mesh.test").resolve()) == frozenset()
        # A single SRV record with target "." says "no such service here".
        assert run(source(knot, "_none._tcp.echo.mesh.test").resolve()) == frozenset()
    assert "no A or AAAA records" in caplog.text and "no SRV records" in caplog.text


def test_consul_style_names(knot: KnotServer) -> None:
    assert run(source(knot, "web.service.consul", port=8080).resolve()) == {
        Endpoint("127.0.0.21", 8080),
        Endpoint("127.0.0.22", 8080),
    }
    assert run(source(knot, "_web._tcp.service.consul").resolve()) == {
        srv("127.0.0.21", 8080, 1, "node1.node.dc1.consul", 1),
        srv("127.0.0.22", 8081, 1, "node2.node.dc1.consul", 1),
    }
    # A target in another zone: no glue in the answer, so its addresses are queried.
    assert run(source(knot, "_xzone._tcp.echo.mesh.test").resolve()) == {
        srv("127.0.0.21", 8300, 5, "node1.node.dc1.consul", 10)
    }


def test_malformed_records_are_skipped(knot: KnotServer, caplog: pytest.LogCaptureFixture) -> None:
    # _bad: port 0, a target that does not exist, a good one, and a target outside every zone
    # (REFUSED): that last one makes the read fail, as any server error does.
    src = source(knot, "_bad._tcp.echo.mesh.test")
    with pytest.raises(DiscoveryError, match=r"nothing\.elsewhere\.test"):
        run(src.resolve())
    knot.change(
        "mesh.test",
        ("unset", "_bad._tcp.echo", "SRV", "10", "10", "50062", "nothing.elsewhere.test."),
    )
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        got = run(src.resolve())
        assert got == {srv("127.0.0.12", 50061, 10, "b.mesh.test", 10)}
        run(src.resolve())  # the same problems are not logged twice
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("port 0" in w for w in warnings)
    assert any("ghost.mesh.test" in w and "no A or AAAA" in w for w in warnings)


def test_watch_sees_record_changes(knot: KnotServer) -> None:
    async def main() -> None:
        async with source(knot, "_grpc._tcp.echo.mesh.test", max_ttl=0.2) as d:
            it = Watcher(d.watch())
            assert await it.next() == ECHO_10
            knot.change(
                "mesh.test",
                ("set", "c", "30", "A", "127.0.0.14"),
                ("set", "_grpc._tcp.echo", "30", "SRV", "10", "50", "50054", "c.mesh.test."),
                ("unset", "_grpc._tcp.echo", "SRV", "10", "40", "50052", "b.mesh.test."),
            )
            changed = await it.next()
            assert changed == (ECHO_10 - {srv("127.0.0.12", 50052, 40, "b.mesh.test", 10)}) | {
                srv("127.0.0.14", 50054, 50, "c.mesh.test", 10)
            }
            # A target's address changes: seen too.
            knot.change("mesh.test", ("unset", "c", "A"), ("set", "c", "30", "A", "127.0.0.15"))
            assert Endpoint(
                "127.0.0.15", 50054, 50, {"target": "c.mesh.test", "priority": "10"}
            ) in (await it.next())
            # Several re-reads of an unchanged set yield nothing.
            before = d.lookups
            await eventually(lambda: d.lookups >= before + 2)
            assert it.queue.empty()

    run(main())


def test_watch_sees_a_dynamic_update(knot: KnotServer) -> None:
    # RFC 2136 UPDATE signed with TSIG, as a registration agent would send it.
    async def main() -> None:
        async with source(knot, "_grpc._tcp.echo.mesh.test", max_ttl=0.2) as d:
            it = Watcher(d.watch())
            assert await it.next() == ECHO_10
            keyring = dns.tsigkeyring.from_text({TSIG_NAME: TSIG_SECRET})
            update = dns.update.UpdateMessage(
                "mesh.test", keyring=keyring, keyalgorithm="hmac-sha256"
            )
            update.add("e", 30, "A", "127.0.0.17")
            update.add("_grpc._tcp.echo", 30, "SRV", "10 5 50055 e.mesh.test.")
            response = await asyncio.to_thread(dns.query.tcp, update, "127.0.0.1", 2, knot.port)
            assert response.rcode() == dns.rcode.NOERROR
            assert await it.next() == ECHO_10 | {srv("127.0.0.17", 50055, 5, "e.mesh.test", 10)}

    run(main())


def test_rereads_follow_the_ttl(knot: KnotServer) -> None:
    async def main() -> None:
        # TTL 1 s: a change is seen after about a second, not before the TTL runs out.
        async with source(knot, "fast.mesh.test", port=80, min_ttl=0.1) as d:
            it = Watcher(d.watch())
            assert await it.next() == {Endpoint("127.0.0.31", 80)}
            knot.change(
                "mesh.test", ("unset", "fast", "A"), ("set", "fast", "1", "A", "127.0.0.41")
            )
            # (test_next_read_is_the_clamped_smallest_ttl checks the delay itself)
            assert await it.next(5) == {Endpoint("127.0.0.41", 80)}
        # TTL 3600 s without a ceiling below it: one read, the change is not seen.
        async with source(knot, "slow.mesh.test", port=80) as d:
            it = Watcher(d.watch())
            assert await it.next() == {Endpoint("127.0.0.33", 80)}
            knot.change(
                "mesh.test", ("unset", "slow", "A"), ("set", "slow", "3600", "A", "127.0.0.43")
            )
            with pytest.raises(asyncio.TimeoutError):
                await it.next(1.0)
            assert d.lookups == 1
        # The same TTL under a 0.2 s ceiling: seen quickly.
        async with source(knot, "slow.mesh.test", port=80, max_ttl=0.2) as d:
            it = Watcher(d.watch())
            assert await it.next() == {Endpoint("127.0.0.43", 80)}
            knot.change(
                "mesh.test", ("unset", "slow", "A"), ("set", "slow", "3600", "A", "127.0.0.44")
            )
            assert await it.next(3) == {Endpoint("127.0.0.44", 80)}
        # TTL 0 under a 0.5 s floor: the next read is 0.5 s away, and no busy loop: reads at
        # least 0.5 s apart fit at most 3 times in a quiet 1.2 s (a slow machine reads fewer).
        async with source(knot, "zero.mesh.test", port=80, min_ttl=0.5) as d:
            assert (await d._fetch())[1] == 0.5
            await eventually(lambda: d.current is not None)
            before = d.lookups
            await asyncio.sleep(1.2)
            assert d.lookups - before <= 3

    run(main())


def test_server_stopped_keeps_last_set_and_recovers(
    knot: KnotServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        src = source(
            knot, "_grpc._tcp.echo.mesh.test", max_ttl=0.2, backoff_initial=0.1, backoff_max=0.3
        )
        async with src as d:
            it = Watcher(d.watch())
            assert await it.next() == ECHO_10
            knot.stop()
            await eventually(lambda: d.stale)
            assert d.current == ECHO_10
            with pytest.raises(DiscoveryError):
                await d.resolve()
            # While down, nothing is yielded; the watcher keeps retrying.
            with pytest.raises(asyncio.TimeoutError):
                await it.next(0.5)
            # The server restarts (with its zones); a change made after that is seen.
            await asyncio.to_thread(knot.start)
            await eventually(lambda: not d.stale)
            knot.change("mesh.test", ("set", "b", "30", "A", "127.0.0.16"))
            got = await it.next()
            assert srv("127.0.0.16", 50052, 40, "b.mesh.test", 10) in got
            assert not d.stale

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert "unavailable" in caplog.text and "recovered" in caplog.text


def test_server_down_at_start(tmp_path: Path) -> None:
    server = KnotServer(tmp_path / "knot", {"mesh.test": MESH})

    async def main() -> None:
        async with source(
            server, "a.mesh.test", port=80, backoff_initial=0.1, backoff_max=0.3
        ) as d:
            it = Watcher(d.watch())
            await eventually(lambda: d.stale)
            assert d.current is None
            await asyncio.to_thread(server.start)
            assert await it.next() == {Endpoint("127.0.0.11", 80), Endpoint("::1", 80)}
            assert not d.stale

    try:
        run(main())
    finally:
        server.stop()


def test_ipv6_nameserver(knot: KnotServer) -> None:
    if "::1" not in knot.addresses:
        pytest.skip("no IPv6 loopback")
    src = DnsDiscovery("b.mesh.test", port=80, nameservers=["::1"], nameserver_port=knot.port)
    assert run(src.resolve()) == {Endpoint("127.0.0.12", 80)}


def test_next_read_is_the_clamped_smallest_ttl(knot: KnotServer) -> None:
    # The delay each read returns, exactly (no timing involved): _fetch() is the sans-IO step.
    async def delay(name: str, **kw: Any) -> float | None:
        return (await source(knot, name, **kw)._fetch())[1]

    async def main() -> None:
        assert await delay("fast.mesh.test", port=80) == 1.0
        assert await delay("zero.mesh.test", port=80, min_ttl=0.5) == 0.5
        assert await delay("slow.mesh.test", port=80) == 300.0
        assert await delay("slow.mesh.test", port=80, max_ttl=60) == 60.0
        assert await delay("_grpc._tcp.echo.mesh.test") == 30.0
        # A target's shorter TTL wins over the SRV record's.
        knot.change("mesh.test", ("unset", "b", "A"), ("set", "b", "7", "A", "127.0.0.12"))
        assert await delay("_grpc._tcp.echo.mesh.test") == 7.0
        assert await delay("nope.mesh.test", port=80, negative_ttl=4) == 4.0

    run(main())


def test_servfail_is_unavailable(knot: KnotServer) -> None:
    # REFUSED for a name outside the server's zones: a failed read, not an empty set.
    with pytest.raises(DiscoveryError, match="no server answered"):
        run(source(knot, "x.other.test", port=80).resolve())


def test_warnings_are_remembered_in_bounded_memory(
    knot: KnotServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Each distinct problem is logged once; a server inventing new ones forever (a name whose
    # records keep changing) must not grow the memory of what was logged.
    d = source(knot, "nope.mesh.test", port=80)
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        assert run(d.resolve()) == frozenset()
        assert run(d.resolve()) == frozenset()
        assert caplog.text.count("no A or AAAA records") == 1
        for i in range(5000):
            d._warn_once(f"problem {i}")
    assert len(d._warned) <= 1024


def test_constructor_checks() -> None:
    with pytest.raises(ConfigError, match="port"):
        DnsDiscovery("a.mesh.test")
    with pytest.raises(ConfigError, match="SRV"):
        DnsDiscovery("_grpc._tcp.echo.mesh.test", port=80)
    with pytest.raises(ConfigError):
        DnsDiscovery("a.mesh.test", port=0)
    with pytest.raises(ConfigError):
        DnsDiscovery("a.mesh.test", port=80, min_ttl=5, max_ttl=1)
    with pytest.raises(ConfigError):
        DnsDiscovery("_a._tcp.x", srv_priority="first")  # type: ignore[arg-type]  # bad on purpose
