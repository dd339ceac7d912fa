"""A realistic line for the status tests: one early shift in progress, built from the real
record types (StopRecord, KpiRecord) so the provider data has the contract's exact shape."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.status import SnapshotProvider, StatusDoc
from edge.status.provider import ReasonDoc
from sync.records import KpiRecord, StopRecord, format_ts, natural_id

IDENTITY = {"site": "dossenheim", "area": "packaging", "line": "line3", "machine": "cartoner"}
REASONS: list[ReasonDoc] = [
    {"code": 17, "text": "Carton magazine empty", "category": "material", "planned": False},
    {"code": 42, "text": "Sealing jaw jam", "category": "equipment_failure", "planned": False},
    {"code": 90, "text": "Changeover", "category": "changeover", "planned": True},
]
_REASON_BY_CODE = {r["code"]: r for r in REASONS}


def _stop(seq: int, start: float, end: float | None, category: str, code: int | None, now: float) -> dict[str, Any]:
    reason = _REASON_BY_CODE.get(code) if code is not None else None
    rec = StopRecord(
        id=natural_id("line3", "stop", seq),
        ts=format_ts(now),
        start=format_ts(start),
        end=None if end is None else format_ts(end),
        duration_s=0.0 if end is None else end - start,
        category=category,  # type: ignore[arg-type]
        reason_code=code,
        reason_text=reason["text"] if reason else None,
        reason_category=reason["category"] if reason else None,
        reason_source="plc" if reason else "none",
        shift="early",
        order="4711",
        product="A-100",
        **IDENTITY,
    )
    return msgspec.to_builtins(rec)  # type: ignore[no-any-return]


class RunningLine(SnapshotProvider):
    """Line 3, 3 h 20 min into a 06:00-14:00 shift (times relative to `now`), running."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.shift_start = now - 3 * 3600 - 20 * 60
        t0 = self.shift_start
        self.timeline: list[dict[str, Any]] = []
        self._closed_stops: list[dict[str, Any]] = []
        seq = 0
        # (offset_s, duration_s, category, reason code) of the shift's stops so far
        history = [
            (900, 45, "micro_stop", None),
            (2400, 780, "unplanned_stop", 42),
            (5400, 30, "micro_stop", 17),
            (6000, 1500, "planned_break", None),
            (8400, 420, "unplanned_stop", 17),
            (10800, 60, "micro_stop", 42),
        ]
        cursor = t0
        for offset, length, category, code in history:
            start = t0 + offset
            self.timeline.append({"start": format_ts(cursor), "end": format_ts(start), "state": "running"})
            self.timeline.append({"start": format_ts(start), "end": format_ts(start + length), "state": category})
            if category != "planned_break":
                seq += 1
                self._closed_stops.insert(0, _stop(seq, start, start + length, category, code, now))
            cursor = start + length
        self.timeline.append({"start": format_ts(cursor), "end": None, "state": "running"})
        self._seq = seq
        self.state: dict[str, Any] = {"state": "running", "since": format_ts(cursor), "duration_s": now - cursor}
        self.samples_total = 598_000
        self.buffer_dropped = 0
        super().__init__(self._build_status(), stops=self._closed_stops, kpis=[self._shift_kpi()], reasons=REASONS)

    def _build_status(self) -> StatusDoc:
        return {
            "line": {"site": "dossenheim", "area": "packaging", "id": "line3", "machine": "cartoner",
                     "name": "Line 3 - cartoner", "timezone": "UTC"},
            "now": format_ts(self.now),
            "state": self.state,  # type: ignore[typeddict-item]
            "shift": {
                "name": "early", "start": format_ts(self.shift_start), "end": format_ts(self.shift_start + 8 * 3600),
                "availability": 0.889, "performance": 0.861, "quality": 0.978, "oee": 0.748,
                "total_count": 9120, "good_count": 8919, "reject_count": 201,
                "target_count": 10500, "plan_count": 25200,
                "run_time_s": 9540.0, "stop_time_s": 1200.0, "product": "A-100", "order": "4711",
            },
            "timeline": self.timeline,  # type: ignore[typeddict-item]
            "plcs": {
                "cartoner": {"driver": "opcua", "connected": True, "last_error": None, "values_per_s": 50.0,
                             "samples_total": self.samples_total, "bad_samples": 3, "reconnects": 1,
                             "last_sample_age_s": 0.1},
                "labeler": {"driver": "modbus", "connected": True, "last_error": None, "values_per_s": 5.0,
                            "samples_total": 60_000, "bad_samples": 0, "reconnects": 0},
            },
            "buffer": {"bytes": 48_234_496, "unsent": 1200, "oldest_unsent_age_s": 14.2, "full": False,
                       "quarantined": 0, "overloaded": False, "dropped": self.buffer_dropped},
            "sync": {"lag_s": 14.2, "last_ack": format_ts(self.now - 14.2), "state": "ok"},
            "stops_by_category": {"micro_stop": 3, "unplanned_stop": 2},
        }

    def _shift_kpi(self) -> dict[str, Any]:
        rec = KpiRecord(
            id=natural_id("line3", "kpi", "shift", "early"), ts=format_ts(self.now), interval="shift",
            start=format_ts(self.shift_start), end=format_ts(self.shift_start + 8 * 3600), shift="early",
            products=["A-100"], planned_production_time_s=10740.0, stop_time_s=1200.0, run_time_s=9540.0,
            total_count=9120, good_count=8919, reject_count=201, availability=0.889, performance=0.861,
            quality=0.978, oee=0.748, final=False, **IDENTITY,
        )
        return msgspec.to_builtins(rec)  # type: ignore[no-any-return]

    def advance(self, seconds: float, samples: int = 0) -> None:
        self.now += seconds
        self.samples_total += samples
        since = self.state["since"]
        from sync.records import parse_ts

        self.state["duration_s"] = round(self.now - parse_ts(since), 3)
        self.publish(self._build_status())

    def stop_line(self, code: int | None) -> str:
        """The line stops now with fault `code`: the open stop is the newest one."""
        self._seq += 1
        start = self.now
        self.timeline[-1]["end"] = format_ts(start)
        self.timeline.append({"start": format_ts(start), "end": None, "state": "unplanned_stop"})
        stop = _stop(self._seq, start, None, "micro_stop", code, self.now)
        reason = _REASON_BY_CODE.get(code) if code is not None else None
        self.state = {"state": "unplanned_stop", "since": format_ts(start), "duration_s": 0.0,
                      "reason_code": code, "reason_text": reason["text"] if reason else None, "stop_id": stop["id"]}
        self.publish(self._build_status(), stops=[stop, *self.stops(1000)])
        return str(stop["id"])
