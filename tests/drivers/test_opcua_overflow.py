# asyncua re-exports without __all__ and types ids as NewType aliases: plain ints are what it accepts.
# mypy: disable-error-code="attr-defined,arg-type"
"""Subscribe mode never loses values silently: what the driver counts when a server drops values.

Finding (asyncua 2.1, server/internal_subscription.py ``_enqueue_event``): a monitored item's
queue that is full drops its oldest value and sets no Overflow InfoBit on what remains, so the
client cannot be told; the driver counts the publish in which an item's queue arrived full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import structlog
from asyncua import ua

from config.models import OpcUaPlc, Signal
from drivers.base import create_driver
from drivers.opcua import OVERFLOW_BITS, OpcUaDriver, SubscriptionLoss
from drivers.simulator.opcua_server import OpcUaNodeServer
from tests.drivers.conftest import Run, free_port, running

FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}


@pytest.fixture
async def server() -> AsyncIterator[OpcUaNodeServer]:
    srv = OpcUaNodeServer("127.0.0.1", free_port(), folder="Line3")
    srv.add("count", "int32", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _subscriber(srv: OpcUaNodeServer, queue_size: int, interval_ms: int = 500) -> OpcUaDriver:
    cfg = OpcUaPlc(endpoint=srv.endpoint, mode="subscribe", interval_ms=interval_ms, queue_size=queue_size,
                   timeout_s=2.0)
    d = create_driver("p", cfg, {"count": Signal(plc="p", address=srv.node_id("count"), type="int32")}, **FAST)
    assert isinstance(d, OpcUaDriver)
    return d


def _counts(run: Run) -> list[object]:
    return [s.value for s in run.samples() if s.tag == "count" and s.quality == "good"]


async def test_a_burst_beyond_the_queue_size_is_counted_while_one_within_it_arrives_complete(
    server: OpcUaNodeServer,
) -> None:
    with structlog.testing.capture_logs() as logs:
        small, big = _subscriber(server, queue_size=3), _subscriber(server, queue_size=50)
        async with running(small) as rs, running(big) as rb:
            for r in (rs, rb):
                await r.wait_for(lambda r=r: _counts(r) == [0], 10, "the initial value")  # type: ignore[misc]
            for v in range(1, 21):  # 20 changes well inside one 500 ms publishing interval
                await server.set("count", v)
            for r in (rs, rb):
                await r.wait_for(lambda r=r: _counts(r)[-1:] == [20], 5, "the last value")  # type: ignore[misc]
            got_small, got_big = _counts(rs), _counts(rb)

    # queue 50: every change arrives, in order, and nothing is reported lost
    assert got_big == list(range(21)) and big.health.overflows == 0 and big.loss.total == 0
    # queue 3: the server kept the newest values and dropped the rest without an Overflow bit ...
    assert len(got_small) < 21 and got_small[-3:] == [18, 19, 20]
    assert small.loss.flagged == 0
    # ... and the driver reported it instead of passing the gap on silently
    assert small.loss.full_queues >= 1 and small.health.overflows == small.loss.total >= 1
    assert small.health.snapshot()["overflows"] >= 1
    warnings = [e for e in logs if e["event"] == "subscription_values_lost"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"  # once, not once per publish
    assert warnings[0]["full_queues"] >= 1 and warnings[0]["queue_size"] == 3


async def test_a_value_the_server_flags_with_the_overflow_bit_is_delivered_and_counted(
    server: OpcUaNodeServer,
) -> None:
    # what a compliant server sends after discarding values: Good + InfoType DataValue + Overflow
    d = _subscriber(server, queue_size=10, interval_ms=100)
    async with running(d) as run:
        await run.wait_for(lambda: _counts(run) == [0], 10, "the initial value")
        await server.set("count", 7, status=ua.StatusCode(OVERFLOW_BITS))
        await run.wait_for(lambda: _counts(run) == [0, 7], 5, "the flagged value")
        await server.set("count", 8)
        await run.wait_for(lambda: _counts(run) == [0, 7, 8], 5, "the next value")
    assert run.latest()["count"].quality == "good"
    assert d.loss.flagged == 1 and d.loss.full_queues == 0 and d.health.overflows == 1


def _msg(seq: int, data: bool = True) -> ua.NotificationMessage:
    notif = [ua.DataChangeNotification(MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=201)])]
    return ua.NotificationMessage(SequenceNumber=seq, NotificationData=notif if data else [])


def test_skipped_notification_message_sequence_numbers_are_counted_keep_alives_included() -> None:
    # An asyncua server never skips a number on a live connection (TCP, and the secure channel's
    # own chunk sequence check turns loss in transit into a connection error), so this is the
    # accounting alone, fed the messages another server would send.
    loss = SubscriptionLoss()
    sizes = {201: 10}
    for m in (_msg(1), _msg(2), _msg(3, data=False), _msg(3), _msg(4, data=False), _msg(4)):
        loss.on_message(m, sizes)  # a keep-alive carries the next number without using it
    assert loss.missing_messages == 0
    loss.on_message(_msg(7), sizes)  # 5 and 6 never arrived
    assert loss.missing_messages == 2
    loss.on_message(_msg(10, data=False), sizes)  # a keep-alive announcing 10: 8 and 9 are gone
    assert loss.missing_messages == 4 and loss.total == 4
    loss.on_message(_msg(0, data=False), sizes)  # asyncua's own "connection lost" status: not a server number
    loss.on_message(_msg(1), sizes)  # numbering restarted (wrap, or a new subscription): no loss
    loss.on_message(_msg(2), sizes)
    assert loss.missing_messages == 4
    loss.new_subscription()
    loss.on_message(_msg(40), sizes)  # a new subscription may start anywhere
    assert loss.missing_messages == 4
