"""A real S7 peer for the contract suite: python-snap7's pure-Python `Server` on 127.0.0.1.

DB10 holds one value per supported type, MW20 a word in the merker area, IW4 and Q0.0 one value
each in the input and output areas. The buffers live in this object, so a stop/start keeps the
values (as a PLC's retentive memory would).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from snap7.type import SrvArea

from config.models import Plc, S7Plc, Signal
from drivers.simulator.s7_server import ClosingS7Server

__all__ = ["S7Peer", "make_peer"]

# The server warns on every read of a missing DB; the wrong-address test does that on purpose.
logging.getLogger("snap7.server").setLevel(logging.ERROR)

_FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}

# name -> (area, db, byte, bit, Signal kwargs, initial raw value)
_LAYOUT: dict[str, tuple[SrvArea, int, int, int | None, dict[str, Any], Any]] = {
    "flag": (SrvArea.DB, 10, 0, 1, {"address": "DB10.DBX0.1", "type": "bool"}, True),
    "i16": (SrvArea.DB, 10, 2, None, {"address": "DB10.DBW2", "type": "int16"}, -12345),
    "u16": (SrvArea.MK, 0, 20, None, {"address": "MW20", "type": "uint16"}, 65000),
    "i32": (
        SrvArea.DB,
        10,
        4,
        None,
        {"address": "DB10.DBD4", "type": "int32", "scale": 0.5, "offset": 1.0},
        -123456,
    ),
    "u32": (SrvArea.DB, 10, 8, None, {"address": "DB10.DBD8", "type": "uint32"}, 4_000_000_000),
    "i64": (SrvArea.DB, 10, 12, None, {"address": "DB10.DBB12", "type": "int64"}, -(2**40) - 7),
    "u64": (SrvArea.DB, 10, 20, None, {"address": "DB10.DBB20", "type": "uint64"}, 2**63 + 5),
    "f32": (SrvArea.DB, 10, 28, None, {"address": "DB10.DBD28", "type": "float32"}, 2.5),
    "f64": (SrvArea.DB, 10, 32, None, {"address": "DB10.DBB32", "type": "float64"}, 1.0e300),
    "text": (SrvArea.DB, 10, 40, None, {"address": "DB10.DBB40", "type": "string", "length": 20}, "LOT-42"),
    "in_word": (SrvArea.PE, 0, 4, None, {"address": "IW4", "type": "int16"}, 321),
    "out_bit": (SrvArea.PA, 0, 0, 0, {"address": "Q0.0", "type": "bool"}, True),
}


class S7Peer:
    driver = "s7"

    def __init__(self, port: int) -> None:
        self.port = port
        self.areas: dict[tuple[SrvArea, int], bytearray] = {
            (SrvArea.DB, 10): bytearray(64),
            (SrvArea.MK, 0): bytearray(32),
            (SrvArea.PE, 0): bytearray(8),
            (SrvArea.PA, 0): bytearray(8),
        }
        self.values: dict[str, Any] = {}
        for name, (*_, initial) in _LAYOUT.items():
            self._write(name, initial)
        self._server: ClosingS7Server | None = None

    def _write(self, name: str, value: Any) -> None:
        area, db, byte, bit, kw, _ = _LAYOUT[name]
        buf = self.areas[(area, db)]
        typ = kw["type"]
        if typ == "bool":
            assert bit is not None
            buf[byte] = (buf[byte] | (1 << bit)) if value else (buf[byte] & ~(1 << bit))
        elif typ == "string":
            raw = str(value).encode("latin-1")
            buf[byte : byte + 2 + kw["length"]] = bytes([kw["length"], len(raw)]) + raw.ljust(
                kw["length"], b"\0"
            )
        else:
            struct.pack_into(_FORMATS[typ], buf, byte, value)
        self.values[name] = value

    async def start(self) -> None:
        srv = ClosingS7Server()
        for (area, idx), buf in self.areas.items():
            srv.register_area(area, idx, buf)  # the same bytearray: set_value is seen at once
        await asyncio.to_thread(srv.start_to, "127.0.0.1", self.port)
        self._server = srv

    async def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            await asyncio.to_thread(srv.stop)

    def plc_config(self, interval_ms: int = 100) -> Plc:
        return S7Plc(host="127.0.0.1", port=self.port, rack=0, slot=1, interval_ms=interval_ms, timeout_s=1.0)

    def tags(self) -> dict[str, Signal]:
        return {name: Signal(plc="s7", **kw) for name, (*_, kw, _init) in _LAYOUT.items()}

    def expected(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (*_, kw, _init) in _LAYOUT.items():
            v = self.values[name]
            if kw["type"] == "float32":
                v = struct.unpack(">f", struct.pack(">f", v))[0]
            if "scale" in kw or "offset" in kw:
                v = v * kw.get("scale", 1.0) + kw.get("offset", 0.0)
            out[name] = v
        return out

    async def set_value(self, tag: str, value: Any) -> None:
        self._write(tag, value)

    def wrong_address_tag(self) -> tuple[str, Signal]:
        return "missing_db", Signal(plc="s7", address="DB99.DBD0", type="int32")


def make_peer(port: int) -> S7Peer:
    return S7Peer(port)
