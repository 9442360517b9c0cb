"""Service discovery: where a service's endpoints are, kept up to date.

Every source has one shape::

    async with DnsDiscovery("_grpc._tcp.echo.example.") as d:
        async for endpoints in d.watch():   # a frozenset[Endpoint], each time it changes
            balancer.update(endpoints)

``await source.resolve()`` reads once. ``source.stale`` is True while the source cannot be read and
``watch()`` serves the last good set; the source retries with exponential backoff and recovers by
itself. Malformed records and entries are skipped with a warning on the ``meshcore.discovery``
logger; they never stop the watcher.

Sources so far:

- :class:`StaticDiscovery` — a fixed list.
- :class:`FileDiscovery` — a JSON or YAML file, reloaded when it changes.
- :class:`DnsDiscovery` — DNS SRV or A/AAAA (also Consul's DNS interface), re-read on TTL expiry.
- :class:`EtcdDiscovery` — etcd v3 keys in gRPC-go's ``naming/endpoints`` format, watched; with
  :class:`EtcdRegistration` to register one's own endpoint under a kept-alive lease.

Still to come (issue 7): ``EtcdDiscovery`` / ``EtcdRegistration`` (etcd v3 JSON gateway, the
``naming/endpoints`` key format), ``ConsulDiscovery`` / ``ConsulRegistration`` (blocking queries,
TTL checks), ``XdsDiscovery`` (ADS/EDS) with a test control plane checked against grpcio's ``xds:``
resolver, ``meshcore.health`` (TCP/HTTP/gRPC active probes, Envoy-style outlier detection), and
the update-latency benchmarks in ``benches/``.
"""

from meshcore.discovery._base import DiscoverySource, EndpointSet
from meshcore.discovery.dns import DnsDiscovery
from meshcore.discovery.etcd import EtcdDiscovery, EtcdRegistration
from meshcore.discovery.static import FileDiscovery, StaticDiscovery, parse_endpoint
from meshcore.endpoint import Endpoint, Metadata

__all__ = [
    "DiscoverySource",
    "DnsDiscovery",
    "Endpoint",
    "EndpointSet",
    "EtcdDiscovery",
    "EtcdRegistration",
    "FileDiscovery",
    "Metadata",
    "StaticDiscovery",
    "parse_endpoint",
]
