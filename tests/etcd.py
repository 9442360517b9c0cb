"""Real etcd servers on loopback for the discovery tests.

``EtcdCluster(directory, size).start()`` runs ``size`` etcd members (one for most tests, three for
the fault tests) on free loopback ports, each with its own data directory and fast Raft timers, and
waits until every ``/health`` answers true. Members are signalled through the PID this module
started: ``stop()`` (SIGTERM), ``kill()`` (SIGKILL, a crash) or ``freeze()`` (SIGSTOP, a hung
member); ``start()`` again restarts a member with its data directory and flags. ``gateway()`` is a
small synchronous client of the JSON gateway for tests to write keys with; ``etcdctl()`` runs the
command-line client when it is installed. etcd is the Debian package ``etcd-server``
(``etcd-client`` for etcdctl), which ``scripts/test.sh`` installs.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from servers import end_process, free_ports, wait_ready

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "Gateway",
    "b64",
    "find_etcd",
]


def find_etcd() -> str | None:
    """The path of etcd (etcdctl is optional: see :meth:`EtcdCluster.etcdctl`)."""
    return shutil.which("etcd")


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


class Gateway:
    """A synchronous client of one member's JSON gateway (``/v3/*``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"/v3/{path}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def put(self, key: str, value: str | bytes, lease: str | None = None) -> int:
        """Write a key; returns the new revision."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease is not None:
            body["lease"] = lease
        return int(self.call("kv/put", body)["header"]["revision"])

    def put_all(self, items: Mapping[str, str | bytes]) -> int:
        """Write every key in one transaction (one revision, so one watch response, its events
        in this order); returns the new revision."""
        ops = [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in items.items()]
        return int(self.call("kv/txn", {"success": ops})["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self.call("kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def delete_prefix(self, prefix: str) -> int:
        body = {"key": b64(prefix), "range_end": _prefix_end(prefix)}
        return int(self.call("kv/deleterange", body)["header"]["revision"])

    def get(self, key: str) -> dict[str, Any] | None:
        """The key's kv (``key``/``value`` decoded to str, ``lease`` as given), or None."""
        kvs = self.call("kv/range", {"key": b64(key)}).get("kvs", [])
        if not kvs:
            return None
        kv: dict[str, Any] = dict(kvs[0])
        kv["key"] = base64.b64decode(kv["key"]).decode()
        kv["value"] = base64.b64decode(kv.get("value", "")).decode()
        return kv

    def keys(self, prefix: str) -> dict[str, str]:
        """The keys under ``prefix`` and their values (a linearizable read)."""
        return {key: value for key, value, _ in self.items(prefix)}

    def items(self, prefix: str) -> list[tuple[str, str, int]]:
        """(key, value, mod_revision) of every key under ``prefix``."""
        body = {"key": b64(prefix), "range_end": _prefix_end(prefix)}
        kvs = self.call("kv/range", body).get("kvs", [])
        return [
            (
                base64.b64decode(kv["key"]).decode(),
                base64.b64decode(kv.get("value", "")).decode(),
                int(kv["mod_revision"]),
            )
            for kv in kvs
        ]

    def revision(self) -> int:
        return int(self.call("kv/range", {"key": b64("\0")})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("kv/compaction", {"revision": str(revision), "physical": True})

    def grant(self, ttl: int) -> str:
        lease: str = self.call("lease/grant", {"TTL": str(ttl)})["ID"]
        return lease

    def revoke(self, lease: str) -> None:
        self.call("lease/revoke", {"ID": lease})

    def time_to_live(self, lease: str) -> int:
        """Seconds the lease has left; -1 when it does not exist."""
        return int(self.call("lease/timetolive", {"ID": lease}).get("TTL", "0"))

    def status(self) -> dict[str, Any]:
        return self.call("maintenance/status", {})


class EtcdMember:
    def __init__(
        self, etcd: str, name: str, directory: Path, client_port: int, peer_port: int
    ) -> None:
        self.etcd = etcd
        self.name = name
        self.dir = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []

    def configure(self, initial_cluster: str, token: str) -> None:
        self.args = [
            self.etcd,
            "--name", self.name,
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", str(self.dir / "etcd.log"),
        ]  # fmt: skip

    def start(self) -> None:
        assert self.proc is None, f"{self.name} is running"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("health") == "true"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def freeze(self) -> None:
        """A hung member: SIGSTOP (its sockets stay open, nothing answers)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to this member's PID and wait until it exits (SIGKILL after 5 s)."""
        self.thaw()
        proc, self.proc = self.proc, None
        if proc is None:
            return
        end_process(proc, sig)

    def kill(self) -> None:
        """A crash: SIGKILL, no clean shutdown."""
        self.stop(signal.SIGKILL)

    def read_log(self) -> str:
        path = self.dir / "etcd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class EtcdCluster:
    """``size`` etcd members on loopback (see the module docstring)."""

    def __init__(self, directory: Path, size: int = 1) -> None:
        etcd = find_etcd()
        if etcd is None:
            raise FileNotFoundError("etcd not found (Debian package etcd-server)")
        self.etcd = etcd
        self.etcdctl_path = shutil.which("etcdctl")
        ports = free_ports(2 * size)  # picked together: every member's two ports differ
        self.members = [
            EtcdMember(self.etcd, f"m{i}", directory / f"m{i}", ports[2 * i], ports[2 * i + 1])
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"meshcore-test-{os.getpid()}-{id(self)}"
        for m in self.members:
            m.configure(initial, token)
        self._gateways: dict[str, Gateway] = {}

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, timeout: float = 20.0) -> None:
        try:
            for m in self.members:
                m.start()
            self.wait_healthy(self.members, timeout)
        except BaseException:
            self.stop()  # never leave a server behind
            raise

    def wait_healthy(self, members: Sequence[EtcdMember], timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        for m in members:
            if m.proc is None:
                raise RuntimeError(f"etcd {m.name} is not running: {m.read_log()}")
            wait_ready(m.proc, m.healthy, end - time.monotonic(), f"etcd {m.name}", m.read_log)

    def restart(self, member: EtcdMember, timeout: float = 20.0) -> None:
        member.start()
        self.wait_healthy([member], timeout)

    def stop(self) -> None:
        for gw in self._gateways.values():
            gw.close()
        self._gateways.clear()
        for m in self.members:
            m.stop()

    def gateway(self, member: EtcdMember | None = None) -> Gateway:
        """A gateway client on ``member`` (default: the first running member)."""
        if member is None:
            member = next(m for m in self.members if m.running())
        if member.url not in self._gateways:
            self._gateways[member.url] = Gateway(member.url)
        return self._gateways[member.url]

    def leader(self) -> EtcdMember:
        """The current leader, asked of each running member's ``/v3/maintenance/status``."""
        by_id: dict[str, EtcdMember] = {}
        leader = None
        for m in self.members:
            if not m.running():
                continue
            try:
                status = self.gateway(m).status()
            except httpx.HTTPError:
                continue
            by_id[status["header"]["member_id"]] = m
            leader = status.get("leader", leader)
        if leader is None or leader not in by_id:
            raise RuntimeError("no leader among the running members")
        return by_id[leader]

    def etcdctl(self, *args: str) -> str:
        """Run etcdctl (API v3) against the running members; returns stdout."""
        if self.etcdctl_path is None:
            raise FileNotFoundError("etcdctl not found (Debian package etcd-client)")
        endpoints = ",".join(m.url for m in self.members if m.running())
        out = subprocess.run(
            [self.etcdctl_path, f"--endpoints={endpoints}", "--command-timeout=5s", *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        return out.stdout
