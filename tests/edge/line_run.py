"""A line as the daemon tests run it: the simulator in-process (real Modbus TCP or OPC UA server
on 127.0.0.1, port picked by the OS) and `lineside run LINE.yaml` as a real subprocess.

The daemon's JSON log goes to a file the test reads (`wait_log`); the buffer is read back with
plain sqlite3 in read-only mode, as the sync agent would see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from drivers.sim import Simulator, line_config_snippet
from drivers.simulator.scenario import Scenario
from sync.records import decode_msgpack

__all__ = ["LineRun", "kind", "make_simulator", "read_buffer"]

REPO = Path(__file__).resolve().parents[2]


def kind(record: Any) -> str:
    tag: str = type(record).__struct_config__.tag
    return tag


def make_simulator(protocol: str = "modbus", speed: float = 1.0, **scenario: Any) -> Simulator:
    sc = Scenario(name="edge-tests", ideal_cycle_time_s=scenario.pop("ideal_cycle_time_s", 0.5), **scenario)
    return Simulator(
        sc, opcua_port=0 if protocol == "opcua" else None, modbus_port=0 if protocol == "modbus" else None,
        speed=speed, tick_s=0.02,
    )


def read_buffer(path: Path) -> list[Any]:
    """Every record in a buffer file (latest revision of each), in outbox order; read-only."""
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT body FROM records ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the writer has not created the schema yet
        return []
    finally:
        con.close()
    return [decode_msgpack(bytes(r[0])) for r in rows]


class LineRun:
    """One daemon subprocess reading `sim`; `cfg` is the line config dict it was started with."""

    def __init__(self, tmp: Path, sim: Simulator, *, protocol: str = "modbus", time_scale: float | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.sim = sim
        self.config_path = tmp / "line.yaml"
        self.buffer_path = tmp / "buf" / "sim1.db"
        self.log_path = tmp / "daemon.log"
        self.time_scale = time_scale
        self.env = env or {}
        cfg: dict[str, Any] = yaml.safe_load(line_config_snippet(sim, protocol))
        cfg["plcs"]["sim"]["interval_ms"] = 50
        cfg["buffer"] = {"path": str(self.buffer_path)}
        cfg["status"] = {"listen": "127.0.0.1:0"}
        cfg["kpi"] = {"intervals": ["hour", "day"], "provisional_every_s": 1}
        cfg["production"]["micro_stop_max_s"] = 5
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def write_config(self, cfg: dict[str, Any] | None = None) -> None:
        self.config_path.write_text(yaml.safe_dump(cfg if cfg is not None else self.cfg, sort_keys=False))

    def start(self) -> subprocess.Popen[bytes]:
        self.write_config()
        env = {**os.environ, **self.env}
        if self.time_scale is not None:
            env["LINESIDE_TIME_SCALE"] = str(self.time_scale)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "--log-format", "json", "run", str(self.config_path)],
            env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
        )
        return self.proc

    # ------------------------------------------------------------------ observing

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def failure(self) -> str:
        return f"daemon log (last 3000 chars):\n{self.log_text()[-3000:]}"

    async def wait_log(self, event: str, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        """The first log entry `event` beyond the first `after` entries of that name."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.log_events() if e.get("event") == event]
            if len(found) > after:
                return found[after]
            assert self.proc is not None
            assert self.proc.poll() is None, f"daemon exited ({self.proc.returncode}) waiting for {event}\n{self.failure()}"
            assert time.monotonic() < deadline, f"no {event!r} in the daemon log within {timeout} s\n{self.failure()}"
            await asyncio.sleep(0.05)

    async def status_url(self, timeout: float = 30.0, after: int = 0) -> str:
        url: str = (await self.wait_log("status_page_ready", timeout, after))["url"]
        return url

    def records(self) -> list[Any]:
        """Every record in the buffer (latest revision of each), in outbox order."""
        return read_buffer(self.buffer_path)

    def of(self, type_: str, **match: Any) -> list[Any]:
        return [r for r in self.records() if kind(r) == type_ and all(getattr(r, k) == v for k, v in match.items())]

    async def wait_record(self, type_: str, pred: Any = None, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.of(type_) if pred is None or pred(r)]
            if found:
                return found[-1]
            assert self.proc is not None
            assert self.proc.poll() is None, f"daemon exited waiting for a {type_} record\n{self.failure()}"
            assert time.monotonic() < deadline, f"no matching {type_} record within {timeout} s\n{self.failure()}"
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ stopping

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds until it exited)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon still running {timeout} s after SIGTERM\n{self.failure()}") from None
        return rc, time.monotonic() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
