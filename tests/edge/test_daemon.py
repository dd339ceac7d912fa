"""`lineside run LINE.yaml` as a real process against the simulator's real Modbus server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import socket
import time
from pathlib import Path

import httpx
import yaml

from config.models import Signal
from drivers.modbus import encode_registers
from drivers.sim import Simulator
from sync.records import parse_ts
from tests.edge.line_run import LineRun, kind


async def test_sigterm_exits_within_5_s_with_the_open_stop_closed_and_final_kpis_in_the_buffer(
    line: LineRun, sim: Simulator
) -> None:
    line.start()
    await line.wait_log("plc_connected")
    await line.wait_record("kpi", lambda k: k.total_count >= 2)
    await sim.stop_line()
    open_stop = await line.wait_record("stop", lambda s: s.end is None)
    rc, took = line.terminate()
    assert rc == 0, line.failure()
    assert took <= 5.0, f"SIGTERM to exit took {took:.1f} s"

    records = line.records()
    stops = [r for r in records if kind(r) == "stop" and r.id == open_stop.id]
    assert len(stops) == 1 and stops[0].end is not None, stops
    assert stops[0].rev > open_stop.rev
    finals = [r for r in records if kind(r) == "kpi" and r.final]
    assert {k.interval for k in finals} == {"hour", "day"}, finals
    assert sum(k.total_count for k in finals if k.interval == "day") == sum(
        k.total_count for k in finals if k.interval == "hour"
    ) > 0
    events = [r.kind for r in records if kind(r) == "event"]
    assert events[-1] == "daemon_stopped", events


async def test_sighup_with_a_broken_config_keeps_the_old_config_running_and_records_the_rejection(
    line: LineRun, sim: Simulator
) -> None:
    line.start()
    await line.wait_log("plc_connected")
    before = await line.wait_record("kpi", lambda k: k.interval == "hour" and k.total_count >= 2)
    good_config = line.config_path.read_text()
    line.config_path.write_text(good_config.replace("ideal_cycle_time_s: 0.5", "ideal_cycle_time_s: -1"))
    assert line.proc is not None
    line.proc.send_signal(signal.SIGHUP)

    rejected = await line.wait_log("config_reload_rejected")
    assert "ideal_cycle_time_s" in rejected["errors"], rejected
    event = await line.wait_record("event", lambda e: e.kind == "config_rejected")
    assert event.detail["file"] == str(line.config_path)
    assert "ideal_cycle_time_s" in event.detail["errors"]
    # still the same processor: the hour's figures keep growing from where they were
    later = await line.wait_record(
        "kpi", lambda k: k.id == before.id and k.total_count >= before.total_count + 4, timeout=20
    )
    assert later.rev > before.rev
    assert line.proc.poll() is None
    assert not [e for e in line.log_events() if e.get("event") == "config_reloaded"]

    # the file is fixed: the next SIGHUP finds it unchanged and keeps running as it was
    line.config_path.write_text(good_config)
    line.proc.send_signal(signal.SIGHUP)
    await line.wait_log("config_unchanged")
    assert line.terminate()[0] == 0


async def test_sighup_with_a_changed_reason_text_applies_it_to_the_next_stop_and_keeps_the_counts(
    line: LineRun, sim: Simulator
) -> None:
    line.start()
    await line.wait_log("plc_connected")
    made_before = sim.truth()["total"]  # parts before lineside's first sample are not lineside's
    await sim.breakdown(42, 1.0)
    first = await line.wait_record("stop", lambda s: s.reason_code == 42 and s.end is not None)
    assert first.reason_text == "Sealing jaw jam"
    await line.wait_record("kpi", lambda k: k.interval == "hour" and k.total_count >= 3)

    cfg = yaml.safe_load(line.config_path.read_text())
    cfg["production"]["reasons"][42]["text"] = "Sealing jaw jammed (upper)"
    line.write_config(cfg)
    assert line.proc is not None
    line.proc.send_signal(signal.SIGHUP)
    await line.wait_log("config_reloaded")
    await line.wait_log("plc_connected", after=1)

    await sim.breakdown(42, 1.0)
    second = await line.wait_record(
        "stop", lambda s: s.reason_code == 42 and s.end is not None and s.id != first.id, timeout=20
    )
    assert second.reason_text == "Sealing jaw jammed (upper)"
    assert line.of("stop", id=first.id)[0].reason_text == "Sealing jaw jam"  # history is not rewritten
    assert any(e.kind == "config_loaded" and e.detail.get("reload") for e in line.of("event"))
    await sim.stop_line()
    await line.wait_record("stop", lambda s: s.reason_code is None and s.end is None)
    made = sim.truth()["total"] - made_before
    assert line.terminate()[0] == 0

    # every part the line made, before and after the reload, is in the day's and the hour's KPIs
    finals = [k for k in line.of("kpi") if k.final]
    for interval in ("hour", "day"):
        counted = sum(k.total_count for k in finals if k.interval == interval)
        assert abs(counted - made) <= 1, (interval, counted, made, finals)
    assert sum(k.unplanned_stop_count + k.micro_stop_count for k in finals if k.interval == "day") == 3

def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n") if line)


async def test_sd_notify_ready_only_once_the_buffer_exists_then_repeated_watchdog_pings(
    line: LineRun, sim: Simulator, tmp_path: Path
) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.setblocking(False)
        line.env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}  # a ping every 0.2 s
        proc = line.start()
        loop = asyncio.get_running_loop()
        got: list[tuple[float, dict[str, str], bool]] = []
        deadline = time.monotonic() + 30
        while sum(1 for _, f, _ in got if f.get("WATCHDOG") == "1") < 5:
            assert time.monotonic() < deadline, (got, line.failure())
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0)
            except TimeoutError:
                continue
            got.append((time.monotonic(), _fields(data), line.buffer_path.exists()))
        ready = [(t, f, buffered) for t, f, buffered in got if f.get("READY") == "1"]
        assert len(ready) == 1, got
        t_ready, fields, buffer_existed = ready[0]
        assert buffer_existed, "READY=1 came before the buffer file existed"
        assert fields["MAINPID"] == str(proc.pid)
        assert "sim1" in fields.get("STATUS", "")
        pings = [t for t, f, _ in got if f.get("WATCHDOG") == "1"]
        gaps = [b - a for a, b in itertools.pairwise(t for t in pings if t >= t_ready)]
        assert max(gaps) < 0.4 * 2, gaps  # well inside WatchdogSec on an idle-ish machine

        rc, _ = line.terminate()
        assert rc == 0
        rest = []
        with contextlib.suppress(BlockingIOError):
            while True:
                rest.append(_fields(sock.recv(4096)))
        assert {"STOPPING": "1"} in rest, rest


async def test_a_buffer_from_before_v3_is_migrated_at_start_and_systemd_is_told_to_wait_for_it(
    line: LineRun, tmp_path: Path
) -> None:
    from tests.buffer.records import v2_buffer_file

    line.buffer_path.parent.mkdir(parents=True)
    old = v2_buffer_file(line.buffer_path, 5000, line=line.cfg["line"]["id"])
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        line.env = {"NOTIFY_SOCKET": str(sock_path)}
        line.start()
        got: list[dict[str, str]] = []
        while not any(f.get("READY") == "1" for f in got):
            try:
                got.append(_fields(await asyncio.to_thread(sock.recv, 4096)))
            except TimeoutError:
                raise AssertionError(f"no READY=1: {got}\n{line.failure()}") from None
    extend = [f for f in got if "EXTEND_TIMEOUT_USEC" in f]
    assert extend and got.index(extend[0]) < len(got) - 1, got  # asked for time before READY
    assert int(extend[0]["EXTEND_TIMEOUT_USEC"]) >= 60_000_000  # beyond the unit's TimeoutStartSec
    assert "migrating the buffer" in extend[0]["STATUS"]
    migrating = await line.wait_log("buffer_migrating")
    assert migrating["copy_mib"] > 0
    await line.wait_record("event", lambda e: e.kind == "config_loaded")
    assert line.terminate()[0] == 0
    import sqlite3

    with contextlib.closing(sqlite3.connect(line.buffer_path)) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 3
        kept = con.execute("SELECT seq, id FROM records WHERE seq <= ? ORDER BY seq", (len(old),)).fetchall()
    # every record not yet acknowledged (the agent's cursor was at 120) is still there to ship;
    # the acknowledged ones, a year old, went with the retention pruning
    assert kept == [(r[0], r[1]) for r in old[120:]]


async def test_plc_outage_is_unknown_time_with_plc_disconnected_not_a_stop_and_data_resumes(
    line: LineRun, sim: Simulator
) -> None:
    line.start()
    await line.wait_log("plc_connected")
    before = await line.wait_record("kpi", lambda k: k.interval == "day" and k.total_count >= 2)
    assert sim.modbus is not None
    await sim.modbus.stop()  # the PLC drops off the network; the line itself keeps producing
    down = await line.wait_record("event", lambda e: e.kind == "plc_disconnected", timeout=10)
    assert down.detail["plc"] == "sim"
    await line.wait_log("plc_disconnected")
    await asyncio.sleep(2.0)
    await sim.modbus.start()
    up = await line.wait_record("event", lambda e: e.kind == "plc_connected", timeout=40)
    outage = parse_ts(up.ts) - parse_ts(down.ts)
    assert outage >= 2.0
    after = await line.wait_record(
        "kpi", lambda k: k.interval == "day" and parse_ts(k.ts) > parse_ts(up.ts) + 1 and k.total_count > before.total_count
    )
    assert after.total_count > before.total_count
    rc, _ = line.terminate()
    assert rc == 0, line.failure()

    records = line.records()
    assert [r for r in records if kind(r) == "stop"] == [], "a PLC outage on a running line made a stop"
    unknown = [r for r in records if kind(r) == "state" and r.state == "unknown"]
    spans = [(parse_ts(r.start), parse_ts(r.end)) for r in unknown]
    assert any(abs(s - parse_ts(down.ts)) < 0.2 and abs(e - parse_ts(up.ts)) < 0.2 for s, e in spans), (
        spans, down.ts, up.ts,
    )
    days = [r for r in records if kind(r) == "kpi" and r.interval == "day" and r.final]
    assert days, records
    first_data = min(parse_ts(r.start) for r in records if kind(r) == "state")
    end_ts = max(parse_ts(r.ts) for r in days)
    # a day's unknown time: before the daemon's first sample, the outage, after its last
    outside = (first_data - parse_ts(days[0].start)) + (parse_ts(days[-1].end) - end_ts)
    assert abs(sum(d.unknown_s for d in days) - outside - outage) < 0.5, (days, outage)
    assert sum(d.stop_time_s for d in days) < 0.5
    # the parts made while the PLC was away are counted once, at the reconnect
    made = sim.truth()["total"]
    assert abs(sum(d.total_count for d in days) - made) <= 3, (days, made)


async def test_every_reload_and_the_final_sigterm_complete_while_the_plc_is_polled_every_10_ms(
    line: LineRun, sim: Simulator
) -> None:
    # Cancelling a driver mid-request must stop it even when the PLC's answer lands in the same
    # loop iteration (Python 3.11's asyncio.wait_for can swallow that cancellation, CPython
    # gh-86296; a driver that keeps polling would hang the reload or the shutdown forever).
    line.cfg["plcs"]["sim"]["interval_ms"] = 10
    line.start()
    await line.wait_log("plc_connected")
    assert line.proc is not None
    for i in range(1, 13):
        cfg = yaml.safe_load(line.config_path.read_text())
        cfg["production"]["reasons"][42]["text"] = f"Sealing jaw jam #{i}"
        line.write_config(cfg)
        line.proc.send_signal(signal.SIGHUP)
        await line.wait_log("config_reloaded", timeout=10, after=i - 1)
        await line.wait_log("plc_connected", timeout=10, after=i)
    rc, took = line.terminate()
    assert rc == 0 and took <= 5.0, (rc, took)


async def test_status_api_and_metrics_of_a_running_daemon_show_the_line_and_records_carry_its_context(
    line: LineRun, sim: Simulator
) -> None:
    # two shifts covering the day, so whichever runs now names the records
    line.cfg["calendar"] = {"shifts": [{"name": "early", "start": "00:00", "end": "12:00"},
                                       {"name": "late", "start": "12:00", "end": "24:00"}]}
    line.cfg["signals"]["operator"] = {"plc": "sim", "address": "holding:40031", "type": "string", "length": 12}
    assert sim.modbus is not None
    await sim.modbus.set("holding", 30, encode_registers("m.weber", Signal(plc="sim", address="holding:40031",
                                                                         type="string", length=12)))
    shift = "early" if time.gmtime().tm_hour < 12 else "late"
    line.start()
    url = await line.status_url()
    await line.wait_record("kpi", lambda k: k.interval == "hour" and k.total_count >= 2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(50):  # the page's snapshot is published every second
            status = (await client.get("/api/status")).json()
            if status["shift"]["total_count"] >= 2:
                break
            await asyncio.sleep(0.1)
        assert status["line"]["id"] == "sim1" and status["state"]["state"] == "running", status
        assert status["plcs"]["sim"]["connected"] is True and status["plcs"]["sim"]["driver"] == "modbus"
        assert status["shift"]["name"] == shift and status["shift"]["total_count"] >= 2

        await sim.breakdown(42, 60.0)
        stop = await line.wait_record("stop", lambda s: s.reason_code == 42)
        for _ in range(50):
            status = (await client.get("/api/status")).json()
            if status["state"]["stop_id"] == stop.id:
                break
            await asyncio.sleep(0.1)
        assert status["state"]["reason_text"] == "Sealing jaw jam", status["state"]
        assert status["state"]["state"] in ("micro_stop", "unplanned_stop")
        stops = (await client.get("/api/stops")).json()
        stops = stops["stops"] if isinstance(stops, dict) else stops
        assert stops[0]["id"] == stop.id and stops[0]["end"] is None
        kpis = (await client.get("/api/kpis")).json()
        kpis = kpis["kpis"] if isinstance(kpis, dict) else kpis
        assert {k["interval"] for k in kpis} == {"hour", "day"} and all(k["line"] == "sim1" for k in kpis)
        metrics = (await client.get("/metrics")).text
        assert 'line="sim1"' in metrics
        page = await client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    # context: shift from the calendar; order, product and operator from their signals
    assert (stop.shift, stop.order, stop.product, stop.operator) == (shift, "ORD-0001", "A-100", "m.weber")
    hour = line.of("kpi", interval="hour")[-1]
    assert hour.shift == shift and hour.products == ["A-100"]
    assert line.terminate()[0] == 0
