"""Consul: endpoints from the health API with blocking queries, and registration with a TTL check.

Built on httpx against the agent's documented HTTP API (``/v1/health/service``,
``/v1/agent/service/register``, ``/v1/agent/check/pass``); no Consul client library is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from meshcore._aio import stop_task
from meshcore._http import ssl_verify
from meshcore._meshcore import TokenBucket
from meshcore.discovery._base import (
    DiscoverySource,
    EndpointSet,
    _require_positive,
    log,
)
from meshcore.discovery.static import parse_endpoint
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["ConsulDiscovery", "ConsulRegistration"]

# Consul caps a blocking query's wait at 10 minutes.
_MAX_WAIT = 600.0
# Worst first: an instance's health is the worst status among its checks.
_SEVERITY = {"passing": 0, "warning": 1, "critical": 2}


class _Agent:
    """What both classes share: the agent's base URL, the token header and the timeouts, and an
    httpx client that lives while the owner runs (a short-lived one serves calls made outside)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        read_timeout: float,
        verify: ssl.SSLContext | str | bool,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigError(f"url must be a str such as 'http://127.0.0.1:8500', got {url!r}")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ConfigError(f"bad Consul URL {url!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"Consul URL must be http:// or https:// with a host, got {url!r}")
        self.url = url.rstrip("/")
        if token is not None and (not isinstance(token, str) or not token):
            raise ConfigError("token must be a non-empty str or None")
        # Uncompressed: the agent is local or near, and gzip costs both sides CPU on every
        # blocking query (a health list of thousands of instances is megabytes of JSON).
        self.headers = {"Accept-Encoding": "identity"}
        if token:
            self.headers["X-Consul-Token"] = token
        self.timeout = httpx.Timeout(timeout, read=read_timeout)
        if not isinstance(verify, ssl.SSLContext | str | bool):
            raise ConfigError(
                f"verify must be an ssl.SSLContext, a CA path or a bool, got {verify!r}"
            )
        self.verify = ssl_verify(verify)  # a CA path is loaded now: a bad one fails here
        self.client: httpx.AsyncClient | None = None

    def open(self) -> None:
        if self.client is None:
            self.client = self._new_client()

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            timeout=self.timeout,
            verify=self.verify,
        )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self.client is not None:
            yield self.client
        else:
            async with self._new_client() as client:
                yield client

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> httpx.Response:
        """One call; a transport failure raises :class:`DiscoveryError`. The caller checks the
        status."""
        async with self.session() as client:
            try:
                return await client.request(method, path, params=params, json=body)
            except httpx.HTTPError as exc:
                raise DiscoveryError(
                    f"Consul agent {self.url}: {method} {path}: {type(exc).__name__}: {exc}"
                ) from exc


def _error(method: str, path: str, response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")[:300]
    return f"{method} {path}: HTTP {response.status_code}: {text}"


def _seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds, or ConfigError."""
    seconds = _require_positive(name, value)
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return seconds


def _next_index(old: int, returned: int) -> int:
    """The index of the next blocking query, by Consul's rules: an index that went backwards
    (the agent lost its state) is reset, and an index below 1 is never blocked on (Consul would
    answer at once, every time: a busy loop), so it becomes 1."""
    if returned < old:
        returned = 0
    return max(returned, 1)


def _duration(seconds: float) -> str:
    """A Go duration string Consul accepts, to the millisecond (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


class ConsulDiscovery(DiscoverySource):
    """Endpoints of ``service`` from a Consul agent's health API, kept current by blocking queries.

    ``url`` is the agent's HTTP address (``http://127.0.0.1:8500``). The source reads
    ``GET /v1/health/service/<service>`` (with ``?passing`` unless ``passing_only=False``), then
    repeats it as a blocking query (``index`` = the last ``X-Consul-Index``, ``wait`` seconds), so
    a change is seen as soon as the agent knows it, not after a poll interval. Consul's rules for
    blocking queries are followed: an index that goes backwards (the agent restarted and lost its
    state) is reset, an index below 1 is never blocked on, and the loop is rate-limited to
    ``max_rate`` queries per second with a burst of 2. A return is no proof of change: an equal set
    is not yielded again.

    **Mapping.** Each entry becomes one :class:`Endpoint`:

    - ``host`` = ``Service.Address``, or ``Node.Address`` when that is empty;
    - ``port`` = ``Service.Port``;
    - ``weight`` = ``Service.Weights.Passing`` (``Weights.Warning`` for an instance whose worst
      check is ``warning``, as Consul's DNS does), at least 1; 1 when absent;
    - ``metadata`` = ``Service.Meta`` plus ``consul.service_id`` (``Service.ID``),
      ``consul.node`` (``Node.Node``), ``consul.datacenter`` (``Node.Datacenter``, when given),
      ``consul.health`` (the worst status among the instance's checks, node checks included:
      ``passing``, ``warning`` or ``critical``) and ``consul.tags`` (the tags joined by ``,``,
      only when there are tags). Consul meta keys cannot contain a dot, so these never collide.

    An entry without a usable address or port (port 0 or outside 1..65535), with a non-integer
    weight or with non-string meta values is skipped with a warning (logged once per distinct
    problem); an unknown service is an empty set (Consul answers 200 ``[]``).

    **Options.** ``filter`` is a Consul filter expression (``Service.Meta.zone == "a"``); ``tag``
    keeps the instances with that tag; ``datacenter`` asks another datacenter; ``token`` is sent as
    ``X-Consul-Token``; ``allow_stale`` lets any server answer (Consul's ``?stale``), trading
    freshness for load; ``verify`` is httpx's TLS setting for an ``https`` URL (a CA bundle
    path, an :class:`ssl.SSLContext`, or False). ``wait`` (seconds, at most 600) bounds each
    blocking query; Consul may add up to ``wait/16``, so the HTTP read timeout is
    ``wait + wait/16 + timeout``. ``timeout`` (seconds) bounds connecting and plain reads.

    **Faults.** An unreachable agent, an HTTP error status or a body that is not a JSON list makes
    the read fail: ``resolve()`` raises :class:`DiscoveryError`; ``watch()`` keeps the last good
    set, sets ``stale`` and retries with backoff, starting again with a non-blocking read.
    """

    def __init__(
        self,
        url: str,
        service: str,
        *,
        tag: str | None = None,
        filter: str | None = None,  # Consul's own name for it
        datacenter: str | None = None,
        token: str | None = None,
        passing_only: bool = True,
        allow_stale: bool = False,
        wait: float = 30.0,
        timeout: float = 5.0,
        max_rate: float = 10.0,
        verify: ssl.SSLContext | str | bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(backoff_initial=backoff_initial, backoff_max=backoff_max)
        if not isinstance(service, str) or not service:
            raise ConfigError(f"service must be a non-empty str, got {service!r}")
        self.service = service
        self._wait = _require_positive("wait", wait)
        if self._wait > _MAX_WAIT:
            raise ConfigError(f"wait must be at most {_MAX_WAIT:g} s (Consul's limit), got {wait}")
        timeout = _seconds("timeout", timeout)
        self._agent = _Agent(url, token, timeout, self._wait + self._wait / 16 + timeout, verify)
        self._path = f"/v1/health/service/{quote(service, safe='')}"
        params: dict[str, str] = {}
        for name, value in (("tag", tag), ("filter", filter), ("dc", datacenter)):
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{name} must be a non-empty str or None, got {value!r}")
                params[name] = value
        if passing_only:
            params["passing"] = ""
        if allow_stale:
            params["stale"] = ""
        self._params = params
        if (
            isinstance(max_rate, bool)
            or not isinstance(max_rate, int | float)
            or not 0 < max_rate < math.inf
        ):
            raise ConfigError(f"max_rate must be a positive number of queries/s, got {max_rate!r}")
        self._bucket = TokenBucket(max_rate, 2)
        self._index = 0
        self.queries = 0
        """How many health queries were sent (for tests and metrics)."""

    def _describe(self) -> str:
        return f"{self.service} at {self._agent.url}"

    @property
    def index(self) -> int:
        """The ``X-Consul-Index`` the next blocking query waits on (0: the next read is a plain
        read)."""
        return self._index

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._agent.open()
        try:
            return await super().__aenter__()
        except BaseException:
            await self._agent.close()
            raise

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self._agent.close()

    # -- reads ----------------------------------------------------------------------------------

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        entries, _ = await self._query(0)
        return self._endpoints(entries), 0.0

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        delay = self._bucket.time_until(1)
        if delay > 0:
            await asyncio.sleep(delay)
        self._bucket.try_consume(1)
        old = self._index
        try:
            entries, index = await self._query(old)
        except BaseException:
            self._index = 0  # after a failure, start again with a plain read
            raise
        self._index = _next_index(old, index)
        return self._endpoints(entries), 0.0

    async def _query(self, index: int) -> tuple[list[Any], int]:
        """One read; with ``index > 0`` a blocking query on it. Returns the entries and the
        response's ``X-Consul-Index`` (0 when missing or unreadable)."""
        params = dict(self._params)
        if index > 0:
            params["index"] = str(index)
            params["wait"] = _duration(self._wait)
        self.queries += 1
        response = await self._agent.request("GET", self._path, params=params)
        if response.status_code != 200:
            raise DiscoveryError(f"{self!r}: {_error('GET', self._path, response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise DiscoveryError(f"{self!r}: the health API answered with bad JSON: {exc}") from exc
        if not isinstance(body, list):
            raise DiscoveryError(
                f"{self!r}: the health API answered a JSON {type(body).__name__}, not a list"
            )
        try:
            new_index = int(response.headers.get("X-Consul-Index", "0"))
        except ValueError:
            new_index = 0
        return body, new_index

    # -- mapping --------------------------------------------------------------------------------

    def _endpoints(self, entries: Iterable[Any]) -> EndpointSet:
        endpoints = set()
        for i, entry in enumerate(entries):
            try:
                endpoints.add(_entry_endpoint(entry))
            except _BadEntryError as exc:
                self._warn_once(f"entry {exc.who or f'#{i}'} skipped: {exc}")
            except Exception as exc:  # a guard (the checks above mean to catch everything):
                # one entry the mapping did not foresee must never fail the whole read
                self._warn_once(f"entry #{i} skipped: {type(exc).__name__}: {exc}")
        return frozenset(endpoints)


class _BadEntryError(ValueError):
    def __init__(self, message: str, who: str | None) -> None:
        super().__init__(message)
        self.who = who


def _entry_endpoint(entry: Any) -> Endpoint:
    """One health-API entry as an Endpoint (see ConsulDiscovery for the mapping)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Service"), dict):
        raise _BadEntryError("not an object with a Service", None)
    service: dict[str, Any] = entry["Service"]
    node = entry.get("Node") if isinstance(entry.get("Node"), dict) else {}
    assert isinstance(node, dict)
    sid = service.get("ID")
    who = repr(sid) if isinstance(sid, str) and sid else None

    host = service.get("Address") or node.get("Address")
    if not isinstance(host, str) or not host:
        raise _BadEntryError("no Service.Address or Node.Address", who)
    port = service.get("Port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _BadEntryError(f"port {port!r} is not in 1..65535", who)

    health = "passing"
    checks = entry.get("Checks") or []
    for check in checks if isinstance(checks, list) else []:
        status = check.get("Status") if isinstance(check, dict) else None
        if isinstance(status, str) and _SEVERITY.get(status, 2) > _SEVERITY[health]:
            health = status if status in _SEVERITY else "critical"

    weights = service.get("Weights") or {}
    if not isinstance(weights, dict):
        raise _BadEntryError(f"Weights {weights!r} is not an object", who)
    weight = weights.get("Warning" if health == "warning" else "Passing", 1)
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise _BadEntryError(f"weight {weight!r} is not an integer", who)

    meta = service.get("Meta") or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise _BadEntryError(f"Meta {meta!r} is not a map of strings", who)
    metadata = dict(meta)
    if who:
        metadata["consul.service_id"] = sid
    for key, field in (("consul.node", "Node"), ("consul.datacenter", "Datacenter")):
        value = node.get(field)
        if isinstance(value, str) and value:
            metadata[key] = value
    metadata["consul.health"] = health
    tags = service.get("Tags") or []
    if isinstance(tags, list) and tags:
        metadata["consul.tags"] = ",".join(str(t) for t in tags)
    return Endpoint(host, port, max(weight, 1), metadata)


class ConsulRegistration:
    """Registers ``endpoint`` as an instance of ``service`` with the Consul agent at ``url`` and
    keeps it alive with a TTL check.

    ``endpoint`` is an :class:`Endpoint` or a ``"host:port"`` string. ``async with`` registers
    (``PUT /v1/agent/service/register``: ``ID``, ``Name``, ``Address``, ``Port``, ``Tags``,
    ``Meta`` from the endpoint's metadata, ``Weights.Passing`` from its weight) with a TTL check
    ``service:<id>`` of ``ttl`` seconds, marks the check passing at once (a TTL check starts
    critical), then passes it again every ``interval`` seconds (default ``ttl / 3``) from a
    background task, and deregisters on exit. A registrant that dies without deregistering goes
    critical ``ttl`` seconds after its last heartbeat, so it leaves every ``?passing`` read, and
    Consul removes it ``deregister_after`` seconds later (Consul's minimum is one minute; None
    keeps it until deregistered).

    The instance ID is ``service_id``, by default ``<service>-<host>-<port>``. ``token`` is sent
    as ``X-Consul-Token``; ``verify`` is httpx's TLS setting for an ``https`` URL.

    **Faults.** Entering fails with :class:`DiscoveryError` when the agent cannot be reached, and
    with :class:`ConfigError` when it refuses the registration (HTTP 400: bad meta keys, ...).
    Afterwards the heartbeat never raises: a failed pass is logged once, ``registered`` turns
    False and the pass is retried with backoff (at most ``interval`` apart). When the agent answers
    that it does not know the check (HTTP 404 or 500, as after an agent restart that lost its
    state), the service is registered again. A failed deregistration on exit is logged, not raised.

    ``register()``, ``heartbeat()`` and ``deregister()`` are the single steps, for callers that
    drive the registration themselves; they raise :class:`DiscoveryError` on failure.
    """

    def __init__(
        self,
        url: str,
        service: str,
        endpoint: Endpoint | str,
        ttl: float = 10,
        *,
        service_id: str | None = None,
        tags: Iterable[str] = (),
        deregister_after: float | None = 60.0,
        interval: float | None = None,
        token: str | None = None,
        timeout: float = 5.0,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        if not isinstance(service, str) or not service:
            raise ConfigError(f"service must be a non-empty str, got {service!r}")
        self.service = service
        self.endpoint = parse_endpoint(endpoint)
        self.ttl = _seconds("ttl", ttl)
        self.interval = self.ttl / 3 if interval is None else _seconds("interval", interval)
        if self.interval >= self.ttl:
            raise ConfigError(f"interval ({self.interval} s) must be below ttl ({self.ttl} s)")
        if deregister_after is not None:
            deregister_after = _seconds("deregister_after", deregister_after)
        if service_id is None:
            service_id = f"{service}-{self.endpoint.host}-{self.endpoint.port}"
        if not isinstance(service_id, str) or not service_id:
            raise ConfigError(f"service_id must be a non-empty str, got {service_id!r}")
        self.service_id = service_id
        self.check_id = f"service:{service_id}"
        if isinstance(tags, str):
            raise ConfigError("tags must be an iterable of str, not one str")
        self.tags = tuple(tags)
        if not all(isinstance(t, str) and t for t in self.tags):
            raise ConfigError(f"tags must be non-empty strs, got {self.tags!r}")
        timeout = _seconds("timeout", timeout)
        self._agent = _Agent(url, token, timeout, timeout, verify)
        check: dict[str, Any] = {
            "CheckID": self.check_id,
            "Name": f"meshcore TTL {self.ttl:g}s",
            "TTL": _duration(self.ttl),
        }
        if deregister_after is not None:
            check["DeregisterCriticalServiceAfter"] = _duration(deregister_after)
        self._definition: dict[str, Any] = {
            "ID": service_id,
            "Name": service,
            "Tags": list(self.tags),
            "Address": self.endpoint.host,
            "Port": self.endpoint.port,
            "Meta": dict(self.endpoint.metadata),
            "Weights": {"Passing": self.endpoint.weight, "Warning": 1},
            "Check": check,
        }
        self._task: asyncio.Task[None] | None = None
        self.registered = False
        """True after a successful registration or pass, False after a failed one."""
        self.registrations = 0
        """How many times the service was registered (re-registrations after an agent restart
        count too)."""

    def __repr__(self) -> str:
        return f"<ConsulRegistration {self.service_id} at {self._agent.url}>"

    # -- single steps ---------------------------------------------------------------------------

    async def register(self) -> None:
        """Register the service with its TTL check and pass the check once."""
        path = "/v1/agent/service/register"
        response = await self._agent.request("PUT", path, body=self._definition)
        if response.status_code == 400:
            self.registered = False
            raise ConfigError(f"{self!r}: the agent refused the registration: {response.text}")
        if response.status_code != 200:
            self.registered = False
            raise DiscoveryError(f"{self!r}: {_error('PUT', path, response)}")
        self.registrations += 1
        await self._pass()

    async def heartbeat(self) -> None:
        """Pass the TTL check once; register again when the agent does not know it."""
        try:
            await self._pass()
        except _UnknownCheckError:
            log.warning("%r: the agent lost the registration; registering again", self)
            await self.register()

    async def deregister(self) -> None:
        """Remove the service (and its check) from the agent."""
        self.registered = False
        path = f"/v1/agent/service/deregister/{quote(self.service_id, safe='')}"
        response = await self._agent.request("PUT", path)
        if response.status_code != 200:
            raise DiscoveryError(f"{self!r}: {_error('PUT', path, response)}")

    async def _pass(self) -> None:
        path = f"/v1/agent/check/pass/{quote(self.check_id, safe='')}"
        try:
            response = await self._agent.request("PUT", path)
        except DiscoveryError:
            self.registered = False
            raise
        if response.status_code == 200:
            self.registered = True
            return
        self.registered = False
        if response.status_code in (404, 500):
            # 1.8 answers 500 "CheckID ... does not have associated TTL", later ones 404.
            raise _UnknownCheckError(f"{self!r}: {_error('PUT', path, response)}")
        raise DiscoveryError(f"{self!r}: {_error('PUT', path, response)}")

    # -- running --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._agent.open()
        try:
            await self.register()
        except BaseException:
            await self._agent.close()
            raise
        self._task = asyncio.create_task(self._run(), name=f"meshcore-consul {self!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, *, deregister: bool = True) -> None:
        """Stop the heartbeats and (unless ``deregister=False``) deregister; a failed
        deregistration is logged, not raised. When the caller is cancelled meanwhile, the
        cancellation is raised (the instance may stay registered: its check then goes critical
        after ``ttl``)."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await stop_task(task, self, log)
            if deregister:
                try:
                    await self.deregister()
                except DiscoveryError as exc:
                    log.warning("%r: deregistration failed: %s", self, exc)
        finally:
            await self._agent.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            if failures:
                base = min(self.interval, 0.25 * 2.0 ** (failures - 1))
                await asyncio.sleep(base)
            else:
                await asyncio.sleep(self.interval)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the heartbeat must never die
                failures += 1
                if failures == 1:
                    log.warning("%r: heartbeat failed (%s); retrying", self, exc)
                else:
                    log.debug("%r: heartbeat failed again (%s), failure %d", self, exc, failures)
            else:
                if failures:
                    log.warning("%r: heartbeat recovered after %d failures", self, failures)
                failures = 0


class _UnknownCheckError(DiscoveryError):
    """The agent does not know the check: it must be registered again."""
