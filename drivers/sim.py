"""The line simulator: the ``sim`` driver (in-process) and ``lineside simulate`` (real servers).

- ``SimDriver`` (``driver: sim`` with ``scenario``, ``interval_ms``, ``speed``) runs a scenario
  in-process and yields the same Samples a PLC would, without any network: tag addresses
  are the simulator's signal names (``total_count``, ``good_count``, ``reject_count``,
  ``running``, ``state``, ``fault_code``, ``product``, ``order``).
- ``Simulator`` serves a scenario over a real OPC UA server and a real Modbus TCP server, and
  when asked over a real S7 server (python-snap7, one DB: ``S7_MAP``) and a real EtherNet/IP
  server (cpppo's Logix simulator as a subprocess: ``ENIP_MAP``); it can be scripted from
  Python (``stop_line``, ``start_line``, ``breakdown``, ``micro_stop``, ``restart_plc``,
  ``truth``). ``lineside simulate`` runs it from the command line and prints the node ids, the
  register / DB / tag maps and a ready line config for each served protocol.

Time runs ``speed`` times faster than the wall clock. Source timestamps (OPC UA
SourceTimestamp, Sample.source_ts) are stamped in simulated time, so a 3-minute breakdown at
speed 10 lasts 18 real seconds but 3 minutes in the data.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config.models import Plc, Signal, SimPlc
from drivers.base import Driver, DriverError, Sample, TagError
from drivers.simulator.engine import SIGNALS, LineModel
from drivers.simulator.scenario import Scenario, load_scenario

if TYPE_CHECKING:  # imported on use: a line that only needs OPC UA never loads snap7 or cpppo
    from drivers.simulator.enip_server import EnipTagServer
    from drivers.simulator.s7_server import S7MemoryServer

__all__ = [
    "ENIP_MAP", "MODBUS_MAP", "PROTOCOLS", "S7_DB", "S7_MAP", "SimDriver", "Simulator", "cli_simulate",
    "config_text", "line_config_snippet",
]  # fmt: skip

# signal -> (Modbus address, type, string length)
MODBUS_MAP: dict[str, tuple[str, str, int | None]] = {
    "total_count": ("holding:40001", "uint16", None),
    "good_count": ("holding:40002", "uint16", None),
    "reject_count": ("holding:40003", "uint16", None),
    "state": ("holding:40004", "int16", None),
    "fault_code": ("holding:40005", "int16", None),
    "running": ("coil:1", "bool", None),
    "product": ("holding:40011", "string", 20),
    "order": ("holding:40021", "string", 20),
}
# signal -> (S7 address, type, string length): one DB, big-endian like an S7 CPU, STRING[20]s
S7_DB = 1
S7_MAP: dict[str, tuple[str, str, int | None]] = {
    "total_count": ("DB1.DBW0", "uint16", None),
    "good_count": ("DB1.DBW2", "uint16", None),
    "reject_count": ("DB1.DBW4", "uint16", None),
    "state": ("DB1.DBW6", "int16", None),
    "fault_code": ("DB1.DBW8", "int16", None),
    "running": ("DB1.DBX10.0", "bool", None),
    "product": ("DB1.DBB12", "string", 20),
    "order": ("DB1.DBB34", "string", 20),
}
# signal -> (Logix tag name, type, None): controller-scope tags, UINT counters like the other protocols
ENIP_MAP: dict[str, tuple[str, str, int | None]] = {
    "total_count": ("Line_TotalCount", "uint16", None),
    "good_count": ("Line_GoodCount", "uint16", None),
    "reject_count": ("Line_RejectCount", "uint16", None),
    "state": ("Line_State", "int16", None),
    "fault_code": ("Line_FaultCode", "int16", None),
    "running": ("Line_Running", "bool", None),
    "product": ("Line_Product", "string", None),
    "order": ("Line_Order", "string", None),
}
OPCUA_FOLDER = "Line"
PROTOCOLS = ("opcua", "modbus", "s7", "enip")


def _load(scenario: Scenario | str) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    from config.loader import ConfigError

    try:
        return load_scenario(scenario)
    except ConfigError as exc:
        raise DriverError(f"bad simulator scenario: {exc}") from exc


class SimDriver(Driver):
    kind = "sim"

    def __init__(self, plc_name: str, plc: Plc, tags: Mapping[str, Signal], **kw: Any) -> None:
        super().__init__(plc_name, plc, tags, **kw)
        assert isinstance(plc, SimPlc)
        self.cfg: SimPlc = plc
        bad = [f"tag {n}: unknown simulator signal {s.address!r} (one of {', '.join(SIGNALS)})"
               for n, s in self.tags.items() if s.address not in SIGNALS]
        if bad:
            raise TagError(f"plc {plc_name}: " + "; ".join(bad))
        self.model: LineModel | None = None
        self._t0 = 0.0
        # Tags reading the same signal with the same scaling get the same value: each such
        # (address, scale, offset) is scaled once per read, then shared by its tags.
        kinds: dict[tuple[str, float, float], int] = {}
        self._kinds: list[Signal] = []
        self._plan: list[tuple[str, int]] = []
        for name, sig in self.tags.items():
            key = (sig.address, sig.scale, sig.offset)
            if key not in kinds:
                kinds[key] = len(self._kinds)
                self._kinds.append(sig)
            self._plan.append((name, kinds[key]))

    async def connect(self) -> None:
        if self.model is None:  # a reconnect keeps the line where it was
            self.model = LineModel(_load(self.cfg.scenario))
            self._t0 = self.clock()

    async def close(self) -> None:
        pass

    async def read(self) -> list[Sample]:
        assert self.model is not None
        now = self.clock()
        sim_t = (now - self._t0) * self.cfg.speed
        self.model.advance(sim_t)
        values = self.model.values()
        src = self._t0 + sim_t
        scaled = [self.scaled(values[sig.address], sig) for sig in self._kinds]
        return [Sample(tag, scaled[k], "good", src, now) for tag, k in self._plan]


def _s7_server(host: str, port: int) -> S7MemoryServer:
    """The simulator's DB (S7_MAP) on a snap7 server; offsets come from the addresses themselves."""
    from drivers.s7 import parse_address as s7_address
    from drivers.simulator.s7_server import S7Field, S7MemoryServer

    fields = {}
    for name, (addr, type_, length) in S7_MAP.items():
        a = s7_address(addr)
        fields[name] = S7Field(type_, a.byte, a.bit, length)
    return S7MemoryServer(host, port, db=S7_DB, fields=fields)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Simulator:
    """A scenario served over real protocol servers; ``async with Simulator(...) as sim:``."""

    def __init__(self, scenario: Scenario | str = "demo", *, host: str = "127.0.0.1",
                 opcua_port: int | None = 4840, modbus_port: int | None = 5020, s7_port: int | None = None,
                 enip_port: int | None = None, speed: float = 1.0, tick_s: float = 0.05) -> None:
        """A port of None: that protocol is not served; 0: a free port is picked at start."""
        from drivers.simulator.modbus_server import ModbusMemoryServer
        from drivers.simulator.opcua_server import OpcUaNodeServer

        self.scenario = _load(scenario)
        self.model = LineModel(self.scenario)
        self.host, self.speed, self.tick_s = host, speed, tick_s
        self.opcua: OpcUaNodeServer | None = None
        self.modbus: ModbusMemoryServer | None = None
        self.s7: S7MemoryServer | None = None
        self.enip: EnipTagServer | None = None
        values = self.model.values()
        if opcua_port is not None:
            self.opcua = OpcUaNodeServer(host, opcua_port or _free_port(host), folder=OPCUA_FOLDER)
            for name, type_ in SIGNALS.items():
                self.opcua.add(name, type_, values[name])
        if modbus_port is not None:
            self.modbus = ModbusMemoryServer(host, modbus_port, size=100)
        if s7_port is not None:
            self.s7 = _s7_server(host, s7_port)
        if enip_port is not None:
            from drivers.simulator.enip_server import EnipTagServer

            self.enip = EnipTagServer(host, enip_port, tags={tag: t for tag, t, _ in ENIP_MAP.values()})
        self._sent: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._push_lock = asyncio.Lock()  # the ticker and a scripted event never interleave writes
        self._m0 = time.monotonic()
        self.t0 = time.time()

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def protocols(self) -> list[str]:
        """The protocols this simulator serves, in PROTOCOLS order."""
        served = {"opcua": self.opcua, "modbus": self.modbus, "s7": self.s7, "enip": self.enip}
        return [p for p in PROTOCOLS if served[p] is not None]

    async def start(self) -> None:
        try:
            await self._start_servers()
        except BaseException:
            await self._stop_servers()  # never leave a half-started simulator (a cpppo child) behind
            raise
        self._m0, self.t0 = time.monotonic(), time.time()
        self._sent = {}
        await self._push()
        self._task = asyncio.create_task(self._ticker())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._stop_servers()
        if self.enip is not None:
            await self.enip.close()

    async def _start_servers(self) -> None:
        if self.opcua is not None:
            await self.opcua.start()
        if self.modbus is not None:
            await self.modbus.start()
        if self.s7 is not None:
            await self.s7.start()
        if self.enip is not None:
            await self.enip.start()

    async def _stop_servers(self) -> None:
        if self.opcua is not None:
            await self.opcua.stop()
        if self.modbus is not None:
            await self.modbus.stop()
        if self.s7 is not None:
            await self.s7.stop()
        if self.enip is not None:
            await self.enip.stop()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self._push()

    # ---------------------------------------------------------------- time and values

    def sim_time(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self._m0) * self.speed

    def sim_epoch(self, t: float | None = None) -> float:
        return self.t0 + (self.sim_time() if t is None else t)

    async def _push(self) -> None:
        async with self._push_lock:
            self.model.advance(self.sim_time())
            values = self.model.values()
            changed = {k: v for k, v in values.items() if self._sent.get(k) != v}
            if not changed:
                return
            ts = dt.datetime.fromtimestamp(self.sim_epoch(self.model.t), dt.UTC)
            if self.opcua is not None and self.opcua.running:
                for name, v in changed.items():
                    await self.opcua.set(name, v, source_ts=ts)
            if self.modbus is not None and self.modbus.running:
                await self._push_modbus(changed)
            if self.s7 is not None:  # the DB image is kept while stopped, like the Modbus memory
                self.s7.set_many(changed)
            if self.enip is not None:
                await self.enip.set_many({ENIP_MAP[k][0]: v for k, v in changed.items()})
            self._sent.update(changed)

    async def _push_modbus(self, changed: dict[str, Any]) -> None:
        from drivers.modbus import encode_registers, parse_address

        assert self.modbus is not None
        for name, v in changed.items():
            addr, type_, length = MODBUS_MAP[name]
            a = parse_address(addr)
            if a.is_bit:
                await self.modbus.set(a.table, a.offset, [bool(v)])
            else:
                sig = Signal(plc="sim", address=addr, type=type_, length=length)  # type: ignore[arg-type]
                await self.modbus.set(a.table, a.offset, encode_registers(v, sig))

    # ---------------------------------------------------------------- scripting

    async def _now(self) -> None:
        self.model.advance(self.sim_time())

    async def stop_line(self) -> None:
        await self._now()
        self.model.stop_line()
        await self._push()

    async def start_line(self) -> None:
        await self._now()
        self.model.start_line()
        await self._push()

    async def breakdown(self, code: int, seconds: float) -> None:
        """Stop the line with fault `code` for `seconds` of simulated time."""
        await self._now()
        self.model.breakdown(code, seconds)
        await self._push()

    async def micro_stop(self, seconds: float) -> None:
        await self._now()
        self.model.micro_stop(seconds)
        await self._push()

    async def restart_plc(self, down_s: float = 0.5) -> None:
        """The PLC goes away for `down_s` real seconds and comes back with its counters at 0."""
        await self._now()
        await self._stop_servers()
        await asyncio.sleep(down_s)
        self.model.advance(self.sim_time())
        self.model.restart_plc()
        self._sent = {}
        await self._start_servers()
        await self._push()

    def truth(self, micro_stop_max_s: float = 120.0) -> dict[str, Any]:
        """What really happened: unwrapped counts and every stop (times as simulated epoch seconds)."""
        self.model.advance(self.sim_time())
        t = self.model.truth(micro_stop_max_s)
        for s in t["stops"]:
            s["start_ts"] = self.sim_epoch(s["start"])
            s["end_ts"] = self.sim_epoch(s["end"]) if s["end"] is not None else None
        return t

    # ---------------------------------------------------------------- how to reach it

    def describe(self) -> str:
        lines = [f"scenario {self.scenario.name}: ideal cycle {self.scenario.ideal_cycle_time_s:g} s, speed x{self.speed:g}"]
        if self.opcua is not None:
            lines.append(f"OPC UA  {self.opcua.endpoint}")
            lines += [f"  {name:13} {self.opcua.node_id(name):28} {t}" for name, t in SIGNALS.items()]
        if self.modbus is not None:
            lines.append(f"Modbus  {self.host}:{self.modbus.port} (any unit id)")
            lines += [f"  {name:13} {a:28} {t}" + (f" length {n}" if n else "")
                      for name, (a, t, n) in MODBUS_MAP.items()]
        if self.s7 is not None:
            lines.append(f"S7      {self.host}:{self.s7.port} rack 0 slot 1, DB{S7_DB}")
            lines += [f"  {name:13} {a:28} {t}" + (f" length {n}" if n else "")
                      for name, (a, t, n) in S7_MAP.items()]
        if self.enip is not None:
            lines.append(f"EtherNet/IP {self.host}:{self.enip.port} (Logix tags, cpppo)")
            lines += [f"  {name:13} {a:28} {t}" for name, (a, t, _n) in ENIP_MAP.items()]
        return "\n".join(lines)


def _plc_and_signals(sim: Simulator, protocol: str) -> tuple[str, list[tuple[str, str, str, int | None]]]:
    """The `plcs:` entry and (signal, address, type, length) rows for one served protocol."""
    if protocol == "opcua":
        assert sim.opcua is not None
        plc = f"  sim:\n    driver: opcua\n    endpoint: {sim.opcua.endpoint}\n    mode: subscribe\n    interval_ms: 100\n"
        return plc, [(n, sim.opcua.node_id(n), t, None) for n, t in SIGNALS.items()]
    if protocol == "modbus":
        assert sim.modbus is not None
        plc = f"  sim:\n    driver: modbus\n    host: {sim.host}\n    port: {sim.modbus.port}\n    interval_ms: 100\n"
        return plc, [(n, a, t, ln) for n, (a, t, ln) in MODBUS_MAP.items()]
    if protocol == "s7":
        assert sim.s7 is not None
        plc = (f"  sim:\n    driver: s7\n    host: {sim.host}\n    port: {sim.s7.port}\n    rack: 0\n    slot: 1\n"
               "    interval_ms: 100\n")
        return plc, [(n, a, t, ln) for n, (a, t, ln) in S7_MAP.items()]
    if protocol == "enip":
        assert sim.enip is not None
        plc = f"  sim:\n    driver: enip\n    host: {sim.host}\n    port: {sim.enip.port}\n    interval_ms: 100\n"
        return plc, [(n, a, t, ln) for n, (a, t, ln) in ENIP_MAP.items()]
    raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")


def line_config_snippet(sim: Simulator, protocol: str | None = None) -> str:
    """A ready-to-use line config reading the simulator over `protocol` (default: the first
    served of opcua, modbus, s7, enip). Ports picked at start (0) are known only once started."""
    served = sim.protocols
    protocol = protocol or (served[0] if served else None)
    if protocol is None or protocol not in served:
        raise DriverError(f"the simulator does not serve {protocol or 'any protocol'} (serving: "
                          f"{', '.join(served) or 'nothing'})")
    sc = sim.scenario
    plc, rows = _plc_and_signals(sim, protocol)
    # `state` is left out: its codes need a state_map the plant engineer writes for their line
    sigs = [f"  {n}: {{plc: sim, address: \"{a}\", type: {t}" + (f", length: {ln}" if ln else "") + "}"
            for n, a, t, ln in rows if n != "state"]
    return (
        "line: {site: demo, area: demo, id: sim1, machine: simulated}\n"
        f"plcs:\n{plc}"
        "signals:\n" + "\n".join(sigs) + "\n"
        f"production:\n  ideal_cycle_time_s: {sc.ideal_cycle_time_s:g}\n"
        "  reasons:\n    42: {text: \"Sealing jaw jam\", category: equipment_failure}\n"
        "buffer: {path: demo-data/sim1.db}\n"
    )


_LABELS = {"opcua": "OPC UA", "modbus": "Modbus", "s7": "S7", "enip": "EtherNet/IP"}


def config_text(sim: Simulator, protocol: str | None = None) -> str:
    """What `lineside simulate` prints: the chosen protocol's line config, then the config for
    every other served protocol as comments (uncomment one to read the line over it)."""
    main = line_config_snippet(sim, protocol)
    primary = protocol or sim.protocols[0]
    out = ["# line config for this simulator:\n" + main]
    for p in sim.protocols:
        if p != primary:
            body = "".join(f"# {line}\n" for line in line_config_snippet(sim, p).splitlines())
            out.append(f"# the same line read over {_LABELS[p]}:\n{body}")
    return "\n".join(out)


async def _serve(args: argparse.Namespace) -> int:
    protocol = getattr(args, "protocol", None)
    sim = Simulator(args.scenario, host=args.host, opcua_port=args.opcua_port or None,
                    modbus_port=args.modbus_port or None, s7_port=args.s7_port or None,
                    enip_port=args.enip_port or None, speed=args.speed)
    if not sim.protocols:
        raise DriverError("nothing to serve: give at least one of --opcua-port, --modbus-port, --s7-port, "
                          "--enip-port")
    if protocol is not None and protocol not in sim.protocols:
        flag = {"opcua": "--opcua-port", "modbus": "--modbus-port", "s7": "--s7-port", "enip": "--enip-port"}
        raise DriverError(f"--protocol {protocol} needs {flag[protocol]} N (serving: {', '.join(sim.protocols)})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # both stop the servers (and the cpppo child) cleanly
        loop.add_signal_handler(signum, stop.set)
    async with sim:
        print(sim.describe())
        print("\n" + config_text(sim, protocol), flush=True)
        await stop.wait()
    return 0


def cli_simulate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except DriverError as exc:
        print(f"lineside simulate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lineside simulate: cannot serve: {exc}", file=sys.stderr)
        return 1
