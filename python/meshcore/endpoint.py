"""The endpoint value that discovery sources yield and balancers consume."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from meshcore.errors import ConfigError

__all__ = ["Endpoint", "Metadata"]


class Metadata(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (an endpoint's metadata)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        items = dict(data or {})
        for k, v in items.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError(f"metadata keys and values must be str, got {k!r}: {v!r}")
        self._data = items
        self._hash = hash(frozenset(items.items()))

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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of a service: ``host`` (an IP address or a name), ``port`` (1..65535),
    ``weight`` (an int >= 1, relative share for a weighted balancer) and ``metadata`` (an immutable
    ``str -> str`` mapping; a plain dict given here is copied into one). Frozen and hashable, so
    sets of endpoints compare by value."""

    host: str
    port: int
    weight: int = 1
    metadata: Mapping[str, str] = field(default_factory=Metadata)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"endpoint host must be a non-empty str, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"endpoint port must be an int, got {self.port!r}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"endpoint port must be in 1..65535, got {self.port}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise ConfigError(f"endpoint weight must be an int >= 1, got {self.weight!r}")
        if not isinstance(self.metadata, Metadata):
            if not isinstance(self.metadata, Mapping):
                raise ConfigError(f"endpoint metadata must be a mapping, got {self.metadata!r}")
            object.__setattr__(self, "metadata", Metadata(self.metadata))

    @property
    def address(self) -> str:
        """``host:port``, with IPv6 literals in brackets (``[::1]:80``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
