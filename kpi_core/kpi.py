"""Interval KPIs (KPI_DEFINITIONS.md §4–5) from the time model and the counted parts.

:func:`interval_figures` intersects one interval's stops and parts with its planned
production time using the kernels of :mod:`kpi_core.intervals`; :func:`kpis_from_sums` turns
the sums into every KPI. A ratio with a zero denominator is ``None``.

Choices: blocked/starved stop time is availability loss (in ``stop_time_s``) and reported
in the six big losses under unplanned stops, but it is not a failure of this machine, so it
is not in the unplanned stop count/time, MTBF or MTTR. Slow-cycle loss may be negative when
P > 1 (it is reported as computed, which flags a too-slow ideal cycle time).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from msgspec import Struct

from kpi_core.intervals import counts_in_windows, stop_time_in_windows
from kpi_core.stops import CAT_BLOCKED, CAT_MICRO, CAT_PLANNED, CAT_STARVED, CAT_UNPLANNED
from kpi_core.timeline import Windows, clip, intersect, measure, normalize, subtract

__all__ = ["CountStream", "IntervalSums", "KpiFigures", "StopArrays", "interval_figures", "kpis_from_sums"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class StopArrays(Struct):
    """Closed (or provisionally closed) stops, sorted by start, disjoint."""

    start: F64
    end: F64
    cat: I64


class CountStream(Struct):
    """Counted parts: time, number, ideal cycle time of the product made (sorted by time)."""

    ts: F64
    n: F64
    ict: F64


class IntervalSums(Struct, kw_only=True):
    all_time_s: float
    not_scheduled_s: float
    planned_break_s: float
    unknown_s: float
    ppt_s: float
    stop_time_s: list[float]  # by category (kpi_core.stops.CAT_*)
    stop_count: list[int]
    total: float
    good: float
    reject: float
    outside: float
    ideal_total_s: float  # Σ ict × total
    ideal_reject_s: float  # Σ ict × reject
    startup_reject_ideal_s: float | None


class KpiFigures(Struct, kw_only=True):
    all_time_s: float
    not_scheduled_s: float
    planned_break_s: float
    unknown_s: float
    planned_production_time_s: float
    stop_time_s: float
    run_time_s: float
    micro_stop_time_s: float
    micro_stop_count: int
    unplanned_stop_count: int
    planned_stop_count: int
    unplanned_stop_time_s: float
    planned_stop_time_s: float
    blocked_starved_time_s: float
    total_count: int
    good_count: int
    reject_count: int
    counts_outside_ppt: int
    ideal_time_s: float
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    teep: float | None
    mtbf_s: float | None
    mttr_s: float | None
    loss_unplanned_s: float
    loss_planned_s: float
    loss_micro_s: float
    loss_slow_cycles_s: float | None
    loss_production_rejects_s: float
    loss_startup_rejects_s: float | None
    iso_pbt_s: float
    iso_apt_s: float
    iso_adet_s: float
    iso_availability: float | None
    iso_effectiveness: float | None
    iso_quality_ratio: float | None
    iso_oee_index: float | None
    iso_scrap_ratio: float | None
    iso_throughput_rate: float | None


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _mul(*xs: float | None) -> float | None:
    out = 1.0
    for x in xs:
        if x is None:
            return None
        out *= x
    return out


def _arr(w: Windows) -> tuple[F64, F64]:
    return (np.array([s for s, _ in w], dtype=np.float64), np.array([e for _, e in w], dtype=np.float64))


def _counts(a: float, b: float, ws: F64, we: F64, cs: CountStream) -> F64:
    out = np.zeros(3, dtype=np.float64)
    i0 = int(np.searchsorted(cs.ts, a, "left"))
    i1 = int(np.searchsorted(cs.ts, b, "left"))
    counts_in_windows(a, b, ws, we, cs.ts[i0:i1], cs.n[i0:i1], cs.ict[i0:i1], out)
    return out


def interval_figures(
    a: float,
    b: float,
    scheduled: Windows,
    not_scheduled_s: float,
    planned_break_s: float,
    unknown: Windows,
    stops: StopArrays,
    total: CountStream,
    good: CountStream | None,
    reject: CountStream | None,
    startup_s: float | None,
) -> IntervalSums:
    """Sums of the interval [a, b). ``scheduled`` are the shift windows without breaks;
    ``unknown`` the no-data windows. Of ``good`` and ``reject`` the missing one is
    total minus the other (both missing: every part is good)."""
    sched = clip(normalize(scheduled), a, b)
    unk = intersect(sched, clip(normalize(unknown), a, b))
    ppt = subtract(sched, unk)
    ws, we = _arr(ppt)
    # the stops that can touch [a, b): those starting before b and ending after a
    k1 = int(np.searchsorted(stops.start, b, "left"))
    k0 = int(np.searchsorted(stops.end[:k1], a, "right")) if k1 else 0
    t = np.zeros(5, dtype=np.float64)
    c = np.zeros(5, dtype=np.int64)
    stop_time_in_windows(ws, we, stops.start[k0:k1], stops.end[k0:k1], stops.cat[k0:k1], t, c)
    tot = _counts(a, b, ws, we, total)
    zero = np.zeros(3, dtype=np.float64)
    if reject is not None:
        rej = _clamp_rejects(_counts(a, b, ws, we, reject), float(tot[0]))
        good_in = float(_counts(a, b, ws, we, good)[0]) if good is not None else float(tot[0] - rej[0])
    elif good is not None:
        g = _counts(a, b, ws, we, good)
        rej = _clamp_rejects(np.array([tot[0] - g[0], tot[1] - g[1], 0.0]), float(tot[0]))
        good_in = float(tot[0] - rej[0])
    else:
        rej = zero
        good_in = float(tot[0])
    startup: float | None = None
    if startup_s is not None:
        # rejects made within startup_s after a stop ended (any stop but a micro-stop)
        after = normalize(
            (float(e), float(e) + startup_s)
            for s, e, cat in zip(stops.start, stops.end, stops.cat, strict=True)
            if cat != CAT_MICRO and e < b and e + startup_s > a
        )
        ss, se = _arr(intersect(ppt, after))
        startup = float(_counts(a, b, ss, se, reject)[1]) if reject is not None else None
    outside = float(tot[2])
    return IntervalSums(
        all_time_s=b - a,
        not_scheduled_s=not_scheduled_s,
        planned_break_s=planned_break_s,
        unknown_s=measure(unk),
        ppt_s=measure(ppt),
        stop_time_s=[float(x) for x in t],
        stop_count=[int(x) for x in c],
        total=float(tot[0]),
        good=good_in,
        reject=float(rej[0]),
        outside=outside,
        ideal_total_s=float(tot[1]),
        ideal_reject_s=float(rej[1]),
        startup_reject_ideal_s=startup,
    )


def _clamp_rejects(rej: F64, total: float) -> F64:
    """Rejects within [0, total parts]. Two counters disagree only when one of them had an
    implausible jump that was not counted (its `implausible_count` event names it); the
    rejects are then capped so Q stays a ratio in [0, 1], and their ideal time scales alike."""
    n = float(rej[0])
    if 0.0 <= n <= total:
        return rej
    capped = min(max(n, 0.0), total)
    scale = capped / n if n else 0.0
    return np.array([capped, float(rej[1]) * scale, float(rej[2])], dtype=np.float64)


def kpis_from_sums(s: IntervalSums) -> KpiFigures:
    unpl = s.stop_time_s[CAT_UNPLANNED]
    plan = s.stop_time_s[CAT_PLANNED]
    bs = s.stop_time_s[CAT_BLOCKED] + s.stop_time_s[CAT_STARVED]
    micro = s.stop_time_s[CAT_MICRO]
    stop = unpl + plan + bs
    ppt = s.ppt_s
    run = ppt - stop
    if abs(run) < 1e-9:
        run = 0.0
    n_unpl = s.stop_count[CAT_UNPLANNED]
    a = _ratio(run, ppt)
    p = _ratio(s.ideal_total_s, run)
    q = _ratio(s.good, s.total)
    oee = _mul(a, p, q)
    teep = None if oee is None or s.all_time_s == 0 else oee * ppt / s.all_time_s
    apt = run - micro
    iso_av = _ratio(apt, ppt)
    iso_eff = _ratio(s.ideal_total_s, apt)
    iso_q = _ratio(s.good, s.total)
    return KpiFigures(
        all_time_s=s.all_time_s,
        not_scheduled_s=s.not_scheduled_s,
        planned_break_s=s.planned_break_s,
        unknown_s=s.unknown_s,
        planned_production_time_s=ppt,
        stop_time_s=stop,
        run_time_s=run,
        micro_stop_time_s=micro,
        micro_stop_count=s.stop_count[CAT_MICRO],
        unplanned_stop_count=n_unpl,
        planned_stop_count=s.stop_count[CAT_PLANNED],
        unplanned_stop_time_s=unpl,
        planned_stop_time_s=plan,
        blocked_starved_time_s=bs,
        total_count=round(s.total),
        good_count=round(s.good),
        reject_count=round(s.reject),
        counts_outside_ppt=round(s.outside),
        ideal_time_s=s.ideal_total_s,
        availability=a,
        performance=p,
        quality=q,
        oee=oee,
        teep=teep,
        mtbf_s=_ratio(run, n_unpl),
        mttr_s=_ratio(unpl, n_unpl),
        loss_unplanned_s=unpl + bs,
        loss_planned_s=plan,
        loss_micro_s=micro,
        loss_slow_cycles_s=run - s.ideal_total_s - micro,
        loss_production_rejects_s=s.ideal_reject_s,
        loss_startup_rejects_s=s.startup_reject_ideal_s,
        iso_pbt_s=ppt,
        iso_apt_s=apt,
        iso_adet_s=micro + unpl,
        iso_availability=iso_av,
        iso_effectiveness=iso_eff,
        iso_quality_ratio=iso_q,
        iso_oee_index=_mul(iso_av, iso_eff, iso_q),
        iso_scrap_ratio=_ratio(s.reject, s.total),
        iso_throughput_rate=_ratio(s.total, ppt),
    )
