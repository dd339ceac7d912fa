"""Hypothesis: streaming equals batch, kernels equal the reference, invariants hold."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Sample
from edge.processor import LineProcessor
from kpi_core.counters import counter_deltas, counter_range, new_counter_state
from kpi_core.intervals import stop_time_in_windows
from kpi_core.reference import ref_counter_deltas, ref_gap_stops, ref_stop_time_in_windows
from kpi_core.stops import gap_stops, new_gap_state
from sync.records import KpiRecord, Record, StopRecord, parse_ts
from tests.kpi.helpers import line_config

T0 = parse_ts("2026-03-02T05:30:00Z")
CFG = line_config(
    {"total_count": "uint16", "reject_count": "uint16", "running": "bool", "fault_code": "int16"},
    production={"ideal_cycle_time_s": 2.0, "micro_stop_max_s": 60.0,
                "reasons": {9: {"text": "Changeover", "planned": True}}},
    calendar={"shifts": [{"name": "early", "start": "06:00", "end": "07:00"}],
              "breaks": [{"start": "06:20", "end": "06:30"}]},
)
CFG_GAP = line_config({"total_count": "uint16"}, production={"ideal_cycle_time_s": 2.0, "micro_stop_max_s": 60.0},
                      calendar={"shifts": [{"name": "early", "start": "06:00", "end": "07:00"}]})

step = st.tuples(
    st.floats(0.5, 120.0),  # time to the next sample
    st.sampled_from(["total_count", "reject_count", "running", "fault_code", "disc"]),
    st.integers(0, 40),
)


def _samples(steps: list[tuple[float, str, int]]) -> list[tuple[float, str, Any]]:
    t = T0
    tot = rej = 0
    out: list[tuple[float, str, Any]] = []
    for dt, sig, k in steps:
        t += round(dt, 3)
        if sig == "total_count":
            tot = (tot + k) % 65536
            out.append((t, sig, tot))
        elif sig == "reject_count":
            rej = (rej + k % 3) % 65536
            out.append((t, sig, rej))
        elif sig == "running":
            out.append((t, sig, k % 2 == 0))
        elif sig == "fault_code":
            out.append((t, sig, (0, 0, 9, 42)[k % 4]))
        else:
            out.append((t, "disc", k % 2 == 0))
    return out


def _run(cfg: Any, rows: list[tuple[float, str, Any]], cuts: set[int]) -> list[Record]:
    p = LineProcessor(cfg)
    recs: list[Record] = []
    for i, (t, sig, v) in enumerate(rows):
        if sig == "disc":
            p.set_connected(t, bool(v), "p")
        elif sig in cfg.signals.roles():
            p.feed([Sample(sig, v, "good", None, t)])
        if i in cuts:
            recs += p.tick(t)
    recs += p.finish(rows[-1][0] + 1.0)
    return recs


def _final(recs: list[Record]) -> tuple[dict[str, Any], dict[str, Any]]:
    stops: dict[str, Any] = {}
    kpis: dict[str, Any] = {}
    for r in recs:
        if isinstance(r, StopRecord):
            stops[r.id] = (r.start, r.end, r.category, r.reason_code)
        elif isinstance(r, KpiRecord) and r.final:
            assert r.id not in kpis, "a final KPI is sent once"
            kpis[r.id] = r
    return stops, kpis


def _invariants(k: KpiRecord) -> None:
    assert abs(k.run_time_s + k.stop_time_s - k.planned_production_time_s) < 1e-6
    assert k.good_count + k.reject_count == k.total_count
    for ratio in (k.availability, k.quality):
        assert ratio is None or -1e-9 <= ratio <= 1 + 1e-9
    if None not in (k.availability, k.performance, k.quality):
        assert k.oee is not None
        assert abs(k.oee - k.availability * k.performance * k.quality) < 1e-9  # type: ignore[operator]
    assert abs(k.all_time_s - k.not_scheduled_s - k.planned_break_s - k.unknown_s - k.planned_production_time_s) < 1e-6


def _strip(k: KpiRecord) -> tuple[Any, ...]:
    return tuple(getattr(k, f) for f in k.__struct_fields__ if f not in ("ts", "rev"))


@settings(max_examples=40, deadline=None)
@given(st.lists(step, min_size=2, max_size=80), st.sets(st.integers(0, 80), max_size=20), st.booleans())
def test_streaming_in_any_chunking_equals_one_batch_and_invariants_hold(
    steps: list[tuple[float, str, int]], cuts: set[int], counter_only: bool
) -> None:
    cfg = CFG_GAP if counter_only else CFG
    rows = _samples(steps)
    batch_stops, batch_kpis = _final(_run(cfg, rows, set()))
    stream_stops, stream_kpis = _final(_run(cfg, rows, cuts))
    assert stream_stops == batch_stops
    assert batch_kpis and stream_kpis.keys() == batch_kpis.keys()
    for rid, k in batch_kpis.items():
        assert _strip(stream_kpis[rid]) == _strip(k)
        _invariants(k)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["uint16", "int16", "uint32"]),
       st.lists(st.tuples(st.floats(0.01, 50.0), st.one_of(st.none(), st.integers(-40000, 70000))), max_size=60),
       st.integers(0, 60))
def test_counter_kernel_in_chunks_equals_the_reference(kind: str, rows: list[tuple[float, int | None]], cut: int) -> None:
    lo, mod = counter_range(kind)
    ts = list(np.cumsum([r[0] for r in rows]))
    vals = [None if v is None else lo + (v - lo) % mod for _, v in rows]
    expect = ref_counter_deltas(ts, vals, lo, mod, 200.0)
    si, sf = new_counter_state()
    got: list[int] = []
    for a, b in ((0, cut), (cut, len(rows))):
        n = max(0, min(b, len(rows)) - a)
        d = np.zeros(n, dtype=np.int64)
        f = np.zeros(n, dtype=np.int8)
        counter_deltas(np.array(ts[a:a + n], dtype=np.float64), np.array([v or 0 for v in vals[a:a + n]], dtype=np.int64),
                       np.array([v is not None for v in vals[a:a + n]], dtype=np.bool_), lo, mod, 200.0, si, sf, d, f)
        got += d.tolist()
    assert got == expect


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.1, 30.0), max_size=60), st.integers(0, 60))
def test_gap_stop_kernel_in_chunks_equals_the_reference(gaps: list[float], cut: int) -> None:
    done = list(np.cumsum(gaps))
    ict, after = [2.0] * len(done), [5.0] * len(done)
    state = new_gap_state()
    got: list[tuple[float, float]] = []
    for a, b in ((0, min(cut, len(done))), (min(cut, len(done)), len(done))):
        s, e = np.empty(b - a), np.empty(b - a)
        k = gap_stops(np.array(done[a:b]), np.array(ict[a:b]), np.array(after[a:b]), state, s, e)
        got += list(zip(s[:k].tolist(), e[:k].tolist(), strict=True))
    assert got == ref_gap_stops(done, ict, after)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0.1, 20)), max_size=8),
       st.lists(st.tuples(st.floats(0, 50), st.floats(0.1, 20), st.integers(0, 4)), max_size=8))
def test_interval_kernel_equals_the_reference(win: list[tuple[float, float]], stp: list[tuple[float, float, int]]) -> None:
    from kpi_core.timeline import normalize

    windows = normalize((s, s + d) for s, d in win)
    stops, t = [], 0.0
    for gap, d, cat in stp:  # disjoint, sorted
        stops.append((t + gap, t + gap + d, cat))
        t += gap + d
    out_t, out_c = np.zeros(5), np.zeros(5, dtype=np.int64)
    stop_time_in_windows(np.array([w[0] for w in windows]), np.array([w[1] for w in windows]),
                         np.array([s[0] for s in stops]), np.array([s[1] for s in stops]),
                         np.array([s[2] for s in stops], dtype=np.int64), out_t, out_c)
    ref_t, ref_c = ref_stop_time_in_windows(windows, stops)
    assert np.allclose(out_t, ref_t) and out_c.tolist() == ref_c
