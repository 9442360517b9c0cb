"""Endpoints from etcd v3, and registration of one's own endpoint there.

Both speak etcd's JSON gateway (``POST /v3/kv/range``, ``/v3/watch``, ``/v3/lease/*``) with httpx,
so no generated protobuf code can go stale. The keys and values are those of etcd's
``client/v3/naming/endpoints`` package, which gRPC-go's ``etcd:///`` resolver reads: a service
``foo/bar`` has keys ``foo/bar/<anything>`` (conventionally the address) holding JSON
``{"Op":0,"Addr":"10.0.0.1:50051","Metadata":...}``. Go programs registered through that package
are discovered here, and :class:`EtcdRegistration` writes keys Go's resolver reads.

Gateway details handled here: keys and values are base64, 64-bit integers (revisions, lease IDs,
TTLs) are JSON strings, and proto3 defaults are left out (a PUT event has no ``type``, an empty
range has no ``kvs``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from meshcore._aio import stop_task
from meshcore._http import ssl_verify
from meshcore.discovery._base import (
    DiscoverySource,
    EndpointSet,
    _require_positive,
    log,
)
from meshcore.discovery.static import parse_endpoint
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["EtcdDiscovery", "EtcdRegistration"]

# gRPC metadata (forwarded by the gateway) asking a member to refuse, or end, a watch while it has
# no leader: a member cut off from the cluster would otherwise keep a silent stream open.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
# gRPC status code NOT_FOUND, as the gateway reports it in an error body (an unknown lease).
_NOT_FOUND = 5


class _EtcdError(DiscoveryError):
    """An etcd member answered a request with an error that another member would give too (a
    compacted revision, an unknown lease): ``code`` is the gRPC status code, ``status`` the HTTP
    status."""

    def __init__(self, message: str, code: int, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _int(value: Any) -> int:
    """An int64 of the gateway (a JSON string, or absent for 0)."""
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return 0


def _prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"  # every key >= prefix
    raw[-1] += 1
    return bytes(raw)


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_service(service: Any) -> str:
    if not isinstance(service, str) or not service or service.endswith("/"):
        raise ConfigError(
            f"service must be a non-empty key prefix without a final '/', got {service!r}"
        )
    return service


class _Members:
    """The client URLs of an etcd cluster and the one in use. A request goes to the member in use;
    when it cannot be reached, or answers 5xx (no leader, unavailable, timed out inside etcd), the
    next member is tried, and so on once round."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        items = [urls] if isinstance(urls, str) else list(urls)
        if not items:
            raise ConfigError("need at least one etcd client URL")
        self.urls: list[str] = []
        for url in items:
            if not isinstance(url, str):
                raise ConfigError(f"etcd URL must be a str, got {url!r}")
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise ConfigError(f"bad etcd URL {url!r}: {exc}") from exc
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ConfigError(f"etcd URL must be http(s)://host:port, got {url!r}")
            self.urls.append(url.rstrip("/"))
        self.index = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def advance(self) -> None:
        self.index = (self.index + 1) % len(self.urls)

    async def call(
        self, http: httpx.AsyncClient, path: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on the member in use, failing over to the others.
        Raises :class:`_EtcdError` for an error answer, :class:`DiscoveryError` when no member
        answered."""
        problems: list[str] = []
        for _ in self.urls:
            url = self.current
            try:
                response = await http.post(f"{url}/v3/{path}", json=body)
                data = _json_body(response)
            except (httpx.HTTPError, ValueError) as exc:
                problems.append(f"{url}: {_describe_error(exc)}")
                self.advance()
                continue
            if response.status_code >= 500:
                problems.append(f"{url}: HTTP {response.status_code} {_error_text(data)}")
                self.advance()
                continue
            if response.status_code != 200:
                error = _error_object(data)
                raise _EtcdError(
                    f"{url}/v3/{path}: HTTP {response.status_code} {_error_text(data)}",
                    _int(error.get("code", error.get("grpc_code"))),
                    response.status_code,
                )
            return data
        raise DiscoveryError(f"no etcd member answered /v3/{path}: {'; '.join(problems)}")


def _json_body(response: httpx.Response) -> dict[str, Any]:
    data = json.loads(response.content or b"{}")
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {response.text[:100]!r}")
    return data


def _error_object(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The error of a gateway answer: ``{"error": "...", "code": 5, "message": "..."}`` for a
    request, ``{"error": {"grpc_code": 14, "message": "..."}}`` inside a stream."""
    error = data.get("error")
    return error if isinstance(error, dict) else data


def _error_text(data: Mapping[str, Any]) -> str:
    return str(_error_object(data).get("message", ""))


def _client(
    connect_timeout: float, request_timeout: float, verify: ssl.SSLContext | str | bool
) -> httpx.AsyncClient:
    # trust_env=False: members are reached directly; a proxy from the environment would sit in the
    # middle of long-lived watch streams.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
        verify=ssl_verify(verify),
        trust_env=False,
    )


class EtcdDiscovery(DiscoverySource):
    """Endpoints registered in etcd under ``service + "/"``, kept up to date by a watch.

    ``urls`` is one client URL (``"http://127.0.0.1:2379"``) or several members of one cluster;
    requests go to one member and fail over to the next when it cannot be reached or answers 5xx.

    **Keys and values** follow etcd's ``naming/endpoints`` format (gRPC-go's etcd resolver): every
    key under ``service + "/"`` is one entry (so ``svc`` never sees ``svc2/...``), its value JSON
    ``{"Op":0,"Addr":"host:port","Metadata":...}`` (field names matched case-insensitively, as Go
    does). A missing ``Op`` means 0 (add); ``Op`` 1 (delete) makes the key count as absent.
    ``Addr`` is ``host:port`` (``[::1]:80`` for IPv6); an ``Addr`` without a port (gRPC-go
    would dial port 443) is skipped unless ``default_port`` is given. ``Metadata``, when it is a
    JSON object, gives the weight and metadata: an int ``weight`` >= 1 becomes
    :attr:`Endpoint.weight` (default 1); every other member with a string value is copied into
    :attr:`Endpoint.metadata`, numbers and booleans as their JSON text (``3``, ``true``), and
    nested objects, arrays and null are left out. Metadata of any other JSON type (null, a
    string, ...) is allowed and ignored. A key whose value is not JSON, has no usable ``Addr``
    (empty, no port, port 0) or an unknown ``Op`` is skipped with a warning (once per key and
    problem), and the rest are still served; a weight that is not an int >= 1 is replaced by 1
    with a warning. Two keys with the same address and metadata give one endpoint.

    **Reading and watching.** ``resolve()`` is one serializable range read. Inside ``async with``
    the source reads the range, then opens a watch on the same prefix from the read's revision + 1,
    so no change between the read and the watch is lost. The events of one watch response are
    applied in order and yield one new set. When the member serving the watch goes away (a closed
    connection, a 5xx, no leader, or no answer to a status check after ``check_interval``
    seconds of silence), the watch is reopened on the next member from the last revision seen +
    1: nothing is missed and nothing applied twice. When the revision to resume from has been
    compacted, etcd cancels the watch and the source reads the whole range again. When no member
    can be reached, ``stale`` turns True and the last good set is kept; reads are retried with
    backoff until a member answers.

    ``connect_timeout`` and ``request_timeout`` are seconds for opening a connection and for one
    request (the watch stream itself has no read timeout); ``verify`` is httpx's TLS setting for
    ``https`` URLs. Proxy settings from the environment are not used.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        service: str,
        *,
        connect_timeout: float = 1.0,
        request_timeout: float = 5.0,
        check_interval: float = 10.0,
        default_port: int | None = None,
        verify: ssl.SSLContext | str | bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(backoff_initial=backoff_initial, backoff_max=backoff_max)
        self._members = _Members(urls)
        self.service = _check_service(service)
        self._prefix = (service + "/").encode()
        self._connect_timeout = _require_positive("connect_timeout", connect_timeout)
        self._request_timeout = _require_positive("request_timeout", request_timeout)
        self._check_interval = _require_positive("check_interval", check_interval)
        if default_port is not None:
            Endpoint("x", default_port)  # validates the port
        self._default_port = default_port
        self._verify = verify
        self._http: httpx.AsyncClient | None = None
        self._entries: dict[bytes, Endpoint] = {}
        # The set kept up to date by events: how many keys give each endpoint, the set, and the
        # endpoints whose count changed since it was last built (rebuilding the set from the
        # entries would hash every endpoint again on every event: 6 ms at 10 000 endpoints).
        self._counts: dict[Endpoint, int] = {}
        self._set: EndpointSet = frozenset()
        self._touched: set[Endpoint] = set()
        self._revision: int | None = None  # every event up to here is applied; None: read again
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._next_line: asyncio.Future[str] | None = None
        self._opened_at = 0.0  # loop time the watch stream was opened
        self._quick_breaks = 0  # streams in a row that broke within a second, giving nothing
        self.serving: str | None = None
        """The URL of the member serving the watch (None while there is none)."""
        self.reads = 0
        """How many full range reads the watcher made (the first, and one per compaction)."""
        self.watches = 0
        """How many watch streams were opened (the first, and one per failover)."""

    def _describe(self) -> str:
        return f"{self.service}/ at {','.join(self._members.urls)}"

    @property
    def revision(self) -> int | None:
        """The etcd revision the current set reflects (every change up to it is applied)."""
        return self._revision

    # -- values -----------------------------------------------------------------------------------

    def _parse(self, key: bytes, value: bytes) -> Endpoint | None:
        """The endpoint a key's value describes; None (with a warning if it is malformed) when
        there is none. Never raises: one bad value must not stop the others being read."""
        name = key.decode("utf-8", "backslashreplace")
        try:
            return self._parse_value(name, value)
        except Exception as exc:  # a guard: _parse_value means to warn and return None itself
            self._warn_once(f"key {name!r} skipped: {_describe_error(exc)}")
            return None

    def _parse_value(self, name: str, value: bytes) -> Endpoint | None:
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):  # bad UTF-8 too; RecursionError: nested too deep
            self._warn_once(f"key {name!r} skipped: its value is not JSON: {value[:60]!r}")
            return None
        if not isinstance(doc, dict):
            self._warn_once(f"key {name!r} skipped: its value is not a JSON object: {value[:60]!r}")
            return None
        op = _field(doc, "Op", 0)
        if op == 1 and not isinstance(op, bool):
            return None  # Delete: the entry is gone
        if op != 0 or isinstance(op, bool):
            self._warn_once(f"key {name!r} skipped: unknown Op {op!r}")
            return None
        addr = _field(doc, "Addr", None)
        if not isinstance(addr, str) or not addr:
            self._warn_once(f"key {name!r} skipped: no Addr")
            return None
        if self._default_port is not None and _lacks_port(addr):
            addr = (
                f"[{addr}]:{self._default_port}" if ":" in addr else f"{addr}:{self._default_port}"
            )
        try:
            ep = parse_endpoint(addr)
        except ConfigError as exc:
            self._warn_once(f"key {name!r} skipped: bad Addr {addr!r}: {exc}")
            return None
        weight, metadata = self._metadata(name, _field(doc, "Metadata", None))
        return Endpoint(ep.host, ep.port, weight, metadata)

    def _metadata(self, name: str, meta: Any) -> tuple[int, dict[str, str]]:
        if not isinstance(meta, dict):
            return 1, {}
        weight = 1
        out: dict[str, str] = {}
        for k, v in meta.items():
            if k == "weight":
                if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                    weight = v
                else:
                    self._warn_once(f"key {name!r}: weight {v!r} is not an int >= 1, using 1")
            elif isinstance(v, str):
                out[k] = v
            elif isinstance(v, int | float | bool):
                out[k] = json.dumps(v)
        return weight, out

    def _snapshot(self) -> EndpointSet:
        if self._touched:
            touched, self._touched = self._touched, set()
            gone = {e for e in touched if e not in self._counts}
            self._set = self._set.difference(gone).union(touched - gone)
        return self._set

    def _reset(self, entries: dict[bytes, Endpoint]) -> None:
        self._entries = entries
        self._counts = {}
        for ep in entries.values():
            self._counts[ep] = self._counts.get(ep, 0) + 1
        self._set = frozenset(self._counts)
        self._touched = set()

    def _replace(self, key: bytes, new: Endpoint | None) -> None:
        """Key ``key`` now gives ``new`` (None: nothing)."""
        old = self._entries.pop(key, None) if new is None else self._entries.get(key)
        if new is not None:
            self._entries[key] = new
        if old == new:
            return
        if old is not None:
            left = self._counts[old] - 1
            if left:
                self._counts[old] = left
            else:
                del self._counts[old]
            self._touched.add(old)
        if new is not None:
            self._counts[new] = self._counts.get(new, 0) + 1
            self._touched.add(new)

    # -- reading ----------------------------------------------------------------------------------

    def _new_client(self) -> httpx.AsyncClient:
        return _client(self._connect_timeout, self._request_timeout, self._verify)

    async def _list(self, http: httpx.AsyncClient) -> tuple[dict[bytes, Endpoint], int]:
        body = {
            "key": _b64(self._prefix),
            "range_end": _b64(_prefix_end(self._prefix)),
            "serializable": True,
        }
        data = await self._members.call(http, "kv/range", body)
        entries: dict[bytes, Endpoint] = {}
        for kv in data.get("kvs", []):
            if not isinstance(kv, dict):
                self._warn_once(f"range entry skipped: not an object: {str(kv)[:60]!r}")
                continue
            key = _unb64(kv.get("key"))
            ep = self._parse(key, _unb64(kv.get("value")))
            if ep is not None:
                entries[key] = ep
        return entries, _int(data.get("header", {}).get("revision"))

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        async with self._new_client() as http:
            entries, _ = await self._list(http)
        return frozenset(entries.values()), None

    async def _relist(self, http: httpx.AsyncClient) -> tuple[EndpointSet, float]:
        await self._close_watch()
        self._revision = None
        entries, revision = await self._list(http)
        self._reset(entries)
        self._revision = revision
        self.reads += 1
        log.debug("%r: %d entries at revision %d", self, len(entries), revision)
        return self._snapshot(), 0.0

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        if self._http is None:
            self._http = self._new_client()
        http = self._http
        if self._revision is None:
            return await self._relist(http)
        if self._lines is None:
            await self._open_watch(http, self._revision + 1)
            if self.stale:
                return self._snapshot(), 0.0  # a member answers again: no longer stale
        line = await self._read_line(http)
        if line is None:
            return None, 0.0  # the stream broke: reopened on another member by the next poll
        try:
            result = json.loads(line)["result"]
            if not isinstance(result, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            # {"error": {...}} (no leader any more, ...) or garbage: this member is done.
            log.info("%r: watch on %s ended: %s", self, self.serving, line[:200])
            await self._failover()
            return None, 0.0
        if result.get("canceled"):
            compacted = _int(result.get("compact_revision"))
            if compacted:
                log.info(
                    "%r: revision %d was compacted (now %d); reading the set again",
                    self,
                    self._revision + 1,
                    compacted,
                )
                return await self._relist(http)
            reason = result.get("cancel_reason", "no reason given")
            log.info("%r: watch on %s canceled: %s", self, self.serving, reason)
            await self._failover()
            return None, 0.0
        events = result.get("events")
        if not events:
            return (self._snapshot() if self.stale else None), 0.0  # created or progress
        self._quick_breaks = 0
        for event in events if isinstance(events, list) else ():
            try:
                self._apply(event)
            except Exception as exc:
                # One event that cannot be applied must not cost the others of the response, nor
                # stop the revision (a watch resumed from an old one would replay it forever).
                self._warn_once(f"watch event skipped: {_describe_error(exc)}")
                self._advance(_event_revision(event))
        return self._snapshot(), 0.0

    def _apply(self, event: Mapping[str, Any]) -> None:
        kv = event.get("kv", {})
        key = _unb64(kv.get("key"))
        if event.get("type") == "DELETE":
            self._replace(key, None)
        else:
            self._replace(key, self._parse(key, _unb64(kv.get("value"))))
        self._advance(_int(kv.get("mod_revision")))

    def _advance(self, revision: int) -> None:
        if self._revision is None or revision > self._revision:
            self._revision = revision

    async def _open_watch(self, http: httpx.AsyncClient, start: int) -> None:
        """Open a watch from revision ``start`` on the member in use or the next that answers,
        and read its first message. Raises :class:`DiscoveryError` when no member can."""
        body = {
            "create_request": {
                "key": _b64(self._prefix),
                "range_end": _b64(_prefix_end(self._prefix)),
                "start_revision": str(start),
            }
        }
        # The stream has no read timeout: it is quiet while nothing changes.
        timeout = httpx.Timeout(None, connect=self._connect_timeout)
        problems: list[str] = []
        for _ in self._members.urls:
            url = self._members.current
            request = http.build_request(
                "POST", f"{url}/v3/watch", json=body, headers=_REQUIRE_LEADER, timeout=timeout
            )
            response: httpx.Response | None = None
            try:
                async with asyncio.timeout(self._request_timeout):
                    response = await http.send(request, stream=True)
                    if response.status_code != 200:
                        await response.aread()
                        raise DiscoveryError(
                            f"HTTP {response.status_code} {_error_text(_safe_json(response))}"
                        )
                    lines = response.aiter_lines()
                    first = await anext(lines)
                    if not _created(first):
                        raise DiscoveryError(f"unexpected first message {first[:200]!r}")
            except (httpx.HTTPError, DiscoveryError, TimeoutError, StopAsyncIteration) as exc:
                if response is not None:
                    await response.aclose()
                problems.append(f"{url}: {_describe_error(exc)}")
                self._members.advance()
                continue
            self._response, self._lines, self.serving = response, lines, url
            self.watches += 1
            self._opened_at = asyncio.get_running_loop().time()
            log.debug("%r: watching on %s from revision %d", self, url, start)
            return
        raise DiscoveryError(f"no etcd member accepted a watch: {'; '.join(problems)}")

    async def _read_line(self, http: httpx.AsyncClient) -> str | None:
        """The next message of the watch stream; None when the stream broke (then closed). While
        the stream is quiet, the serving member is asked for its status every
        ``check_interval`` seconds, and dropped if it does not answer or has no leader."""
        assert self._lines is not None
        if self._next_line is None:
            self._next_line = asyncio.ensure_future(anext(self._lines))
        while True:
            done, _ = await asyncio.wait({self._next_line}, timeout=self._check_interval)
            if done:
                pending, self._next_line = self._next_line, None
                try:
                    line = pending.result()
                except (Exception, StopAsyncIteration) as exc:  # httpx errors, end of stream
                    log.info("%r: watch on %s broke: %s", self, self.serving, _describe_error(exc))
                    await self._failover()
                    return None
                if line.strip():
                    return line
                self._next_line = asyncio.ensure_future(anext(self._lines))
                continue
            problem = await self._check_member(http)
            if problem is not None:
                log.info("%r: dropping the watch on %s: %s", self, self.serving, problem)
                await self._failover()
                return None

    async def _check_member(self, http: httpx.AsyncClient) -> str | None:
        """None when the member serving the watch answers its status with a leader, else why.
        The sources of one process share the answer for a member for up to a second (or half of
        ``check_interval``): a thousand quiet watches on one member would otherwise ask it a
        hundred times a second."""
        url, loop = self.serving, asyncio.get_running_loop()
        if url is None:
            return "no member is serving the watch"
        key = (id(loop), url, id(http) if self._verify is not True else 0)
        cached = _STATUS.get(key)
        if cached is None or cached[1].get_loop() is not loop or loop.time() > cached[0]:
            if len(_STATUS) >= _MAX_STATUS:
                _STATUS.clear()
            fresh = asyncio.ensure_future(_member_status(http, url))
            cached = (loop.time() + min(1.0, self._check_interval / 2), fresh)
            _STATUS[key] = cached
        return await asyncio.shield(cached[1])

    async def _failover(self) -> None:
        """Close the watch and move to the next member. When every member in turn accepts a
        watch and drops it at once, raise :class:`DiscoveryError`, so that the base's backoff
        (and ``stale``) apply instead of a busy loop."""
        quick = asyncio.get_running_loop().time() - self._opened_at < 1.0
        await self._close_watch()
        self._members.advance()
        self._quick_breaks = self._quick_breaks + 1 if quick else 0
        if self._quick_breaks >= len(self._members.urls):
            self._quick_breaks = 0
            raise DiscoveryError("every member dropped the watch as soon as it was opened")

    async def _close_watch(self) -> None:
        pending, self._next_line = self._next_line, None
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending  # also retrieves a stream error nobody read
        response, self._response, self._lines, self.serving = self._response, None, None, None
        if response is not None:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:  # also when the caller is cancelled: no stream or connection is left behind
            await self._close_watch()
            http, self._http = self._http, None
            if http is not None:
                await http.aclose()
            self._revision = None
            self._reset({})


# Status answers shared by the sources of a process: (loop, member URL, client when its TLS
# setting is its own) -> (loop time the answer expires, the answer).
_STATUS: dict[tuple[int, str, int], tuple[float, asyncio.Future[str | None]]] = {}
_MAX_STATUS = 1024


async def _member_status(http: httpx.AsyncClient, url: str) -> str | None:
    """None when the member at ``url`` answers its status with a leader, else why."""
    try:
        response = await http.post(f"{url}/v3/maintenance/status", json={})
        status = _json_body(response)
    except (httpx.HTTPError, ValueError, RuntimeError) as exc:  # RuntimeError: client closed
        return _describe_error(exc)
    if response.status_code != 200 or _int(status.get("leader")) == 0:
        return f"HTTP {response.status_code}, no leader: {status.get('errors', '')}"
    return None


def _created(line: str) -> bool:
    try:
        return json.loads(line)["result"]["created"] is True
    except (ValueError, KeyError, TypeError):
        return False


def _event_revision(event: Any) -> int:
    """The ``mod_revision`` of a watch event, 0 when it has none."""
    kv = event.get("kv") if isinstance(event, dict) else None
    return _int(kv.get("mod_revision")) if isinstance(kv, dict) else 0


def _lacks_port(addr: str) -> bool:
    """True for ``host``, ``1.2.3.4``, ``::1`` and ``[::1]``; False for ``h:80``, ``[::1]:80``."""
    if addr.startswith("["):
        return addr.endswith("]")
    return addr.count(":") != 1


def _safe_json(response: httpx.Response) -> dict[str, Any]:
    try:
        return _json_body(response)
    except ValueError:
        return {}


def _field(doc: Mapping[str, Any], name: str, default: Any) -> Any:
    """``doc[name]``, else a member whose name matches case-insensitively (Go's JSON decoding)."""
    if name in doc:
        return doc[name]
    lower = name.lower()
    for k, v in doc.items():
        if isinstance(k, str) and k.lower() == lower:
            return v
    return default


class EtcdRegistration:
    """Keeps ``endpoint`` registered in etcd under ``service`` while the program runs.

    The key is ``<service>/<host:port>`` and the value the ``naming/endpoints`` JSON that gRPC-go's
    etcd resolver and :class:`EtcdDiscovery` read: ``{"Op":0,"Addr":"host:port","Metadata":m}``
    with ``m`` null for weight 1 without metadata, else an object holding ``weight`` and the
    endpoint's metadata (so ``metadata`` may not use the name ``weight``). ``endpoint`` is an
    :class:`Endpoint` or a ``"host:port"`` string.

    The key is attached to a lease of ``ttl`` seconds (an int >= 2, etcd's minimum), renewed every
    ``keepalive_interval`` seconds (default ``ttl / 3``) by a background task, which also checks
    that the key is still there. When the lease is gone (it expired during a long outage, or was
    revoked by someone else) a new lease is granted and the key written again; a deleted key is
    written again. A registrant that dies without deregistering disappears within ``ttl`` seconds.
    Requests fail over across the members in ``urls``; while none answers, renewals are retried
    about every second and a warning is logged once.

    ``async with EtcdRegistration(...)`` registers on entry and revokes the lease on exit (the key
    disappears at once); ``register()`` and ``deregister()`` do the same explicitly.
    ``request_timeout`` (seconds) defaults to ``ttl / 3``, between 1 and 5.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        service: str,
        endpoint: Endpoint | str,
        ttl: int = 10,
        *,
        keepalive_interval: float | None = None,
        connect_timeout: float = 1.0,
        request_timeout: float | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._members = _Members(urls)
        self.service = _check_service(service)
        if not isinstance(endpoint, Endpoint | str):
            raise ConfigError(f"endpoint must be an Endpoint or 'host:port', got {endpoint!r}")
        self.endpoint = parse_endpoint(endpoint)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 2:
            raise ConfigError(f"ttl must be an int >= 2 (seconds; etcd's minimum), got {ttl!r}")
        self.ttl = ttl
        if "weight" in self.endpoint.metadata:
            raise ConfigError("metadata 'weight' would clash with the endpoint's weight")
        self.key = f"{service}/{self.endpoint.address}"
        meta: dict[str, Any] | None = None
        if self.endpoint.weight != 1 or self.endpoint.metadata:
            meta = {"weight": self.endpoint.weight, **self.endpoint.metadata}
        self.value = json.dumps(
            {"Op": 0, "Addr": self.endpoint.address, "Metadata": meta}, separators=(",", ":")
        )
        self._interval = (
            ttl / 3.0
            if keepalive_interval is None
            else _require_positive("keepalive_interval", keepalive_interval)
        )
        self._connect_timeout = _require_positive("connect_timeout", connect_timeout)
        self._request_timeout = (
            max(1.0, min(5.0, ttl / 3.0))
            if request_timeout is None
            else _require_positive("request_timeout", request_timeout)
        )
        self._verify = verify
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self.lease: str | None = None
        """The ID of the lease the key is attached to (a decimal string), None when not
        registered."""
        self.grants = 0
        """How many leases were granted (the first, and one per lease lost)."""

    def __repr__(self) -> str:
        return f"<EtcdRegistration {self.key} at {','.join(self._members.urls)}>"

    async def __aenter__(self) -> Self:
        await self.register()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.deregister()
        except DiscoveryError as error:
            log.warning(
                "%r: could not revoke the lease (%s); the key expires by itself", self, error
            )

    async def register(self) -> None:
        """Grant a lease, write the key and start renewing it. Raises :class:`DiscoveryError`
        when no member answers."""
        if self._task is not None:
            return
        if self._http is None:
            self._http = _client(self._connect_timeout, self._request_timeout, self._verify)
        try:
            await self._grant_and_put()
        except BaseException:
            await self._close_client()
            raise
        self._task = asyncio.create_task(self._keep(), name=f"meshcore-etcd-keepalive {self!r}")

    async def deregister(self) -> None:
        """Stop renewing and revoke the lease, which deletes the key at once. Raises
        :class:`DiscoveryError` when no member answers (the key then expires after ``ttl``).
        When the caller is cancelled meanwhile, the cancellation is raised (and the key expires
        after ``ttl``)."""
        task, self._task = self._task, None
        try:
            if task is not None:
                await stop_task(task, self, log)
            lease, self.lease = self.lease, None
            if lease is not None and self._http is not None:
                with contextlib.suppress(_EtcdError):  # already gone
                    await self._call("lease/revoke", {"ID": lease})
        finally:
            await self._close_client()

    async def _close_client(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        return await self._members.call(self._http, path, body)

    async def _grant_and_put(self) -> None:
        for _ in range(3):
            granted = await self._call("lease/grant", {"TTL": str(self.ttl)})
            self.lease = str(granted["ID"])
            self.grants += 1
            try:
                await self._put()
            except _EtcdError as exc:
                if exc.code == _NOT_FOUND:
                    continue  # the lease vanished at once (revoked): try again
                raise
            log.debug("%r: registered with lease %s", self, self.lease)
            return
        raise DiscoveryError(f"{self!r}: every lease granted vanished before the key was written")

    async def _put(self) -> None:
        body = {
            "key": _b64(self.key.encode()),
            "value": _b64(self.value.encode()),
            "lease": self.lease,
        }
        await self._call("kv/put", body)

    async def _renew(self) -> None:
        """One keepalive; grant a new lease or write the key again when they are gone."""
        try:
            answer = await self._call("lease/keepalive", {"ID": self.lease})
            alive = _int(answer.get("result", {}).get("TTL")) > 0
        except _EtcdError as exc:
            if exc.code != _NOT_FOUND:
                raise
            alive = False
        if not alive:
            log.warning("%r: lease %s is gone; registering again", self, self.lease)
            await self._grant_and_put()
            return
        found = await self._call("kv/range", {"key": _b64(self.key.encode()), "keys_only": True})
        if not found.get("kvs"):
            log.warning("%r: the key was deleted; writing it again", self)
            try:
                await self._put()
            except _EtcdError as exc:
                if exc.code != _NOT_FOUND:
                    raise
                await self._grant_and_put()

    async def _keep(self) -> None:
        delay = self._interval
        failures = 0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._renew()
            except DiscoveryError as exc:
                failures += 1
                if failures == 1:
                    log.warning("%r: cannot renew the lease (%s); retrying", self, exc)
                delay = min(self._interval, 1.0)
                continue
            except Exception:  # the keepalive must not die, whatever the answer was
                failures += 1
                log.exception("%r: unexpected error while renewing the lease", self)
                delay = min(self._interval, 1.0)
                continue
            if failures:
                log.warning("%r: renewed again after %d failures", self, failures)
            failures = 0
            delay = self._interval
