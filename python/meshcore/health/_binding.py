"""Where health reports meet a :class:`~meshcore.Balancer`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from meshcore._meshcore import Balancer
from meshcore.endpoint import Endpoint

__all__ = ["BalancerHealth", "endpoint_name"]

log = logging.getLogger("meshcore.health")


def endpoint_name(endpoint: Endpoint | str) -> str:
    """The name an endpoint has in a :class:`~meshcore.Balancer`: its ``address``
    (``"host:port"``, IPv6 in brackets); a ``str`` is taken as the name itself."""
    return endpoint if isinstance(endpoint, str) else endpoint.address


class BalancerHealth:
    """The health of a :class:`~meshcore.Balancer`'s endpoints as the combination of several
    reporters, like Envoy's host health flags: an endpoint is healthy in the balancer when no
    reporter holds it unhealthy. :class:`~meshcore.health.HealthChecker` reports as
    ``"active"`` (Envoy's ``FAILED_ACTIVE_HC``), :class:`~meshcore.health.OutlierDetector` as
    ``"outlier"`` (``FAILED_OUTLIER_CHECK``).

    Pass the same ``BalancerHealth`` to both so that neither undoes the other (an ejected endpoint
    that passes its active checks stays out). Given a bare ``Balancer``, each creates its own
    and must then be the balancer's only health reporter.
    """

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self._down: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"<BalancerHealth {len(self.balancer)} endpoints, {len(self._down)} held down>"

    def set(self, name: str, reporter: str, healthy: bool) -> None:
        """Record ``reporter``'s verdict on ``name`` and update the balancer. A name the balancer
        does not know (it left the set) is ignored."""
        down = self._down.setdefault(name, set())
        if healthy:
            down.discard(reporter)
        else:
            down.add(reporter)
        if not down:
            del self._down[name]
        self._apply(name)

    def is_healthy(self, name: str) -> bool:
        """False while some reporter holds ``name`` unhealthy."""
        return name not in self._down

    def set_endpoints(self, endpoints: Mapping[str, float] | Iterable[str]) -> None:
        """Replace the balancer's endpoint set (a dict name -> weight, or names) and apply the
        verdicts held for the names in it; verdicts for names that left are dropped."""
        if isinstance(endpoints, Mapping):
            weights = dict(endpoints)
        else:
            weights = dict.fromkeys(endpoints, 1.0)
        self.balancer.set_endpoints(weights)
        for name in list(self._down):
            if name not in weights:
                del self._down[name]
        for name in self._down:
            self._apply(name)

    def _apply(self, name: str) -> None:
        try:
            self.balancer.set_health(name, name not in self._down)
        except KeyError:
            log.debug("%r: %s is not in the balancer; verdict kept", self, name)


def as_binding(target: Balancer | BalancerHealth | None) -> BalancerHealth | None:
    if target is None or isinstance(target, BalancerHealth):
        return target
    return BalancerHealth(target)
