"""Reading and decoding a `POST /v1/records` body within limits.

Limits apply three times: the declared Content-Length, the bytes actually streamed, and the
decompressed size (a gzip bomb is stopped after `limit` bytes of output, never expanded in
full). Each record is validated on its own with the record Structs, so one bad record does
not hide the others: the envelope is decoded with the records left raw, then each raw
record is decoded by itself.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Raw, Struct

from sync.records import AnyRecord, IngestError, Record, Source

__all__ = ["BodyError", "DecodedBatch", "decode_batch", "gunzip_limited", "read_limited", "unstorable"]

# msgspec's messages name the path, not the value; still bounded so a reply stays small.
_MAX_MESSAGE = 300
_MAX_ERRORS = 1000
INT64_MAX = 2**63 - 1


class BodyError(Exception):
    """A request the store refuses as a whole: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, errors: list[IngestError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


class _Envelope(Struct, kw_only=True, forbid_unknown_fields=True):
    """`records.Batch` with the records left undecoded, so each can be validated alone."""

    batch_id: Annotated[str, Meta(min_length=1, max_length=512)]
    source: Source
    records: list[Raw]


class DecodedBatch(Struct, kw_only=True):
    """The envelope, the records that passed validation and the errors of those that did not."""

    batch_id: str
    source: Source
    records: list[Record]
    errors: list[IngestError]
    total: int


_CODECS: dict[str, tuple[Any, Any, Any]] = {
    "json": (msgspec.json.Decoder(_Envelope), msgspec.json.Decoder(AnyRecord), msgspec.json.Decoder()),
    "msgpack": (
        msgspec.msgpack.Decoder(_Envelope),
        msgspec.msgpack.Decoder(AnyRecord),
        msgspec.msgpack.Decoder(),
    ),
}


async def read_limited(stream: AsyncIterator[bytes], declared: str | None, limit: int, drain: int) -> bytes:
    """The body, or BodyError(413) when it exceeds `limit` bytes.

    An oversized body is still read and thrown away up to `drain` bytes in all: a client
    such as httpx writes the whole body before it reads the answer, and would otherwise
    see a reset connection instead of the 413 that tells it what is wrong.
    """
    too_big: str | None = None
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if size > limit:
            too_big = f"body of {size} bytes is larger than the limit of {limit} bytes"
            if size > drain:
                raise BodyError(413, too_big)
    buf = bytearray()
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if too_big is None:
            buf += chunk
            if len(buf) > limit:
                too_big = f"body is larger than the limit of {limit} bytes"
                buf = bytearray()
        if too_big is not None and total > drain:
            break
    if too_big is not None:
        raise BodyError(413, too_big)
    return bytes(buf)


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """gzip-decoded bytes (several members allowed), at most `limit` of them."""
    out = bytearray()
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            chunk = rest
            while chunk and not d.eof:
                out += d.decompress(chunk, limit + 1 - len(out))
                if len(out) > limit:
                    raise BodyError(413, f"decompressed body is larger than the limit of {limit} bytes")
                chunk = d.unconsumed_tail
            if not d.eof:
                raise BodyError(400, "gzip body is truncated")
            rest = d.unused_data
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid gzip: {exc}") from None
    return bytes(out)


def _msg(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def decode_batch(data: bytes, fmt: str, max_records: int) -> DecodedBatch:
    """The batch with each record validated alone; BodyError(400/413) if the envelope is bad."""
    env_dec, rec_dec, any_dec = _CODECS[fmt]
    try:
        env = env_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BodyError(400, f"not a valid batch: {_msg(exc)}") from None
    except Exception as exc:  # deep nesting and the like: still the client's fault
        raise BodyError(400, f"not a valid batch: {type(exc).__name__}") from None
    if len(env.records) > max_records:
        raise BodyError(413, f"batch has {len(env.records)} records; the limit is {max_records}")
    records: list[Record] = []
    errors: list[IngestError] = []
    for i, raw in enumerate(env.records):
        try:
            rec = rec_dec.decode(raw)
        except Exception as exc:
            if len(errors) < _MAX_ERRORS:
                errors.append(IngestError(index=i, id=_id_of(any_dec, raw), error=_msg(exc)))
            continue
        problem = unstorable(rec)
        if problem is None:
            records.append(rec)
        elif len(errors) < _MAX_ERRORS:
            errors.append(IngestError(index=i, id=rec.id, error=problem))
    return DecodedBatch(
        batch_id=env.batch_id, source=env.source, records=records, errors=errors, total=len(env.records)
    )


def unstorable(rec: Record) -> str | None:
    """Why a record that passed its Struct still cannot be stored, or None.

    Both databases index these columns: PostgreSQL text cannot hold NUL, and BIGINT stops at
    2^63-1. Refused the same way on SQLite so both backends accept the same batches.
    """
    if rec.rev > INT64_MAX:
        return "rev is above 2^63-1 - at `$.rev`"
    reason = getattr(rec, "reason_code", None)
    for name, value in (("id", rec.id), ("line", rec.line), ("reason_code", reason)):
        if isinstance(value, str) and "\x00" in value:
            return f"NUL character not allowed - at `$.{name}`"
    return None


def _id_of(dec: Any, raw: Raw) -> str | None:
    try:
        obj = dec.decode(raw)
    except Exception:
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) else None

