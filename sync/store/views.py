"""Per-line views of the reference store, computed from the stored records (no extra tables).

`line_summary` (GET /v1/lines/{line}/summary?weeks=N):

- ``open_stops_without_reason``: stops (not micro-stops) with no reason code, newest first;
- ``weeks``: per ISO week (UTC, by the stop's / interval's start) the unplanned stops
  (count and time, from the stop records: a stop is counted once even when it spans two
  KPI intervals), the run time (the sum of ``run_time_s`` of the final KPI records of one
  interval kind: day if the line sends days, else shift, else hour — never two kinds, which
  would count the same time twice), MTBF = run time / unplanned stops and MTTR = unplanned
  stop time / unplanned stops (null without unplanned stops, KPI_DEFINITIONS.md §5);
- ``top_reasons``: stop time by reason (micro-stops included: they are lost time too),
  largest first, at most 10; stops without a reason are one row with ``reason_code`` null.

`shift_table` (GET /v1/lines/{line}/shifts?since=): the final shift KPI records' MTBF and
MTTR, one row per shift occurrence, as the edge computed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.records import KpiRecord, StopRecord, format_ts, parse_ts

__all__ = ["RUN_TIME_INTERVALS", "line_summary", "shift_table", "week_key", "weeks_start"]

RUN_TIME_INTERVALS = ("day", "shift", "hour")
TOP_REASONS = 10
OPEN_STOPS = 100


def week_key(ts: str) -> str:
    iso = datetime.fromtimestamp(parse_ts(ts), tz=UTC).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def weeks_start(now: float, weeks: int) -> float:
    """Monday 00:00 UTC of the ISO week `weeks - 1` weeks before the one holding `now`."""
    d = datetime.fromtimestamp(now, tz=UTC)
    monday = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(days=d.weekday())
    return (monday - timedelta(weeks=weeks - 1)).timestamp()


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def line_summary(line: str, since: float, stops: Sequence[StopRecord], kpis: Sequence[KpiRecord]) -> dict[str, Any]:
    weeks: dict[str, dict[str, Any]] = {}

    def week(key: str) -> dict[str, Any]:
        return weeks.setdefault(key, {"week": key, "run_time_s": 0.0, "unplanned_stop_count": 0,
                                      "unplanned_stop_time_s": 0.0})

    finals = [k for k in kpis if k.final]
    kind = next((i for i in RUN_TIME_INTERVALS if any(k.interval == i for k in finals)), None)
    for k in finals:
        if k.interval == kind:
            week(week_key(k.start))["run_time_s"] += k.run_time_s
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    unreasoned: list[StopRecord] = []
    for s in stops:
        if s.category == "unplanned_stop" and s.end is not None:
            w = week(week_key(s.start))
            w["unplanned_stop_count"] += 1
            w["unplanned_stop_time_s"] += s.duration_s
        if s.reason_code is None and s.category != "micro_stop":
            unreasoned.append(s)
        key = ("" if s.reason_code is None else type(s.reason_code).__name__, str(s.reason_code))
        r = reasons.setdefault(key, {"reason_code": s.reason_code, "reason_text": s.reason_text, "count": 0,
                                     "lost_time_s": 0.0})
        r["reason_text"] = r["reason_text"] or s.reason_text
        r["count"] += 1
        r["lost_time_s"] += s.duration_s
    rows = []
    for wk in sorted(weeks):
        w = weeks[wk]
        n = w["unplanned_stop_count"]
        rows.append({**w, "run_time_s": round(w["run_time_s"], 3),
                     "unplanned_stop_time_s": round(w["unplanned_stop_time_s"], 3),
                     "mtbf_s": _ratio(w["run_time_s"], n), "mttr_s": _ratio(w["unplanned_stop_time_s"], n)})
    top = sorted(reasons.values(), key=lambda r: -r["lost_time_s"])[:TOP_REASONS]
    for r in top:
        r["lost_time_s"] = round(r["lost_time_s"], 3)
    unreasoned.sort(key=lambda s: s.start, reverse=True)
    return {
        "line": line,
        "since": format_ts(since),
        "run_time_from": kind,
        "open_stops_without_reason": {
            "count": len(unreasoned),
            "stops": [{"id": s.id, "rev": s.rev, "start": s.start, "end": s.end, "duration_s": s.duration_s,
                       "category": s.category} for s in unreasoned[:OPEN_STOPS]],
        },
        "weeks": rows,
        "top_reasons": top,
    }


def shift_table(kpis: Sequence[KpiRecord]) -> list[dict[str, Any]]:
    return [
        {"id": k.id, "rev": k.rev, "shift": k.shift, "start": k.start, "end": k.end, "run_time_s": k.run_time_s,
         "unplanned_stop_count": k.unplanned_stop_count, "unplanned_stop_time_s": k.unplanned_stop_time_s,
         "planned_stop_count": k.planned_stop_count, "mtbf_s": k.mtbf_s, "mttr_s": k.mttr_s,
         "availability": k.availability, "oee": k.oee}
        for k in sorted(kpis, key=lambda k: k.start)
        if k.interval == "shift" and k.final
    ]
