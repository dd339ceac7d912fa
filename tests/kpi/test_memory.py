"""The processor's memory stays bounded on a long run with many process tags (soak finding:
every process value change was kept for a day past the last final KPI)."""

from __future__ import annotations

from typing import Any

import msgspec

from config.models import LineConfig
from drivers.base import Sample
from edge.processor import LineProcessor
from sync.records import StopRecord, parse_ts

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TAGS = 100
HZ = 10
HOURS = 2


def _cfg() -> LineConfig:
    raw: dict[str, Any] = {
        "line": {"site": "s", "area": "a", "id": "l1", "machine": "m"},
        "plcs": {"p": {"driver": "sim"}},
        "signals": {
            "total_count": {"plc": "p", "address": "c", "type": "uint32"},
            "running": {"plc": "p", "address": "r", "type": "bool"},
            "process": {f"t{i:03d}": {"plc": "p", "address": f"p{i}", "type": "float64"} for i in range(TAGS)},
        },
        "production": {"ideal_cycle_time_s": 1.0},
        "buffer": {"path": "/tmp/unused.db"},
        "timezone": "UTC",
    }
    return msgspec.convert(raw, LineConfig)


def _value(t: float, i: int) -> float:
    return round(t * 7.0 + i, 3)  # changes at every sample: nothing to drop as a repeat


def test_process_tags_at_10_hz_for_hours_keep_memory_bounded_and_stops_keep_their_process_values() -> None:
    p = LineProcessor(_cfg())
    tags = [f"process.t{i:03d}" for i in range(TAGS)]
    count = 0
    stop_starts: list[float] = []
    retained: list[int] = []
    out: list[Any] = []
    for sec in range(HOURS * 3600):
        t = T0 + sec
        # a 90 s stop every 10 minutes, starting half a second into the second
        running = not (sec % 600 >= 300 and sec % 600 < 390)
        batch = [Sample(tag, _value(t + k / HZ, i), "good", None, t + k / HZ)
                 for k in range(HZ) for i, tag in enumerate(tags)]
        if sec % 600 == 300:
            stop_starts.append(t + 0.5)
            batch.append(Sample("running", False, "good", None, t + 0.5))
        elif running or sec % 600 != 390:
            batch.append(Sample("running", running, "good", None, t))
        else:
            batch.append(Sample("running", True, "good", None, t))
        if running:
            count += 1
        batch.append(Sample("total_count", count, "good", None, t))
        p.feed(batch)
        out += p.tick(t + 0.95)
        if sec % 300 == 299:
            retained.append(p.retained())
    out += p.finish(T0 + HOURS * 3600)
    # bounded: a few seconds of process values, not hours (2 h would be 14.4 million)
    assert max(retained) < TAGS * HZ * 10
    assert retained[-1] <= retained[len(retained) // 4] + 100
    stops = {r.id: r for r in out if isinstance(r, StopRecord)}
    assert sorted(parse_ts(s.start) for s in stops.values()) == stop_starts
    for s in stops.values():
        start = parse_ts(s.start)
        assert s.process == {tag[8:]: _value(start, i) for i, tag in enumerate(tags)}
