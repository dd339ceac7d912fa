"""A real S7 server (python-snap7's pure-Python ``Server``) holding one data block.

Used by the line simulator (``lineside simulate --s7-port N``). The DB is a ``bytearray`` owned
by this object and registered with the server, so a write here is what the next client read
sees, and it survives ``stop()`` / ``start()`` (a PLC keeps its retentive memory when the
network goes away). Values are written big-endian, as an S7 CPU stores them; STRINGs are S7
STRINGs (max-length byte, actual-length byte, characters).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

from snap7.server import Server
from snap7.type import SrvArea

__all__ = ["S7Field", "S7MemoryServer"]

# snap7's server logs every client connect/disconnect at INFO and refused reads at WARNING.
logging.getLogger("snap7.server").setLevel(logging.ERROR)

_FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


@dataclass(frozen=True)
class S7Field:
    """Where one value lives in the DB: byte offset, bit (bool), declared length (string)."""

    type: str  # bool | int16 | uint16 | int32 | uint32 | float32 | string
    byte: int
    bit: int | None = None
    length: int | None = None

    def size(self) -> int:
        if self.type == "bool":
            return 1
        if self.type == "string":
            return 2 + (self.length or 0)
        return struct.calcsize(_FORMATS[self.type])


class ClosingS7Server(Server):
    """snap7's Server leaves accepted connections open after stop(); a PLC that goes away drops
    them (otherwise a client would keep reading a stopped PLC and never notice)."""

    def __init__(self) -> None:
        super().__init__(log=False)
        self._socks: set[socket.socket] = set()
        self._socks_lock = threading.Lock()

    def _handle_client(self, client_socket: socket.socket, address: tuple[str, int]) -> None:
        with self._socks_lock:
            self._socks.add(client_socket)
        try:
            super()._handle_client(client_socket, address)
        finally:
            with self._socks_lock:
                self._socks.discard(client_socket)

    def _drop_clients(self) -> None:
        with self._socks_lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> int:
        self._drop_clients()
        rc = super().stop()
        self._drop_clients()  # a client accepted while the listener was closing
        return rc


class S7MemoryServer:
    """One DB served over ISO-on-TCP; ``port=0`` picks a free port at ``start()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 102, *, db: int = 1,
                 fields: dict[str, S7Field] | None = None) -> None:
        self.host, self.port, self.db = host, port, db
        self.fields = dict(fields or {})
        size = max((f.byte + f.size() for f in self.fields.values()), default=2)
        self.memory = bytearray(size + (size % 2))  # even length: word reads at the end stay inside
        self._server: ClosingS7Server | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def _start_sync(self) -> ClosingS7Server:
        srv = ClosingS7Server()
        srv.register_area(SrvArea.DB, self.db, self.memory)  # the same bytearray: writes are seen at once
        srv.start_to(self.host, self.port)
        if self.port == 0 and srv.server_socket is not None:
            self.port = int(srv.server_socket.getsockname()[1])
        return srv

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.to_thread(self._start_sync)

    async def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            await asyncio.to_thread(srv.stop)

    def encode(self, name: str, value: Any) -> None:
        """Write one field into the DB image (the caller holds the area lock when serving)."""
        f = self.fields[name]
        buf = self.memory
        if f.type == "bool":
            assert f.bit is not None
            buf[f.byte] = (buf[f.byte] | (1 << f.bit)) if value else (buf[f.byte] & ~(1 << f.bit) & 0xFF)
        elif f.type == "string":
            n = f.length or 0
            raw = str(value).encode("latin-1", "replace")[:n]
            buf[f.byte : f.byte + 2 + n] = bytes([n, len(raw)]) + raw.ljust(n, b"\0")
        else:
            struct.pack_into(_FORMATS[f.type], buf, f.byte, value)

    def set_many(self, values: dict[str, Any]) -> None:
        """Write fields under the area lock: no client read item ever sees a half-written value."""
        srv = self._server
        if srv is not None:  # the server's read handler takes this lock around each read
            srv.lock_area(SrvArea.DB, self.db)
        try:
            for name, value in values.items():
                self.encode(name, value)
        finally:
            if srv is not None:
                srv.unlock_area(SrvArea.DB, self.db)
