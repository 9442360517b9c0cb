"""meshcore: data-plane primitives for container networks and service meshes.

A Rust core (packet parsing, route tables, packet classifiers, queues, meters and load
balancers) with a Python face. The public surface is listed in ``__all__``;
``meshcore._meshcore`` is private.
"""

from meshcore import errors
from meshcore._meshcore import (
    Balancer,
    Classifier,
    CoDel,
    EndpointInfo,
    Gcra,
    LeakyBucket,
    Packet,
    RedQueue,
    RouteTable,
    SrTCM,
    TokenBucket,
    TrTCM,
    TrTCM4115,
    __version__,
    build_packet,
    checksum,
    decrement_ttl,
    describe_error,
    mark_ce,
    update_checksums,
)
from meshcore.endpoint import Endpoint
from meshcore.errors import (
    CaptureError,
    ConfigError,
    DiscoveryError,
    InternalError,
    MeshcoreError,
    NoEndpointError,
    PacketError,
    RouteError,
    RuleError,
)
from meshcore.queues import Color, Verdict
from meshcore.ratelimit import RateLimiter
from meshcore.wire import FLOW_DTYPE, PACKET_DTYPE, flow_keys, ipv4_as_uint32, parse_batch

__all__ = [
    "FLOW_DTYPE",
    "PACKET_DTYPE",
    "Balancer",
    "CaptureError",
    "Classifier",
    "CoDel",
    "Color",
    "ConfigError",
    "DiscoveryError",
    "Endpoint",
    "EndpointInfo",
    "Gcra",
    "InternalError",
    "LeakyBucket",
    "MeshcoreError",
    "NoEndpointError",
    "Packet",
    "PacketError",
    "RateLimiter",
    "RedQueue",
    "RouteError",
    "RouteTable",
    "RuleError",
    "SrTCM",
    "TokenBucket",
    "TrTCM",
    "TrTCM4115",
    "Verdict",
    "__version__",
    "build_packet",
    "checksum",
    "decrement_ttl",
    "describe_error",
    "errors",
    "flow_keys",
    "ipv4_as_uint32",
    "mark_ce",
    "parse_batch",
    "update_checksums",
]
