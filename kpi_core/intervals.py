"""Interval accumulation kernels (KPI_DEFINITIONS.md §4–5).

An interval's planned production time is a sorted list of disjoint windows (shift time minus
breaks minus unknown). These kernels intersect stops and counted parts with those windows in
one linear sweep; everything else about an interval is small arithmetic in :mod:`kpi_core.kpi`.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["counts_in_windows", "stop_time_in_windows"]


@numba.njit(cache=True, nogil=True)
def stop_time_in_windows(
    win_s: npt.NDArray[np.float64],
    win_e: npt.NDArray[np.float64],
    stop_s: npt.NDArray[np.float64],
    stop_e: npt.NDArray[np.float64],
    stop_cat: npt.NDArray[np.int64],
    out_time: npt.NDArray[np.float64],
    out_count: npt.NDArray[np.int64],
) -> None:
    """Add each category's stop time inside the windows to ``out_time`` and count the stops
    with time inside them in ``out_count``. Windows sorted and disjoint; stops sorted by
    start and disjoint."""
    j0 = 0
    nw = win_s.shape[0]
    for k in range(stop_s.shape[0]):
        s = stop_s[k]
        e = stop_e[k]
        while j0 < nw and win_e[j0] <= s:
            j0 += 1
        inside = 0.0
        j = j0
        while j < nw and win_s[j] < e:
            lo = s if s > win_s[j] else win_s[j]
            hi = e if e < win_e[j] else win_e[j]
            if hi > lo:
                inside += hi - lo
            j += 1
        if inside > 0.0:
            c = stop_cat[k]
            out_time[c] += inside
            out_count[c] += 1


@numba.njit(cache=True, nogil=True)
def counts_in_windows(
    a: float,
    b: float,
    win_s: npt.NDArray[np.float64],
    win_e: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    n: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:
    """For parts at ``ts`` (sorted) within [a, b): add Σn inside the windows to out[0],
    Σ(n × weight) inside to out[1], Σn outside the windows to out[2]. A part exactly at a
    window's start is inside, at its end outside (windows are half-open)."""
    j = 0
    nw = win_s.shape[0]
    for i in range(ts.shape[0]):
        t = ts[i]
        if t < a or t >= b:
            continue
        while j < nw and win_e[j] <= t:
            j += 1
        if j < nw and win_s[j] <= t:
            out[0] += n[i]
            out[1] += n[i] * weight[i]
        else:
            out[2] += n[i]
