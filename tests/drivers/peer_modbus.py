"""The Modbus peer of the contract suite: a real pymodbus TCP server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from config.models import ModbusPlc, Plc, Signal
from drivers.modbus import encode_registers, parse_address
from drivers.simulator.modbus_server import ModbusMemoryServer

# name -> (signal, raw value the peer holds); one per supported type and table, both
# address forms, both word orders, and a scaled value.
_TAGS: dict[str, tuple[Signal, Any]] = {
    "coil_bool": (Signal(plc="p", address="coil:1", type="bool"), True),
    "discrete_bool": (Signal(plc="p", address="discrete:10003", type="bool"), True),
    "int16": (Signal(plc="p", address="holding:40001", type="int16"), -1234),
    "uint16": (Signal(plc="p", address="holding:40002", type="uint16"), 65000),
    "int32": (Signal(plc="p", address="holding:40003", type="int32"), -70000),
    "uint32": (Signal(plc="p", address="holding@4", type="uint32"), 4_000_000_000),
    "int64": (Signal(plc="p", address="holding:40007", type="int64"), -(2**40) - 5),
    "uint64": (Signal(plc="p", address="holding:40011", type="uint64"), 2**63 + 7),
    "float32": (Signal(plc="p", address="holding:40020", type="float32"), 21.5),
    "float64": (Signal(plc="p", address="holding:40022", type="float64"), -1.0e-3),
    "string": (Signal(plc="p", address="holding:40030", type="string", length=10), "A-100"),
    "register_bool": (Signal(plc="p", address="holding:40040", type="bool"), 1),
    "input_uint32_little": (
        Signal(plc="p", address="input:30001", type="uint32", word_order="little"), 123_456_789
    ),
    "scaled_int16": (Signal(plc="p", address="input:30010", type="int16", scale=0.1, offset=-5.0), 655),
}


class ModbusPeer:
    driver = "modbus"

    def __init__(self, port: int) -> None:
        self.server = ModbusMemoryServer("127.0.0.1", port, size=200)
        self.values = {name: raw for name, (_, raw) in _TAGS.items()}
        self._loaded = False

    async def start(self) -> None:
        await self.server.start()
        if not self._loaded:
            for name, value in self.values.items():
                await self.set_value(name, value)
            self._loaded = True

    async def stop(self) -> None:
        await self.server.stop()

    def plc_config(self, interval_ms: int = 100) -> Plc:
        return ModbusPlc(host="127.0.0.1", port=self.server.port, interval_ms=interval_ms, timeout_s=1.0)

    def tags(self) -> dict[str, Signal]:
        return {name: sig for name, (sig, _) in _TAGS.items()}

    def expected(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (sig, _) in _TAGS.items():
            v = self.values[name]
            out[name] = bool(v) if sig.type == "bool" else (v * sig.scale + sig.offset if sig.scale != 1 or
                                                            sig.offset else v)
        return out

    async def set_value(self, tag: str, value: Any) -> None:
        sig = _TAGS[tag][0]
        self.values[tag] = value
        a = parse_address(sig.address)
        if a.is_bit:
            await self.server.set(a.table, a.offset, [bool(value)])
        else:
            await self.server.set(a.table, a.offset, encode_registers(value, sig, sig.word_order or "big",
                                                                      sig.byte_order or "big"))

    def wrong_address_tag(self) -> tuple[str, Signal]:
        # the server holds 200 registers per table; 40501 is register 500
        return "missing", Signal(plc="p", address="holding:40501", type="uint16")


def make_peer(port: int) -> ModbusPeer:
    return ModbusPeer(port)
