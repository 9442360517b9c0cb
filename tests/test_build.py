"""build_packet: round trips through the parser, and byte-for-byte agreement with scapy."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_LSRR
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrSegmentRouting
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from meshcore import Packet, PacketError, build_packet

ports = st.integers(0, 65535)
ipv4s = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
ipv6s = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
payloads = st.binary(max_size=300)
tcis = st.integers(0, 0xFFFF)


def _eth(vlan: list[int]) -> ScapyPacket:
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i, tci in enumerate(vlan):
        layer = Dot1AD if len(vlan) > 1 and i == 0 else Dot1Q
        frame = frame / layer(prio=tci >> 13, dei=(tci >> 12) & 1, vlan=tci & 0xFFF)
    return frame


@settings(max_examples=300, deadline=None)
@given(
    src=ipv4s,
    dst=ipv4s,
    sport=ports,
    dport=ports,
    payload=payloads,
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    ident=st.integers(0, 65535),
    df=st.booleans(),
    vlan=st.lists(tcis, max_size=2),
    flags=st.integers(0, 0x1FF),
    seq=st.integers(0, 2**32 - 1),
    window=ports,
    proto=st.sampled_from(["tcp", "udp", "icmp"]),
)
def test_ipv4_bytes_equal_scapy(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int,
    tos: int,
    ident: int,
    df: bool,
    vlan: list[int],
    flags: int,
    seq: int,
    window: int,
    proto: str,
) -> None:
    ours = build_packet(
        src,
        dst,
        proto=proto,
        sport=sport,
        dport=dport,
        payload=payload,
        ttl=ttl,
        tos=tos,
        ident=ident,
        dont_fragment=df,
        vlan_tci=vlan,
        tcp_flags=flags,
        seq=seq,
        window=window,
        icmp_type=0,
        icmp_rest=seq,
    )
    ip = IP(src=src, dst=dst, ttl=ttl, tos=tos, id=ident, flags="DF" if df else 0)
    if proto == "tcp":
        l4: ScapyPacket = TCP(sport=sport, dport=dport, flags=flags, seq=seq, window=window)
    elif proto == "udp":
        l4 = UDP(sport=sport, dport=dport)
    else:
        l4 = ICMP(type=0, code=0, id=seq >> 16, seq=seq & 0xFFFF)
    theirs = bytes(_eth(vlan) / ip / l4 / Raw(payload))
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(
    src=ipv6s,
    dst=ipv6s,
    sport=ports,
    dport=ports,
    payload=payloads,
    hlim=st.integers(0, 255),
    tc=st.integers(0, 255),
    fl=st.integers(0, 2**20 - 1),
    proto=st.sampled_from(["tcp", "udp", "icmp"]),
)
def test_ipv6_bytes_equal_scapy(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    hlim: int,
    tc: int,
    fl: int,
    proto: str,
) -> None:
    ours = build_packet(
        src,
        dst,
        proto=proto,
        sport=sport,
        dport=dport,
        payload=payload,
        ttl=hlim,
        tos=tc,
        flow_label=fl,
        tcp_flags="PA",
        icmp_rest=(7 << 16) | 9,
    )
    ip6 = IPv6(src=src, dst=dst, hlim=hlim, tc=tc, fl=fl)
    if proto == "tcp":
        l4: ScapyPacket = TCP(sport=sport, dport=dport, flags="PA", seq=0, window=65535)
    elif proto == "udp":
        l4 = UDP(sport=sport, dport=dport)
    else:
        l4 = ICMPv6EchoRequest(id=7, seq=9)
    theirs = bytes(_eth([]) / ip6 / l4 / Raw(payload))
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(
    v6=st.booleans(),
    data=st.data(),
    sport=ports,
    dport=ports,
    payload=payloads,
    ttl=st.integers(0, 255),
    vlan=st.lists(st.integers(0, 4095), max_size=3),
    link=st.sampled_from(["ethernet", "ip", "sll", "sll2"]),
    proto=st.sampled_from(["tcp", "udp"]),
    ext=st.lists(st.tuples(st.sampled_from([43, 60]), st.binary(max_size=20)), max_size=3),
    hbh=st.booleans(),
    frag=st.sampled_from([None, 0, 8, 1024]),
    more=st.booleans(),
    ident=st.integers(0, 65535),
)
def test_round_trip_through_the_parser(
    v6: bool,
    data: st.DataObject,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int,
    vlan: list[int],
    link: str,
    proto: str,
    ext: list[tuple[int, bytes]],
    hbh: bool,
    frag: int | None,
    more: bool,
    ident: int,
) -> None:
    src, dst = (data.draw(ipv6s), data.draw(ipv6s)) if v6 else (data.draw(ipv4s), data.draw(ipv4s))
    # TLV bodies inside option headers must be valid: destination options get Pad1 bytes only.
    chain = [(t, b if t == 43 else bytes(len(b))) for t, b in ext]
    if hbh:
        chain = [(0, b""), *chain]
    nonfirst = frag not in (None, 0)
    frame = build_packet(
        src,
        dst,
        proto=17 if nonfirst else proto,
        sport=sport,
        dport=dport,
        payload=payload,
        ttl=ttl,
        vlan=vlan if link == "ethernet" else None,
        link=link,
        ext_headers=chain if v6 else None,
        frag_offset=frag or 0,
        more_fragments=more and frag is not None,
        ident=ident,
    )
    p = Packet.parse(frame, link)
    assert (p.version, p.src, p.dst, p.ttl) == (6 if v6 else 4, src, dst, ttl)
    assert p.vlan == (vlan if link == "ethernet" else [])
    assert p.is_fragment == (nonfirst or (more and frag is not None))
    if nonfirst:
        assert (p.sport, p.dport, p.proto) == (None, None, 17)
        assert p.payload == payload
    else:
        assert (p.sport, p.dport) == (sport, dport)
        assert p.proto == (6 if proto == "tcp" else 17)
        assert p.payload == payload
    if v6:
        expected_ext = [t for t, _ in chain] + ([44] if p.is_fragment else [])
        assert p.ext_headers == expected_ext
    assert p.verify_checksums(strict=True)
    assert p.length == len(frame) - p.l3_offset


def test_tcp_flag_letters() -> None:
    for letters, value in [("S", 0x02), ("SA", 0x12), ("FPU", 0x29), ("N", 0x100), ("", 0)]:
        p = Packet.parse(build_packet("10.0.0.1", "10.0.0.2", proto="tcp", tcp_flags=letters))
        assert p.tcp_flags == value
    with pytest.raises(PacketError, match="unknown TCP flag letter"):
        build_packet("10.0.0.1", "10.0.0.2", proto="tcp", tcp_flags="SX")


def test_ipaddress_objects_and_raw_protocols() -> None:
    src, dst = ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("10.3.2.1")
    p = Packet.parse(build_packet(src, dst, proto=47, payload=b"gre"), "ethernet")
    assert (p.src, p.dst, p.proto, p.sport, p.payload) == ("10.1.2.3", "10.3.2.1", 47, None, b"gre")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"src": "10.0.0.1", "dst": "::1"}, "same IP version"),
        ({"src": "10.0.0.300", "dst": "10.0.0.1"}, "not an IP address"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "payload": b"x" * 65530}, "exceeds 65535"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "frag_offset": 12}, "multiple of 8"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "ip_options": b"\x01" * 44}, "longer than 40"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "eth_src": "zz"}, "not a MAC address"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "proto": "sctp"}, "unknown protocol"),
        ({"src": "::1", "dst": "::2", "ext_headers": [(44, b"\x00")]}, "6 bytes"),
    ],
)
def test_bad_build_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PacketError, match=message):
        build_packet(**kwargs)  # type: ignore[arg-type]


def _scapy_checksum_of(frame: bytes, layer: type[ScapyPacket]) -> int:
    """Scapy recomputes the transport checksum of a frame we built."""
    pkt = Ether(frame)
    del pkt[layer].chksum
    return int(Ether(bytes(pkt))[layer].chksum)


def test_routed_checksums_agree_with_scapy() -> None:
    # IPv4 loose source route: the pseudo-header uses the last hop of the route.
    opts = [IPOption_LSRR(routers=["10.0.0.7", "203.0.113.9"])]
    theirs = bytes(_eth([]) / IP(src="10.0.0.1", dst="10.0.0.7", options=opts) / UDP() / b"x")
    assert Packet.parse(theirs).verify_checksums(strict=True)
    ours = build_packet(
        "10.0.0.1",
        "10.0.0.7",
        sport=53,
        dport=53,
        payload=b"x",
        ident=1,
        ip_options=bytes(opts[0]) + b"\x00",
    )
    assert ours == theirs
    # IPv6 segment routing header with segments left: the pseudo-header uses Segment List[0].
    srh = IPv6ExtHdrSegmentRouting(addresses=["2001:db8::99", "2001:db8::5"], segleft=1)
    theirs6 = bytes(_eth([]) / IPv6(src="2001:db8::1", dst="2001:db8::5") / srh / UDP() / b"y")
    p = Packet.parse(theirs6)
    assert p.ext_headers == [43] and p.verify_checksums(strict=True)
    body = theirs6[14 + 40 + 2 : p.l4_offset]
    ours6 = build_packet(
        "2001:db8::1", "2001:db8::5", sport=53, dport=53, payload=b"y", ext_headers=[(43, body)]
    )
    assert ours6 == theirs6
    assert (
        _scapy_checksum_of(ours6, UDP)
        == Packet.parse(ours6).data[p.l4_offset + 6] * 256
        + (Packet.parse(ours6).data[p.l4_offset + 7])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sport": 70000}, "sport must be in 0..=65535, got 70000"),
        ({"dport": -1}, "dport must be in 0..=65535"),
        ({"ttl": 256}, "ttl must be in 0..=255"),
        ({"proto": 300}, "proto must be in 0..=255"),
        ({"tcp_flags": -1, "proto": "tcp"}, "tcp_flags must be in 0..=511"),
        ({"vlan": [5000]}, "vlan id must be in 0..=4095"),
        ({"vlan": [1], "vlan_tci": [1]}, "not both"),
        ({"icmp_type": 999, "proto": "icmp"}, "icmp_type must be in 0..=255"),
        ({"ident": 2**33}, "ident must be in"),
        ({"ip_options": b"\x07\x09"}, "would not parse: ipv4: malformed option"),
    ],
)
def test_out_of_range_arguments_are_packet_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PacketError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_packet("10.0.0.1", "10.0.0.2", **kwargs)  # type: ignore[arg-type]


def test_ipv6_argument_checks() -> None:
    with pytest.raises(PacketError, match=r"flow_label must be in 0\.\.=1048575"):
        build_packet("::1", "::2", flow_label=2**21 + 5)
    with pytest.raises(PacketError, match="would not parse: ipv6: header out of order"):
        build_packet("::1", "::2", ext_headers=[(60, b""), (0, b"")])
    with pytest.raises(TypeError, match="sport must be an int, not str"):
        build_packet("::1", "::2", sport="80")  # type: ignore[arg-type]
