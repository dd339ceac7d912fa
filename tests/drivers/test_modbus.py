"""Modbus specifics: address forms, coalescing counted at the real server, orders, bad tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.models import ModbusPlc, Signal
from drivers.base import TagError, create_driver
from drivers.modbus import decode_registers, encode_registers, parse_address, plan_reads
from drivers.simulator.modbus_server import ModbusMemoryServer


def test_modicon_references_are_one_based_and_offsets_zero_based() -> None:
    assert parse_address("holding:40001").offset == 0
    assert parse_address("holding:40010") == parse_address("holding@9")
    assert parse_address("holding:400010").offset == 9
    assert parse_address("input:30001").table == "input"
    assert parse_address("coil:1").offset == 0 and parse_address("discrete:10001").offset == 0
    assert parse_address("unit=3/holding:40001").unit == 3


@pytest.mark.parametrize("bad", ["holding:10", "holding:30001", "register:40001", "holding", "coil@x"])
def test_an_ambiguous_or_malformed_address_is_rejected_at_construction_naming_the_tag(bad: str) -> None:
    with pytest.raises(TagError, match=f"tag speed: bad Modbus address '{bad}'"):
        create_driver("p", ModbusPlc(host="127.0.0.1"), {"speed": Signal(plc="p", address=bad, type="uint16")})


def test_a_non_bool_type_on_a_coil_is_rejected() -> None:
    with pytest.raises(TagError, match="tag run: coil 'coil:1' holds one bit"):
        create_driver("p", ModbusPlc(host="127.0.0.1"), {"run": Signal(plc="p", address="coil:1", type="uint16")})


@settings(max_examples=60, deadline=None)
@given(
    t=st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64", "float64"]),
    wo=st.sampled_from(["big", "little"]), bo=st.sampled_from(["big", "little"]), data=st.data(),
)
def test_every_word_and_byte_order_round_trips(t: str, wo: str, bo: str, data: st.DataObject) -> None:
    bits = int("".join(ch for ch in t if ch.isdigit()))
    if t.startswith("float"):
        v = data.draw(st.floats(allow_nan=False, allow_infinity=False))
    elif t.startswith("u"):
        v = data.draw(st.integers(0, 2**bits - 1))
    else:
        v = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    sig = Signal(plc="p", address="holding:40001", type=t)  # type: ignore[arg-type]
    assert decode_registers(encode_registers(v, sig, wo, bo), sig, wo, bo) == v


def test_little_word_order_puts_the_low_word_first() -> None:
    sig = Signal(plc="p", address="holding:40001", type="uint32")
    assert encode_registers(0x12345678, sig, "little", "big") == [0x5678, 0x1234]
    assert encode_registers(0x12345678, sig, "big", "little") == [0x3412, 0x7856]


def test_reads_never_exceed_125_registers_and_gaps_beyond_max_gap_split() -> None:
    addrs = {f"t{i}": parse_address(f"holding@{i * 2}") for i in range(100)}  # 0..198, one reg each
    blocks = plan_reads(addrs, dict.fromkeys(addrs, 1), 1, max_gap=8)
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (126, 73)]
    far = {"a": parse_address("holding@0"), "b": parse_address("holding@20")}
    assert len(plan_reads(far, dict.fromkeys(far, 1), 1, max_gap=8)) == 2
    assert len(plan_reads(far, dict.fromkeys(far, 1), 1, max_gap=19)) == 1


async def test_200_registers_scattered_over_3_blocks_are_read_in_at_most_4_requests_per_poll() -> None:
    server = ModbusMemoryServer("127.0.0.1", 0, size=2000)
    await server.start()
    try:
        offsets = [*range(0, 70), *range(500, 600, 1), *range(1200, 1230)]  # 70 + 100 + 30 = 200
        for o in offsets:
            await server.set("holding", o, [o])
        tags = {f"r{o}": Signal(plc="p", address=f"holding@{o}", type="uint16") for o in offsets}
        d = create_driver("p", ModbusPlc(host="127.0.0.1", port=server.port), tags)
        await d.connect()
        try:
            before = server.requests
            samples = await d.read()
            per_poll = server.requests - before
            assert per_poll <= 4, f"{per_poll} requests for one poll"
            assert {s.tag: s.value for s in samples} == {f"r{o}": o for o in offsets}
        finally:
            await d.close()
    finally:
        await server.stop()


async def test_exception_2_in_a_merged_read_falls_back_to_per_tag_reads_and_stays_split() -> None:
    server = ModbusMemoryServer("127.0.0.1", 0, size=100)
    await server.start()
    try:
        await server.set("holding", 95, [7])
        tags = {"ok": Signal(plc="p", address="holding@95", type="uint16"),
                "missing": Signal(plc="p", address="holding@101", type="uint16")}  # beyond the device
        d = create_driver("p", ModbusPlc(host="127.0.0.1", port=server.port), tags)
        await d.connect()
        try:
            first = {s.tag: s for s in await d.read()}
            assert first["ok"].value == 7 and first["ok"].quality == "good"
            assert first["missing"].quality == "bad" and "holding@101" in (first["missing"].error or "")
            assert "illegal data address" in (first["missing"].error or "")
            before = server.requests
            await d.read()
            assert server.requests - before == 2  # per tag from now on, no failing merged read first
        finally:
            await d.close()
    finally:
        await server.stop()
