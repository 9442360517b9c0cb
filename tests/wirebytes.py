"""Hand-built packet bytes for tests, written from the RFCs with struct only.

Nothing here calls meshcore, so the parser is checked against an independent construction.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def inet_sum(data: bytes) -> int:
    """RFC 1071 checksum, the slow obvious way."""
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def eth(payload: bytes, ethertype: int, tags: list[tuple[int, int]] | None = None) -> bytes:
    """Ethernet II header; ``tags`` are (tpid, tci), outermost first."""
    hdr = MAC_B + MAC_A
    for tpid, tci in tags or []:
        hdr += struct.pack("!HH", tpid, tci)
    return hdr + struct.pack("!H", ethertype) + payload


def ipv4(
    payload: bytes,
    proto: int,
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0x1234,
    flags: int = 0,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
    ihl: int | None = None,
) -> bytes:
    """IPv4 header with a correct checksum; ``frag_offset`` in bytes, ``flags`` 0b(0,DF,MF)."""
    opts = options + b"\x00" * (-len(options) % 4)
    hl = 20 + len(opts)
    tl = hl + len(payload) if total_length is None else total_length
    vihl = 0x40 | ((hl // 4) if ihl is None else ihl)
    hdr = (
        struct.pack(
            "!BBHHHBBH4s4s",
            vihl,
            tos,
            tl,
            ident,
            (flags << 13) | (frag_offset // 8),
            ttl,
            proto,
            0,
            addr(src),
            addr(dst),
        )
        + opts
    )
    csum = inet_sum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def ipv6(
    payload: bytes,
    next_header: int,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    *,
    hop_limit: int = 64,
    tclass: int = 0,
    flow_label: int = 0,
) -> bytes:
    w0 = (6 << 28) | (tclass << 20) | flow_label
    return (
        struct.pack("!IHBB16s16s", w0, len(payload), next_header, hop_limit, addr(src), addr(dst))
        + payload
    )


def ext(next_header: int, body: bytes) -> bytes:
    """A generic IPv6 extension header (hop-by-hop, routing, destination options)."""
    raw = bytes([next_header, 0]) + body
    raw += b"\x00" * (-len(raw) % 8)
    return bytes([next_header, len(raw) // 8 - 1]) + raw[2:]


def frag6(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def pseudo4(src: str, dst: str, proto: int, length: int) -> bytes:
    return addr(src) + addr(dst) + struct.pack("!BBH", 0, proto, length)


def pseudo6(src: str, dst: str, proto: int, length: int) -> bytes:
    return addr(src) + addr(dst) + struct.pack("!I3xB", length, proto)


def tcp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    flags: int = 0x18,
    seq: int = 1,
    ack: int = 2,
    window: int = 8192,
    options: bytes = b"",
    pseudo: bytes | None = None,
    data_offset: int | None = None,
) -> bytes:
    opts = options + b"\x00" * (-len(options) % 4)
    off = (20 + len(opts)) // 4 if data_offset is None else data_offset
    hdr = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (off << 12) | flags, window, 0, 0)
    seg = hdr + opts + payload
    if pseudo is not None:
        c = inet_sum(pseudo + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return seg


def udp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    pseudo: bytes | None = None,
    length: int | None = None,
) -> bytes:
    ln = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    if pseudo is not None:
        c = inet_sum(pseudo + seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return seg


def icmp(typ: int, code: int, rest: int = 0, payload: bytes = b"", pseudo: bytes = b"") -> bytes:
    msg = struct.pack("!BBHI", typ, code, 0, rest) + payload
    c = inet_sum(pseudo + msg)
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def tcp4_frame(
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    sport: int = 40000,
    dport: int = 443,
    payload: bytes = b"hello",
    ttl: int = 64,
) -> bytes:
    seg = tcp(sport, dport, payload, pseudo=pseudo4(src, dst, 6, 20 + len(payload)))
    return eth(ipv4(seg, 6, src, dst, ttl=ttl), ETH_IPV4)
