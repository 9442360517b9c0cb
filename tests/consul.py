"""A real Consul dev agent on loopback for the discovery tests.

``find_consul()`` looks for the binary in ``MESHCORE_CONSUL_BIN``, then ``consul`` on PATH
(``scripts/get-consul.sh`` fetches Consul 1.8.7 and prints its path). ``ConsulAgent(directory)``
picks every port it needs at run time (HTTP, DNS, server RPC, Serf LAN and WAN; gRPC off), and
``start()`` runs ``consul agent -dev`` bound to 127.0.0.1 and waits until it has a leader.
``stop()`` sends SIGTERM to that PID only (SIGKILL after 5 s). ``start()`` after ``stop()`` is a
restart on the same ports. A dev agent keeps the catalog in memory but persists the services
registered through it in its data directory and syncs them back after a restart; each ``start()``
uses a new data directory unless ``keep_state=True``, so by default the agent forgets everything.
``api()`` is a small synchronous client for the tests' own raw HTTP calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from servers import end_process, free_ports, wait_ready

__all__ = ["ConsulAgent", "find_consul"]


def find_consul() -> str | None:
    """The consul binary: ``MESHCORE_CONSUL_BIN`` if it names an executable, else PATH."""
    env = os.environ.get("MESHCORE_CONSUL_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("consul")


class ConsulAgent:
    def __init__(
        self,
        directory: Path,
        node: str = "meshcore-test",
        hcl: Sequence[str] = (),
        *,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls`` (a certificate and its key, PEM files) also opens an HTTPS port:
        ``https_url``."""
        binary = find_consul()
        if binary is None:
            raise FileNotFoundError("consul not found (set MESHCORE_CONSUL_BIN)")
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.hcl = list(hcl)
        ports = free_ports(6 if tls else 5, udp=True)
        self.http_port, self.dns_port, self.server_port, self.serf_lan, self.serf_wan = ports[:5]
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.https_url: str | None = None
        if tls is not None:
            self.https_url = f"https://127.0.0.1:{ports[5]}"
            cert, key = tls
            self.hcl += [
                f"ports {{ https = {ports[5]} }}",
                f'cert_file = "{cert}"',
                f'key_file = "{key}"',
            ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 20.0, *, keep_state: bool = False) -> None:
        assert self.proc is None
        if not keep_state or not self.starts:
            self.starts += 1
        self.log = (self.dir / "consul.log").open("ab")
        args = [
            self.binary,
            "agent",
            "-dev",
            "-node",
            self.node,
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-data-dir",
            str(self.dir / f"data-{self.starts}"),
            "-http-port",
            str(self.http_port),
            "-dns-port",
            str(self.dns_port),
            "-server-port",
            str(self.server_port),
            "-serf-lan-port",
            str(self.serf_lan),
            "-serf-wan-port",
            str(self.serf_wan),
            "-grpc-port",
            "-1",
            "-disable-host-node-id",
            "-hcl",
            "disable_update_check = true",
            *(arg for text in self.hcl for arg in ("-hcl", text)),
            "-log-level",
            "warn",
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_ready(
                self.proc, self._has_leader, timeout, "consul", lambda: self.read_log()[-2000:]
            )
        except BaseException:
            self.stop()  # never leave an agent behind
            raise

    def _has_leader(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/v1/status/leader", timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and f":{self.server_port}" in r.text

    def read_log(self) -> str:
        return (self.dir / "consul.log").read_text(errors="replace")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        end_process(proc)
        self.log.close()

    def api(
        self, method: str, path: str, body: Any = None, token: str | None = None, **params: str
    ) -> Any:
        """One raw HTTP call; raises on a non-2xx answer; returns the JSON body (or None)."""
        headers = {"X-Consul-Token": token} if token else {}
        r = httpx.request(
            method, f"{self.url}{path}", json=body, params=params, headers=headers, timeout=10.0
        )
        r.raise_for_status()
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else None

    def register(self, sid: str, name: str, port: int, **fields: Any) -> None:
        """Register a service instance directly (no meshcore involved)."""
        self.api(
            "PUT", "/v1/agent/service/register", {"ID": sid, "Name": name, "Port": port, **fields}
        )

    def deregister(self, sid: str) -> None:
        self.api("PUT", f"/v1/agent/service/deregister/{sid}")
