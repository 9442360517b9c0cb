"""A real Knot DNS server on loopback for the discovery tests.

``KnotServer(directory, zones).start()`` writes the zone files and a ``knot.conf``, runs ``knotd``
in the foreground (so the PID is its own), waits until ``knotc zone-status`` answers and exposes
``change()`` to edit records at run time through a ``knotc`` zone transaction (RFC 2136 dynamic
updates signed with ``TSIG_NAME`` / ``TSIG_SECRET`` work too). ``stop()`` sends
SIGTERM to that PID only; the database directory survives, so ``start()`` again resumes with the
changes made so far. Knot is the Debian package ``knot`` (``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from servers import end_process, free_ports, wait_ready

__all__ = ["TSIG_NAME", "TSIG_SECRET", "KnotServer", "find_knot"]

# RFC 2136 updates signed with this TSIG key (RFC 8945) are accepted from 127.0.0.0/8.
TSIG_NAME = "meshcore-update"
TSIG_SECRET = "dGVzdC1vbmx5LWtleS1kby1ub3QtdXNlLWVsc2V3aGVyZQ=="  # test-only


def find_knot() -> tuple[str, str] | None:
    """Paths of knotd and knotc (they live in /usr/sbin, often not on a user's PATH)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    knotd, knotc = shutil.which("knotd", path=path), shutil.which("knotc", path=path)
    return (knotd, knotc) if knotd and knotc else None


def _free_on_v6(port: int) -> bool:
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET6, kind) as s:
                s.bind(("::1", port))
    except OSError:
        return False
    return True


class KnotServer:
    def __init__(self, directory: Path, zones: dict[str, str], port: int | None = None) -> None:
        found = find_knot()
        if found is None:
            raise FileNotFoundError("knotd/knotc not found (Debian package `knot`)")
        self.knotd, self.knotc = found
        self.dir = directory
        self.zones = zones
        port = port or int(os.environ.get("MESHCORE_DNS_PORT", "0"))
        self.port = port or free_ports(1, udp=True)[0]
        self.proc: subprocess.Popen[bytes] | None = None
        # ::1 too when the machine has IPv6 loopback and the port is free there.
        self.addresses = ["127.0.0.1"] + (["::1"] if _free_on_v6(self.port) else [])
        self.conf = self.dir / "knot.conf"
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        for zone, text in zones.items():
            (self.dir / f"{zone}.zone").write_text(text)
        zone_lines = "".join(f"  - domain: {zone}\n    acl: local-update\n" for zone in zones)
        self.conf.write_text(
            f"server:\n"
            f'    rundir: "{self.dir}/run"\n'
            f"    listen: [ {', '.join(f'{a}@{self.port}' for a in self.addresses)} ]\n"
            f"database:\n"
            f'    storage: "{self.dir}/db"\n'
            f"control:\n"
            f'    listen: "{self.dir}/run/knot.sock"\n'
            f"log:\n"
            f"  - target: stderr\n"
            f"    any: warning\n"
            f"key:\n"
            f"  - id: {TSIG_NAME}\n"
            f"    algorithm: hmac-sha256\n"
            f"    secret: {TSIG_SECRET}\n"
            f"acl:\n"
            f"  - id: local-update\n"
            f"    address: 127.0.0.0/8\n"
            f"    key: {TSIG_NAME}\n"
            f"    action: update\n"
            f"template:\n"
            f"  - id: default\n"
            f'    storage: "{self.dir}"\n'
            f"    zonefile-sync: -1\n"
            f"    zonefile-load: difference-no-serial\n"
            f"    journal-content: all\n"
            f"zone:\n{zone_lines}"
        )

    def ctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [self.knotc, "-c", str(self.conf), "-t", "2", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and (out.returncode != 0 or "error" in out.stdout.lower()):
            raise RuntimeError(f"knotc {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None
        self.log = (self.dir / "knotd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.knotd, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT
        )
        proc = self.proc

        def loaded() -> bool:
            return all(
                "serial" in self.ctl("zone-status", zone, check=False) for zone in self.zones
            )

        try:
            wait_ready(proc, loaded, timeout, "knotd", self.read_log)
        except BaseException:
            self.stop()  # never leave a server behind
            raise

    def read_log(self) -> str:
        return (self.dir / "knotd.log").read_text(errors="replace")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        end_process(proc)
        self.log.close()

    def change(self, zone: str, *ops: tuple[str, ...]) -> None:
        """One zone transaction: each op is ("set", owner, ttl, type, data...) or
        ("unset", owner, type[, data...]); visible to the next query."""
        self.ctl("zone-begin", zone)
        try:
            for op, *args in ops:
                self.ctl(f"zone-{op}", zone, *args)
        except BaseException:
            self.ctl("zone-abort", zone, check=False)
            raise
        self.ctl("zone-commit", zone)
