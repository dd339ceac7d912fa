"""A real pymodbus TCP server whose memory lineside can set from Python.

Used by the line simulator (``lineside simulate``) and by the Modbus peer of the driver
contract suite. The four tables are separate (coils and discrete inputs are bit-addressed),
each ``size`` entries long from offset 0; anything beyond gives exception 2 on the wire, like
a real device. Memory survives ``stop()`` / ``start()`` (a PLC keeps its registers when the
network goes away); the request counter counts every request the server received.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["ModbusMemoryServer"]

Table = Literal["holding", "input", "coil", "discrete"]
# function codes the server's datastore maps to each table (read side)
_FC: dict[Table, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class ModbusMemoryServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 5020, size: int = 10000) -> None:
        self.host, self.port, self.size = host, port, size
        self._mem: dict[Table, list[int] | list[bool]] = {
            "coil": [False] * size, "discrete": [False] * size, "holding": [0] * size, "input": [0] * size,
        }
        self._server: ModbusTcpServer | None = None
        self.requests = 0  # requests received since construction (for coalescing tests / bench)
        self.connections = 0

    def _trace_pdu(self, sending: bool, pdu: object) -> object:
        if not sending:
            self.requests += 1
        return pdu

    def _trace_connect(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        m = self._mem
        device = SimDevice(
            0,  # id 0 answers every unit id
            simdata=(
                [SimData(0, values=list(m["coil"]), datatype=DataType.BITS)],
                [SimData(0, values=list(m["discrete"]), datatype=DataType.BITS)],
                [SimData(0, values=list(m["holding"]), datatype=DataType.REGISTERS)],
                [SimData(0, values=list(m["input"]), datatype=DataType.REGISTERS)],
            ),
        )
        server = ModbusTcpServer(
            device, address=(self.host, self.port), trace_pdu=self._trace_pdu,  # type: ignore[arg-type]
            trace_connect=self._trace_connect,
        )
        await server.serve_forever(background=True)
        if self.port == 0 and server.transport is not None:
            self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for table in self._mem:  # keep the memory for the next start()
            self._mem[table] = await self._get(server, table, 0, self.size)
        await server.shutdown()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)  # let the transport close its sockets

    async def _get(self, server: ModbusTcpServer, table: Table, offset: int, count: int) -> list[int] | list[bool]:
        return await server.async_getValues(0, _FC[table], offset, count)

    async def set(self, table: Table, offset: int, values: list[int] | list[bool]) -> None:
        """Write registers (ints 0..65535) or bits at a 0-based offset."""
        if offset < 0 or offset + len(values) > self.size:
            raise ValueError(f"{table}@{offset}+{len(values)} is outside 0..{self.size}")
        mem: list[Any] = self._mem[table]
        for i, v in enumerate(values):
            mem[offset + i] = bool(v) if table in ("coil", "discrete") else int(v) & 0xFFFF
        if self._server is not None:
            await self._server.async_setValues(0, _FC[table], offset, list(mem[offset : offset + len(values)]))

    async def get(self, table: Table, offset: int, count: int = 1) -> list[int] | list[bool]:
        if self._server is not None:
            return await self._get(self._server, table, offset, count)
        return self._mem[table][offset : offset + count]
