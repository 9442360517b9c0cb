"""Read and write capture files: pcap (micro- and nanosecond, either byte order) and pcapng.

:func:`read_pcap` returns a :class:`Capture`: every record's bytes packed into one buffer with
N + 1 offsets, the form :func:`meshcore.parse_batch` takes, plus timestamps. Record scanning runs in
Rust without the GIL; gzip-compressed files are read transparently.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from meshcore import _meshcore
from meshcore._meshcore import Packet
from meshcore.errors import CaptureError, ConfigError
from meshcore.wire import parse_batch

__all__ = ["LINKTYPES", "Capture", "read_pcap", "write_pcap"]

#: pcap link-type numbers of the link names meshcore parses.
LINKTYPES: dict[str, int] = {"ethernet": 1, "ip": 101, "sll": 113, "sll2": 276}
_LINK_OF: dict[int, str] = {
    1: "ethernet",
    12: "ip",
    101: "ip",
    228: "ip",
    229: "ip",
    113: "sll",
    276: "sll2",
}


@dataclass(frozen=True, eq=False)
class Capture:
    """The records of a capture file, packed for batch parsing."""

    #: Captured bytes of all records, back to back.
    data: bytes
    #: N + 1 offsets into ``data``.
    offsets: npt.NDArray[np.int64]
    #: Capture time of each record, nanoseconds since the Unix epoch.
    timestamps_ns: npt.NDArray[np.int64]
    #: Length of each packet on the wire, bytes (larger than captured when snapped).
    wire_lengths: npt.NDArray[np.uint32]
    #: Interface index of each record (always 0 for classic pcap).
    interfaces: npt.NDArray[np.uint32]
    #: pcap link type of each interface.
    linktypes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {n} records")
        i %= n
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self)):
            yield self[i]

    @property
    def timestamps(self) -> npt.NDArray[np.float64]:
        """Capture times in seconds since the Unix epoch (float64)."""
        return self.timestamps_ns.astype(np.float64) / 1e9

    @property
    def link(self) -> str:
        """The link name shared by all records ("ethernet", "ip", "sll" or "sll2")."""
        used = {self.linktypes[i] for i in np.unique(self.interfaces)} or set(self.linktypes)
        names = {_LINK_OF.get(t) for t in used}
        if len(names) != 1 or None in names:
            raise CaptureError(
                f"capture has link types {sorted(used)}; meshcore parses "
                "1 (ethernet), 101/12/228/229 (raw ip), 113 (sll) and 276 (sll2) one at a time"
            )
        (name,) = names
        assert name is not None
        return name

    def parse(self, *, verify_checksums: bool = False) -> npt.NDArray[np.void]:
        """Parse every record with :func:`meshcore.parse_batch`."""
        return parse_batch(self.data, self.offsets, self.link, verify_checksums=verify_checksums)

    def packets(self) -> Iterator[Packet]:
        """Parse records one at a time (raises on the first malformed one)."""
        link = self.link
        for rec in self:
            yield Packet.parse(rec, link)


def _load(source: str | os.PathLike[str] | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            raw = f.read()
    else:
        raw = source.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise CaptureError(f"capture: bad gzip data: {e}") from e
    return raw


def read_pcap(source: str | os.PathLike[str] | bytes | BinaryIO) -> Capture:
    """Read a pcap or pcapng capture (optionally gzip-compressed) from a path, bytes or file."""
    data, offsets, ts, wire, ifaces, linktypes = _meshcore._read_capture(_load(source))
    return Capture(data, offsets, ts, wire, ifaces, tuple(linktypes))


def write_pcap(
    dest: str | os.PathLike[str] | BinaryIO,
    packets: Iterable[bytes],
    *,
    link: str = "ethernet",
    timestamps: Iterable[float] | None = None,
    timestamps_ns: Iterable[int] | None = None,
    nanosecond: bool = False,
    snaplen: int = 262144,
) -> int:
    """Write frames to a classic little-endian pcap file; return the number written.

    Times are ``timestamps`` in seconds or, exactly, ``timestamps_ns`` in nanoseconds since the
    Unix epoch (default: 0, 1 ms, 2 ms, ...). ``nanosecond`` selects the nanosecond pcap format
    (else microseconds, rounded). Frames longer than ``snaplen`` bytes are cut to it.
    """
    if timestamps is not None and timestamps_ns is not None:
        raise ConfigError("pass timestamps or timestamps_ns, not both")
    if not 0 < snaplen < 2**32:
        raise ConfigError(f"snaplen must be in 1..2**32 - 1 bytes, got {snaplen}")
    if timestamps is not None:
        timestamps_ns = (round(t * 1e9) for t in timestamps)
    if link not in LINKTYPES:
        raise ConfigError(f"unknown link type {link!r}: expected one of {sorted(LINKTYPES)}")
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    per_tick = 1 if nanosecond else 1000
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, LINKTYPES[link])]
    ts_iter = iter(timestamps_ns) if timestamps_ns is not None else None
    n = 0
    for n, pkt in enumerate(packets, start=1):
        t_ns = next(ts_iter, None) if ts_iter is not None else (n - 1) * 1_000_000
        if t_ns is None:
            raise ConfigError(f"fewer timestamps than packets ({n - 1})")
        sec, frac_ns = divmod(int(t_ns), 1_000_000_000)
        if not 0 <= sec < 2**32:
            raise ConfigError(f"timestamp of packet {n - 1} is outside the pcap range (1970-2106)")
        frac = (frac_ns + per_tick // 2) // per_tick
        if frac == 1_000_000_000 // per_tick:
            sec, frac = sec + 1, 0
        cap = bytes(pkt[:snaplen])
        out.append(struct.pack("<IIII", sec, frac, len(cap), len(pkt)))
        out.append(cap)
    blob = b"".join(out)
    if isinstance(dest, str | os.PathLike):
        with open(dest, "wb") as f:
            f.write(blob)
    else:
        dest.write(blob)
    return n
