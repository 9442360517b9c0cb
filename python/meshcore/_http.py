"""What the HTTP clients of the discovery sources and health probes share."""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["ssl_verify"]


@functools.cache
def _default_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def ssl_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | str | bool:
    """The ``verify=`` to give an httpx client: ``True`` becomes one default context shared by
    the whole process. httpx builds (and loads the CA bundle into) a new context for every client
    otherwise, about 50 ms each, which a process with a thousand watched services would feel."""
    return _default_context() if verify is True else verify
