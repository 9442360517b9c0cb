"""Packet-classification benchmark: meshcore.Classifier against DPDK's rte_acl (``dpdk-test-acl``),
a pure-Python first-match scan and a numpy batch scan, side by side in one run, on ClassBench sets.

    python benches/bench_classify.py [--data DIR] [--sets acl1_1k,fw1_10k,...] [--quick]

DIR holds ``classbench/``: rule files, ``<set>_trace`` (or ``generated/<set>_trace``) and
``<trace>.firstmatch``, the true first match of every trace line; by default the project's
``../shared/data`` when it exists. For each set:

1. meshcore's ``classify_many`` answer on every trace line is checked against ``.firstmatch``
   before anything is timed; a wrong answer stops the run (exit status 1). ``--check-dpdk`` checks
   DPDK's per-packet answers the same way, once per set.
2. ``classify_many`` on the whole trace as numpy columns (one core, one call per pass over the
   trace, ``out=`` preallocated) is timed against ``dpdk-test-acl`` on the same rule file and
   trace (one lcore, no hugepages, bursts of 256; sse and avx2 where the CPU has them in every
   round, scalar in the first; the best alg is "DPDK"). The runs are interleaved: after each
   DPDK run meshcore classifies the same number of packets (fewer if that would take over
   ``--run-seconds``), so both see the same machine load. The machine is shared and absolute
   rates swing 2x between runs; only the same-run ratio means anything. meshcore is also timed
   on a shuffled, de-duplicated copy of the trace (the ClassBench generator repeats headers,
   which flatters caches).
3. The peers a Python user would write, on a random sample of the trace: a first-match scan in
   pure Python and a numpy scan that broadcasts chunks of packets against every rule.
4. Bytes per rule (``Classifier.memory``; DPDK's runtime footprint beside it), single-rule
   ``remove`` and ``add`` of random existing rules (each call timed), build time of
   ``from_classbench``, and ``classify_frames`` on Ethernet frames built from the trace's TCP and
   UDP headers.

The peer is the Debian package ``dpdk-dev`` (``apt-get install dpdk-dev``); without it the DPDK
columns stay empty. Targets are printed as PASS or MISS (ratios best against best, absolute rates
on the median of the slower trace ordering) and the script exits 0 either way: it is a report,
not a test. ``--quick`` runs one round with fewer packets, samples and updates.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import meshcore

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DEFAULT_SETS = "acl1_1k,fw1_1k,ipc1_1k,acl1_10k,acl2_10k,fw1_10k,ipc1_10k"
#: dpdk-test-acl classify methods and the CPU flags each needs.
ALG_FLAGS: dict[str, tuple[str, ...]] = {"scalar": (), "sse": ("sse4_1",), "avx2": ("avx2",)}
DPDK_NO_MATCH = 4294967295
#: A set with at least this many rules is judged against the 10K targets.
TEN_K = 5_000

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
Columns = tuple[U32, U32, U16, U16, U8]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Rules:
    """A ClassBench filter set as columns (inclusive ranges), plus prefix text for ``add``."""

    slo: U32
    shi: U32
    dlo: U32
    dhi: U32
    splo: U16
    sphi: U16
    dplo: U16
    dphi: U16
    pv: U8
    pm: U8
    src: list[str]
    dst: list[str]

    def __len__(self) -> int:
        return len(self.slo)

    def add_kwargs(self, i: int) -> dict[str, Any]:
        """The keyword arguments of ``Classifier.add`` for rule ``i`` (priority = line index)."""
        pv, pm = int(self.pv[i]), int(self.pm[i])
        proto: int | tuple[int, int] | None = None if pm == 0 else pv if pm == 0xFF else (pv, pm)
        return {
            "priority": i,
            "src": self.src[i],
            "dst": self.dst[i],
            "sport": (int(self.splo[i]), int(self.sphi[i])),
            "dport": (int(self.dplo[i]), int(self.dphi[i])),
            "proto": proto,
        }

    def as_tuples(self) -> list[tuple[int, ...]]:
        cols = (self.slo, self.shi, self.dlo, self.dhi, self.splo, self.sphi, self.dplo)
        return list(zip(*(c.tolist() for c in (*cols, self.dphi, self.pv, self.pm)), strict=True))


def _prefix_range(text: str) -> tuple[int, int, str]:
    addr, length = text.split("/")
    n = int(length)
    mask = (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF
    lo = int(ipaddress.IPv4Address(addr)) & mask
    return lo, lo | (~mask & 0xFFFFFFFF), f"{ipaddress.IPv4Address(lo)}/{n}"


def parse_rules(path: Path) -> Rules:
    """``@sip/len dip/len splo : sphi dplo : dphi 0xPP/0xMM flags`` lines; flags are ignored."""
    rows: list[tuple[int, ...]] = []
    src: list[str] = []
    dst: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("@"):
            continue
        f = line[1:].split()
        slo, shi, s = _prefix_range(f[0])
        dlo, dhi, d = _prefix_range(f[1])
        pv, pm = (int(x, 16) for x in f[8].split("/"))
        rows.append((slo, shi, dlo, dhi, int(f[2]), int(f[4]), int(f[5]), int(f[7]), pv & pm, pm))
        src.append(s)
        dst.append(d)
    a = np.array(rows, dtype=np.int64).T
    u32, u16, u8 = np.uint32, np.uint16, np.uint8
    return Rules(
        a[0].astype(u32),
        a[1].astype(u32),
        a[2].astype(u32),
        a[3].astype(u32),
        a[4].astype(u16),
        a[5].astype(u16),
        a[6].astype(u16),
        a[7].astype(u16),
        a[8].astype(u8),
        a[9].astype(u8),
        src,
        dst,
    )


def read_ints(path: Path, ncols: int) -> I64:
    raw = np.array(path.read_bytes().split(), dtype=np.int64)
    return raw.reshape(-1, ncols)


def trace_columns(trace: Path) -> Columns:
    t = read_ints(trace, 7)
    return (
        t[:, 0].astype(np.uint32),
        t[:, 1].astype(np.uint32),
        t[:, 2].astype(np.uint16),
        t[:, 3].astype(np.uint16),
        t[:, 4].astype(np.uint8),
    )


def take(cols: Columns, idx: I64) -> Columns:
    return (cols[0][idx], cols[1][idx], cols[2][idx], cols[3][idx], cols[4][idx])


def shuffled_unique(cols: Columns, seed: int) -> I64:
    """Indices of one line per distinct 5-tuple, in random order."""
    key = np.stack([c.astype(np.uint64) for c in cols], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    out: I64 = np.random.default_rng(seed).permutation(first).astype(np.int64)
    return out


@dataclass
class RuleSet:
    name: str
    rules_path: Path
    trace_path: Path
    rules: Rules
    cols: Columns
    firstmatch: I64

    @property
    def lines(self) -> int:
        return len(self.firstmatch)


def find_dir(data: Path) -> Path | None:
    for d in (data / "classbench", data):
        if d.is_dir() and (any(d.glob("*_trace")) or any(d.glob("generated/*_trace"))):
            return d
    return None


def load_set(base: Path, name: str) -> RuleSet:
    rules_path = base / name
    trace_path = rules_path.with_name(rules_path.name + "_trace")
    if not trace_path.exists():
        trace_path = rules_path.parent / "generated" / (rules_path.name + "_trace")
    fm_path = trace_path.with_name(trace_path.name + ".firstmatch")
    for p in (rules_path, trace_path, fm_path):
        if not p.exists():
            raise SystemExit(f"{name}: missing {p}")
    rules = parse_rules(rules_path)
    cols = trace_columns(trace_path)
    fm = read_ints(fm_path, 1).ravel()
    if len(fm) != len(cols[0]):
        raise SystemExit(f"{name}: {fm_path.name} has {len(fm)} lines, the trace {len(cols[0])}")
    return RuleSet(name, rules_path, trace_path, rules, cols, fm)


def expect_equal(got: npt.ArrayLike, want: I64, what: str) -> None:
    """Stop the run when a classifier answer differs from the reference on any line."""
    g = np.asarray(got, dtype=np.int64)
    if g.shape != want.shape:
        raise SystemExit(f"FAIL {what}: {g.shape[0]} answers for {want.shape[0]} packets")
    bad = np.flatnonzero(g != want)
    if len(bad):
        first = ", ".join(f"line {i + 1}: got {g[i]}, want {want[i]}" for i in bad[:5])
        raise SystemExit(f"FAIL {what}: {len(bad):,} of {len(want):,} answers differ ({first})")


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call with the garbage collector paused, as timeit does."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def rate(packets: int, fn: Callable[[], object]) -> float:
    return packets / timed(fn)


def passes_for(batch: int, packets: int, seconds: float, one_pass: Callable[[], object]) -> int:
    """Passes over a batch of ``batch`` packets per timed run: enough for ``packets`` packets,
    fewer if a run would take longer than ``seconds``; at least one. Timing a pass here also
    warms the caches up."""
    t = min(timed(one_pass), timed(one_pass))
    return max(1, min(round(packets / batch), int(seconds / t)))


def percentile(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# --------------------------------------------------------------------------------------------
# Peer: DPDK dpdk-test-acl
# --------------------------------------------------------------------------------------------


@dataclass
class DpdkRun:
    pps: float | None
    memory: int | None = None
    error: str = ""


@dataclass
class Dpdk:
    binary: str
    cpu: int
    algs: list[str]

    def command(self, rs: RuleSet, *opts: str) -> list[str]:
        # --no-shconf: no shared runtime files, so runs by other users of the machine cannot
        # collide. --tracenum must cover the trace: 22.11 segfaults on longer traces than it.
        return [
            self.binary,
            "--no-huge",
            "--no-pci",
            "--no-shconf",
            "-l",
            str(self.cpu),
            "-m",
            "512",
            "--log-level=lib.acl:debug",
            "--",
            f"--rulesf={rs.rules_path}",
            f"--tracef={rs.trace_path}",
            f"--tracenum={max(rs.lines, 65536)}",
            f"--rulenum={max(len(rs.rules), 65536)}",
            *opts,
        ]

    def _run(self, cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if p.returncode == 0:
            return p, ""
        if p.returncode < 0:
            err = f"killed by signal {-p.returncode}"
        else:
            err = f"exit status {p.returncode}"
        tail = (p.stderr.strip().splitlines() or [""])[-1]
        return p, f"{err}: {tail}" if tail else err

    def measure(self, rs: RuleSet, alg: str, iters: int) -> DpdkRun:
        p, err = self._run(self.command(rs, f"--iter={iters}", f"--alg={alg}", "--verbose=1"))
        m = re.search(r"([\d.]+) pkt/sec", p.stdout)
        mem = re.search(r"^total: (\d+) bytes", p.stdout + p.stderr, re.MULTILINE)
        if err or m is None:
            return DpdkRun(None, error=err or "no pkt/sec figure in its output")
        return DpdkRun(float(m.group(1)), int(mem.group(1)) if mem else None)

    def answers(self, rs: RuleSet, alg: str) -> tuple[I64 | None, str]:
        """Per-packet results (0-based rule index, -1 for none) with --iter=1 --verbose=3."""
        p, err = self._run(self.command(rs, "--iter=1", f"--alg={alg}", "--verbose=3"))
        if err:
            return None, err
        res = [
            int(line.rsplit(None, 1)[1])
            for line in p.stdout.splitlines()
            if line.startswith("ipv4_5tuple:")
        ]
        out = np.array(res, dtype=np.int64)
        out[out == DPDK_NO_MATCH] = -1
        return out, ""


def cpu_info() -> tuple[str, set[str]]:
    """The CPU model name and feature flags (Linux)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                key, _, value = ln.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


# --------------------------------------------------------------------------------------------
# Peers a Python user would write
# --------------------------------------------------------------------------------------------


def python_scan(rules: list[tuple[int, ...]], packets: list[tuple[int, ...]]) -> list[int]:
    """First match in file order, one packet and one rule at a time."""
    out = []
    for s, d, sp, dp, pr in packets:
        for i, (slo, shi, dlo, dhi, splo, sphi, dplo, dphi, pv, pm) in enumerate(rules):
            if (
                slo <= s <= shi
                and dlo <= d <= dhi
                and splo <= sp <= sphi
                and dplo <= dp <= dphi
                and pr & pm == pv
            ):
                out.append(i)
                break
        else:
            out.append(-1)
    return out


def numpy_scan(r: Rules, cols: Columns, chunk: int = 256) -> I64:
    """A chunk of packets against every rule at once (a chunk x rules boolean matrix), then the
    first True per row: numpy cannot stop early, so it does all the work every time."""
    s, d, sp, dp, pr = cols
    out = np.empty(len(s), dtype=np.int64)
    for i in range(0, len(s), chunk):
        ps, pd = s[i : i + chunk, None], d[i : i + chunk, None]
        psp, pdp, ppr = sp[i : i + chunk, None], dp[i : i + chunk, None], pr[i : i + chunk, None]
        m = (ps >= r.slo) & (ps <= r.shi) & (pd >= r.dlo) & (pd <= r.dhi)
        m &= (psp >= r.splo) & (psp <= r.sphi) & (pdp >= r.dplo) & (pdp <= r.dphi)
        m &= (ppr & r.pm) == r.pv
        first = m.argmax(axis=1)
        out[i : i + len(first)] = np.where(m[np.arange(len(first)), first], first, -1)
    return out


# --------------------------------------------------------------------------------------------
# One rule set
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rules: int
    lines: int
    mc: list[float] = field(default_factory=list)  # packets/s, whole trace
    mc_shuffled: list[float] = field(default_factory=list)
    dpdk: dict[str, list[float]] = field(default_factory=dict)
    dpdk_memory: int | None = None
    dpdk_errors: list[str] = field(default_factory=list)
    py: list[float] = field(default_factory=list)
    np_scan: list[float] = field(default_factory=list)
    bytes_per_rule: float = 0.0
    remove_us: list[float] = field(default_factory=list)
    add_us: list[float] = field(default_factory=list)
    build_ms: list[float] = field(default_factory=list)
    frames: list[float] = field(default_factory=list)

    @property
    def ten_k(self) -> bool:
        return self.rules >= TEN_K

    def dpdk_best(self) -> tuple[str, float, float] | None:
        """(alg, best, median) of the alg with the highest best rate."""
        runs = {a: r for a, r in self.dpdk.items() if r}
        if not runs:
            return None
        alg = max(runs, key=lambda a: max(runs[a]))
        return alg, max(runs[alg]), statistics.median(runs[alg])


def line(name: str, value: str) -> None:
    print(f"  {name:<46} {value}")


def mpps(xs: Sequence[float]) -> str:
    return f"{max(xs) / 1e6:.2f} Mpps best, {statistics.median(xs) / 1e6:.2f} median"


def us(xs: Sequence[float]) -> str:
    return f"{statistics.median(xs):.2f} / {percentile(xs, 99):.2f}"


def bench_set(rs: RuleSet, args: argparse.Namespace, dpdk: Dpdk | None) -> Result:
    n = len(rs.rules)
    res = Result(rs.name, n, rs.lines)
    t_set = time.perf_counter()
    print(f"\n== {rs.name}: {n:,} rules, {rs.lines:,} trace lines ({rs.trace_path.name}) ==")

    # Build (and its time), then correctness before any timing.
    path = str(rs.rules_path)
    c = meshcore.Classifier.from_classbench(path)
    for _ in range(args.builds):
        res.build_ms.append(timed(lambda: meshcore.Classifier.from_classbench(path)) * 1e3)
    if len(c) != n:
        raise SystemExit(f"FAIL {rs.name}: from_classbench loaded {len(c)} rules, the file has {n}")
    expect_equal(c.classify_many(*rs.cols), rs.firstmatch, f"{rs.name} classify_many")
    uniq = shuffled_unique(rs.cols, args.seed)
    shuf = take(rs.cols, uniq)
    expect_equal(c.classify_many(*shuf), rs.firstmatch[uniq], f"{rs.name} shuffled")
    line("check", f"classify_many == .firstmatch on all {rs.lines:,} lines")
    if dpdk and args.check_dpdk:
        for alg in dpdk.algs:
            got, err = dpdk.answers(rs, alg)
            if got is None:
                line(f"dpdk-test-acl {alg} per-packet check", f"not run: {err}")
                continue
            bad = int((got != rs.firstmatch).sum()) if len(got) == rs.lines else rs.lines
            verdict = "== .firstmatch on every line" if not bad else f"MISMATCH on {bad:,} lines"
            line(f"dpdk-test-acl {alg} per-packet check", verdict)
    line("build from_classbench", f"{min(res.build_ms):.1f} ms best of {args.builds}")
    res.bytes_per_rule = c.memory / len(c)

    # Throughput: meshcore and DPDK interleaved. A DPDK run classifies --packets packets (whole
    # passes over the trace), a meshcore run as many unless that would take over --run-seconds.
    out = np.empty(rs.lines, dtype=np.int64)
    out_shuf = np.empty(len(uniq), dtype=np.int64)
    iters = max(1, round(args.packets / rs.lines))
    passes = passes_for(
        rs.lines, args.packets, args.run_seconds, lambda: c.classify_many(*rs.cols, out=out)
    )
    passes_shuf = passes_for(
        len(uniq), args.packets, args.run_seconds, lambda: c.classify_many(*shuf, out=out_shuf)
    )

    def mc_trace() -> None:
        for _ in range(passes):
            c.classify_many(*rs.cols, out=out)

    def mc_shuf() -> None:
        for _ in range(passes_shuf):
            c.classify_many(*shuf, out=out_shuf)

    algs = dpdk.algs if dpdk else [""] * len(ALG_FLAGS)
    res.dpdk = {a: [] for a in algs if a}
    for r in range(args.rounds):
        # Each round starts at another alg. The portable scalar path (never the fastest where
        # sse or avx2 exists) runs in the first round only: a DPDK run of fw1_10k spends ~10 s
        # building its tries, and the default run should stay within a few minutes.
        order = algs[r % len(algs) :] + algs[: r % len(algs)]
        for alg in [a for a in order if r == 0 or a != "scalar" or len(algs) == 1]:
            if dpdk and alg:
                run = dpdk.measure(rs, alg, iters)
                if run.pps is None:
                    res.dpdk_errors.append(f"{alg}: {run.error}")
                else:
                    res.dpdk[alg].append(run.pps)
                    res.dpdk_memory = run.memory or res.dpdk_memory
            res.mc.append(rate(passes * rs.lines, mc_trace))
            res.mc_shuffled.append(rate(passes_shuf * len(uniq), mc_shuf))
    runs = f"{len(res.mc)} runs of {passes * rs.lines:,} packets"
    if dpdk:
        runs += f", interleaved with DPDK's of {iters * rs.lines:,}"
    line("meshcore classify_many, trace", f"{mpps(res.mc)} ({runs})")
    line(f"meshcore, shuffled unique ({len(uniq):,} lines)", mpps(res.mc_shuffled))
    for alg, rates in res.dpdk.items():
        if rates:
            line(f"dpdk-test-acl --alg={alg}", mpps(rates))
    for err in res.dpdk_errors:
        line("dpdk-test-acl FAILED", err)
    best = res.dpdk_best()
    if best:
        alg, b, med = best
        ratio = f"{max(res.mc) / b:.2f}x best, {statistics.median(res.mc) / med:.2f}x median"
        line(f"ratio meshcore / DPDK ({alg})", ratio)

    # Python peers on a random sample.
    rng = np.random.default_rng(args.seed)
    k = min(rs.lines, max(200, args.py_work // n))
    pick = np.sort(rng.choice(rs.lines, size=k, replace=False)).astype(np.int64)
    sample = take(rs.cols, pick)
    packets = list(zip(*(col.tolist() for col in sample), strict=True))
    tuples = rs.rules.as_tuples()
    expect_equal(python_scan(tuples, packets), rs.firstmatch[pick], f"{rs.name} pure-Python scan")
    expect_equal(numpy_scan(rs.rules, sample), rs.firstmatch[pick], f"{rs.name} numpy scan")
    for _ in range(args.py_repeat):
        res.py.append(rate(k, lambda: python_scan(tuples, packets)))
        res.np_scan.append(rate(k, lambda: numpy_scan(rs.rules, sample)))
    py_b, np_b = max(res.py), max(res.np_scan)
    line(f"pure-Python first-match scan ({k:,} packets)", f"{py_b:,.0f} pps best")
    line("numpy batch scan (chunks of 256)", f"{np_b:,.0f} pps best")

    # Memory, then single-rule updates: remove random existing rules, re-add them in another
    # order, each call timed; the classifier must then answer as before.
    dpdk_mem = f", DPDK {res.dpdk_memory / n:,.0f}" if res.dpdk_memory else ""
    line("bytes per rule", f"meshcore {res.bytes_per_rule:.1f}{dpdk_mem}")
    ids = rng.choice(n, size=min(args.updates, n // 4), replace=False).tolist()
    kwargs = {i: rs.rules.add_kwargs(i) for i in ids}
    gc.collect()
    gc.disable()
    try:
        for i in ids:
            t0 = time.perf_counter_ns()
            c.remove(i)
            res.remove_us.append((time.perf_counter_ns() - t0) / 1e3)
        if len(c) != n - len(ids):
            raise SystemExit(f"FAIL {rs.name}: {len(c)} rules after removing {len(ids)} of {n}")
        for i in rng.permutation(ids).tolist():
            kw = kwargs[i]
            t0 = time.perf_counter_ns()
            c.add(i, **kw)
            res.add_us.append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        gc.enable()
    expect_equal(c.classify_many(*rs.cols), rs.firstmatch, f"{rs.name} after remove + add")
    line(f"remove, µs median / p99 ({len(ids):,} calls)", us(res.remove_us))
    line(f"add, µs median / p99 ({len(ids):,} calls)", us(res.add_us))

    # End to end: Ethernet frames built from the trace's TCP and UDP headers.
    tcp_udp = np.flatnonzero((rs.cols[4] == 6) | (rs.cols[4] == 17))[: args.frames]
    if len(tcp_udp):
        fcols = take(rs.cols, tcp_udp.astype(np.int64))
        frames = [
            meshcore.build_packet(
                ipaddress.IPv4Address(s),
                ipaddress.IPv4Address(d),
                proto="tcp" if p == 6 else "udp",
                sport=sp,
                dport=dp,
            )
            for s, d, sp, dp, p in zip(*(col.tolist() for col in fcols), strict=True)
        ]
        buf = b"".join(frames)
        offsets = np.zeros(len(frames) + 1, dtype=np.int64)
        np.cumsum([len(f) for f in frames], out=offsets[1:])
        want = rs.firstmatch[tcp_udp]
        expect_equal(c.classify_frames(buf, offsets), want, f"{rs.name} classify_frames")
        fpasses = passes_for(
            len(frames), args.packets, args.run_seconds, lambda: c.classify_frames(buf, offsets)
        )

        def frames_run() -> None:
            for _ in range(fpasses):
                c.classify_frames(buf, offsets)

        for _ in range(len(res.mc)):
            res.frames.append(rate(fpasses * len(frames), frames_run))
        line(f"classify_frames ({len(frames):,} TCP/UDP frames)", mpps(res.frames))
    line("wall time for this set", f"{time.perf_counter() - t_set:.0f} s")
    sys.stdout.flush()
    return res


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def table(results: list[Result]) -> None:
    w = max(10, *(len(r.name) for r in results))
    head = (
        f"{'set':<{w}} {'rules':>6} {'meshcore Mpps':>13} {'shuf':>6} {'DPDK Mpps':>13} "
        f"{'ratio':>6} {'py pps':>7} {'np pps':>7} {'B/rule':>7} {'remove µs':>11} "
        f"{'add µs':>11} {'build':>7} {'frames':>6}"
    )
    sub = (
        f"{'':<{w}} {'':>6} {'best/median':>13} {'best':>6} {'best (alg)':>13} "
        f"{'best':>6} {'best':>7} {'best':>7} {'':>7} {'med/p99':>11} {'med/p99':>11} "
        f"{'ms':>7} {'Mpps':>6}"
    )
    print(head)
    print(sub)
    print("-" * len(head))
    for r in results:
        mc = f"{max(r.mc) / 1e6:.2f}/{statistics.median(r.mc) / 1e6:.2f}"
        best = r.dpdk_best()
        dp = f"{best[1] / 1e6:.2f} {best[0]}" if best else "-"
        ratio = f"{max(r.mc) / best[1]:.2f}" if best else "-"
        rm = f"{statistics.median(r.remove_us):.2f}/{percentile(r.remove_us, 99):.1f}"
        ad = f"{statistics.median(r.add_us):.2f}/{percentile(r.add_us, 99):.1f}"
        fr = f"{max(r.frames) / 1e6:.2f}" if r.frames else "-"
        print(
            f"{r.name:<{w}} {r.rules:>6,} {mc:>13} {max(r.mc_shuffled) / 1e6:>6.2f} {dp:>13} "
            f"{ratio:>6} {max(r.py):>7,.0f} {max(r.np_scan):>7,.0f} {r.bytes_per_rule:>7.1f} "
            f"{rm:>11} {ad:>11} {min(r.build_ms):>7.1f} {fr:>6}"
        )


def targets(results: list[Result]) -> None:
    print("\n== targets (this run; ratios best against best, absolute rates on the median) ==")

    def target(name: str, ok: bool, got: str) -> None:
        print(f"  {'PASS' if ok else 'MISS'}  {name:<48} {got}")

    for r in results:
        worst = min(statistics.median(r.mc), statistics.median(r.mc_shuffled)) / 1e6
        if r.ten_k:
            best = r.dpdk_best()
            if best:
                alg, b, med = best
                ratio, mratio = max(r.mc) / b, statistics.median(r.mc) / med
                got = f"{ratio:.2f}x (median {mratio:.2f}x; DPDK {alg} {b / 1e6:.2f} Mpps)"
                target(f"{r.name}: meshcore / DPDK >= 1.0", ratio >= 1.0, got)
            target(
                f"{r.name}: >= 2 Mpps, trace and shuffled",
                worst >= 2,
                f"{worst:.2f} Mpps (median of the slower ordering)",
            )
            target(
                f"{r.name}: <= 100 bytes/rule", r.bytes_per_rule <= 100, f"{r.bytes_per_rule:.1f}"
            )
        else:
            target(
                f"{r.name}: >= 10 Mpps, trace and shuffled",
                worst >= 10,
                f"{worst:.2f} Mpps (median of the slower ordering)",
            )
        for what, xs in (("add", r.add_us), ("remove", r.remove_us)):
            med = statistics.median(xs)
            target(
                f"{r.name}: single {what} < 10 µs (median)",
                med < 10,
                f"{med:.2f} µs (p99 {percentile(xs, 99):.2f}, max {max(xs):.1f})",
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="holds classbench/")
    ap.add_argument("--sets", default=DEFAULT_SETS, help="comma-separated (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="one round, fewer packets and updates")
    ap.add_argument("--rounds", type=int, help="interleaved rounds over the DPDK algs (3)")
    ap.add_argument("--packets", type=int, help="packets per timed run, both sides (1,000,000)")
    ap.add_argument(
        "--run-seconds", type=float, help="cap on one meshcore timed run (0.5; --quick 0.2)"
    )
    ap.add_argument("--algs", default=",".join(ALG_FLAGS), help="dpdk-test-acl --alg values")
    ap.add_argument("--dpdk", default="dpdk-test-acl", help="the dpdk-test-acl binary")
    ap.add_argument("--no-dpdk", action="store_true", help="skip the DPDK peer")
    ap.add_argument("--check-dpdk", action="store_true", help="check DPDK answers per packet")
    ap.add_argument("--cpu", type=int, default=0, help="the one core both sides run on")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.packets = args.packets or (300_000 if quick else 1_000_000)
    args.run_seconds = args.run_seconds or (0.2 if quick else 0.5)
    args.builds = 3 if quick else 5
    args.py_work = 5_000_000 if quick else 20_000_000  # rules x packets for the Python scans
    args.py_repeat = 1 if quick else 3
    args.updates = 500 if quick else 2_000
    args.frames = 20_000 if quick else 100_000

    base = find_dir(args.data)
    if base is None:
        print(f"no ClassBench sets under {args.data}; pass --data DIR", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})  # DPDK runs as a child: same core, -l CPU
    dpdk: Dpdk | None = None
    binary = shutil.which(args.dpdk)
    if args.no_dpdk:
        pass
    elif binary is None:
        print(
            f"{args.dpdk} not found: DPDK columns stay empty. It is in the Debian/Ubuntu package\n"
            "dpdk-dev: sudo apt-get install dpdk-dev (then pass --dpdk PATH if it is elsewhere)"
        )
    else:
        flags = cpu_info()[1]
        wanted = [a for a in args.algs.split(",") if a]
        algs = [a for a in wanted if all(f in flags for f in ALG_FLAGS.get(a, ()))]
        skipped = sorted(set(wanted) - set(algs))
        if skipped:
            print(f"this CPU lacks what dpdk-test-acl needs for --alg={','.join(skipped)}")
        dpdk = Dpdk(binary, args.cpu, algs) if algs else None

    print("meshcore packet-classification benchmark (ClassBench rule sets and traces)")
    model = cpu_info()[0]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  {model}; one core (cpu {args.cpu}); load average {load} at the start")
    peer = f"{binary} --alg={','.join(dpdk.algs)}" if dpdk else "none"
    print(f"  peer: {peer}; {args.rounds} round(s), {args.packets:,} packets per timed run")

    results = []
    t_start = time.perf_counter()
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        results.append(bench_set(load_set(base, name), args, dpdk))

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    wall = time.perf_counter() - t_start
    print(f"\n== summary ({wall:.0f} s; load average {load} at the end) ==")
    table(results)
    targets(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
