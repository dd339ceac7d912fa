"""Siemens S7 driver: classic S7 protocol (ISO-on-TCP, port 102) through python-snap7.

Options (``driver: s7`` in the line config, :class:`config.models.S7Plc`):

- ``host``, ``port`` (102), ``rack`` (0), ``slot`` (1; S7-1200/1500: 0 or 1, S7-300: 2)
- ``interval_ms``: poll period; ``timeout_s``: per request (socket receive timeout)
- ``max_gap`` (16): bytes a merged read may span between two tags of the same area and DB

Tag addresses (case-insensitive, an optional IEC ``%`` prefix is accepted):

- data blocks: ``DB10.DBX0.1`` (bit), ``DB10.DBB4`` (byte), ``DB10.DBW4`` (word), ``DB10.DBD4``
  (double word)
- merkers / inputs / outputs: ``M0.1``, ``MB5``, ``MW20``, ``MD24``; ``I0.0``/``E0.0``, ``IW4``;
  ``Q0.0``/``A0.0``, ``QD8``

The signal's ``type`` says how the bytes are decoded (S7 data is big-endian): ``bool`` needs a bit
address; ``int16``/``uint16`` a ``W``; ``int32``/``uint32``/``float32`` (REAL) a ``D``;
``int64``/``uint64``/``float64`` (LINT/ULINT/LREAL) and ``string`` start at a ``B``, ``W`` or ``D``
address (there is no 8-byte size letter). ``string`` is an S7 STRING (max-length byte,
actual-length byte, characters); ``length`` is its declared maximum (default 254).

Reads are planned once per connection: tags of the same area (and DB) whose bytes lie at most
``max_gap`` apart are merged into one block, as long as the block fits one item of a reply; the
blocks are sent as multi-variable reads of at most 20 items per request and as many as fit the PDU
size negotiated at connect (request: 12 bytes per item; reply: 4 bytes + data per item). A tag
bigger than a reply is read in chunks. When a merged block comes back with an error (a tag in it
names a DB that does not exist, or runs past the DB's end), the block is read tag by tag from then
on (until the next reconnect), so the wrong tag gets its own bad sample with the PLC's reason
while the others keep flowing; the fallback happens within the same poll.

I/O runs on the event loop (snap7's asyncio client): no thread hand-off per poll. S7 gives no
source timestamps: ``source_ts`` is None.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from snap7.async_client import AsyncClient
from snap7.error import S7ConnectionError, S7Error, S7ProtocolError
from snap7.s7protocol import get_return_code_description
from snap7.type import Area

from config.models import S7Plc, Signal
from drivers.base import Driver, DriverError, Sample, TagError, Value, merge_spans
from edge.logs import get_logger

__all__ = [
    "MAX_ITEMS_PER_REQUEST",
    "Block",
    "ReadItem",
    "ReadPlan",
    "S7Address",
    "S7Driver",
    "chunk_items",
    "decode_value",
    "max_item_bytes",
    "pack_requests",
    "parse_address",
    "plan_blocks",
    "plan_reads",
]

# S7 limits a multi-variable read to 20 items whatever the PDU size (snap7's MAX_VARS).
MAX_ITEMS_PER_REQUEST = 20
_REQ_HEADER = 10 + 2  # job header + (function, item count)
_REQ_PER_ITEM = 12  # one address specification
_RESP_HEADER = 12 + 2  # ack-data header + (function, item count)
_RESP_PER_ITEM = 4 + 1  # return code, transport size, bit length; +1 fill byte to stay even
_DEFAULT_STRING_LEN = 254
_TPKT = struct.Struct(">BBH")  # RFC 1006 header: version 3, reserved, total length
_COTP_DT = b"\x02\xf0\x80"  # COTP data transfer, last data unit

_AREAS: dict[str, Area] = {
    "DB": Area.DB,
    "M": Area.MK,
    "I": Area.PE,
    "E": Area.PE,
    "Q": Area.PA,
    "A": Area.PA,
}
_SIZE_BYTES = {"X": 1, "B": 1, "W": 2, "D": 4}
_DB_RE = re.compile(r"^DB(\d+)\.DB([XBWD])(\d+)(?:\.(\d+))?$")
_AREA_RE = re.compile(r"^([MIQEA])([XBWD]?)(\d+)(?:\.(\d+))?$")

_FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}
_LETTER_FOR_SIZE = {2: "W", 4: "D"}


@dataclass(frozen=True)
class S7Address:
    area: Area
    db: int  # 0 outside data blocks
    byte: int
    bit: int | None
    size: str  # X, B, W or D


def parse_address(text: str) -> S7Address:
    """Parse `DB10.DBD4`, `DB10.DBX0.1`, `MW20`, `I0.0` ...; raise TagError saying what is wrong."""
    norm = text.strip().upper().lstrip("%")
    m = _DB_RE.match(norm)
    if m:
        db, size, byte, bit = int(m[1]), m[2], int(m[3]), m[4]
        area = Area.DB
    else:
        m = _AREA_RE.match(norm)
        if not m:
            raise TagError(
                f"bad S7 address {text!r}: expected e.g. DB10.DBD4, DB10.DBX0.1, MW20, M0.1, IW4, Q0.0"
            )
        area, size, byte, bit = _AREAS[m[1]], m[2] or "X", int(m[3]), m[4]
        db = 0
    if size == "X":
        if bit is None:
            raise TagError(f"bad S7 address {text!r}: a bit address needs .0 to .7 (e.g. M0.1, DB10.DBX0.1)")
        if not 0 <= int(bit) <= 7:
            raise TagError(f"bad S7 address {text!r}: bit {bit} is not 0..7")
        return S7Address(area, db, byte, int(bit), size)
    if bit is not None:
        raise TagError(f"bad S7 address {text!r}: only X (bit) addresses take a .bit suffix")
    return S7Address(area, db, byte, None, size)


def _byte_count(addr: S7Address, sig: Signal) -> int:
    """How many bytes `sig` occupies at `addr`; TagError if the address letter and type disagree."""
    if sig.type == "bool":
        if addr.bit is None:
            raise TagError(f"type bool needs a bit address (e.g. DB10.DBX0.1), not {sig.address!r}")
        return 1
    if addr.bit is not None:
        raise TagError(f"{sig.address!r} is a bit address but the type is {sig.type}; use type bool")
    if sig.type == "string":
        return 2 + (sig.length or _DEFAULT_STRING_LEN)
    n = struct.calcsize(_FORMATS[sig.type])
    want = _LETTER_FOR_SIZE.get(n)
    if want is not None and addr.size != want:
        raise TagError(
            f"{sig.address!r} is {_SIZE_BYTES[addr.size]} byte(s) wide but type {sig.type} needs {n}"
            f" (use a {want} address, e.g. DB10.DB{want}4 or M{want}20)"
        )
    return n


@dataclass
class Block:
    """A span of one area (and DB) read as one item, and the tags whose bytes lie in it."""

    area: int
    db: int
    start: int
    size: int
    tags: list[str] = field(default_factory=list)
    split: bool = False  # a merged read of it failed: read its tags one by one from now on


def plan_blocks(spans: Mapping[str, tuple[S7Address, int]], max_gap: int, max_span: int) -> list[Block]:
    """Merge tags (name -> (address, byte count)) of the same area and DB into blocks.

    Neighbours are merged when at most `max_gap` bytes lie between them and the block stays
    within `max_span` bytes (one reply item); overlapping tags (bits of one byte) always share.
    A single tag bigger than `max_span` is a block of its own (read in chunks).
    """
    groups: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for tag, (addr, size) in spans.items():
        groups.setdefault((int(addr.area), addr.db), []).append((addr.byte, size, tag))
    blocks: list[Block] = []
    for (area, db), members in sorted(groups.items()):
        members.sort(key=lambda m: (m[0], -m[1]))
        blocks += [Block(area, db, start, size, tags) for start, size, tags in merge_spans(members, max_gap, max_span)]
    return blocks


@dataclass(frozen=True)
class ReadItem:
    """One address specification of a request: a read unit, or one chunk of a unit too big for a
    reply. `unit` indexes :attr:`ReadPlan.units`."""

    unit: int
    area: int
    db: int
    start: int
    size: int


def max_item_bytes(pdu_length: int) -> int:
    """The most data one item can carry in a reply of `pdu_length` bytes."""
    chunk = pdu_length - _RESP_HEADER - _RESP_PER_ITEM
    if chunk <= 0:
        raise DriverError(f"negotiated PDU size {pdu_length} is too small to read anything")
    return chunk


def chunk_items(unit: int, area: int, db: int, start: int, size: int, pdu_length: int) -> list[ReadItem]:
    """The items that read `size` bytes at `start`, chunked so each fits a reply of `pdu_length`."""
    chunk = max_item_bytes(pdu_length)
    return [ReadItem(unit, area, db, start + off, min(chunk, size - off)) for off in range(0, size, chunk)]


def pack_requests(items: list[ReadItem], pdu_length: int) -> list[list[ReadItem]]:
    """Group items into requests that respect the PDU size both ways and the 20-item limit."""
    groups: list[list[ReadItem]] = []
    cur: list[ReadItem] = []
    req = _REQ_HEADER
    resp = _RESP_HEADER
    for it in items:
        need = _RESP_PER_ITEM + it.size
        if cur and (
            len(cur) >= MAX_ITEMS_PER_REQUEST or req + _REQ_PER_ITEM > pdu_length or resp + need > pdu_length
        ):
            groups.append(cur)
            cur, req, resp = [], _REQ_HEADER, _RESP_HEADER
        cur.append(it)
        req += _REQ_PER_ITEM
        resp += need
    if cur:
        groups.append(cur)
    return groups


@dataclass
class ReadPlan:
    """What one poll sends. A unit is a whole block (tag None) or one tag of a split block."""

    units: list[tuple[Block, str | None]]
    requests: list[list[ReadItem]]


def plan_reads(blocks: list[Block], spans: Mapping[str, tuple[S7Address, int]], pdu_length: int) -> ReadPlan:
    """The requests reading `blocks`: merged blocks as one unit, split ones tag by tag."""
    units: list[tuple[Block, str | None]] = []
    items: list[ReadItem] = []
    for b in blocks:
        if not b.split:
            units.append((b, None))
            items += chunk_items(len(units) - 1, b.area, b.db, b.start, b.size, pdu_length)
            continue
        for tag in b.tags:
            addr, size = spans[tag]
            units.append((b, tag))
            items += chunk_items(len(units) - 1, b.area, b.db, addr.byte, size, pdu_length)
    return ReadPlan(units, pack_requests(items, pdu_length))


def decode_value(raw: bytes, addr: S7Address, sig: Signal) -> Value:
    """Decode the bytes read for one tag (big-endian, S7 STRING layout for strings)."""
    return _Decoder(addr, sig).decode(raw, 0)


class _Decoder:
    """Decodes one tag straight out of a block's bytes (no per-poll slicing or format lookup)."""

    __slots__ = ("address", "bit", "kind", "length", "unpack")

    def __init__(self, addr: S7Address, sig: Signal) -> None:
        self.address = sig.address
        self.bit = addr.bit or 0
        self.kind = sig.type if sig.type in ("bool", "string") else "number"
        self.length = _byte_count(addr, sig) - 2 if sig.type == "string" else 0
        self.unpack = struct.Struct(_FORMATS[sig.type]).unpack_from if self.kind == "number" else None

    def decode(self, raw: bytes, off: int) -> Value:
        if self.unpack is not None:
            value: int | float = self.unpack(raw, off)[0]
            return value
        if self.kind == "bool":
            return bool((raw[off] >> self.bit) & 1)
        declared, actual = raw[off], raw[off + 1]
        if actual > declared or actual > self.length:
            raise TagError(
                f"S7 STRING at {self.address!r} is malformed (max {declared}, length {actual},"
                f" {self.length} bytes read): check the address and the signal's length"
            )
        return bytes(raw[off + 2 : off + 2 + actual]).decode("latin-1")


def _parse_items(raw: bytes, count: int) -> list[tuple[int, bytes]]:
    """Split a multi-read reply's data section into (return code, data) per item."""
    out: list[tuple[int, bytes]] = []
    off = 0
    for i in range(count):
        if off + 4 > len(raw):
            raise S7ProtocolError(f"multi-read reply truncated at item {i}")
        code, transport = raw[off], raw[off + 1]
        (length,) = struct.unpack(">H", raw[off + 2 : off + 4])
        off += 4
        # Transport sizes 3, 4 and 5 (bit, byte/word/dword, integer) count bits; the rest bytes.
        nbytes = (length + 7) // 8 if transport in (3, 4, 5) else length
        data = bytes(raw[off : off + nbytes]) if code == 0xFF else b""
        off += nbytes
        if nbytes % 2 and i < count - 1:
            off += 1  # fill byte between items
        out.append((code, data))
    return out


@dataclass(frozen=True)
class _Failed:
    """Why a read unit has no data: the PLC's return code for its item, or a text."""

    code: int | None
    text: str


class S7Driver(Driver):
    """Polls configured S7 addresses with merged, PDU-sized multi-variable reads."""

    kind: ClassVar[str] = "s7"
    plc: S7Plc

    def __init__(self, plc_name: str, plc: S7Plc, tags: Mapping[str, Signal], **kw: Any) -> None:
        super().__init__(plc_name, plc, tags, **kw)
        self.log = get_logger(plc=plc_name, driver="s7")
        self._client: AsyncClient | None = None
        self._spans: dict[str, tuple[S7Address, int]] = {}
        self._decoders: dict[str, _Decoder] = {}
        self._bad_config: dict[str, str] = {}
        for name, sig in self.tags.items():
            try:
                addr = parse_address(sig.address)
                self._spans[name] = (addr, _byte_count(addr, sig))
                self._decoders[name] = _Decoder(addr, sig)
            except TagError as exc:
                self._bad_config[name] = str(exc)
        # Per tag in sample order: its decoder (None: bad config) and whether the decoded value is
        # the sample's value as is (no scaling, and not a float that may be NaN).
        self._order = [
            (
                n,
                self._decoders.get(n),
                s,
                s.scale == 1.0 and s.offset == 0.0 and not s.type.startswith("float"),
            )
            for n, s in self.tags.items()
        ]
        self.blocks: list[Block] = []
        self._plan = ReadPlan([], [])
        self.requests = 0  # read requests sent (for the bench and the status page)
        self.pdu_length = 0  # negotiated at connect
        # What we ask for at connect; the PLC answers with its own maximum (240 on an S7-300,
        # 480 on a 1200, 960 on a 1500) and reads are planned against the answer.
        self.pdu_request = 480

    @property
    def plan(self) -> ReadPlan:
        """The requests the next poll sends (empty before the first connect)."""
        return self._plan

    def _where(self) -> str:
        return f"S7 PLC {self.plc.host}:{self.plc.port}"

    async def connect(self) -> None:
        client = AsyncClient()
        client.pdu_length = self.pdu_request
        self._client = client  # so close() cleans up a half-open connection too
        try:
            async with asyncio.timeout(self.plc.timeout_s * 2 + 1):  # TCP connect + 2 exchanges
                await client.connect(self.plc.host, self.plc.rack, self.plc.slot, self.plc.port)
        except (S7Error, OSError, TimeoutError) as exc:
            raise DriverError(
                f"cannot connect to {self._where()} rack {self.plc.rack} slot {self.plc.slot}:"
                f" {exc or type(exc).__name__}"
            ) from exc
        if client.connection is not None:
            client.connection.timeout = self.plc.timeout_s
        self.pdu_length = int(client.pdu_length)
        # Planned afresh on every connect: the PLC may have a new program (a DB that was missing
        # may exist now) and a different PDU size.
        self.blocks = plan_blocks(self._spans, self.plc.max_gap, max_item_bytes(self.pdu_length))
        self._plan = plan_reads(self.blocks, self._spans, self.pdu_length)
        self.log.info(
            "plc_connected",
            host=self.plc.host,
            pdu_length=self.pdu_length,
            blocks=len(self.blocks),
            requests=len(self._plan.requests),
        )

    async def _exchange(self, client: AsyncClient, group: list[ReadItem]) -> list[tuple[int, bytes]] | str:
        """(return code, data) per item, or the PLC's reason for refusing the whole request.
        Connection failures (and no answer within timeout_s) raise DriverError."""
        conn = client.connection
        reader, writer = (conn._reader, conn._writer) if conn is not None else (None, None)
        if reader is None or writer is None:
            raise DriverError(f"{self._where()}: not connected")
        request = client.protocol.build_multi_read_request(
            [(it.area, it.db, it.start, it.size) for it in group]
        )
        self.requests += 1
        try:
            # One ISO-on-TCP exchange on snap7's own stream, under one timeout. snap7's
            # AsyncClient._send_receive does the same but starts two wait_for tasks per answer
            # (measurably slower per poll); its public read_multi_vars fails the whole read on
            # one bad item, which would hide the other tags.
            async with asyncio.timeout(self.plc.timeout_s):
                writer.write(_TPKT.pack(3, 0, len(request) + 4 + len(_COTP_DT)) + _COTP_DT + request)
                version, _, length = _TPKT.unpack(await reader.readexactly(4))
                if version != 3 or length < 4 + len(_COTP_DT):
                    raise S7ConnectionError(f"not an ISO-on-TCP packet (version {version}, length {length})")
                payload = await reader.readexactly(length - 4)
            if payload[:2] != _COTP_DT[:2]:
                raise S7ConnectionError(f"expected a COTP data transfer, got {payload[:3].hex()}")
            pdu = payload[3:]
            if pdu[4:6] != request[4:6]:  # the PDU reference: an answer to another request
                raise S7ConnectionError("the PLC answered another request than the one sent")
            response = client.protocol.parse_response(pdu)
            return _parse_items(response.get("raw_data", b""), len(group))
        except TimeoutError as exc:
            raise DriverError(f"{self._where()}: no answer within {self.plc.timeout_s}s") from exc
        except (S7ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            raise DriverError(f"{self._where()}: {exc or type(exc).__name__}") from exc
        except S7ProtocolError as exc:
            if exc.error_code:  # the PLC refused this request: its tags are bad, keep the link
                return f"PLC refused the read: {exc}"
            raise DriverError(f"{self._where()}: {exc}") from exc

    async def _read_plan(
        self, client: AsyncClient, plan: ReadPlan
    ) -> tuple[dict[int, bytes], dict[int, _Failed]]:
        """The bytes (or why there are none) per unit of `plan`."""
        parts: dict[int, list[bytes]] = {}
        failed: dict[int, _Failed] = {}
        for group in plan.requests:
            res = await self._exchange(client, group)
            if isinstance(res, str):
                for it in group:
                    failed.setdefault(it.unit, _Failed(None, res))
                continue
            for it, (code, data) in zip(group, res, strict=True):
                if code != 0xFF:
                    failed.setdefault(it.unit, _Failed(code, get_return_code_description(code)))
                elif len(data) != it.size:
                    failed.setdefault(
                        it.unit, _Failed(None, f"PLC returned {len(data)} bytes, expected {it.size}")
                    )
                else:
                    parts.setdefault(it.unit, []).append(data)
        data_by_unit = {u: p[0] if len(p) == 1 else b"".join(p) for u, p in parts.items() if u not in failed}
        return data_by_unit, failed

    def _tag_error(self, tag: str, why: _Failed) -> str:
        if why.code is None:
            return why.text
        addr, size = self._spans[tag]
        where = f"DB{addr.db}" if addr.area == Area.DB else Area(addr.area).name
        return (
            f"PLC rejected {self.tags[tag].address!r}: {why.text} (0x{why.code:02X};"
            f" does {where} exist and reach byte {addr.byte + size - 1}?)"
        )

    def _collect(
        self,
        plan: ReadPlan,
        data: dict[int, bytes],
        failed: dict[int, _Failed],
        out: dict[str, tuple[bytes, int] | str],
    ) -> list[tuple[Block, _Failed]]:
        """Put each tag's (bytes, offset) or error text in `out`; return the merged blocks that
        failed and why (their tags are not in `out`: the caller reads them one by one)."""
        to_split: list[tuple[Block, _Failed]] = []
        for u, (block, tag) in enumerate(plan.units):
            why = failed.get(u)
            if tag is not None:  # one tag of a split block
                out[tag] = self._tag_error(tag, why) if why is not None else (data[u], 0)
            elif why is None:
                raw, start = data[u], block.start
                for t in block.tags:
                    out[t] = (raw, self._spans[t][0].byte - start)
            elif len(block.tags) > 1:
                to_split.append((block, why))
            else:
                out[block.tags[0]] = self._tag_error(block.tags[0], why)
        return to_split

    async def _read_all(self, client: AsyncClient) -> dict[str, tuple[bytes, int] | str]:
        out: dict[str, tuple[bytes, int] | str] = {}
        data, failed = await self._read_plan(client, self._plan)
        to_split = self._collect(self._plan, data, failed, out)
        if to_split:
            # A tag inside a merged block does not exist on the PLC: from now on read those
            # blocks tag by tag, and do so right now so this poll already names the wrong tag.
            for b, why in to_split:
                b.split = True
                self.log.warning(
                    "merged_read_failed",
                    area=Area(b.area).name,
                    db=b.db,
                    start=b.start,
                    size=b.size,
                    tags=len(b.tags),
                    reason=why.text,
                )
            self._plan = plan_reads(self.blocks, self._spans, self.pdu_length)
            retry = plan_reads([b for b, _ in to_split], self._spans, self.pdu_length)
            data, failed = await self._read_plan(client, retry)
            self._collect(retry, data, failed, out)
        return out

    async def read(self) -> list[Sample]:
        client = self._client
        if client is None:
            raise DriverError("not connected")
        got = await self._read_all(client)  # every exchange is bounded by timeout_s
        now = self.clock()
        samples: list[Sample] = []
        append = samples.append
        for name, decoder, sig, plain in self._order:
            res = got.get(name)
            if res is None or decoder is None:
                append(Sample(name, None, "bad", None, now, self._bad_config.get(name, "not read")))
                continue
            if isinstance(res, str):
                append(Sample(name, None, "bad", None, now, res))
                continue
            try:
                raw = decoder.decode(*res)
            except TagError as exc:
                append(Sample(name, None, "bad", None, now, str(exc)))
                continue
            value = raw if plain else self.scaled(raw, sig)
            if value is None:
                append(Sample(name, None, "bad", None, now, "value is NaN or infinite"))
            else:
                append(Sample(name, value, "good", None, now))
        return samples

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        conn = client.connection
        writer = getattr(conn, "_writer", None)
        try:
            async with asyncio.timeout(2.0):
                await client.disconnect()
        except Exception:  # closing a dead link must never raise
            pass
        finally:
            # snap7 skips closing the socket when sending its disconnect request fails.
            if writer is not None:
                writer.close()
