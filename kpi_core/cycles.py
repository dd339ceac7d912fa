"""One pass over a counter's samples: deltas, completions, events and counter-gap stops.

This fuses what :func:`kpi_core.counters.counter_deltas` and :func:`kpi_core.stops.gap_stops`
do (KPI_DEFINITIONS.md §2–3) so the live path walks a chunk once and writes only what it
needs: the samples that completed parts (about a third of them), the rare reset /
implausible events and the gap stops. Nothing per sample is written, nothing is allocated
per call: the caller passes output buffers sized to the chunk and reuses them
(:class:`CycleBuffers`), which is what makes the kernels fast (page faults of fresh
arrays cost more than the arithmetic).

The product in force is a step function ``(prod_ts, prod_ict, prod_after)``: entry ``j``
holds from ``prod_ts[j]`` on. Parts counted at the instant the product changes were made
under the old product (ideal time), and a gap's stop threshold is the one of the product in
force at the gap's start, the last completion (known live, so a stop opened live is the
stop a batch run finds).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["CycleBuffers", "counter_cycles", "new_cycle_state"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def new_cycle_state() -> tuple[I64, F64]:
    """Fresh state: ints [has_baseline, last_value], floats [last_ts, has_prev_completion, t_prev].

    The counter baseline (first three slots) survives an outage; the gap part (last two
    floats) is cleared by the caller at a disconnect so a gap is not carried over it.
    """
    return np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.float64)


class CycleBuffers:
    """Output buffers of :func:`counter_cycles`, grown on demand and reused across chunks."""

    __slots__ = ("comp_ict", "comp_idx", "comp_n", "counts", "ev_flag", "ev_idx", "ev_old", "stop_e", "stop_s")

    def __init__(self, capacity: int = 256) -> None:
        self.counts = np.zeros(3, dtype=np.int64)
        self._alloc(capacity)

    def _alloc(self, n: int) -> None:
        self.comp_idx = np.empty(n, dtype=np.int64)
        self.comp_n = np.empty(n, dtype=np.int64)
        self.comp_ict = np.empty(n, dtype=np.float64)
        self.ev_idx = np.empty(n, dtype=np.int64)
        self.ev_flag = np.empty(n, dtype=np.int8)
        self.ev_old = np.empty(n, dtype=np.int64)
        self.stop_s = np.empty(n, dtype=np.float64)
        self.stop_e = np.empty(n, dtype=np.float64)

    def ensure(self, n: int) -> CycleBuffers:
        if self.comp_idx.shape[0] < n:
            self._alloc(max(n, 2 * self.comp_idx.shape[0]))
        return self


@numba.njit(cache=True, nogil=True)
def counter_cycles(
    ts: F64,
    val: I64,
    ok: npt.NDArray[np.bool_],
    lo: int,
    modulus: int,
    max_rate: float,
    prod_ts: F64,
    prod_ict: F64,
    prod_after: F64,
    default_ict: float,
    default_after: float,
    gaps: bool,
    state_i: I64,
    state_f: F64,
    comp_idx: I64,
    comp_n: I64,
    comp_ict: F64,
    ev_idx: I64,
    ev_flag: npt.NDArray[np.int8],
    ev_old: I64,
    stop_s: F64,
    stop_e: F64,
    counts: I64,
) -> None:
    """Walk one chunk of a counter. Writes, compressed:

    - completions: sample index, parts, ideal cycle time of the product they were made under;
    - events: sample index, flag (kpi_core.counters.FLAG_RESET / FLAG_IMPLAUSIBLE), old value;
    - with ``gaps``: counter-gap stops [t_prev, t_next - ict) whose gap exceeded the
      threshold of the product in force at t_prev.

    ``counts`` receives [completions, events, stops]. Buffers must hold ``len(ts)`` entries.
    """
    has = state_i[0]
    last = state_i[1]
    last_ts = state_f[0]
    zone = modulus // 10
    hi = lo + modulus - 1
    nc = 0
    ne = 0
    # pass 1: deltas. Completions are compacted branch-free (written always, kept when
    # d > 0): a data-dependent branch per sample costs more than the store.
    for i in range(ts.shape[0]):
        if not ok[i]:
            continue
        v = val[i]
        t = ts[i]
        if has == 0:
            has = 1
            last = v
            last_ts = t
            continue
        d = v - last
        if d < 0:
            if modulus > 0 and last > hi - zone:
                d = d + modulus  # rollover
            else:
                # a restarted counter starts again from zero: what it shows now was made since
                d = v if v > 0 else 0
                ev_idx[ne] = i
                ev_flag[ne] = 2
                ev_old[ne] = last
                ne += 1
        elapsed = t - last_ts
        if elapsed < 0.0:
            elapsed = 0.0
        if d > max_rate * elapsed + 1.0:
            if ne > 0 and ev_idx[ne - 1] == i:
                ne -= 1  # an implausible drop-and-jump reports the jump only
            ev_idx[ne] = i
            ev_flag[ne] = 3
            ev_old[ne] = last
            ne += 1
            d = 0
        last = v
        last_ts = t
        comp_idx[nc] = i
        comp_n[nc] = d
        nc += d > 0
    state_i[0] = has
    state_i[1] = last
    state_f[0] = last_ts
    # pass 2, over the completions only: ideal cycle time and counter-gap stops
    has_prev = state_f[1] != 0.0
    t_prev = state_f[2]
    ns = 0
    m = prod_ts.shape[0]
    # product entries in force, walked along with time (samples come in time order; the
    # inner loops step back when they do not): j_old for the parts (an entry starting at
    # the part's instant is not yet in force), j_gap at the last completion (it is)
    j_old = -1
    j_gap = -1
    for k in range(nc):
        t = ts[comp_idx[k]]
        while j_old >= 0 and prod_ts[j_old] >= t:
            j_old -= 1
        while j_old + 1 < m and prod_ts[j_old + 1] < t:
            j_old += 1
        ict = prod_ict[j_old] if j_old >= 0 else default_ict
        comp_ict[k] = ict
        if gaps:
            if has_prev:
                while j_gap >= 0 and prod_ts[j_gap] > t_prev:
                    j_gap -= 1
                while j_gap + 1 < m and prod_ts[j_gap + 1] <= t_prev:
                    j_gap += 1
                after = prod_after[j_gap] if j_gap >= 0 else default_after
                if t - t_prev > after:
                    end = t - ict
                    if end > t_prev:
                        stop_s[ns] = t_prev
                        stop_e[ns] = end
                        ns += 1
            has_prev = True
            t_prev = t
    state_f[1] = 1.0 if has_prev else 0.0
    state_f[2] = t_prev
    counts[0] = nc
    counts[1] = ne
    counts[2] = ns
