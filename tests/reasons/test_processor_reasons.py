"""`LineProcessor.set_reason`: a reason set later revises the stop and the KPIs it touches."""

from __future__ import annotations

import pytest

from edge.processor import LineProcessor
from sync.records import EventRecord, KpiRecord, StopRecord, format_ts
from tests.reasons.scenario import END, T0, config, run, sample, stop_id


def _latest(records: list, cls: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in records:
        if isinstance(r, cls) and (r.id not in out or r.rev > out[r.id].rev):  # type: ignore[attr-defined]
            out[r.id] = r
    return out


def _final(records: list, interval: str, start: float) -> KpiRecord:
    found = [r for r in records if isinstance(r, KpiRecord) and r.final and r.interval == interval
             and r.start == format_ts(start)]
    assert found, f"no final {interval} KPI at {format_ts(start)}"
    return max(found, key=lambda r: r.rev)


def test_planned_reason_set_later_revises_the_stop_and_recomputes_mtbf_mttr_of_its_hour_and_shift() -> None:
    proc = LineProcessor(config())
    before = run(proc)
    h6, shift = _final(before, "hour", T0), _final(before, "shift", T0)
    # by hand: hour 06 has A (300 s) and B (600 s) unplanned; PPT 3600 s
    assert (h6.unplanned_stop_count, h6.unplanned_stop_time_s, h6.run_time_s) == (2, 900.0, 2700.0)
    assert (h6.mtbf_s, h6.mttr_s, h6.availability) == (1350.0, 450.0, 0.75)
    # shift: A + B + C = 1080 s over 3 stops, run 6120 s of 7200 s
    assert (shift.unplanned_stop_count, shift.mtbf_s, shift.mttr_s) == (3, 2040.0, 360.0)
    stop_b = _latest(before, StopRecord)[stop_id("B")]
    assert stop_b.category == "unplanned_stop" and stop_b.reason_source == "none"

    out = proc.set_reason(stop_id("B"), 90, source="operator", at=T0 + END + 5)

    stops = [r for r in out if isinstance(r, StopRecord)]
    assert len(stops) == 1
    s = stops[0]
    assert s.id == stop_b.id and s.rev > stop_b.rev  # a later revision wins (revs are time-based)
    assert (s.category, s.reason_code, s.reason_text, s.reason_category, s.reason_source) == (
        "planned_stop", 90, "Changeover", "changeover", "operator")
    kpis = {(k.interval, k.start): k for k in out if isinstance(k, KpiRecord)}
    # only the intervals the stop touches are re-sent: hour 06 and the shift, not hour 07
    assert set(kpis) == {("hour", format_ts(T0)), ("shift", format_ts(T0))}
    h6b, shiftb = kpis[("hour", format_ts(T0))], kpis[("shift", format_ts(T0))]
    assert h6b.id == h6.id and h6b.rev > h6.rev and h6b.final
    assert (h6b.unplanned_stop_count, h6b.planned_stop_count, h6b.planned_stop_time_s) == (1, 1, 600.0)
    assert (h6b.mtbf_s, h6b.mttr_s) == (2700.0, 300.0)
    assert h6b.availability == 0.75  # A = run / PPT: a planned stop is still stop time
    assert shiftb.id == shift.id and shiftb.rev > shift.rev and shiftb.final
    assert (shiftb.unplanned_stop_count, shiftb.mtbf_s, shiftb.mttr_s) == (2, 3060.0, 240.0)
    assert shiftb.iso22400.adet_s == 480.0  # ISO ADET counts unplanned stop time only


def test_unplanned_reason_changes_the_stop_text_but_not_the_kpis() -> None:
    proc = LineProcessor(config())
    run(proc)
    out = proc.set_reason(stop_id("A"), 42, source="central", text="Jaw jammed (maintenance)",
                          category="equipment_failure", at=T0 + END + 5)
    assert [type(r) for r in out] == [StopRecord]
    s = out[0]
    assert isinstance(s, StopRecord)
    assert (s.category, s.reason_text, s.reason_source) == ("unplanned_stop", "Jaw jammed (maintenance)", "central")


def test_reason_on_an_open_stop_is_kept_when_it_closes_and_a_later_plc_fault_code_does_not_replace_it() -> None:
    proc = LineProcessor(config(fault_code=True))
    run(proc, upto=2000.0)  # B is open (since 1800 s)
    out = proc.set_reason(stop_id("B"), 90, source="operator", at=T0 + 2000.0)
    open_rev = next(r for r in out if isinstance(r, StopRecord))
    assert open_rev.end is None and open_rev.category == "planned_stop"
    proc.feed([sample("fault_code", 42, 2100.0)])  # the PLC reports a fault later in the stop
    recs = run(proc, start=2010.0)
    final_b = [r for r in recs if isinstance(r, StopRecord) and r.id == stop_id("B")][-1]
    assert final_b.end is not None
    assert (final_b.reason_code, final_b.reason_source, final_b.category) == (90, "operator", "planned_stop")
    assert _final(recs, "shift", T0).planned_stop_count == 1
    overridden = [r for r in recs if isinstance(r, EventRecord) and r.kind == "plc_reason_overridden"]
    assert len(overridden) == 1 and overridden[0].detail["plc_reason"] == 42


def test_unknown_stop_id_raises_key_error_and_bad_source_value_error() -> None:
    proc = LineProcessor(config())
    run(proc, upto=1000.0)
    with pytest.raises(KeyError):
        proc.set_reason("l1:stop:1", 90, source="operator", at=T0 + 1000)
    with pytest.raises(ValueError):
        proc.set_reason(stop_id("A"), 90, source="plc", at=T0 + 1000)


def test_product_set_from_context_switches_the_ideal_cycle_time_at_that_instant() -> None:
    proc = LineProcessor(config(intervals=["hour"]))
    # 06:00-07:00 runs at one part per 10 s; FAST (2 s ideal) from 06:30 on, via context only
    recs = run(proc, upto=1800.0)
    proc.set_context("product", "FAST", T0 + 1800.0)
    recs += run(proc, upto=3601.0, start=1800.0)
    h6 = _final(recs, "hour", T0)
    parts_before = sum(1 for x in range(10, 1800, 10) if not (600 <= x < 900))
    parts_after = h6.total_count - parts_before
    assert h6.ideal_time_s == pytest.approx(parts_before * 5.0 + parts_after * 2.0)
    assert h6.products == ["FAST"]
    assert not [r for r in recs if isinstance(r, EventRecord) and r.kind == "kpi_not_recomputed"]
