"""EtherNet/IP driver for Logix controllers (ControlLogix, CompactLogix) through pycomm3.

Options (``driver: enip`` in the line config, :class:`config.models.EnipPlc`):

- ``host``, ``port`` (44818); ``route``: CIP route after the host, e.g. ``bp/2`` for a
  ControlLogix CPU in slot 2 (default: backplane slot 0)
- ``interval_ms``: poll period; ``timeout_s``: per request (socket timeout)
- ``upload_tags`` (false): upload the controller's tag list at connect and check each configured
  tag against it (a missing tag or a type that differs from the config becomes that tag's error).
  Controllers or simulators that cannot answer the upload (cpppo) fall back to the config types.

Tag addresses are Logix tag names: ``Line3_Total``, ``Counts[3]`` (array element),
``Station.Temp`` (UDT member), ``Program:Main.Speed`` (program scope), ``Status.5`` with type
``bool`` (bit 5 of an integer). The signal's ``type`` gives the CIP type, so no tag-list upload is
needed: bool=BOOL, int16=INT, uint16=UINT, int32=DINT, uint32=UDINT, int64=LINT, uint64=ULINT,
float32=REAL, float64=LREAL, string=STRING (Logix STRING structure, CIP STRING or SHORT_STRING).
The type code in each reply is checked against it, so a REAL read as a DINT is an error, not a
wrong number. Elements of BOOL arrays (``Flags[5]``) are not supported; use a bit of a DINT.

All tags are read with Multiple Service Packet requests packed up to the connection size
negotiated by the (Large) Forward Open; a value too big for one packet uses Read Tag Fragmented.
Logix replies carry no timestamps: ``source_ts`` is None.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any, ClassVar, TypeVar

from pycomm3 import LogixDriver
from pycomm3.cip.data_types import StringDataType
from pycomm3.const import MULTISERVICE_READ_OVERHEAD
from pycomm3.exceptions import CommError, PycommError
from pycomm3.packets.logix import (
    MultiServiceRequestPacket,
    ReadTagFragmentedRequestPacket,
    ReadTagRequestPacket,
)

from config.models import EnipPlc, Signal
from drivers.base import Driver, DriverError, Sample, TagError, Value
from edge.logs import get_logger

__all__ = ["CIP_TYPES", "EnipDriver", "EnipTag", "decode_reply", "parse_tag"]

T = TypeVar("T")

# config type -> (CIP type name, type code, struct format)
CIP_TYPES: dict[str, tuple[str, int, str]] = {
    "bool": ("BOOL", 0xC1, "<B"),
    "int16": ("INT", 0xC3, "<h"),
    "uint16": ("UINT", 0xC7, "<H"),
    "int32": ("DINT", 0xC4, "<i"),
    "uint32": ("UDINT", 0xC8, "<I"),
    "int64": ("LINT", 0xC5, "<q"),
    "uint64": ("ULINT", 0xC9, "<Q"),
    "float32": ("REAL", 0xCA, "<f"),
    "float64": ("LREAL", 0xCB, "<d"),
    "string": ("STRING", 0xD0, ""),
}
_CODE_NAMES = {
    0xC1: "BOOL", 0xC2: "SINT", 0xC3: "INT", 0xC4: "DINT", 0xC5: "LINT", 0xC6: "USINT", 0xC7: "UINT",
    0xC8: "UDINT", 0xC9: "ULINT", 0xCA: "REAL", 0xCB: "LREAL", 0xD0: "STRING", 0xD3: "DWORD",
    0xDA: "SHORT_STRING",
}  # fmt: skip
# Integer codes a bit address may sit in: code -> format.
_INT_FORMATS = {
    0xC2: "<b", 0xC3: "<h", 0xC4: "<i", 0xC5: "<q", 0xC6: "<B", 0xC7: "<H", 0xC8: "<I", 0xC9: "<Q", 0xD3: "<I",
}  # fmt: skip
_STRUCT_REPLY = b"\xa0\x02"
_LOGIX_STRING_LEN = 82
_REPLY_OVERHEAD = 4 + 2 + 2  # service/status header, type code, struct handle


class _RawReply(StringDataType):
    """Hands the reply bytes through untouched: the driver decodes them itself, checking the type
    code pycomm3 would skip. A string type so pycomm3 also leaves structure replies alone."""

    @classmethod
    def _decode(cls, stream: BytesIO) -> Any:
        return stream.read()


@dataclass(frozen=True)
class EnipTag:
    name: str  # the role name in lineside
    plc_tag: str  # what is requested: the address without a bit suffix
    bit: int | None
    sig: Signal

    def reply_size(self) -> int:
        if self.sig.type == "string":
            return _REPLY_OVERHEAD + 4 + max(self.sig.length or 0, _LOGIX_STRING_LEN) + 2
        if self.bit is not None:
            return _REPLY_OVERHEAD + 8  # any integer up to LINT
        return _REPLY_OVERHEAD + struct.calcsize(CIP_TYPES[self.sig.type][2])


def parse_tag(name: str, sig: Signal) -> EnipTag:
    """Split a Logix address into the requested tag and an optional bit; TagError if malformed."""
    addr = sig.address.strip()
    if not addr or any(c.isspace() for c in addr) or addr.count("[") != addr.count("]"):
        raise TagError(f"bad Logix tag name {sig.address!r}: expected e.g. Total, Counts[3], Station.Temp")
    head, _, last = addr.rpartition(".")
    if head and last.isdigit():
        if sig.type != "bool":
            raise TagError(f"{sig.address!r} addresses a bit; its type must be bool, not {sig.type}")
        if int(last) > 63:
            raise TagError(f"{sig.address!r}: bit {last} is beyond 63")
        return EnipTag(name, head, int(last), sig)
    return EnipTag(name, addr, None, sig)


def decode_reply(data: bytes, tag: EnipTag) -> Value:
    """Decode one Read Tag reply (type code + value), checking the type against the config."""
    sig = tag.sig
    want_name, want_code, fmt = CIP_TYPES[sig.type]
    if data[:2] == _STRUCT_REPLY:
        payload = data[4:]
        if sig.type != "string":
            raise TagError(f"{sig.address!r} is a structure in the PLC; address one of its members")
        (n,) = struct.unpack_from("<i", payload, 0)
        if not 0 <= n <= len(payload) - 4:
            raise TagError(f"{sig.address!r} is a structure but not a STRING (LEN={n})")
        return bytes(payload[4 : 4 + n]).decode("latin-1")
    if len(data) < 2:
        raise TagError(f"empty reply for {sig.address!r}")
    (code,) = struct.unpack_from("<H", data, 0)
    payload = data[2:]
    actual = _CODE_NAMES.get(code, f"type 0x{code:02X}")
    if tag.bit is not None:
        if code not in _INT_FORMATS:
            raise TagError(f"{sig.address!r}: a bit address needs an integer tag, the PLC has {actual}")
        int_fmt = _INT_FORMATS[code]
        if tag.bit >= 8 * struct.calcsize(int_fmt):
            raise TagError(f"{sig.address!r}: bit {tag.bit} is beyond the {actual}")
        return bool((struct.unpack_from(int_fmt, payload, 0)[0] >> tag.bit) & 1)
    if sig.type == "string":
        if code == 0xD0:
            (n,) = struct.unpack_from("<H", payload, 0)
            return bytes(payload[2 : 2 + n]).decode("latin-1")
        if code == 0xDA:
            return bytes(payload[1 : 1 + payload[0]]).decode("latin-1")
    elif code == want_code:
        value: int | float = struct.unpack_from(fmt, payload, 0)[0]
        return bool(value) if sig.type == "bool" else value
    raise TagError(f"{sig.address!r} is {actual} in the PLC but the config says {sig.type} ({want_name})")


def _type_name(info: Any) -> str | None:
    """The CIP type name of an uploaded tag definition (pycomm3's get_tag_info), if atomic."""
    if isinstance(info, dict):
        name = info.get("data_type_name")
        return name if isinstance(name, str) else None
    return None


def _read_request(plc: LogixDriver, tag: EnipTag, request_id: int) -> ReadTagRequestPacket:
    """A symbolic Read Tag request (no instance ids: they need the upload)."""
    info = {"tag_type": "atomic", "data_type_name": "RAW", "type_class": _RawReply}
    try:
        req = ReadTagRequestPacket(plc._sequence, tag.plc_tag, 1, info, request_id, False)
        req.build_message()  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise TagError(f"cannot encode Logix tag name {tag.sig.address!r}: {exc}") from exc
    if req.error:
        raise TagError(f"cannot encode Logix tag name {tag.sig.address!r}: {req.error}")
    return req


class EnipDriver(Driver):
    """Polls Logix tags with packed multi-service reads, types from the config."""

    kind: ClassVar[str] = "enip"
    plc: EnipPlc

    def __init__(self, plc_name: str, plc: EnipPlc, tags: Mapping[str, Signal], **kw: Any) -> None:
        super().__init__(plc_name, plc, tags, **kw)
        self.log = get_logger(plc=plc_name, driver="enip")
        self._plc: LogixDriver | None = None
        # pycomm3 is blocking and not thread-safe: one worker thread owns the connection.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enip-{plc_name}")
        self._tags: dict[str, EnipTag] = {}
        self._bad_config: dict[str, str] = {}
        for name, sig in self.tags.items():
            try:
                self._tags[name] = parse_tag(name, sig)
            except TagError as exc:
                self._bad_config[name] = str(exc)
        self._upload_errors: dict[str, str] = {}
        # None: whatever the Forward Open negotiates (4000 bytes large, 500 standard). Set lower
        # to force small packets (older firmware, or a test of the fragmented path).
        self.connection_size: int | None = None

    @property
    def path(self) -> str:
        route = (self.plc.route or "").strip("/")
        return f"{self.plc.host}:{self.plc.port}" + (f"/{route}" if route else "")

    async def _blocking(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        # The socket timeout bounds every call; this outer bound only guards against a wedged thread.
        return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), self.plc.timeout_s * 3 + 5)

    def _open(self, upload: bool) -> LogixDriver:
        plc = LogixDriver(self.path, init_tags=upload, init_program_tags=upload)
        plc.socket_timeout = self.plc.timeout_s
        if self.connection_size is not None:
            plc._cfg["extended forward open"] = self.connection_size > 511
            plc._cfg["connection_size"] = self.connection_size
        try:
            plc.open()  # type: ignore[no-untyped-call]
            if not plc._forward_open():  # type: ignore[no-untyped-call]
                raise DriverError(f"EtherNet/IP {self.path}: the controller refused the Forward Open")
        except BaseException:
            try:
                plc.close()  # type: ignore[no-untyped-call]
            except Exception:  # already broken; the open error is the one to report
                pass
            raise
        return plc

    def _connect_sync(self) -> LogixDriver:
        self._upload_errors = {}
        try:
            if not self.plc.upload_tags:
                return self._open(upload=False)
            try:
                plc = self._open(upload=True)
            except CommError:
                raise
            except PycommError as exc:
                # cpppo and some gateways answer no tag-list upload: keep going on config types.
                self.log.warning("tag_upload_failed", path=self.path, error=str(exc))
                return self._open(upload=False)
            self._check_upload(plc)
            return plc
        except PycommError as exc:
            cause = f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)
            raise DriverError(f"cannot connect to EtherNet/IP {self.path}: {cause}") from exc

    def _check_encoding(self, plc: LogixDriver) -> None:
        for name, tag in self._tags.items():
            try:
                _read_request(plc, tag, 0)
            except TagError as exc:
                self._upload_errors[name] = str(exc)

    def _check_upload(self, plc: LogixDriver) -> None:
        for name, tag in self._tags.items():
            try:
                info = plc.get_tag_info(tag.plc_tag)
            except PycommError:
                info = None
            if info is None:
                self._upload_errors[name] = f"{tag.sig.address!r} is not in the controller's tag list"
                continue
            want = CIP_TYPES[tag.sig.type][0]
            have = _type_name(info)
            if tag.bit is None and tag.sig.type != "string" and have is not None and have != want:
                self._upload_errors[name] = (
                    f"{tag.sig.address!r} is {have} in the controller but the config says {tag.sig.type} ({want})"
                )

    async def connect(self) -> None:
        self._plc = await self._blocking(self._connect_sync)
        self._check_encoding(self._plc)
        self.log.info("plc_connected", path=self.path, connection_size=self._plc.connection_size)

    def _requests(self, plc: LogixDriver, tags: list[EnipTag]) -> list[tuple[Any, list[EnipTag]]]:
        """Pack read requests into multi-service packets that fit the connection size both ways."""
        budget = plc.connection_size
        out: list[tuple[Any, list[EnipTag]]] = []
        group: list[tuple[Any, EnipTag]] = []
        req_size = resp_size = MULTISERVICE_READ_OVERHEAD

        def flush() -> None:
            if group:
                out.append(
                    (MultiServiceRequestPacket(plc._sequence, [r for r, _ in group]), [t for _, t in group])
                )
                group.clear()

        for i, tag in enumerate(tags):
            req = _read_request(plc, tag, i)
            rq, rs = len(req.tag_only_message()) + 2, tag.reply_size() + 2  # type: ignore[no-untyped-call]
            if rs + MULTISERVICE_READ_OVERHEAD > budget:
                out.append((ReadTagFragmentedRequestPacket.from_request(plc._sequence, req), [tag]))
                continue
            if group and (req_size + rq > budget or resp_size + rs > budget):
                flush()
                req_size = resp_size = MULTISERVICE_READ_OVERHEAD
            group.append((req, tag))
            req_size += rq
            resp_size += rs
        flush()
        return out

    def _read_sync(self, plc: LogixDriver, tags: list[EnipTag]) -> dict[str, tuple[bytes | None, str | None]]:
        out: dict[str, tuple[bytes | None, str | None]] = {}
        try:
            for request, group in self._requests(plc, tags):
                response = plc.send(request)
                if isinstance(request, ReadTagFragmentedRequestPacket):
                    if response:
                        out[group[0].name] = (bytes(response._data_type + response.value_bytes), None)
                    else:
                        out[group[0].name] = (
                            None,
                            f"PLC rejected {group[0].sig.address!r}: {response.error}",
                        )
                    continue
                if not response.responses:
                    # No per-tag replies at all: the session or connection is broken, reconnect.
                    raise DriverError(f"EtherNet/IP {self.path}: bad reply: {response.error}")
                for sub, tag in zip(response.responses, group, strict=False):
                    if sub:
                        out[tag.name] = (bytes(sub.data), None)
                    else:
                        out[tag.name] = (None, f"PLC rejected {tag.sig.address!r}: {sub.error}")
        except (DriverError, TagError):
            raise
        except Exception as exc:
            # PycommError, and also what pycomm3 lets escape on a reply it cannot parse (e.g.
            # StopIteration on an empty multi-service reply): the link is not trustworthy, reconnect.
            cause = f"{exc}: {exc.__cause__}" if exc.__cause__ else (str(exc) or type(exc).__name__)
            raise DriverError(f"EtherNet/IP {self.path}: {cause}") from exc
        return out

    async def read(self) -> list[Sample]:
        plc = self._plc
        if plc is None:
            raise DriverError("not connected")
        wanted = [t for n, t in self._tags.items() if n not in self._upload_errors]
        raw = await self._blocking(lambda: self._read_sync(plc, wanted))
        now = self.clock()
        samples: list[Sample] = []
        for name, sig in self.tags.items():
            error = self._bad_config.get(name) or self._upload_errors.get(name)
            data: bytes | None = None
            if error is None:
                data, error = raw.get(name, (None, "no reply for this tag"))
            if error is not None or data is None:
                samples.append(Sample(name, None, "bad", None, now, error))
                continue
            try:
                value = self.scaled(decode_reply(data, self._tags[name]), sig)
            except (TagError, struct.error) as exc:
                samples.append(Sample(name, None, "bad", None, now, str(exc)))
                continue
            if value is None:
                samples.append(Sample(name, None, "bad", None, now, "value is NaN or infinite"))
            else:
                samples.append(Sample(name, value, "good", None, now))
        return samples

    def _close_sync(self) -> None:
        plc, self._plc = self._plc, None
        if plc is not None:
            try:
                plc.close()  # type: ignore[no-untyped-call]
            except Exception:  # closing a dead link must never raise
                pass

    async def close(self) -> None:
        try:
            await self._blocking(self._close_sync)
        except Exception:  # executor gone at shutdown, or the outer bound hit: drop the link anyway
            self._plc = None
