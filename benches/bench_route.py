"""Route-table benchmark: meshcore.RouteTable against pytricia, py-radix and a numpy DIR-24-8,
side by side in one run, on a real full BGP table.

    python benches/bench_route.py [--routes DIR] [--lookups N]

DIR holds the RIS tables (``ris-20260511-as3333-ipv4.txt.gz`` and friends); by default the
project's ``../shared/data/routes`` when it exists. Next hops are assigned as a router would see
them: 256 ids, runs of neighbouring prefixes sharing one. Every figure is a ratio to a peer
measured in the same run; the machine is shared and noisy, so absolute rates move between runs.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import ipaddress
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import meshcore

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "routes"
NONE = np.uint32(0xFFFFFFFF)


def rss() -> int:
    """Resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def read_prefixes(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [line.split()[0] for line in f if line.strip()]


def v4_arrays(prefixes: list[str]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    nets = [ipaddress.IPv4Network(p) for p in prefixes]
    addrs = np.fromiter((int(n.network_address) for n in nets), dtype=np.uint32, count=len(nets))
    lens = np.fromiter((n.prefixlen for n in nets), dtype=np.uint8, count=len(nets))
    return addrs, lens


def next_hops(n: int) -> npt.NDArray[np.int64]:
    return ((np.arange(n) // 7) % 256).astype(np.int64)


class Dir248:
    """The numpy DIR-24-8 a Python user would write: a 2**24 first level, 256-entry groups."""

    def __init__(
        self,
        addrs: npt.NDArray[np.uint32],
        lens: npt.NDArray[np.uint8],
        values: npt.NDArray[np.int64],
    ) -> None:
        self.tbl24 = np.full(1 << 24, NONE, dtype=np.uint32)
        order = np.argsort(lens, kind="stable")
        deep = []
        for length in np.unique(lens):
            sel = order[lens[order] == length]
            if length > 24:
                deep.append(sel)
                continue
            span = 1 << (24 - int(length))
            starts = (addrs[sel] >> 8).astype(np.int64)
            idx = (starts[:, None] + np.arange(span)[None, :]).ravel()
            self.tbl24[idx] = np.repeat(values[sel].astype(np.uint32), span)
        # Longer prefixes: a 256-entry group per /24, flagged in the top bit of tbl24.
        groups: list[npt.NDArray[np.uint32]] = []
        for sel in deep:
            for i in sel:
                slot = int(addrs[i]) >> 8
                entry = int(self.tbl24[slot])
                if entry != NONE and entry & 0x80000000 and entry != 0xFFFFFFFF:
                    g = groups[entry & 0x7FFFFFFF]
                else:
                    g = np.full(256, entry, dtype=np.uint32)
                    groups.append(g)
                    self.tbl24[slot] = 0x80000000 | (len(groups) - 1)
                lo = int(addrs[i]) & 0xFF
                g[lo : lo + (1 << (32 - int(lens[i])))] = values[i]
        self.tbl8 = np.concatenate(groups) if groups else np.zeros(256, np.uint32)

    def lookup_many(self, q: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        e = self.tbl24[q >> 8]
        deep = (e & 0x80000000).astype(bool) & (e != NONE)
        if deep.any():
            e = e.copy()
            e[deep] = self.tbl8[((e[deep] & 0x7FFFFFFF).astype(np.int64) << 8) + (q[deep] & 0xFF)]
        out: npt.NDArray[np.int64] = e.astype(np.int64)
        out[e == NONE] = -1
        return out


def row(name: str, value: str, ratio: str = "") -> None:
    print(f"  {name:<52} {value:>16} {ratio:>14}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--routes", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--lookups", type=int, default=10_000_000)
    args = ap.parse_args(argv)
    v4_file = args.routes / "ris-20260511-as3333-ipv4.txt.gz"
    v6_file = args.routes / "ris-20260511-as3333-ipv6.txt.gz"
    upd_file = args.routes / "ris-20260511-as3333-updates-ipv4.txt.gz"
    if not v4_file.exists():
        print(f"no route tables under {args.routes}; pass --routes DIR", file=sys.stderr)
        return 2
    import pytricia
    import radix

    print("meshcore route-table benchmark (RIS 2026-05-11, AS3333; 256 next hops)")
    prefixes = read_prefixes(v4_file)
    addrs, lens = v4_arrays(prefixes)
    values = next_hops(len(prefixes))
    print(f"  {len(prefixes):,} IPv4 prefixes\n")

    print("== build from arrays / strings, and memory (RSS growth) ==")
    base = rss()
    t0 = time.perf_counter()
    mc = meshcore.RouteTable()
    mc.insert_many(addrs, lens, values)
    t_mc = time.perf_counter() - t0
    m_mc = rss() - base
    base = rss()
    t0 = time.perf_counter()
    pt = pytricia.PyTricia(32)
    for p, v in zip(prefixes, values.tolist(), strict=True):
        pt[p] = v
    t_pt = time.perf_counter() - t0
    m_pt = rss() - base
    base = rss()
    t0 = time.perf_counter()
    npd = Dir248(addrs, lens, values)
    t_np = time.perf_counter() - t0
    m_np = rss() - base
    base = rss()
    t0 = time.perf_counter()
    rx = radix.Radix()
    for p, v in zip(prefixes[:200_000], values.tolist(), strict=False):
        rx.add(p).data["v"] = v
    t_rx = (time.perf_counter() - t0) * len(prefixes) / 200_000
    m_rx = (rss() - base) * len(prefixes) // 200_000
    row("meshcore insert_many (arrays)", f"{t_mc:.3f} s", "")
    row("pytricia (str keys)", f"{t_pt:.3f} s", f"{t_pt / t_mc:.1f}x slower")
    row("numpy DIR-24-8 (arrays)", f"{t_np:.3f} s", f"{t_np / t_mc:.1f}x slower")
    row("py-radix (str keys, 200k extrapolated)", f"{t_rx:.3f} s", f"{t_rx / t_mc:.1f}x slower")
    row("memory meshcore (RIB + Poptrie)", f"{m_mc / 2**20:.1f} MiB", "")
    row("memory pytricia", f"{m_pt / 2**20:.1f} MiB", f"{m_pt / max(m_mc, 1):.2f}x meshcore")
    row("memory numpy DIR-24-8", f"{m_np / 2**20:.1f} MiB", f"{m_np / max(m_mc, 1):.2f}x meshcore")
    row("memory py-radix (extrapolated)", f"{m_rx / 2**20:.1f} MiB", f"{m_rx / max(m_mc, 1):.2f}x")

    rng = np.random.default_rng(1)
    q = rng.integers(0, 2**32, size=args.lookups, dtype=np.uint64).astype(np.uint32)
    # Correctness first: meshcore and pytricia agree on 1 M random addresses.
    check = q[:1_000_000]
    got = mc.lookup_many(check)
    want = np.array([-1 if (v := pt.get(int(a))) is None else v for a in check], dtype=np.int64)
    bad = int((got != want).sum())
    assert bad == 0, f"{bad} of {len(check)} lookups differ from pytricia"
    assert (npd.lookup_many(check) == want).all(), "numpy peer disagrees with pytricia"
    print("\n  1,000,000 random addresses: meshcore == pytricia == numpy DIR-24-8 on every one")

    print(f"\n== batch IPv4, {args.lookups:,} uniform random addresses ==")
    t_b = best(lambda: mc.lookup_many(q), 5)
    t_n = best(lambda: npd.lookup_many(q), 5)
    hit_idx = rng.integers(0, len(addrs), size=args.lookups // 2)
    span = (1 << (32 - lens[hit_idx].astype(np.uint64))) - 1
    hit = addrs[hit_idx] | (
        rng.integers(0, 2**32, size=len(hit_idx), dtype=np.uint64) & span
    ).astype(np.uint32)
    buf = np.empty(len(q), dtype=np.int64)
    t_bo = best(lambda: mc.lookup_many(q, out=buf), 5)
    t_bh = best(lambda: mc.lookup_many(hit))
    t_nh = best(lambda: npd.lookup_many(hit))
    mlps, nlps = len(q) / t_b / 1e6, len(q) / t_n / 1e6
    mh, nh = len(hit) / t_bh / 1e6, len(hit) / t_nh / 1e6
    row("meshcore lookup_many (uniform)", f"{mlps:.1f} Mlps", "")
    row("numpy DIR-24-8 (uniform)", f"{nlps:.1f} Mlps", f"{mlps / nlps:.2f}x")
    olps = len(q) / t_bo / 1e6
    row("meshcore lookup_many(q, out=buf) (uniform)", f"{olps:.1f} Mlps", f"{olps / nlps:.2f}x")
    row("meshcore lookup_many (hit: hosts in table prefixes)", f"{mh:.1f} Mlps", "")
    row("numpy DIR-24-8 (hit)", f"{nh:.1f} Mlps", f"{mh / nh:.2f}x")

    print("\n== single lookups from Python, 300,000 calls ==")
    ints = [int(a) for a in q[:300_000]]
    strs = [str(ipaddress.IPv4Address(a)) for a in ints[:100_000]]

    def loop(fn: Callable[[Any], object], keys: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for k in keys:
                fn(k)

        return run

    s_mc = len(ints) / best(loop(mc.lookup, ints)) / 1e6
    s_pt = len(ints) / best(loop(pt.get, ints)) / 1e6
    ss_mc = len(strs) / best(loop(mc.lookup, strs)) / 1e6
    ss_pt = len(strs) / best(loop(pt.get, strs)) / 1e6
    ss_rx = len(strs) / best(loop(rx.search_best, strs)) / 1e6
    row("meshcore lookup(int)", f"{s_mc:.2f} M/s", "")
    row("pytricia get(int)", f"{s_pt:.2f} M/s", f"{s_mc / s_pt:.2f}x")
    row("meshcore lookup(str)", f"{ss_mc:.2f} M/s", "")
    row("pytricia get(str)", f"{ss_pt:.2f} M/s", f"{ss_mc / ss_pt:.2f}x")
    row("py-radix search_best(str) (200k-route table)", f"{ss_rx:.2f} M/s", f"{ss_mc / ss_rx:.2f}x")

    upd_rate = pt_upd = call_rate = 0.0
    if upd_file.exists():
        print("\n== replaying the day of RIS IPv4 updates ==")
        ops = []
        with gzip.open(upd_file, "rt") as f:
            for line in f:
                kind, p = line.split()[:2]
                ops.append((kind == "A", p))
        mc2 = meshcore.RouteTable()
        mc2.insert_many(addrs, lens, values)
        pt2 = pytricia.PyTricia(32)
        for p, v in zip(prefixes, values.tolist(), strict=True):
            pt2[p] = v

        def replay_mc() -> None:
            for i, (add, p) in enumerate(ops):
                if add:
                    mc2[p] = i & 255
                elif p in mc2:
                    del mc2[p]

        def replay_pt() -> None:
            for i, (add, p) in enumerate(ops):
                if add:
                    pt2[p] = i & 255
                elif pt2.has_key(p):
                    del pt2[p]

        t_u = best(replay_mc, 1)
        t_p = best(replay_pt, 1)
        call_rate, pt_upd = len(ops) / t_u / 1e6, len(ops) / t_p / 1e6
        row(f"meshcore t[p] = v / del ({len(ops):,} updates)", f"{call_rate:.2f} M/s", "")
        row("pytricia, the same loop", f"{pt_upd:.2f} M/s", f"{call_rate / pt_upd:.2f}x")
        # The same stream through update_many, as a FIB fed by a routing daemon: in bursts of
        # 1,000 updates (incremental), and the whole day in one call (RIB, then one compile).
        u_addrs, u_lens = v4_arrays([p for _, p in ops])
        u_vals = np.array([i & 255 if add else -1 for i, (add, _) in enumerate(ops)])
        mc3 = meshcore.RouteTable()
        mc3.insert_many(addrs, lens, values)

        def replay_batches() -> None:
            for i in range(0, len(ops), 1000):
                mc3.update_many(u_addrs[i : i + 1000], u_lens[i : i + 1000], u_vals[i : i + 1000])

        upd_rate = len(ops) / best(replay_batches, 1) / 1e6
        mc4 = meshcore.RouteTable()
        mc4.insert_many(addrs, lens, values)
        day_rate = len(ops) / best(lambda: mc4.update_many(u_addrs, u_lens, u_vals), 1) / 1e6
        ratio = f"{upd_rate / pt_upd:.2f}x"
        row("meshcore update_many, bursts of 1,000", f"{upd_rate:.2f} M/s", ratio)
        row("meshcore update_many, the day in one call", f"{day_rate:.2f} M/s", "")
        probe = q[:200_000]
        want2 = np.array([-1 if (v := pt2.get(int(a))) is None else v for a in probe])
        for t in (mc2, mc3, mc4):
            assert (t.lookup_many(probe) == want2).all(), "tables differ after the replay"
        assert sorted(mc3) == sorted(mc2) == sorted(mc4), "route sets differ after the replay"
        print("  after each replay: meshcore == pytricia on 200,000 random addresses")

    v6_rate = v6_single = v6_pt = 0.0
    if v6_file.exists():
        print("\n== IPv6 ==")
        p6 = read_prefixes(v6_file)
        nets = [ipaddress.IPv6Network(p) for p in p6]
        a6 = np.array([list(n.network_address.packed) for n in nets], dtype=np.uint8)
        l6 = np.array([n.prefixlen for n in nets], dtype=np.uint8)
        v6 = next_hops(len(p6))
        t0 = time.perf_counter()
        mc6 = meshcore.RouteTable()
        mc6.insert_many(a6, l6, v6)
        t6 = time.perf_counter() - t0
        pt6 = pytricia.PyTricia(128)
        for p, v in zip(p6, v6.tolist(), strict=True):
            pt6[p] = v
        pick = rng.integers(0, len(nets), size=2_000_000)
        hosts = a6[pick].copy()
        hosts[:, 8:] = rng.integers(0, 256, size=(len(pick), 8), dtype=np.uint8)  # inside /64s
        hosts = np.where(l6[pick, None] <= np.arange(16)[None, :] * 8, hosts, a6[pick])
        hosts = hosts.astype(np.uint8)
        got6 = mc6.lookup_many(hosts[:100_000])
        want6 = [pt6.get(bytes(h)) for h in hosts[:100_000]]
        assert got6.tolist() == [-1 if w is None else w for w in want6], "IPv6 differs"
        v6_rate = len(hosts) / best(lambda: mc6.lookup_many(hosts)) / 1e6
        packed = [bytes(h) for h in hosts[:200_000]]
        v6_single = len(packed) / best(loop(mc6.lookup, packed)) / 1e6
        v6_pt = len(packed) / best(loop(pt6.get, packed)) / 1e6
        row(f"build {len(p6):,} prefixes from arrays", f"{t6:.3f} s", "")
        row("meshcore lookup_many (hit mix, /48-heavy)", f"{v6_rate:.1f} Mlps", "")
        row("meshcore lookup(16-byte bytes)", f"{v6_single:.2f} M/s", "")
        row("pytricia get(16-byte bytes)", f"{v6_pt:.2f} M/s", f"{v6_single / v6_pt:.2f}x")
        print("  100,000 IPv6 hit lookups: meshcore == pytricia on every one")

    print("\n== targets (this run) ==")

    def target(name: str, ok: bool, got: str) -> None:
        print(f"  {'PASS' if ok else 'MISS'}  {name:<58} {got}")

    target("batch IPv4 >= 150 Mlps", mlps >= 150, f"{mlps:.1f} Mlps")
    target("batch IPv4 >= 2x numpy DIR-24-8", mlps >= 2 * nlps, f"{mlps / nlps:.2f}x")
    if v6_rate:
        target("batch IPv6 >= 30 Mlps", v6_rate >= 30, f"{v6_rate:.1f} Mlps")
    target("single lookup >= 3x pytricia get", s_mc >= 3 * s_pt, f"{s_mc / s_pt:.2f}x (int keys)")
    target("build full IPv4 table from arrays < 1 s", t_mc < 1, f"{t_mc:.3f} s")
    if upd_rate:
        target(
            "update replay >= 1 M updates/s (update_many, bursts of 1,000)",
            upd_rate >= 1,
            f"{upd_rate:.2f} M/s (one call per update: {call_rate:.2f})",
        )
    target(
        "memory below pytricia (IPv4)", m_mc < m_pt, f"{m_mc / 2**20:.0f} vs {m_pt / 2**20:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
