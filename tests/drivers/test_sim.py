"""The line simulator: the model, the in-process sim driver, the servers, `lineside simulate`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_line_config
from config.models import ModbusPlc, OpcUaPlc, Signal, SimPlc
from drivers.base import DriverError, TagError, create_driver
from drivers.sim import MODBUS_MAP, Simulator, line_config_snippet
from drivers.simulator.engine import SIGNALS, LineModel
from drivers.simulator.scenario import Event, Scenario, load_scenario
from tests.drivers.conftest import free_port, running

FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}


def test_counters_follow_the_ideal_cycle_time_and_every_nth_part_is_a_reject() -> None:
    m = LineModel(Scenario(ideal_cycle_time_s=2.0, reject_every=5))
    m.advance(100.0)
    assert m.total == 50 and m.rejects == 10
    v = m.values()
    assert (v["total_count"], v["reject_count"], v["good_count"]) == (50, 10, 40)


def test_counter_rollover_at_uint16_wraps_the_plc_counter_but_not_the_truth() -> None:
    m = LineModel(Scenario(ideal_cycle_time_s=1.0, counter_start=65530))
    m.advance(10.0)
    assert m.values()["total_count"] == 4  # 65530 + 10 - 65536
    assert m.truth()["total"] == 10


def test_breakdown_stops_parts_and_shows_its_fault_code_until_it_ends() -> None:
    m = LineModel(Scenario(ideal_cycle_time_s=1.0, events=[Event(at=10, do="breakdown", code=42, seconds=180)]))
    m.advance(100.0)
    assert m.values()["running"] is False and m.values()["fault_code"] == 42 and m.values()["state"] == 3
    assert m.total == 10
    m.advance(200.0)
    assert m.values()["running"] is True and m.values()["fault_code"] == 0
    assert m.truth()["stops"] == [{"start": 10.0, "end": 190.0, "kind": "breakdown", "code": 42, "duration_s": 180.0}]
    assert m.total == 10 + 10  # first part one cycle after the line restarts: 191..200


def test_plc_restart_resets_the_counters_to_zero_and_slow_cycles_make_fewer_parts() -> None:
    m = LineModel(Scenario(ideal_cycle_time_s=1.0, events=[
        Event(at=0, do="slow", seconds=20, factor=2.0), Event(at=30, do="restart_plc")]))
    m.advance(20.0)
    assert m.total == 10
    m.advance(35.0)
    assert m.values()["total_count"] == 5 and m.truth()["restarts"] == 1 and m.total == 25


def test_the_shipped_demo_shows_micro_stops_a_breakdown_and_rejects_within_a_minute() -> None:
    m = LineModel(load_scenario("demo"))
    m.advance(60.0)
    t = m.truth()
    kinds = [s["kind"] for s in t["stops"]]
    assert kinds.count("micro_stop") >= 2 and "breakdown" in kinds and t["rejects"] >= 2


def test_a_bad_scenario_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ideal_cycle_time_s: 1\nevents:\n  - {at: 5, do: explode}\n")
    with pytest.raises(DriverError, match=r"bad.yaml:3.*events\[0\]\.do"):
        Simulator(str(bad))


def test_sim_driver_rejects_an_unknown_signal_name() -> None:
    with pytest.raises(TagError, match="unknown simulator signal 'totl_count'"):
        create_driver("s", SimPlc(), {"total_count": Signal(plc="s", address="totl_count", type="uint16")})


async def test_sim_driver_yields_counts_in_process_with_simulated_source_timestamps() -> None:
    tags = {n: Signal(plc="s", address=n, type=t) for n, t in SIGNALS.items()}  # type: ignore[arg-type]
    driver = create_driver("s", SimPlc(scenario="demo", interval_ms=20, speed=50.0), tags)
    async with running(driver) as run:
        await run.wait_for(lambda: driver.model is not None and driver.model.total >= 40, 10, "40 parts")
        s = run.latest()
        assert {x.quality for x in s.values()} == {"good"}
        assert s["total_count"].value < 65536 and s["product"].value in ("A-100", "B-200")
        src, recv = s["total_count"].source_ts, s["total_count"].recv_ts
        assert src is not None and src > recv  # simulated time runs 50x ahead


async def test_simulator_serves_counts_stops_and_a_plc_restart_over_opcua_and_modbus() -> None:
    sc = Scenario(ideal_cycle_time_s=1.0, reject_every=4)
    async with Simulator(sc, opcua_port=free_port(), modbus_port=0, speed=20.0) as sim:
        assert sim.opcua is not None and sim.modbus is not None
        ua_tags = {n: Signal(plc="u", address=sim.opcua.node_id(n), type=t)  # type: ignore[arg-type]
                   for n, t in SIGNALS.items()}
        mb_tags = {n: Signal(plc="m", address=a, type=t, length=ln)  # type: ignore[arg-type]
                   for n, (a, t, ln) in MODBUS_MAP.items()}
        ua = create_driver("u", OpcUaPlc(endpoint=sim.opcua.endpoint, interval_ms=50), ua_tags, **FAST)
        mb = create_driver("m", ModbusPlc(host="127.0.0.1", port=sim.modbus.port, interval_ms=50), mb_tags, **FAST)
        async with running(ua) as ru, running(mb) as rm:
            await ru.wait_for(lambda: (ru.latest().get("total_count") or 0) and
                              ru.latest()["total_count"].value >= 8, 10, "8 parts over OPC UA")
            await sim.breakdown(42, 180)  # 3 simulated minutes = 9 real seconds at x20
            for r in (ru, rm):
                await r.wait_for(lambda r=r: r.latest().get("fault_code") and r.latest()["fault_code"].value == 42
                                 and r.latest()["running"].value is False, 5, "the fault code")
            assert rm.latest()["product"].value == "A-100"
            truth = sim.truth()
            assert truth["stops"][0]["kind"] == "breakdown" and truth["stops"][0]["code"] == 42
            await sim.restart_plc(down_s=0.3)
            for r in (ru, rm):
                await r.wait_for(lambda r=r: any(not c for c, _ in r.states), 10, "the PLC going away")
                await r.wait_for(lambda r=r: r.states[-1][0] and r.latest().get("total_count") and
                                 r.latest()["total_count"].quality == "good" and
                                 r.latest()["total_count"].value < 8, 15, "counters reset after the restart")
        assert sim.truth()["restarts"] == 1 and sim.truth()["rejects"] == sim.truth()["total"] // 4


def test_simulate_command_prints_node_ids_registers_and_a_valid_line_config(tmp_path: Path) -> None:
    ua, mb = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--log-format", "console", "simulate", "--opcua-port", str(ua),
         "--modbus-port", str(mb), "--speed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("buffer:"):
                break
        text = "".join(out)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert f"opc.tcp://127.0.0.1:{ua}" in text and "ns=2;s=Line.total_count" in text
    assert f"127.0.0.1:{mb}" in text and "holding:40001" in text
    snippet = text.split("# line config for this simulator:\n", 1)[1]
    cfg = load_line_config(tmp_path / "sim.yaml", text=snippet)
    assert cfg.signals.total_count is not None and cfg.signals.fault_code is not None


def test_line_config_snippet_for_modbus_only_is_a_valid_line_config(tmp_path: Path) -> None:
    sim = Simulator("demo", opcua_port=None, modbus_port=5999)
    cfg = load_line_config(tmp_path / "x.yaml", text=line_config_snippet(sim))
    assert isinstance(cfg.plcs["sim"], ModbusPlc) and cfg.plcs["sim"].port == 5999
