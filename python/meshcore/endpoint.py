"""The endpoint value that discovery sources yield and balancers consume."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from meshcore.errors import ConfigError

__all__ = ["Endpoint", "Metadata"]


class Metadata(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (an endpoint's metadata)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        items = dict(data or {})
        for k, v in items.items():
            # Exact-type checks first: the common case skips isinstance.
            if not (type(k) is str or isinstance(k, str)) or not (
                type(v) is str or isinstance(v, str)
            ):
                raise ConfigError(f"metadata keys and values must be str, got {k!r}: {v!r}")
        self._data = items
        self._hash = hash(frozenset(items.items())) if items else 0

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Metadata({self._data!r})"


_NO_METADATA = Metadata()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of a service: ``host`` (an IP address or a name), ``port`` (1..65535),
    ``weight`` (an int >= 1, relative share for a weighted balancer) and ``metadata`` (an immutable
    ``str -> str`` mapping; a plain dict given here is copied into one). Frozen and hashable, so
    sets of endpoints compare by value."""

    host: str
    port: int
    weight: int = 1
    metadata: Mapping[str, str] = _NO_METADATA

    def __post_init__(self) -> None:
        # Exact-type checks first: the common case costs one comparison per field.
        host, port, weight = self.host, self.port, self.weight
        if not (type(host) is str or isinstance(host, str)) or not host:
            raise ConfigError(f"endpoint host must be a non-empty str, got {host!r}")
        if type(port) is not int and (isinstance(port, bool) or not isinstance(port, int)):
            raise ConfigError(f"endpoint port must be an int, got {port!r}")
        if not 1 <= port <= 65535:
            raise ConfigError(f"endpoint port must be in 1..65535, got {port}")
        if (
            type(weight) is not int and (isinstance(weight, bool) or not isinstance(weight, int))
        ) or weight < 1:
            raise ConfigError(f"endpoint weight must be an int >= 1, got {weight!r}")
        if type(self.metadata) is not Metadata:
            if not isinstance(self.metadata, Mapping):
                raise ConfigError(f"endpoint metadata must be a mapping, got {self.metadata!r}")
            if not isinstance(self.metadata, Metadata):
                object.__setattr__(self, "metadata", Metadata(self.metadata))

    @property
    def address(self) -> str:
        """``host:port``, with IPv6 literals in brackets (``[::1]:80``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
