"""Interval arithmetic on short sorted lists of half-open windows ``[(start, end), ...]``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Windows", "clip", "intersect", "measure", "normalize", "subtract"]

Windows = list[tuple[float, float]]


def normalize(windows: Iterable[tuple[float, float]]) -> Windows:
    """Sorted, merged, without empty windows."""
    out: Windows = []
    for s, e in sorted(w for w in windows if w[1] > w[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def clip(windows: Windows, a: float, b: float) -> Windows:
    return [(max(s, a), min(e, b)) for s, e in windows if e > a and s < b]


def intersect(x: Windows, y: Windows) -> Windows:
    out: Windows = []
    i = j = 0
    while i < len(x) and j < len(y):
        s = max(x[i][0], y[j][0])
        e = min(x[i][1], y[j][1])
        if e > s:
            out.append((s, e))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(x: Windows, holes: Windows) -> Windows:
    out: Windows = []
    for s, e in x:
        cur = s
        for hs, he in holes:
            if he <= cur or hs >= e:
                continue
            if hs > cur:
                out.append((cur, hs))
            cur = max(cur, he)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def measure(windows: Windows) -> float:
    return sum(e - s for s, e in windows)
