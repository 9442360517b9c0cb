"""Classifier: the rule API, first-match answers against a pure-Python linear scan (random rule
sets, ClassBench fixtures), batches from columns, parsed rows and raw frames, the text rule
format, all-or-nothing errors, pickling, and consistency under concurrent updates."""

from __future__ import annotations

import copy
import ipaddress
import pickle
import random
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshcore
from meshcore import Classifier, ConfigError, MeshcoreError, PacketError, RuleError

DATA = Path(__file__).resolve().parent / "data" / "classbench"

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------------------------------------
# The reference: every rule checked in turn, the best-ranked match wins.


@dataclass(frozen=True)
class Alt:
    """One alternative of a rule; None addresses are "any" (of either family)."""

    src: _Net | None
    dst: _Net | None
    sport: tuple[int, int] = (0, 65535)
    dport: tuple[int, int] = (0, 65535)
    proto: tuple[int, int] = (0, 0)

    def matches(self, src: _Addr, dst: _Addr, sport: int, dport: int, proto: int) -> bool:
        # `in` is False across families, so an IPv4 prefix never matches an IPv6 packet.
        return (
            (self.src is None or src in self.src)
            and (self.dst is None or dst in self.dst)
            and self.sport[0] <= sport <= self.sport[1]
            and self.dport[0] <= dport <= self.dport[1]
            and proto & self.proto[1] == self.proto[0]
        )


@dataclass
class Reference:
    """Rules by id, each with its priority, insertion number and alternatives."""

    rules: dict[int, tuple[int, int, list[Alt]]] = field(default_factory=dict)
    seq: int = 0

    def add(self, rule_id: int, priority: int, alts: list[Alt]) -> None:
        assert rule_id not in self.rules
        self.rules[rule_id] = (priority, self.seq, alts)
        self.seq += 1

    def order(self) -> list[int]:
        return sorted(self.rules, key=lambda i: self.rules[i][:2])

    def classify(self, src: _Addr, dst: _Addr, sport: int, dport: int, proto: int) -> int | None:
        best: tuple[int, int] | None = None
        found = None
        for rule_id, (priority, seq, alts) in self.rules.items():
            if any(a.matches(src, dst, sport, dport, proto) for a in alts) and (
                best is None or (priority, seq) < best
            ):
                best, found = (priority, seq), rule_id
        return found


Packet = tuple[_Addr, _Addr, int, int, int]


def columns(
    packets: list[Packet],
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], Any]:
    """src, dst, sport, dport, proto columns of packets of one family."""
    src: npt.NDArray[Any]
    dst: npt.NDArray[Any]
    if packets[0][0].version == 4:
        src = np.array([int(p[0]) for p in packets], dtype=np.uint32)
        dst = np.array([int(p[1]) for p in packets], dtype=np.uint32)
    else:
        src = np.frombuffer(b"".join(p[0].packed for p in packets), np.uint8).reshape(-1, 16)
        dst = np.frombuffer(b"".join(p[1].packed for p in packets), np.uint8).reshape(-1, 16)
    return (
        src,
        dst,
        np.array([p[2] for p in packets], dtype=np.uint16),
        np.array([p[3] for p in packets], dtype=np.uint16),
        np.array([p[4] for p in packets], dtype=np.uint8),
    )


def check(c: Classifier, ref: Reference, packets: list[Packet]) -> None:
    """Scalar and batch answers agree with the reference, and so do len and the order."""
    assert len(c) == len(ref.rules) and list(c) == ref.order()
    want = [ref.classify(*p) for p in packets]
    assert [c.classify(str(p[0]), str(p[1]), *p[2:]) for p in packets] == want
    for version in (4, 6):
        some = [(p, w) for p, w in zip(packets, want, strict=True) if p[0].version == version]
        if some:
            got = c.classify_many(*columns([p for p, _ in some]))
            assert got.dtype == np.int64
            assert got.tolist() == [-1 if w is None else w for _, w in some]


# ---------------------------------------------------------------------------------------------
# Random rules that overlap a lot, and packets at their corners.

V4_NETS = [
    "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.4/31", "10.1.2.3/32",
    "128.0.0.0/1", "192.168.0.0/16", "255.255.255.255/32",
]  # fmt: skip
V6_NETS = [
    "::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::/127", "2001:db8:1::1/128",
    "8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
]  # fmt: skip
PORTS = [0, 1, 52, 53, 54, 79, 80, 81, 443, 1023, 1024, 65534, 65535]
PROTOS: list[Any] = [None, 6, 17, 1, "tcp", "udp", "icmp", (0, 0), (6, 0xFF), (0x10, 0xF0)]
PROTOS += [(0, 0x01), (1, 0x01), (58, 0xFF), "ipv6-icmp"]


def nets(version: int) -> st.SearchStrategy[_Net]:
    fixed = st.sampled_from(V4_NETS if version == 4 else V6_NETS).map(ipaddress.ip_network)
    bits = 32 if version == 4 else 128
    base = 0x0A010200 if version == 4 else 0x20010DB8000100000000000000000000
    # Random prefixes near the fixed ones: nested and overlapping.
    near = st.builds(
        lambda off, length: ipaddress.ip_network((base + off, length), strict=False),
        st.integers(0, 1023),
        st.integers(bits - 16, bits),
    )
    return st.one_of(fixed, near)


def port_ranges() -> st.SearchStrategy[tuple[int, int]]:
    pair = st.tuples(st.sampled_from(PORTS), st.sampled_from(PORTS)).map(lambda t: (min(t), max(t)))
    return st.one_of(st.just((0, 65535)), pair, st.sampled_from(PORTS).map(lambda p: (p, p)))


def proto_pair(proto: Any) -> tuple[int, int]:
    names = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58}
    if proto is None:
        return (0, 0)
    if isinstance(proto, str):
        return (names[proto], 0xFF)
    if isinstance(proto, int):
        return (proto, 0xFF)
    return (int(proto[0]), int(proto[1]))


@dataclass
class RuleArgs:
    rule_id: int
    priority: int
    kwargs: dict[str, Any]
    alt: Alt


@st.composite
def rules(draw: st.DrawFn, ids: st.SearchStrategy[int]) -> RuleArgs:
    family = draw(st.sampled_from(["v4", "v6", "any"]))
    src: _Net | None = None
    dst: _Net | None = None
    if family != "any":
        version = 4 if family == "v4" else 6
        src = draw(st.none() | nets(version))
        dst = draw(st.none() | nets(version))
    sport, dport = draw(port_ranges()), draw(port_ranges())
    proto = draw(st.sampled_from(PROTOS))
    kwargs: dict[str, Any] = {}
    for name, net in (("src", src), ("dst", dst)):
        if net is None:
            if draw(st.booleans()):
                kwargs[name] = "any"
        else:  # every form an address can take
            form = draw(st.sampled_from(["str", "object", "bare"]))
            if form == "str":
                kwargs[name] = str(net)
            elif form == "object":
                kwargs[name] = net
            elif net.num_addresses == 1:
                kwargs[name] = str(net.network_address)
            else:
                kwargs[name] = net
    for name, ports in (("sport", sport), ("dport", dport)):
        if ports != (0, 65535) or draw(st.booleans()):
            kwargs[name] = ports[0] if ports[0] == ports[1] and draw(st.booleans()) else ports
    if proto is not None or draw(st.booleans()):
        kwargs["proto"] = proto
    return RuleArgs(
        draw(ids),
        draw(st.integers(0, 4)),
        kwargs,
        Alt(src, dst, sport, dport, proto_pair(proto)),
    )


def corner_packet(rng: random.Random, alt: Alt | None, version: int) -> Packet:
    """A packet at a corner of `alt`: each address and port at the first or last value of its
    range or inside it, a protocol that matches; then, half the time, one field moved just
    outside (one before the first value, one past the last, one protocol bit flipped)."""
    bits = 32 if version == 4 else 128
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    a = alt or Alt(None, None)

    def span(net: _Net | None) -> tuple[int, int]:
        if net is None or net.version != version:
            net = ipaddress.ip_network(rng.choice(V4_NETS if version == 4 else V6_NETS))
        return int(net.network_address), int(net.broadcast_address)

    ranges = [span(a.src), span(a.dst), a.sport, a.dport]
    values = [rng.choice([lo, hi, rng.randint(lo, hi)]) for lo, hi in ranges]
    proto = a.proto[0] | (rng.randint(0, 255) & ~a.proto[1])
    if rng.random() < 0.5:
        k = rng.randrange(5)
        if k < 4:
            values[k] = rng.choice([ranges[k][0] - 1, ranges[k][1] + 1])
        else:
            proto ^= 1 << rng.randrange(8)
    top = [2**bits - 1, 2**bits - 1, 65535, 65535]
    src, dst, sport, dport = (min(max(v, 0), t) for v, t in zip(values, top, strict=True))
    return (cls(src), cls(dst), sport, dport, proto)


# ---------------------------------------------------------------------------------------------
# Differential tests.


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(0, 2**32 - 1))
def test_random_operations_agree_with_a_linear_scan(data: st.DataObject, seed: int) -> None:
    rng = random.Random(seed)
    c, ref = Classifier(), Reference()
    alts: list[Alt] = []
    ids = st.one_of(st.integers(0, 12), st.just(2**32 - 1))
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        op = data.draw(st.sampled_from(["add", "add", "add", "remove", "classify"]))
        if op == "add":
            r = data.draw(rules(ids))
            if r.rule_id in ref.rules:
                with pytest.raises(RuleError, match=f"rule id {r.rule_id} is already"):
                    c.add(r.rule_id, priority=r.priority, **r.kwargs)
            else:
                c.add(r.rule_id, priority=r.priority, **r.kwargs)
                ref.add(r.rule_id, r.priority, [r.alt])
                alts.append(r.alt)
        elif op == "remove":
            rule_id = data.draw(ids)
            if rule_id in ref.rules:
                c.remove(rule_id)
                del ref.rules[rule_id]
            else:
                with pytest.raises(KeyError):
                    c.remove(rule_id)
            assert rule_id not in c
        else:
            packets = [
                corner_packet(rng, rng.choice(alts) if alts else None, rng.choice([4, 6]))
                for _ in range(40)
            ]
            check(c, ref, packets)
    packets = [corner_packet(rng, a, v) for a in alts for v in (4, 6) for _ in range(3)]
    check(c, ref, [*packets, corner_packet(rng, None, 4), corner_packet(rng, None, 6)])


@settings(max_examples=60, deadline=None)
@given(st.lists(rules(st.integers(0, 2**32 - 1)), max_size=30), st.integers(0, 2**32 - 1))
def test_bulk_text_and_incremental_builds_agree(given_rules: list[RuleArgs], seed: int) -> None:
    # The same rules added one by one, rebuilt from a pickle (one bulk build), and written in
    # the text format: one answer.
    c, ref = Classifier(), Reference()
    lines = []
    for r in given_rules:
        if r.rule_id in ref.rules:
            continue
        c.add(r.rule_id, priority=r.priority, **r.kwargs)
        ref.add(r.rule_id, r.priority, [r.alt])
        a = r.alt
        src = "any" if a.src is None else str(a.src)
        dst = "any" if a.dst is None else str(a.dst)
        lines.append(
            f"act proto {a.proto[0]}/{a.proto[1]} from {src} port {a.sport[0]}-{a.sport[1]}"
            f" to {dst} port {a.dport[0]}-{a.dport[1]} id {r.rule_id} priority {r.priority}"
        )
    rng = random.Random(seed)
    alts = [r.alt for r in given_rules] or [Alt(None, None)]
    packets = [corner_packet(rng, rng.choice(alts), v) for _ in range(60) for v in (4, 6)]
    for other in (c, pickle.loads(pickle.dumps(c)), Classifier.from_text("\n".join(lines))):
        check(other, ref, packets)


def read_classbench(path: Path) -> list[Alt]:
    """The ClassBench reader of the tests: one alternative per line, host bits cleared."""
    alts = []
    for line in path.read_text().splitlines():
        f = line.lstrip("@").split("\t")
        slo, shi = (int(x) for x in f[2].split(":"))
        dlo, dhi = (int(x) for x in f[3].split(":"))
        value, mask = (int(x, 16) for x in f[4].split("/"))
        src = ipaddress.ip_network(f[0], strict=False)
        dst = ipaddress.ip_network(f[1], strict=False)
        alts.append(Alt(src, dst, (slo, shi), (dlo, dhi), (value, mask)))
    return alts


@pytest.mark.parametrize("name", ["fw1_300", "acl1_300"])
def test_classbench_fixture_agrees_with_a_linear_scan(name: str) -> None:
    alts = read_classbench(DATA / name)
    assert len(alts) == 300
    c = Classifier.from_classbench(DATA / name)
    ref = Reference()
    for i, a in enumerate(alts):
        ref.add(i, i, [a])
    assert list(c) == list(range(300)) and c.rule(17)["priority"] == 17
    assert c.rule(5)["matches"][0]["src"] == str(alts[5].src)
    rng = random.Random(f"{name}-corners")
    packets = [corner_packet(rng, rng.choice(alts), 4) for _ in range(3000)]
    want = [ref.classify(*p) for p in packets]
    # The corners hit most rules, and miss often enough to test the edges.
    assert 1500 < sum(w is not None for w in want) < 2500 and len(set(want)) > 250
    got = c.classify_many(*columns(packets))
    assert got.tolist() == [-1 if w is None else w for w in want]
    for p, w in list(zip(packets, want, strict=True))[::25]:
        assert c.classify(int(p[0]), int(p[1]), *p[2:]) == w


def test_classbench_errors_name_the_file_and_line(tmp_path: Path) -> None:
    good = (DATA / "fw1_300").read_text().splitlines()[:3]
    bad = tmp_path / "bad_rules"
    bad.write_text("\n".join([*good, "@10.0.0.0/8\t0.0.0.0/0\t80 : 79\t0 : 65535\t0x06/0xFF\t"]))
    with pytest.raises(RuleError, match=r"bad_rules: line 4: source port range 80\.\.79 is inv"):
        Classifier.from_classbench(bad)
    with pytest.raises(FileNotFoundError):
        Classifier.from_classbench(tmp_path / "missing")
    (tmp_path / "binary").write_bytes(b"@\xff\xfe")
    with pytest.raises(RuleError, match="not UTF-8"):
        Classifier.from_classbench(tmp_path / "binary")


# ---------------------------------------------------------------------------------------------
# The rule API.


def test_rules_and_answers() -> None:
    c = Classifier()
    c.add(10, priority=5, src="10.0.0.0/8", dport=(80, 443), proto="tcp", action="web")
    c.add(11, priority=5, src=ipaddress.ip_network("10.1.0.0/16"), action="later")  # tie: 10 wins
    c.add(12, priority=1, dst="192.0.2.1", sport=53, proto=(17, 0xFF))
    c.add(13, priority=7, src="2001:db8::/32")
    c.add(14, priority=9)  # any packet, either family
    assert len(c) == 5 and list(c) == [12, 10, 11, 13, 14]
    assert 10 in c and 99 not in c and "10" not in c and -1 not in c and 2**40 not in c
    assert repr(c) == "Classifier(rules=5)" and c.memory > 0
    assert c.classify("10.1.2.3", "1.1.1.1", 1, 80, 6) == 10
    assert c.classify("10.1.2.3", "1.1.1.1", 1, 80, "udp") == 11
    assert c.classify("10.1.2.3", "192.0.2.1", 53, 80, 17) == 12
    assert c.classify("10.1.2.3", "192.0.2.2", 53, 80, 17) == 11
    assert c.classify("2001:db8::1", "::1", 0, 0, 58) == 13
    assert c.classify("2001:db9::1", "::1", 0, 0, "ipv6-icmp") == 14
    assert c.classify(ipaddress.ip_address("11.0.0.1"), 0x0B000002, 0, 0, 0) == 14
    assert c.classify(b"\x0a\x00\x00\x01", "1.1.1.1", 0, 443, np.uint8(6)) == 10
    assert c.action(10) == "web" and c.action(12) is None
    assert c.rule(12) == {
        "id": 12,
        "priority": 1,
        "action": None,
        "matches": [
            {
                "src": "any",
                "dst": "192.0.2.1/32",
                "sport": (53, 53),
                "dport": (0, 65535),
                "proto": (17, 255),
            }
        ],
    }
    c.remove(10)
    assert c.classify("10.1.2.3", "1.1.1.1", 1, 80, 6) == 11 and 10 not in c
    with pytest.raises(KeyError):
        c.remove(10)
    with pytest.raises(KeyError):
        c.action(10)
    with pytest.raises(KeyError):
        c.rule(10)
    c.add(10, priority=5, src="10.0.0.0/8")  # re-added: now after 11 among equals
    assert c.classify("10.1.2.3", "1.1.1.1", 1, 80, 6) == 11 and c.action(10) is None
    empty = Classifier()
    assert len(empty) == 0 and list(empty) == [] and empty.classify("::", "::", 0, 0, 0) is None


def test_bad_rules_raise_and_change_nothing() -> None:
    c = Classifier()
    c.add(1, priority=0, src="10.0.0.0/8", action="keep")
    before = (list(c), c.rule(1), c.memory)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"src": "10.0.0.1/8"}, 'src: "10.0.0.1/8" has host bits set'),
        ({"dst": "10.0.0.0/33"}, "dst: .* bad prefix length"),
        ({"src": "banana"}, "src: .*not an IP prefix"),
        ({"sport": (80, 79)}, r"sport: port range 80\.\.79 is inverted"),
        ({"dport": (0, 65536)}, "dport: port 65536 is outside 0..=65535"),
        ({"dport": -1}, "dport -1 is outside 0..=65535"),
        ({"proto": "tcpx"}, 'proto: unknown protocol name "tcpx"'),
        ({"proto": 256}, "proto 256 is outside 0..=255"),
        ({"proto": (0x16, 0x0F)}, "proto: protocol 0x16 has bits outside its mask 0x0f"),
        ({"src": "10.0.0.0/8", "dst": "2001:db8::/32"}, "different families"),
    ]
    for kwargs, message in bad:
        with pytest.raises(RuleError, match=message) as info:
            c.add(2, priority=0, **kwargs)
        assert isinstance(info.value, ValueError) and isinstance(info.value, MeshcoreError)
    with pytest.raises(RuleError, match="rule id 1 is already in the classifier"):
        c.add(1, priority=3, action="other")
    for rule_id in (-1, 2**32):
        with pytest.raises(RuleError, match=r"rule_id .* is outside 0\.\.=4294967295"):
            c.add(rule_id, priority=0)
    with pytest.raises(RuleError, match="priority 4294967296 is outside"):
        c.add(2, priority=2**32)
    for wrong in (True, "1", 1.0, None):
        with pytest.raises(TypeError, match="rule_id must be an int"):
            c.add(wrong, priority=0)  # type: ignore[arg-type]
    for kwargs in ({"sport": "80"}, {"dport": (1, 2, 3)}, {"proto": 6.0}, {"sport": (1, "2")}):
        with pytest.raises(TypeError):
            c.add(2, priority=0, **kwargs)
    assert (list(c), c.rule(1), c.memory) == before
    c.add(2**32 - 1, priority=2**32 - 1, src="10.0.0.1", proto="0x06/0xff")  # the extremes
    assert c.rule(2**32 - 1)["matches"][0]["src"] == "10.0.0.1/32"
    assert c.rule(2**32 - 1)["matches"][0]["proto"] == (6, 255)


def test_packet_arguments() -> None:
    c = Classifier()
    c.add(1, priority=0)
    with pytest.raises(RuleError, match="different families"):
        c.classify("10.0.0.1", "::1", 0, 0, 6)
    with pytest.raises(RuleError, match=r"src: .*not an IP address"):
        c.classify("10.0.0.256", "10.0.0.1", 0, 0, 6)
    with pytest.raises(RuleError, match="sport 65536 is outside"):
        c.classify("10.0.0.1", "10.0.0.1", 65536, 0, 6)
    with pytest.raises(RuleError, match="unknown protocol name"):
        c.classify("10.0.0.1", "10.0.0.1", 0, 0, "tcpx")
    with pytest.raises(TypeError):
        c.classify("10.0.0.1", "10.0.0.1", 0, None, 6)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="bool"):
        c.classify(True, "10.0.0.1", 0, 0, 6)
    assert c.classify(2**100, "::1", 0, 0, 6) == 1  # ints above 32 bits are IPv6


# ---------------------------------------------------------------------------------------------
# Batches from columns.


def _v4_rules() -> Classifier:
    c = Classifier()
    c.add(1, priority=1, src="10.0.0.0/8", dport=(1000, 1999), proto="udp")
    c.add(2, priority=2, src="10.0.0.0/8")
    c.add(3, priority=3, dst="2001:db8::/32")
    return c


def test_classify_many_columns_of_every_dtype() -> None:
    c = _v4_rules()
    rng = np.random.default_rng(5)
    n = 5000  # several blocks
    src = np.where(rng.random(n) < 0.7, 0x0A000000, 0x0B000000).astype(np.uint32)
    src |= rng.integers(0, 2**24, n, dtype=np.uint32)
    dst = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    sport = rng.integers(0, 65536, n).astype(np.uint16)
    dport = rng.integers(0, 3000, n).astype(np.uint16)
    proto = rng.choice(np.array([6, 17, 1], np.uint8), n)
    want = c.classify_many(src, dst, sport, dport, proto)
    scalar = [
        c.classify(int(s), int(d), int(sp), int(dp), int(p))
        for s, d, sp, dp, p in zip(src, dst, sport, dport, proto, strict=True)
    ]
    assert want.tolist() == [-1 if w is None else w for w in scalar]
    assert {1, 2, -1} <= set(want.tolist())
    forms: list[tuple[Any, ...]] = [
        (src.astype(">u4"), dst.astype(">u4"), sport, dport, proto),
        (src, dst, sport.astype(np.int64), dport.astype(np.int32), proto.astype(np.int16)),
        (src, dst, sport.tolist(), dport.astype(">u2"), proto.astype(np.uint64)),
        (src, dst, sport.astype(np.uint32), dport, proto.tolist()),
    ]
    for form in forms:
        assert (c.classify_many(*form) == want).all()
    # Strided arrays are copied, then answer the same.
    half = c.classify_many(src[::2], dst[::2], sport[::2], dport[::2], proto[::2])
    assert (half == want[::2]).all()
    # One value for every row: an int, a numpy scalar, a protocol name.
    tcp = c.classify_many(src, dst, sport, np.uint16(1500), "udp")
    assert tcp.tolist() == [1 if s >> 24 == 10 else -1 for s in src.tolist()]
    assert (c.classify_many(src, dst, 0, 1500, 17) == tcp).all()
    out = np.full(n, 99, np.int64)
    assert c.classify_many(src, dst, sport, dport, proto, out=out) is out
    assert (out == want).all()
    empty = np.array([], np.uint32)
    assert c.classify_many(empty, empty, empty, empty, empty).tolist() == []


def test_classify_many_ipv6_rows() -> None:
    c = _v4_rules()
    rows = np.zeros((3000, 16), np.uint8)
    rows[::2, :4] = [0x20, 0x01, 0x0D, 0xB8]  # every other destination in 2001:db8::/32
    rows[:, 15] = np.arange(3000) % 256
    src = np.zeros((3000, 16), np.uint8)
    got = c.classify_many(src, rows, 1, 2, 6)
    assert got.tolist() == [3, -1] * 1500
    assert (c.classify_many(src, np.asfortranarray(rows), 1, 2, 6) == got).all()


def test_malformed_batches_name_the_column_or_row() -> None:
    c = _v4_rules()
    a = np.arange(4, dtype=np.uint32)
    six = np.zeros((4, 16), np.uint8)
    ports = np.arange(4, dtype=np.uint16)
    cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((a.astype(np.int64), a, ports, ports, 6), {}, "src must be a uint32 array .* not int64"),
        ((a, six[:, :8], ports, ports, 6), {}, r"dst must be .* not uint8 of shape \(4, 8\)"),
        ((a, six, ports, ports, 6), {}, "different families"),
        ((a, a, ports[:3], ports, 6), {}, r"differ in length \(4, 4, 3, 4, one\)"),
        ((a, a, [0, 1, 70000, 2], ports, 6), {}, "row 2: sport 70000 is outside 0..=65535"),
        ((a, a, ports, np.array([0, -1, 0, 0]), 6), {}, "row 1: dport -1 is outside"),
        ((a, a, ports, ports, np.array([6, 6, 6, 300])), {}, "row 3: proto 300 is outside 0..=255"),
        ((a, a, ports, ports, 256), {}, "proto 256 is outside"),
        ((a, a, ports.astype(float), ports, 6), {}, "sport must hold integers, not float64"),
        ((a, a, ports.reshape(2, 2), ports, 6), {}, "sport must be one-dimensional"),
        ((a, a, ports, ports, "tcpx"), {}, "unknown protocol name"),
        ((a, a, ports, ports, 6), {"out": np.zeros(3, np.int64)}, "out has 3 rows"),
        ((a, a, ports, ports, 6), {"out": np.zeros(4, np.int32)}, "out must be .* int64"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(RuleError, match=message):
            c.classify_many(*args, **kwargs)
    with pytest.raises(TypeError):
        c.classify_many(a, a, "80", ports, 6)
    # A bad row leaves the caller's out untouched.
    out = np.full(4, 7, np.int64)
    with pytest.raises(RuleError, match="row 3"):
        c.classify_many(a, a, ports, [1, 2, 3, 99999], 6, out=out)
    assert out.tolist() == [7] * 4
    readonly = np.zeros(4, np.int64)
    readonly.flags.writeable = False
    with pytest.raises(RuleError, match="out cannot be written"):
        c.classify_many(a, a, ports, ports, 6, out=readonly)
    shared = np.zeros(4, np.int64)
    with pytest.raises(RuleError, match="out cannot be written"):  # out overlaps src
        c.classify_many(shared.view(np.uint32)[:4], a, ports, ports, 6, out=shared)


def test_classify_many_takes_empty_lists() -> None:
    c = _v4_rules()
    empty = np.array([], np.uint32)
    forms: list[tuple[Any, Any, Any]] = [
        ([], [], []),
        ((), [], 6),
        ([], np.array([], np.uint16), "tcp"),
    ]
    for columns in forms:
        got = c.classify_many(empty, empty, *columns)
        assert got.dtype == np.int64 and got.shape == (0,)
    six = np.zeros((0, 16), np.uint8)
    assert c.classify_many(six, six, [], [], []).shape == (0,)
    # An empty list is no excuse for a length mismatch, nor a list of floats for integers.
    with pytest.raises(RuleError, match=r"differ in length \(2, 2, 0, one, one\)"):
        c.classify_many(np.zeros(2, np.uint32), np.zeros(2, np.uint32), [], 80, 6)
    with pytest.raises(RuleError, match="sport must hold integers, not float64"):
        c.classify_many(np.zeros(1, np.uint32), np.zeros(1, np.uint32), [1.5], 80, 6)


def test_classify_many_refuses_bools_with_type_error() -> None:
    c = _v4_rules()
    a = np.zeros(2, np.uint32)
    bools: list[Any] = [True, np.True_, np.array(True), np.ones(2, bool), [True, False]]
    for column in range(3):
        for b in bools:
            args: list[Any] = [a, a, 1, 1000, 17]
            args[2 + column] = b
            name = ("sport", "dport", "proto")[column]
            with pytest.raises(TypeError, match=f"^{name} must be an int or an integer array"):
                c.classify_many(*args)
    # Ints (Python and numpy) are still one value for every row.
    assert c.classify_many(a, a, 1, np.int64(1000), 17).tolist() == [-1, -1]
    assert c.classify_many(a + 0x0A000000, a, 1, 1000, np.uint8(17)).tolist() == [1, 1]


def test_classify_many_names_the_row_of_an_int_numpy_cannot_hold() -> None:
    """A list with an int beyond int64 and uint64 (numpy holds it as an object, or the list as
    float64) is read one int at a time: the first out of range is named with its row."""
    c = _v4_rules()
    a = np.zeros(3, np.uint32)
    names = (("sport", 65535), ("dport", 65535), ("proto", 255))
    for column, (name, top) in enumerate(names):
        for big in (2**64, 2**64 + 5, 2**200, -(2**64), 2**63):
            args: list[Any] = [a, a, 1, 1000, 17]
            args[2 + column] = [1, 2, big]
            with pytest.raises(RuleError, match=rf"^row 2: {name} {big} is outside 0\.\.={top}$"):
                c.classify_many(*args)
            args[2 + column] = [1, top + 1, big]
            with pytest.raises(RuleError, match=rf"^row 1: {name} {top + 1} is outside"):
                c.classify_many(*args)
    with pytest.raises(RuleError, match=r"^sport must hold integers, not NoneType \(row 1\)$"):
        c.classify_many(a, a, [1, None, 2**64], 1000, 17)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match=r"^sport must hold integers, not float64$"):
        c.classify_many(a, a, [1, 2.5, 2**63], 1000, 17)
    # In range, such a list is as good as any other.
    ports = np.array([1, 1, 1], dtype=object)
    assert c.classify_many(a + 0x0A000000, a, ports, [1000] * 3, 17).tolist() == [1, 1, 1]


def test_classify_many_refuses_a_bool_in_a_list_with_type_error() -> None:
    """numpy reads ``[1000, True]`` as int64 ``[1000, 1]``: the bool is found first."""
    c = _v4_rules()
    a = np.zeros(2, np.uint32)
    for column in range(3):
        for b in ([1000, True], (np.False_, 6), np.array([6, True], dtype=object)):
            args: list[Any] = [a, a, 1, 1000, 17]
            args[2 + column] = b
            name = ("sport", "dport", "proto")[column]
            with pytest.raises(
                TypeError, match=rf"^{name} must be an int or an integer array, not a bool \(row"
            ):
                c.classify_many(*args)


# ---------------------------------------------------------------------------------------------
# Parsed rows and raw frames.


def _frames() -> tuple[list[bytes], list[int]]:
    """Frames of every kind with the answer `_frame_rules` gives for each."""
    b = meshcore.build_packet
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    cases = [
        (b("10.0.0.1", "192.0.2.1", proto="tcp", sport=4000, dport=443), 1),
        (b("10.0.0.1", "192.0.2.1", proto="tcp", sport=4000, dport=444), 4),
        (b("10.0.0.1", "192.0.2.1", proto="udp", sport=53, dport=5353, vlan=[7]), 2),
        (b("2001:db8::1", "2001:db8::2", proto="udp", sport=1, dport=53), 3),
        (b("2001:db9::1", "2001:db8::2", proto="tcp", sport=1, dport=53, vlan=[1, 2]), 4),
        (b("10.0.0.1", "192.0.2.1", proto="icmp"), 5),  # no ports: 0 and 0
        (b("2001:db8::1", "::1", proto="icmp"), 5),
        (b("10.0.0.1", "192.0.2.1", proto=17, frag_offset=8, payload=bytes(8)), 5),
        (b("10.0.0.1", "192.0.2.1", proto="tcp", dport=443)[:30], -1),  # truncated
        (arp, -1),  # not IP
        (b"", -1),
    ]
    return [f for f, _ in cases], [w for _, w in cases]


def _frame_rules() -> Classifier:
    return Classifier.from_text(
        """
        web tcp from 10.0.0.0/8 to any port 443 id 1
        dns udp from any port 53 to any id 2
        dns6 udp from any to 2001:db8::/32 port 53 id 3
        portless from any port 0 to any port 0 id 5 priority 4
        rest from any to any id 4 priority 9
        """
    )


def test_classify_parsed_and_frames() -> None:
    c = _frame_rules()
    frames, want = _frames()
    frames, want = frames * 300, want * 300  # several blocks
    buffer = b"".join(frames)
    offsets = np.cumsum([0] + [len(f) for f in frames])
    rows = meshcore.parse_batch(buffer, offsets)
    assert c.classify_parsed(rows).tolist() == want
    raw = rows.view(np.uint8).reshape(len(rows), 64)
    assert c.classify_parsed(raw).tolist() == want
    assert c.classify_parsed(rows[::3]).tolist() == want[::3]
    assert c.classify_frames(buffer, offsets).tolist() == want
    assert c.classify_frames(np.frombuffer(buffer, np.uint8), offsets.tolist()).tolist() == want
    out = np.full(len(frames), 99, np.int64)
    assert c.classify_frames(buffer, offsets.astype(np.uint32), out=out) is out
    assert out.tolist() == want
    out[:] = 99
    assert c.classify_parsed(rows, out=out) is out and out.tolist() == want
    # Raw IP frames: the link type is passed through to the parser.
    ip = [meshcore.build_packet("10.0.0.1", "192.0.2.1", proto="tcp", dport=443, link="ip")]
    assert c.classify_frames(ip[0], [0, len(ip[0])], link="ip").tolist() == [1]
    assert c.classify_frames(b"", [0]).tolist() == []


def test_frame_offsets_refuse_bools_with_type_error() -> None:
    """numpy reads ``[0, True]`` as int64 ``[0, 1]``: offsets refuse bools by type."""
    c = _frame_rules()
    frame = meshcore.build_packet("10.0.0.1", "192.0.2.1")
    assert len(frame) > 1
    bad: list[tuple[object, str]] = [
        ([0, True], r"a bool \(row 1\)"),
        ((np.False_, len(frame)), r"a bool \(row 0\)"),
        (np.array([False, True]), "an array of bool"),
    ]
    for offsets, got in bad:
        with pytest.raises(
            TypeError, match=f"^offsets must be a one-dimensional integer array, not {got}$"
        ):
            c.classify_frames(frame, offsets)  # type: ignore[arg-type]


def test_frame_batches_refuse_bad_input() -> None:
    c = _frame_rules()
    frame = meshcore.build_packet("10.0.0.1", "192.0.2.1")
    with pytest.raises(PacketError, match=r"offsets\[1\] = 99 is outside the buffer"):
        c.classify_frames(frame, [0, 99])
    with pytest.raises(PacketError, match="offsets decrease at index 0"):
        c.classify_frames(frame * 2, [len(frame), 0, len(frame)])
    with pytest.raises(PacketError, match="N \\+ 1"):
        c.classify_frames(frame, [])
    with pytest.raises(PacketError, match="one-dimensional integer array"):
        c.classify_frames(frame, [[0, 1]])
    with pytest.raises(ConfigError, match="unknown link type"):
        c.classify_frames(frame, [0, len(frame)], link="token-ring")
    with pytest.raises(RuleError, match="out has 2 rows"):
        c.classify_frames(frame, [0, len(frame)], out=np.zeros(2, np.int64))
    buf = np.zeros(64, np.uint8)
    buf[: len(frame)] = np.frombuffer(frame, np.uint8)
    with pytest.raises(RuleError, match="out must not share memory with buffer"):
        c.classify_frames(buf, [0, len(frame)], out=buf[:8].view(np.int64))
    rows = meshcore.parse_batch(frame, [0, len(frame)])
    for bad in (rows.view(np.uint8), rows["src"], np.zeros((1, 63), np.uint8), [1, 2]):
        with pytest.raises(RuleError, match="rows must be a one-dimensional PACKET_DTYPE"):
            c.classify_parsed(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The text format.

EXAMPLE = """
# comment
allow tcp from 10.0.0.0/8 to any port 80,443
deny udp from any port 1024-65535 to 192.168.1.0/24 port 53

allow proto 0x06/0xff from 2001:db8::/32 to any   id 7 priority 3
deny from any to any
"""


def test_text_rules() -> None:
    c = Classifier.from_text(EXAMPLE)
    assert list(c) == [0, 1, 7, 3]
    assert [c.action(i) for i in c] == ["allow", "deny", "allow", "deny"]
    assert c.rule(7)["priority"] == 3 and c.rule(3)["priority"] == 3
    assert [m["dport"] for m in c.rule(0)["matches"]] == [(80, 80), (443, 443)]
    assert c.classify("10.9.9.9", "1.1.1.1", 5, 443, 6) == 0
    assert c.classify("10.9.9.9", "1.1.1.1", 5, 8080, 6) == 3
    assert c.classify("1.2.3.4", "192.168.1.9", 1024, 53, 17) == 1
    assert c.classify("1.2.3.4", "192.168.1.9", 1023, 53, 17) == 3
    assert c.classify("2001:db8::1", "::1", 1, 1, 6) == 7
    assert c.classify("2001:db8::1", "::1", 1, 1, 17) == 3
    lists = Classifier.from_text(
        "pass {tcp, udp} from {10.0.0.0/8 2001:db8::/32} to {192.0.2.1, 2001:db8::1} port 1-2"
    )
    # 2 protocols x the 2 same-family address pairs.
    assert len(lists.rule(0)["matches"]) == 4
    assert lists.classify("2001:db8::5", "2001:db8::1", 0, 2, 17) == 0
    assert lists.classify("10.0.0.5", "192.0.2.2", 0, 2, 17) is None
    assert lists.classify("10.0.0.5", "192.0.2.1", 0, 2, 1) is None
    assert len(Classifier.from_text("# nothing\n\n")) == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("allow tcpp from any to any", 'unknown protocol name "tcpp"'),
        ("allow from 10.0.0.1/8 to any", '"10.0.0.1/8" has host bits set'),
        ("allow from any to any port 90-80", r"port range 90\.\.80 is inverted"),
        ("allow from any to any port 65536", "port 65536 is outside 0..=65535"),
        ("allow from 10.0.0.0/8 to 2001:db8::/32", "the source and destination .* different fam"),
        ("allow from any to any id 0", "rule id 0 is already used by the rule on line 2"),
        ("allow from any to any keep state", 'unexpected "keep" after the rule'),
        ("allow from any", "expected 'to' after the source"),
        ("from any to any", "a rule starts with an action word"),
        ("allow proto 0x16/0x0f from any to any", "protocol 0x16 has bits outside its mask"),
        ("allow from any to any port -5", 'port "-5" is not a decimal number or a range N-M'),
        ("allow from any port 5- to any", 'port "5-" is not a decimal number or a range N-M'),
        ("allow from any to any port 1-2-3", 'port "1-2-3" is not a decimal number'),
    ],
)
def test_text_errors_name_the_line(line: str, message: str) -> None:
    text = f"# rules\nfirst from any to any\n\n{line}\nlast from any to any\n"
    with pytest.raises(RuleError, match=f"^line 4: {message}"):
        Classifier.from_text(text)


def test_long_lists_are_refused_before_they_expand() -> None:
    nets = ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(4000))
    with pytest.raises(RuleError, match=r"^line 1: the lists expand into more than 4096 alt"):
        Classifier.from_text(f"allow from {nets} to {nets}")
    one_list = ",".join(["192.0.2.1"] * 10**6)
    with pytest.raises(RuleError, match=r"^line 2: a list of a source address has more than 4096"):
        Classifier.from_text(f"ok from any to any\nallow from {one_list} to any")
    # Pairs of mixed families do not count: 4096 IPv4 sources, each with the IPv4 destination.
    four_k = ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(4096))
    c = Classifier.from_text(f"allow from {four_k} to {{192.0.2.1, 2001:db8::1}}")
    assert len(c.rule(0)["matches"]) == 4096


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_long_lists_build_nothing_in_proportion_to_their_product() -> None:
    # A fresh interpreter, whose peak resident memory (VmHWM; ru_maxrss would carry over this
    # process's peak) is then this line's: 4000 x 4000 pairs would take more than a gigabyte if
    # they were formed before their count was checked.
    script = """if True:
        import meshcore

        def peak_kib():
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

        nets = ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(4000))
        text = f"allow from {nets} to {nets} port 1,2,3"
        before = peak_kib()
        try:
            meshcore.Classifier.from_text(text)
        except meshcore.RuleError as e:
            print(e)
        print((peak_kib() - before) // 1024)
    """
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
    )
    message, grown_mib = done.stdout.splitlines()
    assert message == "line 1: the lists expand into more than 4096 alternatives"
    assert int(grown_mib) < 64, done.stdout


def test_load_files(tmp_path: Path) -> None:
    path = tmp_path / "rules.conf"
    path.write_text(EXAMPLE)
    c = Classifier.load(path)
    assert list(c) == [0, 1, 7, 3] and list(Classifier.load(str(path))) == list(c)
    path.write_text("allow from any to any\nallow from any to any id 0\n")
    with pytest.raises(RuleError, match=r"rules\.conf: line 2: rule id 0 is already used"):
        Classifier.load(path)
    with pytest.raises(FileNotFoundError):
        Classifier.load(tmp_path / "missing.conf")


# ---------------------------------------------------------------------------------------------
# Copies, and concurrent use.


def test_pickle_round_trip() -> None:
    c = Classifier.from_text(EXAMPLE)
    c.add(100, priority=3, src="10.0.0.0/8", sport=(1, 2), proto=(0x10, 0xF0))  # ties with 7
    c.remove(1)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(c, protocol=proto))
        assert isinstance(back, Classifier) and back is not c
        assert list(back) == list(c) == [0, 7, 3, 100]
        assert [back.rule(i) for i in back] == [c.rule(i) for i in c]
    clone = copy.deepcopy(c)
    clone.remove(0)
    assert 0 in c and 0 not in clone
    rules = c.__reduce__()[1][0]
    rules[1]["id"] = 0  # two rules with one id
    with pytest.raises(RuleError, match="rule 1: rule id 0 is already"):
        Classifier._from_rules(rules)
    with pytest.raises(RuleError, match='rule 0: a rule dict needs "matches"'):
        Classifier._from_rules([{"id": 1, "priority": 1, "action": None}])  # type: ignore[typeddict-item]


def test_readers_see_each_change_whole() -> None:
    c = Classifier()
    c.add(1, priority=10)  # catch-all
    n = 20_000
    src = np.full(n, 0x0A000001, np.uint32)
    dst = np.full(n, 0xC0000201, np.uint32)
    ports = np.full(n, 443, np.uint16)
    stop = threading.Event()
    problems: list[str] = []
    batches = [0]

    def writer() -> None:
        while not stop.is_set():
            c.add(0, priority=0, src="10.0.0.0/8", dport=443)
            c.add(2, priority=5, src="10.0.0.0/8")
            c.remove(0)
            c.remove(2)

    def reader() -> None:
        for _ in range(100):
            out = c.classify_many(src, dst, ports, ports, 6)
            seen = set(out.tolist())
            if len(seen) != 1 or not seen <= {0, 1, 2}:
                problems.append(f"torn or wrong batch: {sorted(seen)}")
            if c.classify("10.0.0.1", "192.0.2.1", 443, 443, 6) not in (0, 1, 2):
                problems.append("wrong single answer")
            batches[0] += 1

    w = threading.Thread(target=writer)
    readers = [threading.Thread(target=reader) for _ in range(3)]
    w.start()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    w.join()
    assert not problems, problems[:3]
    assert batches[0] == 300 and list(c) == [1]
