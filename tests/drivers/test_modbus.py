"""Modbus specifics: address forms, coalescing counted at the real server, orders, bad tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.models import ModbusPlc, Signal
from drivers.base import TagError, create_driver
from drivers.modbus import ModbusDriver, decode_registers, encode_registers, parse_address, plan_reads
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


_BLOCK_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bool"]


@settings(max_examples=80, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from(_BLOCK_TYPES), st.integers(0, 130),  # type, offset (overlaps and gaps happen)
            # word, byte order: mostly the PLC's, so that whole blocks of big/big tags with gaps come up
            st.sampled_from([None, None, None, "big", "little"]), st.sampled_from([None, None, None, "big", "little"]),
            st.sampled_from([(1.0, 0.0), (0.1, -5.0), (2.0, 0.0), (1.0, 3.0)]),  # scale, offset
        ),
        min_size=1, max_size=40,
    ),
    plc_orders=st.sampled_from([("big", "big"), ("big", "big"), ("little", "big"), ("big", "little"),
                                ("little", "little")]),
    regs=st.lists(st.integers(0, 0xFFFF), min_size=140, max_size=140),
    max_gap=st.integers(0, 124),
)
def test_a_merged_read_decodes_every_tag_exactly_as_the_tag_by_tag_decode(
    specs: list[tuple[str, int, str | None, str | None, tuple[float, float]]],
    plc_orders: tuple[str, str], regs: list[int], max_gap: int,
) -> None:
    # NaN / inf floats and odd bytes in strings come from the random registers
    tags = {
        f"t{i}": Signal(plc="p", address=f"holding@{off}", type=t, word_order=wo, byte_order=bo,  # type: ignore[arg-type]
                        scale=sc, offset=of, length=5 if t == "string" else None)
        for i, (t, off, wo, bo, (sc, of)) in enumerate(specs)
    }
    plc = ModbusPlc(host="127.0.0.1", word_order=plc_orders[0], byte_order=plc_orders[1],  # type: ignore[arg-type]
                    max_gap=max_gap)
    d = create_driver("p", plc, tags)
    assert isinstance(d, ModbusDriver)
    seen = []
    for b in d.blocks:
        assert b.count <= 125
        data = regs[b.start : b.start + b.count]
        want = [d._decode(t, data, b.start, 1.0) for t in b.tags]
        assert d._decode_block(b, data, 1.0) == want
        assert d._decode_block(b, data, 1.0) == want  # and again, with the block's decoder already built
        seen += b.tags
        short = data[: b.count // 2]  # a short answer: the tags it does not cover go bad, the others not
        assert d._decode_block(b, short, 1.0) == [d._decode(t, short, b.start, 1.0) for t in b.tags]
    assert sorted(seen) == sorted(tags)


async def test_a_poll_of_mixed_types_orders_and_overlaps_reads_the_values_the_server_holds() -> None:
    server = ModbusMemoryServer("127.0.0.1", 0, size=200)
    await server.start()
    try:
        spec: dict[str, tuple[Signal, object]] = {
            "u16": (Signal(plc="p", address="holding@0", type="uint16"), 65000),
            "i16": (Signal(plc="p", address="holding@1", type="int16"), -2),
            "f32_ll": (Signal(plc="p", address="holding@2", type="float32", word_order="little",
                              byte_order="little"), 1.5),
            "i32_bl": (Signal(plc="p", address="holding@6", type="int32", byte_order="little"), -123456),
            "u64_lb": (Signal(plc="p", address="holding@8", type="uint64", word_order="little"), 2**63 + 9),
            "f64": (Signal(plc="p", address="holding@14", type="float64"), -0.25),
            "text": (Signal(plc="p", address="holding@20", type="string", length=6), "AB-12"),
            "flag": (Signal(plc="p", address="holding@24", type="bool"), True),
            "scaled": (Signal(plc="p", address="holding@25", type="int16", scale=0.5, offset=1.0), -8),
            "nan": (Signal(plc="p", address="holding@26", type="float32"), float("nan")),
            # a block of big/big tags with unrequested registers between them
            "far_u16": (Signal(plc="p", address="holding@100", type="uint16"), 7),
            "far_i32": (Signal(plc="p", address="holding@103", type="int32"), -70000),
            "far_f32": (Signal(plc="p", address="holding@110", type="float32"), 21.5),
        }
        for sig, value in spec.values():
            await server.set("holding", parse_address(sig.address).offset,
                             encode_registers(value, sig, sig.word_order or "big", sig.byte_order or "big"))
        tags = {name: sig for name, (sig, _) in spec.items()}
        tags["low_word_of_f64"] = Signal(plc="p", address="holding@17", type="uint16")  # overlaps f64
        d = create_driver("p", ModbusPlc(host="127.0.0.1", port=server.port), tags)
        await d.connect()
        try:
            for _ in range(2):  # the second poll reuses the block's decoder
                got = {s.tag: s for s in await d.read()}
                assert {t: got[t].value for t in spec if t != "nan"} == {
                    "u16": 65000, "i16": -2, "f32_ll": 1.5, "i32_bl": -123456, "u64_lb": 2**63 + 9,
                    "f64": -0.25, "text": "AB-12", "flag": True, "scaled": -3.0,
                    "far_u16": 7, "far_i32": -70000, "far_f32": 21.5,
                }
                assert got["low_word_of_f64"].value == encode_registers(-0.25, tags["f64"])[3]
                assert got["nan"].quality == "bad" and got["nan"].value is None
                assert "holding@26: not a finite number" == got["nan"].error
                assert all(s.quality == "good" for t, s in got.items() if t != "nan")
                assert [s.tag for s in await d.read()] == [t for b in d.blocks for t in b.tags]
        finally:
            await d.close()
    finally:
        await server.stop()
