"""The line simulator served over S7 (snap7 server) and EtherNet/IP (cpppo), read by lineside's
own S7 and EtherNet/IP drivers; `lineside simulate --s7-port --enip-port --protocol`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import load_line_config
from config.models import EnipPlc, S7Plc, Signal
from drivers.base import DriverError, Sample, create_driver
from drivers.sim import ENIP_MAP, S7_MAP, Simulator, config_text, line_config_snippet
from drivers.simulator.scenario import Scenario
from tests.drivers.conftest import Run, free_port, running

FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}
ROOT = Path(__file__).parents[2]


def _tags(plc: str, mapping: dict[str, tuple[str, str, int | None]]) -> dict[str, Signal]:
    return {n: Signal(plc=plc, address=a, type=t, length=ln) for n, (a, t, ln) in mapping.items()}  # type: ignore[arg-type]


def _value(run: Run, tag: str) -> object:
    s: Sample | None = run.latest().get(tag)
    return s.value if s is not None and s.quality == "good" else None


def _count(run: Run, tag: str) -> int:
    v = _value(run, tag)
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


async def _through_a_breakdown_and_a_restart(sim: Simulator, runs: dict[str, Run]) -> None:
    """What every protocol must show: counts advancing, the fault code, the PLC restart."""
    for name, r in runs.items():
        await r.wait_for(lambda r=r: _count(r, "total_count") >= 0, 10, f"first counts over {name}")  # type: ignore[misc]
        first = _count(r, "total_count")
        await r.wait_for(lambda r=r, first=first: _count(r, "total_count") >= first + 5,  # type: ignore[misc]
                         10, f"the count advancing over {name}")
        latest = r.latest()
        assert {s.quality for s in latest.values()} == {"good"}, latest
        assert latest["product"].value == "P-7" and latest["order"].value == "ORD-9"
        assert latest["running"].value is True and latest["fault_code"].value == 0

    await sim.breakdown(42, 180)  # 3 simulated minutes = 9 real seconds at x20
    for name, r in runs.items():
        await r.wait_for(lambda r=r: _value(r, "fault_code") == 42 and _value(r, "running") is False  # type: ignore[misc]
                         and _value(r, "state") == 3, 5, f"the fault code over {name}")
    truth = sim.model.values()  # the line stands still: every protocol shows the same counts
    for name, r in runs.items():
        got = {k: _count(r, k) for k in ("total_count", "good_count", "reject_count")}
        assert got == {k: truth[k] for k in got}, name
        assert got["good_count"] + got["reject_count"] == got["total_count"]

    await sim.restart_plc(down_s=0.3)  # the PLCs go away and come back with their counters at 0
    for name, r in runs.items():
        await r.wait_for(lambda r=r: any(not c for c, _ in r.states), 10, f"the PLC going away over {name}")  # type: ignore[misc]
        await r.wait_for(lambda r=r: r.states[-1][0] and _count(r, "total_count") == 0  # type: ignore[misc]
                         and _value(r, "fault_code") == 42, 15, f"counters reset after the restart over {name}")
        assert r.latest()["product"].value == "P-7"  # the rest of the memory survives the restart


async def test_simulator_over_s7_and_enip_counts_advance_and_a_breakdown_shows_its_fault_code() -> None:
    sc = Scenario(ideal_cycle_time_s=1.0, reject_every=4, product="P-7", order="ORD-9")
    async with Simulator(sc, opcua_port=None, modbus_port=None, s7_port=0, enip_port=0, speed=20.0) as sim:
        assert sim.s7 is not None and sim.enip is not None and sim.protocols == ["s7", "enip"]
        s7 = create_driver("s7", S7Plc(host="127.0.0.1", port=sim.s7.port, interval_ms=50, timeout_s=1.0),
                           _tags("s7", S7_MAP), **FAST)
        enip = create_driver("enip", EnipPlc(host="127.0.0.1", port=sim.enip.port, interval_ms=50, timeout_s=1.0),
                             _tags("enip", ENIP_MAP), **FAST)
        async with running(s7) as rs, running(enip) as re:
            await _through_a_breakdown_and_a_restart(sim, {"s7": rs, "enip": re})
    assert sim.truth()["restarts"] == 1


def test_line_config_for_a_protocol_not_served_is_refused_and_the_s7_one_is_valid(tmp_path: Path) -> None:
    sim = Simulator("demo", opcua_port=None, modbus_port=None, s7_port=1102)  # not started: nothing binds
    with pytest.raises(DriverError, match=r"does not serve enip.*serving: s7"):
        line_config_snippet(sim, "enip")
    cfg = load_line_config(tmp_path / "s7.yaml", text=line_config_snippet(sim))
    plc = cfg.plcs["sim"]
    assert isinstance(plc, S7Plc) and plc.port == 1102
    assert cfg.signals.running is not None and cfg.signals.running.address == "DB1.DBX10.0"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_simulate_command_serves_s7_and_enip_prints_both_configs_and_stops_cpppo_on_sigterm(tmp_path: Path) -> None:
    s7_port, enip_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--log-format", "console", "simulate", "--opcua-port", "0",
         "--modbus-port", "0", "--s7-port", str(s7_port), "--enip-port", str(enip_port), "--protocol", "enip",
         "--speed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        out = []
        for line in proc.stdout:  # the S7 config comes last, commented
            out.append(line)
            if line.startswith("# buffer:"):
                break
        text = "".join(out)
        assert _listening(s7_port) and _listening(enip_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    deadline = time.monotonic() + 5
    while _listening(enip_port) and time.monotonic() < deadline:  # the cpppo child went with it
        time.sleep(0.1)
    assert not _listening(enip_port) and not _listening(s7_port)

    assert f"S7      127.0.0.1:{s7_port}" in text and "DB1.DBW0" in text and "Line_FaultCode" in text
    main, _, rest = text.partition("# line config for this simulator:\n")[2].partition("# the same line read over S7:\n")
    enip_cfg = load_line_config(tmp_path / "enip.yaml", text=main)
    assert isinstance(enip_cfg.plcs["sim"], EnipPlc) and enip_cfg.plcs["sim"].port == enip_port
    s7_text = "".join(line[2:] + "\n" for line in rest.splitlines() if line.startswith("# "))
    s7_cfg = load_line_config(tmp_path / "s7.yaml", text=s7_text)
    assert isinstance(s7_cfg.plcs["sim"], S7Plc) and s7_cfg.plcs["sim"].port == s7_port
    assert s7_cfg.signals.total_count is not None and s7_cfg.signals.total_count.address == "DB1.DBW0"


def test_config_text_without_a_choice_reads_the_first_served_protocol() -> None:
    sim = Simulator("demo", opcua_port=None, modbus_port=5999, s7_port=1102)
    text = config_text(sim)
    assert text.index("driver: modbus") < text.index("#     driver: s7")
