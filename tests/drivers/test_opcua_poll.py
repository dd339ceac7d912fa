# asyncua re-exports without __all__ and types ids as NewType aliases: plain ints are what it accepts.
# mypy: disable-error-code="attr-defined,arg-type"
"""The OPC UA driver in poll mode (Read service every interval) against a real asyncua server."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import ua

from config.models import OpcUaPlc, Signal, SignalType
from drivers.base import Sample, create_driver
from drivers.opcua import OpcUaDriver
from drivers.simulator.opcua_server import OpcUaNodeServer
from tests.drivers.conftest import free_port, running

FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}
# name -> (type, initial value)
VARS: dict[str, tuple[SignalType, Any]] = {
    "total": ("uint32", 123456),
    "running": ("bool", True),
    "temp": ("float64", 71.25),
    "product": ("string", "A-100"),
    "fault": ("int16", -7),
    "speed": ("float32", 2.5),
    "reject": ("uint16", 3),
}
NUMERIC_ID = 4711  # "fault" is served as ns=2;i=4711


@pytest.fixture
async def server() -> AsyncIterator[OpcUaNodeServer]:
    srv = OpcUaNodeServer("127.0.0.1", free_port(), folder="Line3")
    for name, (t, v) in VARS.items():
        srv.add(name, t, v, numeric_id=NUMERIC_ID if name == "fault" else None)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _driver(srv: OpcUaNodeServer, tags: dict[str, Signal] | None = None, **plc: Any) -> OpcUaDriver:
    tags = tags or {n: Signal(plc="p", address=srv.node_id(n), type=t) for n, (t, _v) in VARS.items()}
    cfg = OpcUaPlc(endpoint=srv.endpoint, mode="poll", interval_ms=50, timeout_s=2.0, **plc)
    d = create_driver("p", cfg, tags, **FAST)
    assert isinstance(d, OpcUaDriver)
    return d


async def _read_once(d: OpcUaDriver) -> dict[str, Sample]:
    await d.connect()
    try:
        return {s.tag: s for s in await d.read()}
    finally:
        await d.close()


async def test_poll_reads_typed_values_and_carries_the_servers_source_timestamp(server: OpcUaNodeServer) -> None:
    stamped = dt.datetime(2024, 3, 1, 6, 30, 15, 250000, tzinfo=dt.UTC)
    await server.set("total", 123999, source_ts=stamped)
    got = await _read_once(_driver(server))
    assert {s.quality for s in got.values()} == {"good"}
    assert got["total"].value == 123999 and got["running"].value is True and got["product"].value == "A-100"
    assert got["temp"].value == 71.25 and got["fault"].value == -7 and got["speed"].value == 2.5
    src = got["total"].source_ts
    assert src == pytest.approx(stamped.timestamp(), abs=1e-3)
    assert src is not None and got["total"].recv_ts - src > 3600  # the PLC's time, not lineside's


async def test_bad_and_uncertain_status_codes_give_bad_and_uncertain_samples_naming_the_status(
    server: OpcUaNodeServer,
) -> None:
    await server.set("temp", 80.5, status=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
    await server.set("speed", 3.5, status=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue))
    got = await _read_once(_driver(server))
    assert got["temp"].quality == "bad" and got["temp"].value is None
    assert got["temp"].error is not None and "BadSensorFailure" in got["temp"].error
    assert server.node_id("temp") in got["temp"].error  # the address, so a person knows which node
    assert got["speed"].quality == "uncertain" and got["speed"].value == 3.5
    assert got["speed"].error is not None and "UncertainLastUsableValue" in got["speed"].error
    assert all(got[n].quality == "good" for n in VARS if n not in ("temp", "speed"))


async def test_read_chunk_smaller_than_the_tag_count_sends_several_reads_and_keeps_every_value(
    server: OpcUaNodeServer,
) -> None:
    d = _driver(server, read_chunk=3)
    got = await _read_once(d)
    assert server.reads == [3, 3, 1]  # 7 nodes in reads of at most 3, counted at the server
    assert d.requests == 3
    assert {n: s.value for n, s in got.items()} == {n: v for n, (_t, v) in VARS.items()}


async def test_a_server_read_limit_halves_the_chunk_until_reads_pass_and_nothing_is_lost(
    server: OpcUaNodeServer,
) -> None:
    server.max_nodes_per_read = 2  # BadTooManyOperations above 2 nodes per Read
    d = _driver(server)  # read_chunk 500
    got = await _read_once(d)
    assert d.read_chunk <= 2 and {s.quality for s in got.values()} == {"good"} and len(got) == len(VARS)
    assert server.reads[-len(VARS) // d.read_chunk:] == [d.read_chunk] * (len(VARS) // d.read_chunk)
    got_again = {s.tag: s for s in await _read_again(d)}  # the smaller chunk is kept for the next reads
    assert {n: s.value for n, s in got_again.items()} == {n: v for n, (_t, v) in VARS.items()}


async def _read_again(d: OpcUaDriver) -> list[Sample]:
    await d.connect()
    try:
        failed_before = d.requests
        out = await d.read()
        assert d.requests - failed_before == -(-len(VARS) // d.read_chunk)  # no refused request any more
        return out
    finally:
        await d.close()


async def test_string_numeric_and_browse_path_node_ids_all_read_the_right_node(server: OpcUaNodeServer) -> None:
    tags = {
        "by_string": Signal(plc="p", address="ns=2;s=Line3.total", type="uint32"),
        "by_numeric": Signal(plc="p", address=f"ns=2;i={NUMERIC_ID}", type="int16"),
        "by_path": Signal(plc="p", address="/Objects/2:Line3/2:product", type="string"),
        "missing_path": Signal(plc="p", address="/Objects/2:Line3/2:nope", type="string"),
        "missing_id": Signal(plc="p", address="ns=2;s=Line3.nope", type="int32"),
    }
    assert server.node_id("fault") == f"ns=2;i={NUMERIC_ID}" and server.browse_path("product") == "/Objects/2:Line3/2:product"
    got = await _read_once(_driver(server, tags))
    assert (got["by_string"].value, got["by_numeric"].value, got["by_path"].value) == (123456, -7, "A-100")
    assert all(got[n].quality == "good" for n in ("by_string", "by_numeric", "by_path"))
    # a node the server does not have is that tag's error; the others flow on
    assert got["missing_path"].quality == "bad" and "/Objects/2:Line3/2:nope" in (got["missing_path"].error or "")
    assert got["missing_id"].quality == "bad" and "BadNodeIdUnknown" in (got["missing_id"].error or "")


async def test_poll_mode_reconnects_after_a_server_restart_and_reads_the_new_values(server: OpcUaNodeServer) -> None:
    d = _driver(server)
    async with running(d) as run:
        await run.wait_for(lambda: run.latest().get("total") and run.latest()["total"].value == 123456, 10,
                           "the first poll")
        await server.stop()
        await run.wait_for(lambda: any(not c for c, _ in run.states), 10, "the disconnect")
        lost = run.latest()["total"]
        assert lost.quality == "bad" and lost.error is not None and lost.error.startswith("disconnected")
        await server.set("total", 5)  # the restarted PLC has other values
        await server.start()
        await run.wait_for(lambda: run.states[-1][0] and run.latest()["total"].quality == "good"
                           and run.latest()["total"].value == 5, 15, "reads after the restart")
    assert d.health.reconnects >= 1 and d.health.connects >= 2
