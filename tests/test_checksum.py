"""checksum, decrement_ttl and mark_ce against an independent RFC 1071 implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import (
    Packet,
    PacketError,
    build_packet,
    checksum,
    decrement_ttl,
    mark_ce,
    update_checksums,
)
from wirebytes import ETH_IPV4, eth, inet_sum, ipv4, ipv6, udp


@given(st.binary(max_size=2000))
def test_checksum_matches_reference(data: bytes) -> None:
    assert checksum(data) == inet_sum(data)


def test_checksum_known_vector() -> None:
    # RFC 1071 section 3 example: the folded sum of these words is 0xddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert checksum(np.frombuffer(bytes.fromhex("0001f203f4f5f6f7"), np.uint8)) == 0x220D


@settings(max_examples=500)
@given(
    ttl=st.integers(1, 255),
    tos=st.integers(0, 255),
    ident=st.integers(0, 65535),
    options=st.sampled_from([b"", b"\x01\x01\x01\x01", b"\x94\x04\x00\x00"]),
    payload=st.binary(max_size=40),
)
def test_ttl_decrement_patches_the_checksum(
    ttl: int, tos: int, ident: int, options: bytes, payload: bytes
) -> None:
    frame = bytearray(
        eth(ipv4(udp(1, 2, payload), 17, ttl=ttl, tos=tos, ident=ident, options=options), ETH_IPV4)
    )
    assert decrement_ttl(frame, 14) == ttl - 1
    hl = (frame[14] & 0x0F) * 4
    header = bytes(frame[14 : 14 + hl])
    assert header[8] == ttl - 1
    assert inet_sum(header) == 0  # the header with its checksum folds to all ones
    recomputed = inet_sum(header[:10] + b"\x00\x00" + header[12:])
    assert int.from_bytes(header[10:12], "big") == recomputed
    assert Packet.parse(frame).verify_checksums(strict=True)


def test_hop_limit_and_errors() -> None:
    dgram = bytearray(ipv6(udp(1, 2), 17, hop_limit=2))
    assert decrement_ttl(dgram) == 1
    assert decrement_ttl(memoryview(dgram)) == 0
    with pytest.raises(PacketError, match="already 0"):
        decrement_ttl(dgram)
    assert dgram[7] == 0
    with pytest.raises(PacketError, match="writable"):
        decrement_ttl(bytes(ipv4(b"", 17)))
    with pytest.raises(PacketError, match="ipv4: truncated"):
        decrement_ttl(bytearray(ipv4(b"", 17)[:12]))
    with pytest.raises(PacketError):
        decrement_ttl(bytearray(10), 40)
    with pytest.raises(PacketError, match="l3_offset must be in"):
        decrement_ttl(bytearray(10), -1)
    with pytest.raises(PacketError, match="l3_offset must be in"):
        decrement_ttl(bytearray(10), 2**64 - 1)


def test_ttl_decrement_needs_only_the_header() -> None:
    # A router may hold just the headers (or a snapped frame): the header is enough.
    frame = bytearray(eth(ipv4(udp(1, 2, b"x" * 100), 17, ttl=9), ETH_IPV4)[:34])
    assert decrement_ttl(frame, 14) == 8
    assert inet_sum(bytes(frame[14:34])) == 0
    assert decrement_ttl(memoryview(frame)[14:]) == 7


@settings(max_examples=300, deadline=None)
@given(
    v6=st.booleans(),
    proto=st.sampled_from(["tcp", "udp", "icmp"]),
    payload=st.binary(max_size=64),
    new_src=st.integers(0, 2**32 - 1),
    new_port=st.integers(0, 65535),
    link=st.sampled_from(["ethernet", "ip"]),
)
def test_update_checksums_after_nat(
    v6: bool, proto: str, payload: bytes, new_src: int, new_port: int, link: str
) -> None:
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("10.0.0.1", "10.0.0.2")
    frame = bytearray(
        build_packet(src, dst, proto=proto, sport=1, dport=2, payload=payload, link=link)
    )
    p = Packet.parse(frame, link)
    # Rewrite the source address (and port) the way a NAT does, checksums untouched.
    at = p.l3_offset + (8 if v6 else 12)
    frame[at : at + 4] = new_src.to_bytes(4, "big")
    if p.sport is not None:
        frame[p.l4_offset : p.l4_offset + 2] = new_port.to_bytes(2, "big")
    assert update_checksums(frame, link) == (1 if v6 else 2)
    fixed = Packet.parse(frame, link)
    assert fixed.verify_checksums(strict=True)
    # The same bytes built from scratch with the rewritten fields carry the same checksums.
    new = fixed.src
    assert new is not None
    expect = build_packet(
        new,
        dst,
        proto=proto,
        sport=new_port if p.sport is not None else 1,
        dport=2,
        payload=payload,
        link=link,
    )
    assert bytes(frame) == expect


def test_update_checksums_errors() -> None:
    with pytest.raises(PacketError, match="writable"):
        update_checksums(build_packet("10.0.0.1", "10.0.0.2"))
    with pytest.raises(PacketError, match="ipv4: truncated"):
        update_checksums(bytearray(build_packet("10.0.0.1", "10.0.0.2")[:30]))
    assert update_checksums(bytearray(eth(bytes(28), 0x0806))) == 0


@settings(max_examples=300)
@given(
    tos=st.integers(0, 255),
    ident=st.integers(0, 65535),
    options=st.sampled_from([b"", b"\x01\x01\x01\x01", b"\x94\x04\x00\x00"]),
)
def test_mark_ce_ipv4(tos: int, ident: int, options: bytes) -> None:
    frame = bytearray(
        eth(ipv4(udp(1, 2, b"x"), 17, tos=tos, ident=ident, options=options), ETH_IPV4)
    )
    before = bytes(frame)
    ect = tos & 3 != 0
    assert mark_ce(frame, 14) is ect
    hl = (frame[14] & 0x0F) * 4
    header = bytes(frame[14 : 14 + hl])
    if ect:
        assert header[1] == tos | 3  # DSCP kept, ECN = CE
        assert inet_sum(header) == 0  # the incrementally patched checksum is valid
        changed = [i for i, (a, b) in enumerate(zip(before, frame, strict=True)) if a != b]
        assert set(changed) <= {15, 24, 25}  # TOS and the checksum, nothing else
        assert Packet.parse(frame).ecn == 3
    else:
        assert bytes(frame) == before  # Not-ECT: untouched, the queue drops it instead


@pytest.mark.parametrize(("ecn", "marked"), [(0, False), (1, True), (2, True), (3, True)])
def test_mark_ce_ipv6(ecn: int, marked: bool) -> None:
    dgram = bytearray(ipv6(udp(1, 2), 17))
    dgram[1] = (dgram[1] & 0xCF) | (ecn << 4)  # traffic class low bits = ECN
    dgram[0] = (dgram[0] & 0xF0) | 0xB  # DSCP bits in the high nibble of the traffic class
    before = bytes(dgram)
    assert mark_ce(memoryview(dgram)) is marked
    p = Packet.parse(bytes(dgram), link="ip")
    assert p.ecn == (3 if marked else 0)
    assert dgram[0] == before[0] and dgram[2:] == before[2:]  # flow label and the rest kept


def test_mark_ce_errors() -> None:
    with pytest.raises(PacketError, match="writable"):
        mark_ce(bytes(ipv4(b"", 17, tos=1)))
    with pytest.raises(PacketError, match="ipv4: truncated"):
        mark_ce(bytearray(ipv4(b"", 17, tos=1)[:12]))
    with pytest.raises(PacketError):
        mark_ce(bytearray(b"\x50" + bytes(30)))
