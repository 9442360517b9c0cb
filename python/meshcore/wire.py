"""Batch packet parsing: many frames in one call, one numpy row per frame.

:func:`parse_batch` takes one contiguous bytes-like buffer holding N frames back to back and an
integer array of N + 1 offsets (frame ``i`` is ``buffer[offsets[i]:offsets[i + 1]]``) and returns a
numpy structured array of dtype :data:`PACKET_DTYPE`. The Rust parser runs with the GIL released.

Row fields (all integers in native byte order):

==================  ===========  ===================================================================
field               type         meaning
==================  ===========  ===================================================================
``src``, ``dst``    uint8[16]    IP addresses in network byte order. IPv4 sits in the **first
                                 4 bytes** (the other 12 are zero), so ``row["src"][:4]`` is
                                 the address; IPv6 uses all 16. See :func:`ipv4_as_uint32`.
``length``          uint32       IP datagram length in bytes, from the header (no padding)
``sport/dport``     uint16       transport ports; 0 when ``flags & FLAG_HAS_PORTS`` is clear
``vlan``            uint16       VLAN id of the outermost tag (0 when untagged)
``l3_offset`` ...   uint16       offsets of network header, transport header, payload
``proto``           uint8        upper-layer protocol (after IPv6 extension headers)
``version``         uint8        4, 6, or 0 for a frame that is not IP (ARP, ...)
``ttl``             uint8        TTL or hop limit
``error``           uint8        0, or a code explained by :func:`meshcore.describe_error`
``flags``           uint8        ``FLAG_*`` bits below
``tcp_flags``       uint8        low 8 TCP flag bits (FIN 0x01 ... CWR 0x80)
``icmp_type/code``  uint8        ICMP / ICMPv6 type and code when ``FLAG_HAS_ICMP``
``tos``             uint8        IPv4 TOS or IPv6 traffic class
``vlan_count``      uint8        number of VLAN tags
``ethertype``       uint16       EtherType after the tags
``frag_offset``     uint16       fragment offset in bytes
==================  ===========  ===================================================================

A bad frame does not fail the batch: its ``error`` column is set and the fields parsed before the
error stay filled in. A frame cut short by a capture's snapshot length has error
``ipv4: truncated`` (or ``ipv6: truncated``) but still carries its IP header fields, and its
ports when they were captured. Bad offsets (negative, past the end, decreasing) raise
:class:`PacketError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from meshcore import _meshcore
from meshcore.errors import PacketError

__all__ = [
    "FLAG_DONT_FRAGMENT",
    "FLAG_FRAGMENT",
    "FLAG_HAS_ICMP",
    "FLAG_HAS_PORTS",
    "FLAG_IP_EXTENSIONS",
    "FLAG_MORE_FRAGMENTS",
    "FLAG_VLAN",
    "FLOW_DTYPE",
    "PACKET_DTYPE",
    "flow_keys",
    "ipv4_as_uint32",
    "parse_batch",
]

FLAG_FRAGMENT = 0x01
FLAG_MORE_FRAGMENTS = 0x02
FLAG_DONT_FRAGMENT = 0x04
FLAG_HAS_PORTS = 0x08
FLAG_HAS_ICMP = 0x10
FLAG_VLAN = 0x20
FLAG_IP_EXTENSIONS = 0x40

_FIELDS: list[tuple[str, Any, int]] = [
    ("src", ("u1", (16,)), 0),
    ("dst", ("u1", (16,)), 16),
    ("length", "u4", 32),
    ("sport", "u2", 36),
    ("dport", "u2", 38),
    ("vlan", "u2", 40),
    ("l3_offset", "u2", 42),
    ("l4_offset", "u2", 44),
    ("payload_offset", "u2", 46),
    ("proto", "u1", 48),
    ("version", "u1", 49),
    ("ttl", "u1", 50),
    ("error", "u1", 51),
    ("flags", "u1", 52),
    ("tcp_flags", "u1", 53),
    ("icmp_type", "u1", 54),
    ("icmp_code", "u1", 55),
    ("tos", "u1", 56),
    ("vlan_count", "u1", 57),
    ("ethertype", "u2", 58),
    ("frag_offset", "u2", 60),
]

#: The dtype of :func:`parse_batch` rows (64 bytes, mirrors ``ROW_FIELDS`` of the Rust core).
PACKET_DTYPE: np.dtype[np.void] = np.dtype(
    {
        "names": [f[0] for f in _FIELDS],
        "formats": [f[1] for f in _FIELDS],
        "offsets": [f[2] for f in _FIELDS],
        "itemsize": _meshcore.ROW_LEN,
    }
)


#: The flow key of a row: the 5-tuple plus the IP version (see :func:`flow_keys`).
FLOW_DTYPE: np.dtype[np.void] = np.dtype(
    [
        ("src", "u1", (16,)),
        ("dst", "u1", (16,)),
        ("sport", "u2"),
        ("dport", "u2"),
        ("proto", "u1"),
        ("version", "u1"),
    ]
)


def parse_batch(
    buffer: Any,
    offsets: npt.ArrayLike,
    link: str = "ethernet",
    *,
    verify_checksums: bool = False,
    out: npt.NDArray[np.void] | None = None,
) -> npt.NDArray[np.void]:
    """Parse N frames from one buffer; return N rows of :data:`PACKET_DTYPE`.

    ``buffer`` is any C-contiguous bytes-like object (bytes, bytearray, memoryview, uint8 array).
    ``offsets`` holds N + 1 integers. ``link`` is "ethernet", "ip" (raw IP, as from a TUN
    device), "sll" or "sll2". With ``verify_checksums`` the IPv4 header and transport checksums
    are checked too, and a mismatch sets the row's ``error`` code. ``out``, a contiguous array of N
    :data:`PACKET_DTYPE` rows, is filled and returned instead of a new array: a polling loop
    that reuses it saves the allocation. Runs without the GIL.
    """
    # numpy reads [0, True] as [0, 1]: bools are refused by type, as classify_frames does.
    if isinstance(offsets, (list, tuple)):
        for i, o in enumerate(offsets):
            if isinstance(o, (bool, np.bool_)):
                raise TypeError(
                    f"offsets must be a one-dimensional integer array, not a bool (row {i})"
                )
    offs = np.asarray(offsets)
    if offs.dtype.kind == "b":
        raise TypeError("offsets must be a one-dimensional integer array, not an array of bool")
    if offs.ndim != 1 or not (offs.dtype.kind in "iu" or offs.size == 0):
        raise PacketError("offsets must be a one-dimensional integer array of N + 1 entries")
    if offs.dtype.kind == "u" and offs.size and int(offs.max()) > np.iinfo(np.int64).max:
        raise PacketError("offsets do not fit in int64")
    offs = np.ascontiguousarray(offs, dtype=np.int64)
    raw_out = None
    if out is not None:
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != PACKET_DTYPE
            or out.ndim != 1
            or not out.flags.c_contiguous
        ):
            raise PacketError("out must be a contiguous one-dimensional PACKET_DTYPE array")
        raw_out = out.view(np.uint8).reshape(len(out), _meshcore.ROW_LEN)
    raw = _meshcore._parse_batch(buffer, offs, link, verify_checksums, raw_out)
    return out if out is not None else raw.view(PACKET_DTYPE).reshape(-1)


def ipv4_as_uint32(addresses: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """IPv4 addresses of a ``src`` / ``dst`` column as uint32 values (10.0.0.1 -> 0x0a000001)."""
    first4 = np.ascontiguousarray(addresses[:, :4])
    return first4.view(">u4").reshape(-1).astype(np.uint32)


def flow_keys(rows: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """The 5-tuple and IP version of each :data:`PACKET_DTYPE` row as a :data:`FLOW_DTYPE` array.

    Ready for grouping: ``flows, inverse = np.unique(flow_keys(rows), return_inverse=True)``.
    Rows without ports (ICMP, non-first fragments) have 0 in ``sport`` and ``dport``.
    """
    keys = np.empty(len(rows), dtype=FLOW_DTYPE)
    for name in FLOW_DTYPE.names or ():
        keys[name] = rows[name]
    return keys
