"""The simulated OPC UA PLC stops even while a client keeps reconnecting to it.

A PLC outage in the simulator (``lineside simulate``, the demo, the end-to-end tests) stops the
asyncua server while lineside's driver reconnects within milliseconds. asyncua closes the
connections it knows of, yields, and then waits for every connection to end: one accepted while
it yielded stayed open, and the stop never returned (a CI run hung for 90 minutes on it).
"""

from __future__ import annotations

import asyncio
import socket

from drivers.simulator.opcua_server import OpcUaNodeServer
from tests.drivers.conftest import free_port


async def test_stop_returns_with_connections_arriving_as_it_begins() -> None:
    port = free_port()
    srv = OpcUaNodeServer("127.0.0.1", port)
    srv.add("running", "bool", True)
    held: list[socket.socket] = []
    try:
        for _ in range(2):  # an outage and a restart, again, as the demo's "plc outage" does
            await srv.start()
            await asyncio.sleep(0.05)
            # Connections the kernel has completed but the event loop has not accepted yet: a
            # driver reconnecting at the moment the outage begins.
            held += [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(3)]
            await asyncio.wait_for(srv.stop(), 10)
            assert not srv.running
        await srv.start()  # the port is free again for the next start
        assert srv.running
    finally:
        await asyncio.wait_for(srv.stop(), 10)
        for s in held:
            s.close()
