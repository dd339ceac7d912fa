"""EtherNet/IP and S7 drivers against their local peers, beside the raw library doing the same
reads in a bare loop. Prints values/s and requests/s per side and the ratio (driver / raw; target
>= 0.8). Both sides are measured in the same run on the same peer, so the ratio is what counts.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.models import Signal
from drivers.base import create_driver

SECONDS = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _driver_rate(cfg: object, tags: dict[str, Signal]) -> tuple[float, float]:
    d = create_driver("bench", cfg, tags)  # type: ignore[arg-type]
    await d.connect()
    n = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < SECONDS:
            samples = await d.read()
            assert all(s.quality == "good" for s in samples), samples
            n += 1
    finally:
        await d.close()
    dt = time.perf_counter() - t0
    return n * len(tags) / dt, n / dt


def _report(name: str, drv: tuple[float, float], raw: tuple[float, float]) -> None:
    print(f"{name}: driver {drv[0]:,.0f} values/s ({drv[1]:,.0f} polls/s); "
          f"raw {raw[0]:,.0f} values/s ({raw[1]:,.0f} polls/s); ratio {drv[0] / raw[0]:.2f}")  # fmt: skip


# The S7 sides are measured in interleaved slices (driver, raw, raw, ..., driver, raw, ...) so that
# load from other processes on the machine drifts over all sides alike.
S7_ROUNDS = 6
S7_SLICE = 0.5

Runner = Callable[[float], Awaitable[int]]  # poll for about `seconds`, return the number of polls


async def _interleaved(runners: dict[str, Runner]) -> dict[str, float]:
    """Polls per second of each runner, run in turns of S7_SLICE seconds for S7_ROUNDS rounds."""
    polls = dict.fromkeys(runners, 0)
    spent = dict.fromkeys(runners, 0.0)
    for _ in range(S7_ROUNDS):
        for name, run in runners.items():
            t0 = time.perf_counter()
            polls[name] += await run(S7_SLICE)
            spent[name] += time.perf_counter() - t0
    return {name: polls[name] / spent[name] for name in runners}


class _S7Driver:
    """The lineside driver, connected once, polled in slices."""

    def __init__(self, cfg: Any, tags: dict[str, Signal], bad: frozenset[str] = frozenset()) -> None:
        from drivers.s7 import S7Driver

        self.d = S7Driver("bench", cfg, tags)
        self.bad = bad
        self.polls = 0

    async def run(self, seconds: float) -> int:
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            samples = await self.d.read()
            n += 1
        assert all((s.quality == "good") != (s.tag in self.bad) for s in samples), samples
        self.polls += n
        return n


class _S7Raw:
    """python-snap7's own blocking client in a bare loop (in a thread, as a blocking client must
    be run beside an event loop): per poll, each read once. ``multi``: read_multi_vars of the
    items (at most 20 a call; the library merges neighbours itself); ``area``: read_area of each
    item (one request each)."""

    def __init__(self, port: int, reads: list[tuple[str, list[dict[str, Any]]]]) -> None:
        from snap7.client import Client

        self.c = Client()
        self.c.connect("127.0.0.1", 0, 1, port)
        self.reads = reads

    def _loop(self, seconds: float) -> int:
        c, n = self.c, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for how, items in self.reads:
                if how == "multi":
                    c.read_multi_vars(items)
                else:
                    for it in items:
                        c.read_area(it["area"], it["db_number"], it["start"], it["size"])
            n += 1
        return n

    async def run(self, seconds: float) -> int:
        return await asyncio.to_thread(self._loop, seconds)


class _S7RawAsync:
    """python-snap7's asyncio client (the driver's I/O model) in a bare loop: read_area of each
    item once per poll."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        from snap7.async_client import AsyncClient

        self.c = AsyncClient()
        self.items = items

    async def run(self, seconds: float) -> int:
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for it in self.items:
                await self.c.read_area(it["area"], it["db_number"], it["start"], it["size"])
            n += 1
        return n


def _items(tags: dict[str, Signal]) -> list[dict[str, Any]]:
    from drivers.s7 import _byte_count, parse_address

    out = []
    for sig in tags.values():
        a = parse_address(sig.address)
        out.append({"area": a.area, "db_number": a.db, "start": a.byte, "size": _byte_count(a, sig)})
    return out


def _s7_report(title: str, ntags: int, rates: dict[str, float], requests_per_poll: float) -> None:
    drv = rates["driver"]
    print(f"{title}: driver {drv * ntags:,.0f} values/s, {drv:,.0f} polls/s,"
          f" {drv * requests_per_poll:,.0f} requests/s ({requests_per_poll:.2f} per poll)")  # fmt: skip
    for name, rate in rates.items():
        if name != "driver":
            print(f"  raw {name}: {rate * ntags:,.0f} values/s ({rate:,.0f} polls/s); ratio {drv / rate:.2f}")


async def bench_s7() -> None:
    from snap7.type import Area

    from tests.drivers.peer_s7 import S7Peer

    peer = S7Peer(_free_port())
    await peer.start()
    try:
        # 1. 30 neighbouring tags of one DB (the case)
        tags = {f"w{i}": Signal(plc="s7", address=f"DB10.DBW{2 * i}", type="int16") for i in range(20)}
        tags |= {f"d{i}": Signal(plc="s7", address=f"DB10.DBD{4 * i}", type="int32") for i in range(10)}
        drv = _S7Driver(peer.plc_config(), tags)
        await drv.d.connect()
        items = _items(tags)
        blocks = [
            {"area": Area(b.area), "db_number": b.db, "start": b.start, "size": b.size} for b in drv.d.blocks
        ]
        multi = _S7Raw(peer.port, [("multi", items[:20]), ("multi", items[20:])])
        same = _S7Raw(peer.port, [("area", blocks)])
        same_async = _S7RawAsync(blocks)
        await same_async.c.connect("127.0.0.1", 0, 1, peer.port)
        rates = await _interleaved({
            "driver": drv.run,
            "read_multi_vars of the same 30 tags": multi.run,
            f"read_area of the driver's {len(blocks)} merged block(s)": same.run,
            "AsyncClient.read_area of the same block(s)": same_async.run,
        })  # fmt: skip
        _s7_report("s7, 30 tags of one DB", len(tags), rates, drv.d.requests / drv.polls)
        await drv.d.close()
        await same_async.c.disconnect()
        multi.c.disconnect()
        same.c.disconnect()

        # 2. 12 tags of every type over four areas (the contract peer's layout)
        tags = peer.tags()
        drv = _S7Driver(peer.plc_config(), tags)
        await drv.d.connect()
        multi = _S7Raw(peer.port, [("multi", _items(tags))])
        rates = await _interleaved({"driver": drv.run, "read_multi_vars of the same 12 tags": multi.run})
        _s7_report("s7, 12 tags of every type in 4 areas", len(tags), rates, drv.d.requests / drv.polls)
        await drv.d.close()
        multi.c.disconnect()

        # 3. the same 12 plus one address past DB10's end: DB10 is read tag by tag (no raw
        # counterpart: read_multi_vars fails as a whole on one bad item)
        tags["past_end"] = Signal(plc="s7", address="DB10.DBD62", type="int32")
        drv = _S7Driver(peer.plc_config(), tags, bad=frozenset({"past_end"}))
        await drv.d.connect()
        await drv.run(0.1)  # the poll that finds the bad tag and splits DB10
        before = drv.d.requests, drv.polls
        rates = await _interleaved({"driver": drv.run})
        per_poll = (drv.d.requests - before[0]) / (drv.polls - before[1])
        _s7_report("s7, 13 tags, one past DB10's end (DB10 read tag by tag)", len(tags), rates, per_poll)
        await drv.d.close()
    finally:
        await peer.stop()


async def bench_enip() -> None:
    from pycomm3 import LogixDriver
    from pycomm3.cip import DataTypes

    from tests.drivers.peer_enip import EnipPeer

    peer = EnipPeer(_free_port())
    await peer.start()
    try:
        tags = {f"c{i}": Signal(plc="enip", address=f"Counts[{i}]", type="int32") for i in range(10)}
        tags |= {"total": Signal(plc="enip", address="Line3_Total", type="int32")}
        drv = await _driver_rate(peer.plc_config(), tags)

        def raw_loop() -> tuple[float, float]:
            plc = LogixDriver(f"127.0.0.1:{peer.port}", init_tags=False)
            plc.open()
            dint = {"tag_type": "atomic", "data_type": "DINT", "data_type_name": "DINT",
                    "type_class": DataTypes.get("DINT"), "dim": 0}  # fmt: skip
            plc._tags = {"Counts": dint, "Line3_Total": dint}  # what an upload would have filled in
            names = [s.address for s in tags.values()]
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < SECONDS:
                res = plc.read(*names)
                assert all(r.error is None for r in res)
                n += 1
            dt = time.perf_counter() - t0
            plc.close()
            return n * len(names) / dt, n / dt

        raw = await asyncio.to_thread(raw_loop)
        _report("enip (11 tags)", drv, raw)
    finally:
        await peer.stop()


async def main() -> None:
    await bench_s7()
    await bench_enip()


if __name__ == "__main__":
    asyncio.run(main())
