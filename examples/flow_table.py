"""Per-flow statistics from a capture file, the way a monitoring tool would compute them.

    python examples/flow_table.py capture.pcap [--top 10]

Without a file it makes one with the demo's traffic generator. One ``parse_batch`` call parses
every frame; numpy groups the rows by 5-tuple; no Python loop touches a packet.
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile
from pathlib import Path

import numpy as np

import meshcore
from meshcore.demo import make_traffic
from meshcore.io import read_pcap, write_pcap
from meshcore.wire import FLAG_HAS_PORTS


def flow_table(path: Path, top: int) -> list[str]:
    cap = read_pcap(path)
    rows = cap.parse()
    keep = (rows["error"] == 0) & ((rows["flags"] & FLAG_HAS_PORTS) != 0)
    rows, ts = rows[keep], cap.timestamps_ns[keep]
    flows, inverse = np.unique(meshcore.flow_keys(rows), return_inverse=True)
    inverse = inverse.ravel()
    packets = np.bincount(inverse, minlength=len(flows))
    octets = np.bincount(inverse, weights=rows["length"], minlength=len(flows))
    first = np.full(len(flows), np.iinfo(np.int64).max)
    last = np.zeros(len(flows), dtype=np.int64)
    np.minimum.at(first, inverse, ts)
    np.maximum.at(last, inverse, ts)
    lines = [f"{len(cap):,} frames, {len(flows):,} flows with ports"]
    for i in np.argsort(octets)[::-1][:top]:
        f = flows[i]
        n = 4 if f["version"] == 4 else 16
        src = ipaddress.ip_address(bytes(f["src"][:n]))
        dst = ipaddress.ip_address(bytes(f["dst"][:n]))
        secs = (last[i] - first[i]) / 1e9
        lines.append(
            f"{src}:{f['sport']} -> {dst}:{f['dport']} proto {f['proto']}: "
            f"{packets[i]:,} packets, {int(octets[i]):,} bytes over {secs:.3f} s"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("capture", nargs="?", type=Path)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.capture
        if path is None:
            path = Path(tmp) / "demo.pcap"
            write_pcap(path, make_traffic(50_000))
        print(f"meshcore {meshcore.__version__}")
        print("\n".join(flow_table(path, args.top)))


if __name__ == "__main__":
    main()
