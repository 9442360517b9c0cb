"""Packet.parse against byte vectors built by hand from the RFCs (tests/wirebytes.py)."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import meshcore
from meshcore import ConfigError, MeshcoreError, Packet, PacketError, build_packet
from wirebytes import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    MAC_A,
    MAC_B,
    eth,
    ext,
    frag6,
    icmp,
    ipv4,
    ipv6,
    pseudo4,
    pseudo6,
    tcp,
    tcp4_frame,
    udp,
)

S4, D4 = "192.0.2.1", "198.51.100.2"
S6, D6 = "2001:db8::1", "2001:db8:ffff::2"


def test_ethernet_ipv4_tcp_fields() -> None:
    seg = tcp(40000, 443, b"hello", flags=0x12, pseudo=pseudo4(S4, D4, 6, 25))
    frame = eth(ipv4(seg, 6, S4, D4, ttl=57, tos=0xB8, ident=77, flags=0b010), ETH_IPV4)
    p = Packet.parse(frame)
    assert (p.version, p.src, p.dst, p.proto, p.sport, p.dport) == (4, S4, D4, 6, 40000, 443)
    assert p.flow == (S4, D4, 40000, 443, 6)
    assert (p.ttl, p.tos, p.dscp, p.ecn, p.ident) == (57, 0xB8, 46, 0, 77)
    assert p.length == 20 + 25
    assert p.dont_fragment and not p.more_fragments and not p.is_fragment
    assert p.tcp_flags == 0x12
    assert p.eth_src == MAC_A.hex(":") and p.eth_dst == MAC_B.hex(":")
    assert p.ethertype == ETH_IPV4 and p.link == "ethernet" and p.vlan == []
    assert (p.l3_offset, p.l4_offset, p.payload_offset) == (14, 34, 54)
    assert p.payload == b"hello"
    assert p.src_packed == bytes([192, 0, 2, 1])
    assert p.data == frame and len(p) == len(frame)
    assert p.verify_checksums()
    assert p.icmp_type is None and p.flow_label is None
    assert "192.0.2.1:40000 -> 198.51.100.2:443" in repr(p)


def test_vlan_and_qinq() -> None:
    inner = ipv4(udp(5000, 53, b"q"), 17, S4, D4)
    p = Packet.parse(eth(inner, ETH_IPV4, [(0x8100, (5 << 13) | 100)]))
    assert p.vlan == [100] and p.vlan_tci == [(5 << 13) | 100] and p.l3_offset == 18
    assert p.dport == 53
    p = Packet.parse(eth(inner, ETH_IPV4, [(0x88A8, 200), (0x8100, 0x1000 | 300)]))
    assert p.vlan == [200, 300] and p.vlan_tci == [200, 0x1000 | 300]
    assert p.l3_offset == 22 and p.src == S4
    p = Packet.parse(eth(inner, ETH_IPV4, [(0x9100, 7), (0x8100, 8)]))
    assert p.vlan == [7, 8]


def test_ipv4_options_move_the_transport_header() -> None:
    router_alert = bytes([0x94, 0x04, 0x00, 0x00])
    frame = eth(ipv4(udp(1, 2, b"x"), 17, S4, D4, options=router_alert + b"\x01\x00"), ETH_IPV4)
    p = Packet.parse(frame)
    assert p.ip_options == router_alert + b"\x01\x00\x00\x00"
    assert p.l4_offset == 14 + 28 and (p.sport, p.dport) == (1, 2)


def test_ipv4_fragments() -> None:
    seg = udp(7000, 4789, b"A" * 40, length=8 + 80)
    first = Packet.parse(eth(ipv4(seg, 17, S4, D4, flags=0b001, ident=9), ETH_IPV4))
    assert first.is_fragment and first.more_fragments and first.frag_offset == 0
    assert (first.sport, first.dport) == (7000, 4789)  # the first fragment has the header
    rest = Packet.parse(eth(ipv4(b"B" * 40, 17, S4, D4, frag_offset=48, ident=9), ETH_IPV4))
    assert rest.is_fragment and not rest.more_fragments and rest.frag_offset == 48
    assert rest.sport is None and rest.dport is None and rest.proto == 17
    assert rest.flow == (S4, D4, None, None, 17)
    assert rest.payload == b"B" * 40
    assert rest.verify_checksums()  # only the header checksum is checkable


def test_ipv4_tiny_first_fragment_is_an_error() -> None:
    frame = eth(ipv4(b"\x00" * 8, 6, S4, D4, flags=0b001), ETH_IPV4)
    with pytest.raises(PacketError, match="tcp: truncated"):
        Packet.parse(frame)


def test_ipv6_extension_chain_to_udp() -> None:
    u = udp(53, 5353, b"dns", pseudo=pseudo6(S6, D6, 17, 11))
    chain = (
        ext(43, b"\x01\x04\x00\x00\x00\x00")  # hop-by-hop with PadN, then routing
        + ext(44, b"\x00\x00" + b"\x00" * 4)  # routing type 0 segments left 0, then fragment
        + frag6(60, 0, True, 0xABCDEF)  # first fragment, then destination options
        + ext(17, b"")
    )
    p = Packet.parse(
        eth(ipv6(chain + u, 0, S6, D6, hop_limit=3, tclass=0x2C, flow_label=7), ETH_IPV6)
    )
    assert (p.version, p.src, p.dst, p.proto, p.sport, p.dport) == (6, S6, D6, 17, 53, 5353)
    assert p.ext_headers == [0, 43, 44, 60]
    assert p.is_fragment and p.more_fragments and p.ident == 0xABCDEF
    assert (p.ttl, p.tos, p.flow_label) == (3, 0x2C, 7)
    assert p.l4_offset == 14 + 40 + len(chain)
    assert p.payload == b"dns"
    assert p.length == 40 + len(chain) + len(u)


def test_ipv6_non_first_fragment_has_no_ports() -> None:
    body = frag6(6, 1232, False, 5) + b"\x00" * 24
    p = Packet.parse(ipv6(body, 44, S6, D6), link="ip")
    assert p.proto == 6 and p.sport is None and p.is_fragment and p.frag_offset == 1232
    assert p.ext_headers == [44]


def test_ipv6_ah_and_esp() -> None:
    seg = tcp(1000, 22, pseudo=pseudo6(S6, D6, 6, 20))
    ah = bytes([6, 4, 0, 0]) + b"\x00" * 20  # AH: payload len 4 -> (4 + 2) * 4 = 24 bytes
    p = Packet.parse(ipv6(ah + seg, 51, S6, D6), link="ip")
    assert p.proto == 6 and p.dport == 22 and p.ext_headers == [51]
    esp = b"\x00\x00\x01\x00" + b"\x00" * 20
    p = Packet.parse(ipv6(esp, 50, S6, D6), link="ip")
    assert p.proto == 50 and p.sport is None


def test_icmp_and_icmpv6() -> None:
    m = icmp(8, 0, 0x00010002, b"ping")
    p = Packet.parse(eth(ipv4(m, 1, S4, D4), ETH_IPV4))
    assert (p.proto, p.icmp_type, p.icmp_code, p.sport, p.dport) == (1, 8, 0, None, None)
    assert p.verify_checksums(strict=True)
    m6 = icmp(128, 0, 1, b"ping6", pseudo=pseudo6(S6, D6, 58, 13))
    p = Packet.parse(eth(ipv6(m6, 58, S6, D6), ETH_IPV6))
    assert (p.proto, p.icmp_type, p.icmp_code) == (58, 128, 0)
    assert p.verify_checksums(strict=True)
    bad = bytearray(eth(ipv6(m6, 58, S6, D6), ETH_IPV6))
    bad[-1] ^= 1
    assert not Packet.parse(bad).verify_checksums()


def test_arp_is_not_ip_and_not_an_error() -> None:
    frame = eth(bytes(28), ETH_ARP)
    p = Packet.parse(frame)
    assert p.version is None and p.src is None and p.proto is None and p.sport is None
    assert p.ethertype == ETH_ARP and p.length == len(frame)
    assert p.flow == (None, None, None, None, None)
    assert p.verify_checksums()


def test_raw_ip_and_sll_links() -> None:
    dgram = ipv4(udp(1, 2), 17, S4, D4)
    p = Packet.parse(dgram, link="ip")
    assert p.l3_offset == 0 and p.dport == 2 and p.eth_src is None and p.ethertype == ETH_IPV4
    p6 = Packet.parse(ipv6(udp(3, 4), 17, S6, D6), "ip")
    assert p6.version == 6 and p6.dport == 4
    sll = bytes([0, 0, 0, 1, 0, 6]) + MAC_A + b"\x00\x00" + ETH_IPV6.to_bytes(2, "big")
    p = Packet.parse(sll + ipv6(udp(3, 4), 17, S6, D6), link="sll")
    assert p.l3_offset == 16 and p.sport == 3 and p.link == "sll"


def test_link_padding_is_ignored() -> None:
    dgram = ipv4(udp(1, 2, b"ab"), 17, S4, D4)
    frame = eth(dgram, ETH_IPV4) + b"\xee" * 20
    p = Packet.parse(frame)
    assert p.length == len(dgram) and p.payload == b"ab" and p.verify_checksums()


def test_bytes_like_inputs() -> None:
    frame = tcp4_frame()
    for data in (bytearray(frame), memoryview(frame), np.frombuffer(frame, np.uint8)):
        assert Packet.parse(data).flow == Packet.parse(frame).flow
    with pytest.raises(PacketError):
        Packet.parse("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "link", "message"),
    [
        (b"\x00" * 10, "ethernet", "ethernet: truncated: need 14 bytes, have 10"),
        (eth(b"", 0x8100)[:-2] + b"\x81\x00\x00", "ethernet", "vlan: truncated"),
        (eth(b"", ETH_IPV4, [(0x8100, 1)] * 9), "ethernet", "vlan: too many"),
        (b"\x50" + bytes(30), "ip", "ip: bad version 5"),
        (b"", "ip", "ip: truncated"),
        (ipv4(b"", 6)[:12], "ip", "ipv4: truncated: need 20 bytes, have 12"),
        (ipv4(b"", 6, ihl=4), "ip", "ipv4: bad header length 16"),
        (ipv4(b"abc", 17, total_length=60), "ip", "ipv4: truncated: need 60 bytes, have 23"),
        (ipv4(b"abc", 17, total_length=10), "ip", "ipv4: bad length field 10"),
        (ipv4(b"", 17, options=b"\x07\x09\x00\x00"), "ip", "ipv4: malformed option"),
        (ipv4(tcp(1, 2, data_offset=4), 6), "ip", "tcp: bad header length 16"),
        (ipv4(tcp(1, 2, data_offset=8), 6), "ip", "tcp: truncated: need 32 bytes, have 20"),
        (ipv4(udp(1, 2, length=4), 17), "ip", "udp: bad header length 4"),
        (ipv4(udp(1, 2, length=30), 17), "ip", "udp: truncated"),
        (ipv4(icmp(8, 0)[:6], 1), "ip", "icmp: truncated"),
        (ipv6(b"", 17)[:39], "ip", "ipv6: truncated: need 40 bytes"),
        (ipv6(icmp(128, 0)[:4], 58), "ip", "icmpv6: truncated"),
        (
            ipv6(ext(0, b"") + ext(17, b""), 60),
            "ip",
            "ipv6: header out of order: type 0 not allowed",
        ),
        (ipv6(bytes([17, 0, 1, 9, 0, 0, 0, 0]), 0), "ip", "ipv6: malformed option"),
        (ipv6(bytes([17, 3]) + bytes(6), 0), "ip", "ipv6: truncated: need 72 bytes"),
        (ipv6(ext(60, b"") * 17 + udp(1, 2), 60), "ip", "ipv6: too many stacked headers"),
    ],
)
def test_malformed_input_names_the_layer(frame: bytes, link: str, message: str) -> None:
    with pytest.raises(PacketError, match=message.replace("(", r"\(")) as info:
        Packet.parse(frame, link)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MeshcoreError)


def test_every_truncation_of_a_valid_frame_fails_cleanly() -> None:
    frame = eth(ipv6(ext(6, b"") + tcp(1, 2, b"payload"), 0), ETH_IPV6, [(0x8100, 5)])
    Packet.parse(frame)
    for cut in range(len(frame)):
        with pytest.raises(PacketError):
            Packet.parse(frame[:cut])


def test_checksum_errors() -> None:
    frame = bytearray(tcp4_frame())
    assert Packet.parse(frame).verify_checksums(strict=True)
    frame[-1] ^= 0xFF
    p = Packet.parse(frame)
    assert not p.verify_checksums()
    with pytest.raises(PacketError, match=r"tcp: bad checksum 0x[0-9a-f]{4} \(expected 0x"):
        p.verify_checksums(strict=True)
    frame = bytearray(tcp4_frame())
    frame[14 + 8] = 1  # TTL changed without fixing the header checksum
    with pytest.raises(PacketError, match="ipv4: bad checksum"):
        Packet.parse(frame).verify_checksums(strict=True)
    # A zero UDP checksum means "none" over IPv4 and is invalid over IPv6 (RFC 8200 8.1).
    assert Packet.parse(ipv4(udp(1, 2, b"x"), 17), "ip").verify_checksums()
    assert not Packet.parse(ipv6(udp(1, 2, b"x"), 17), "ip").verify_checksums()


def test_unknown_link_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown link type 'token-ring'"):
        Packet.parse(tcp4_frame(), link="token-ring")


def test_packet_is_immutable() -> None:
    p = Packet.parse(tcp4_frame())
    with pytest.raises(AttributeError):
        p.sport = 1  # type: ignore[misc]
    assert meshcore.Packet is Packet


def test_sll2_link() -> None:
    # SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 address bytes.
    hdr = struct.pack("!HHIHBB8s", ETH_IPV4, 0, 3, 1, 4, 6, MAC_A + b"\x00\x00")
    p = Packet.parse(hdr + ipv4(udp(7, 8), 17, S4, D4), link="sll2")
    assert (p.l3_offset, p.sport, p.dport, p.link, p.eth_src) == (20, 7, 8, "sll2", None)
    with pytest.raises(PacketError, match="sll: truncated: need 20 bytes"):
        Packet.parse(hdr[:19], link="sll2")


def test_snapped_capture_keeps_header_fields() -> None:
    seg = tcp(40000, 443, b"x" * 500, pseudo=pseudo4(S4, D4, 6, 520))
    frame = eth(ipv4(seg, 6, S4, D4), ETH_IPV4)
    with pytest.raises(PacketError, match="ipv4: truncated: need 540 bytes, have 82"):
        Packet.parse(frame[:96])
    (row,) = meshcore.parse_batch(frame[:96], [0, 96])
    assert meshcore.describe_error(int(row["error"])) == "ipv4: truncated"
    assert (row["version"], row["sport"], row["dport"], row["length"]) == (4, 40000, 443, 540)
    assert bytes(row["src"][:4]) == bytes([192, 0, 2, 1])
    frame6 = eth(ipv6(ext(17, b"") + udp(53, 99, b"y" * 300), 0, S6, D6), ETH_IPV6)
    (row,) = meshcore.parse_batch(frame6[:80], [0, 80])
    assert meshcore.describe_error(int(row["error"])) == "ipv6: truncated"
    assert (row["version"], row["proto"], row["sport"], row["dport"]) == (6, 17, 53, 99)


def test_udp_length_bounds_the_datagram() -> None:
    # RFC 768: a UDP length shorter than the IP payload leaves trailing bytes outside the
    # datagram; the checksum and the payload stop at the UDP length.
    u = udp(1, 2, b"hi", pseudo=pseudo4(S4, D4, 17, 10))
    p = Packet.parse(eth(ipv4(u + b"TRAILR", 17, S4, D4), ETH_IPV4))
    assert p.payload == b"hi" and p.verify_checksums(strict=True) and p.length == 36


def test_source_routed_checksums_use_the_final_destination() -> None:
    final = "203.0.113.9"
    lsrr = bytes([131, 11, 4]) + bytes([10, 0, 0, 1]) + bytes(ipaddress.ip_address(final).packed)
    seg = udp(1, 2, b"route", pseudo=pseudo4(S4, final, 17, 13))
    p = Packet.parse(eth(ipv4(seg, 17, S4, D4, options=lsrr + b"\x00"), ETH_IPV4))
    assert p.verify_checksums(strict=True)
    final6 = "2001:db8::99"
    srh = bytes([4, 1, 1, 0, 0, 0]) + ipaddress.ip_address(final6).packed + b"\x00" * 16
    seg6 = udp(1, 2, b"srh", pseudo=pseudo6(S6, final6, 17, 11))
    p6 = Packet.parse(ipv6(ext(17, srh) + seg6, 43, S6, D6), "ip")
    assert p6.ext_headers == [43] and p6.verify_checksums(strict=True)


_groups = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0DB8, 0xABC]), min_size=8, max_size=8)


@given(_groups, st.sampled_from(["ip", "ethernet"]))
def test_address_text_matches_ipaddress(groups: list[int], link: str) -> None:
    a6 = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
    a4 = ipaddress.IPv4Address(bytes(g & 0xFF for g in groups[:4]))
    p6 = Packet.parse(build_packet(a6, a6, link=link), link)
    if a6.ipv4_mapped is None:
        assert p6.src == str(a6)
    else:  # RFC 5952 section 5 writes mapped addresses as ::ffff:a.b.c.d
        assert p6.src == f"::ffff:{a6.ipv4_mapped}"
    assert ipaddress.ip_address(p6.dst or "") == a6
    assert Packet.parse(build_packet(a4, a4, link=link), link).src == str(a4)
