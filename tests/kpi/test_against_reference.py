"""Hypothesis: the live path (LineProcessor, any chunking) equals the plain-Python reference.

Random signal histories on three kinds of lines (running signal, PackML state, counter
only) with fault codes, product changes, blocked/starved, bad-quality samples, outages,
counter resets and implausible jumps, equal timestamps, on a shift calendar with breaks in
Europe/Berlin (including both DST nights). The final stops and every final hour/shift/day
KPI of the processor, fed in one batch and in random chunks, must equal what
:class:`kpi_core.reference.Reference` computes from KPI_DEFINITIONS.md.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.models import LineConfig
from drivers.base import Sample
from edge.processor import LineProcessor
from kpi_core.reference import Reference
from sync.records import KpiRecord, Record, StopRecord, parse_ts
from tests.kpi.helpers import line_config

STARTS = [
    parse_ts("2026-03-02T05:40:00+01:00"),  # Monday morning, early shift ahead
    parse_ts("2026-03-29T00:50:00+01:00"),  # spring DST night: 02:00 does not exist
    parse_ts("2026-10-25T01:20:00+02:00"),  # autumn DST night: 02:00-03:00 twice
    parse_ts("2026-03-06T21:45:00+01:00"),  # Friday late shift into the weekend night shift
]
CALENDAR = {
    "shifts": [
        {"name": "early", "start": "06:00", "end": "14:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
        {"name": "late", "start": "14:00", "end": "22:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
        {"name": "night", "start": "22:00", "end": "06:00"},
    ],
    "breaks": [
        {"start": "09:00", "end": "09:15"},
        {"start": "02:00", "end": "02:30", "shift": "night"},
        {"start": "05:50", "end": "06:10"},  # across the night/early boundary: clipped to each
    ],
}
PRODUCTION: dict[str, Any] = {
    "ideal_cycle_time_s": 1.0,
    # ideal cycle times within 2x of each other: a gap stop opened live is never refuted
    "products": {"A": {"ideal_cycle_time_s": 1.0}, "B": {"ideal_cycle_time_s": 1.5}, "C": {"ideal_cycle_time_s": 2.0}},
    "micro_stop_max_s": 60.0,
    "reasons": {9: {"text": "Changeover", "planned": True}, 42: {"text": "Jam"}},
}


def _config(kind: str, startup: bool, per_cycle: int) -> LineConfig:
    common = {"fault_code": "int16", "product": "string"}
    if kind == "running":
        signals = {"total_count": "uint16", "reject_count": "uint16", "running": "bool", "blocked": "bool",
                   "starved": "bool", **common}
        extra: dict[str, Any] = {}
    elif kind == "state":
        signals = {"total_count": "uint32", "reject_count": "uint32", "state": "int16", "blocked": "bool",
                   "starved": "bool", **common}
        extra = {"state_map": "packml", "states": {"Held": "planned_stop", "4": "running"}}
    else:
        signals = {"total_count": "uint16", "reject_count": "uint16", **common}
        extra = {}
    prod = {**PRODUCTION, **extra, "parts_per_cycle": per_cycle}
    if startup:
        prod["startup_s"] = 30.0
    return line_config(signals, production=prod, calendar=CALENDAR, timezone="Europe/Berlin",
                       intervals=["hour", "shift", "day"])


CONFIGS = {(k, s, p): _config(k, s, p) for k in ("running", "state", "counter") for s in (False, True) for p in (1, 2)}

Row = tuple[float, str, Any, bool]  # (ts, role or "connected.p", value, good quality)

event = st.tuples(
    st.sampled_from(["same", "short", "short", "medium", "medium", "long"]),
    st.floats(0.0, 1.0),
    st.sampled_from(["cycle"] * 6 + ["run"] * 3 + ["fault", "fault", "product", "blocked", "starved", "bad",
                                                    "outage", "reset", "jump"]),
    st.integers(0, 1000),
)
GAP = {"same": (0.0, 0.0), "short": (0.1, 6.0), "medium": (6.0, 150.0), "long": (150.0, 2400.0)}


def history(kind: str, start: float, top: bool, events: list[tuple[str, float, str, int]]) -> tuple[list[Row], bool]:
    """Rows of a run, and whether the counters stay consistent (no resets, no jumps)."""
    t = start
    total = reject = 65_400 if top and kind != "state" else 0
    mod = 2**32 if kind == "state" else 2**16
    rows: list[Row] = [(t, "product", "A", True), (t, "total_count", total, True), (t, "reject_count", reject, True)]
    consistent = True
    for gap, frac, what, k in events:
        lo, hi = GAP[gap]
        t = round(t + lo + (hi - lo) * frac, 3)
        if what == "run" and kind == "counter":
            what = "cycle"
        if what == "cycle":
            n = k % 4
            r = min(n, (k // 4) % 2)
            total, reject = (total + n) % mod, (reject + r) % mod
            rows += [(t, "total_count", total, True), (t, "reject_count", reject, True)]
        elif what == "run":
            if kind == "running":
                rows.append((t, "running", k % 3 != 0, True))
            else:
                rows.append((t, "state", (6, 6, 6, 2, 5, 11, 9, 4, 17)[k % 9], True))
        elif what == "fault":
            rows.append((t, "fault_code", (0, 0, 9, 42)[k % 4], True))
        elif what == "product":
            rows.append((t, "product", "ABC"[k % 3], True))
        elif what in ("blocked", "starved"):
            if kind != "counter":
                rows.append((t, what, k % 2 == 0, True))
        elif what == "bad":
            role = ("total_count", "fault_code", "running" if kind == "running" else "product")[k % 3]
            rows.append((t, role, 9999, False))  # a bad-quality reading with a garbage value
        elif what == "outage":
            rows.append((t, "connected.p", False, True))
            t = round(t + 20.0 + 37.0 * (k % 7), 3)
            total, reject = (total + k % 50) % mod, (reject + min(k % 3, k % 50)) % mod  # made while away
            rows += [(t, "connected.p", True, True), (t, "total_count", total, True),
                     (t, "reject_count", reject, True)]
        elif what == "reset":
            consistent = False
            total = reject = k % 2
            rows += [(t, "total_count", total, True), (t, "reject_count", reject, True)]
        elif what == "jump":
            consistent = False
            total, reject = (total + 30_000) % mod, (reject + 30_000) % mod
            rows += [(t, "total_count", total, True), (t, "reject_count", reject, True)]
    return rows, consistent


def run_processor(cfg: LineConfig, rows: list[Row], cuts: set[int], end: float,
                  snapshots: dict[int, dict[str, Any]] | None = None) -> list[Record]:
    p = LineProcessor(cfg)
    out: list[Record] = []
    for i, (t, role, value, good) in enumerate(rows):
        if role.startswith("connected."):
            p.set_connected(t, bool(value), role.split(".", 1)[1])
        else:
            p.feed([Sample(role, value, "good" if good else "bad", None, t)])
        if i in cuts:
            out += p.tick(t)  # ticks at a sample's own instant: equal timestamps get split
            if snapshots is not None:
                snapshots[i] = p.snapshot(t)
    out += p.finish(end)
    return out


def check_timeline(cfg: LineConfig, rows: list[Row], i: int, snap: dict[str, Any]) -> None:
    """The status page's timeline of the shift so far is the reference's state timeline."""
    now = rows[i][0]
    upto = [r for r in rows[: i + 1]]
    ref = Reference(cfg, upto, now)
    a = parse_ts(snap["shift_start"])
    want = [(round(s, 3), round(e, 3), k) for s, e, k in ref.timeline(a, now)]
    got = [(parse_ts(g["start"]), parse_ts(g["end"]) if g["end"] else now, g["state"]) for g in snap["timeline"]]
    assert [g[2] for g in got] == [w[2] for w in want], (got, want)
    for g, w in zip(got, want, strict=True):
        assert abs(g[0] - w[0]) < 1e-6 and abs(g[1] - w[1]) < 1e-6, (g, w)


def finals(records: list[Record]) -> tuple[dict[str, StopRecord], dict[str, KpiRecord]]:
    stops: dict[str, StopRecord] = {}
    kpis: dict[str, KpiRecord] = {}
    for r in records:
        if isinstance(r, StopRecord):
            stops[r.id] = r
        elif isinstance(r, KpiRecord) and r.final:
            assert r.id not in kpis, "a final KPI is sent once"
            kpis[r.id] = r
    return stops, kpis


def flat(k: KpiRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in k.__struct_fields__:
        v = getattr(k, f)
        if f in ("losses", "iso22400"):
            out.update({f"{f}.{g}": getattr(v, g) for g in v.__struct_fields__})
        else:
            out[f] = v
    return out


def same(a: Any, b: Any, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a == b
    return bool(abs(a - b) <= tol)


def check_against_reference(cfg: LineConfig, rows: list[Row], end: float, records: list[Record]) -> None:
    ref = Reference(cfg, rows, end)
    stops, kpis = finals(records)
    got_stops = sorted((parse_ts(s.start), parse_ts(s.end) if s.end else None, s.category, s.reason_code)
                       for s in stops.values())
    want_stops = [(round(s.start, 3), round(s.end, 3), s.category, s.reason) for s in ref.stops]
    assert len(got_stops) == len(want_stops), (got_stops, want_stops)
    for g, w in zip(got_stops, want_stops, strict=True):
        assert g[1] is not None and abs(g[0] - w[0]) < 1e-6 and abs(g[1] - w[1]) < 1e-6, (g, w)
        assert g[2:] == w[2:], (g, w)
    for kind in ("hour", "shift", "day"):
        got = sorted((parse_ts(k.start), parse_ts(k.end), k) for k in kpis.values() if k.interval == kind)
        want = ref.intervals(kind)
        assert [(a, b) for a, b, _ in got] == [(round(a, 3), round(b, 3)) for a, b, _ in want], kind
        for (a, b, rec), (_, _, name) in zip(got, want, strict=True):
            if kind == "shift":
                assert rec.shift == name
            expect = ref.kpis(a, b)
            mine = flat(rec)
            for key, value in expect.items():
                tol = 1e-6 if key.endswith("_s") else 1e-9
                assert same(mine[key], value, tol), (kind, rec.start, key, mine[key], value)


def invariants(k: KpiRecord, consistent: bool) -> None:
    assert abs(k.run_time_s + k.stop_time_s - k.planned_production_time_s) < 1e-6
    assert abs(k.all_time_s - k.not_scheduled_s - k.planned_break_s - k.unknown_s - k.planned_production_time_s) < 1e-6
    assert k.good_count + k.reject_count == k.total_count
    assert k.availability is None or -1e-9 <= k.availability <= 1 + 1e-9
    if consistent:  # rejects are a part of the parts made
        assert k.quality is None or -1e-9 <= k.quality <= 1 + 1e-9
    if None not in (k.availability, k.performance, k.quality):
        assert k.oee is not None
        assert abs(k.oee - k.availability * k.performance * k.quality) < 1e-9  # type: ignore[operator]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["running", "state", "counter"]),
    st.sampled_from(STARTS),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 2]),
    st.lists(event, min_size=1, max_size=70),
    st.sets(st.integers(0, 200), max_size=40),
)
def test_processor_in_any_chunking_equals_the_reference_of_the_definitions(
    kind: str, start: float, top: bool, startup: bool, per_cycle: int,
    events: list[tuple[str, float, str, int]], cuts: set[int],
) -> None:
    cfg = CONFIGS[(kind, startup, per_cycle)]
    rows, consistent = history(kind, start, top, events)
    end = rows[-1][0] + 0.5
    batch = run_processor(cfg, rows, set(), end)
    snaps: dict[int, dict[str, Any]] = {}
    stream = run_processor(cfg, rows, cuts, end, snaps)
    if kind != "counter" and snaps:  # (a counter-only line's open gap stop ends one ideal cycle back)
        last = max(snaps)
        check_timeline(cfg, rows, last, snaps[last])
    b_stops, b_kpis = finals(batch)
    s_stops, s_kpis = finals(stream)
    assert {i: (s.start, s.end, s.category, s.reason_code) for i, s in s_stops.items()} == {
        i: (s.start, s.end, s.category, s.reason_code) for i, s in b_stops.items()}
    assert s_kpis.keys() == b_kpis.keys()
    for rid, k in b_kpis.items():
        assert {f: v for f, v in flat(s_kpis[rid]).items() if f not in ("ts", "rev")} == {
            f: v for f, v in flat(k).items() if f not in ("ts", "rev")}
        invariants(k, consistent)
    check_against_reference(cfg, rows, end, batch)
