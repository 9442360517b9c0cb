"""Malformed input never crashes the interpreter: random and mutated bytes, and a forced panic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshcore
from meshcore import (
    CaptureError,
    ConfigError,
    InternalError,
    MeshcoreError,
    Packet,
    PacketError,
    build_packet,
    errors,
)
from meshcore.io import read_pcap

SEEDS = [
    build_packet("10.0.0.1", "10.0.0.2", proto="tcp", vlan=[1, 2], ip_options=b"\x94\x04\x00\x00"),
    build_packet(
        "2001:db8::1",
        "2001:db8::2",
        proto="udp",
        ext_headers=[(0, b""), (43, b"ab")],
        more_fragments=True,
    ),
    build_packet("fe80::1", "ff02::1", proto="icmp"),
]


def _parse_all_links(data: bytes) -> None:
    for link in ("ethernet", "ip", "sll"):
        try:
            p = Packet.parse(data, link)
        except PacketError:
            continue
        # Every accessor works on whatever parsed.
        _ = (p.flow, p.vlan, p.ext_headers, p.payload, p.ip_options, repr(p), p.tcp_flags)
        p.verify_checksums()


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _parse_all_links(data)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 200),
)
def test_mutated_frames(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _parse_all_links(bytes(data[: max(cut, 1)]))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_capture_files(data: bytes) -> None:
    for blob in (data, b"\xd4\xc3\xb2\xa1" + data, b"\n\r\r\n" + data):
        try:
            cap = read_pcap(blob)
        except CaptureError:
            continue
        assert len(cap.offsets) == len(cap) + 1


def test_panic_becomes_internal_error() -> None:
    with pytest.raises(InternalError, match="deliberate"):
        meshcore._meshcore._debug_panic("deliberate")
    # The interpreter is still fine afterwards.
    assert Packet.parse(SEEDS[0]).sport == 0


def test_panic_does_not_abort_a_fresh_interpreter() -> None:
    code = (
        "import meshcore\n"
        "try:\n    meshcore._meshcore._debug_panic('x')\n"
        "except meshcore.InternalError:\n    print('survived')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "survived"


def test_exception_tree() -> None:
    assert issubclass(PacketError, MeshcoreError) and issubclass(PacketError, ValueError)
    assert issubclass(ConfigError, MeshcoreError) and issubclass(ConfigError, ValueError)
    assert issubclass(CaptureError, MeshcoreError) and issubclass(CaptureError, ValueError)
    assert issubclass(InternalError, MeshcoreError) and issubclass(InternalError, RuntimeError)
    assert meshcore.PacketError is errors.PacketError
    assert set(errors.__all__) <= set(meshcore.__all__)
    for name in meshcore.__all__:
        assert hasattr(meshcore, name), name
    assert meshcore.__version__ == meshcore._meshcore.__version__
