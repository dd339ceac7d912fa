"""Historized samples reach the buffer whole, so a replay of them sees what the live line saw.

A PLC that catches up after a stall (or a burst of queued OPC UA notifications mapped onto
the line clock) can deliver several changes of one tag inside one millisecond. Each must be
its own record: the buffer keeps one row per id, so two samples sharing an id would lose one,
and `lineside replay` of the buffer would then count other parts than the daemon did.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml

from buffer import LineBuffer
from config import load_line_config
from drivers.base import Sample
from edge.daemon import LineDaemon
from edge.replay import replay
from sync.records import KpiRecord
from tests.edge.line_run import kind, read_buffer

T0 = 1_760_000_000.0


def _cfg(tmp: Path) -> Any:
    cfg = {
        "line": {"site": "s", "area": "a", "id": "burst1", "machine": "m"},
        "plcs": {"p": {"driver": "sim"}},
        "signals": {
            "total_count": {"plc": "p", "address": "total_count", "type": "uint16", "historize": True},
            "running": {"plc": "p", "address": "running", "type": "bool", "historize": True},
        },
        "production": {"ideal_cycle_time_s": 1.0},
        "kpi": {"intervals": ["hour", "day"]},
        "buffer": {"path": str(tmp / "buf" / "burst1.db")},
        "status": {"listen": "127.0.0.1:0"},
    }
    (tmp / "line.yaml").write_text(yaml.safe_dump(cfg))
    return load_line_config(tmp / "line.yaml")


def _day_total(records: list[Any]) -> int:
    return sum(r.total_count for r in records if isinstance(r, KpiRecord) and r.interval == "day" and r.final)


async def test_a_burst_of_one_tag_within_a_millisecond_is_buffered_whole_and_replays_to_the_live_count(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path)
    daemon = LineDaemon(cfg, str(tmp_path / "line.yaml"))
    daemon.on_samples([Sample("total_count", 100, "good", None, T0), Sample("running", True, "good", None, T0)])
    # One part a second, then the PLC catches up 7 parts within 0.7 ms, then one more.
    for i in range(1, 11):
        daemon.on_samples([Sample("total_count", 100 + i, "good", None, T0 + i)])
    burst = T0 + 15.0002
    daemon.on_samples([Sample("total_count", 110 + k, "good", None, burst + k * 1e-4) for k in range(1, 8)])
    daemon.on_samples([Sample("total_count", 118, "good", None, T0 + 16)])
    live = list(daemon.processor.finish(T0 + 17))
    assert not [r for r in live if kind(r) == "event" and r.kind == "implausible_count"]
    assert _day_total(live) == 18

    buf = await LineBuffer.open(cfg.buffer, background=False)
    try:
        await buf.append(daemon._pending)
        await buf.flush()
    finally:
        await buf.close()
    stored = [r for r in read_buffer(Path(cfg.buffer.path)) if kind(r) == "sample" and r.tag == "total_count"]
    assert [r.value for r in stored] == list(range(100, 119))
    assert len({r.id for r in stored}) == len(stored)

    csv = io.StringIO(
        "timestamp,signal,value\n" + "".join(f"{r.ts},{r.tag},{r.value}\n" for r in stored) + f"{T0},running,true\n"
    )
    bad: list[Any] = []
    replayed = replay(cfg, csv, bad)
    assert bad == []
    assert not [r for r in replayed if kind(r) == "event" and r.kind == "implausible_count"]
    assert _day_total(replayed) == _day_total(live)
