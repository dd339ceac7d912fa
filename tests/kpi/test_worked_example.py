"""KPI_DEFINITIONS.md §6: the published oee.com example, replayed from a CSV."""

from __future__ import annotations

from typing import Any

from sync.records import parse_ts
from tests.kpi.helpers import kpis, line_config, run_csv

DAY = parse_ts("2026-03-02T00:00:00Z")  # a Monday
H = 3600.0


def _example_rows() -> list[tuple[float, str, Any]]:
    six = DAY + 6 * H
    run_windows = [
        (six, six + H),  # 47 min stop 07:00-07:47
        (six + H + 47 * 60, six + 2 * H),
        (six + 2 * H + 15 * 60, six + 4 * H),
        (six + 4 * H + 30 * 60, six + 6 * H),
        (six + 6 * H + 15 * 60, six + 8 * H),
    ]
    minutes = [s + 60 * k - 0.5 for s, e in run_windows for k in range(1, round((e - s) / 60) + 1)]
    assert len(minutes) == 373
    rows: list[tuple[float, str, Any]] = [(six, "total_count", 0), (six, "reject_count", 0), (six, "running", 1)]
    total = reject = 0
    for i, t in enumerate(minutes):
        total += 51 + (1 if i < 19271 - 51 * 373 else 0)
        reject += 1 + (1 if i < 423 - 373 else 0)
        rows += [(t, "total_count", total), (t, "reject_count", reject)]
    assert (total, reject) == (19271, 423)
    rows += [(six + H, "running", 0), (six + H + 47 * 60, "running", 1), (six + 8 * H, "running", 1)]
    return sorted(rows, key=lambda r: r[0])


def test_published_oee_example_gives_a_p_q_oee_to_the_hundredth_percent() -> None:
    cfg = line_config(
        {"total_count": "uint32", "reject_count": "uint32", "running": "bool"},
        calendar={
            "shifts": [{"name": "early", "start": "06:00", "end": "14:00"}],
            "breaks": [{"start": "08:00", "end": "08:15"}, {"start": "10:00", "end": "10:30"},
                       {"start": "12:00", "end": "12:15"}],
        },
    )
    records = run_csv(cfg, _example_rows())
    (shift,) = kpis(records, "shift")
    assert shift.final and shift.shift == "early"
    assert shift.planned_production_time_s == 420 * 60
    assert shift.run_time_s == 373 * 60
    assert shift.unplanned_stop_count == 1
    assert (shift.total_count, shift.reject_count, shift.good_count) == (19271, 423, 18848)
    assert shift.availability is not None and shift.performance is not None
    assert shift.quality is not None and shift.oee is not None
    assert round(shift.availability * 100, 2) == 88.81
    assert round(shift.performance * 100, 2) == 86.11
    assert round(shift.quality * 100, 2) == 97.80
    assert round(shift.oee * 100, 2) == 74.79
    hours = kpis(records, "hour")
    assert sum(h.total_count for h in hours) == 19271
    assert sum(h.run_time_s for h in hours) == 373 * 60
