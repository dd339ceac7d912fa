"""Counter deltas (KPI_DEFINITIONS.md §2) as one streaming numba kernel.

The kernel walks one counter's samples and writes, per sample, the parts it adds and a flag
saying why. Its whole memory between chunks is two tiny arrays, so feeding a day chunk by
chunk gives exactly what one call over the whole day gives.

Values are int64. Unsigned 64-bit counters above 2**63 arrive as their two's-complement
int64; the wrap-around arithmetic of int64 keeps their deltas right.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "FLAG_BAD",
    "FLAG_BASELINE",
    "FLAG_COUNTED",
    "FLAG_IMPLAUSIBLE",
    "FLAG_RESET",
    "FLAG_ROLLOVER",
    "counter_deltas",
    "counter_range",
    "new_counter_state",
]

FLAG_COUNTED = 0  # delta >= 0, counted
FLAG_BASELINE = 1  # first good sample: only sets the baseline
FLAG_RESET = 2  # negative delta outside the rollover zone: delta = new value (>= 0)
FLAG_IMPLAUSIBLE = 3  # delta above max_parts_per_s x elapsed + 1: not counted
FLAG_BAD = 4  # bad quality / NaN: skipped, baseline kept
FLAG_ROLLOVER = 5  # negative delta inside the last 10 % of the range: delta + modulus

_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**16),
    "uint16": (0, 2**16),
    "int32": (-(2**31), 2**32),
    "uint32": (0, 2**32),
    # 64-bit counters never roll over in a plant's lifetime: a negative delta is a reset.
    "int64": (-(2**63), 0),
    "uint64": (0, 0),
}


def counter_range(signal_type: str) -> tuple[int, int]:
    """(lowest value, modulus) of a counter type; modulus 0 means no rollover is possible."""
    try:
        return _RANGES[signal_type]
    except KeyError:
        raise ValueError(f"not a counter type: {signal_type!r}") from None


def new_counter_state() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Fresh kernel state: ([has_baseline, last_value], [last_ts])."""
    return np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def counter_deltas(
    ts: npt.NDArray[np.float64],
    val: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    lo: int,
    modulus: int,
    max_rate: float,
    state_i: npt.NDArray[np.int64],
    state_f: npt.NDArray[np.float64],
    delta_out: npt.NDArray[np.int64],
    flag_out: npt.NDArray[np.int8],
) -> None:
    """Parts per sample into ``delta_out`` and the reason into ``flag_out``.

    ``max_rate`` is parts per second; elapsed time is measured from the last good sample, so
    parts made while the PLC was unreachable are counted at the reconnect sample once.
    An implausible jump moves the baseline to the new value (otherwise every later sample
    would be implausible too).
    """
    has = state_i[0]
    last = state_i[1]
    last_ts = state_f[0]
    zone = modulus // 10
    hi = lo + modulus - 1
    for i in range(ts.shape[0]):
        if not ok[i]:
            delta_out[i] = 0
            flag_out[i] = 4
            continue
        v = val[i]
        if has == 0:
            has = 1
            last = v
            last_ts = ts[i]
            delta_out[i] = 0
            flag_out[i] = 1
            continue
        d = v - last
        flag = 0
        if d < 0:
            if modulus > 0 and last > hi - zone:
                d = d + modulus
                flag = 5
            else:
                # a restarted counter starts again from zero: what it shows now was made since
                d = v if v > 0 else 0
                flag = 2
        elapsed = ts[i] - last_ts
        if elapsed < 0.0:
            elapsed = 0.0
        if d > max_rate * elapsed + 1.0:
            delta_out[i] = 0
            flag_out[i] = 3
        else:
            delta_out[i] = d
            flag_out[i] = flag
        last = v
        last_ts = ts[i]
    state_i[0] = has
    state_i[1] = last
    state_f[0] = last_ts
