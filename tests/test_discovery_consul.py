"""ConsulDiscovery and ConsulRegistration against a real Consul dev agent on loopback: the entry
mapping, ``?passing``, blocking-query watches, filters, malformed entries, TTL heartbeats, a
crashed registrant, an agent restart mid-watch, and Consul's DNS interface read by DnsDiscovery.

The agent binary comes from ``MESHCORE_CONSUL_BIN`` or PATH (``scripts/get-consul.sh`` fetches
Consul 1.8.7). Without it these tests skip, except under CI (``CI`` set), where they fail instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consul import ConsulAgent, find_consul
from meshcore import ConfigError, DiscoveryError, Endpoint
from meshcore.discovery import ConsulDiscovery, ConsulRegistration, DnsDiscovery
from servers import free_ports
from watching import Watcher, eventually, run

if find_consul() is None:
    _where = os.environ.get("MESHCORE_CONSUL_BIN")
    _why = (
        f"MESHCORE_CONSUL_BIN={_where!r} is not an executable"
        if _where
        else "consul not found: set MESHCORE_CONSUL_BIN (scripts/get-consul.sh fetches it)"
    )
    if os.environ.get("CI"):
        raise RuntimeError(f"the Consul tests need the agent under CI: {_why}")
    pytest.skip(_why, allow_module_level=True)

NODE = "meshcore-test"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    """One agent for the module; each test uses its own service names."""
    server = ConsulAgent(tmp_path_factory.mktemp("consul"), NODE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    """An agent for a test that stops and restarts it."""
    server = ConsulAgent(tmp_path / "consul", NODE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def source(agent: ConsulAgent, service: str, **kw: Any) -> ConsulDiscovery:
    kw.setdefault("timeout", 2.0)
    return ConsulDiscovery(agent.url, service, **kw)


def ep(host: str, port: int, weight: int = 1, sid: str = "", **meta: str) -> Endpoint:
    """An endpoint as ConsulDiscovery maps a passing instance on the test node."""
    full = {
        "consul.service_id": sid,
        "consul.node": NODE,
        "consul.datacenter": "dc1",
        "consul.health": "passing",
    }
    full.update(meta)
    return Endpoint(host, port, weight, full)


def ttl_check(sid: str, ttl: str = "30s") -> dict[str, str]:
    return {"CheckID": f"service:{sid}", "TTL": ttl}


def test_entries_map_to_endpoints(agent: ConsulAgent) -> None:
    agent.register(
        "api-1",
        "api",
        9001,
        Address="127.0.0.21",
        Tags=["v1", "canary"],
        Meta={"zone": "a"},
        Weights={"Passing": 5, "Warning": 2},
    )
    agent.register("api-2", "api", 9002)  # no Address: the node's is used
    agent.register("api-3", "api", 9003, Address="127.0.0.23", Check=ttl_check("api-3"))
    api1 = ep("127.0.0.21", 9001, 5, "api-1", zone="a", **{"consul.tags": "v1,canary"})
    api2 = ep("127.0.0.1", 9002, 1, "api-2")
    assert run(source(agent, "api").resolve()) == {api1, api2}
    # Without passing_only the critical instance (its TTL check never passed) is there too.
    got = run(source(agent, "api", passing_only=False).resolve())
    assert got == {api1, api2, ep("127.0.0.23", 9003, 1, "api-3", **{"consul.health": "critical"})}


def test_passing_follows_the_check(agent: ConsulAgent) -> None:
    agent.register(
        "chk-1",
        "chk",
        9101,
        Address="127.0.0.31",
        Weights={"Passing": 7, "Warning": 3},
        Check=ttl_check("chk-1"),
    )
    agent.register("chk-2", "chk", 9102, Address="127.0.0.32")
    other = ep("127.0.0.32", 9102, 1, "chk-2")
    src = source(agent, "chk")
    # A TTL check starts critical: not passing yet.
    assert run(src.resolve()) == {other}
    agent.api("PUT", "/v1/agent/check/pass/service:chk-1")
    assert run(src.resolve()) == {other, ep("127.0.0.31", 9101, 7, "chk-1")}
    # Warning leaves ?passing; without it, the Warning weight applies.
    agent.api("PUT", "/v1/agent/check/warn/service:chk-1")
    assert run(src.resolve()) == {other}
    warned = ep("127.0.0.31", 9101, 3, "chk-1", **{"consul.health": "warning"})
    assert run(source(agent, "chk", passing_only=False).resolve()) == {other, warned}
    agent.api("PUT", "/v1/agent/check/fail/service:chk-1")
    assert run(src.resolve()) == {other}


def test_unknown_service_is_empty(agent: ConsulAgent) -> None:
    assert run(source(agent, "no-such-service").resolve()) == frozenset()


def test_filter_and_tag(agent: ConsulAgent) -> None:
    agent.register("flt-a", "flt", 9201, Address="127.0.0.41", Meta={"zone": "a"}, Tags=["blue"])
    agent.register("flt-b", "flt", 9202, Address="127.0.0.42", Meta={"zone": "b"}, Tags=["green"])
    by_zone = run(source(agent, "flt", filter='Service.Meta.zone == "a"').resolve())
    assert {e.port for e in by_zone} == {9201}
    assert {e.port for e in run(source(agent, "flt", tag="green").resolve())} == {9202}
    assert run(source(agent, "flt", tag="red").resolve()) == frozenset()
    # A filter Consul cannot parse is a failed read (1.8 answers HTTP 500), with its reason.
    with pytest.raises(DiscoveryError, match="boolean expression"):
        run(source(agent, "flt", filter="Service.Meta.zone ==").resolve())


def test_malformed_entries_are_skipped(
    agent: ConsulAgent, caplog: pytest.LogCaptureFixture
) -> None:
    # Consul 1.8 accepts these ports; none can be dialled.
    agent.register("bad-0", "bad", 0, Address="127.0.0.51")
    agent.register("bad-big", "bad", 70000, Address="127.0.0.52")
    agent.register("bad-neg", "bad", -5, Address="127.0.0.53")
    agent.register("bad-ok", "bad", 9301, Address="127.0.0.54")
    src = source(agent, "bad")
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        assert run(src.resolve()) == {ep("127.0.0.54", 9301, 1, "bad-ok")}
        run(src.resolve())  # the same problems are not logged twice
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    for sid, port in (("bad-0", "0"), ("bad-big", "70000"), ("bad-neg", "-5")):
        assert any(f"'{sid}'" in w and f"port {port} " in w for w in warnings), warnings


def test_watch_follows_changes_with_blocking_queries(agent: ConsulAgent) -> None:
    async def main() -> None:
        agent.register("w-1", "watched", 9401, Address="127.0.0.61")
        one = ep("127.0.0.61", 9401, 1, "w-1")
        # wait=60 s: every change below is seen long before a blocking query would time out,
        # so it is the query's wake-up that delivers it, not a poll.
        async with source(agent, "watched", wait=60) as d:
            it = Watcher(d.watch())
            assert await it.next() == {one}
            await eventually(lambda: d.index > 1)  # the loop now blocks on the last index
            queries = d.queries

            # A new instance.
            agent.register("w-2", "watched", 9402, Address="127.0.0.62")
            two = ep("127.0.0.62", 9402, 1, "w-2")
            assert await it.next() == {one, two}
            # A weight and meta change of a registered instance (registered again, same ID).
            agent.register(
                "w-2",
                "watched",
                9402,
                Address="127.0.0.62",
                Meta={"v": "2"},
                Weights={"Passing": 9, "Warning": 1},
            )
            two_b = ep("127.0.0.62", 9402, 9, "w-2", v="2")
            assert await it.next() == {one, two_b}
            # A deregistration.
            agent.deregister("w-1")
            assert await it.next() == {two_b}
            # The same definition again wakes nothing worth yielding.
            agent.register(
                "w-2",
                "watched",
                9402,
                Address="127.0.0.62",
                Meta={"v": "2"},
                Weights={"Passing": 9, "Warning": 1},
            )
            with pytest.raises(asyncio.TimeoutError):
                await it.next(0.5)
            assert d.queries > queries and not d.stale
            # Blocking queries, not a poll loop: over a quiet 2 s (no change, wait=60) the loop
            # sends at most the query it blocks in and one more (an agent's anti-entropy sync
            # may wake it once). Polling at the rate limit would send about 20.
            await eventually(lambda: d.index > 1)
            queries = d.queries
            await asyncio.sleep(2.0)
            assert d.queries - queries <= 2

    run(main())


def test_registration_registers_and_keeps_passing(agent: ConsulAgent) -> None:
    endpoint = Endpoint("127.0.0.71", 9501, 4, {"version": "1.2"})

    async def main() -> None:
        async with source(agent, "reg") as d:
            it = Watcher(d.watch())
            assert await it.next() == frozenset()
            # ttl=3: a heartbeat every second, so one delayed by up to 2 s (a loaded machine)
            # still keeps the check passing.
            async with ConsulRegistration(agent.url, "reg", endpoint, ttl=3, tags=["a"]) as reg:
                assert reg.service_id == "reg-127.0.0.71-9501"
                assert reg.registered
                expected = ep("127.0.0.71", 9501, 4, reg.service_id, version="1.2")
                expected = Endpoint(
                    expected.host,
                    expected.port,
                    expected.weight,
                    {**expected.metadata, "consul.tags": "a"},
                )
                # Passing at once: the first heartbeat is sent right after registering.
                assert await it.next() == {expected}
                services = agent.api("GET", "/v1/agent/services")
                assert services[reg.service_id]["Weights"] == {"Passing": 4, "Warning": 1}
                check = agent.api("GET", "/v1/agent/checks")[f"service:{reg.service_id}"]
                assert check["Status"] == "passing" and check["Type"] == "ttl"
                # More than a TTL passes and it never leaves the passing set (the watch would
                # yield the change; without heartbeats the check would expire after 3 s): the
                # heartbeats keep the check passing.
                with pytest.raises(asyncio.TimeoutError):
                    await it.next(4.0)
                assert d.current == frozenset({expected})
                check = agent.api("GET", "/v1/agent/checks")[f"service:{reg.service_id}"]
                assert check["Status"] == "passing"
                assert await d.resolve() == {expected}
                assert reg.registrations == 1
            # Deregistered on exit: gone from the agent, not merely critical.
            assert await it.next() == frozenset()
            assert reg.service_id not in agent.api("GET", "/v1/agent/services")

    run(main())


def test_registration_single_steps(agent: ConsulAgent) -> None:
    async def main() -> None:
        reg = ConsulRegistration(agent.url, "steps", "127.0.0.72:9502", service_id="steps-x")
        await reg.register()
        assert reg.registered and reg.registrations == 1
        got = await source(agent, "steps").resolve()
        assert got == {ep("127.0.0.72", 9502, 1, "steps-x")}
        await reg.heartbeat()
        await reg.deregister()
        assert await source(agent, "steps").resolve() == frozenset()
        # A heartbeat for a check the agent does not know registers the service again.
        await reg.heartbeat()
        assert reg.registrations == 2
        assert len(await source(agent, "steps").resolve()) == 1
        await reg.deregister()

    run(main())


def test_registration_refused_is_a_config_error(agent: ConsulAgent) -> None:
    bad_meta = Endpoint("127.0.0.73", 9503, 1, {"bad key": "x"})

    async def main() -> None:
        async with ConsulRegistration(agent.url, "refused", bad_meta):
            pass

    with pytest.raises(ConfigError, match="Meta"):
        run(main())


def test_close_does_not_swallow_a_cancellation_of_the_caller(agent: ConsulAgent) -> None:
    async def main() -> None:
        reg = ConsulRegistration(agent.url, "cancel", "127.0.0.75:9505")
        await reg.__aenter__()
        # The timeout expires while aclose() waits for the heartbeat task to end.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await reg.aclose()
        assert reg._agent.client is None  # the client is closed all the same
        await reg.deregister()

    run(main())


def test_https_agent_with_verify(tmp_path: Path) -> None:
    # A CA and a server certificate for 127.0.0.1, made by Consul's own `consul tls` commands.
    binary = find_consul()
    assert binary is not None
    for args in (["ca", "create"], ["cert", "create", "-server"]):
        subprocess.run(
            [binary, "tls", *args], cwd=tmp_path, check=True, capture_output=True, timeout=30
        )
    ca = tmp_path / "consul-agent-ca.pem"
    tls = (tmp_path / "dc1-server-consul-0.pem", tmp_path / "dc1-server-consul-0-key.pem")
    agent = ConsulAgent(tmp_path / "consul", NODE, tls=tls)
    agent.start()
    url = agent.https_url
    assert url is not None

    async def main() -> None:
        async with ConsulRegistration(url, "tls", "127.0.0.76:9506", verify=str(ca)) as reg:
            assert reg.registered
            got = await ConsulDiscovery(url, "tls", verify=str(ca)).resolve()
            assert got == {ep("127.0.0.76", 9506, 1, reg.service_id)}
            # The system's CAs do not know this one: the read fails.
            with pytest.raises(DiscoveryError, match="CERTIFICATE_VERIFY_FAILED"):
                await ConsulDiscovery(url, "tls").resolve()
        with pytest.raises(ConfigError, match="verify"):
            ConsulDiscovery(url, "tls", verify=1)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="CA certificates"):
            ConsulRegistration(url, "tls", "127.0.0.76:9506", verify=str(tmp_path / "nope.pem"))

    try:
        run(main())
    finally:
        agent.stop()


def test_crashed_registrant_goes_critical(agent: ConsulAgent) -> None:
    async def main() -> None:
        async with source(agent, "crash") as d:
            it = Watcher(d.watch())
            assert await it.next() == frozenset()
            reg = ConsulRegistration(agent.url, "crash", "127.0.0.74:9504", ttl=1)
            await reg.__aenter__()
            assert len(await it.next()) == 1
            # The heartbeat task stops without deregistering, as when the process dies.
            await reg.aclose(deregister=False)
            # It leaves the passing set when its TTL check expires (Consul says so in the output).
            assert await it.next() == frozenset()
            entries = agent.api("GET", "/v1/health/checks/crash")
            assert [c["Status"] for c in entries] == ["critical"]
            assert "TTL expired" in entries[0]["Output"]
            agent.deregister(reg.service_id)

    run(main())


def test_agent_restart_mid_watch(own_agent: ConsulAgent, caplog: pytest.LogCaptureFixture) -> None:
    # The fault the issue asks for: the agent stops while a watch and a registration run. The
    # watch keeps the last good set and says stale; when the agent is back on the same ports
    # (a dev agent, so with an empty catalog) the watch recovers by itself and the registration
    # registers again, so its endpoint comes back.
    agent = own_agent

    async def main() -> None:
        agent.register("fault-raw", "fault", 9601, Address="127.0.0.81")
        raw = ep("127.0.0.81", 9601, 1, "fault-raw")
        src = source(agent, "fault", backoff_initial=0.1, backoff_max=0.5)
        reg = ConsulRegistration(agent.url, "fault", "127.0.0.82:9602", ttl=3)
        mine = ep("127.0.0.82", 9602, 1, reg.service_id)
        async with src as d, reg:
            it = Watcher(d.watch())
            got = await it.next()
            if got != {raw, mine}:
                got = await it.next()
            assert got == {raw, mine}
            await eventually(lambda: d.index > 1)
            # Churn the restarted agent will not replay, so that the index before the restart
            # is well above any the new agent reaches here (without it the two can be equal).
            for k in range(5):
                agent.register("fault-churn", "fault", 9700 + k, Address="127.0.0.84")
                while len(await it.next()) != 3:
                    pass
                agent.deregister("fault-churn")
                while await it.next() != {raw, mine}:
                    pass
            index_before = d.index

            await asyncio.to_thread(agent.stop)
            await eventually(lambda: d.stale)
            assert d.current == frozenset({raw, mine})  # the last good set is kept
            with pytest.raises(DiscoveryError):
                await d.resolve()
            await eventually(lambda: not reg.registered)
            with pytest.raises(asyncio.TimeoutError):
                await it.next(0.5)  # nothing is yielded while the agent is down

            await asyncio.to_thread(agent.start)
            # The registration is back without any help; the raw one died with the agent's state.
            await eventually(lambda: d.current == frozenset({mine}) and not d.stale, timeout=20)
            assert reg.registered and reg.registrations == 2
            # The new agent's index restarted lower: the source followed it (it did not keep
            # blocking on an index from before the restart).
            assert d.index < index_before
            # And the watch is live again: a new instance shows up.
            agent.register("fault-new", "fault", 9603, Address="127.0.0.83")
            await eventually(lambda: d.current is not None and len(d.current) == 2)

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main(), timeout=60)
    assert "unavailable" in caplog.text and "recovered" in caplog.text
    assert "registering again" in caplog.text


def test_agent_unreachable(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DiscoveryError):
        run(ConsulDiscovery(url, "x", timeout=1).resolve())
    with pytest.raises(DiscoveryError):
        run(ConsulRegistration(url, "x", "127.0.0.1:80", timeout=1).__aenter__())

    async def main() -> None:
        async with ConsulDiscovery(url, "x", timeout=1, backoff_initial=0.1) as d:
            await eventually(lambda: d.stale)
            assert d.current is None

    run(main())


def test_consul_dns_interface(agent: ConsulAgent) -> None:
    # DnsDiscovery against Consul's own DNS server: SRV and A names of a registered service.
    agent.register(
        "dns-1", "dnsweb", 9701, Address="127.0.0.91", Weights={"Passing": 3, "Warning": 1}
    )
    agent.register("dns-2", "dnsweb", 9702, Address="127.0.0.92")
    agent.register("dns-3", "dnsweb", 9703, Address="127.0.0.93", Check=ttl_check("dns-3"))

    def dns(name: str, **kw: Any) -> DnsDiscovery:
        return DnsDiscovery(name, nameservers=["127.0.0.1"], nameserver_port=agent.dns_port, **kw)

    srv = run(dns("_dnsweb._tcp.service.consul").resolve())
    # Consul answers SRV with hex address targets (7f00005b.addr.dc1.consul) and the weight from
    # Weights.Passing; the critical instance is left out.
    assert {(e.host, e.port, e.weight) for e in srv} == {
        ("127.0.0.91", 9701, 3),
        ("127.0.0.92", 9702, 1),
    }
    assert all(e.metadata["target"].endswith(".consul") for e in srv)
    a = run(dns("dnsweb.service.consul", port=8080).resolve())
    assert a == {Endpoint("127.0.0.91", 8080), Endpoint("127.0.0.92", 8080)}
    assert run(dns("_nothing._tcp.service.consul").resolve()) == frozenset()


def test_constructor_checks() -> None:
    url = "http://127.0.0.1:8500"
    for bad_url in ("", "127.0.0.1:8500", "ftp://x", 8500):
        with pytest.raises(ConfigError):
            ConsulDiscovery(bad_url, "s")  # type: ignore[arg-type]  # 8500 is wrong on purpose
    with pytest.raises(ConfigError):
        ConsulDiscovery(url, "")
    with pytest.raises(ConfigError, match="wait"):
        ConsulDiscovery(url, "s", wait=601)
    with pytest.raises(ConfigError):
        ConsulDiscovery(url, "s", wait=0)
    with pytest.raises(ConfigError):
        ConsulDiscovery(url, "s", max_rate=0)
    with pytest.raises(ConfigError):
        ConsulDiscovery(url, "s", filter="")
    with pytest.raises(ConfigError):
        ConsulRegistration(url, "s", "no-port")
    with pytest.raises(ConfigError):
        ConsulRegistration(url, "s", "127.0.0.1:80", ttl=0)
    with pytest.raises(ConfigError, match="interval"):
        ConsulRegistration(url, "s", "127.0.0.1:80", ttl=3, interval=3)
    with pytest.raises(ConfigError):
        ConsulRegistration(url, "s", "127.0.0.1:80", tags="one")
    reg = ConsulRegistration(url, "s", Endpoint("::1", 80))
    assert reg.service_id == "s-::1-80" and reg.check_id == "service:s-::1-80"
    assert reg.interval == pytest.approx(10 / 3)


def test_agent_restart_keeping_state(own_agent: ConsulAgent) -> None:
    # An agent that keeps its data directory (as every non-dev agent does) restores the services
    # registered through it and syncs them back into the new catalog: the watch recovers and the
    # registration's next pass simply succeeds, with no second registration.
    agent = own_agent

    async def main() -> None:
        agent.register("kept-raw", "kept", 9801, Address="127.0.0.84")
        raw = ep("127.0.0.84", 9801, 1, "kept-raw")
        src = source(agent, "kept", backoff_initial=0.1, backoff_max=0.5)
        reg = ConsulRegistration(agent.url, "kept", "127.0.0.85:9802", ttl=3)
        mine = ep("127.0.0.85", 9802, 1, reg.service_id)
        async with src as d, reg:
            await eventually(lambda: d.current == frozenset({raw, mine}))
            await asyncio.to_thread(agent.stop)
            await eventually(lambda: d.stale)
            await asyncio.to_thread(agent.start, keep_state=True)
            await eventually(lambda: not d.stale and reg.registered, timeout=20)
            await eventually(lambda: d.current == frozenset({raw, mine}), timeout=20)
            assert reg.registrations == 1

    run(main(), timeout=60)


ROOT_TOKEN = "0f1c2d3e-meshcore-test-root-token"  # test-only


def test_acl_token(tmp_path: Path) -> None:
    # ACLs on, default deny: without a token the health API filters every instance out (200 []),
    # and a registration is refused; with a token both work.
    acl = (
        'acl { enabled = true, default_policy = "deny", '
        f'tokens {{ master = "{ROOT_TOKEN}", agent = "{ROOT_TOKEN}" }} }}'
    )
    agent = ConsulAgent(tmp_path / "consul", NODE, hcl=[acl])
    agent.start()
    try:

        async def main() -> None:
            with pytest.raises(DiscoveryError, match="403"):
                await ConsulRegistration(agent.url, "secret", "127.0.0.86:9901").register()
            reg = ConsulRegistration(agent.url, "secret", "127.0.0.86:9901", token=ROOT_TOKEN)
            async with reg:
                await eventually(
                    lambda: agent.api("GET", "/v1/health/service/secret", token=ROOT_TOKEN) != []
                )
                assert await source(agent, "secret").resolve() == frozenset()
                got = await source(agent, "secret", token=ROOT_TOKEN).resolve()
                assert got == {ep("127.0.0.86", 9901, 1, reg.service_id)}
            assert await source(agent, "secret", token=ROOT_TOKEN).resolve() == frozenset()

        run(main())
    finally:
        agent.stop()


def test_next_index_follows_consuls_rules() -> None:
    # The blocking-query index rules, on their own (no agent can be made to break them).
    from meshcore.discovery.consul import _next_index

    assert _next_index(0, 42) == 42  # first read
    assert _next_index(42, 42) == 42  # woke without a change: block on the same index again
    assert _next_index(42, 57) == 57
    assert _next_index(57, 12) == 1  # went backwards: reset, never block on 0
    assert _next_index(0, 0) == 1  # an index of 0 is never blocked on
    assert _next_index(5, -3) == 1
