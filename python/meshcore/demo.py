"""The demo behind ``python -m meshcore demo`` and ``python -m meshcore inspect``.

It makes a seeded mix of real traffic (IPv4 and IPv6, TCP, UDP, ICMP, VLAN and QinQ tags, IPv6
extension headers, fragments, ARP, and a few broken frames), writes it to a pcap file, reads it
back, parses it in one batch with checksum verification, reports what it found, and routes the
frames by destination through a RouteTable, classifies them with a Classifier read from text
rules and polices each class with a TokenBucket. Then it runs the load-balancing simulations of
:mod:`meshcore.sim`, prints their tables and plots their latency percentiles (with matplotlib,
when installed). Last, :mod:`meshcore.demo_mesh` runs xDS discovery, TCP health checks and a
weighted balancer together against real backends on loopback.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meshcore import _meshcore
from meshcore._meshcore import (
    Classifier,
    Packet,
    RouteTable,
    TokenBucket,
    build_packet,
    describe_error,
)
from meshcore.errors import PacketError
from meshcore.io.pcap import Capture, read_pcap, write_pcap
from meshcore.wire import FLAG_FRAGMENT, FLAG_HAS_PORTS, flow_keys, ipv4_as_uint32

__all__ = ["balance_summary", "make_traffic", "police_summary", "run_demo", "summarize"]

_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 50: "esp"}


def _arp(rng: random.Random) -> bytes:
    sender = bytes([10, 0, 0, rng.randrange(1, 255)])
    target = bytes([10, 0, 0, rng.randrange(1, 255)])
    mac = bytes([2, 0, 0, 0, 0, rng.randrange(1, 255)])
    eth = b"\xff" * 6 + mac + b"\x08\x06"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + sender + b"\x00" * 6 + target
    return eth + arp + b"\x00" * 18  # padded to the 60-byte minimum frame


def _flows(rng: random.Random, count: int) -> list[tuple[str, str, str, int, int]]:
    """A pool of (src, dst, proto, sport, dport) conversations between a few hundred hosts."""
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + rng.randrange(1, 1 << 16))) for _ in range(300)]
    v6 = [
        str(ipaddress.IPv6Address((0x20010DB8 << 96) + rng.randrange(1 << 32))) for _ in range(80)
    ]
    flows = []
    for _ in range(count):
        sport = rng.randrange(32768, 61000)
        r = rng.random()
        if r < 0.6:
            flows.append(
                (
                    rng.choice(v4),
                    rng.choice(v4[:12]),
                    "tcp",
                    sport,
                    rng.choice((80, 443, 443, 8080, 5432)),
                )
            )
        elif r < 0.75:
            flows.append((rng.choice(v4), v4[0], "udp", sport, 53))
        elif r < 0.95:
            flows.append(
                (
                    rng.choice(v6),
                    rng.choice(v6[:6]),
                    rng.choice(("tcp", "udp")),
                    sport,
                    rng.choice((443, 853)),
                )
            )
        else:
            flows.append((rng.choice(v4), rng.choice(v4[:12]), "icmp", 0, 0))
    return flows


def make_traffic(n: int, seed: int = 7) -> list[bytes]:
    """``n`` frames of seeded mixed traffic: conversations drawn with Zipf-like popularity,
    VLAN and QinQ tags, IPv6 extension headers, IPv4 fragments, ARP, and ~2 % broken frames."""
    rng = random.Random(seed)
    pool = _flows(rng, max(16, n // 50))
    weights = [1.0 / (rank + 1) for rank in range(len(pool))]
    picks = rng.choices(pool, weights=weights, k=n)
    frames: list[bytes] = []
    for i, (src, dst, proto, sport, dport) in enumerate(picks):
        r = rng.random()
        body = rng.randbytes(rng.choice((0, 0, 32, 200, 512, 1200)))
        if r < 0.03:
            frames.append(_arp(rng))
        elif r < 0.04:
            good = build_packet(src, dst, proto="tcp", sport=sport, dport=dport, payload=body)
            frames.append(good[: rng.randrange(14, 50)])  # cut inside the IP or TCP header
        elif r < 0.05:
            bad = bytearray(
                build_packet(src, dst, proto="udp", sport=sport, dport=9999, payload=b"checksum me")
            )
            bad[-1] ^= 0xFF  # corrupt the payload: the UDP checksum no longer matches
            frames.append(bytes(bad))
        elif proto == "udp" and ":" not in src and r < 0.10:
            # A datagram split into two IPv4 fragments; only the first carries the UDP header.
            whole = build_packet(src, dst, proto="udp", sport=sport, dport=dport, payload=body * 2)
            l4 = whole[Packet.parse(whole).l4_offset :]
            cut = max(8, (len(l4) // 2) // 8 * 8)
            ident = rng.getrandbits(16)
            frames.append(
                build_packet(src, dst, proto=17, payload=l4[:cut], ident=ident, more_fragments=True)
            )
            frames.append(
                build_packet(src, dst, proto=17, payload=l4[cut:], ident=ident, frag_offset=cut)
            )
        elif ":" in src:
            ext = rng.choice(([], [], [(0, b"")], [(60, b"\x01\x02\x00\x00")]))
            frames.append(
                build_packet(
                    src,
                    dst,
                    proto=proto,
                    sport=sport,
                    dport=dport,
                    payload=body,
                    ext_headers=ext,
                    flow_label=sport,
                )
            )
        else:
            vlan = [[], [], [10], [20], [100, 10]][sport % 5]  # a stable VLAN per conversation
            frames.append(
                build_packet(
                    src,
                    dst,
                    proto=proto,
                    sport=sport,
                    dport=dport,
                    payload=body,
                    vlan=vlan,
                    tcp_flags=rng.choice("SAAPF"),
                    seq=rng.getrandbits(32),
                    ident=i & 0xFFFF,
                )
            )
    return frames[:n]


def _endpoint(row: npt.NDArray[np.uint8], version: int, port: int) -> str:
    raw = bytes(row)
    if version == 4:
        return f"{ipaddress.IPv4Address(raw[:4])}:{port}"
    return f"[{ipaddress.IPv6Address(raw)}]:{port}"


def summarize(rows: npt.NDArray[np.void], *, top: int = 8) -> str:
    """A text report of a :func:`meshcore.parse_batch` result."""
    out: list[str] = []
    n = len(rows)
    ok = rows["error"] == 0
    out.append(f"{n:,} frames, {int(ok.sum()):,} parsed cleanly, {int((~ok).sum()):,} with errors")
    kinds: Counter[str] = Counter()
    version, proto = rows["version"][ok], rows["proto"][ok]
    for v in (4, 6):
        for p in np.unique(proto[version == v]):
            name = _PROTO_NAMES.get(int(p), f"proto {int(p)}")
            kinds[f"ipv{v}/{name}"] = int(((version == v) & (proto == p)).sum())
    kinds["not ip"] = int((version == 0).sum())
    out.append(
        "traffic mix of clean frames: " + ", ".join(f"{k} {c:,}" for k, c in kinds.most_common())
    )
    tagged = rows["vlan_count"] > 0
    if tagged.any():
        vids, counts = np.unique(rows["vlan"][tagged], return_counts=True)
        qinq = int((rows["vlan_count"] > 1).sum())
        vl = ", ".join(f"{int(v)}: {int(c):,}" for v, c in zip(vids, counts, strict=True))
        out.append(f"vlan (outer id): {vl}; QinQ frames {qinq:,}")
    frag = (rows["flags"] & FLAG_FRAGMENT) != 0
    out.append(
        f"fragments: {int(frag.sum()):,} "
        f"({int((frag & (rows['frag_offset'] > 0)).sum()):,} non-first, without ports)"
    )
    errs = Counter(int(c) for c in rows["error"][~ok])
    for code, count in errs.most_common():
        out.append(f"  error {code:#04x} {describe_error(code)}: {count:,}")
    # Top flows by bytes: group the 5-tuple columns with np.unique.
    flows = rows[ok & ((rows["flags"] & FLAG_HAS_PORTS) != 0)]
    if len(flows):
        key = flow_keys(flows)
        uniq, inverse = np.unique(key, return_inverse=True)
        byte_counts = np.bincount(inverse.ravel(), weights=flows["length"].astype(np.float64))
        pkt_counts = np.bincount(inverse.ravel())
        out.append(f"{len(uniq):,} distinct 5-tuples; top {top} by bytes:")
        for i in np.argsort(byte_counts)[::-1][:top]:
            u = uniq[i]
            v = int(u["version"])
            name = _PROTO_NAMES.get(int(u["proto"]), str(int(u["proto"])))
            out.append(
                f"  {_endpoint(u['src'], v, int(u['sport'])):>30} -> "
                f"{_endpoint(u['dst'], v, int(u['dport'])):<30} {name:<4} "
                f"{int(pkt_counts[i]):>6,} pkts {int(byte_counts[i]):>11,} bytes"
            )
    return "\n".join(out)


def _timed_parse(cap: Capture, repeat: int = 5) -> tuple[npt.NDArray[np.void], float]:
    best = float("inf")
    rows = cap.parse(verify_checksums=True)
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = cap.parse(verify_checksums=True)
        best = min(best, time.perf_counter() - t0)
    return rows, best


def inspect(path: str | Path) -> str:
    """Read a capture file and report on it."""
    cap = read_pcap(path)
    rows, secs = _timed_parse(cap)
    rate = len(cap) / secs / 1e6 if secs > 0 else float("inf")
    head = f"{path}: {len(cap):,} records, link {cap.link}, parsed at {rate:.1f} M frames/s"
    return head + "\n" + summarize(rows)


def route_summary(rows: npt.NDArray[np.void]) -> str:
    """Route the clean IPv4 frames of a batch by destination with a RouteTable."""
    table = RouteTable()
    routes = {
        "0.0.0.0/0": 0,  # default: the uplink
        "10.0.0.0/16": 1,  # the cluster
        "10.0.128.0/17": 2,  # the upper half of it sits behind another node
        "10.0.137.0/24": 3,  # and one busy service subnet behind a third
    }
    for prefix, hop in routes.items():
        table[prefix] = hop
    v4 = rows[(rows["version"] == 4) & (rows["error"] == 0)]
    t0 = time.perf_counter()
    hops = table.lookup_many(ipv4_as_uint32(v4["dst"]))
    secs = time.perf_counter() - t0
    counts = np.bincount(hops, minlength=len(routes))
    by_hop = ", ".join(
        f"{prefix} -> hop {hop}: {int(counts[hop]):,}" for prefix, hop in routes.items()
    )
    rate = len(v4) / secs / 1e6 if secs > 0 else float("inf")
    return (
        f"routed {len(v4):,} IPv4 frames by destination with meshcore.RouteTable "
        f"({rate:.0f} M lookups/s):\n  {by_hop}"
    )


#: The demo's access and traffic-class rules, in the text format of ``Classifier.from_text``.
POLICY = """
web  tcp from 10.0.0.0/16 to 10.0.0.0/16 port 80,443,8080
db   tcp from 10.0.0.0/16 to 10.0.0.0/16 port 5432
dns  udp from 10.0.0.0/16 to 10.0.0.0/16 port 53
tls6 from 2001:db8::/32 to 2001:db8::/32 port 443,853
deny from any to any
"""

#: Policing rate (bytes/s) and burst (bytes) per traffic class of :data:`POLICY`.
RATES = {
    "web": (12.5e6, 64_000),
    "db": (2.5e6, 16_000),
    "dns": (125e3, 4_000),
    "tls6": (6.25e6, 32_000),
}


def police_summary(cap: Capture, rate_pps: float = 1e6) -> str:
    """Classify the frames of a capture by 5-tuple with a Classifier read from :data:`POLICY`,
    then police each class with a TokenBucket in bytes (:data:`RATES`), the frames arriving
    evenly at ``rate_pps`` frames/s."""
    rules = Classifier.from_text(POLICY)
    rows = cap.parse()
    t0 = time.perf_counter()
    ids = rules.classify_parsed(rows)
    secs = time.perf_counter() - t0
    sizes = np.asarray(cap.wire_lengths, dtype=np.int64)
    times = np.arange(len(rows), dtype=np.float64) / rate_pps
    span = len(rows) / rate_pps
    rate = len(rows) / secs / 1e6 if secs > 0 else float("inf")
    lines = [
        f"classified {len(rows):,} frames with meshcore.Classifier ({len(rules)} text rules, "
        f"{rate:.0f} M frames/s); policed per class with meshcore.TokenBucket over {span:.2f} s:"
    ]
    for rule_id in rules:
        action = rules.action(rule_id)
        mine = ids == rule_id
        offered = int(sizes[mine].sum())
        if action in RATES:
            tb = TokenBucket(*RATES[action])
            ok = tb.try_consume_many(sizes[mine], times[mine])
            passed = f"{int(sizes[mine][ok].sum()) * 8 / span / 1e6:6.1f} Mbit/s passed"
            rate_b, burst = RATES[action]
            passed += (
                f" ({int(ok.sum()):,} frames; {rate_b * 8 / 1e6:g} Mbit/s + {burst:,} B burst)"
            )
        else:
            passed = "dropped"
        lines.append(
            f"  {action:<5} {int(mine.sum()):>7,} frames, {offered * 8 / span / 1e6:6.1f} Mbit/s "
            f"offered -> {passed}"
        )
    lines.append(f"  not IP or unparsed: {int((ids == -1).sum()):,} frames")
    return "\n".join(lines)


def balance_summary(scale: float = 1.0, plot_path: str | Path | None = None) -> str:
    """Run the balancing simulations at ``scale`` times their full size, as text; plot their
    latency percentiles to ``plot_path`` (a PNG) unless it is None."""
    from meshcore import sim  # imported late: only this part of the demo needs it

    t0 = time.perf_counter()
    tables = sim.run_all(scale=scale)
    lines = [
        f"\nLoad balancing: meshcore.Balancer policies in seeded simulations "
        f"(scale {scale:g}, {time.perf_counter() - t0:.1f} s)"
    ]
    for t in tables:
        lines.append("")
        lines.append(t.format())
    if plot_path is not None:
        out = sim.plot(tables, plot_path)
        if out is None:
            lines.append(
                "\n(no plot: matplotlib is not installed; pip install 'meshcore[demo]' for it)"
            )
        else:
            lines.append(f"\nlatency percentiles per policy plotted to {out}")
    return "\n".join(lines)


def run_demo(
    n: int = 100_000,
    seed: int = 7,
    keep: str | None = None,
    *,
    sim_scale: float = 1.0,
    plot_path: str | Path | None = "meshcore-balance.png",
    mesh: bool = True,
) -> str:
    """Make ``n`` frames, round-trip them through a pcap file, parse and report; then run the
    balancing simulations at ``sim_scale`` (0 skips them) and plot them to ``plot_path``; then
    (``mesh``) discovery, health checks and balancing together on loopback."""
    lines = [f"meshcore {_meshcore.__version__} demo: {n:,} frames of seeded mixed traffic"]
    t0 = time.perf_counter()
    frames = make_traffic(n, seed)
    lines.append(f"built with meshcore.build_packet in {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(keep) if keep else Path(tmp) / "demo.pcap"
        write_pcap(path, frames)
        lines.append(inspect(path))
        cap = read_pcap(path)
        lines.append(route_summary(cap.parse()))
        lines.append(police_summary(cap))
    lines.append("\nA few frames one at a time with meshcore.Packet.parse:")
    for f in frames[:4]:
        lines.append(f"  {Packet.parse(f)!r}")
    broken = frames[0][:30]
    try:
        Packet.parse(broken)
    except PacketError as e:
        lines.append(f"  a frame cut to 30 bytes -> PacketError: {e}")
    if sim_scale > 0:
        lines.append(balance_summary(sim_scale, plot_path))
    if mesh:
        from meshcore.demo_mesh import mesh_summary  # grpc and the xDS protos load only here

        lines.append("\n" + mesh_summary())
    return "\n".join(lines)
