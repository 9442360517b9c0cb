"""Capture files: our writer and reader, files from scapy and dpkt, a real tcpdump capture."""

from __future__ import annotations

import gzip
import io
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

from meshcore import CaptureError, ConfigError, Packet, build_packet
from meshcore.io import read_pcap, write_pcap
from wirebytes import tcp4_frame

FRAMES = [tcp4_frame(sport=1000 + i, payload=bytes([i]) * i) for i in range(40)]


def test_round_trip_microseconds_and_nanoseconds(tmp_path: Path) -> None:
    stamps = [1_700_000_000_000_000_000 + i * 1_234_567 for i in range(len(FRAMES))]
    for nano, tick in ((False, 1000), (True, 1)):
        path = tmp_path / f"x{nano}.pcap"
        assert write_pcap(path, FRAMES, timestamps_ns=stamps, nanosecond=nano) == len(FRAMES)
        cap = read_pcap(path)
        assert len(cap) == len(FRAMES) and list(cap) == FRAMES
        assert cap.link == "ethernet" and cap.linktypes == (1,)
        assert cap.timestamps_ns.tolist() == [(t + tick // 2) // tick * tick for t in stamps]
        assert np.allclose(cap.timestamps, np.array(stamps) / 1e9, rtol=0, atol=1e-6)
        assert (cap.wire_lengths == [len(f) for f in FRAMES]).all()
        rows = cap.parse()
        assert (rows["sport"] == np.arange(1000, 1040)).all()
        assert [p.sport for p in cap.packets()] == list(range(1000, 1040))
        assert cap[-1] == FRAMES[-1]


def test_gzip_bytes_and_file_objects(tmp_path: Path) -> None:
    buf = io.BytesIO()
    write_pcap(buf, FRAMES[:3], link="ethernet")
    raw = buf.getvalue()
    assert list(read_pcap(raw)) == FRAMES[:3]
    assert list(read_pcap(io.BytesIO(gzip.compress(raw)))) == FRAMES[:3]
    (tmp_path / "x.pcap.gz").write_bytes(gzip.compress(raw))
    assert list(read_pcap(tmp_path / "x.pcap.gz")) == FRAMES[:3]


def test_scapy_pcap_and_pcapng(tmp_path: Path) -> None:
    pkts = [Ether(f) for f in FRAMES]
    for i, p in enumerate(pkts):
        p.time = 1_600_000_000 + i / 8
    wrpcap(str(tmp_path / "s.pcap"), pkts)
    with PcapNgWriter(str(tmp_path / "s.pcapng")) as w:
        for p in pkts:
            w.write(p)
    for name in ("s.pcap", "s.pcapng"):
        cap = read_pcap(tmp_path / name)
        assert list(cap) == FRAMES, name
        assert cap.link == "ethernet"
        assert np.allclose(cap.timestamps, [1_600_000_000 + i / 8 for i in range(len(FRAMES))])


def test_dpkt_nanosecond_big_endian_and_raw_ip(tmp_path: Path) -> None:
    path = tmp_path / "d.pcap"
    raw_ip = [build_packet("10.0.0.1", "10.0.0.2", sport=i, link="ip") for i in range(5)]
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, nano=True, linktype=dpkt.pcap.DLT_RAW)
        for i, pkt in enumerate(raw_ip):
            w.writepkt(pkt, ts=100 + i * 1e-9 * 7)
    cap = read_pcap(path)
    assert cap.link == "ip" and list(cap) == raw_ip
    assert (cap.timestamps_ns == [100_000_000_000 + 7 * i for i in range(5)]).all()
    assert (cap.parse()["sport"] == np.arange(5)).all()
    # A big-endian file written by hand: header and records in network byte order.
    be = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, fr in enumerate(FRAMES[:3]):
        be += struct.pack(">IIII", 5 + i, 250_000, len(fr), len(fr)) + fr
    cap = read_pcap(be)
    assert list(cap) == FRAMES[:3]
    assert cap.timestamps_ns.tolist() == [5_250_000_000, 6_250_000_000, 7_250_000_000]


def _shb(big: bool) -> bytes:
    e = ">" if big else "<"
    return struct.pack(f"{e}IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(
        f"{e}I", 28
    )


def _idb(linktype: int, tsresol: int | None, big: bool = False) -> bytes:
    e = ">" if big else "<"
    opts = b""
    if tsresol is not None:
        opts = struct.pack(f"{e}HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + struct.pack(f"{e}HH", 0, 0)
    n = 20 + len(opts)
    return struct.pack(f"{e}IIHHI", 1, n, linktype, 0, 0) + opts + struct.pack(f"{e}I", n)


def _epb(iface: int, ticks: int, data: bytes, big: bool = False) -> bytes:
    e = ">" if big else "<"
    pad = b"\x00" * (-len(data) % 4)
    n = 32 + len(data) + len(pad)
    head = struct.pack(
        f"{e}IIIIIII", 6, n, iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return head + data + pad + struct.pack(f"{e}I", n)


def test_pcapng_sections_resolutions_and_mixed_links() -> None:
    ip_pkt = build_packet("10.0.0.1", "10.0.0.2", link="ip")
    blob = (
        _shb(False)
        + _idb(1, 9)
        + _epb(0, 1_000_000_123, FRAMES[0])  # nanosecond ticks
        + _shb(True)
        + _idb(1, 0x80 | 10, True)
        + _epb(0, 3 * 1024, FRAMES[1], True)  # 2^-10 s
    )
    cap = read_pcap(blob)
    assert list(cap) == FRAMES[:2]
    assert cap.timestamps_ns.tolist() == [1_000_000_123, 3_000_000_000]
    assert cap.linktypes == (1, 1) and cap.interfaces.tolist() == [0, 1]
    mixed = read_pcap(
        _shb(False) + _idb(1, None) + _idb(101, None) + _epb(0, 5, FRAMES[0]) + _epb(1, 6, ip_pkt)
    )
    assert mixed.timestamps_ns.tolist() == [5000, 6000]  # default resolution: microseconds
    with pytest.raises(CaptureError, match="link types"):
        _ = mixed.link


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x01\x02", "too short"),
        (b"\xde\xad\xbe\xef" + bytes(40), "unknown magic"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)[:20], "file header"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + bytes(10), "record header"),
        (
            struct.pack("<IHHiIIIIIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1, 0, 0, 99, 99) + bytes(9),
            "truncated pcap record: 99 bytes announced \\(at byte 24\\)",
        ),
        (_shb(False)[:-4] + b"\x00\x00\x00\x00", "trailing length"),
        (_shb(False) + _epb(0, 0, b"abcd"), "unknown interface 0"),
    ],
)
def test_malformed_captures(blob: bytes, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        read_pcap(blob)


def test_write_pcap_rejects_unknown_link(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_pcap(tmp_path / "x.pcap", FRAMES, link="fddi")


def _capture_udp(tmp_path: Path, interface: str, count: int) -> tuple[Path, int]:
    """Send ``count`` UDP datagrams to 127.0.0.1 while tcpdump captures them on ``interface``."""
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    port = recv.getsockname()[1]
    path = tmp_path / f"{interface}.pcap"
    proc = subprocess.Popen(
        ["tcpdump", "-i", interface, "-U", "-n", "-w", str(path), f"udp and dst port {port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while b"listening on" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None, "tcpdump did not start"
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(count):
            send.sendto(f"meshcore {i}".encode(), ("127.0.0.1", port))
            recv.recv(100)
        send.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if len(read_pcap(path)) >= count:
                    break
            except (CaptureError, FileNotFoundError):
                pass  # not there yet, or a record half written
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        recv.close()
    return path, port


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize(("interface", "link"), [("lo", "ethernet"), ("any", "sll2")])
def test_real_tcpdump_capture(tmp_path: Path, interface: str, link: str) -> None:
    """Real datagrams captured by tcpdump (Ethernet on lo; Linux cooked v2 on "any")."""
    path, port = _capture_udp(tmp_path, interface, 20)
    cap = read_pcap(path)
    assert cap.link == link
    rows = cap.parse(verify_checksums=False)
    assert len(cap) == 20 and (rows["error"] == 0).all()
    assert (rows["dport"] == port).all() and (rows["proto"] == 17).all()
    payloads = sorted(Packet.parse(f, cap.link).payload for f in cap)
    assert payloads == sorted(f"meshcore {i}".encode() for i in range(20))
    assert (np.diff(cap.timestamps_ns) >= 0).all()


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


_blocks = st.one_of(
    st.tuples(st.just(1), st.binary(min_size=0, max_size=24)),  # interface description
    st.tuples(st.just(3), st.binary(min_size=0, max_size=24)),  # simple packet
    st.tuples(st.just(6), st.binary(min_size=0, max_size=48)),  # enhanced packet
    st.tuples(st.just(2), st.binary(min_size=0, max_size=40)),  # obsolete packet
    st.tuples(st.sampled_from([4, 5, 0x0BAD]), st.binary(max_size=16)),  # others, skipped
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_blocks, max_size=8), st.binary(max_size=8))
def test_structured_pcapng_never_crashes(blocks: list[tuple[int, bytes]], tail: bytes) -> None:
    """Well-framed pcapng blocks with random bodies reach every block parser."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    blob = shb + b"".join(_block(t, b + b"\x00" * (-len(b) % 4)) for t, b in blocks) + tail
    try:
        cap = read_pcap(blob)
    except CaptureError:
        return
    assert len(cap.offsets) == len(cap) + 1 and len(cap.timestamps_ns) == len(cap)
    assert all(int(i) < len(cap.linktypes) for i in cap.interfaces)


def test_writer_and_reader_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fewer timestamps"):
        write_pcap(tmp_path / "a.pcap", FRAMES[:3], timestamps=[0.0])
    with pytest.raises(ConfigError, match="outside the pcap range"):
        write_pcap(tmp_path / "a.pcap", FRAMES[:1], timestamps=[-1.0])
    with pytest.raises(ConfigError, match="snaplen"):
        write_pcap(tmp_path / "a.pcap", FRAMES[:1], snaplen=0)
    with pytest.raises(CaptureError, match="gzip"):
        read_pcap(b"\x1f\x8bxx")
