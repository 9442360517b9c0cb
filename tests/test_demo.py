"""The demo and inspect commands do real work and report it correctly."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from meshcore.__main__ import main
from meshcore.demo import make_traffic
from meshcore.io import read_pcap, write_pcap


def _ethertype(frame: bytes) -> int:
    et = struct.unpack_from("!H", frame, 12)[0]
    off = 14
    while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
        et = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    return int(et)


def test_traffic_is_seeded_and_mixed() -> None:
    a, b = make_traffic(3000, seed=3), make_traffic(3000, seed=3)
    assert a == b and len(a) == 3000
    kinds = Counter(_ethertype(f) for f in a if len(f) >= 14)
    assert kinds[0x0800] > 1500 and kinds[0x86DD] > 100 and kinds[0x0806] > 30


def test_inspect_counts_match_an_independent_count(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    frames = make_traffic(5000, seed=11)
    path = tmp_path / "t.pcap"
    write_pcap(path, frames)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    arp = sum(1 for f in frames if len(f) >= 14 and _ethertype(f) == 0x0806)
    assert f"not ip {arp:,}" in out
    assert "5,000 frames" in out and "distinct 5-tuples" in out
    assert len(read_pcap(path)) == 5000


def test_demo_command_runs(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "lb.png"
    assert main(["demo", "--packets", "2000", "--sim-scale", "0.03", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "2,000 frames" in out and "PacketError" in out
    assert "routed" in out and "10.0.137.0/24 -> hop 3" in out
    assert "classified 2,000 frames with meshcore.Classifier" in out and "Mbit/s passed" in out
    assert "(a) Beyond round robin" in out and "(b) Heterogeneous pool" in out
    assert "(c) Homogeneous pool" in out and "peak_ewma" in out
    assert "300 requests -> a: 150  b: 100  c:  50   failed: 0" in out  # weights 3 : 2 : 1
    assert "300 requests -> a: 225  c:  75   failed: 0" in out  # b stopped, checked out
    assert "300 requests -> a: 150  c:  50  d: 100   failed: 0" in out  # d pushed by xDS
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in out
    else:
        assert png.read_bytes()[:4] == b"\x89PNG" and str(png) in out


def test_demo_can_skip_the_simulations(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--packets", "500", "--sim-scale", "0", "--no-mesh"]) == 0
    out = capsys.readouterr().out
    assert "Load balancing" not in out and "xDS" not in out


def test_inspect_reports_bad_files(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    assert main(["inspect", str(bad)]) == 1
    assert "unknown magic" in capsys.readouterr().err


def test_route_summary_counts_match_a_naive_router() -> None:
    import ipaddress

    from meshcore import parse_batch
    from meshcore.demo import route_summary

    frames = make_traffic(3000, seed=5)
    buf = b"".join(frames)
    offsets = [0]
    for f in frames:
        offsets.append(offsets[-1] + len(f))
    rows = parse_batch(buf, offsets)
    text = route_summary(rows)
    nets = [("10.0.137.0/24", 3), ("10.0.128.0/17", 2), ("10.0.0.0/16", 1), ("0.0.0.0/0", 0)]
    counts = dict.fromkeys(range(4), 0)
    for r in rows[(rows["version"] == 4) & (rows["error"] == 0)]:
        dst = ipaddress.IPv4Address(bytes(r["dst"][:4]))
        hop = next(h for n, h in nets if dst in ipaddress.IPv4Network(n))
        counts[hop] += 1
    for n, h in nets:
        assert f"{n} -> hop {h}: {counts[h]:,}" in text


def test_police_summary_counts_match_per_frame_classify_and_an_exact_bucket(
    tmp_path: Path,
) -> None:
    import re
    from fractions import Fraction

    from meshcore import Classifier
    from meshcore.demo import POLICY, RATES, police_summary

    path = tmp_path / "t.pcap"
    write_pcap(path, make_traffic(3000, seed=5))
    cap = read_pcap(path)
    text = police_summary(cap, rate_pps=1e6)
    rules = Classifier.from_text(POLICY)
    rows = cap.parse()
    sizes = list(cap.wire_lengths)
    # One frame at a time through `classify`, ports 0 where a frame has none.
    ids = []
    for r in rows:
        if r["error"] != 0 or r["version"] not in (4, 6):
            ids.append(-1)
            continue
        n = 4 if r["version"] == 4 else 16
        src, dst = bytes(r["src"][:n]), bytes(r["dst"][:n])
        got = rules.classify(src, dst, int(r["sport"]), int(r["dport"]), int(r["proto"]))
        ids.append(-1 if got is None else got)
    assert f"not IP or unparsed: {ids.count(-1):,} frames" in text
    for rule_id in rules:
        action = rules.action(rule_id)
        mine = [i for i, x in enumerate(ids) if x == rule_id]
        assert re.search(rf"\n  {action} +{len(mine):>7,} frames", text), action
        if action not in RATES:
            continue
        # The bucket in exact arithmetic: frame i arrives at i us (1e6 frames/s).
        rate, burst = (Fraction(x) for x in RATES[action])
        level, last, admitted = burst, 0, 0
        for i in mine:
            level = min(burst, level + (i * 1000 - last) * rate / 10**9)
            last = i * 1000
            if sizes[i] <= level:
                level -= sizes[i]
                admitted += 1
        assert 0 < admitted < len(mine)
        assert re.search(rf"\n  {action} .*\({admitted:,} frames;", text), action
