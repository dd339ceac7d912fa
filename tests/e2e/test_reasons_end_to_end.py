"""Reasons set after the fact reach the other side: simulator → `lineside run` → buffer →
`lineside sync` → `lineside store`, each a real process on 127.0.0.1, and back.

(a) An operator picks "Changeover" (planned) for a stop on the status page in headless
Chromium: the store gets the stop's new revision (same id, ``reason_source: "operator"``)
and the re-sent KPI records counting it as planned.
(b) A maintenance planner PATCHes another stop at the store: the agent pulls it, the daemon
applies it (a new revision in the buffer, ``reason_source: "central"``) and the store ends
with one row per stop, the stop's rev higher, and the KPIs counting both stops as planned.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from drivers.sim import Simulator, line_config_snippet
from drivers.simulator.scenario import Scenario
from sync.records import decode_msgpack
from sync.store import new_token, write_token_file
from tests.e2e.test_line_end_to_end import _lineside, _stop
from tests.status.cdp import Chromium

SPEED = 8.0
LINE = "sim1"
STOP_S = 40.0  # simulated seconds; micro_stop_max_s is 20 so these are real stops


async def _sim_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds / SPEED)


async def _until(what: str, probe: Callable[[], Awaitable[Any]], within_s: float = 30.0) -> Any:
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _buffer_stop(db: Path, stop_id: str) -> Any:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT body FROM records WHERE id = ?", (stop_id,)).fetchone()
    finally:
        con.close()
    return None if row is None else decode_msgpack(bytes(row[0]))


async def _if(value: Awaitable[dict[str, Any]], ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    got = await value
    return got if ok(got) else {}


def _status_url(log: Path) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if "status_page_ready" in line:
            return str(json.loads(line)["url"])
    return None


@pytest.mark.slow
@pytest.mark.browser
async def test_reason_from_the_status_page_and_from_the_store_reach_the_other_side_once(tmp_path: Path) -> None:
    edge_token, planner_token = new_token(), new_token()
    (tmp_path / "upstream-token").write_text(edge_token)
    write_token_file(tmp_path / "tokens.yaml", [("edge", edge_token, [LINE], ["write"]),
                                                ("planner", planner_token, ["*"], ["read"])])
    store = _lineside("store", "--db", f"sqlite:///{tmp_path / 'store.db'}", "--tokens", str(tmp_path / "tokens.yaml"),
                      "--listen", "127.0.0.1:0", stdout=subprocess.PIPE, stderr=open(tmp_path / "store.log", "wb"))
    procs = [store]
    sim = Simulator(Scenario(name="e2e-reasons", ideal_cycle_time_s=1.0), opcua_port=0, modbus_port=None, speed=SPEED)
    browser: Chromium | None = None
    try:
        assert store.stdout is not None
        url = store.stdout.readline().decode().split()[-1]
        await sim.start()
        await sim.stop_line()
        cfg = yaml.safe_load(line_config_snippet(sim))
        cfg["plcs"]["sim"]["interval_ms"] = 100
        cfg["plcs"]["sim"]["timestamps"] = "source"
        cfg["production"]["micro_stop_max_s"] = 20
        cfg["production"]["reasons"][90] = {"text": "Changeover", "category": "changeover", "planned": True}
        cfg["kpi"] = {"intervals": ["hour", "day"], "provisional_every_s": 60}
        cfg["buffer"] = {"path": str(tmp_path / "buf" / f"{LINE}.db")}
        cfg["status"] = {"listen": "127.0.0.1:0"}
        (tmp_path / "line.yaml").write_text(yaml.safe_dump(cfg))
        (tmp_path / "sync.yaml").write_text(yaml.safe_dump({
            "buffers": str(tmp_path / "buf" / "*.db"),
            "upstream": {"url": url, "token_file": str(tmp_path / "upstream-token"), "allow_insecure_http": True},
            "batch": {"linger_ms": 100},
            "status": {"listen": "127.0.0.1:0"},
        }))
        log = tmp_path / "daemon.log"
        daemon = _lineside("run", str(tmp_path / "line.yaml"), env={"LINESIDE_TIME_SCALE": str(SPEED)},
                           stderr=open(log, "wb"))
        procs.append(daemon)
        procs.append(_lineside("sync", str(tmp_path / "sync.yaml"), stderr=open(tmp_path / "sync.log", "wb")))

        async def connected() -> bool:
            assert daemon.poll() is None, log.read_text()[-3000:]
            return b"plc_connected" in log.read_bytes() and _status_url(log) is not None

        await _until("the daemon reading the PLC", connected, 60)
        page = _status_url(log)
        # ---- two stops of 40 simulated seconds, without a reason from the PLC
        await sim.start_line()
        await _sim_sleep(20)
        for _ in range(2):
            await sim.stop_line()
            await _sim_sleep(STOP_S)
            await sim.start_line()
            await _sim_sleep(20)

        planner = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {planner_token}"}, timeout=10)

        async def two_stops() -> list[dict[str, Any]]:
            stops = (await planner.get("/v1/stops", params={"line": LINE})).json()["stops"]
            found = [s for s in stops if s["end"] and s["category"] == "unplanned_stop"
                     and abs(s["duration_s"] - STOP_S) <= 2 and s["reason_code"] is None]
            return found if len(found) == 2 else []

        s1, s2 = await _until("both stops in the store", two_stops)

        async def kpi_of(stop: dict[str, Any], interval: str = "hour") -> dict[str, Any]:
            """The KPI record of the interval the stop starts in (the 8x line clock may cross an hour)."""
            kpis = (await planner.get("/v1/kpis", params={"line": LINE, "interval": interval})).json()["kpis"]
            return next((k for k in kpis if k["start"] <= stop["start"] < k["end"]), {})

        k1_before = await _until("the KPI of the first stop", lambda: kpi_of(s1))
        k2_before = await _until("the KPI of the second stop", lambda: kpi_of(s2))
        day_before = await _until("the day KPI", lambda: kpi_of(s1, "day"))
        assert day_before["planned_stop_count"] == 0

        # ---- (a) the operator, on the status page in Chromium
        browser = Chromium(tmp_path / "profile", width=1280, height=800, log=tmp_path / "chromium.log")
        await asyncio.to_thread(browser.navigate, f"{page}/")
        sel = f'button.set-reason[data-stop-id="{s1["id"]}"]'
        await asyncio.to_thread(browser.wait_for, f"document.querySelector('{sel}') !== null", 20.0)
        await asyncio.to_thread(browser.evaluate, f"document.querySelector('{sel}').click()")
        await asyncio.to_thread(browser.wait_for, "!document.getElementById('picker').hidden", 5.0)
        await asyncio.to_thread(browser.evaluate, "document.querySelector('#picker-list button[data-code=\"90\"]').click()")
        toast = await asyncio.to_thread(browser.wait_for, "!document.getElementById('toast').hidden && "
                                        "document.getElementById('toast').textContent", 10.0)
        assert toast == "Reason saved: Changeover"

        async def stop_in_store(stop_id: str, source: str) -> dict[str, Any]:
            stops = (await planner.get("/v1/stops", params={"line": LINE})).json()["stops"]
            s = next(s for s in stops if s["id"] == stop_id)
            return s if s["reason_source"] == source else {}

        op = await _until("the operator's reason in the store", lambda: stop_in_store(s1["id"], "operator"))
        assert (op["reason_code"], op["reason_text"], op["category"]) == (90, "Changeover", "planned_stop")
        assert op["rev"] > s1["rev"]

        async def planned_more(stop: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
            k = await kpi_of(stop)
            return k if k.get("planned_stop_count") == before["planned_stop_count"] + 1 else {}

        k1 = await _until("the re-sent KPI of the first stop's hour", lambda: planned_more(s1, k1_before))
        assert k1["id"] == k1_before["id"] and k1["rev"] > k1_before["rev"]
        assert k1["unplanned_stop_count"] == k1_before["unplanned_stop_count"] - 1

        # ---- (b) the planner, at the store
        r = await planner.patch(f"/v1/stops/{s2['id']}", json={"line": LINE, "reason_code": 90,
                                                                "reason_text": "Changeover (planned centrally)"})
        assert r.status_code == 200, r.text
        patched_rev = r.json()["rev"]
        buf = tmp_path / "buf" / f"{LINE}.db"

        async def central_at_edge() -> Any:
            rec = _buffer_stop(buf, s2["id"])
            return rec if rec is not None and rec.reason_source == "central" else None

        edge_rev = await _until("the central reason applied at the edge", central_at_edge, 20)
        assert (edge_rev.reason_code, edge_rev.category) == (90, "planned_stop")
        assert edge_rev.reason_text == "Changeover (planned centrally)"
        assert edge_rev.rev > s2["rev"]
        if k2_before["id"] == k1_before["id"]:
            k2_before = k1  # both stops in one hour: the first reason already changed it
        k2 = await _until("the re-sent KPI of the second stop's hour", lambda: planned_more(s2, k2_before))
        assert k2["unplanned_stop_count"] == k2_before["unplanned_stop_count"] - 1
        day = await _until("the day KPI with both stops planned",
                           lambda: _if(kpi_of(s1, "day"), lambda k: k.get("planned_stop_count") == 2))
        assert day["rev"] > day_before["rev"]
        assert day["unplanned_stop_count"] == day_before["unplanned_stop_count"] - 2

        async def store_took_edge_revision() -> dict[str, Any]:
            s = await stop_in_store(s2["id"], "central")
            return s if s and s["rev"] > patched_rev else {}

        final2 = await _until("the edge's central revision in the store", store_took_edge_revision)
        assert (final2["reason_code"], final2["category"]) == (90, "planned_stop")
        stops = (await planner.get("/v1/stops", params={"line": LINE})).json()["stops"]
        assert len({s["start"] for s in stops}) == len(stops), "a stop reached the store twice"
        assert [s["reason_source"] for s in stops if s["id"] in (s1["id"], s2["id"])] == ["operator", "central"]
        await planner.aclose()
        assert daemon.poll() is None, log.read_text()[-3000:]
    finally:
        if browser is not None:
            browser.close()
        await sim.close()
        for p in reversed(procs):
            if p.poll() is None:
                _stop(p)
