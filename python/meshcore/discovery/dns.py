"""Endpoints from DNS: SRV records (RFC 2782) or plain A/AAAA records, re-read on TTL expiry.

Built on dnspython's asyncio resolver. Consul's DNS interface works the same way
(``_web._tcp.service.consul`` for SRV, ``web.service.consul`` with a port for A/AAAA).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import dns.rrset

from meshcore.discovery._base import (
    DiscoverySource,
    EndpointSet,
    _require_positive,
)
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["DnsDiscovery"]

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class DnsDiscovery(DiscoverySource):
    """Endpoints of ``name`` from DNS.

    A name whose first label starts with ``_`` (``_grpc._tcp.echo.example``) is read as SRV: each
    record gives a target, a port and a weight; the target's A and AAAA records (from the answer's
    additional section when the server put them there, else queried) give one :class:`Endpoint`
    per address, with the SRV port, ``weight = max(srv_weight, 1)`` (a balancer needs weights >= 1)
    and metadata ``target`` and ``priority``. Any other name is read as A and AAAA records, each
    address an endpoint on ``port`` (required then, and refused for SRV names). When the
    additional section holds any address of a target, only those are used (Knot and Consul send
    both A and AAAA there; a server that sent only one family would hide the other). One SRV record
    whose target has several addresses gives each address the record's full weight.

    **Priority.** With ``srv_priority="lowest"`` (the default) only the records of the lowest
    priority that yields at least one address are used, as RFC 2782 asks: a higher priority is a
    standby that is used only when every target of the lower one is gone from DNS. With
    ``srv_priority="all"`` every record is used and the priority is left in the metadata for a
    health-aware balancer to act on.

    **Re-reading.** The set is read again when the smallest TTL in the answers expires, clamped to
    ``[min_ttl, max_ttl]`` seconds (so a TTL of 0 cannot make a busy loop and a TTL of a day is
    still re-checked). A name that does not exist (NXDOMAIN) or has no such records is an
    authoritative empty set, re-read after ``max(min_ttl, min(negative_ttl, max_ttl))``.

    **Faults.** A timeout, SERVFAIL, REFUSED or unreachable server (for the SRV name or for any
    target) makes the read fail: ``resolve()`` raises :class:`DiscoveryError`, ``watch()`` keeps
    the last good set, sets ``stale`` and retries with backoff. Unusable records (port 0, a target
    with no addresses) are skipped with a warning, logged once per distinct problem. A target of
    ``.`` ("service decidedly not available") is skipped silently.

    ``nameservers`` (IP addresses) and ``nameserver_port`` select the server; without them the
    system's ``resolv.conf`` is used. ``timeout`` is per query attempt, ``lifetime`` per lookup
    (dnspython may overshoot the lifetime a little).
    """

    def __init__(
        self,
        name: str,
        *,
        port: int | None = None,
        nameservers: Sequence[str] | None = None,
        nameserver_port: int = 53,
        min_ttl: float = 1.0,
        max_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        srv_priority: Literal["lowest", "all"] = "lowest",
        timeout: float = 1.0,
        lifetime: float = 3.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(backoff_initial=backoff_initial, backoff_max=backoff_max)
        try:
            self.name = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise ConfigError(f"bad DNS name {name!r}: {exc}") from exc
        first = self.name.labels[0] if self.name.labels else b""
        self.srv = first.startswith(b"_")
        if self.srv and port is not None:
            raise ConfigError(f"{name!r} is an SRV name: ports come from its records, not `port`")
        if not self.srv:
            if port is None:
                raise ConfigError(f"{name!r} is read as A/AAAA: give the `port` to use")
            Endpoint("x", port)  # validates the port
        self.port = port
        if srv_priority not in ("lowest", "all"):
            raise ConfigError(f"srv_priority must be 'lowest' or 'all', got {srv_priority!r}")
        self._srv_priority = srv_priority
        self._min_ttl = _require_positive("min_ttl", min_ttl)
        self._max_ttl = _require_positive("max_ttl", max_ttl)
        self._negative_ttl = _require_positive("negative_ttl", negative_ttl)
        if self._min_ttl > self._max_ttl:
            raise ConfigError("need min_ttl <= max_ttl")
        if nameservers is None:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(nameservers)
        resolver.port = nameserver_port
        resolver.timeout = _require_positive("timeout", timeout)
        resolver.lifetime = _require_positive("lifetime", lifetime)
        self._resolver = resolver
        self.lookups = 0
        """How many reads of the name were made (for tests and metrics)."""

    def _describe(self) -> str:
        return self.name.to_text()

    def _clamp(self, ttl: float) -> float:
        return max(self._min_ttl, min(ttl, self._max_ttl))

    async def _query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.resolver.Answer | None:
        """One query; None when the name or the type does not exist (an authoritative no)."""
        try:
            return await self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoNameservers as exc:
            raise DiscoveryError(f"{name} {rdtype.name}: no server answered: {exc}") from exc
        except dns.exception.Timeout as exc:
            raise DiscoveryError(f"{name} {rdtype.name}: timed out") from exc
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"{name} {rdtype.name}: {exc}") from exc

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        self.lookups += 1
        if self.srv:
            return await self._fetch_srv()
        assert self.port is not None
        answers = await asyncio.gather(*(self._query(self.name, t) for t in _ADDRESS_TYPES))
        addresses, ttl = _addresses(answers)
        if not addresses:
            self._warn_once(f"{self.name} has no A or AAAA records: the set is empty")
            return frozenset(), self._negative()
        endpoints = set()
        for address in addresses:
            if (ep := self._endpoint(address, self.port, 1, None)) is not None:
                endpoints.add(ep)
        return frozenset(endpoints), self._clamp(ttl)

    def _endpoint(
        self, address: str, port: int, weight: int, meta: dict[str, str] | None
    ) -> Endpoint | None:
        """One endpoint; None (with a warning) when a record gives one Endpoint refuses: one
        bad record must never fail the whole read."""
        try:
            return Endpoint(address, port, weight, meta or {})
        except Exception as exc:
            self._warn_once(f"address {address!r} port {port} skipped: {exc}")
            return None

    def _negative(self) -> float:
        return self._clamp(self._negative_ttl)

    async def _fetch_srv(self) -> tuple[EndpointSet, float | None]:
        answer = await self._query(self.name, dns.rdatatype.SRV)
        if answer is None or answer.rrset is None:
            self._warn_once(f"{self.name} has no SRV records: the set is empty")
            return frozenset(), self._negative()
        ttl = float(answer.rrset.ttl)
        records = []
        for rr in answer.rrset:
            if rr.target == dns.name.root:
                continue
            if rr.port == 0:
                self._warn_once(f"SRV record {rr} skipped: port 0")
                continue
            records.append(rr)
        targets = {rr.target for rr in records}
        glue = _glue(answer.response)
        found = await asyncio.gather(*(self._target_addresses(t, glue) for t in targets))
        by_target = {}
        for target, (addresses, target_ttl) in zip(targets, found, strict=True):
            ttl = min(ttl, target_ttl)
            if not addresses:
                self._warn_once(f"SRV target {target} skipped: it has no A or AAAA records")
            by_target[target] = addresses

        endpoints: dict[int, set[Endpoint]] = {}
        for rr in records:
            meta = {"target": rr.target.to_text(omit_final_dot=True), "priority": str(rr.priority)}
            for address in by_target[rr.target]:
                ep = self._endpoint(address, rr.port, max(rr.weight, 1), meta)
                if ep is not None:
                    endpoints.setdefault(rr.priority, set()).add(ep)
        if self._srv_priority == "all":
            return frozenset().union(*endpoints.values()), self._clamp(ttl)
        for priority in sorted(endpoints):
            # The first priority with any address; empty groups never reach the dict.
            return frozenset(endpoints[priority]), self._clamp(ttl)
        return frozenset(), self._clamp(ttl)

    async def _target_addresses(
        self, target: dns.name.Name, glue: dict[dns.name.Name, list[dns.rrset.RRset]]
    ) -> tuple[list[str], float]:
        rrsets = glue.get(target)
        if rrsets:
            addresses = [rr.to_text() for rrset in rrsets for rr in rrset]
            return addresses, float(min(rrset.ttl for rrset in rrsets))
        answers = await asyncio.gather(*(self._query(target, t) for t in _ADDRESS_TYPES))
        return _addresses(answers)


def _addresses(answers: Iterable[dns.resolver.Answer | None]) -> tuple[list[str], float]:
    """The addresses in A/AAAA answers and their smallest TTL (inf when there are none)."""
    addresses: list[str] = []
    ttl = float("inf")
    for answer in answers:
        if answer is not None and answer.rrset is not None:
            addresses.extend(rr.to_text() for rr in answer.rrset)
            ttl = min(ttl, float(answer.rrset.ttl))
    return addresses, ttl


def _glue(response: dns.message.Message) -> dict[dns.name.Name, list[dns.rrset.RRset]]:
    """A/AAAA records of the additional section, by owner name."""
    glue: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
    for rrset in response.additional:
        if rrset.rdtype in _ADDRESS_TYPES:
            glue.setdefault(rrset.name, []).append(rrset)
    return glue
