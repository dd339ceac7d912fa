"""Every record type of RECORDS.md, defined once.

The edge daemon, `lineside replay`, the buffer, the uploader and the reference store all use
these Structs; nothing else re-declares a record's fields. Records are a tagged union on
``type``; JSON and MessagePack come from msgspec.

Timestamps are RFC 3339 UTC strings with milliseconds (``2026-11-22T06:00:00.000Z``).
Ids are stable: a record computed again (after a restart, in a replay) gets the same id,
which is what makes delivery idempotent at the store. Records with a natural key use it
(``line3:stop:1763791200000``); the rest use UUIDv7.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

__all__ = [
    "RECORD_TYPES",
    "AnyRecord",
    "Batch",
    "CountRecord",
    "EventRecord",
    "IngestError",
    "IngestErrors",
    "IngestResult",
    "Iso22400",
    "KpiRecord",
    "Losses",
    "MaintenanceRequestRecord",
    "QualityAlertRecord",
    "Record",
    "SampleRecord",
    "Source",
    "StateRecord",
    "StopRecord",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "format_ts",
    "natural_id",
    "parse_ts",
    "uuid7",
]

Timestamp = Annotated[
    str,
    Meta(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        description="RFC 3339 UTC with milliseconds",
    ),
]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=512)]
StopCategory = Literal["micro_stop", "unplanned_stop", "planned_stop", "blocked", "starved"]
ReasonSource = Literal["plc", "state", "operator", "central", "none"]
LineState = Literal[
    "running",
    "micro_stop",
    "unplanned_stop",
    "planned_stop",
    "blocked",
    "starved",
    "not_scheduled",
    "planned_break",
    "unknown",
]
Scalar = bool | int | float | str | None


# ---------------------------------------------------------------- time and ids


def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, from epoch seconds (rounded to the nearest ms)."""
    ms = round(epoch_s * 1000)
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_ts(text: str) -> float:
    """Epoch seconds from an RFC 3339 timestamp with any offset."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return dt.timestamp()


def uuid7(now_s: float | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit ms timestamp, then random bits; sorts by creation time."""
    ms = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def natural_id(line: str, rtype: str, *key: object) -> str:
    """A stable id from a record's natural key: the same facts always give the same id."""
    return ":".join([line, rtype, *(str(k) for k in key)])


# ---------------------------------------------------------------- the records


class Record(Struct, kw_only=True, tag_field="type", omit_defaults=False, forbid_unknown_fields=True):
    """Fields every record carries (RECORDS.md, common fields)."""

    id: NonEmpty
    rev: Annotated[int, Meta(ge=0)] = 0
    site: NonEmpty
    area: NonEmpty
    line: NonEmpty
    machine: NonEmpty
    ts: Timestamp



class StopRecord(Record, tag="stop", kw_only=True):
    start: Timestamp
    end: Timestamp | None = None
    duration_s: Annotated[float, Meta(ge=0)] = 0.0
    category: StopCategory = "micro_stop"
    reason_code: int | str | None = None
    reason_text: str | None = None
    reason_category: str | None = None
    reason_source: ReasonSource = "none"
    shift: str | None = None
    order: str | None = None
    product: str | None = None
    operator: str | None = None
    process: dict[str, Scalar] = field(default_factory=dict)


class Losses(Struct, kw_only=True, forbid_unknown_fields=True):
    """The six big losses, in seconds (KPI_DEFINITIONS.md §5)."""

    unplanned_stops_s: float = 0.0
    planned_stops_s: float = 0.0
    micro_stops_s: float = 0.0
    slow_cycles_s: float | None = None
    production_rejects_s: float = 0.0
    startup_rejects_s: float | None = None


class Iso22400(Struct, kw_only=True, forbid_unknown_fields=True):
    """The ISO 22400-2 set beside the oee.com split (KPI_DEFINITIONS.md §5)."""

    pbt_s: float = 0.0
    apt_s: float = 0.0
    adet_s: float = 0.0
    availability: float | None = None
    effectiveness: float | None = None
    quality_ratio: float | None = None
    oee_index: float | None = None
    scrap_ratio: float | None = None
    throughput_rate: float | None = None


class KpiRecord(Record, tag="kpi", kw_only=True):
    interval: Literal["hour", "shift", "order", "day"]
    start: Timestamp
    end: Timestamp
    shift: str | None = None
    order: str | None = None
    products: list[str] = field(default_factory=list)
    all_time_s: float = 0.0
    not_scheduled_s: float = 0.0
    planned_break_s: float = 0.0
    unknown_s: float = 0.0
    planned_production_time_s: float = 0.0
    stop_time_s: float = 0.0
    run_time_s: float = 0.0
    micro_stop_time_s: float = 0.0
    micro_stop_count: int = 0
    unplanned_stop_count: int = 0
    planned_stop_count: int = 0
    unplanned_stop_time_s: float = 0.0
    planned_stop_time_s: float = 0.0
    total_count: int = 0
    good_count: int = 0
    reject_count: int = 0
    counts_outside_ppt: int = 0
    ideal_time_s: float = 0.0
    availability: float | None = None
    performance: float | None = None
    quality: float | None = None
    oee: float | None = None
    teep: float | None = None
    mtbf_s: float | None = None
    mttr_s: float | None = None
    losses: Losses = field(default_factory=Losses)
    iso22400: Iso22400 = field(default_factory=Iso22400)
    final: bool = False


class StateRecord(Record, tag="state", kw_only=True):
    start: Timestamp
    end: Timestamp | None = None
    state: LineState
    source_value: Scalar = None


class CountRecord(Record, tag="count", kw_only=True):
    start: Timestamp
    end: Timestamp
    total: int = 0
    good: int = 0
    reject: int = 0
    product: str | None = None


class SampleRecord(Record, tag="sample", kw_only=True):
    tag: NonEmpty
    value: Scalar
    quality: Literal["good", "bad", "uncertain"] = "good"
    source_ts: Timestamp | None = None


class EventRecord(Record, tag="event", kw_only=True):
    kind: NonEmpty
    detail: dict[str, Scalar | list[Scalar]] = field(default_factory=dict)


class MaintenanceRequestRecord(Record, tag="maintenance_request", kw_only=True):
    rule: NonEmpty
    priority: Literal["low", "medium", "high"] = "medium"
    summary: str = ""
    stop_ids: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    equipment: str = ""
    status: Literal["open", "acknowledged", "closed"] = "open"
    shift: str | None = None
    order: str | None = None
    product: str | None = None


class QualityAlertRecord(Record, tag="quality_alert", kw_only=True):
    rule: NonEmpty
    window_start: Timestamp
    window_end: Timestamp
    reject_rate: float | None = None
    threshold: float | None = None
    product: str | None = None
    order: str | None = None
    process: dict[str, Scalar] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    status: Literal["open", "acknowledged", "closed"] = "open"


AnyRecord = (
    StopRecord
    | KpiRecord
    | StateRecord
    | CountRecord
    | SampleRecord
    | EventRecord
    | MaintenanceRequestRecord
    | QualityAlertRecord
)
RECORD_TYPES: dict[str, type[Record]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        StopRecord,
        KpiRecord,
        StateRecord,
        CountRecord,
        SampleRecord,
        EventRecord,
        MaintenanceRequestRecord,
        QualityAlertRecord,
    )
}


# ---------------------------------------------------------------- wire messages


class Source(Struct, kw_only=True, forbid_unknown_fields=True):
    site: NonEmpty
    line: NonEmpty
    host: str = ""


class Batch(Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/records` body."""

    batch_id: NonEmpty
    source: Source
    records: list[AnyRecord]


class IngestResult(Struct, kw_only=True):
    accepted: int
    duplicates: int


class IngestError(Struct, kw_only=True):
    index: int
    id: str | None
    error: str


class IngestErrors(Struct, kw_only=True):
    """A `400` answer: the records the store cannot take, by index in the batch."""

    error: str
    errors: list[IngestError] = field(default_factory=list)


# ---------------------------------------------------------------- codecs

_json_enc = msgspec.json.Encoder()
_mp_enc = msgspec.msgpack.Encoder()
_json_dec = msgspec.json.Decoder(AnyRecord)
_mp_dec = msgspec.msgpack.Decoder(AnyRecord)


def encode_json(obj: Any) -> bytes:
    return _json_enc.encode(obj)


def encode_msgpack(obj: Any) -> bytes:
    return _mp_enc.encode(obj)


def decode_json(data: bytes | str, type: Any = None) -> Any:
    return _json_dec.decode(data) if type is None else msgspec.json.decode(data, type=type)


def decode_msgpack(data: bytes, type: Any = None) -> Any:
    return _mp_dec.decode(data) if type is None else msgspec.msgpack.decode(data, type=type)
