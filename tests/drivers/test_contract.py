"""One contract, every driver, each against its real protocol peer on 127.0.0.1.

Parametrized over every ``tests/drivers/peer_*.py`` exposing ``make_peer(port)`` (see
peer_api.py). A peer whose server cannot start here fails its tests; nothing is skipped.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import create_driver
from tests.drivers.conftest import free_port, running
from tests.drivers.peer_api import Peer

PEERS = sorted(p.stem[len("peer_"):] for p in Path(__file__).parent.glob("peer_*.py") if p.stem != "peer_api")
INTERVAL_MS = 100
FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}


@pytest.fixture(params=PEERS)
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    module = importlib.import_module(f"tests.drivers.peer_{request.param}")
    p: Peer = module.make_peer(free_port())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, int | float) and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    return bool(got == want) and type(got) is type(want)


async def test_every_supported_type_reads_the_value_the_peer_holds(peer: Peer) -> None:
    tags = peer.tags()
    driver = create_driver("p", peer.plc_config(INTERVAL_MS), tags, **FAST)
    async with running(driver) as run:
        await run.wait_for(lambda: set(run.latest()) >= set(tags), 15, "a sample of every tag")
        latest = run.latest()
        want = peer.expected()
        wrong = {t: (latest[t].value, latest[t].quality, latest[t].error, want[t])
                 for t in tags if not (latest[t].quality == "good" and same(latest[t].value, want[t]))}
        assert not wrong, f"{peer.driver}: read (value, quality, error, expected): {wrong}"
        assert all(s.recv_ts > 0 for s in run.samples())
        assert driver.health.connected and driver.health.samples > 0


async def test_a_changed_value_is_seen_within_two_intervals(peer: Peer) -> None:
    tags = peer.tags()
    name = next(t for t, s in tags.items() if s.type in ("int32", "uint32", "int16", "uint16") and s.scale == 1)
    interval_ms = 300
    driver = create_driver("p", peer.plc_config(interval_ms), {name: tags[name]}, **FAST)
    async with running(driver) as run:
        await run.wait_for(lambda: run.latest().get(name), 15, "the first sample")
        for new in (1234, 4321):
            await peer.set_value(name, new)
            t0 = time.monotonic()
            mark = len(run.batches)
            await run.wait_for(lambda: any(s.value == new for s in run.samples(mark)), 5, f"{new}")  # noqa: B023
            seen_at = next(t for t, b in run.batches[mark:] if any(s.value == new for s in b))
            assert seen_at - t0 <= 2 * interval_ms / 1000, f"{peer.driver}: seen after {seen_at - t0:.3f} s"


async def test_peer_restart_gives_bad_quality_then_data_again_without_restarting_the_driver(peer: Peer) -> None:
    tags = peer.tags()
    driver = create_driver("p", peer.plc_config(INTERVAL_MS), tags, **FAST)
    async with running(driver) as run:
        await run.wait_for(lambda: len(run.latest()) == len(tags), 15, "a sample of every tag")
        mark = len(run.batches)
        await peer.stop()
        await run.wait_for(
            lambda: any(not c for c, _ in run.states) and any(s.quality == "bad" for s in run.samples(mark)),
            10, "a disconnected state and bad-quality samples",
        )
        assert not driver.health.connected
        assert driver.health.last_error
        await peer.start()
        mark = len(run.batches)
        await run.wait_for(
            lambda: {t for t, s in run.latest(mark).items() if s.quality == "good"} == set(tags),
            10, "good data again after the restart",
        )
        assert run.states[-1] == (True, None)
        assert driver.health.reconnects >= 1


async def test_a_wrong_address_gives_a_per_tag_error_while_other_tags_keep_flowing(peer: Peer) -> None:
    tags = peer.tags()
    bad_name, bad_sig = peer.wrong_address_tag()
    driver = create_driver("p", peer.plc_config(INTERVAL_MS), {**tags, bad_name: bad_sig}, **FAST)
    async with running(driver) as run:
        await run.wait_for(lambda: bad_name in run.latest() and len(run.latest()) == len(tags) + 1, 15,
                           "samples of every tag including the wrong one")
        bad = run.latest()[bad_name]
        assert bad.quality == "bad" and bad.value is None
        # clear = it names the address a person has to fix
        assert bad.error and bad_sig.address in bad.error, bad.error
        # the other tags keep flowing: a change made after the error was reported arrives good
        name = next(t for t, s in tags.items() if s.type in ("int32", "uint32", "int16", "uint16") and s.scale == 1)
        mark = len(run.batches)
        await peer.set_value(name, 777)
        await run.wait_for(lambda: any(s.tag == name and s.value == 777 and s.quality == "good"
                                       for s in run.samples(mark)), 5, "the changed value of a good tag")
        good = {t for t, s in run.latest().items() if s.quality == "good"}
        assert good == set(tags), f"only {good} good"
        assert driver.health.connected
        assert driver.health.bad_by_tag.get(bad_name, 0) >= 1
