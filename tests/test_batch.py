"""parse_batch: agreement with Packet.parse row by row, the error column, and bad offsets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import (
    FLOW_DTYPE,
    PACKET_DTYPE,
    Packet,
    PacketError,
    _meshcore,
    build_packet,
    describe_error,
    flow_keys,
    ipv4_as_uint32,
    parse_batch,
)
from meshcore.wire import FLAG_FRAGMENT, FLAG_HAS_PORTS, FLAG_VLAN
from wirebytes import ETH_IPV4, eth, ipv4, tcp4_frame, udp


def pack(frames: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(f) for f in frames])
    return b"".join(frames), offsets


def mixed_frames() -> list[bytes]:
    good = [
        build_packet("10.0.0.1", "10.0.0.2", proto="tcp", sport=1, dport=2, vlan=[7]),
        build_packet(
            "2001:db8::1", "2001:db8::2", proto="udp", sport=3, dport=4, ext_headers=[(0, b"")]
        ),
        build_packet("10.0.0.1", "10.0.0.2", proto="icmp", icmp_type=3, icmp_code=1),
        build_packet("10.0.0.1", "10.0.0.2", proto=17, frag_offset=64, payload=b"x" * 16),
        eth(bytes(28), 0x0806),
    ]
    bad = [b"", b"\x00" * 13, tcp4_frame()[:40], eth(ipv4(udp(1, 2, length=99), 17), ETH_IPV4)]
    return good + bad


def single(frame: bytes, link: str = "ethernet") -> Packet | str:
    """The parsed packet, or the PacketError message."""
    try:
        return Packet.parse(frame, link)
    except PacketError as e:
        return str(e)


def test_dtype_mirrors_the_rust_row_layout() -> None:
    assert PACKET_DTYPE.itemsize == _meshcore.ROW_LEN == 64
    fields = PACKET_DTYPE.fields
    assert fields is not None
    for name, offset, size in _meshcore.ROW_FIELDS:
        dt, off = fields[name][:2]
        assert (off, dt.itemsize) == (offset, size), name


def test_rows_agree_with_single_parse() -> None:
    frames = mixed_frames()
    rows = parse_batch(*pack(frames))
    assert rows.dtype == PACKET_DTYPE and len(rows) == len(frames)
    for frame, row in zip(frames, rows, strict=True):
        p = single(frame)
        if isinstance(p, str):
            message = describe_error(int(row["error"]))
            assert message is not None and p.startswith(message)
            continue
        assert row["error"] == 0
        assert row["version"] == (p.version or 0)
        assert row["length"] == p.length
        if p.version:
            n = 4 if p.version == 4 else 16
            assert bytes(row["src"][:n]) == p.src_packed and bytes(row["dst"][:n]) == p.dst_packed
            assert not row["src"][n:].any()
            assert (row["proto"], row["ttl"], row["length"]) == (p.proto, p.ttl, p.length)
        assert (row["sport"], row["dport"]) == (p.sport or 0, p.dport or 0)
        assert bool(row["flags"] & FLAG_HAS_PORTS) == (p.sport is not None)
        assert bool(row["flags"] & FLAG_FRAGMENT) == p.is_fragment
        assert bool(row["flags"] & FLAG_VLAN) == bool(p.vlan)
        assert row["vlan"] == (p.vlan[0] if p.vlan else 0)
        assert row["ethertype"] == p.ethertype
        assert (row["l3_offset"], row["l4_offset"], row["payload_offset"]) == (
            p.l3_offset,
            p.l4_offset,
            p.payload_offset,
        )
        assert (row["icmp_type"], row["icmp_code"]) == (p.icmp_type or 0, p.icmp_code or 0)
        assert row["frag_offset"] == p.frag_offset


def test_error_rows_keep_what_was_parsed() -> None:
    frame = eth(ipv4(udp(1, 2, length=99), 17, "10.9.8.7", "10.1.1.1"), ETH_IPV4)
    (row,) = parse_batch(*pack([frame]))
    assert describe_error(int(row["error"])) == "udp: truncated"
    assert row["version"] == 4 and bytes(row["src"][:4]) == bytes([10, 9, 8, 7])


def test_verify_checksums_sets_the_error_column() -> None:
    good = build_packet("10.0.0.1", "10.0.0.2", sport=5, dport=6, payload=b"abc")
    bad = bytearray(good)
    bad[-1] ^= 0x55
    rows = parse_batch(*pack([good, bytes(bad)]), verify_checksums=True)
    assert rows["error"][0] == 0
    assert describe_error(int(rows["error"][1])) == "udp: bad checksum"
    assert rows["dport"][1] == 6  # fields stay filled in
    assert (parse_batch(*pack([good, bytes(bad)]))["error"] == 0).all()  # not checked by default


def test_buffer_and_offset_types() -> None:
    frames = [tcp4_frame(sport=i) for i in range(50)]
    buf, offs = pack(frames)
    expect = parse_batch(buf, offs)
    for b in (bytearray(buf), memoryview(buf), np.frombuffer(buf, np.uint8)):
        for o in (offs, offs.astype(np.int32), offs.astype(np.uint64), offs.tolist()):
            assert (parse_batch(b, o) == expect).all()
    assert (expect["sport"] == np.arange(50)).all()
    assert len(parse_batch(b"", [0])) == 0


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ([], "N \\+ 1"),
        ([0, 5, 3], "decrease at index 1"),
        ([0, 500], "outside the buffer"),
        ([-1, 5], "outside the buffer"),
        ([[0, 1]], "one-dimensional"),
        ([0.0, 1.5], "integer"),
    ],
)
def test_bad_offsets(offsets: list[object], message: str) -> None:
    with pytest.raises(PacketError, match=message):
        parse_batch(b"x" * 100, offsets)  # type: ignore[arg-type]


def test_bool_offsets_are_a_type_error() -> None:
    """numpy reads ``[0, True]`` as ``[0, 1]``: bools are refused by type, as in
    ``Classifier.classify_frames``."""
    frame = tcp4_frame()
    bad: list[tuple[object, str]] = [
        ([0, True], r"a bool \(row 1\)"),
        ((np.False_, len(frame)), r"a bool \(row 0\)"),
        (np.array([False, True]), "an array of bool"),
    ]
    for offsets, got in bad:
        with pytest.raises(
            TypeError, match=f"^offsets must be a one-dimensional integer array, not {got}$"
        ):
            parse_batch(frame, offsets)  # type: ignore[arg-type]


def test_out_array_is_filled_and_checked() -> None:
    frames = [tcp4_frame(sport=i) for i in range(10)]
    buf, offs = pack(frames)
    out = np.full(10, 0xFF, dtype=np.uint8).repeat(64).view(PACKET_DTYPE)
    rows = parse_batch(buf, offs, out=out)
    assert rows is out and (out == parse_batch(buf, offs)).all()
    with pytest.raises(PacketError, match="out must hold 10 rows"):
        parse_batch(buf, offs, out=np.zeros(9, PACKET_DTYPE))
    with pytest.raises(PacketError, match="PACKET_DTYPE"):
        parse_batch(buf, offs, out=np.zeros(10, np.int64))
    frozen = np.zeros(10, PACKET_DTYPE)
    frozen.flags.writeable = False
    with pytest.raises(PacketError, match="writable"):
        parse_batch(buf, offs, out=frozen)


def test_out_must_not_alias_the_buffer() -> None:
    frames = [tcp4_frame(), tcp4_frame()]
    out = np.zeros(2, PACKET_DTYPE)
    view = out.view(np.uint8)
    view[:59] = np.frombuffer(frames[0], np.uint8)
    with pytest.raises(PacketError, match="share memory"):
        parse_batch(view, [0, 59, 128], out=out)
    with pytest.raises(PacketError, match="PACKET_DTYPE"):
        parse_batch(*pack(frames), out=[])  # type: ignore[arg-type]


def test_non_contiguous_buffer_is_refused() -> None:
    arr = np.zeros(200, np.uint8)[::2]
    with pytest.raises(PacketError, match="contiguous"):
        parse_batch(arr, [0, 10])


def test_flow_keys_group_rows() -> None:
    frames = [tcp4_frame(sport=1 + i % 3) for i in range(9)] + [build_packet("::1", "::2")]
    keys = flow_keys(parse_batch(*pack(frames)))
    assert keys.dtype == FLOW_DTYPE and len(keys) == 10
    flows, counts = np.unique(keys, return_counts=True)
    assert sorted(counts.tolist()) == [1, 3, 3, 3]
    assert sorted(int(f["sport"]) for f in flows) == [0, 1, 2, 3]
    assert {int(f["version"]) for f in flows} == {4, 6}


def test_ipv4_as_uint32() -> None:
    frames = [build_packet("10.0.0.1", "192.168.255.254"), build_packet("0.0.0.0", "1.2.3.4")]
    rows = parse_batch(*pack(frames))
    assert ipv4_as_uint32(rows["src"]).tolist() == [0x0A000001, 0]
    assert ipv4_as_uint32(rows["dst"]).tolist() == [0xC0A8FFFE, 0x01020304]
    assert ipv4_as_uint32(rows["dst"]).dtype == np.uint32


def test_threads_share_the_parser() -> None:
    frames = [tcp4_frame(sport=i % 65536) for i in range(20_000)]
    buf, offs = pack(frames)
    expect = parse_batch(buf, offs)
    results: list[bool] = []

    def work() -> None:
        for _ in range(5):
            results.append(bool((parse_batch(buf, offs) == expect).all()))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20), st.sampled_from(["ethernet", "ip", "sll"]))
def test_random_bytes_batch_matches_single(frames: list[bytes], link: str) -> None:
    rows = parse_batch(*pack(frames), link)
    for frame, row in zip(frames, rows, strict=True):
        p = single(frame, link)
        if isinstance(p, str):
            message = describe_error(int(row["error"]))
            assert message is not None and p.startswith(message)
        else:
            assert row["error"] == 0 and row["version"] == (p.version or 0)
            assert (row["sport"], row["dport"]) == (p.sport or 0, p.dport or 0)


def _expected_row(p: Packet) -> dict[str, int]:
    """Every row column, computed from the single-packet parser."""
    flags = 0
    if p.is_fragment:
        flags |= 0x01
    if p.more_fragments:
        flags |= 0x02
    if p.dont_fragment:
        flags |= 0x04
    if p.sport is not None:
        flags |= FLAG_HAS_PORTS
    if p.icmp_type is not None:
        flags |= 0x10
    if p.vlan:
        flags |= FLAG_VLAN
    if p.ip_options or p.ext_headers:
        flags |= 0x40
    return {
        "version": p.version or 0,
        "proto": p.proto or 0,
        "ttl": p.ttl or 0,
        "tos": p.tos or 0,
        "length": p.length,
        "sport": p.sport or 0,
        "dport": p.dport or 0,
        "vlan": p.vlan[0] if p.vlan else 0,
        "vlan_count": len(p.vlan),
        "l3_offset": p.l3_offset,
        "l4_offset": p.l4_offset,
        "payload_offset": p.payload_offset,
        "flags": flags,
        "tcp_flags": (p.tcp_flags or 0) & 0xFF,
        "icmp_type": p.icmp_type or 0,
        "icmp_code": p.icmp_code or 0,
        "ethertype": p.ethertype,
        "frag_offset": p.frag_offset,
        "error": 0,
    }


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "v6": st.booleans(),
                "proto": st.sampled_from(["tcp", "udp", "icmp"]),
                "vlan": st.lists(st.integers(0, 4095), max_size=2),
                "link": st.sampled_from(["ethernet", "ip"]),
                "df": st.booleans(),
                "flags": st.integers(0, 0x1FF),
                "payload": st.binary(max_size=40),
                "tos": st.integers(0, 255),
            }
        ),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_every_row_column_matches_single_parse(specs: list[dict[str, object]], pad: bool) -> None:
    link = str(specs[0]["link"])
    frames = []
    for sp in specs:
        src, dst = ("2001:db8::1", "2001:db8::2") if sp["v6"] else ("10.1.2.3", "10.3.2.1")
        frame = build_packet(
            src,
            dst,
            proto=str(sp["proto"]),
            sport=1234,
            dport=80,
            payload=sp["payload"],  # type: ignore[arg-type]
            vlan=sp["vlan"] if link == "ethernet" else None,  # type: ignore[arg-type]
            link=link,
            dont_fragment=bool(sp["df"]) and not sp["v6"],
            tcp_flags=sp["flags"] if sp["proto"] == "tcp" else None,  # type: ignore[arg-type]
            tos=sp["tos"],  # type: ignore[arg-type]
        )
        frames.append(frame + (b"\x00" * 7 if pad else b""))  # link padding
    rows = parse_batch(*pack(frames), link)
    for frame, row in zip(frames, rows, strict=True):
        p = Packet.parse(frame, link)
        got = {k: int(row[k]) for k in _expected_row(p)}
        assert got == _expected_row(p)
        n = 4 if p.version == 4 else 16
        assert bytes(row["src"][:n]) == p.src_packed and not row["src"][n:].any()
        assert bytes(row["dst"][:n]) == p.dst_packed and not row["dst"][n:].any()
