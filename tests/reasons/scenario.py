"""A scripted line for the reason tests: two hours of one shift, three stops, hand-computed.

Shift ``early`` 06:00-08:00 UTC on Monday 2026-11-23, one part every 10 s while running:

| stop | from-to           | duration | hour    |
|------|-------------------|----------|---------|
| A    | 06:10:00-06:15:00 | 300 s    | 06-07   |
| B    | 06:30:00-06:40:00 | 600 s    | 06-07   |
| C    | 07:20:00-07:23:00 | 180 s    | 07-08   |

No fault codes: every stop is unplanned until a person gives it a reason.
"""

from __future__ import annotations

from typing import Any

import msgspec

from config.models import LineConfig
from drivers.base import Sample
from edge.processor import LineProcessor
from sync.records import Record, parse_ts

T0 = parse_ts("2026-11-23T06:00:00Z")
STOPS = {"A": (600.0, 900.0), "B": (1800.0, 2400.0), "C": (4800.0, 4980.0)}
END = 7200.0


def config(*, intervals: list[str] | None = None, fault_code: bool = False) -> LineConfig:
    signals: dict[str, Any] = {
        "total_count": {"plc": "p", "address": "c", "type": "uint32"},
        "running": {"plc": "p", "address": "r", "type": "bool"},
    }
    if fault_code:
        signals["fault_code"] = {"plc": "p", "address": "f", "type": "int16"}
    raw = {
        "line": {"site": "s", "area": "a", "id": "l1", "machine": "m"},
        "plcs": {"p": {"driver": "sim"}},
        "signals": signals,
        "production": {
            "ideal_cycle_time_s": 5.0,
            "products": {"FAST": {"ideal_cycle_time_s": 2.0}},
            "reasons": {
                42: {"text": "Sealing jaw jam", "category": "equipment_failure"},
                90: {"text": "Changeover", "category": "changeover", "planned": True},
            },
        },
        "calendar": {"shifts": [{"name": "early", "start": "06:00", "end": "08:00"}]},
        "kpi": {"intervals": intervals or ["hour", "shift"], "provisional_every_s": 60},
        "buffer": {"path": "/tmp/unused-reasons.db"},
    }
    return msgspec.convert(raw, LineConfig)


def sample(tag: str, value: Any, t: float) -> Sample:
    return Sample(tag=tag, value=value, quality="good", source_ts=None, recv_ts=T0 + t)


def running_at(t: float) -> bool:
    return not any(a <= t < b for a, b in STOPS.values())


def parts_until(t: float) -> int:
    """The counter's value at ``t``: one part per 10 s step while running."""
    return sum(1 for x in range(10, int(t) + 1, 10) if running_at(x))


def run(proc: LineProcessor, upto: float = END + 1.0, start: float = 0.0) -> list[Record]:
    """Feed the scenario over [start, upto) (seconds after 06:00), ticking every 10 s."""
    out: list[Record] = []
    t = start
    while t < upto:
        proc.feed([sample("running", running_at(t), t), sample("total_count", parts_until(t), t)])
        out += proc.tick(T0 + t)
        t += 10.0
    return out


def stop_id(name: str) -> str:
    return f"l1:stop:{round((T0 + STOPS[name][0]) * 1000)}"
