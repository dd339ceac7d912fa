"""Stop detection kernels (KPI_DEFINITIONS.md §3) and the whole-stop classification.

Two detectors, both streaming with a small state array:

- :func:`level_changes` compresses a level signal (running, state, fault code, blocked,
  starved, all as int64 codes) to the samples where it changes. Stops with a `running`
  signal or a mapped `state` are the runs between those changes.
- :func:`gap_stops` finds counter-gap stops on counter-only lines: a gap between two
  completions longer than ``stop_after_s`` is a stop from the earlier completion to
  ``t_next - ict`` (duration ``gap - ict``).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "CAT_BLOCKED",
    "CAT_MICRO",
    "CAT_NAMES",
    "CAT_PLANNED",
    "CAT_STARVED",
    "CAT_UNPLANNED",
    "CAUSE_BLOCKED",
    "CAUSE_PLANNED",
    "CAUSE_RUNNING",
    "CAUSE_STARVED",
    "CAUSE_STOP",
    "classify_stop",
    "gap_stops",
    "level_changes",
    "new_gap_state",
    "new_level_state",
]

# what the signals say the machine is doing (derived from running/state/blocked/starved)
CAUSE_RUNNING = 0
CAUSE_STOP = 1
CAUSE_PLANNED = 2  # the mapped state is a planned stop
CAUSE_BLOCKED = 3
CAUSE_STARVED = 4

# stop categories of RECORDS.md, as small ints for the interval kernel
CAT_MICRO = 0
CAT_UNPLANNED = 1
CAT_PLANNED = 2
CAT_BLOCKED = 3
CAT_STARVED = 4
CAT_NAMES = ("micro_stop", "unplanned_stop", "planned_stop", "blocked", "starved")


def new_level_state() -> npt.NDArray[np.int64]:
    """[has_value, current_code]."""
    return np.zeros(2, dtype=np.int64)


def new_gap_state() -> npt.NDArray[np.float64]:
    """[has_previous_completion, t_prev]."""
    return np.zeros(2, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def level_changes(
    code: npt.NDArray[np.int64],
    state: npt.NDArray[np.int64],
    out_idx: npt.NDArray[np.int64],
) -> int:
    """Write the indices where ``code`` differs from the previous value; return how many."""
    has = state[0]
    cur = state[1]
    n = 0
    for i in range(code.shape[0]):
        c = code[i]
        if has == 0 or c != cur:
            out_idx[n] = i
            n += 1
            cur = c
            has = 1
    state[0] = has
    state[1] = cur
    return n


@numba.njit(cache=True, nogil=True)
def gap_stops(
    ts: npt.NDArray[np.float64],
    ict: npt.NDArray[np.float64],
    stop_after: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    out_start: npt.NDArray[np.float64],
    out_end: npt.NDArray[np.float64],
) -> int:
    """Counter-gap stops between consecutive completions ``ts`` (each with its product's
    ideal cycle time and stop threshold); returns how many were written."""
    has = state[0]
    t_prev = state[1]
    n = 0
    for i in range(ts.shape[0]):
        t = ts[i]
        if has != 0.0:
            gap = t - t_prev
            if gap > stop_after[i]:
                end = t - ict[i]
                if end > t_prev:
                    out_start[n] = t_prev
                    out_end[n] = end
                    n += 1
        has = 1.0
        t_prev = t
    state[0] = has
    state[1] = t_prev
    return n


def classify_stop(duration_s: float, cause: int, planned: bool, micro_stop_max_s: float) -> int:
    """The category of a stop from its whole duration (§3).

    Choice: the micro-stop rule comes first for every cause, so a 20 s starvation is a
    micro-stop (performance loss) like any other short stop; longer blocked/starved stops
    keep their cause so a line-level analysis does not blame this machine.
    """
    if duration_s < micro_stop_max_s:
        return CAT_MICRO
    if cause == CAUSE_BLOCKED:
        return CAT_BLOCKED
    if cause == CAUSE_STARVED:
        return CAT_STARVED
    if planned or cause == CAUSE_PLANNED:
        return CAT_PLANNED
    return CAT_UNPLANNED
