"""Sources that need no server: a fixed list, and a JSON or YAML file reloaded on change."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from meshcore.discovery._base import (
    DiscoverySource,
    EndpointSet,
    _require_positive,
    log,
)
from meshcore.endpoint import Endpoint
from meshcore.errors import ConfigError, DiscoveryError

__all__ = ["FileDiscovery", "StaticDiscovery", "parse_endpoint"]


def parse_endpoint(value: Any) -> Endpoint:
    """One endpoint from its file form: an :class:`Endpoint`, a ``"host:port"`` string
    (``"[::1]:80"`` for IPv6), or a mapping with ``host``, ``port`` and optional ``weight`` and
    ``metadata`` (a mapping of strings). The port of the string form is ASCII decimal digits. Raises
    :class:`ConfigError` for anything else (and never another exception: callers reading
    untrusted data rely on that to skip one bad entry)."""
    if isinstance(value, Endpoint):
        return value
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        # str.isdigit() is also True for "²" and other digits int() refuses: ASCII only.
        if not sep or not (port.isascii() and port.isdecimal()):
            raise ConfigError(f"expected 'host:port' with a decimal port, got {value!r}")
        if len(port.lstrip("0")) > 5:  # also keeps int() clear of its limit on digits
            raise ConfigError(f"endpoint port must be in 1..65535, got {port[:20]!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ConfigError(f"IPv6 addresses need brackets: '[{host}]:{port}', got {value!r}")
        if "[" in host or "]" in host:
            raise ConfigError(f"misplaced brackets in {value!r}")
        return Endpoint(host, int(port))
    if isinstance(value, Mapping):
        unknown = set(value) - {"host", "port", "weight", "metadata"}
        if unknown:
            # repr: a YAML mapping may mix key types, which sorted() cannot compare
            raise ConfigError(f"unknown endpoint keys {sorted(map(repr, unknown))}")
        if "host" not in value or "port" not in value:
            raise ConfigError("an endpoint needs 'host' and 'port'")
        return Endpoint(
            value["host"],
            value["port"],
            value.get("weight", 1),
            value.get("metadata") or {},
        )
    raise ConfigError(f"expected an endpoint mapping or 'host:port', got {value!r}")


class StaticDiscovery(DiscoverySource):
    """A fixed set: ``watch()`` yields it once. ``endpoints`` are :class:`Endpoint` values,
    ``"host:port"`` strings or mappings (see :func:`parse_endpoint`); a bad one raises
    :class:`ConfigError` here, since a program, not a file, wrote it."""

    def __init__(self, endpoints: Iterable[Endpoint | str | Mapping[str, Any]]) -> None:
        super().__init__()
        self._endpoints: EndpointSet = frozenset(parse_endpoint(e) for e in endpoints)

    def _describe(self) -> str:
        return f"{len(self._endpoints)} endpoints"

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        return self._endpoints, None


class FileDiscovery(DiscoverySource):
    """Endpoints from a JSON or YAML file, reloaded when it changes.

    The format follows the suffix (``.json``; ``.yaml`` / ``.yml``; anything else is tried as JSON,
    then YAML). The document is a list of endpoints, or a mapping with an ``endpoints`` list; each
    entry as :func:`parse_endpoint` reads it. A bad entry is skipped with a warning that names its
    index; a file that is missing or does not parse keeps the last good set (``stale`` is True) and
    the warning gives the parser's line and column.

    The file is checked every ``interval`` seconds (modification time, size and inode, so an atomic
    rename counts) and parsed only when one of them changed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
    ) -> None:
        super().__init__(backoff_initial=backoff_initial, backoff_max=backoff_max)
        self.path = Path(path)
        self._interval = _require_positive("interval", interval)
        self._seen: tuple[int, int, int] | None = None

    def _describe(self) -> str:
        return str(self.path)

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except OSError as exc:
            self._seen = None
            raise DiscoveryError(f"{self.path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._seen:
            # Unchanged: a file that failed to parse is not re-read (or re-logged) until it
            # changes, and the source stays stale meanwhile.
            return None, self._interval
        self._seen = stamp
        return await self._fetch()

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DiscoveryError(f"{self.path}: {exc}") from exc
        doc = self._parse(text)
        if isinstance(doc, Mapping) and "endpoints" in doc:
            doc = doc["endpoints"]
        if not isinstance(doc, list):
            raise DiscoveryError(
                f"{self.path}: expected a list of endpoints or a mapping with 'endpoints', "
                f"got {type(doc).__name__}"
            )
        endpoints = set()
        for i, entry in enumerate(doc):
            try:
                endpoints.add(parse_endpoint(entry))
            except ConfigError as exc:
                log.warning("%s: endpoint #%d skipped: %s", self.path, i, exc)
            except Exception as exc:  # one entry must never cost the whole file
                log.warning(
                    "%s: endpoint #%d skipped: %s: %s", self.path, i, type(exc).__name__, exc
                )
        return frozenset(endpoints), self._interval

    def _parse(self, text: str) -> Any:
        suffix = self.path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return self._parse_yaml(text)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise DiscoveryError(
                    f"{self.path}:{exc.lineno}:{exc.colno}: bad JSON: {exc.msg}"
                ) from exc
        return self._parse_yaml(text)

    def _parse_yaml(self, text: str) -> Any:
        try:
            return yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise DiscoveryError(f"{self.path}{where}: bad YAML: {exc.problem}") from exc
        except yaml.YAMLError as exc:
            raise DiscoveryError(f"{self.path}: bad YAML: {exc}") from exc
