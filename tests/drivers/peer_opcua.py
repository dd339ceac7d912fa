"""The OPC UA peer of the contract suite: a real asyncua server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from config.models import OpcUaPlc, Plc, Signal
from drivers.simulator.opcua_server import OpcUaNodeServer

# name -> (type, value, how the tag addresses it: "s" string id, "i" numeric id, "path" browse path)
_VARS: dict[str, tuple[str, Any, str]] = {
    "bool": ("bool", True, "s"),
    "int16": ("int16", -1234, "s"),
    "uint16": ("uint16", 65000, "s"),
    "int32": ("int32", -70000, "i"),
    "uint32": ("uint32", 4_000_000_000, "s"),
    "int64": ("int64", -(2**40) - 5, "s"),
    "uint64": ("uint64", 2**63 + 7, "s"),
    "float32": ("float32", 21.5, "path"),
    "float64": ("float64", -1.0e-3, "s"),
    "string": ("string", "A-100", "s"),
}


class OpcUaPeer:
    driver = "opcua"

    def __init__(self, port: int, *, mode: str = "subscribe") -> None:
        self.server = OpcUaNodeServer("127.0.0.1", port, folder="Line3")
        self.mode = mode
        for i, (name, (type_, value, how)) in enumerate(_VARS.items()):
            self.server.add(name, type_, value, numeric_id=5000 + i if how == "i" else None)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def plc_config(self, interval_ms: int = 100) -> Plc:
        return OpcUaPlc(endpoint=self.server.endpoint, mode=self.mode, interval_ms=interval_ms,  # type: ignore[arg-type]
                        timeout_s=2.0)

    def tags(self) -> dict[str, Signal]:
        out = {}
        for name, (type_, _, how) in _VARS.items():
            addr = self.server.browse_path(name) if how == "path" else self.server.node_id(name)
            out[name] = Signal(plc="p", address=addr, type=type_)  # type: ignore[arg-type]
        return out

    def expected(self) -> dict[str, Any]:
        return {name: self.server.get(name) for name in _VARS}

    async def set_value(self, tag: str, value: Any) -> None:
        await self.server.set(tag, value)

    def wrong_address_tag(self) -> tuple[str, Signal]:
        return "missing", Signal(plc="p", address="ns=2;s=Line3.DoesNotExist", type="uint32")


def make_peer(port: int) -> OpcUaPeer:
    return OpcUaPeer(port)
