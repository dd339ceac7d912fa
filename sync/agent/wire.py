"""Batches on the wire: the buffer's MessagePack bodies, shipped as they are (or as JSON).

The records were validated and serialized once when the edge wrote them; the agent embeds
those bytes with `msgspec.Raw` instead of decoding and re-validating each record (the store
validates anyway).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from typing import Literal

import msgspec

from buffer import OutboxRow
from sync.records import Source

__all__ = ["CONTENT_TYPES", "encode_batch"]

CONTENT_TYPES = {"msgpack": "application/msgpack", "json": "application/json"}

_mp_enc = msgspec.msgpack.Encoder()
_json_enc = msgspec.json.Encoder()
_mp_dec = msgspec.msgpack.Decoder()


def encode_batch(
    rows: Sequence[OutboxRow],
    *,
    batch_id: str,
    source: Source,
    encoding: Literal["msgpack", "json"],
    compression: Literal["gzip", "none"],
) -> tuple[bytes, dict[str, str]]:
    """The `POST /v1/records` body and its Content-Type / Content-Encoding headers."""
    if encoding == "msgpack":
        records = [msgspec.Raw(r.body) for r in rows]
        body = _mp_enc.encode({"batch_id": batch_id, "source": source, "records": records})
    else:
        records = [msgspec.Raw(_json_enc.encode(_mp_dec.decode(r.body))) for r in rows]
        body = _json_enc.encode({"batch_id": batch_id, "source": source, "records": records})
    headers = {"Content-Type": CONTENT_TYPES[encoding]}
    if compression == "gzip":
        # Level 5: most of level 9's ratio on records at several times the speed.
        body = gzip.compress(body, compresslevel=5, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers
