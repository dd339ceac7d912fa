"""`lineside replay` runs the follow-up rules as the daemon does: a scripted day in a CSV fires
each rule exactly once, and a condition that persists revises its record instead of repeating."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from sync.records import format_ts

LINE_YAML = """
line: {site: s, area: a, id: l1, machine: m}
timezone: UTC
plcs: {p: {driver: modbus, host: 127.0.0.1}}
signals:
  total_count: {plc: p, address: "holding:40001", type: uint32}
  reject_count: {plc: p, address: "holding:40003", type: uint32}
  running: {plc: p, address: "coil:1", type: bool}
  fault_code: {plc: p, address: "holding:40005", type: int16}
production:
  ideal_cycle_time_s: 1.0
  micro_stop_max_s: 120
  reasons:
    42: {text: "Sealing jaw jam", category: equipment_failure}
kpi: {intervals: [hour]}
follow_up:
  maintenance:
    - {rule: long_stop, min_duration_s: 300, categories: [equipment_failure]}
    - {rule: repeated_micro_stops, count: 3, within_s: 600}
    - {rule: counter_suspect}
  quality:
    - {rule: reject_rate, threshold: 0.2, window_s: 300, min_parts: 100}
buffer: {path: /tmp/unused.db}
"""
T0 = 1_767_258_000.0  # 2026-01-01T09:00:00Z


class Script:
    """A line at one part per second, written as replay rows."""

    def __init__(self) -> None:
        self.t = T0
        self.total = 1000
        self.rejects = 0
        self.rows: list[tuple[float, str, object]] = [
            (T0, "running", "true"), (T0, "fault_code", 0), (T0, "total_count", 1000), (T0, "reject_count", 0),
        ]

    def run(self, seconds: int, reject_every: int = 0) -> None:
        for _ in range(seconds):
            self.t += 1
            self.total += 1
            self.rows.append((self.t, "total_count", self.total))
            if reject_every and self.total % reject_every == 0:
                self.rejects += 1
                self.rows.append((self.t, "reject_count", self.rejects))

    def stop(self, seconds: int, code: int = 0) -> float:
        start = self.t + 0.5
        self.rows += [(start, "fault_code", code), (start, "running", "false")]
        self.t = start + seconds
        self.rows += [(self.t, "running", "true"), (self.t, "fault_code", 0)]
        return start

    def reset_counter(self) -> None:
        self.t += 1
        self.total = 3
        self.rows.append((self.t, "total_count", self.total))


def test_a_scripted_day_fires_each_rule_once_with_its_evidence(tmp_path: Path) -> None:
    s = Script()
    s.run(600, reject_every=25)  # 4 % rejects: no alert
    micro_starts = []
    for _ in range(4):  # the 3rd micro-stop fires the rule, the 4th only revises it
        micro_starts.append(s.stop(30))
        s.run(60, reject_every=25)
    s.run(900, reject_every=25)
    breakdown = s.stop(420, code=42)  # a long stop with an equipment-failure reason
    s.run(600, reject_every=25)
    s.reset_counter()  # a PLC or operator reset: the counter is suspect
    s.run(600, reject_every=25)
    s.run(400, reject_every=3)  # a third of the parts rejected: the reject rate rule
    s.run(600, reject_every=25)

    (tmp_path / "line.yaml").write_text(LINE_YAML)
    with (tmp_path / "samples.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "signal", "value"])
        for t, sig, v in s.rows:
            w.writerow([f"{t:.3f}", sig, v])
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "replay", str(tmp_path / "line.yaml"), str(tmp_path / "samples.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    requests = [r for r in records if r["type"] == "maintenance_request"]
    alerts = [r for r in records if r["type"] == "quality_alert"]

    by_rule = {r["rule"]: [x for x in requests if x["rule"] == r["rule"]] for r in requests}
    assert sorted(by_rule) == ["counter_suspect", "long_stop", "repeated_micro_stops"]
    assert all(len(v) == 1 for v in by_rule.values()), {k: len(v) for k, v in by_rule.items()}

    stops = {r["id"]: r for r in records if r["type"] == "stop"}
    long_stop = by_rule["long_stop"][0]
    bd = next(st for st in stops.values() if st["reason_code"] == 42)
    assert long_stop["stop_ids"] == [bd["id"]]
    assert abs(bd["duration_s"] - 420) < 1e-6 and bd["category"] == "unplanned_stop"
    assert long_stop["equipment"].startswith("s/a/l1/m")

    micro = by_rule["repeated_micro_stops"][0]
    micro_ids = {st["id"] for st in stops.values() if st["category"] == "micro_stop"}
    assert len(micro_ids) == 4
    assert set(micro["stop_ids"]) == micro_ids  # the 4th revised the open request (rev > 0)
    assert micro["rev"] >= 1

    assert len(alerts) == 1 and alerts[0]["rule"] == "reject_rate"
    alert = alerts[0]
    assert alert["threshold"] == 0.2
    assert alert["reject_rate"] is not None and 0.2 < alert["reject_rate"] <= 1 / 3 + 1e-9
    assert bd["start"] == format_ts(breakdown)
