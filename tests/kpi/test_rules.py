"""One test per rule of KPI_DEFINITIONS.md §2–5, through the live code path."""

from __future__ import annotations

import numpy as np

from drivers.base import Sample
from edge.processor import LineProcessor
from kpi_core.calendar import ShiftCalendar
from kpi_core.counters import (
    FLAG_BASELINE,
    FLAG_RESET,
    FLAG_ROLLOVER,
    counter_deltas,
    counter_range,
    new_counter_state,
)
from sync.records import EventRecord, StopRecord, parse_ts
from tests.kpi.helpers import kpis, line_config, run_csv, stops

T0 = parse_ts("2026-03-02T06:00:00Z")  # Monday


def _deltas(kind: str, values: list[int], ts: list[float] | None = None, rate: float = 100.0) -> tuple[list[int], list[int]]:
    lo, mod = counter_range(kind)
    si, sf = new_counter_state()
    n = len(values)
    t = np.array(ts if ts is not None else [float(i) for i in range(n)])
    d = np.zeros(n, dtype=np.int64)
    f = np.zeros(n, dtype=np.int8)
    counter_deltas(t, np.array(values, dtype=np.int64), np.ones(n, dtype=np.bool_), lo, mod, rate, si, sf, d, f)
    return d.tolist(), f.tolist()


def test_counter_rollover_at_uint16_is_counted_once() -> None:
    d, f = _deltas("uint16", [65530, 65535, 3])
    assert d == [0, 5, 4] and f[2] == FLAG_ROLLOVER


def test_counter_rollover_at_uint32_is_counted_once() -> None:
    d, f = _deltas("uint32", [2**32 - 2, 1])
    assert d == [0, 3] and f == [FLAG_BASELINE, FLAG_ROLLOVER]


def test_counter_drop_outside_the_last_tenth_is_a_reset_counting_the_new_value() -> None:
    d, f = _deltas("uint32", [5000, 5010, 7])
    assert d == [0, 10, 7] and f[2] == FLAG_RESET


def test_counter_reset_and_implausible_jump_are_recorded_as_events_and_jump_not_counted() -> None:
    cfg = line_config({"total_count": "uint32"})
    rows = [(T0, "total_count", 100), (T0 + 1, "total_count", 101), (T0 + 2, "total_count", 3),
            (T0 + 3, "total_count", 100_000), (T0 + 4, "total_count", 100_001)]
    recs = run_csv(cfg, rows)
    kinds = [(r.kind, r.detail["old"], r.detail["new"]) for r in recs if isinstance(r, EventRecord)]
    assert kinds == [("counter_reset", 101, 3), ("implausible_count", 3, 100_000)]
    (day,) = kpis(recs, "day")
    assert day.total_count == 1 + 3 + 1


def test_parts_made_while_plc_unreachable_count_once_at_the_reconnect_sample() -> None:
    cfg = line_config({"total_count": "uint32", "running": "bool"}, production={"max_parts_per_s": 2.0})
    p = LineProcessor(cfg)
    p.feed([Sample("running", True, "good", None, T0), Sample("total_count", 10, "good", None, T0)])
    p.feed([Sample("total_count", 20, "good", None, T0 + 10)])
    p.tick(T0 + 10)
    p.set_connected(T0 + 11, False, "p", "timeout")
    p.set_connected(T0 + 100, True, "p")
    p.feed([Sample("total_count", 120, "good", None, T0 + 100), Sample("running", True, "good", None, T0 + 100)])
    recs = p.tick(T0 + 101) + p.finish(T0 + 200)
    (day,) = [k for k in kpis(recs, "day") if k.final]
    assert day.total_count == 110
    assert abs(day.unknown_s - (86400 - 200 + 89)) < 0.01
    assert [r.kind for r in recs if isinstance(r, EventRecord)] == ["plc_disconnected", "plc_connected"]


def test_counter_gap_stop_is_back_dated_to_the_last_part_and_lasts_gap_minus_ict() -> None:
    cfg = line_config({"total_count": "uint32"}, production={"ideal_cycle_time_s": 2.0})
    p = LineProcessor(cfg)
    p.feed([Sample("total_count", i, "good", None, T0 + 2 * i) for i in range(6)])
    assert not stops(p.tick(T0 + 10))
    opened = stops(p.tick(T0 + 15))  # 5 s since the last part > stop_after 4 s
    assert opened and opened[0].start == "2026-03-02T06:00:10.000Z" and opened[0].end is None
    p.feed([Sample("total_count", 6, "good", None, T0 + 400)])
    closed = stops(p.tick(T0 + 400))
    assert closed[-1].id == opened[0].id and closed[-1].rev > opened[0].rev
    assert closed[-1].end == "2026-03-02T06:06:38.000Z" and closed[-1].duration_s == 388.0
    assert closed[-1].category == "unplanned_stop"


def test_slow_cycle_is_speed_loss_not_a_stop() -> None:
    cfg = line_config({"total_count": "uint32"}, production={"ideal_cycle_time_s": 2.0})
    rows = [(T0 + 3.5 * i, "total_count", i) for i in range(100)]
    recs = run_csv(cfg, rows)
    assert not stops(recs)
    (day,) = kpis(recs, "day")
    assert day.losses.slow_cycles_s is not None and day.losses.slow_cycles_s > 0


def test_micro_stop_becomes_unplanned_stop_while_still_open() -> None:
    cfg = line_config({"total_count": "uint32", "running": "bool", "fault_code": "int16"},
                      production={"reasons": {42: {"text": "Jam", "category": "equipment_failure"}}})
    p = LineProcessor(cfg)
    p.feed([Sample("running", True, "good", None, T0), Sample("fault_code", 0, "good", None, T0)])
    p.tick(T0)
    p.feed([Sample("running", False, "good", None, T0 + 10), Sample("fault_code", 42, "good", None, T0 + 10)])
    first = stops(p.tick(T0 + 11))
    later = stops(p.tick(T0 + 131))
    p.feed([Sample("running", True, "good", None, T0 + 200)])
    done = stops(p.tick(T0 + 200))
    assert [first[0].category, later[0].category, done[0].category] == ["micro_stop", "unplanned_stop", "unplanned_stop"]
    assert first[0].id == later[0].id == done[0].id and first[0].rev < later[0].rev < done[0].rev
    assert done[0].reason_code == 42 and done[0].reason_text == "Jam" and done[0].duration_s == 190


def _shift_cfg(**kw: object) -> object:
    return line_config(
        {"total_count": "uint32", "running": "bool"},
        calendar={"shifts": [{"name": "early", "start": "06:00", "end": "14:00"},
                             {"name": "late", "start": "14:00", "end": "22:00"}],
                  "breaks": [{"start": "10:00", "end": "10:30"}]},
        **kw,  # type: ignore[arg-type]
    )


def test_stop_across_a_shift_boundary_is_split_and_keeps_its_whole_stop_class() -> None:
    cfg = _shift_cfg()
    rows = [(T0, "running", 1), (T0 + 8 * 3600 - 100, "running", 0), (T0 + 8 * 3600 + 50, "running", 1),
            (T0 + 16 * 3600, "running", 1)]
    recs = run_csv(cfg, rows)
    early, late = kpis(recs, "shift")
    # 100 s + 50 s: each part alone would be a micro-stop, the whole stop is not
    assert (early.unplanned_stop_time_s, late.unplanned_stop_time_s) == (100, 50)
    assert early.unplanned_stop_count == late.unplanned_stop_count == 1
    assert early.micro_stop_count == late.micro_stop_count == 0


def test_stop_inside_a_break_is_break_time_not_stop_time() -> None:
    cfg = _shift_cfg()
    rows = [(T0, "running", 1), (T0 + 4 * 3600 - 300, "running", 0), (T0 + 4 * 3600 + 600, "running", 1),
            (T0 + 8 * 3600, "running", 1)]
    (early,) = kpis(run_csv(cfg, rows), "shift")
    assert early.planned_break_s == 1800
    assert early.unplanned_stop_time_s == 300
    assert early.planned_production_time_s == 7.5 * 3600


def test_dst_night_shift_lasts_seven_hours_in_spring_and_nine_in_autumn() -> None:
    from config.models import Calendar, Shift

    cal = ShiftCalendar(Calendar(shifts=[Shift(name="night", start="22:00", end="06:00")]), "Europe/Berlin")
    spring = cal.shift_at(parse_ts("2026-03-29T01:30:00+01:00"))
    autumn = cal.shift_at(parse_ts("2026-10-25T01:30:00+02:00"))
    assert spring is not None and spring.end - spring.start == 7 * 3600
    assert autumn is not None and autumn.end - autumn.start == 9 * 3600
    assert [e - s for s, e in cal.days(parse_ts("2026-10-25T12:00:00+01:00"), parse_ts("2026-10-25T12:00:01+01:00"))] == [25 * 3600]


def test_product_change_mid_hour_weights_each_products_ideal_cycle_time() -> None:
    cfg = line_config({"total_count": "uint32", "running": "bool", "product": "string"},
                      production={"products": {"A": {"ideal_cycle_time_s": 1.0}, "B": {"ideal_cycle_time_s": 2.0}}},
                      intervals=["hour"])
    rows = [(T0, "running", 1), (T0, "product", "A"), (T0, "total_count", 0),
            (T0 + 1800, "total_count", 1000), (T0 + 1800, "product", "B"), (T0 + 3599, "total_count", 1500)]
    (hour,) = [k for k in kpis(run_csv(cfg, rows), "hour") if k.start == "2026-03-02T06:00:00.000Z"]
    assert hour.products == ["A", "B"]
    # parts counted at the change instant were made under A
    assert hour.total_count == 1500 and hour.ideal_time_s == 1000 * 1.0 + 500 * 2.0


def test_interval_without_planned_production_time_gives_null_ratios() -> None:
    cfg = line_config({"total_count": "uint32"},
                      calendar={"shifts": [{"name": "early", "start": "06:00", "end": "14:00"}]}, intervals=["hour"])
    rows = [(T0 - 3 * 3600, "total_count", 0), (T0 - 3 * 3600 + 10, "total_count", 5), (T0 - 3600, "total_count", 6)]
    hours = kpis(run_csv(cfg, rows), "hour")
    h = hours[0]
    assert h.planned_production_time_s == 0 and h.counts_outside_ppt == 5
    assert h.availability is None and h.performance is None and h.oee is None and h.teep is None
    assert h.quality is None and h.mtbf_s is None and h.iso22400.availability is None


def test_blocked_stop_is_recorded_with_its_cause() -> None:
    cfg = line_config({"total_count": "uint32", "running": "bool", "blocked": "bool"})
    rows = [(T0, "running", 1), (T0, "blocked", 0), (T0 + 10, "blocked", 1), (T0 + 10.5, "running", 0),
            (T0 + 500, "running", 1), (T0 + 500, "blocked", 0), (T0 + 600, "running", 1)]
    (st,) = [s for s in stops(run_csv(cfg, rows)) if isinstance(s, StopRecord)]
    assert st.category == "blocked" and st.duration_s == 489.5


def test_rejects_never_exceed_parts_when_a_jump_is_dropped_from_the_total_counter() -> None:
    # Three readings at one instant: the total's 1 -> 3 is an implausible jump (not counted, an
    # event says so) while the reject counter's steps are plausible. Q stays a ratio.
    from sync.records import EventRecord
    from tests.kpi.helpers import kpis, line_config, run_csv

    cfg = line_config({"total_count": "uint16", "reject_count": "uint16", "running": "bool"}, intervals=["hour"])
    t = 1_772_426_400.0
    rows: list[tuple[float | str, str, object]] = [
        (t, "running", "true"), (t, "total_count", 0), (t, "reject_count", 0),
        (t, "total_count", 1), (t, "reject_count", 1), (t, "total_count", 3), (t, "reject_count", 2),
        (t + 10, "running", "true"),
    ]
    recs = run_csv(cfg, rows)
    (k,) = kpis(recs, "hour")
    assert k.total_count == 1 and k.reject_count == 1 and k.good_count == 0
    assert k.quality == 0.0
    assert any(isinstance(r, EventRecord) and r.kind == "implausible_count" for r in recs)
