"""Wall-clock steps (NTP, an operator setting the time) never create or eat a stop.

The line clock and the PLC source-time mapper are driven by injected clocks; the daemon-level
check runs a real `LineDaemon` in-process on the in-process `sim` driver with a wall clock that
jumps an hour mid-run (no root, no system clock touched).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import load_line_config
from drivers.base import Sample
from edge.clock import LineClock, SourceTimeMapper
from edge.daemon import LineDaemon
from edge.processor import LineProcessor
from sync.records import parse_ts
from tests.edge.line_run import kind, read_buffer

T0 = 1_760_000_000.0  # a fixed epoch for the injected clocks


class FakeClocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall_offset = 0.0

    def wall(self) -> float:
        return T0 + (self.mono - 1000.0) + self.wall_offset

    def monotonic(self) -> float:
        return self.mono


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_line_clock_keeps_durations_on_the_monotonic_clock_across_a_wall_step(step: float) -> None:
    c = FakeClocks()
    clock = LineClock(wall=c.wall, mono=c.monotonic, scale=1.0)
    assert clock.now() == T0 and clock.stepped() is None
    c.mono += 10
    c.wall_offset = step  # the system clock is set an hour ahead / back
    before = clock.now()
    c.mono += 5
    assert clock.now() - before == 5.0
    assert clock.now() == T0 + 15.0
    assert clock.stepped() == pytest.approx(step)


def test_line_clock_ignores_wall_drift_below_the_threshold() -> None:
    c = FakeClocks()
    clock = LineClock(wall=c.wall, mono=c.monotonic, step_threshold_s=2.0, scale=1.0)
    c.mono += 100
    c.wall_offset = 1.5
    assert clock.stepped() is None


def test_scaled_line_clock_runs_faster_and_reports_no_step() -> None:
    c = FakeClocks()
    clock = LineClock(wall=c.wall, mono=c.monotonic, scale=8.0)
    c.mono += 10
    assert clock.now() == T0 + 80.0
    assert clock.stepped() is None


def test_line_clock_refuses_a_non_positive_time_scale() -> None:
    with pytest.raises(ValueError, match="LINESIDE_TIME_SCALE"):
        LineClock(scale=0.0)


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_a_plc_clock_step_keeps_source_times_continuous_and_monotonic(step: float) -> None:
    m = SourceTimeMapper()
    recv = T0
    src = T0 - 0.3  # the PLC runs 0.3 s behind
    out = []
    for i in range(40):
        if i == 20:
            src += step  # the PLC's clock is set
        out.append(m.map(src, recv + 0.02))
        recv += 1.0
        src += 1.0
    diffs = [b - a for a, b in itertools.pairwise(out)]
    assert all(d >= 0 for d in diffs)
    assert max(diffs) == pytest.approx(1.0, abs=0.05) and min(diffs) == pytest.approx(1.0, abs=0.05)
    assert m.steps == 1
    assert all(abs(t - r) < 0.05 for t, r in zip(out, [T0 + i + 0.02 for i in range(40)], strict=False))


def _line_cfg(tmp: Path, plc: dict[str, Any]) -> Any:
    cfg = {
        "line": {"site": "s", "area": "a", "id": "clk1", "machine": "m"},
        "plcs": {"p": plc},
        "signals": {
            "total_count": {"plc": "p", "address": "total_count", "type": "uint16"},
            "running": {"plc": "p", "address": "running", "type": "bool"},
        },
        "production": {"ideal_cycle_time_s": 1.0, "micro_stop_max_s": 5},
        "kpi": {"intervals": ["hour", "day"], "provisional_every_s": 1},
        "buffer": {"path": str(tmp / "buf" / "clk1.db")},
        "status": {"listen": "127.0.0.1:0"},
    }
    (tmp / "line.yaml").write_text(yaml.safe_dump(cfg))
    return load_line_config(tmp / "line.yaml")


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_processor_fed_from_the_line_clock_sees_no_stop_and_exact_durations_across_a_wall_step(
    tmp_path: Path, step: float
) -> None:
    c = FakeClocks()
    clock = LineClock(wall=c.wall, mono=c.monotonic, scale=1.0)
    p = LineProcessor(_line_cfg(tmp_path, {"driver": "sim"}))
    records: list[Any] = []
    total = 0
    # 60 s running (a part a second), a 10 s stop, 30 s running; the wall clock jumps at 30 s
    # and again (back) in the middle of the stop
    for i in range(101):
        if i == 30:
            c.wall_offset = step
        if i == 65:
            c.wall_offset = 0.0
        running = not (60 <= i < 70)
        if running and i > 0:
            total += 1
        now = clock.now()
        p.feed([Sample("total_count", total, "good", None, now), Sample("running", running, "good", None, now)])
        records += p.tick(now)
        c.mono += 1.0
    records += p.finish(clock.now())
    stops = {r.id: r for r in records if kind(r) == "stop"}
    assert len(stops) == 1, stops
    (stop,) = stops.values()
    assert stop.duration_s == pytest.approx(10.0, abs=1e-3)
    assert parse_ts(stop.start) == pytest.approx(T0 + 60, abs=1e-3)
    day = [r for r in records if kind(r) == "kpi" and r.interval == "day" and r.final]
    dbg = [(kind(r), getattr(r, "interval", None), getattr(r, "final", None), r.rev, r.ts, getattr(r, "kind", None)) for r in records if kind(r) in ("kpi", "event")]
    assert day, dbg
    assert sum(k.total_count for k in day) == total
    assert sum(k.stop_time_s for k in day) == pytest.approx(10.0, abs=1e-3)


async def test_daemon_writes_a_clock_step_event_and_no_stop_when_the_wall_clock_jumps_an_hour(
    tmp_path: Path,
) -> None:
    (tmp_path / "steady.yaml").write_text("name: steady\nideal_cycle_time_s: 0.2\n")
    cfg = _line_cfg(tmp_path, {"driver": "sim", "scenario": str(tmp_path / "steady.yaml"), "interval_ms": 50})
    step_at = time.monotonic() + 2.0

    def wall() -> float:
        return time.time() + (3600.0 if time.monotonic() > step_at else 0.0)

    daemon = LineDaemon(cfg, str(tmp_path / "line.yaml"), clock=LineClock(wall=wall, scale=1.0),
                        status_listen="127.0.0.1:0")
    run = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 30)
        t_start = daemon.clock.now()
        await asyncio.sleep(4.0)
        t_end = daemon.clock.now()
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(run, 10) == 0

    records = read_buffer(Path(cfg.buffer.path))
    steps = [r for r in records if kind(r) == "event" and r.kind == "clock_step"]
    assert len(steps) == 1 and steps[0].detail["offset_s"] == pytest.approx(3600.0, abs=1.0), steps
    assert [r for r in records if kind(r) == "stop"] == []
    stamps = [parse_ts(r.ts) for r in records if kind(r) == "kpi"]
    # records stay on the line clock: nothing is stamped an hour ahead
    assert max(stamps) <= t_end + 5 and min(stamps) >= t_start - 5
    day = [r for r in records if kind(r) == "kpi" and r.interval == "day" and r.final]
    dbg = [(kind(r), getattr(r, "interval", None), getattr(r, "final", None), r.rev, r.ts, getattr(r, "kind", None)) for r in records if kind(r) in ("kpi", "event")]
    assert day, dbg
    assert sum(k.stop_time_s for k in day) == 0 and sum(k.run_time_s for k in day) > 3, [(k.all_time_s, k.unknown_s, k.planned_production_time_s, k.run_time_s, k.total_count, k.ts, k.end, k.rev) for k in day]
    assert not any(math.isnan(k.run_time_s) for k in day)
