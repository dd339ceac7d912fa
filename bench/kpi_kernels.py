"""Throughput of the kpi_core kernels vs a numpy-vectorized version and the pure-Python reference.

A synthetic 24 h line at 10 samples/s per signal (counter + running) and a 30-day batch.
The work measured is the live path's per-sample work: counter deltas (rollover, reset,
implausible), completions with their product's ideal cycle time, counter-gap stops and the
running signal's level changes. The kernels write into output buffers allocated once and
reused across chunks, as :class:`edge.processor.LineProcessor` does; the pure-Python
reference (:mod:`kpi_core.reference`) does the same work in plain Python.
Figures are samples/s measured in this run; ratios are against baselines of the same run.
Also: first-call (compile) time with the numba cache cold and warm (two fresh processes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kpi_core.cycles import CycleBuffers, counter_cycles, new_cycle_state
from kpi_core.reference import ref_counter_deltas, ref_gap_stops
from kpi_core.stops import level_changes, new_level_state

HZ = 10


def synth(days: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(days * 86400 * HZ)
    ts = 1.7e9 + np.arange(n) / HZ
    running = (rng.random(n // 600 + 1) > 0.1).repeat(600)[:n].astype(np.int64)
    inc = (rng.random(n) < 0.3) & (running == 1)
    val = (np.cumsum(inc) % 65536).astype(np.int64)
    return ts, val, running


class Kernels:
    """The kernels with their buffers, allocated once for chunks of up to ``capacity`` samples."""

    def __init__(self, capacity: int) -> None:
        self.buf = CycleBuffers(capacity)
        self.ok = np.ones(capacity, dtype=np.bool_)
        self.idx = np.empty(capacity, dtype=np.int64)
        self.no_products = np.zeros(0, dtype=np.float64)

    def run(self, ts: np.ndarray, val: np.ndarray, running: np.ndarray, chunk: int | None = None) -> int:
        n = ts.size
        chunk = chunk or n
        si, sf = new_cycle_state()
        lv = new_level_state()
        b, e = self.buf, self.no_products
        stops = changes = 0
        for a in range(0, n, chunk):
            z = min(n, a + chunk)
            counter_cycles(ts[a:z], val[a:z], self.ok[: z - a], 0, 65536, 100.0, e, e, e, 1.0, 2.0, True, si, sf,
                           b.comp_idx, b.comp_n, b.comp_ict, b.ev_idx, b.ev_flag, b.ev_old, b.stop_s, b.stop_e,
                           b.counts)
            stops += int(b.counts[2])
            changes += level_changes(running[a:z], lv, self.idx)
        self.last = (stops, changes)
        return 2 * n  # samples of two signals


def run_numpy(ts: np.ndarray, val: np.ndarray, running: np.ndarray) -> int:
    d = np.diff(val, prepend=val[0])
    d = np.where(d < 0, d + 65536, d)  # rollover only (resets/implausible need the sequential state)
    np.flatnonzero(np.diff(running, prepend=running[0] ^ 1))
    done = ts[d > 0]
    gap = np.diff(done)
    np.flatnonzero(gap > 2.0)
    return 2 * ts.size


def run_python(ts: np.ndarray, val: np.ndarray, running: np.ndarray) -> int:
    tl, vl, rl = ts.tolist(), val.tolist(), running.tolist()
    d = ref_counter_deltas(tl, vl, 0, 65536, 100.0)
    prev = None
    changes = []
    for i, r in enumerate(rl):
        if r != prev:
            changes.append(i)
            prev = r
    done = [t for t, x in zip(tl, d, strict=True) if x > 0]
    ref_gap_stops(done, [1.0] * len(done), [2.0] * len(done))
    return 2 * len(tl)


def rate(fn, *args: np.ndarray, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn(*args)
        best = min(best, time.perf_counter() - t)
    return n / best


def compile_time(cache_dir: str) -> float:
    code = (
        "import time, numpy as np; t=time.perf_counter();"
        "from kpi_core.counters import counter_deltas as c, new_counter_state as s;"
        "from kpi_core.cycles import CycleBuffers, counter_cycles, new_cycle_state;"
        "from kpi_core.stops import gap_stops, level_changes;"
        "from kpi_core.intervals import counts_in_windows, stop_time_in_windows;"
        "a,b=s(); n=4; c(np.zeros(n), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_), 0, 65536, 1.0, a, b,"
        " np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int8));"
        "level_changes(np.zeros(n, dtype=np.int64), np.zeros(2, dtype=np.int64), np.zeros(n, dtype=np.int64));"
        "gap_stops(np.zeros(n), np.ones(n), np.ones(n), np.zeros(2), np.zeros(n), np.zeros(n));"
        "z=np.zeros(1); stop_time_in_windows(z, z, z, z, np.zeros(1, dtype=np.int64), np.zeros(5), np.zeros(5, dtype=np.int64));"
        "counts_in_windows(0.0, 1.0, z, z, z, z, z, np.zeros(3));"
        "B=CycleBuffers(n); i,f=new_cycle_state(); e=np.zeros(0);"
        "counter_cycles(np.zeros(n), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_), 0, 65536, 1.0, e, e, e,"
        " 1.0, 2.0, True, i, f, B.comp_idx, B.comp_n, B.comp_ict, B.ev_idx, B.ev_flag, B.ev_old, B.stop_s, B.stop_e,"
        " B.counts);"
        "print(time.perf_counter()-t)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    root = os.path.join(os.path.dirname(__file__), "..")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    day = synth(1)
    kern = Kernels(day[0].size)
    kern.run(*synth(0.001))  # compile outside the timing
    k = rate(kern.run, *day)
    # the same day as the live path sees it: 1-minute chunks through the same buffers
    kc = rate(lambda *a: kern.run(*a, chunk=600), *day)
    v = rate(run_numpy, *day)
    p = rate(run_python, *(a[:200_000] for a in day), repeat=1)
    print(f"24 h line, {day[0].size:,} samples/signal x 2 signals")
    print(f"  numba kernels   {k / 1e6:8.1f} M samples/s (one batch)")
    print(f"  numba kernels   {kc / 1e6:8.1f} M samples/s (1-minute chunks, buffers reused)")
    print(f"  numpy (partial) {v / 1e6:8.1f} M samples/s  kernels/numpy = {k / v:.2f}x (numpy skips resets, implausible, state)")
    print(f"  pure Python ref {p / 1e6:8.2f} M samples/s  kernels/python = {k / p:.0f}x (1-minute chunks: {kc / p:.0f}x)")
    month = synth(30, seed=2)
    # a 30-day replay in day-sized chunks: the buffers stay one day big
    km = rate(lambda *a: kern.run(*a, chunk=day[0].size), *month, repeat=1)
    print(f"30-day batch, {month[0].size:,} samples/signal: numba kernels {km / 1e6:.1f} M samples/s")
    tmp = tempfile.mkdtemp(prefix="numba-cache-")
    try:
        cold = compile_time(tmp)
        warm = compile_time(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"first call incl. import: cold cache {cold:.2f} s, warm cache {warm:.2f} s (ratio {cold / warm:.1f}x)")
    ok = k >= 50e6 and k / p >= 30
    print(f"targets (>= 50 M samples/s, >= 30x the reference): {'met' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
