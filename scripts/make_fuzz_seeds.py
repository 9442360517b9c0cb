"""Write the seed inputs of the cargo-fuzz targets to rust/fuzz/seeds/ (run after changes).

Seeds give the fuzzer well-formed starting points so it reaches deep paths quickly: IPv6
extension chains, fragments, VLAN stacks, cooked headers, and every pcap / pcapng block type.
"""

from __future__ import annotations

import struct
from pathlib import Path

from meshcore import build_packet
from meshcore.io import write_pcap

ROOT = Path(__file__).resolve().parent.parent / "rust" / "fuzz" / "seeds"


def frames() -> list[bytes]:
    v4, v6 = ("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")
    srh = bytes([4, 1, 1, 0, 0, 0]) + bytes(16) + bytes(16)
    return [
        build_packet(*v4, proto="tcp", tcp_options=b"\x02\x04\x05\xb4", payload=b"x" * 8),
        build_packet(*v4, proto="udp", vlan=[10, 20], ip_options=b"\x94\x04\x00\x00"),
        build_packet(*v4, proto=17, frag_offset=64, payload=b"y" * 16, link="ip"),
        build_packet(*v4, proto="icmp", link="sll"),
        build_packet(
            *v6,
            proto="udp",
            ext_headers=[(0, b""), (43, srh), (60, b"")],
            ident=7,
            more_fragments=True,
        ),
        build_packet(*v6, proto="icmp", link="sll2"),
        build_packet(*v6, proto="tcp", ext_headers=[(51, bytes(10))], link="ip"),
    ]


def pcapng() -> bytes:
    def block(t: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", t, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    f = frames()[0]
    tsresol = struct.pack("<HH", 9, 1) + bytes([9, 0, 0, 0]) + struct.pack("<HH", 0, 0)
    return (
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + block(1, struct.pack("<HHI", 1, 0, 0) + tsresol)
        + block(6, struct.pack("<IIIII", 0, 1, 2, len(f), len(f)) + f)
        + block(3, struct.pack("<I", len(f)) + f)
        + block(2, struct.pack("<HHIIII", 0, 0, 1, 2, len(f), len(f)) + f)
    )


def main() -> None:
    (ROOT / "parse").mkdir(parents=True, exist_ok=True)
    (ROOT / "pcap").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames()):
        (ROOT / "parse" / f"frame-{i}").write_bytes(f)
    write_pcap(ROOT / "pcap" / "classic.pcap", frames()[:2])
    write_pcap(ROOT / "pcap" / "nano.pcap", frames()[:1], nanosecond=True)
    (ROOT / "pcap" / "sections.pcapng").write_bytes(pcapng())


if __name__ == "__main__":
    main()
