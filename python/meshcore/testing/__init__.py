"""Helpers for testing code that uses meshcore: small in-process servers to point it at.

- :class:`~meshcore.testing.xds.XdsServer` — an ADS + EDS management server (Envoy xDS v3,
  state of the world) that serves endpoints to :class:`~meshcore.discovery.XdsDiscovery`, and
  listeners, clusters and endpoints to a proxyless gRPC client dialing ``xds:///<service>``.
"""
