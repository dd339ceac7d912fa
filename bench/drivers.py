"""Driver throughput against local real peers, beside the raw library doing the same reads.

Prints values/s and requests/s for the Modbus and OPC UA (poll) drivers and for a bare
pymodbus / asyncua loop (ratio = driver / raw, target >= 0.8), then OPC UA subscribe mode
with 2,000 nodes each changing once a second: notifications/s received, values lost, and
the highest change rate (changes/s per node) sustained without loss.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.models import ModbusPlc, OpcUaPlc, Signal
from drivers.base import Sample, create_driver
from drivers.simulator.modbus_server import ModbusMemoryServer
from drivers.simulator.opcua_server import OpcUaNodeServer

SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_modbus() -> None:
    from pymodbus.client import AsyncModbusTcpClient

    server = ModbusMemoryServer("127.0.0.1", 0, size=1000)
    await server.start()
    offsets = [*range(0, 100), *range(400, 500), *range(800, 850)]  # 250 registers, 3 blocks
    tags = {f"r{o}": Signal(plc="p", address=f"holding@{o}", type="uint16") for o in offsets}
    d = create_driver("p", ModbusPlc(host="127.0.0.1", port=server.port), tags)
    spans = ((0, 100), (400, 100), (800, 50))  # what the raw loop reads
    # same work on both sides: the driver's coalesced plan is exactly the raw loop's reads
    assert [(b.start, b.count) for b in d.blocks] == list(spans), d.blocks  # type: ignore[attr-defined]
    await d.connect()
    n = polls = 0
    before = server.requests
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        n += len(await d.read())
        polls += 1
    dt = time.perf_counter() - t0
    drv_v, drv_r = n / dt, d.requests / dt  # type: ignore[attr-defined]
    assert server.requests - before == d.requests == 3 * polls, (server.requests - before, d.requests, polls)
    await d.close()
    # raw: the same 3 block reads in a bare loop; it counts the registers it got and decodes
    # nothing, so the ratio includes what the driver must do (decode, scale, one Sample per tag)
    c = AsyncModbusTcpClient("127.0.0.1", port=server.port, retries=0, reconnect_delay=0)
    await c.connect()
    n = reqs = 0
    before = server.requests
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        for start, count in spans:
            rr = await c.read_holding_registers(start, count=count, device_id=1)
            n += len(rr.registers)
            reqs += 1
    dt = time.perf_counter() - t0
    assert server.requests - before == reqs and n == reqs // 3 * len(tags), (server.requests - before, reqs, n)
    c.close()
    await server.stop()
    raw_v, raw_r = n / dt, reqs / dt
    print(f"modbus  driver {drv_v:10.0f} values/s {drv_r:7.0f} req/s | raw pymodbus {raw_v:10.0f} values/s "
          f"{raw_r:7.0f} req/s | ratio {drv_v / raw_v:.2f}")


async def bench_opcua_poll() -> None:
    from asyncua import Client

    srv = OpcUaNodeServer("127.0.0.1", free_port())
    for i in range(500):
        srv.add(f"v{i}", "uint32", i)
    await srv.start()
    tags = {f"v{i}": Signal(plc="p", address=srv.node_id(f"v{i}"), type="uint32") for i in range(500)}
    d = create_driver("p", OpcUaPlc(endpoint=srv.endpoint, mode="poll", read_chunk=500), tags)
    await d.connect()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        n += len(await d.read())
    dt = time.perf_counter() - t0
    drv_v, drv_r = n / dt, d.requests / dt  # type: ignore[attr-defined]
    await d.close()
    c = Client(srv.endpoint)
    await c.connect()
    nodes = [c.get_node(srv.node_id(f"v{i}")) for i in range(500)]
    n = reqs = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        n += len(await c.read_attributes(nodes))
        reqs += 1
    dt = time.perf_counter() - t0
    await c.disconnect()
    await srv.stop()
    raw_v, raw_r = n / dt, reqs / dt
    print(f"opcua   driver {drv_v:10.0f} values/s {drv_r:7.0f} req/s | raw asyncua  {raw_v:10.0f} values/s "
          f"{raw_r:7.0f} req/s | ratio {drv_v / raw_v:.2f}")


async def bench_opcua_subscribe(nodes: int = 2000) -> None:
    srv = OpcUaNodeServer("127.0.0.1", free_port())
    for i in range(nodes):
        srv.add(f"v{i}", "uint32", 0)
    await srv.start()
    tags = {f"v{i}": Signal(plc="p", address=srv.node_id(f"v{i}"), type="uint32") for i in range(nodes)}
    d = create_driver("p", OpcUaPlc(endpoint=srv.endpoint, mode="subscribe", interval_ms=100, queue_size=10), tags)
    got: list[Sample] = []
    task = asyncio.create_task(d.run(got.extend))
    await asyncio.sleep(3.0)  # subscribed, initial values in
    best = 0.0
    for rate in (1.0, 2.0, 4.0):  # changes per second per node
        got.clear()
        sent = 0
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < SECONDS:
            k += 1
            tick = time.perf_counter()
            for i in range(nodes):
                await srv.set(f"v{i}", k)
            sent += nodes
            await asyncio.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - tick)))
        dt = time.perf_counter() - t0
        achieved = k / dt
        await asyncio.sleep(1.0)  # let the last publish arrive
        lost = sent - len(got)
        print(f"opcua subscribe {nodes} nodes, asked {rate:g}/s, server managed {achieved:.2f} changes/s/node: "
              f"{len(got) / dt:8.0f} notifications/s received, lost {lost}, overflows {d.health.overflows}")
        if lost == 0:
            best = achieved
        if achieved < rate * 0.8:
            break  # the in-process server is the limit, not the driver
    print(f"opcua subscribe highest change rate without loss: {best:.2f} changes/s per node "
          f"({best * nodes:.0f} notifications/s)")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await srv.stop()


async def main() -> None:
    await bench_modbus()
    if "--modbus" in sys.argv:
        return
    await bench_opcua_poll()
    await bench_opcua_subscribe()


if __name__ == "__main__":
    asyncio.run(main())
