"""A real EtherNet/IP peer for the contract suite: cpppo's Logix simulator
(`python -m cpppo.server.enip`) as a subprocess on 127.0.0.1.

cpppo keeps tag values in memory only, so this object remembers them and writes them back with a
pycomm3 client after every start (a restarted PLC keeps its values). cpppo has no UDTs, but it
looks a multi-segment symbolic path up by the dotted name, so a tag defined as ``Station.Temp``
answers the UDT-member request ``Station`` -> ``Temp`` exactly as a Logix controller would.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

from cpppo.server.enip import client

from config.models import EnipPlc, Plc, Signal

__all__ = ["EnipPeer", "make_peer"]

# name -> (cpppo definition, Signal kwargs, initial raw value)
_LAYOUT: dict[str, tuple[str, dict[str, Any], Any]] = {
    "running": ("Running=BOOL", {"address": "Running", "type": "bool"}, True),
    "i16": ("Speed=INT", {"address": "Speed", "type": "int16"}, -1234),
    "u16": ("Recipe=UINT", {"address": "Recipe", "type": "uint16"}, 65000),
    "total": ("Line3_Total=DINT", {"address": "Line3_Total", "type": "int32"}, 123456),
    "u32": ("Shots=UDINT", {"address": "Shots", "type": "uint32"}, 4_000_000_000),
    "i64": ("Energy=LINT", {"address": "Energy", "type": "int64"}, -(2**40) - 7),
    "u64": ("Ticks=ULINT", {"address": "Ticks", "type": "uint64"}, 2**63 + 5),
    "temp": (
        "Station.Temp=REAL",
        {"address": "Station.Temp", "type": "float32", "scale": 2.0, "offset": -1.0},
        21.5,
    ),
    "f64": ("Flow=LREAL", {"address": "Flow", "type": "float64"}, 1.0e300),
    "product": ("Product=STRING", {"address": "Product", "type": "string"}, "SKU-7"),
    "count3": ("Counts=DINT[10]", {"address": "Counts[3]", "type": "int32"}, 42),
    "status_bit": ("Status=DINT", {"address": "Status.5", "type": "bool"}, 1 << 5),
}
# The CIP type cpppo's client writes each tag as.
_WRITE_TYPES = {
    "running": "BOOL", "i16": "INT", "u16": "UINT", "total": "DINT", "u32": "UDINT", "i64": "LINT",
    "u64": "ULINT", "temp": "REAL", "f64": "LREAL", "product": "STRING", "count3": "DINT", "status_bit": "DINT",
}  # fmt: skip


class EnipPeer:
    driver = "enip"

    def __init__(self, port: int) -> None:
        self.port = port
        self.values: dict[str, Any] = {name: init for name, (_, _, init) in _LAYOUT.items()}
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_address(self, name: str) -> str:
        addr: str = _LAYOUT[name][1]["address"]
        if name == "status_bit":
            return addr.rsplit(".", 1)[0]  # the whole DINT; the driver reads one bit of it
        return addr

    def _start_sync(self) -> None:
        defs = [d for d, _, _ in _LAYOUT.values()]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cpppo.server.enip", "--address", f"127.0.0.1:{self.port}", *defs],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:  # cpppo takes a second to import; wait until it accepts connections
            if self._proc.poll() is not None:
                raise RuntimeError(f"cpppo exited with {self._proc.returncode} on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cpppo did not listen on port {self.port} within 20 s") from None
                time.sleep(0.05)
        self._write_sync(*self.values)

    def _write_sync(self, *names: str) -> None:
        """Write values with cpppo's own client (pycomm3 cannot write STRINGs to cpppo)."""
        ops = []
        for name in names:
            value = self.values[name]
            typ = _WRITE_TYPES[name]
            text = str(int(value)) if typ == "BOOL" else (value if typ == "STRING" else repr(value))
            ops.append(f"{self._write_address(name)}=({typ}){text}")
        with client.connector(host="127.0.0.1", port=self.port, timeout=5.0) as conn:
            for _idx, _dsc, op, _rpy, sts, _val in conn.pipeline(
                operations=client.parse_operations(ops), depth=2, timeout=5.0
            ):
                if sts not in (0, None):
                    raise RuntimeError(f"cpppo write {op!r} failed with status {sts!r}")

    def _stop_sync(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()  # a PLC that loses power does not say goodbye
            proc.wait(10)

    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop_sync)

    def plc_config(self, interval_ms: int = 100) -> Plc:
        return EnipPlc(host="127.0.0.1", port=self.port, interval_ms=interval_ms, timeout_s=1.0)

    def tags(self) -> dict[str, Signal]:
        return {name: Signal(plc="enip", **kw) for name, (_, kw, _init) in _LAYOUT.items()}

    def expected(self) -> dict[str, Any]:
        import struct

        out: dict[str, Any] = {}
        for name, (_, kw, _init) in _LAYOUT.items():
            v = self.values[name]
            if name == "status_bit":
                v = bool(v & (1 << 5))
            if kw["type"] == "float32":
                v = struct.unpack("<f", struct.pack("<f", v))[0]
            if "scale" in kw or "offset" in kw:
                v = v * kw.get("scale", 1.0) + kw.get("offset", 0.0)
            out[name] = v
        return out

    async def set_value(self, tag: str, value: Any) -> None:
        self.values[tag] = value
        if self._proc is not None:
            await asyncio.to_thread(self._write_sync, tag)

    def wrong_address_tag(self) -> tuple[str, Signal]:
        return "missing", Signal(plc="enip", address="No_Such_Tag", type="int32")


def make_peer(port: int) -> EnipPeer:
    return EnipPeer(port)
