"""EtcdDiscovery and EtcdRegistration against real etcd servers on loopback: the naming/endpoints
format (as Go writes it), watches across changes, compaction and member crashes, leases kept
alive and lost, and a cluster that goes away and comes back.

etcd comes from the Debian package ``etcd-server`` (``scripts/test.sh`` installs it when root;
``etcd-client``'s etcdctl is used when present). Without etcd these tests skip, except under CI
(``CI`` set), where they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcd import EtcdCluster, EtcdMember, Gateway, b64, find_etcd
from meshcore import ConfigError, DiscoveryError, Endpoint
from meshcore.discovery import EtcdDiscovery, EtcdRegistration
from servers import free_ports
from watching import Watcher, eventually, run

if find_etcd() is None:
    if os.environ.get("CI"):
        raise RuntimeError(
            "etcd (Debian packages `etcd-server`, `etcd-client`) is required under CI"
        )
    pytest.skip("etcd (Debian package `etcd-server`) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member shared by the module's tests; each test uses its own service prefix."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), 1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def gw(node: EtcdCluster) -> Gateway:
    return node.gateway()


def value(addr: str, metadata: Any = None, op: int | None = 0) -> str:
    """A naming/endpoints value, fields in Go's order."""
    doc: dict[str, Any] = {} if op is None else {"Op": op}
    doc.update(Addr=addr, Metadata=metadata)
    return json.dumps(doc, separators=(",", ":"))


def test_resolve_reads_every_key_of_the_prefix(node: EtcdCluster, gw: Gateway) -> None:
    gw.put("res/a", value("10.0.0.1:80"))
    gw.put("res/b", value("10.0.0.2:81", {"weight": 5, "zone": "b", "n": 3, "on": True}))
    gw.put("res/c", value("[::1]:82", {"nested": {"x": 1}, "none": None, "list": [1]}))
    gw.put("res/d", value("10.0.0.4:83", "metadata that is not an object"))
    gw.put("res/deep/e", json.dumps({"op": 0, "addr": "name.example:84"}))  # Go ignores case
    got = run(EtcdDiscovery(node.urls, "res").resolve())
    assert got == {
        Endpoint("10.0.0.1", 80),
        Endpoint("10.0.0.2", 81, 5, {"zone": "b", "n": "3", "on": "true"}),
        Endpoint("::1", 82),
        Endpoint("10.0.0.4", 83),
        Endpoint("name.example", 84),
    }
    assert run(EtcdDiscovery(node.urls, "nothing-here").resolve()) == frozenset()


def test_prefix_is_the_service_and_a_slash(node: EtcdCluster, gw: Gateway) -> None:
    gw.put("pfx/a", value("10.0.1.1:80"))
    gw.put("pfx", value("10.0.1.2:80"))
    gw.put("pfx2/a", value("10.0.1.3:80"))
    gw.put("pfx0", value("10.0.1.4:80"))  # the range end, excluded
    gw.put("pf/x", value("10.0.1.5:80"))
    assert run(EtcdDiscovery(node.urls, "pfx").resolve()) == {Endpoint("10.0.1.1", 80)}
    assert run(EtcdDiscovery(node.urls, "pfx2").resolve()) == {Endpoint("10.0.1.3", 80)}


def test_op_delete_and_missing_op(node: EtcdCluster, gw: Gateway) -> None:
    gw.put("ops/a", value("10.0.2.1:80", op=None))  # no Op: an add, as in etcd's docs
    gw.put("ops/b", value("10.0.2.2:80", op=1))  # Delete: the entry does not count
    gw.put("ops/c", value("10.0.2.3:80", op=0))

    async def main() -> None:
        async with EtcdDiscovery(node.urls, "ops") as d:
            it = Watcher(d.watch())
            assert await it.next() == {Endpoint("10.0.2.1", 80), Endpoint("10.0.2.3", 80)}
            gw.put("ops/c", value("10.0.2.3:80", op=1))  # an Op 1 put removes the key's entry
            assert await it.next() == {Endpoint("10.0.2.1", 80)}
            gw.put("ops/b", value("10.0.2.2:80"))
            assert await it.next() == {Endpoint("10.0.2.1", 80), Endpoint("10.0.2.2", 80)}

    run(main())


def test_go_format_interop(node: EtcdCluster, gw: Gateway) -> None:
    # The bytes Go's endpoints.Manager writes, and the etcd docs' example (no Op, no port: gRPC-go
    # would dial port 443), written with etcdctl as the docs do (through the gateway when the
    # etcd-client package is missing: the stored bytes are the same).
    def put(key: str, text: str) -> None:
        if node.etcdctl_path is not None:
            node.etcdctl("put", key, text)
        else:
            gw.put(key, text)

    def get(key: str) -> str:
        if node.etcdctl_path is not None:
            return node.etcdctl("get", key, "--print-value-only").strip()
        kv = gw.get(key)
        assert kv is not None
        return str(kv["value"])

    put("go/127.0.0.1:50051", '{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}')
    put("go/1.2.3.4", '{"Addr":"1.2.3.4","Metadata":"..."}')
    assert run(EtcdDiscovery(node.urls, "go").resolve()) == {Endpoint("127.0.0.1", 50051)}
    assert run(EtcdDiscovery(node.urls, "go", default_port=443).resolve()) == {
        Endpoint("127.0.0.1", 50051),
        Endpoint("1.2.3.4", 443),
    }

    # And the other way: what EtcdRegistration writes is byte for byte what Go writes.
    async def register() -> None:
        async with EtcdRegistration(node.urls, "go-reg", "127.0.0.1:50051", ttl=5):
            got = get("go-reg/127.0.0.1:50051")
            assert got == '{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}'

    run(register())


def test_registration_reads_back_identically(node: EtcdCluster) -> None:
    endpoints = [
        Endpoint("10.0.3.1", 8080),
        Endpoint("10.0.3.2", 8080, 7, {"zone": "a", "version": "1.2"}),
        Endpoint("::1", 8443, 2),
        Endpoint("svc.example", 9000, 1, {"az": "x"}),
    ]

    async def main() -> None:
        regs = [EtcdRegistration(node.urls, "same", ep, ttl=5) for ep in endpoints]
        for reg in regs:
            await reg.register()
        try:
            assert await EtcdDiscovery(node.urls, "same").resolve() == set(endpoints)
            assert regs[2].key == "same/[::1]:8443"
        finally:
            for reg in regs:
                await reg.deregister()
        assert await EtcdDiscovery(node.urls, "same").resolve() == frozenset()

    run(main())


def test_malformed_values_are_skipped_once(
    node: EtcdCluster, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    bad: dict[str, str | bytes] = {
        "mal/notjson": "{nope",
        "mal/array": "[1, 2]",
        "mal/noaddr": '{"Op":0}',
        "mal/emptyaddr": '{"Addr":""}',
        "mal/noport": '{"Addr":"10.0.4.1"}',
        "mal/port0": '{"Addr":"10.0.4.1:0"}',
        "mal/bigport": '{"Addr":"10.0.4.1:70000"}',
        "mal/v6": '{"Addr":"::1:80"}',
        "mal/op7": '{"Op":7,"Addr":"10.0.4.1:80"}',
        "mal/binary": b"\xff\xfe",
        "mal/weight0": '{"Addr":"10.0.4.3:80","Metadata":{"weight":0}}',  # served, weight 1
    }
    for key, text in bad.items():
        gw.put(key, text)
    gw.put("mal/good", value("10.0.4.2:80"))
    good = {Endpoint("10.0.4.2", 80), Endpoint("10.0.4.3", 80)}
    src = EtcdDiscovery(node.urls, "mal")

    async def main() -> None:
        assert await src.resolve() == good
        assert await src.resolve() == good
        async with src as d:
            it = Watcher(d.watch())
            assert await it.next() == good
            gw.put("mal/notjson", "{nope")  # the same problem again: not logged again
            gw.put("mal/late", "late junk")  # a new one: logged
            gw.put("mal/good2", value("10.0.4.4:80"))
            assert await it.next() == good | {Endpoint("10.0.4.4", 80)}

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for key in [*bad, "mal/late"]:
        assert sum(f"'{key}'" in w for w in warnings) == 1, (key, warnings)
    assert len(warnings) == len(bad) + 1


def test_one_malformed_value_never_stops_discovery(
    node: EtcdCluster, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    # "²" passes str.isdigit() but not int(); a deeply nested value makes json.loads recurse too
    # deep. Both once made the whole read fail (and the watcher re-read forever, with no set).
    a, b, c = (Endpoint(f"10.0.6.{i}", 80) for i in (1, 2, 3))
    gw.put("uni/a", value("10.0.6.1:80"))
    gw.put("uni/sup", '{"Addr":"10.0.6.9:\u00b2"}')
    gw.put("uni/deep", "[" * 100_000 + "]" * 100_000)

    async def main() -> None:
        assert await EtcdDiscovery(node.urls, "uni").resolve() == {a}
        async with EtcdDiscovery(node.urls, "uni") as d:
            it = Watcher(d.watch())
            assert await it.next() == {a}
            # One watch response: a good event, a bad one, a good one.
            revision = gw.put_all(
                {
                    "uni/b": value("10.0.6.2:80"),
                    "uni/sup2": value("10.0.6.8:²"),
                    "uni/c": value("10.0.6.3:80"),
                }
            )
            assert await it.next() == {a, b, c}
            assert d.revision == revision and not d.stale and d.reads == 1

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    for key in ("uni/sup", "uni/deep", "uni/sup2"):
        assert f"'{key}' skipped" in caplog.text


class _Fragile(EtcdDiscovery):
    """A source whose value parsing fails unexpectedly on values holding "boom"."""

    def _parse(self, key: bytes, value: bytes) -> Endpoint | None:
        if b"boom" in value:
            raise RuntimeError(f"boom at {key!r}")
        return super()._parse(key, value)


def test_an_event_that_cannot_be_applied_is_skipped(
    node: EtcdCluster, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = (Endpoint(f"10.0.7.{i}", 80) for i in (1, 2, 3))
    gw.put("frag/a", value("10.0.7.1:80"))

    async def main() -> None:
        async with _Fragile(node.urls, "frag") as d:
            it = Watcher(d.watch())
            assert await it.next() == {a}
            revision = gw.put_all(
                {"frag/b": value("10.0.7.2:80"), "frag/x": "boom", "frag/c": value("10.0.7.3:80")}
            )
            assert await it.next() == {a, b, c}
            assert d.revision == revision
            # A response holding only a bad event still moves the revision on.
            revision = gw.put("frag/y", "boom")
            await eventually(lambda: d.revision == revision)
            gw.put("frag/a", "boom")  # the key's old endpoint stays: the event was not applied
            gw.delete("frag/b")
            assert await it.next() == {a, c}
            assert not d.stale and d.reads == 1 and d.watches == 1

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert caplog.text.count("watch event skipped: RuntimeError: boom at") == 3


def test_watch_sees_put_update_delete(node: EtcdCluster, gw: Gateway) -> None:
    async def main() -> None:
        async with EtcdDiscovery(node.urls, "w") as d:
            it = Watcher(d.watch())
            assert await it.next() == frozenset()
            gw.put("w/a", value("10.0.5.1:80"))
            assert await it.next() == {Endpoint("10.0.5.1", 80)}
            gw.put("w/b", value("10.0.5.2:80"))
            assert await it.next() == {Endpoint("10.0.5.1", 80), Endpoint("10.0.5.2", 80)}
            gw.put("w/a", value("10.0.5.1:80", {"weight": 4}))  # update in place
            assert await it.next() == {Endpoint("10.0.5.1", 80, 4), Endpoint("10.0.5.2", 80)}
            gw.delete("w/b")
            assert await it.next() == {Endpoint("10.0.5.1", 80, 4)}
            gw.put("w/a", "junk")  # a key turning malformed no longer gives an endpoint
            assert await it.next() == frozenset()
            gw.put("w2/x", value("10.0.5.9:80"))  # another service: nothing yielded
            gw.put("w/c", value("10.0.5.3:80"))
            assert await it.next() == {Endpoint("10.0.5.3", 80)}
            assert d.reads == 1 and d.watches == 1
            assert d.revision == gw.revision()

    run(main())


def test_changes_between_read_and_watch_are_not_missed(node: EtcdCluster, gw: Gateway) -> None:
    # Step by step (_poll() is what the watch loop calls): the read, changes, then the watch.
    async def stepwise() -> None:
        gw.put("gap/a", value("10.0.6.1:80"))
        d = EtcdDiscovery(node.urls, "gap")
        try:
            assert (await d._poll())[0] == frozenset({Endpoint("10.0.6.1", 80)})  # the read
            gw.put("gap/b", value("10.0.6.2:80"))
            gw.delete("gap/a")
            got, delay = await d._poll()  # opens the watch from the read's revision + 1
            assert (got, delay) == (frozenset({Endpoint("10.0.6.2", 80)}), 0.0)
            assert d.reads == 1
        finally:
            await d.aclose()

    run(stepwise())

    # Many writes racing the start of a watch.
    def writer() -> None:
        with Gateway(node.urls[0]) as writes:
            for i in range(150):
                writes.put(f"race/{i:03d}", value(f"10.0.7.{i % 250}:{1000 + i}"))

    async def racing() -> None:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            async with EtcdDiscovery(node.urls, "race") as d:
                await asyncio.to_thread(thread.join)
                want = frozenset(Endpoint(f"10.0.7.{i % 250}", 1000 + i) for i in range(150))
                await eventually(lambda: d.current == want)
                assert d.reads == 1
        finally:
            thread.join()

    run(racing())


def test_compacted_watch_reads_again(node: EtcdCluster, gw: Gateway) -> None:
    async def main() -> None:
        gw.put("cmp/a", value("10.0.8.1:80"))
        d = EtcdDiscovery(node.urls, "cmp")
        try:
            assert (await d._poll())[0] == frozenset({Endpoint("10.0.8.1", 80)})
            # While no watch is open, the history it would resume from is compacted away.
            gw.put("cmp/b", value("10.0.8.2:80"))
            gw.delete("cmp/a")
            gw.compact(gw.revision())
            # etcd accepts the watch, then cancels it (compact_revision): the set is read again.
            got, _ = await d._poll()
            assert got == frozenset({Endpoint("10.0.8.2", 80)})
            assert d.reads == 2 and d.revision == gw.revision()
            # ...and the next watch starts from the new read.
            gw.put("cmp/c", value("10.0.8.3:80"))
            got = None
            while got is None:
                got, _ = await d._poll()
            assert got == {Endpoint("10.0.8.2", 80), Endpoint("10.0.8.3", 80)}
            assert d.watches == 2
        finally:
            await d.aclose()

    run(main())


def test_registration_lifecycle(node: EtcdCluster, gw: Gateway) -> None:
    ep = Endpoint("10.0.9.1", 8080, 3, {"zone": "a"})
    reg = EtcdRegistration(node.urls, "reg", ep, ttl=2)

    async def main() -> None:
        async with EtcdDiscovery(node.urls, "reg") as d:
            it = Watcher(d.watch())
            assert await it.next() == frozenset()
            async with reg:
                assert await it.next() == {ep}
                kv = gw.get(reg.key)
                assert kv is not None and kv["lease"] == reg.lease
                assert json.loads(kv["value"]) == {
                    "Op": 0,
                    "Addr": "10.0.9.1:8080",
                    "Metadata": {"weight": 3, "zone": "a"},
                }
                first = reg.lease
                assert first is not None
                # Kept alive well past its TTL.
                await asyncio.sleep(2.5 * reg.ttl)
                assert gw.get(reg.key) is not None and reg.lease == first
                assert gw.time_to_live(first) > 0
                # The lease revoked behind its back: the key vanishes, then comes back on a new one.
                gw.revoke(first)
                await eventually(lambda: reg.grants == 2 and d.current == frozenset({ep}))
                kv = gw.get(reg.key)
                assert kv is not None and kv["lease"] == reg.lease != first
                # The key deleted behind its back: written again on the same lease.
                gw.delete(reg.key)
                await eventually(lambda: gw.get(reg.key) is not None)
                kv = gw.get(reg.key)
                assert kv is not None and kv["lease"] == reg.lease and reg.grants == 2
                lease = reg.lease
                assert lease is not None
            # On exit the lease is revoked: the key is gone at once.
            assert gw.get(reg.key) is None and gw.time_to_live(lease) == -1
            assert reg.lease is None
            await eventually(lambda: d.current == frozenset())

    run(main())


DEAD_REGISTRANT = """
import asyncio, sys
from meshcore.discovery import EtcdRegistration

async def main() -> None:
    async with EtcdRegistration(sys.argv[1], "dead", "127.0.0.9:81", ttl=2):
        print("registered", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def test_deregister_does_not_swallow_a_cancellation_of_the_caller(
    node: EtcdCluster, gw: Gateway
) -> None:
    async def main() -> None:
        reg = EtcdRegistration(node.urls, "cancel", "10.0.8.1:80", ttl=5)
        await reg.register()
        lease = reg.lease
        assert lease is not None
        # The timeout expires while deregister() waits for the keepalive task to end.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await reg.deregister()
        assert reg._http is None  # the client is closed all the same
        gw.revoke(lease)

    run(main())


def test_dead_registrant_expires(node: EtcdCluster, gw: Gateway) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DEAD_REGISTRANT, node.urls[0]], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
        kv = gw.get("dead/127.0.0.9:81")
        assert kv is not None

        async def main() -> None:
            async with EtcdDiscovery(node.urls, "dead") as d:
                it = Watcher(d.watch())
                assert await it.next() == {Endpoint("127.0.0.9", 81)}
                proc.kill()  # no deregistration, no more keepalives
                assert await it.next(timeout=15) == frozenset()  # when the lease expires
            assert gw.time_to_live(kv["lease"]) == -1

        run(main())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class Recording(EtcdDiscovery):
    """Records the revision of every event it applies, in order."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.applied: list[int] = []

    def _apply(self, event: Mapping[str, Any]) -> None:
        self.applied.append(int(event["kv"]["mod_revision"]))
        super()._apply(event)


class Writer:
    """Puts a new key ``fault/<n>`` every few milliseconds through the members in turn, until
    stopped. A put that fails (a member is down, no leader yet) is not retried: the next key is
    written instead, so every key is written at most once."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self.written = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        members = self.cluster.members
        shunned = {m.url: 0.0 for m in members}  # a member that failed is left alone for 1 s
        with httpx.Client(timeout=1.0) as http:
            n = 0
            while not self.stopping.is_set():
                member = members[n % len(members)]
                body = {"key": b64(f"fault/{n:05d}"), "value": b64(value(f"10.1.0.1:{n + 1}"))}
                n += 1
                if shunned[member.url] > time.monotonic():
                    self.stopping.wait(0.005)
                    continue
                try:
                    http.post(f"{member.url}/v3/kv/put", json=body).raise_for_status()
                except httpx.HTTPError:
                    shunned[member.url] = time.monotonic() + 1.0
                    continue
                self.written += 1
                self.stopping.wait(0.01)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()


@pytest.mark.parametrize(
    "victim", ["leader", "serving follower", "serving leader", "serving follower hangs"]
)
def test_watch_survives_a_member_crash(tmp_path: Path, victim: str) -> None:
    # Three members; the watch runs through their URLs while a writer keeps adding keys; one
    # member is SIGKILLed (or SIGSTOPped: it hangs, its connections stay open) mid-stream. The
    # watch must go on and apply every event exactly once, in order: the revisions it applied are
    # exactly those of the keys etcd holds at the end.
    cluster = EtcdCluster(tmp_path, 3)
    cluster.start()
    try:
        leader = cluster.leader()
        followers = [m for m in cluster.members if m is not leader]
        order: list[EtcdMember]
        if victim == "leader":  # a follower serves the watch and loses its leader
            order, kill = [*followers, leader], leader
        elif victim.startswith("serving follower"):
            order, kill = [followers[0], leader, followers[1]], followers[0]
        else:
            order, kill = [leader, *followers], leader

        async def main() -> None:
            src = Recording(
                [m.url for m in order],
                "fault",
                check_interval=0.5,
                connect_timeout=0.5,
                request_timeout=1.0,
            )
            async with src as d:
                it = Watcher(d.watch())
                assert await it.next() == frozenset()
                await eventually(lambda: d.serving is not None)  # the watch opens after the read
                assert d.serving == order[0].url
                with Writer(cluster) as writer:
                    await eventually(lambda: writer.written >= 20)
                    await asyncio.to_thread(kill.freeze if "hangs" in victim else kill.kill)
                    before = writer.written
                    await eventually(lambda: writer.written >= before + 30, timeout=30)
                survivor = next(m for m in order if m is not kill)
                items = cluster.gateway(survivor).items("fault/")
                want = frozenset(
                    Endpoint("10.1.0.1", int(v["Addr"].split(":")[1])) for v in _values(items)
                )
                await eventually(lambda: d.current == want)
                assert d.applied == sorted(rev for _, _, rev in items)
                assert d.applied == list(range(d.applied[0], d.applied[0] + len(d.applied)))
                assert d.reads == 1 and d.watches >= (1 if victim == "leader" else 2)
                assert d.serving != kill.url
                assert not d.stale

        run(main(), timeout=60)
    finally:
        cluster.stop()


def _values(items: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v, _ in items]


def test_all_members_down_then_recover(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cluster = EtcdCluster(tmp_path, 1)
    cluster.start()
    member = cluster.members[0]
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"  # a second URL where no member listens
    try:
        gw = Gateway(member.url)
        gw.put("down/a", value("10.2.0.1:80"))
        gw.put("down/b", value("10.2.0.2:80"))
        gw.close()
        src = EtcdDiscovery(
            [nobody, member.url],
            "down",
            connect_timeout=0.5,
            backoff_initial=0.1,
            backoff_max=0.3,
        )
        first = frozenset({Endpoint("10.2.0.1", 80), Endpoint("10.2.0.2", 80)})

        async def main() -> None:
            async with src as d:
                it = Watcher(d.watch())
                assert await it.next() == first
                await eventually(lambda: d.serving == member.url)
                await asyncio.to_thread(member.stop)
                await eventually(lambda: d.stale)
                assert d.current == first
                with pytest.raises(DiscoveryError, match="no etcd member answered"):
                    await d.resolve()
                with pytest.raises(asyncio.TimeoutError):
                    await it.next(0.5)
                await asyncio.to_thread(cluster.restart, member)
                await eventually(lambda: not d.stale)
                with Gateway(member.url) as writes:
                    writes.put("down/c", value("10.2.0.3:80"))
                assert await it.next() == first | {Endpoint("10.2.0.3", 80)}
                assert d.reads == 1  # resumed from the last revision, not read again

        with caplog.at_level(logging.WARNING, "meshcore.discovery"):
            run(main())
        assert "unavailable" in caplog.text and "recovered" in caplog.text
    finally:
        cluster.stop()


def test_registration_survives_losing_its_lease(tmp_path: Path) -> None:
    # The registrant reaches the cluster only through one member, which goes down for longer
    # than the TTL while the rest of the cluster lives on: the lease expires meanwhile. When the
    # member is back, the registration grants a new lease and writes its key again. (A restart of
    # the whole cluster would not do: a new leader extends every lease by its TTL.)
    cluster = EtcdCluster(tmp_path, 3)
    cluster.start()
    member, other = cluster.members[0], cluster.members[1]
    try:

        async def main() -> None:
            async with EtcdRegistration(member.url, "outage", "10.3.0.1:80", ttl=2) as reg:
                first = reg.lease
                assert first is not None
                await asyncio.to_thread(member.stop)
                gw = cluster.gateway(other)
                await eventually(lambda: gw.time_to_live(first) == -1, timeout=15)
                assert gw.get("outage/10.3.0.1:80") is None
                await asyncio.to_thread(cluster.restart, member)
                await eventually(lambda: reg.grants == 2, timeout=15)
                await eventually(lambda: gw.get("outage/10.3.0.1:80") is not None)
                kv = gw.get("outage/10.3.0.1:80")
                assert kv is not None and kv["lease"] == reg.lease != first

        run(main())
    finally:
        cluster.stop()


def test_constructor_checks() -> None:
    url = "http://127.0.0.1:2379"
    with pytest.raises(ConfigError):
        EtcdDiscovery([], "svc")
    with pytest.raises(ConfigError):
        EtcdDiscovery("ftp://127.0.0.1:2379", "svc")
    with pytest.raises(ConfigError):
        EtcdDiscovery(url, "")
    with pytest.raises(ConfigError):
        EtcdDiscovery(url, "svc/")
    with pytest.raises(ConfigError):
        EtcdDiscovery(url, "svc", connect_timeout=0)
    with pytest.raises(ConfigError):
        EtcdDiscovery(url, "svc", default_port=0)
    with pytest.raises(ConfigError, match="ttl"):
        EtcdRegistration(url, "svc", "10.0.0.1:80", ttl=1)
    with pytest.raises(ConfigError, match="ttl"):
        EtcdRegistration(url, "svc", "10.0.0.1:80", ttl=2.5)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ConfigError):
        EtcdRegistration(url, "svc", "10.0.0.1")
    with pytest.raises(ConfigError, match="weight"):
        EtcdRegistration(url, "svc", Endpoint("10.0.0.1", 80, 1, {"weight": "2"}))
    reg = EtcdRegistration([url, url + "/"], "a/b", Endpoint("::1", 80), ttl=3)
    assert reg.key == "a/b/[::1]:80" and reg.value == '{"Op":0,"Addr":"[::1]:80","Metadata":null}'


def test_registration_needs_a_member(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"
    reg = EtcdRegistration(nobody, "x", "10.0.0.1:80", connect_timeout=0.5)
    with pytest.raises(DiscoveryError, match="no etcd member answered"):
        run(reg.register())
    assert reg.lease is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # the key
            st.one_of(st.none(), st.integers(0, 3)),  # what it now gives: nothing or an endpoint
            st.booleans(),  # build the set after this event
        ),
        max_size=40,
    )
)
def test_set_kept_by_events_equals_the_entries(events: list[tuple[int, int | None, bool]]) -> None:
    """The set built incrementally from events (several keys may give one endpoint) is always
    the set of the entries' endpoints."""
    d = EtcdDiscovery("http://127.0.0.1:1", "svc")
    eps = [Endpoint("10.0.0.1", 1000 + i) for i in range(4)]
    truth: dict[bytes, Endpoint] = {}
    for key, which, build in events:
        k = b"svc/%d" % key
        ep = None if which is None else eps[which]
        d._replace(k, ep)
        if ep is None:
            truth.pop(k, None)
        else:
            truth[k] = ep
        if build:
            assert d._snapshot() == frozenset(truth.values())
    assert d._snapshot() == frozenset(truth.values())
