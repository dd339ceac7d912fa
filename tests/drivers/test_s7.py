"""The S7 driver against python-snap7's real server on 127.0.0.1 (peer_s7), plus its address
parser and PDU planner."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snap7.type import Area, SrvArea

from config.models import Signal
from drivers.base import DriverError, Sample, TagError, create_driver
from drivers.s7 import (
    MAX_ITEMS_PER_REQUEST,
    S7Address,
    S7Driver,
    max_item_bytes,
    parse_address,
    plan_blocks,
    plan_reads,
)
from tests.drivers.peer_s7 import S7Peer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def peer() -> AsyncIterator[S7Peer]:
    p = S7Peer(_free_port())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _driver(peer: S7Peer, tags: dict[str, Signal] | None = None, interval_ms: int = 100) -> S7Driver:
    d = create_driver(
        "press", peer.plc_config(interval_ms), tags or peer.tags(), backoff_initial_s=0.1, backoff_max_s=1.0
    )
    assert isinstance(d, S7Driver)
    return d


def _by_tag(samples: list[Sample]) -> dict[str, Sample]:
    return {s.tag: s for s in samples}


async def _read_once(d: S7Driver) -> dict[str, Sample]:
    await d.connect()
    try:
        return _by_tag(await d.read())
    finally:
        await d.close()


# ---------------------------------------------------------------- against the real server


async def test_every_supported_type_reads_the_value_the_plc_holds(peer: S7Peer) -> None:
    got = await _read_once(_driver(peer))
    for name, want in peer.expected().items():
        assert got[name].quality == "good", got[name]
        assert got[name].value == want, name
        assert got[name].source_ts is None  # S7 has no source timestamps; never invent one


async def test_a_missing_db_or_an_offset_past_the_db_end_is_a_clear_per_tag_error(peer: S7Peer) -> None:
    tags = peer.tags()
    name, sig = peer.wrong_address_tag()
    tags[name] = sig
    tags["past_end"] = Signal(plc="s7", address="DB10.DBD62", type="int32")  # DB10 is 64 bytes
    got = await _read_once(_driver(peer, tags))
    assert got[name].quality == "bad" and "DB99" in (got[name].error or "")
    assert "Object does not exist" in (got[name].error or "")
    assert got["past_end"].quality == "bad" and "DB10.DBD62" in (got["past_end"].error or "")
    for other, want in peer.expected().items():
        assert got[other].quality == "good" and got[other].value == want


async def test_an_address_that_does_not_match_the_type_is_a_per_tag_config_error(peer: S7Peer) -> None:
    tags = {
        "word_as_dint": Signal(plc="s7", address="DB10.DBW4", type="int32"),
        "bool_without_bit": Signal(plc="s7", address="MW20", type="bool"),
        "garbage": Signal(plc="s7", address="DB10,DBD4", type="int32"),
        "ok": Signal(plc="s7", address="DB10.DBD8", type="uint32"),
    }
    got = await _read_once(_driver(peer, tags))
    assert "needs 4" in (got["word_as_dint"].error or "")
    assert "bit address" in (got["bool_without_bit"].error or "")
    assert "bad S7 address" in (got["garbage"].error or "")
    assert got["ok"].value == peer.expected()["u32"]


async def test_a_string_longer_than_a_small_pdu_is_read_in_chunks(peer: S7Peer) -> None:
    # A 200-character STRING (202 bytes) does not fit one item of a 240-byte PDU reply together
    # with the other tags; the driver must split it and still return the whole text.
    buf = peer.areas[(SrvArea.DB, 10)]  # the server serves this very bytearray
    text = "".join(chr(65 + i % 26) for i in range(200))
    buf.extend(bytes([200, 200]) + text.encode())  # DB10.DBB64 onwards
    tags = peer.tags()
    tags["long_text"] = Signal(plc="s7", address="DB10.DBB64", type="string", length=200)
    d = _driver(peer, tags)
    d.pdu_request = 240
    await d.connect()
    try:
        assert d.pdu_length == 240
        got = _by_tag(await d.read())
    finally:
        await d.close()
    assert got["long_text"].value == text
    assert got["i32"].value == peer.expected()["i32"]


async def _run(d: S7Driver, got: list[Sample]) -> asyncio.Task[None]:
    return asyncio.create_task(d.run(lambda batch: got.extend(batch)))


async def _wait_for(pred: Any, within: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def test_a_changed_value_is_seen_within_two_intervals(peer: S7Peer) -> None:
    got: list[Sample] = []
    d = _driver(peer, interval_ms=100)
    task = await _run(d, got)
    try:
        await _wait_for(lambda: any(s.tag == "u32" for s in got), 5)
        await peer.set_value("u32", 123)
        await _wait_for(lambda: any(s.tag == "u32" and s.value == 123 for s in got), 0.2 + 0.15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_plc_stopped_and_restarted_gives_bad_samples_then_data_again(peer: S7Peer) -> None:
    got: list[Sample] = []
    states: list[bool] = []
    d = _driver(peer, interval_ms=100)
    task = asyncio.create_task(d.run(lambda b: got.extend(b), lambda up, err: states.append(up)))
    try:
        await _wait_for(lambda: d.health.connected and got, 5)
        await peer.stop()
        await _wait_for(lambda: not d.health.connected, 5)
        assert any(s.quality == "bad" and s.tag == "i16" and "disconnected" in (s.error or "") for s in got)
        await peer.set_value("i16", 777)  # changed while the PLC was away
        await peer.start()
        await _wait_for(lambda: any(s.tag == "i16" and s.value == 777 for s in got), 10)
        assert d.health.connected and d.health.reconnects == 1
        assert states[:2] == [True, False] and states[-1] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not d.health.connected


async def test_tags_too_far_apart_to_merge_are_read_20_items_per_request(peer: S7Peer) -> None:
    buf = peer.areas[(SrvArea.DB, 10)]
    buf.extend(bytes(200 - len(buf)))  # DB10 grows to 200 bytes: 45 words, 4 bytes apart
    for i in range(45):
        buf[4 * i : 4 * i + 2] = (1000 + i).to_bytes(2, "big")
    tags = {f"w{i}": Signal(plc="s7", address=f"DB10.DBW{4 * i}", type="int16") for i in range(45)}
    # 2-byte gaps between the words, at most 1 allowed: nothing merges
    d = create_driver("press", msgspec.structs.replace(peer.plc_config(), max_gap=1), tags)
    assert isinstance(d, S7Driver)
    await d.connect()
    try:
        assert [len(r) for r in d.plan.requests] == [20, 20, 5]
        got = _by_tag(await d.read())
    finally:
        await d.close()
    assert {t: s.value for t, s in got.items()} == {f"w{i}": 1000 + i for i in range(45)}
    assert d.requests == 3


def _count_peer_items(peer: S7Peer) -> list[tuple[int, int, int, int]]:
    """Every item the peer answered with data, as (area, db, start, size), in arrival order."""
    seen: list[tuple[int, int, int, int]] = []
    srv = peer._server
    assert srv is not None
    srv.set_read_events_callback(lambda e: seen.append((e.EvtParam1, e.EvtParam2, e.EvtParam3, e.EvtParam4)))
    return seen


async def test_neighbouring_tags_of_one_area_are_read_as_one_item_in_one_request(peer: S7Peer) -> None:
    seen = _count_peer_items(peer)
    d = _driver(peer)
    await d.connect()
    try:
        for _ in range(3):
            got = _by_tag(await d.read())
    finally:
        await d.close()
    assert all(got[t].quality == "good" and got[t].value == v for t, v in peer.expected().items())
    assert d.requests == 3  # one request per poll for all 12 tags
    # DB10's ten tags (bytes 0..61) are one item; MW20, IW4 and Q0.0 one item each.
    one_poll = sorted(
        [(SrvArea.DB, 10, 0, 62), (SrvArea.MK, 0, 20, 2), (SrvArea.PE, 0, 4, 2), (SrvArea.PA, 0, 0, 1)]
    )
    assert sorted(seen) == sorted(one_poll * 3)


async def test_a_wrong_address_inside_a_merged_block_falls_back_to_per_tag_reads_and_stays_split(
    peer: S7Peer,
) -> None:
    tags = peer.tags()
    tags["past_end"] = Signal(plc="s7", address="DB10.DBD62", type="int32")  # DB10 is 64 bytes
    tags["no_db_a"] = Signal(plc="s7", address="DB99.DBD0", type="int32")  # DB99 does not exist
    tags["no_db_b"] = Signal(plc="s7", address="DB99.DBW4", type="int16")
    seen = _count_peer_items(peer)
    d = _driver(peer, tags)
    await d.connect()
    try:
        merged_requests = len(d.plan.requests)
        assert merged_requests == 1 and len(d.plan.units) == 5  # DB10, DB99, MW20, IW4, Q0.0
        first = _by_tag(await d.read())
        after_first = d.requests
        seen.clear()
        second = _by_tag(await d.read())
    finally:
        await d.close()
    for got in (first, second):  # the fallback already answers the poll that found the bad tag
        assert got["past_end"].quality == "bad" and "DB10.DBD62" in (got["past_end"].error or "")
        assert "reach byte 65" in (got["past_end"].error or "")
        for name in ("no_db_a", "no_db_b"):
            assert got[name].quality == "bad" and "Object does not exist" in (got[name].error or "")
            assert tags[name].address in (got[name].error or "")
        for other, want in peer.expected().items():
            assert got[other].quality == "good" and got[other].value == want, other
    assert after_first == 2  # the merged request, then the per-tag retry of the two failed blocks
    assert d.requests - after_first == 1  # split from then on: 15 items still fit one request
    # The second poll read DB10 tag by tag (the failing tag answered no data) and kept the
    # good blocks merged.
    db10 = sorted(x for x in seen if x[0] == SrvArea.DB)
    assert db10 == sorted((SrvArea.DB, 10, a.byte, n) for a, n in _db10_spans(peer))
    assert (SrvArea.MK, 0, 20, 2) in seen and (SrvArea.PE, 0, 4, 2) in seen
    assert [b.split for b in d.blocks] == [b.area == Area.DB for b in d.blocks]


def _db10_spans(peer: S7Peer) -> list[tuple[S7Address, int]]:
    sizes = {
        "bool": 1,
        "int16": 2,
        "int32": 4,
        "uint32": 4,
        "float32": 4,
        "int64": 8,
        "uint64": 8,
        "float64": 8,
    }
    out = []
    for sig in peer.tags().values():
        a = parse_address(sig.address)
        if a.area == Area.DB:
            out.append((a, 2 + (sig.length or 0) if sig.type == "string" else sizes[sig.type]))
    return out


async def test_after_a_reconnect_a_fixed_block_is_read_merged_again(peer: S7Peer) -> None:
    tags = peer.tags()
    tags["past_end"] = Signal(plc="s7", address="DB10.DBD62", type="int32")
    d = _driver(peer, tags)
    await d.connect()
    try:
        assert _by_tag(await d.read())["past_end"].quality == "bad"
        assert len(d.plan.units) == 13  # DB10 split into its 10 tags, plus 3 merged blocks
    finally:
        await d.close()
    peer.areas[(SrvArea.DB, 10)].extend(bytes(4))  # the program was fixed: DB10 is 68 bytes now
    await d.connect()
    try:
        assert len(d.plan.units) == 4
        got = _by_tag(await d.read())
    finally:
        await d.close()
    assert got["past_end"].quality == "good" and got["past_end"].value == 0
    assert got["i32"].value == peer.expected()["i32"]


class _Link:
    """A real TCP relay between the driver and the peer on 127.0.0.1 that counts the ISO-on-TCP
    packets the driver sends and can go silent (a PLC that stops answering)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0  # TPKT packets driver -> PLC
        self.silent = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> _Link:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        pr, pw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [cw, pw]

        async def up() -> None:  # frame by frame, so that requests can be counted
            while True:
                head = await cr.readexactly(4)
                body = await cr.readexactly(int.from_bytes(head[2:4], "big") - 4)
                self.sent += 1
                pw.write(head + body)

        async def down() -> None:
            while data := await pr.read(65536):
                if not self.silent:
                    cw.write(data)

        try:
            await asyncio.gather(up(), down())
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            cw.close()
            pw.close()


def _via(link: _Link, peer: S7Peer, tags: dict[str, Signal], timeout_s: float = 1.0) -> S7Driver:
    plc = msgspec.structs.replace(peer.plc_config(), port=link.port, timeout_s=timeout_s)
    d = create_driver("press", plc, tags)
    assert isinstance(d, S7Driver)
    return d


async def test_thirty_neighbouring_tags_cost_one_request_per_poll_on_the_wire(peer: S7Peer) -> None:
    buf = peer.areas[(SrvArea.DB, 10)]
    tags = {f"w{i}": Signal(plc="s7", address=f"DB10.DBW{2 * i}", type="int16") for i in range(20)}
    tags |= {f"d{i}": Signal(plc="s7", address=f"DB10.DBD{4 * i}", type="int32") for i in range(10)}
    want = {f"w{i}": int.from_bytes(buf[2 * i : 2 * i + 2], "big", signed=True) for i in range(20)}
    want |= {f"d{i}": int.from_bytes(buf[4 * i : 4 * i + 4], "big", signed=True) for i in range(10)}
    async with _Link(peer.port) as link:
        d = _via(link, peer, tags)
        await d.connect()
        try:
            link.sent = 0  # the connection handshake is not a poll
            for _ in range(5):
                got = _by_tag(await d.read())
                assert {t: s.value for t, s in got.items()} == want
        finally:
            await d.close()
    assert link.sent == 5 and d.requests == 5  # unmerged, it was 2 per poll (20 + 10 items)


async def test_a_plc_that_stops_answering_fails_the_read_within_its_timeout(peer: S7Peer) -> None:
    async with _Link(peer.port) as link:
        d = _via(link, peer, peer.tags(), timeout_s=0.3)
        await d.connect()
        try:
            assert all(s.quality == "good" for s in await d.read())
            link.silent = True
            t0 = time.monotonic()
            with pytest.raises(DriverError, match=r"no answer within 0.3s"):
                await d.read()
            assert time.monotonic() - t0 < 3.0  # bounded by timeout_s, not hanging
        finally:
            await d.close()
        d = _via(link, peer, peer.tags(), timeout_s=0.3)  # and a new connection gets no handshake
        with pytest.raises(DriverError, match="cannot connect"):
            await d.connect()
        await d.close()


# ---------------------------------------------------------------- address parsing and planning


@pytest.mark.parametrize(
    ("text", "area", "db", "byte", "bit", "size"),
    [
        ("DB10.DBD4", Area.DB, 10, 4, None, "D"),
        ("db10.dbx0.1", Area.DB, 10, 0, 1, "X"),
        ("DB1.DBW200", Area.DB, 1, 200, None, "W"),
        ("MW20", Area.MK, 0, 20, None, "W"),
        ("M0.1", Area.MK, 0, 0, 1, "X"),
        ("%MD24", Area.MK, 0, 24, None, "D"),
        ("I0.0", Area.PE, 0, 0, 0, "X"),
        ("E1.7", Area.PE, 0, 1, 7, "X"),
        ("IW4", Area.PE, 0, 4, None, "W"),
        ("Q0.0", Area.PA, 0, 0, 0, "X"),
        ("AB3", Area.PA, 0, 3, None, "B"),
    ],
)
def test_siemens_addresses_parse_to_area_db_byte_and_bit(
    text: str, area: Area, db: int, byte: int, bit: int | None, size: str
) -> None:
    a = parse_address(text)
    assert (a.area, a.db, a.byte, a.bit, a.size) == (area, db, byte, bit, size)


@pytest.mark.parametrize("text", ["DB10.DBX0.8", "DB10.DBX0", "MW20.1", "DB10", "X10", "DB10.DBQ4", ""])
def test_malformed_addresses_are_rejected_with_the_address_in_the_message(text: str) -> None:
    with pytest.raises(TagError, match="bad S7 address"):
        parse_address(text)


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(
        st.tuples(
            st.sampled_from([(Area.DB, 1), (Area.DB, 2), (Area.MK, 0)]),
            st.integers(0, 2000),
            st.integers(1, 600),
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    ),
    pdu=st.sampled_from([240, 480, 960]),
    max_gap=st.integers(0, 64),
)
def test_planned_requests_fit_the_pdu_and_the_item_limit_and_cover_every_tag(
    spans: list[tuple[tuple[Area, int], int, int, bool]], pdu: int, max_gap: int
) -> None:
    tag_spans = {
        f"t{i}": (S7Address(a, db, byte, None, "B"), n) for i, ((a, db), byte, n, _) in enumerate(spans)
    }
    blocks = plan_blocks(tag_spans, max_gap, max_item_bytes(pdu))
    for b, (_, _, _, split) in zip(blocks, spans, strict=False):
        b.split = split  # some blocks fell back to per-tag reads
    plan = plan_reads(blocks, tag_spans, pdu)
    for g in plan.requests:
        assert 1 <= len(g) <= MAX_ITEMS_PER_REQUEST
        assert 12 + 12 * len(g) <= pdu  # request
        assert 14 + sum(4 + it.size + (it.size % 2) for it in g) <= pdu  # reply, with fill bytes
    flat = [it for g in plan.requests for it in g]
    # Every tag is in exactly one block of its own area and DB, and that block spans its bytes.
    assert sorted(t for b in blocks for t in b.tags) == sorted(tag_spans)
    for b in blocks:
        for t in b.tags:
            a, n = tag_spans[t]
            assert (
                (int(a.area), a.db) == (b.area, b.db) and b.start <= a.byte and a.byte + n <= b.start + b.size
            )
        assert len(b.tags) == 1 or b.size <= max_item_bytes(pdu)
    # Neighbouring blocks could not have been merged: too far apart, or too big together.
    same_region = [(x, y) for x, y in itertools.pairwise(blocks) if (x.area, x.db) == (y.area, y.db)]
    for x, y in same_region:
        too_big = max(y.start + y.size, x.start + x.size) - x.start > max_item_bytes(pdu)
        assert y.start - (x.start + x.size) > max_gap or too_big
    # Each unit's items are its bytes, in order, with no gap or overlap.
    for u, (b, tag) in enumerate(plan.units):
        mine = [it for it in flat if it.unit == u]
        start, size = (b.start, b.size) if tag is None else (tag_spans[tag][0].byte, tag_spans[tag][1])
        assert tag is None or b.split
        assert mine[0].start == start and sum(it.size for it in mine) == size
        assert all(q.start == p.start + p.size for p, q in itertools.pairwise(mine))
        assert all((it.area, it.db) == (b.area, b.db) for it in mine)
    assert {u for u in range(len(plan.units))} == {it.unit for it in flat}
