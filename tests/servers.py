"""What the real-server fixtures share (``knotdns``, ``etcd``, ``consul``): free loopback ports
and stopping a server by the PID the fixture started."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack

__all__ = ["end_process", "free_ports", "wait_ready"]


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now, for TCP (and UDP too with ``udp``).
    Every socket is held until all are picked, so the kernel cannot hand out one port twice."""
    ports: list[int] = []
    with ExitStack() as stack:
        for _ in range(50 * count):
            if len(ports) == count:
                return ports
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if udp:
                u = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
    raise RuntimeError(f"could not find {count} free ports")


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    log: Callable[[], str],
) -> None:
    """Poll ``ready()`` until it is true; raise RuntimeError (with ``log()``, the server's log)
    when ``proc`` exits first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log()}")
        if time.monotonic() > end:
            raise RuntimeError(f"{what} not ready in {timeout} s: {log()}")
        time.sleep(0.02)


def end_process(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to ``proc`` (this PID only, never by name) and wait until it exits; SIGKILL
    after 5 s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
