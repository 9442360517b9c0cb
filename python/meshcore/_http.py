"""What the HTTP clients of the discovery sources and health probes share."""

from __future__ import annotations

import functools
import os
import ssl

import httpx

from meshcore.errors import ConfigError

__all__ = ["ssl_verify"]


@functools.cache
def _default_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def ssl_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """The ``verify=`` to give an httpx client: ``True`` becomes one default context shared by
    the whole process. httpx builds (and loads the CA bundle into) a new context for every client
    otherwise, about 50 ms each, which a process with a thousand watched services would feel.

    A ``str`` is a CA bundle file or a directory of CA certificates, loaded into a new context
    (httpx 0.28 deprecates passing the path itself); :class:`ConfigError` when it cannot be
    loaded."""
    if verify is True:
        return _default_context()
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                return ssl.create_default_context(capath=verify)
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA certificates from {verify!r}: {exc}") from exc
    return verify
