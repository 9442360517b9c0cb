"""Health checking: active probes and passive outlier detection.

Active checks probe each endpoint on an interval (:class:`TcpProbe`, :class:`HttpProbe`,
:class:`GrpcProbe` for the gRPC Health Checking Protocol, Check or Watch) and keep its health with
Envoy's thresholds. A :class:`HealthChecker` takes a discovery source and is one itself, yielding
the healthy endpoints::

    async with HealthChecker(GrpcProbe(), DnsDiscovery("_grpc._tcp.echo.")) as h:
        async for healthy in h.watch():   # frozenset[Endpoint] of the healthy ones
            ...

Passive checks watch real traffic: an :class:`OutlierDetector` ejects endpoints with Envoy's
outlier detection (consecutive 5xx, consecutive gateway failures, success rate, failure
percentage), its semantics and defaults. Both can drive a :class:`~meshcore.Balancer`'s health;
share one :class:`BalancerHealth` between them so that an endpoint is healthy only when both agree.
Transitions are logged on the ``meshcore.health`` logger.
"""

from meshcore.health._binding import BalancerHealth, endpoint_name
from meshcore.health.checker import EndpointHealth, HealthChecker
from meshcore.health.outlier import EjectionType, OutlierDetector, OutlierHost
from meshcore.health.probes import (
    GRPC_KEEPALIVE_OPTIONS,
    CheckResult,
    GrpcProbe,
    HttpProbe,
    Probe,
    TcpProbe,
)

__all__ = [
    "GRPC_KEEPALIVE_OPTIONS",
    "BalancerHealth",
    "CheckResult",
    "EjectionType",
    "EndpointHealth",
    "GrpcProbe",
    "HealthChecker",
    "HttpProbe",
    "OutlierDetector",
    "OutlierHost",
    "Probe",
    "TcpProbe",
    "endpoint_name",
]
