"""Line configs and sample histories for the kpi tests, built in code (no files to drift)."""

from __future__ import annotations

import io
from typing import Any

import msgspec

from config.models import LineConfig
from edge.replay import final_records, replay
from sync.records import KpiRecord, Record, StopRecord


def line_config(signals: dict[str, str], production: dict[str, Any] | None = None,
                calendar: dict[str, Any] | None = None, timezone: str = "UTC",
                intervals: list[str] | None = None) -> LineConfig:
    raw: dict[str, Any] = {
        "line": {"site": "s", "area": "a", "id": "l1", "machine": "m"},
        "plcs": {"p": {"driver": "sim"}},
        "signals": {r: {"plc": "p", "address": r, "type": t} for r, t in signals.items()},
        "production": {"ideal_cycle_time_s": 1.0, **(production or {})},
        "buffer": {"path": "/tmp/unused.db"},
        "timezone": timezone,
        "calendar": calendar or {},
    }
    if intervals is not None:
        raw["kpi"] = {"intervals": intervals}
    return msgspec.convert(raw, LineConfig)


def run_csv(cfg: LineConfig, rows: list[tuple[float | str, str, Any]]) -> list[Record]:
    text = "timestamp,signal,value\n" + "".join(f"{t},{s},{v}\n" for t, s, v in rows)
    bad: list[Any] = []
    recs = final_records(replay(cfg, io.StringIO(text), bad))
    assert not bad, bad
    return recs


def kpis(records: list[Record], interval: str) -> list[KpiRecord]:
    return [r for r in records if isinstance(r, KpiRecord) and r.interval == interval]


def stops(records: list[Record]) -> list[StopRecord]:
    return [r for r in records if isinstance(r, StopRecord)]
