"""Service discovery: where a service's endpoints are, kept up to date.

Every source has one shape::

    async with DnsDiscovery("_grpc._tcp.echo.example.") as d:
        async for endpoints in d.watch():   # a frozenset[Endpoint], each time it changes
            balancer.update(endpoints)

``await source.resolve()`` reads once. ``source.stale`` is True while the source cannot be read and
``watch()`` serves the last good set; the source retries with exponential backoff and recovers by
itself. Malformed records and entries are skipped with a warning on the ``meshcore.discovery``
logger; they never stop the watcher.

Sources:

- :class:`StaticDiscovery` — a fixed list.
- :class:`FileDiscovery` — a JSON or YAML file, reloaded when it changes.
- :class:`DnsDiscovery` — DNS SRV or A/AAAA (also Consul's DNS interface), re-read on TTL expiry.
- :class:`ConsulDiscovery` — Consul's health API with blocking queries; :class:`ConsulRegistration`
  registers an endpoint with a TTL check kept passing.
- :class:`XdsDiscovery` — an xDS management server's endpoints (Envoy v3 EDS over ADS or EDS).
- :class:`EtcdDiscovery` — etcd v3 keys in gRPC-go's ``naming/endpoints`` format, watched; with
  :class:`EtcdRegistration` to register one's own endpoint under a kept-alive lease.

Health probes and outlier detection live in :mod:`meshcore.health`.
"""

from meshcore.discovery._base import DiscoverySource, EndpointSet
from meshcore.discovery.consul import ConsulDiscovery, ConsulRegistration
from meshcore.discovery.dns import DnsDiscovery
from meshcore.discovery.etcd import EtcdDiscovery, EtcdRegistration
from meshcore.discovery.static import FileDiscovery, StaticDiscovery, parse_endpoint
from meshcore.discovery.xds import XdsDiscovery
from meshcore.endpoint import Endpoint, Metadata

__all__ = [
    "ConsulDiscovery",
    "ConsulRegistration",
    "DiscoverySource",
    "DnsDiscovery",
    "Endpoint",
    "EndpointSet",
    "EtcdDiscovery",
    "EtcdRegistration",
    "FileDiscovery",
    "Metadata",
    "StaticDiscovery",
    "XdsDiscovery",
    "parse_endpoint",
]
