"""Wire-parsing benchmark: meshcore against the peers a Python user would otherwise reach for.

Run as ``python benches/bench_wire.py [--packets N] [--repeat R] [--pcap PATH]``.

Sections (all measured in one run; only ratios between rows of the same run mean anything):

1. Single-packet parsing from Python: ``meshcore.Packet.parse`` vs ``dpkt.ethernet.Ethernet`` vs a
   hand-written ``struct.unpack_from`` parser, parse only and parse + read the 5-tuple, on
   Ethernet/IPv4/TCP frames and on a realistic mix (IPv4/IPv6, TCP/UDP, 802.1Q tags).
2. Batch parsing: ``meshcore.parse_batch(buffer, offsets)`` vs a numpy-vectorised parser over the
   same buffer + offsets, after checking that both produce the same fields on every row.
3. Capture files (with ``--pcap PATH``, or when ``benches/data/sample.pcap`` exists):
   ``meshcore.io.read_pcap(path).parse()`` vs ``dpkt.pcap.Reader`` + ``dpkt.ethernet.Ethernet``.

Timings are best-of-R with ``time.perf_counter``; the implementations of a section run round-robin
within each repetition so that a burst of machine noise hits all of them, and the garbage collector
is paused while a timed loop runs (as ``timeit`` does). Every target is reported as PASS or MISS;
the script exits 0 either way. It is a report, not a test.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import platform
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import numpy.typing as npt

import meshcore
from meshcore import PACKET_DTYPE, Packet, build_packet, parse_batch
from meshcore.io import read_pcap

FiveTuple = tuple[bytes | None, bytes | None, int | None, int | None, int | None]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

DEFAULT_PCAP = Path(__file__).resolve().parent / "data" / "sample.pcap"

# --------------------------------------------------------------------------------------------
# Frame generation
# --------------------------------------------------------------------------------------------

#: Frame kinds and their weights (percent) in each data set.
ETH_IPV4_TCP: dict[str, int] = {"v4tcp": 100}
SINGLE_MIX: dict[str, int] = {
    "v4tcp": 40,
    "v4udp": 15,
    "v6tcp": 15,
    "v6udp": 10,
    "vlan_v4tcp": 10,
    "vlan_v4udp": 4,
    "vlan_v6tcp": 4,
    "vlan_v6udp": 2,
}
BATCH_MIX: dict[str, int] = {
    "v4tcp": 35,
    "v4udp": 15,
    "v6tcp": 12,
    "v6udp": 8,
    "vlan_v4tcp": 8,
    "vlan_v4udp": 3,
    "vlan_v6tcp": 3,
    "vlan_v6udp": 2,
    "v4opt_tcp": 4,
    "v4frag_first": 2,
    "v4frag_later": 2,
    "v4icmp": 2,
    "v6icmp": 2,
    "arp": 2,
}

MAX_FRAME = 200  # bytes; frames are headers (42..78 bytes) plus a payload up to this size
MIN_ETH_FRAME = 60  # a received Ethernet frame without FCS is padded to at least this


#: Frames per call in the polling-loop row of the batch benchmark.
POLL = 4096


def _v4(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{1 + rng.randrange(254)}"


def _v6(rng: random.Random) -> str:
    return (
        f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{1 + rng.randrange(65535):x}"
    )


def _arp(rng: random.Random) -> bytes:
    mac = bytes([2, 0, 0, 0, rng.randrange(256), rng.randrange(256)])
    body = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, bytes([10, 0, 0, 1]), b"\0" * 6, b"\n\0\0\2"
    )
    frame = b"\xff" * 6 + mac + b"\x08\x06" + body
    return frame + b"\0" * (MIN_ETH_FRAME - len(frame))


def make_frame(kind: str, rng: random.Random) -> bytes:
    """One valid frame of the given kind with random addresses, ports, TTL and payload size."""
    if kind == "arp":
        return _arp(rng)
    vlan: list[int] | None = None
    if kind.startswith("vlan_"):
        vlan = [rng.randrange(1, 4095) | (rng.randrange(8) << 13)]
        kind = kind[5:]
    v6 = kind.startswith("v6")
    src, dst = (_v6(rng), _v6(rng)) if v6 else (_v4(rng), _v4(rng))
    header = 14 + (4 if vlan else 0) + (40 if v6 else 20)
    kw: dict[str, Any] = {}
    if kind.endswith("tcp"):
        kw = {"proto": "tcp", "tcp_flags": rng.choice(["S", "SA", "A", "PA", "FA"])}
        header += 20
    elif kind.endswith("udp"):
        kw = {"proto": "udp"}
        header += 8
    elif kind.endswith("icmp"):
        kw = {"proto": "icmp"}
        header += 8
    if kind == "v4opt_tcp":
        # Record-route style option, 8 bytes: IHL 7.
        kw["ip_options"] = bytes([7, 7, 4, 0, 0, 0, 0, 0])
        header += 8
    elif kind == "v4frag_first":
        kw = {"proto": "udp", "more_fragments": True, "ident": rng.randrange(65536)}
        header += 8
    elif kind == "v4frag_later":
        # Non-first fragment: protocol 17 but the payload is the middle of a UDP datagram.
        kw = {
            "proto": 17,
            "frag_offset": 8 * rng.randrange(1, 180),
            "more_fragments": rng.random() < 0.5,
            "ident": rng.randrange(65536),
        }
    payload = rng.randbytes(rng.randrange(0, MAX_FRAME - header + 1))
    if kind == "v4frag_later" and len(payload) < 8:
        payload += b"\0" * 8
    ports: dict[str, Any] = {}
    if kw.get("proto") in ("tcp", "udp"):
        ports = {"sport": rng.randrange(1, 65536), "dport": rng.choice([53, 80, 443, 8080, 9000])}
    frame = build_packet(
        src, dst, payload=payload, vlan_tci=vlan, ttl=rng.randrange(1, 256), **ports, **kw
    )
    if kind == "v4frag_first":
        # The UDP length of a first fragment covers the reassembled datagram, not this frame.
        l4 = 14 + (4 if vlan else 0) + 20
        struct.pack_into("!H", buf := bytearray(frame), l4 + 4, len(frame) - l4 + 1480)
        frame = bytes(buf)
    if len(frame) < MIN_ETH_FRAME and rng.random() < 0.5:
        frame += b"\0" * (MIN_ETH_FRAME - len(frame))  # link padding, as received
    return frame


def make_frames(mix: dict[str, int], n: int, seed: int, pool: int | None = None) -> list[bytes]:
    """``n`` frames drawn from ``mix``; with ``pool``, ``pool`` distinct frames are sampled."""
    rng = random.Random(seed)
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=min(n, pool or n))
    frames = [make_frame(k, rng) for k in kinds]
    if pool is None or pool >= n:
        return frames
    return [frames[i] for i in np.random.default_rng(seed).integers(0, len(frames), n)]


def pack(frames: Sequence[bytes]) -> tuple[bytes, I64]:
    """Frames back to back in one buffer, and the N + 1 offsets."""
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    np.cumsum([len(f) for f in frames], out=offsets[1:])
    return b"".join(frames), offsets


# --------------------------------------------------------------------------------------------
# Single-packet peers
# --------------------------------------------------------------------------------------------

_U16 = struct.Struct("!H").unpack_from
_IPV4 = struct.Struct("!B5xHxB2x4s4s").unpack_from  # v/ihl, flags+frag, proto, src, dst
_IPV6 = struct.Struct("!6xBx16s16s").unpack_from  # next header, src, dst
_PORTS = struct.Struct("!HH").unpack_from


def struct_parse(frame: bytes) -> FiveTuple:
    """The parser a Python user would write: Ethernet, one optional 802.1Q tag, IPv4 (IHL,
    non-first fragments have no ports) or the fixed IPv6 header, TCP / UDP ports."""
    (et,) = _U16(frame, 12)
    off = 14
    if et == 0x8100:
        (et,) = _U16(frame, 16)
        off = 18
    if et == 0x0800:
        vhl, frag, proto, src, dst = _IPV4(frame, off)
        if frag & 0x1FFF:
            return src, dst, None, None, proto
        l4 = off + ((vhl & 0x0F) << 2)
    elif et == 0x86DD:
        proto, src, dst = _IPV6(frame, off)
        l4 = off + 40
    else:
        return None, None, None, None, None
    if proto == 6 or proto == 17:
        sport, dport = _PORTS(frame, l4)
        return src, dst, sport, dport, proto
    return src, dst, None, None, proto


_Ethernet: Any = dpkt.ethernet.Ethernet
_DPKT_IP: tuple[Any, ...] = (dpkt.ip.IP, dpkt.ip6.IP6)
_DPKT_L4: tuple[Any, ...] = (dpkt.tcp.TCP, dpkt.udp.UDP)


def dpkt_tuple(eth: Any) -> FiveTuple:
    """5-tuple of a decoded dpkt Ethernet frame. dpkt strips 802.1Q tags itself (``eth.data`` is
    the IP layer), and ``IP6.p`` is the protocol after any extension headers."""
    ip = eth.data
    if isinstance(ip, _DPKT_IP):
        l4 = ip.data
        if isinstance(l4, _DPKT_L4):
            return ip.src, ip.dst, l4.sport, l4.dport, ip.p
        return ip.src, ip.dst, None, None, ip.p
    return None, None, None, None, None


def meshcore_tuple(p: Packet) -> FiveTuple:
    return p.src_packed, p.dst_packed, p.sport, p.dport, p.proto


# Timed loops. Each returns something derived from its last iteration so nothing is "unused";
# the 5-tuple loops inline the attribute reads, as a user's loop would.


def loop_meshcore_parse(frames: Sequence[bytes]) -> object:
    parse = Packet.parse
    p = None
    for f in frames:
        p = parse(f)
    return p


def loop_meshcore_tuple(frames: Sequence[bytes]) -> object:
    parse = Packet.parse
    t: object = None
    for f in frames:
        p = parse(f)
        t = (p.src, p.dst, p.sport, p.dport, p.proto)
    return t


def loop_meshcore_tuple_packed(frames: Sequence[bytes]) -> object:
    parse = Packet.parse
    t: object = None
    for f in frames:
        p = parse(f)
        t = (p.src_packed, p.dst_packed, p.sport, p.dport, p.proto)
    return t


def loop_meshcore_flow(frames: Sequence[bytes]) -> object:
    parse = Packet.parse
    t: object = None
    for f in frames:
        t = parse(f).flow
    return t


def loop_dpkt_parse(frames: Sequence[bytes]) -> object:
    eth_cls = _Ethernet
    e = None
    for f in frames:
        e = eth_cls(f)
    return e


def loop_dpkt_tuple(frames: Sequence[bytes]) -> object:
    eth_cls = _Ethernet
    ip_types = _DPKT_IP
    l4_types = _DPKT_L4
    t: object = None
    for f in frames:
        ip = eth_cls(f).data
        if isinstance(ip, ip_types):
            l4 = ip.data
            if isinstance(l4, l4_types):
                t = (ip.src, ip.dst, l4.sport, l4.dport, ip.p)
            else:
                t = (ip.src, ip.dst, None, None, ip.p)
        else:
            t = (None, None, None, None, None)
    return t


def loop_struct(frames: Sequence[bytes]) -> object:
    parse = struct_parse
    t: object = None
    for f in frames:
        t = parse(f)
    return t


# --------------------------------------------------------------------------------------------
# Batch peer: numpy
# --------------------------------------------------------------------------------------------


@dataclass
class Columns:
    version: npt.NDArray[np.uint8]
    src: U8  # (N, 16); IPv4 in the first 4 bytes
    dst: U8
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    ttl: npt.NDArray[np.uint8]
    length: npt.NDArray[np.uint32]

    @classmethod
    def zeros(cls, n: int) -> Columns:
        return cls(
            version=np.zeros(n, np.uint8),
            src=np.zeros((n, 16), np.uint8),
            dst=np.zeros((n, 16), np.uint8),
            sport=np.zeros(n, np.uint16),
            dport=np.zeros(n, np.uint16),
            proto=np.zeros(n, np.uint8),
            ttl=np.zeros(n, np.uint8),
            length=np.zeros(n, np.uint32),
        )


COMPARED = ("version", "src", "dst", "sport", "dport", "proto", "ttl", "length")

#: No load of the numpy peer reaches further than this past a frame's start (Ethernet 14 + tag 4
#: + IPv4 header up to 60 + ports 4 = 82, rounded up); frames starting closer than this to the
#: end of the buffer are parsed from a zero-padded copy of the buffer's tail.
_MARGIN = 96


def numpy_parse(buffer: bytes, offsets: I64) -> Columns:
    """Vectorised parse of N frames from one buffer and N + 1 offsets: Ethernet with one optional
    802.1Q tag; IPv4 (version and IHL checked, variable header length, non-first fragments have
    no ports) or the fixed IPv6 header; TCP / UDP ports when the transport header fits in the
    datagram. Other EtherTypes give version 0 and zeros.

    Loads are fancy-indexed gathers from ``np.frombuffer(buffer, np.uint8)`` through unaligned
    big-endian 32- and 64-bit views of it (stride one byte), so one gather fetches several
    header fields, which are then sliced out of the gathered words as byte views: 5 gathers for
    every row, 2 more for IPv6 rows. (A one-gather-per-field version of the same logic was ~1.7x
    slower when this was written, so the peer is the stronger of the two.)
    """
    n = offsets.size - 1
    out = Columns.zeros(n)
    starts = offsets[:-1]
    # Rows whose loads stay inside the buffer without clipping, then the few at its very end.
    body = int(np.searchsorted(starts, len(buffer) - _MARGIN, side="right"))
    if body:
        _numpy_rows(buffer, offsets[: body + 1], out, 0)
    if body < n:
        base = int(offsets[body])
        tail = bytes(buffer[base:]) + bytes(_MARGIN)
        _numpy_rows(tail, offsets[body:] - base, out, body)
    return out


def _numpy_rows(buffer: bytes, offsets: I64, out: Columns, lo: int) -> None:
    """Parse ``offsets.size - 1`` frames into ``out`` rows ``lo...``; every frame has at least
    ``_MARGIN`` bytes of ``buffer`` from its start on."""
    u8 = np.frombuffer(buffer, np.uint8)
    size = u8.size
    w32 = np.ndarray((size - 3,), dtype=">u4", buffer=u8, strides=(1,))
    w64 = np.ndarray((size - 7,), dtype=">u8", buffer=u8, strides=(1,))
    start = offsets[:-1]
    end = offsets[1:]
    n = start.size
    hi = lo + n

    def u16s(words: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return words.view(">u2").reshape(n, -1)

    def u8s(words: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return words.view(np.uint8).reshape(n, -1)

    # Ethernet: bytes 12..19 hold the EtherType, and with an 802.1Q tag the TCI and inner type.
    eth = u16s(w64[start + 12])
    tagged = (eth[:, 0] == 0x8100) & (end - start >= 18)
    et = np.where(tagged, eth[:, 2], eth[:, 0])
    et[end - start < 14] = 0
    l3 = start + 14 + (tagged.astype(np.int64) << 2)

    # IP header words: IPv4 bytes 0-7 (version/IHL, length, flags/fragment offset) and 8-15
    # (TTL, protocol, source); IPv6 bytes 0-7 (version, payload length, next header, hop limit)
    # and 8-23 (source).
    h0, h1, h2 = w64[l3], w64[l3 + 8], w64[l3 + 16]
    b0, s0, b1 = u8s(h0), u16s(h0), u8s(h1)
    ver = b0[:, 0] >> 4
    ihl = (b0[:, 0] & 0x0F).astype(np.int64) << 2
    is4 = (et == 0x0800) & (ver == 4) & (ihl >= 20) & (l3 + ihl <= end)
    is6 = (et == 0x86DD) & (ver == 6) & (l3 + 40 <= end)
    ip = is4 | is6

    out.version[lo:hi] = np.where(is4, 4, np.where(is6, 6, 0))
    # A frame that is not IP reports its own length, as meshcore does.
    length = np.where(is4, s0[:, 1], np.where(is6, s0[:, 2].astype(np.int64) + 40, end - start))
    out.length[lo:hi] = length
    proto = np.where(is4, b1[:, 1], np.where(is6, b0[:, 6], 0))
    out.proto[lo:hi] = proto
    out.ttl[lo:hi] = np.where(is4, b1[:, 0], np.where(is6, b0[:, 7], 0))
    later_frag = is4 & ((s0[:, 3] & 0x1FFF) != 0)

    # Addresses. IPv4: source in h1 bytes 4-7, destination in h2 bytes 0-3.
    src32 = out.src[lo:hi].view(">u4")
    dst32 = out.dst[lo:hi].view(">u4")
    src32[:, 0] = np.where(is4, h1.view(">u4").reshape(n, 2)[:, 1], 0)
    dst32[:, 0] = np.where(is4, h2.view(">u4").reshape(n, 2)[:, 0], 0)
    rows6 = np.flatnonzero(is6)
    if rows6.size:
        src64 = out.src[lo:hi].view(">u8")
        dst64 = out.dst[lo:hi].view(">u8")
        at6 = l3[rows6]
        src64[rows6, 0] = h1[rows6]
        src64[rows6, 1] = h2[rows6]
        dst64[rows6, 0] = w64[at6 + 24]
        dst64[rows6, 1] = w64[at6 + 32]

    # Transport ports: TCP needs 20 bytes, UDP 8, inside the datagram and the frame.
    l4 = np.where(is6, l3 + 40, l3 + ihl)
    dgram_end = np.minimum(l3 + np.where(ip, length, 0), end)
    is_tcp, is_udp = proto == 6, proto == 17
    fits = np.where(is_tcp, l4 + 20, l4 + 8) <= dgram_end
    ports = ip & ~later_frag & (is_tcp | is_udp) & fits
    pw = u16s(w32[l4])
    out.sport[lo:hi] = np.where(ports, pw[:, 0], 0)
    out.dport[lo:hi] = np.where(ports, pw[:, 1], 0)


# --------------------------------------------------------------------------------------------
# Timing and reporting
# --------------------------------------------------------------------------------------------


def best_of(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function over ``repeat`` round-robin repetitions."""
    best = dict.fromkeys(fns, float("inf"))
    gc_was_enabled = gc.isenabled()
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
            finally:
                if gc_was_enabled:
                    gc.enable()
            best[name] = min(best[name], dt)
    return best


@dataclass
class Row:
    name: str
    rate: float  # packets per second
    ref: float | None  # the meshcore rate this row is compared with (None: it is the reference)


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:8.2f} M/s"
    return f"{rate / 1e3:8.1f} k/s"


def print_table(title: str, groups: list[tuple[str, list[Row]]]) -> None:
    width = max(len(r.name) for _, rows in groups for r in rows) + 2
    print(f"\n{title}")
    print(f"  {'implementation':<{width}} {'packets/s':>12}  {'meshcore / this':>15}")
    print(f"  {'-' * width} {'-' * 12}  {'-' * 15}")
    for label, rows in groups:
        print(f"  [{label}]")
        for r in rows:
            ratio = "(reference)" if r.ref is None else f"{r.ref / r.rate:.2f}x"
            print(f"  {r.name:<{width}} {fmt_rate(r.rate):>12}  {ratio:>15}")


@dataclass
class Target:
    label: str
    value: float
    goal: float
    unit: str = "x"
    info: bool = False  # shown for context, not one of the stated targets
    strict: bool = False  # value > goal rather than value >= goal

    def line(self) -> str:
        ok = self.value > self.goal if self.strict else self.value >= self.goal
        verdict = ("ok  " if ok else "no  ") if self.info else ("PASS" if ok else "MISS")
        op = ">" if self.strict else ">="
        if self.unit == "x":
            got, want = f"{self.value:.2f}x", f"{op} {self.goal:g}x"
        else:
            got, want = f"{self.value:.1f} {self.unit}", f"{op} {self.goal:g} {self.unit}"
        return f"  {verdict}  {self.label:<64} {got:>10}  (target {want})"


# --------------------------------------------------------------------------------------------
# Section 1: single packets
# --------------------------------------------------------------------------------------------


def check_single(name: str, frames: Sequence[bytes]) -> None:
    """meshcore, dpkt and the struct parser must give the same 5-tuple for every frame, and
    meshcore's text addresses must match its packed ones."""
    bad: list[str] = []
    for i, f in enumerate(frames):
        p = Packet.parse(f)
        m = meshcore_tuple(p)
        d = dpkt_tuple(_Ethernet(f))
        s = struct_parse(f)
        if not (m == d == s):
            bad.append(f"frame {i} ({f.hex()}): meshcore={m} dpkt={d} struct={s}")
        if i % 20 == 0:
            for text, packed in ((p.src, p.src_packed), (p.dst, p.dst_packed)):
                if packed is not None and text != str(ip_address(packed)):
                    bad.append(f"frame {i}: meshcore text {text!r} vs packed {packed.hex()}")
    if bad:
        msg = f"{name}: {len(bad)} disagreements, first: " + "; ".join(bad[:3])
        raise AssertionError(msg)


def bench_single(
    name: str, frames: Sequence[bytes], repeat: int
) -> tuple[dict[str, float], list[tuple[str, list[Row]]]]:
    check_single(name, frames)
    fns: dict[str, Callable[[], object]] = {
        "mc_parse": lambda: loop_meshcore_parse(frames),
        "mc_tuple": lambda: loop_meshcore_tuple(frames),
        "mc_packed": lambda: loop_meshcore_tuple_packed(frames),
        "mc_flow": lambda: loop_meshcore_flow(frames),
        "dpkt_parse": lambda: loop_dpkt_parse(frames),
        "dpkt_tuple": lambda: loop_dpkt_tuple(frames),
        "struct": lambda: loop_struct(frames),
    }
    t = best_of(fns, repeat)
    r = {k: len(frames) / v for k, v in t.items()}
    groups = [
        (
            "parse only",
            [
                Row("meshcore Packet.parse(f)", r["mc_parse"], None),
                Row("dpkt Ethernet(f)", r["dpkt_parse"], r["mc_parse"]),
                Row("struct parser (always yields the 5-tuple)", r["struct"], r["mc_parse"]),
            ],
        ),
        (
            "parse + read 5-tuple",
            [
                Row("meshcore p.src, p.dst (str), sport, dport, proto", r["mc_tuple"], None),
                Row("meshcore p.src_packed, p.dst_packed (bytes), ...", r["mc_packed"], None),
                Row("meshcore p.flow (str addresses)", r["mc_flow"], None),
                Row(
                    "dpkt Ethernet(f) + ip.src/dst, l4 ports, ip.p", r["dpkt_tuple"], r["mc_tuple"]
                ),
                Row("struct parser (bytes addresses)", r["struct"], r["mc_tuple"]),
            ],
        ),
    ]
    return r, groups


# --------------------------------------------------------------------------------------------
# Section 2: batches
# --------------------------------------------------------------------------------------------


def check_batch(name: str, buffer: bytes, offsets: I64) -> None:
    """The numpy peer and meshcore must agree on every compared field of every row."""
    rows = parse_batch(buffer, offsets)
    errors = np.flatnonzero(rows["error"])
    if errors.size:
        i = int(errors[0])
        frame = buffer[offsets[i] : offsets[i + 1]]
        code = int(rows["error"][i])
        raise AssertionError(
            f"{name}: meshcore flagged {errors.size} valid frames as errors, first row {i} "
            f"({meshcore.describe_error(code)!r}): {frame.hex()}"
        )
    peer = numpy_parse(buffer, offsets)
    problems: list[str] = []
    for field in COMPARED:
        mine = rows[field]
        theirs = getattr(peer, field)
        diff = mine != theirs
        if diff.ndim == 2:
            diff = diff.any(axis=1)
        where = np.flatnonzero(diff)
        if where.size:
            i = int(where[0])
            frame = buffer[offsets[i] : offsets[i + 1]]
            problems.append(
                f"{field}: {where.size} rows differ, first row {i}: meshcore={mine[i]!r} "
                f"numpy={theirs[i]!r} frame={frame.hex()}"
            )
    if problems:
        raise AssertionError(f"{name}: numpy peer and meshcore disagree: " + "; ".join(problems))


def bench_batch(name: str, buffer: bytes, offsets: I64, repeat: int) -> dict[str, float]:
    check_batch(name, buffer, offsets)
    n = offsets.size - 1
    out = np.zeros(n, dtype=PACKET_DTYPE)  # reused across calls, as a polling loop would
    # A router polls a few thousand frames at a time: new rows per call, from malloc's free lists.
    chunks = [offsets[i : i + POLL + 1] for i in range(0, n, POLL)]

    def polled() -> None:
        for c in chunks:
            parse_batch(buffer, c)

    t = best_of(
        {
            "mc": lambda: parse_batch(buffer, offsets),
            "mc_out": lambda: parse_batch(buffer, offsets, out=out),
            "mc_poll": polled,
            "numpy": lambda: numpy_parse(buffer, offsets),
        },
        repeat,
    )
    return {k: n / v for k, v in t.items()}


# --------------------------------------------------------------------------------------------
# Section 3: capture files
# --------------------------------------------------------------------------------------------


def _open_capture(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _dpkt_decoder(linktype: int) -> Callable[[bytes], Any] | None:
    decoder: Callable[[bytes], Any]
    if linktype == 1:
        decoder = _Ethernet
        return decoder
    if linktype == 113:
        decoder = dpkt.sll.SLL
        return decoder
    if linktype in (12, 101):

        def raw_ip(buf: bytes) -> Any:
            return dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)

        return raw_ip
    return None


def dpkt_read(path: Path) -> int:
    """Iterate a capture with dpkt (pcap or pcapng) and decode every record + its 5-tuple."""
    n = 0
    with _open_capture(path) as fh:
        head = fh.read(4)
        fh.seek(0)
        reader: Any = (
            dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        )
        decode = _dpkt_decoder(reader.datalink())
        if decode is None:
            raise ValueError(f"dpkt decoder for link type {reader.datalink()} not wired up")
        ip_types, l4_types = _DPKT_IP, _DPKT_L4
        for _ts, buf in reader:
            pkt = decode(buf)
            ip = pkt if isinstance(pkt, ip_types) else pkt.data
            if isinstance(ip, ip_types):
                l4 = ip.data
                if isinstance(l4, l4_types):
                    _ = (ip.src, ip.dst, l4.sport, l4.dport, ip.p)
            n += 1
    return n


def meshcore_read(path: Path) -> int:
    return len(read_pcap(path).parse())


def bench_pcap(path: Path, repeat: int) -> list[tuple[str, list[Row]]] | str:
    try:
        n = meshcore_read(path)
        n_dpkt = dpkt_read(path)
    except Exception as e:  # a report: say why the section is skipped rather than fail
        return f"skipped: {type(e).__name__}: {e}"
    if n != n_dpkt:
        return f"skipped: meshcore read {n} records, dpkt {n_dpkt}"
    t = best_of({"mc": lambda: meshcore_read(path), "dpkt": lambda: dpkt_read(path)}, repeat)
    mc, dp = n / t["mc"], n / t["dpkt"]
    return [
        (
            f"{path} ({n:,} records, {path.stat().st_size / 1e6:.1f} MB)",
            [
                Row("meshcore read_pcap(path).parse()", mc, None),
                Row("dpkt pcap Reader + decode + 5-tuple", dp, mc),
            ],
        )
    ]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=1_000_000, help="frames per batch data set")
    ap.add_argument(
        "--single-packets",
        type=int,
        default=None,
        help="frames per single-packet data set (default: packets / 10)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="repetitions; the best one counts")
    ap.add_argument("--pcap", type=Path, default=None, help="capture file for section 3")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args(argv)
    n_batch: int = max(1, args.packets)
    n_single: int = max(1, args.single_packets or n_batch // 10)
    repeat: int = max(1, args.repeat)

    t_start = time.perf_counter()
    print("meshcore wire benchmark")
    print(
        f"  python {platform.python_version()}, numpy {np.__version__}, dpkt {dpkt.__version__}, "
        f"meshcore {meshcore.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(
        f"  best of {repeat} round-robin runs; single-packet sets {n_single:,} frames, "
        f"batch sets {n_batch:,} frames. Ratios compare rows of this run only."
    )

    # ---- section 1
    print("\n== 1. Single-packet parsing from Python ==")
    single_sets = {
        "Ethernet/IPv4/TCP": make_frames(ETH_IPV4_TCP, n_single, args.seed),
        "mix (IPv4/IPv6 x TCP/UDP, 20% 802.1Q-tagged)": make_frames(
            SINGLE_MIX, n_single, args.seed + 1
        ),
    }
    single: dict[str, dict[str, float]] = {}
    for name, frames in single_sets.items():
        sizes = [len(f) for f in frames]
        rates, groups = bench_single(name, frames, repeat)
        single[name] = rates
        print_table(
            f"{name}: {len(frames):,} frames, {min(sizes)}-{max(sizes)} bytes "
            f"(5-tuples of meshcore, dpkt and struct checked equal on every frame)",
            groups,
        )
        print(
            f"  meshcore/dpkt:   parse {rates['mc_parse'] / rates['dpkt_parse']:.1f}x, "
            f"parse + 5-tuple {rates['mc_tuple'] / rates['dpkt_tuple']:.1f}x"
        )
        print(
            f"  meshcore/struct: parse {rates['mc_parse'] / rates['struct']:.2f}x, "
            f"parse + 5-tuple (str) {rates['mc_tuple'] / rates['struct']:.2f}x, "
            f"(bytes) {rates['mc_packed'] / rates['struct']:.2f}x"
        )
    del single_sets

    # ---- section 2
    print("\n== 2. Batch parsing: one buffer + N+1 int64 offsets ==")
    pool = min(n_batch, 65_536)
    batch: dict[str, dict[str, float]] = {}
    for name, mix, seed in (
        ("Ethernet/IPv4/TCP", ETH_IPV4_TCP, args.seed + 2),
        ("mix (v4/v6, TCP/UDP/ICMP, VLAN, options, fragments, ARP)", BATCH_MIX, args.seed + 3),
    ):
        frames = make_frames(mix, n_batch, seed, pool=pool)
        buffer, offsets = pack(frames)
        del frames
        rates = bench_batch(name, buffer, offsets, repeat)
        batch[name] = rates
        print_table(
            f"{name}: {n_batch:,} frames ({pool:,} distinct), {len(buffer) / 1e6:.0f} MB, "
            f"mean {len(buffer) / n_batch:.0f} B/frame (numpy peer == meshcore on every row)",
            [
                (
                    "parse to columns",
                    [
                        Row("meshcore parse_batch(buffer, offsets)", rates["mc"], None),
                        Row("meshcore parse_batch(..., out=reused)", rates["mc_out"], None),
                        Row(f"meshcore parse_batch, {POLL:,} per call", rates["mc_poll"], None),
                        Row("numpy peer (wide fancy-indexed gathers)", rates["numpy"], rates["mc"]),
                    ],
                )
            ],
        )
        print(f"  meshcore/numpy: {rates['mc'] / rates['numpy']:.1f}x")
        del buffer, offsets

    # ---- section 3
    print("\n== 3. Capture file ==")
    pcap: Path | None = args.pcap or (DEFAULT_PCAP if DEFAULT_PCAP.exists() else None)
    if pcap is None:
        print(f"  skipped: no --pcap given and no {DEFAULT_PCAP}")
    else:
        result = bench_pcap(pcap, repeat)
        if isinstance(result, str):
            print(f"  {result}")
        else:
            print_table("read + parse every record", result)

    # ---- targets
    tcp = "Ethernet/IPv4/TCP"
    smix = next(k for k in single if k.startswith("mix"))
    bmix = next(k for k in batch if k.startswith("mix"))
    s_tcp, s_mix, b_tcp, b_mix = single[tcp], single[smix], batch[tcp], batch[bmix]

    def speedup(rates: dict[str, float], mine: str, theirs: str) -> float:
        return rates[mine] / rates[theirs]

    targets = [
        Target(
            "Packet.parse >= 20x dpkt (Eth/IPv4/TCP, parse only)",
            speedup(s_tcp, "mc_parse", "dpkt_parse"),
            20,
        ),
        Target(
            "Packet.parse >= 20x dpkt (mix, parse only)",
            speedup(s_mix, "mc_parse", "dpkt_parse"),
            20,
        ),
        Target(
            "Packet.parse > struct parser (Eth/IPv4/TCP)",
            speedup(s_tcp, "mc_parse", "struct"),
            1,
            strict=True,
        ),
        Target(
            "Packet.parse > struct parser (mix)",
            speedup(s_mix, "mc_parse", "struct"),
            1,
            strict=True,
        ),
        Target("parse_batch >= 30 Mpps (Eth/IPv4/TCP, new rows)", b_tcp["mc"] / 1e6, 30, "Mpps"),
        Target(
            "parse_batch >= 30 Mpps (Eth/IPv4/TCP, out= reused)", b_tcp["mc_out"] / 1e6, 30, "Mpps"
        ),
        Target(
            f"parse_batch >= 30 Mpps (Eth/IPv4/TCP, {POLL:,} per call)",
            b_tcp["mc_poll"] / 1e6,
            30,
            "Mpps",
        ),
        Target("parse_batch >= 3x numpy peer (Eth/IPv4/TCP)", speedup(b_tcp, "mc", "numpy"), 3),
        Target("parse_batch >= 3x numpy peer (mix)", speedup(b_mix, "mc", "numpy"), 3),
    ]
    context = (
        [
            Target(
                f"parse + 5-tuple (str) vs dpkt, {label}",
                speedup(r, "mc_tuple", "dpkt_tuple"),
                20,
                info=True,
            )
            for label, r in (("Eth/IPv4/TCP", s_tcp), ("mix", s_mix))
        ]
        + [
            Target(
                f"parse + 5-tuple ({kind}) vs struct parser, {label}",
                speedup(r, key, "struct"),
                1,
                info=True,
                strict=True,
            )
            for label, r in (("Eth/IPv4/TCP", s_tcp), ("mix", s_mix))
            for kind, key in (("str", "mc_tuple"), ("bytes", "mc_packed"))
        ]
        + [
            Target("parse_batch (mix)", b_mix["mc"] / 1e6, 30, "Mpps", info=True),
        ]
    )
    print("\n== Targets (this run) ==")
    for t in targets:
        print(t.line())
    print("  context, like for like (not targets; 'ok'/'no' against the same bar):")
    for t in context:
        print(t.line())
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
