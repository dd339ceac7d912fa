"""Every record type round-trips through JSON and MessagePack unchanged; ids and timestamps are stable."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.records import (
    RECORD_TYPES,
    AnyRecord,
    Batch,
    KpiRecord,
    Source,
    StopRecord,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    format_ts,
    natural_id,
    parse_ts,
    uuid7,
)

mi = msgspec.inspect
TS = st.integers(0, 4_102_444_800_000).map(lambda ms: format_ts(ms / 1000))
# Floats as msgpack/JSON carry them: finite (JSON has no NaN), any magnitude.
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), FLOATS, st.text(max_size=10))


def strategy(info: Any) -> st.SearchStrategy[Any]:
    """A hypothesis strategy for any msgspec type, honouring its constraints."""
    if isinstance(info, mi.Metadata):
        return strategy(info.type)
    if isinstance(info, mi.StrType):
        if info.pattern and "T" in info.pattern:
            return TS
        return st.text(min_size=info.min_length or 0, max_size=min(info.max_length or 20, 20))
    if isinstance(info, mi.IntType):
        lo = info.ge if info.ge is not None else -(2**63)
        return st.integers(lo, 2**63 - 1)
    if isinstance(info, mi.FloatType):
        return FLOATS.filter(lambda x: info.ge is None or x >= info.ge)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.UnionType):
        return st.one_of([strategy(t) for t in info.types])
    if isinstance(info, mi.ListType):
        return st.lists(strategy(info.item_type), max_size=3)
    if isinstance(info, mi.DictType):
        return st.dictionaries(st.text(max_size=8), strategy(info.value_type), max_size=3)
    if isinstance(info, mi.AnyType):
        return SCALARS
    if isinstance(info, mi.StructType):
        return st.builds(info.cls, **{f.name: strategy(f.type) for f in info.fields})
    raise NotImplementedError(info)


@pytest.mark.parametrize("tag", sorted(RECORD_TYPES))
def test_record_type_is_tagged_with_its_name(tag: str) -> None:
    info = mi.type_info(RECORD_TYPES[tag])
    assert isinstance(info, mi.StructType) and info.tag_field == "type" and info.tag == tag
    assert {"id", "rev", "site", "area", "line", "machine", "ts"} <= {f.name for f in info.fields}


@pytest.mark.parametrize("tag", sorted(RECORD_TYPES))
def test_every_record_type_round_trips_through_json_and_msgpack(tag: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(rec=strategy(mi.type_info(RECORD_TYPES[tag])))
    def check(rec: Any) -> None:
        assert decode_json(encode_json(rec)) == rec
        assert decode_msgpack(encode_msgpack(rec)) == rec
        assert msgspec.json.decode(encode_json(rec))["type"] == tag

    check()


@settings(max_examples=40, deadline=None)
@given(records=st.lists(strategy(mi.type_info(AnyRecord)), max_size=5))
def test_batches_of_mixed_records_round_trip(records: list[Any]) -> None:
    batch = Batch(batch_id=uuid7(), source=Source(site="s", line="l", host="h"), records=records)
    assert msgspec.json.decode(encode_json(batch), type=Batch) == batch
    assert msgspec.msgpack.decode(encode_msgpack(batch), type=Batch) == batch


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_763_791_200.25) == "2025-11-22T06:00:00.250Z"
    assert parse_ts("2025-11-22T07:00:00.250+01:00") == 1_763_791_200.25
    with pytest.raises(ValueError):
        parse_ts("2025-11-22T07:00:00")  # no offset: ambiguous, refused


@given(ms=st.integers(0, 4_102_444_800_000))
def test_timestamp_format_and_parse_are_inverse_to_the_millisecond(ms: int) -> None:
    assert round(parse_ts(format_ts(ms / 1000)) * 1000) == ms


def test_uuid7_is_version_7_and_sorts_by_time() -> None:
    a, b = uuid7(1_700_000_000.0), uuid7(1_700_000_000.002)
    assert uuid.UUID(a).version == 7 and uuid.UUID(a).variant == uuid.RFC_4122
    assert a < b
    assert uuid7() != uuid7()


def test_natural_ids_are_stable_for_the_same_facts() -> None:
    assert natural_id("line3", "stop", 1763791200000) == "line3:stop:1763791200000"
    assert natural_id("line3", "kpi", "shift", "2025-11-22T05:00:00.000Z") == natural_id(
        "line3", "kpi", "shift", "2025-11-22T05:00:00.000Z"
    )


def test_a_record_with_a_bad_timestamp_or_unknown_field_is_rejected() -> None:
    good = StopRecord(id="x", site="s", area="a", line="l", machine="m", ts=format_ts(0), start=format_ts(0))
    raw = msgspec.json.decode(encode_json(good))
    with pytest.raises(msgspec.ValidationError, match=r"\$\.ts"):
        decode_json(msgspec.json.encode({**raw, "ts": "yesterday"}))
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode_json(msgspec.json.encode({**raw, "colour": "red"}))
    with pytest.raises(msgspec.ValidationError):
        decode_json(msgspec.json.encode({**raw, "type": "teleport"}))


def test_kpi_ratios_are_null_not_zero_by_default() -> None:
    k = KpiRecord(
        id="k", site="s", area="a", line="l", machine="m", ts=format_ts(0), interval="hour",
        start=format_ts(0), end=format_ts(3600),
    )
    raw = msgspec.json.decode(encode_json(k))
    for ratio in ("availability", "performance", "quality", "oee", "teep", "mtbf_s", "mttr_s"):
        assert raw[ratio] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", raw["start"])
