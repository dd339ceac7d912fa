"""Modbus TCP (and RTU over serial, same code) driver on pymodbus.

Options (``driver: modbus`` in the line config, see config.models.ModbusPlc):
``host``, ``port`` (502), ``unit`` (1), ``interval_ms``, ``word_order`` / ``byte_order``
(``big`` | ``little``, per tag overridable), ``max_gap`` (registers a merged read may span
that no tag asked for, default 8), ``timeout_s``, ``transport`` (``tcp`` | ``rtu``) with
``serial_port``, ``baudrate``, ``parity``, ``stopbits`` for RTU.

Addresses (``Signal.address``) - the table, then either a Modicon reference number (what
device manuals print, 1-based) or ``@`` and the 0-based offset sent on the wire:

=================  ==========================  =====================
table              reference (1-based)         offset form (0-based)
=================  ==========================  =====================
holding register   ``holding:40001`` .. 49999   ``holding@0``
                   or ``holding:400001`` ..
input register     ``input:30001`` ..           ``input@0``
coil               ``coil:1`` .. (or 00001)     ``coil@0``
discrete input     ``discrete:10001`` ..        ``discrete@0``
=================  ==========================  =====================

So ``holding:40010`` and ``holding@9`` name the same register. A reference without the
table's leading digit (``holding:10``) is rejected rather than guessed. A different unit
than the PLC's default: ``unit=3/holding:40010``.

Types: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string
(``length`` = characters, two per register). bool on a register is "register != 0".

Reads are coalesced: tags are grouped by unit and table and merged into contiguous reads of
at most 125 registers / 2000 bits, filling gaps of up to ``max_gap``. When a merged read
gets exception 2 (illegal data address), that block falls back to per-tag reads from then
on, so one wrong address costs one bad tag, not the block. Exactly one request is in flight
per connection; a per-request timeout or exception becomes bad-quality samples.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter
from typing import Any, Literal

from pymodbus.exceptions import ConnectionException, ModbusException

from config.models import ModbusPlc, Plc, Signal
from drivers.base import Driver, DriverError, Sample, TagError, Value, merge_spans

__all__ = [
    "MAX_BITS",
    "MAX_REGISTERS",
    "ModbusAddress",
    "ModbusDriver",
    "ReadBlock",
    "decode_registers",
    "encode_registers",
    "parse_address",
    "plan_reads",
    "register_count",
]

Table = Literal["holding", "input", "coil", "discrete"]
MAX_REGISTERS = 125  # Modbus spec: function 3/4 returns at most 125 registers
MAX_BITS = 2000  # function 1/2 returns at most 2000 bits
_PREFIX: dict[Table, str] = {"holding": "4", "input": "3", "coil": "0", "discrete": "1"}
_ADDR_RE = re.compile(r"^(?:unit=(\d{1,3})/)?(holding|input|coil|discrete)(?::(\d{1,6})|@(\d{1,5}))$")
_WORDS = {
    "bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}
_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
    "int64": "q", "uint64": "Q", "float64": "d",
}
ILLEGAL_ADDRESS = 2


@dataclass(frozen=True)
class ModbusAddress:
    unit: int | None  # None: the PLC's default unit
    table: Table
    offset: int  # 0-based, as sent on the wire

    @property
    def is_bit(self) -> bool:
        return self.table in ("coil", "discrete")


def parse_address(address: str) -> ModbusAddress:
    """Parse ``holding:40010`` / ``holding@9`` / ``unit=2/coil:1``; raise TagError saying why not."""
    m = _ADDR_RE.match(address.strip())
    if not m:
        raise TagError(
            f"bad Modbus address {address!r}: expected TABLE:REFERENCE (holding:40001, input:30001, "
            "coil:1, discrete:10001) or TABLE@OFFSET (holding@0), optionally prefixed unit=N/"
        )
    unit_s, table_s, ref_s, off_s = m.groups()
    table: Table = table_s  # type: ignore[assignment]
    unit = int(unit_s) if unit_s is not None else None
    if unit is not None and unit > 255:
        raise TagError(f"bad Modbus address {address!r}: unit must be 0..255")
    if off_s is not None:
        offset = int(off_s)
    else:
        assert ref_s is not None
        offset = _reference_to_offset(address, table, ref_s)
    if offset > 65535:
        raise TagError(f"bad Modbus address {address!r}: offset {offset} is beyond 65535")
    return ModbusAddress(unit, table, offset)


def _reference_to_offset(address: str, table: Table, ref: str) -> int:
    prefix = _PREFIX[table]
    if table == "coil" and len(ref) < 5:
        n = int(ref)  # coil:1 is coil 00001
    elif len(ref) in (5, 6) and ref.startswith(prefix):
        n = int(ref[1:])
    else:
        raise TagError(
            f"bad Modbus address {address!r}: a {table} reference is {prefix}xxxx(x) "
            f"({prefix}0001 = first {table}); for a 0-based offset write {table}@{int(ref)}"
        )
    if n < 1:
        raise TagError(f"bad Modbus address {address!r}: references start at 1 ({prefix}0001)")
    return n - 1


def register_count(sig: Signal) -> int:
    """Registers (or bits, for coil/discrete) a tag occupies."""
    if sig.type == "string":
        return ((sig.length or 16) + 1) // 2
    return _WORDS[sig.type]


def _order_bytes(data: bytes, word_order: str, byte_order: str) -> bytes:
    """Registers arrive as big-endian 16-bit words; reorder them into one big-endian value."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return b"".join(words)


def decode_registers(regs: list[int], sig: Signal, word_order: str, byte_order: str) -> Value:
    """Registers -> the tag's value (before scale/offset)."""
    t = sig.type
    if t == "uint16" or t == "int16":  # the common case, without building bytes
        r = regs[0]
        if byte_order == "little":
            r = ((r & 0xFF) << 8) | (r >> 8)
        return r - 0x10000 if t == "int16" and r >= 0x8000 else r
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    if sig.type == "string":
        # Strings are byte sequences: only byte order (swap within a register) applies.
        data = _order_bytes(raw, "big", byte_order)
        return data.split(b"\x00", 1)[0].decode("utf-8", errors="replace")[: sig.length or None]
    if sig.type == "bool":
        return regs[0] != 0
    value: int | float = struct.unpack(">" + _STRUCT[sig.type], _order_bytes(raw, word_order, byte_order))[0]
    return value


def encode_registers(value: Any, sig: Signal, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """The tag's value -> registers (the inverse of decode_registers; used by peers and the simulator)."""
    if sig.type == "string":
        n = register_count(sig) * 2
        data = _order_bytes(str(value).encode("utf-8")[:n].ljust(n, b"\x00"), "big", byte_order)
    elif sig.type == "bool":
        return [1 if value else 0]
    else:
        be = struct.pack(">" + _STRUCT[sig.type], value)
        # _order_bytes is its own inverse for each of the four orders
        data = _order_bytes(be, word_order, byte_order)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@dataclass
class ReadBlock:
    """One read request: a contiguous span of one table of one unit, and the tags in it."""

    unit: int
    table: Table
    start: int
    count: int
    tags: list[str] = field(default_factory=list)
    split: bool = False  # got exception 2 once: read its tags one by one from now on
    # how a response becomes samples, worked out by ModbusDriver on the block's first read
    codec: _BlockCodec | None = field(default=None, repr=False, compare=False)


_READ_FN: dict[Table, str] = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}


def _value_byte_indices(reg: int, words: int, word_order: str, byte_order: str) -> list[int]:
    """Indices, into the block's registers as big-endian bytes, of one value's bytes in
    big-endian value order: _order_bytes applied to the positions of the tag's bytes."""
    base = 2 * reg
    return [base + i for i in _order_bytes(bytes(range(2 * words)), word_order, byte_order)]


class _BlockCodec:
    """How to turn one register block's response into its tags' samples, worked out once.

    Every numeric tag of the block (int/uint 16/32/64, float32/64) is decoded by one
    ``struct`` unpack over the whole response: straight from the block's big-endian bytes
    (pad bytes for the gaps) when every tag is big/big and none overlap, else from those
    bytes gathered into big-endian value order by one itemgetter. Strings, bool-on-register,
    scale/offset and the float finiteness check are done per tag, only for the tags that
    need them. Same values as decode_registers + Driver.scaled, tag by tag.
    """

    def __init__(self, block: ReadBlock, driver: ModbusDriver) -> None:
        self.pack = struct.Struct(f">{block.count}H")
        numeric: list[tuple[int, str, list[int]]] = []  # (position in tags, struct code, byte indices)
        self.other: list[int] = []  # positions of string / bool-on-register tags: decode_registers
        # (position in tags, index into values(), signal) of numeric tags needing scale/offset or isfinite
        self.post: list[tuple[int, int, Signal]] = []
        for k, tag in enumerate(block.tags):
            sig, a = driver.tags[tag], driver.addrs[tag]
            if sig.type not in _STRUCT:
                self.other.append(k)
                continue
            wo = sig.word_order or driver.cfg.word_order
            bo = sig.byte_order or driver.cfg.byte_order
            idx = _value_byte_indices(a.offset - block.start, _WORDS[sig.type], wo, bo)
            if sig.scale != 1.0 or sig.offset != 0.0 or sig.type in ("float32", "float64"):
                self.post.append((k, len(numeric), sig))
            numeric.append((k, _STRUCT[sig.type], idx))
        self.all_numeric = not self.other
        self.numeric_pos = [k for k, _, _ in numeric]
        flat = [i for _, _, idx in numeric for i in idx]
        ascending = all(j > i for i, j in pairwise(flat))
        contiguous = all(idx == list(range(idx[0], idx[0] + len(idx))) for _, _, idx in numeric)
        self.gather: Any = None  # itemgetter picking value bytes out of the block, or None
        if numeric and ascending and contiguous:
            fmt, pos = [">"], flat[0]
            for _, code, idx in numeric:
                if idx[0] > pos:
                    fmt.append(f"{idx[0] - pos}x")
                fmt.append(code)
                pos = idx[-1] + 1
            self.first = flat[0]
            self.unpack = struct.Struct("".join(fmt))
        elif numeric:
            self.first = 0
            self.unpack = struct.Struct(">" + "".join(code for _, code, _ in numeric))
            self.gather = itemgetter(*flat)  # >= 2 indices, so it always returns a tuple

    def values(self, regs: list[int]) -> tuple[Any, ...]:
        """The numeric tags' raw values, in the order of numeric_pos."""
        if not self.numeric_pos:
            return ()
        data = self.pack.pack(*regs)
        if self.gather is not None:
            data = bytes(self.gather(data))
        return self.unpack.unpack_from(data, self.first)


def plan_reads(
    addrs: Mapping[str, ModbusAddress], sizes: Mapping[str, int], default_unit: int, max_gap: int
) -> list[ReadBlock]:
    """Group tags by (unit, table) and merge neighbours into reads of <= 125 registers / 2000 bits."""
    groups: dict[tuple[int, Table], list[tuple[int, int, str]]] = {}
    for tag, a in addrs.items():
        unit = a.unit if a.unit is not None else default_unit
        groups.setdefault((unit, a.table), []).append((a.offset, sizes[tag], tag))
    blocks: list[ReadBlock] = []
    for (unit, table), items in sorted(groups.items()):
        limit = MAX_BITS if table in ("coil", "discrete") else MAX_REGISTERS
        gap = max_gap * 16 if table in ("coil", "discrete") else max_gap
        items.sort()
        blocks += [ReadBlock(unit, table, start, count, tags) for start, count, tags in merge_spans(items, gap, limit)]
    return blocks


class ModbusDriver(Driver):
    kind = "modbus"

    def __init__(self, plc_name: str, plc: Plc, tags: Mapping[str, Signal], **kw: Any) -> None:
        super().__init__(plc_name, plc, tags, **kw)
        assert isinstance(plc, ModbusPlc)
        self.cfg: ModbusPlc = plc
        if plc.transport == "tcp" and not plc.host:
            raise DriverError(f"plc {plc_name}: modbus over tcp needs host")
        if plc.transport == "rtu" and not plc.serial_port:
            raise DriverError(f"plc {plc_name}: modbus rtu needs serial_port")
        self.addrs: dict[str, ModbusAddress] = {}
        errors: list[str] = []
        for name, sig in self.tags.items():
            try:
                a = parse_address(sig.address)
                if a.is_bit and sig.type != "bool":
                    raise TagError(f"{a.table} {sig.address!r} holds one bit: type must be bool, not {sig.type}")
                if sig.type == "string" and not sig.length:
                    raise TagError(f"string tag at {sig.address!r} needs length (characters)")
                if a.offset + register_count(sig) > 65536:
                    raise TagError(f"{sig.address!r} with type {sig.type} runs past register 65535")
                self.addrs[name] = a
            except TagError as exc:
                errors.append(f"tag {name}: {exc}")
        if errors:
            raise TagError(f"plc {plc_name}: " + "; ".join(errors))
        self._sizes = {t: (1 if a.is_bit else register_count(self.tags[t])) for t, a in self.addrs.items()}
        self.blocks = plan_reads(self.addrs, self._sizes, plc.unit, plc.max_gap)
        self._client: Any = None
        self._lock = asyncio.Lock()  # one request in flight per connection
        self.requests = 0  # read requests sent (for the bench and the status page)

    # ---------------------------------------------------------------- connection

    async def connect(self) -> None:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        c = self.cfg
        client: Any
        if c.transport == "rtu":
            client = AsyncModbusSerialClient(
                c.serial_port or "", framer=FramerType.RTU, baudrate=c.baudrate, parity=c.parity,
                stopbits=c.stopbits, timeout=c.timeout_s, retries=0, reconnect_delay=0,
            )
        else:
            # reconnect_delay=0: pymodbus must not reconnect behind our back; Driver.run owns that
            client = AsyncModbusTcpClient(
                c.host or "", port=c.port, timeout=c.timeout_s, retries=0, reconnect_delay=0
            )
        self._client = client
        try:
            ok = await asyncio.wait_for(client.connect(), c.timeout_s + 1.0)
        except (ModbusException, OSError) as exc:
            raise DriverError(f"cannot connect to modbus {self._where()}: {exc}") from exc
        if not ok:
            raise DriverError(f"cannot connect to modbus {self._where()}: connection refused or timed out")

    def _where(self) -> str:
        c = self.cfg
        return c.serial_port or "" if c.transport == "rtu" else f"{c.host}:{c.port}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must never raise: the socket may already be gone
                pass

    # ---------------------------------------------------------------- reading

    async def _request(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool] | int:
        """One read; returns registers/bits, or the Modbus exception code (int)."""
        client = self._client
        if client is None or not client.connected:
            raise DriverError(f"not connected to modbus {self._where()}")
        fn = getattr(client, _READ_FN[table])
        async with self._lock:
            self.requests += 1
            try:
                rr = await fn(start, count=count, device_id=unit)
            except ConnectionException as exc:
                raise DriverError(f"modbus {self._where()} connection lost: {exc}") from exc
            except ModbusException as exc:
                if not client.connected:
                    raise DriverError(f"modbus {self._where()} connection lost: {exc}") from exc
                raise TimeoutError(str(exc)) from exc
        if rr.isError():
            return int(getattr(rr, "exception_code", 0) or 0)
        if table in ("coil", "discrete"):
            return list(rr.bits[:count])
        return list(rr.registers)

    def _decode(self, tag: str, data: list[int] | list[bool], start: int, now: float) -> Sample:
        sig, a = self.tags[tag], self.addrs[tag]
        i = a.offset - start
        try:
            if a.is_bit:
                raw: Value = bool(data[i])
            else:
                raw = decode_registers(
                    data[i : i + self._sizes[tag]], sig,  # type: ignore[arg-type]
                    sig.word_order or self.cfg.word_order, sig.byte_order or self.cfg.byte_order,
                )
        except (struct.error, IndexError) as exc:
            return Sample(tag, None, "bad", None, now, f"cannot decode {sig.type} at {sig.address}: {exc}")
        value = raw if sig.scale == 1.0 and sig.offset == 0.0 and not isinstance(raw, float) else self.scaled(raw, sig)
        if value is None:
            return Sample(tag, None, "bad", None, now, f"{sig.address}: not a finite number")
        return Sample(tag, value, "good", None, now)

    def _error_sample(self, tag: str, code: int, now: float) -> Sample:
        sig = self.tags[tag]
        text = {
            1: "illegal function",
            2: "illegal data address (no such register on the device)",
            3: "illegal data value",
            4: "device failure",
            6: "device busy",
            11: "gateway target did not respond",
        }.get(code, "error")
        return Sample(tag, None, "bad", None, now, f"{sig.address}: modbus exception {code}: {text}")

    async def _read_tag(self, tag: str) -> Sample:
        a, sig = self.addrs[tag], self.tags[tag]
        unit = a.unit if a.unit is not None else self.cfg.unit
        try:
            res = await self._request(unit, a.table, a.offset, 1 if a.is_bit else register_count(sig))
        except TimeoutError as exc:
            return Sample(tag, None, "bad", None, self.clock(), f"{sig.address}: timeout: {exc}")
        if isinstance(res, int):
            return self._error_sample(tag, res, self.clock())
        return self._decode(tag, res, a.offset, self.clock())

    def _decode_block(self, b: ReadBlock, data: list[int] | list[bool], now: float) -> list[Sample]:
        """A merged read's response -> one sample per tag of the block, in b.tags order."""
        if len(data) != b.count:  # a short (or long) answer: tag by tag, short tags go bad
            return [self._decode(t, data, b.start, now) for t in b.tags]
        if b.table in ("coil", "discrete"):
            addrs, start = self.addrs, b.start
            return [Sample(t, bool(data[addrs[t].offset - start]), "good", None, now) for t in b.tags]
        codec = b.codec
        if codec is None:
            codec = b.codec = _BlockCodec(b, self)
        tags = b.tags
        vals = codec.values(data)  # type: ignore[arg-type]
        out: list[Any]
        if codec.all_numeric:
            out = [Sample(t, v, "good", None, now) for t, v in zip(tags, vals, strict=True)]
        else:
            out = [None] * len(tags)
            for k, v in zip(codec.numeric_pos, vals, strict=True):
                out[k] = Sample(tags[k], v, "good", None, now)
            for k in codec.other:  # strings, bool on a register: tag by tag
                out[k] = self._decode(tags[k], data, b.start, now)
        if codec.post:
            for k, j, sig in codec.post:
                raw = vals[j]
                if isinstance(raw, float) and not math.isfinite(raw):
                    out[k] = Sample(tags[k], None, "bad", None, now, f"{sig.address}: not a finite number")
                elif sig.scale != 1.0 or sig.offset != 0.0:
                    out[k] = Sample(tags[k], raw * sig.scale + sig.offset, "good", None, now)
        return out

    async def read(self) -> list[Sample]:
        out: list[Sample] = []
        for b in self.blocks:
            if b.split:
                out.extend([await self._read_tag(t) for t in b.tags])
                continue
            try:
                res = await self._request(b.unit, b.table, b.start, b.count)
            except TimeoutError as exc:
                now = self.clock()
                out.extend(Sample(t, None, "bad", None, now, f"timeout: {exc}") for t in b.tags)
                continue
            if isinstance(res, int):
                if res == ILLEGAL_ADDRESS and len(b.tags) > 1:
                    # Some address inside the merged span does not exist: read per tag from now on.
                    b.split = True
                    out.extend([await self._read_tag(t) for t in b.tags])
                else:
                    now = self.clock()
                    out.extend(self._error_sample(t, res, now) for t in b.tags)
                continue
            out += self._decode_block(b, res, self.clock())
        return out
