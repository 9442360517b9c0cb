"""The meshcore exception tree.

Every exception meshcore raises on purpose derives from :class:`MeshcoreError`::

    MeshcoreError
     ├── PacketError(ValueError)    malformed or truncated packet bytes, bad packet arguments
     ├── ConfigError(ValueError)    bad parameters or configuration (unknown link type, ...)
     ├── CaptureError(ValueError)   malformed pcap / pcapng file
     ├── RouteError(ValueError)     bad prefix, address, route value, batch row or route-file line
     ├── RuleError(ValueError)      bad classifier rule or packet field, rule-file line, batch row
     ├── NoEndpointError(LookupError) a load balancer has no endpoint it may pick
     ├── DiscoveryError(OSError)    a discovery source cannot be read (server down, bad file)
     └── InternalError(RuntimeError) a bug in meshcore (a Rust panic); please report it

The value errors also subclass :class:`ValueError`, so code that already catches ``ValueError``
keeps working. Errors from the Rust core are mapped to these classes in one place
(``rust/meshcore-py/src/error.rs``).
"""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "ConfigError",
    "DiscoveryError",
    "InternalError",
    "MeshcoreError",
    "NoEndpointError",
    "PacketError",
    "RouteError",
    "RuleError",
]


class MeshcoreError(Exception):
    """Root of all meshcore exceptions."""


class PacketError(MeshcoreError, ValueError):
    """Packet bytes are malformed or truncated; the message names the layer and why."""


class ConfigError(MeshcoreError, ValueError):
    """A parameter or configuration value is invalid."""


class CaptureError(MeshcoreError, ValueError):
    """A capture file is malformed; the message gives the byte offset."""


class RouteError(MeshcoreError, ValueError):
    """A prefix, address or route value is invalid (host bits set, length out of range, value
    outside 0..2**32 - 2); for batches and files the message names the row or line."""


class RuleError(MeshcoreError, ValueError):
    """A classifier rule or its input is invalid (inverted port range, host bits in a prefix,
    unknown protocol name, duplicate rule id, mixed address families, a batch column of the wrong
    dtype or shape); for files and batches the message names the line or row. The classifier is
    left unchanged."""


class NoEndpointError(MeshcoreError, LookupError):
    """A :class:`~meshcore.Balancer` has no endpoint it may pick: the endpoint set is empty,
    every endpoint is draining, or none is healthy while panic mode is disabled
    (``panic_threshold=0``). A :class:`LookupError`, as ``random.choice([])`` raises one."""


class DiscoveryError(MeshcoreError, OSError):
    """A discovery source could not be read: its server is unreachable or answers with an error
    (DNS SERVFAIL, REFUSED, timeout), or its file is missing or does not parse (the message gives
    the line where the parser knows it). Raised by ``resolve()``; ``watch()`` never raises it but
    keeps the last good set, marks the source ``stale`` and retries with backoff."""


class InternalError(MeshcoreError, RuntimeError):
    """An internal error (a Rust panic) that meshcore caught instead of aborting."""
