"""checksum and decrement_ttl against an independent RFC 1071 implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import Packet, PacketError, checksum, decrement_ttl
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
