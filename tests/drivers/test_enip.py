"""The EtherNet/IP driver against cpppo's Logix simulator on 127.0.0.1 (peer_enip), plus its
tag-name parsing and reply decoding."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

from config.models import Signal
from drivers.base import Sample, TagError, create_driver
from drivers.enip import EnipDriver, decode_reply, parse_tag
from tests.drivers.conftest import free_port
from tests.drivers.peer_enip import EnipPeer


@pytest.fixture
async def peer() -> AsyncIterator[EnipPeer]:
    p = EnipPeer(free_port())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _driver(peer: EnipPeer, tags: dict[str, Signal], **plc: object) -> EnipDriver:
    cfg = peer.plc_config(100)
    for k, v in plc.items():
        setattr(cfg, k, v)
    d = create_driver("filler", cfg, tags, backoff_initial_s=0.1, backoff_max_s=1.0)
    assert isinstance(d, EnipDriver)
    return d


async def _read_once(d: EnipDriver) -> dict[str, Sample]:
    await d.connect()
    try:
        return {s.tag: s for s in await d.read()}
    finally:
        await d.close()


async def test_a_type_that_differs_from_the_plc_is_a_clear_error_not_a_wrong_number(peer: EnipPeer) -> None:
    tags = {
        "temp_as_dint": Signal(plc="enip", address="Station.Temp", type="int32"),
        "total": Signal(plc="enip", address="Line3_Total", type="int32"),
    }
    got = await _read_once(_driver(peer, tags))
    assert got["temp_as_dint"].quality == "bad"
    assert "REAL in the PLC but the config says int32" in (got["temp_as_dint"].error or "")
    assert got["total"].value == peer.values["total"]


async def test_a_bit_of_a_dint_follows_the_bit(peer: EnipPeer) -> None:
    tags = {"bit5": Signal(plc="enip", address="Status.5", type="bool")}
    assert (await _read_once(_driver(peer, tags)))["bit5"].value is True
    await peer.set_value("status_bit", 0b11011111)
    assert (await _read_once(_driver(peer, tags)))["bit5"].value is False


async def test_upload_tags_on_a_plc_without_a_tag_list_falls_back_to_config_types(peer: EnipPeer) -> None:
    got = await _read_once(_driver(peer, peer.tags(), upload_tags=True))
    want = peer.expected()
    assert {n: s.value for n, s in got.items()} == want


async def test_a_string_bigger_than_the_connection_size_is_read_fragmented(peer: EnipPeer) -> None:
    text = "".join(chr(65 + i % 26) for i in range(700))
    await peer.set_value("product", text)
    tags = {
        "product": Signal(plc="enip", address="Product", type="string", length=700),
        "total": Signal(plc="enip", address="Line3_Total", type="int32"),
    }
    d = _driver(peer, tags)
    d.connection_size = 500  # a standard (not large) Forward Open
    got = await _read_once(d)
    assert got["product"].value == text
    assert got["total"].value == peer.values["total"]


async def test_many_tags_are_packed_into_few_multi_service_requests(peer: EnipPeer) -> None:
    tags = {f"c{i}": Signal(plc="enip", address=f"Counts[{i % 10}]", type="int32") for i in range(60)}
    d = _driver(peer, tags)
    d.connection_size = 500
    await d.connect()
    try:
        assert d._plc is not None
        requests = d._requests(d._plc, list(d._tags.values()))
        got = await d.read()
    finally:
        await d.close()
    assert 2 <= len(requests) <= 6  # ~14 bytes per request item, ~16 per reply, 500-byte packets
    assert all(s.quality == "good" for s in got)
    assert {s.value for s in got if s.tag in ("c3", "c13")} == {peer.values["count3"]}


# ---------------------------------------------------------------- parsing and decoding


def test_a_numeric_suffix_on_a_bool_is_a_bit_and_on_anything_else_an_error() -> None:
    t = parse_tag("b", Signal(plc="p", address="Status.5", type="bool"))
    assert (t.plc_tag, t.bit) == ("Status", 5)
    t = parse_tag("m", Signal(plc="p", address="Station.Temp", type="float32"))
    assert (t.plc_tag, t.bit) == ("Station.Temp", None)
    t = parse_tag("p", Signal(plc="p", address="Program:Main.Speed", type="int16"))
    assert (t.plc_tag, t.bit) == ("Program:Main.Speed", None)
    with pytest.raises(TagError, match="its type must be bool"):
        parse_tag("x", Signal(plc="p", address="Status.5", type="int32"))
    with pytest.raises(TagError, match="bad Logix tag name"):
        parse_tag("x", Signal(plc="p", address="Counts[3", type="int32"))


def test_a_logix_string_structure_reply_decodes_to_its_text() -> None:
    tag = parse_tag("s", Signal(plc="p", address="Product", type="string"))
    data = b"\xa0\x02\xce\x0f" + struct.pack("<i", 5) + b"SKU-7".ljust(82, b"\0") + b"\0\0"
    assert decode_reply(data, tag) == "SKU-7"
    assert decode_reply(b"\xda\x00\x03abc", tag) == "abc"  # SHORT_STRING


def test_an_integer_reply_for_a_float_tag_is_rejected() -> None:
    tag = parse_tag("f", Signal(plc="p", address="Temp", type="float32"))
    with pytest.raises(TagError, match="DINT in the PLC but the config says float32"):
        decode_reply(b"\xc4\x00" + struct.pack("<i", 7), tag)
