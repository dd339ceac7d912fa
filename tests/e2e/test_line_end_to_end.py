"""The whole line, as a plant runs it: simulator → `lineside run` → buffer → `lineside sync` →
`lineside store`, each a real process talking over 127.0.0.1.

A scripted scenario (known counts with a uint16 rollover, 5 micro-stops, a 3-minute breakdown
with fault code 42, rejects, a PLC restart) runs at 8x speed: the daemon's clock runs at the
same speed (LINESIDE_TIME_SCALE), so durations in the records are simulated seconds. The store
must then hold the expected stops, and KPI records consistent with `lineside replay` run on
the samples the daemon buffered.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from drivers.sim import Simulator, line_config_snippet
from drivers.simulator.scenario import Scenario
from sync.records import decode_msgpack, parse_ts
from sync.store import new_token, write_token_file

SPEED = 8.0
INTERVAL_MS = 100
TOLERANCE_S = INTERVAL_MS / 1000 * SPEED  # one poll interval, in the line's (simulated) time
LINE = "sim1"


def _lineside(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--log-format", "json", *args], env={**os.environ, **(env or {})}, **kw
    )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


async def _sim_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds / SPEED)


def _buffer_records(db: Path) -> list[Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT body FROM records ORDER BY seq").fetchall()
    finally:
        con.close()
    return [decode_msgpack(bytes(r[0])) for r in rows]


def _kind(r: Any) -> str:
    tag: str = type(r).__struct_config__.tag
    return tag


def _write_replay_csv(records: list[Any], path: Path) -> float:
    """The samples the daemon buffered (every signal is historized), plus its PLC connection
    events, as a replay CSV."""
    rows: list[tuple[float, str, Any]] = []
    for r in records:
        if _kind(r) == "sample" and r.quality == "good" and r.value is not None:
            value = r.value
            if isinstance(value, bool):
                value = "true" if value else "false"
            rows.append((parse_ts(r.ts), r.tag, value))
        elif _kind(r) == "event" and r.kind in ("plc_connected", "plc_disconnected"):
            rows.append((parse_ts(r.ts), "connected.sim", 1 if r.kind == "plc_connected" else 0))
    # A connection change goes before samples stamped at the same instant (the daemon marks a
    # PLC connected at its first data's time).
    rows.sort(key=lambda x: (x[0], x[1] != "connected.sim"))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "signal", "value"])
        for ts, sig, value in rows:
            w.writerow([f"{ts:.3f}", sig, value])
    return rows[-1][0]


@pytest.mark.slow
async def test_scripted_scenario_reaches_the_store_with_the_expected_stops_and_kpis(tmp_path: Path) -> None:
    token = new_token()
    token_file = tmp_path / "upstream-token"
    token_file.write_text(token)
    write_token_file(tmp_path / "tokens.yaml", [("edge", token, [LINE], ["write", "read"])])
    store = _lineside(
        "store", "--db", f"sqlite:///{tmp_path / 'store.db'}", "--tokens", str(tmp_path / "tokens.yaml"),
        "--listen", "127.0.0.1:0", stdout=subprocess.PIPE, stderr=open(tmp_path / "store.log", "wb"),
    )
    procs = [store]
    sim = Simulator(
        Scenario(name="e2e", ideal_cycle_time_s=1.0, reject_every=10, counter_start=65400),
        opcua_port=0, modbus_port=None, speed=SPEED,
    )
    try:
        assert store.stdout is not None
        url = store.stdout.readline().decode().split()[-1]
        assert url.startswith("http://127.0.0.1:")

        await sim.start()
        await sim.stop_line()  # parts made before lineside connects are not lineside's to count
        cfg = yaml.safe_load(line_config_snippet(sim))
        cfg["plcs"]["sim"]["interval_ms"] = INTERVAL_MS
        # Notifications arrive once per publishing interval; the PLC's source timestamps give
        # each change its exact time (mapped onto the line clock by the daemon).
        cfg["plcs"]["sim"]["timestamps"] = "source"
        # The simulator starts every counter at 65400; its reject counter would still sit in the
        # top 10 % of uint16 when the PLC restarts, which KPI_DEFINITIONS §2 reads as a rollover.
        # Many lines count total + good; rejects are then total - good.
        del cfg["signals"]["reject_count"]
        for sig in cfg["signals"].values():
            sig["historize"] = True  # so the test can replay exactly what the daemon saw
        cfg["production"]["reasons"][42]["category"] = "equipment_failure"
        cfg["kpi"] = {"intervals": ["hour", "day"], "provisional_every_s": 60}
        # Follow-up rules the scenario triggers once each (issue 7): the breakdown is a long
        # equipment failure, the 5 micro-stops are a repeated pattern, the PLC restart resets
        # the counters.
        cfg["follow_up"] = {
            "maintenance": [
                {"rule": "long_stop", "min_duration_s": 120, "categories": ["equipment_failure"]},
                {"rule": "repeated_micro_stops", "count": 5, "within_s": 600},
                {"rule": "counter_suspect"},
            ]
        }
        cfg["buffer"] = {"path": str(tmp_path / "buf" / f"{LINE}.db")}
        cfg["status"] = {"listen": "127.0.0.1:0"}
        (tmp_path / "line.yaml").write_text(yaml.safe_dump(cfg))
        (tmp_path / "sync.yaml").write_text(
            yaml.safe_dump(
                {
                    "buffers": str(tmp_path / "buf" / "*.db"),
                    "upstream": {"url": url, "token_file": str(token_file), "allow_insecure_http": True},
                    "batch": {"linger_ms": 100},
                    "status": {"listen": "127.0.0.1:0"},
                }
            )
        )
        daemon = _lineside(
            "run", str(tmp_path / "line.yaml"), env={"LINESIDE_TIME_SCALE": str(SPEED)},
            stderr=open(tmp_path / "daemon.log", "wb"),
        )
        procs.append(daemon)
        agent = _lineside("sync", str(tmp_path / "sync.yaml"), stderr=open(tmp_path / "sync.log", "wb"))
        procs.append(agent)

        deadline = time.monotonic() + 60
        while b"plc_connected" not in (tmp_path / "daemon.log").read_bytes():
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        base = sim.truth()

        # ---- the scripted scenario, in simulated seconds
        await sim.start_line()
        await _sim_sleep(40)
        for _ in range(5):
            await sim.micro_stop(20)
            await _sim_sleep(45)
        await sim.breakdown(42, 180)
        await _sim_sleep(210)
        await sim.stop_line()  # the PLC is restarted while the line stands, as plants do
        await _sim_sleep(30)
        await sim.restart_plc(down_s=0.6)
        await _sim_sleep(15)
        await sim.start_line()
        await _sim_sleep(40)
        await sim.stop_line()
        await _sim_sleep(4)
        end = sim.truth()
        truth = {k: end[k] - base[k] for k in ("total", "good", "rejects")}

        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
        assert _stop(daemon) == 0, (tmp_path / "daemon.log").read_text()[-3000:]

        # ---- wait until the agent has shipped everything the daemon wrote
        buffered = _buffer_records(tmp_path / "buf" / f"{LINE}.db")
        kpis_at_edge = {r.id: r for r in buffered if _kind(r) == "kpi" and r.final}
        assert kpis_at_edge, "the daemon wrote no final KPI records at shutdown"
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            while True:
                stops = (await client.get("/v1/stops", params={"line": LINE, "limit": 1000})).json()["stops"]
                kpis = (await client.get("/v1/kpis", params={"line": LINE, "limit": 1000})).json()["kpis"]
                final = {k["id"]: k for k in kpis if k["final"]}
                requests = (
                    await client.get("/v1/maintenance-requests", params={"line": LINE, "status": "open"})
                ).json()["maintenance_requests"]
                if set(kpis_at_edge) <= set(final) and len(requests) >= 3:
                    break
                assert time.monotonic() < deadline, f"store has {len(final)} of {len(kpis_at_edge)} final KPIs"
                await asyncio.sleep(0.5)
    finally:
        await sim.close()
        for p in reversed(procs):
            if p.poll() is None:
                _stop(p)

    # ---- stops: 5 micro-stops of 20 s, the 3-minute breakdown with its reason
    closed = sorted((s for s in stops if s["end"] is not None), key=lambda s: s["start"])
    (tmp_path / "store-stops.json").write_text(json.dumps(stops, indent=1))  # for a person reading a failure
    breakdowns = [s for s in closed if s["reason_code"] == 42]
    assert len(breakdowns) == 1, breakdowns
    bd = breakdowns[0]
    # The first stop is the standstill before the scenario started (the line waited for lineside).
    micro = [s for s in closed if s["start"] < bd["start"]][1:]
    assert [s["category"] for s in micro] == ["micro_stop"] * 5, [(s["duration_s"], s["category"]) for s in closed]
    for s in micro:
        assert abs(s["duration_s"] - 20) <= TOLERANCE_S, s
    assert bd["category"] == "unplanned_stop"
    assert bd["reason_text"] == "Sealing jaw jam" and bd["reason_category"] == "equipment_failure"
    assert bd["reason_source"] == "plc"
    assert abs(bd["duration_s"] - 180) <= TOLERANCE_S, bd["duration_s"]
    assert len({s["id"] for s in stops}) == len(stops), "a stop reached the store twice"

    # ---- follow-up: each rule fired exactly once, with the stops as evidence
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for req in requests:
        by_rule.setdefault(req["rule"], []).append(req)
    assert {k: len(v) for k, v in by_rule.items()} == {"long_stop": 1, "repeated_micro_stops": 1, "counter_suspect": 1}
    assert by_rule["long_stop"][0]["stop_ids"] == [bd["id"]]
    # Its evidence: the scenario's 5 micro-stops (and the short standstill before the scenario
    # started, a micro-stop too, when it lies in the same window).
    evidence = set(by_rule["repeated_micro_stops"][0]["stop_ids"])
    assert {s["id"] for s in micro} <= evidence
    assert all(s["category"] == "micro_stop" for s in closed if s["id"] in evidence)
    assert by_rule["long_stop"][0]["equipment"].startswith("demo/demo/sim1")

    # ---- counts: every part the line made, across the uint16 rollover and the PLC restart
    day = [k for k in final.values() if k["interval"] == "day"]
    assert day, final
    assert sum(k["total_count"] for k in day) == truth["total"]
    assert sum(k["reject_count"] for k in day) == truth["rejects"]
    assert sum(k["good_count"] for k in day) == truth["good"]
    events = [r for r in buffered if _kind(r) == "event"]
    assert any(e.kind == "counter_reset" for e in events), [e.kind for e in events]
    assert any(e.kind == "plc_disconnected" for e in events)
    assert sum(k["unknown_s"] for k in day) > 0  # the PLC was away: unknown time, not a stop

    # ---- the KPIs in the store agree with `lineside replay` of the buffered samples
    last_sample = _write_replay_csv(buffered, tmp_path / "samples.csv")
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "replay", str(tmp_path / "line.yaml"), str(tmp_path / "samples.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    replayed = [json.loads(line) for line in out.stdout.splitlines()]
    replay_stops = {r["id"]: r for r in replayed if r["type"] == "stop"}
    # The replay ends at the last buffered sample; a stop the daemon closed at its shutdown
    # lies beyond it.
    beyond = [s for s in closed if parse_ts(s["end"]) > last_sample]
    assert len(beyond) <= 1  # at most the standstill at the very end
    for s in (s for s in closed if parse_ts(s["end"]) <= last_sample):
        r = replay_stops.get(s["id"])
        assert r is not None, f"replay has no stop {s['id']}"
        assert r["category"] == s["category"] and r["reason_code"] == s["reason_code"]
        assert abs(r["duration_s"] - s["duration_s"]) <= TOLERANCE_S
    replay_day = [r for r in replayed if r["type"] == "kpi" and r["interval"] == "day"]
    assert sum(r["total_count"] for r in replay_day) == truth["total"]
    assert sum(r["reject_count"] for r in replay_day) == truth["rejects"]
    def beyond_count(category: str) -> int:
        return sum(1 for s in beyond if s["category"] == category)

    assert sum(r["unplanned_stop_count"] for r in replay_day) == sum(
        k["unplanned_stop_count"] for k in day
    ) - beyond_count("unplanned_stop")
    assert sum(r["micro_stop_count"] for r in replay_day) == sum(k["micro_stop_count"] for k in day) - beyond_count(
        "micro_stop"
    )
    store_stop_time = sum(k["stop_time_s"] for k in day) - sum(
        s["duration_s"] for s in beyond if s["category"] in ("unplanned_stop", "planned_stop")
    )
    replay_stop_time = sum(r["stop_time_s"] for r in replay_day)
    assert abs(store_stop_time - replay_stop_time) <= 2 * TOLERANCE_S
