"""The reference store's HTTP API (RECORDS.md "Wire protocol" and "Follow-up queries").

`POST /v1/records` answers 200 only after the batch is committed. A 400 lists every record
it cannot take (by index and id) and means nothing of that batch was stored: the agent
quarantines exactly those and sends the rest again, which then goes through as a whole.
All-or-nothing keeps "200 = the whole batch is stored" true, so the agent never has to
work out which part of a batch went in.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, get_args

import msgspec
from msgspec import Meta, Struct
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.logs import get_logger
from sync.records import (
    IngestErrors,
    IngestResult,
    KpiRecord,
    StopCategory,
    StopRecord,
    encode_json,
    format_ts,
    parse_ts,
)
from sync.store.auth import AuthError, authenticate, require, visible_lines
from sync.store.backend import FollowUpType, Storage, StorageError
from sync.store.body import BodyError, decode_batch, gunzip_limited, read_limited
from sync.store.tokens import TokenEntry
from sync.store.views import line_summary, shift_table, weeks_start

__all__ = ["StoreSettings", "create_app"]

MiB = 1024 * 1024
_CONTENT_TYPES = {
    "application/json": "json",
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/vnd.msgpack": "msgpack",
}
_STOP_CATEGORIES: tuple[str, ...] = get_args(StopCategory)
_INTERVALS = ("hour", "shift", "order", "day")
_STATUSES = ("open", "acknowledged", "closed")
_MAX_LIMIT = 10_000


@dataclass(frozen=True)
class StoreSettings:
    max_body_bytes: int = 64 * MiB
    max_batch_records: int = 100_000
    #: test-only fault injection: exit the process (like kill -9) right after the N-th
    #: committed batch, before its 200 is sent
    exit_after_commit: int | None = None


class ReasonUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """`PATCH /v1/stops/{id}` body."""

    line: Annotated[str, Meta(min_length=1, max_length=512)]
    reason_code: int | Annotated[str, Meta(min_length=1, max_length=512)]
    reason_text: str | None = None
    reason_category: str | None = None


_Field = Annotated[str, Meta(max_length=512)] | None


class ContextUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/lines/{line}/context` body: fields left out keep their value, null clears one."""

    order: _Field | msgspec.UnsetType = msgspec.UNSET
    product: _Field | msgspec.UnsetType = msgspec.UNSET
    operator: _Field | msgspec.UnsetType = msgspec.UNSET


_ALL_RECORDS = 10_000_000  # the per-line views read every record of their window


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(name: str, value: str) -> str:
    """A path or query value headed for an indexed column: no NUL (PostgreSQL text refuses it)."""
    if "\x00" in value:
        raise _HttpError(400, f"{name} must not contain a NUL character")
    return value


def _json(obj: Any, status: int = 200) -> Response:
    return Response(encode_json(obj), status_code=status, media_type="application/json")


def _list(key: str, bodies: Sequence[bytes]) -> Response:
    # Rows are stored as JSON already; joined, not parsed and encoded again.
    return Response(
        b'{"' + key.encode() + b'":[' + b",".join(bodies) + b'],"count":' + str(len(bodies)).encode() + b"}",
        media_type="application/json",
    )


def create_app(storage: Storage, tokens: dict[str, TokenEntry], settings: StoreSettings | None = None) -> Starlette:
    """The store as an ASGI app; it opens `storage` on startup and closes it on shutdown."""
    cfg = settings or StoreSettings()
    log = get_logger(component="store")
    committed = 0

    def auth(request: Request) -> TokenEntry:
        return authenticate(request.headers.get("authorization"), tokens)

    # ------------------------------------------------------------ ingest

    async def post_records(request: Request) -> Response:
        nonlocal committed
        entry: TokenEntry | None = None
        try:
            entry = auth(request)
            require(entry, "write", [])
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            fmt = _CONTENT_TYPES.get(ctype)
            if fmt is None:
                raise BodyError(415, f"Content-Type {ctype or '(none)'!r} is not supported: "
                                     "use application/json or application/msgpack")
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "", "gzip", "x-gzip"):
                hint = " (zstd needs a library this store does not ship)" if encoding == "zstd" else ""
                raise BodyError(415, f"Content-Encoding {encoding!r} is not supported{hint}: use gzip or none")
            limit = cfg.max_body_bytes
            body = await read_limited(
                request.stream(), request.headers.get("content-length"), limit, max(2 * limit, 8 * MiB)
            )
            if encoding in ("gzip", "x-gzip"):
                body = gunzip_limited(body, limit)
            batch = decode_batch(body, fmt, cfg.max_batch_records)
            require(entry, "write", [batch.source.line, *(r.line for r in batch.records)])
            if batch.errors:
                raise BodyError(400, f"{len(batch.errors)} of {batch.total} records are invalid", batch.errors)
            try:
                result = await storage.ingest(batch.records)
            except StorageError as exc:
                log.error("batch_not_stored", batch_id=batch.batch_id, line=batch.source.line, error=str(exc))
                return _json(IngestErrors(error="store database unavailable; retry later"), 503)
            if not isinstance(result, IngestResult):
                raise BodyError(400, f"{len(result)} of {batch.total} records conflict with stored ones", result)
            committed += 1
            if cfg.exit_after_commit is not None and committed >= cfg.exit_after_commit:
                os._exit(137)  # the fault the agent must survive: stored, but no answer
            log.info(
                "batch_stored", batch_id=batch.batch_id, line=batch.source.line, token=entry.name,
                accepted=result.accepted, duplicates=result.duplicates,
            )
            return _json(result)
        except AuthError as exc:
            log.warning("batch_refused", status=exc.status, reason=exc.message, token=entry.name if entry else None)
            return _json(IngestErrors(error=exc.message), exc.status)
        except BodyError as exc:
            log.warning(
                "batch_refused", status=exc.status, reason=exc.message, token=entry.name if entry else None,
                invalid_records=len(exc.errors),
            )
            return _json(IngestErrors(error=exc.message, errors=exc.errors), exc.status)

    # ------------------------------------------------------------ query helpers

    def lines_for(request: Request, entry: TokenEntry) -> list[str] | None:
        line = request.query_params.get("line")
        if line:
            require(entry, None, [_text("line", line)])
            return [line]
        return visible_lines(entry)

    def since_param(request: Request) -> str | None:
        raw = request.query_params.get("since")
        if not raw:
            return None
        try:
            return format_ts(parse_ts(raw))
        except ValueError:
            raise _HttpError(400, "since must be an RFC 3339 timestamp with offset, e.g. 2026-11-22T06:00:00Z") from None

    def choice(request: Request, name: str, allowed: Sequence[str]) -> str | None:
        raw = request.query_params.get(name)
        if not raw:
            return None
        if raw not in allowed:
            raise _HttpError(400, f"{name} must be one of {', '.join(allowed)}")
        return raw

    def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _HttpError(400, f"{name} must be an integer") from None
        if not lo <= value <= hi:
            raise _HttpError(400, f"{name} must be between {lo} and {hi}")
        return value

    def bool_param(request: Request, name: str) -> bool | None:
        raw = request.query_params.get(name)
        if not raw:
            return None
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise _HttpError(400, f"{name} must be true or false")

    # ------------------------------------------------------------ follow-up queries

    async def get_stops(request: Request) -> Response:
        entry = auth(request)
        bodies = await storage.stops(
            lines_for(request, entry),
            since_param(request),
            choice(request, "category", _STOP_CATEGORIES),
            bool_param(request, "unreasoned"),
            int_param(request, "limit", 1000, 1, _MAX_LIMIT),
        )
        return _list("stops", bodies)

    async def patch_stop(request: Request) -> Response:
        entry = auth(request)
        raw = await read_limited(request.stream(), request.headers.get("content-length"), 64 * 1024, MiB)
        try:
            upd = msgspec.json.decode(raw, type=ReasonUpdate)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _HttpError(400, f"body must be {{line, reason_code, reason_text?, reason_category?}}: {exc}") from None
        require(entry, "read", [_text("line", upd.line)])
        stop_id = _text("id", request.path_params["id"])
        if isinstance(upd.reason_code, str):
            _text("reason_code", upd.reason_code)
        body = await storage.set_reason(upd.line, stop_id, upd.reason_code, upd.reason_text, upd.reason_category)
        if body is None:
            raise _HttpError(404, f"no stop {stop_id!r} on line {upd.line!r}")
        log.info("reason_set", line=upd.line, stop_id=stop_id, token=entry.name)
        return Response(body, media_type="application/json")

    async def get_reasons(request: Request) -> Response:
        entry = auth(request)
        changes = await storage.reasons(
            lines_for(request, entry),
            int_param(request, "since_seq", 0, 0, 2**62),
            int_param(request, "limit", 1000, 1, _MAX_LIMIT),
        )
        last = changes[-1].seq if changes else int_param(request, "since_seq", 0, 0, 2**62)
        return _json({"reasons": changes, "last_seq": last})

    async def put_context(request: Request) -> Response:
        entry = auth(request)
        line = _text("line", request.path_params["line"])
        require(entry, "read", [line])
        raw = await read_limited(request.stream(), request.headers.get("content-length"), 64 * 1024, MiB)
        try:
            upd = msgspec.json.decode(raw, type=ContextUpdate)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _HttpError(400, f"body must be {{order?, product?, operator?}} (strings or null): {exc}") from None
        fields = {k: v for k in ("order", "product", "operator")
                  if (v := getattr(upd, k)) is not msgspec.UNSET}
        if not fields:
            raise _HttpError(400, "set at least one of order, product, operator")
        for k, v in fields.items():
            if isinstance(v, str):
                _text(k, v)
        change = await storage.set_context(line, fields)
        log.info("context_set", line=line, fields=sorted(fields), token=entry.name)
        return _json(change)

    async def get_context(request: Request) -> Response:
        entry = auth(request)
        since = int_param(request, "since_seq", 0, 0, 2**62)
        changes = await storage.contexts(lines_for(request, entry), since, int_param(request, "limit", 1000, 1, _MAX_LIMIT))
        return _json({"context": changes, "last_seq": changes[-1].seq if changes else since})

    def line_param(request: Request, entry: TokenEntry) -> str:
        line = _text("line", request.path_params["line"])
        require(entry, None, [line])
        return line

    async def get_summary(request: Request) -> Response:
        entry = auth(request)
        line = line_param(request, entry)
        since = weeks_start(time.time(), int_param(request, "weeks", 4, 1, 104))
        stops = [msgspec.json.decode(b, type=StopRecord)
                 for b in await storage.stops([line], format_ts(since), None, None, _ALL_RECORDS)]
        kpis = [msgspec.json.decode(b, type=KpiRecord)
                for b in await storage.kpis([line], None, format_ts(since), _ALL_RECORDS)]
        return _json(line_summary(line, since, stops, kpis))

    async def get_shifts(request: Request) -> Response:
        entry = auth(request)
        line = line_param(request, entry)
        kpis = [msgspec.json.decode(b, type=KpiRecord)
                for b in await storage.kpis([line], "shift", since_param(request), _ALL_RECORDS)]
        rows = shift_table(kpis)
        return _json({"line": line, "shifts": rows, "count": len(rows)})

    async def get_kpis(request: Request) -> Response:
        entry = auth(request)
        bodies = await storage.kpis(
            lines_for(request, entry),
            choice(request, "interval", _INTERVALS),
            since_param(request),
            int_param(request, "limit", 1000, 1, _MAX_LIMIT),
        )
        return _list("kpis", bodies)

    def follow_up(rtype: FollowUpType, key: str) -> tuple[Any, Any]:
        async def listing(request: Request) -> Response:
            entry = auth(request)
            bodies = await storage.follow_ups(
                rtype,
                lines_for(request, entry),
                choice(request, "status", _STATUSES),
                int_param(request, "limit", 1000, 1, _MAX_LIMIT),
            )
            return _list(key, bodies)

        async def ack(request: Request) -> Response:
            entry = auth(request)
            line = request.query_params.get("line")
            if not line:
                raise _HttpError(400, "line is required (?line=...): ids are unique per line")
            require(entry, "read", [_text("line", line)])
            rid = _text("id", request.path_params["id"])
            outcome, body = await storage.ack(rtype, line, rid)
            if outcome == "not_found" or body is None:
                raise _HttpError(404, f"no {rtype} {rid!r} on line {line!r}")
            if outcome == "closed":
                raise _HttpError(409, f"{rtype} {rid!r} is closed; nothing to acknowledge")
            if outcome == "acknowledged":
                log.info("follow_up_acknowledged", type=rtype, line=line, id=rid, token=entry.name)
            return Response(body, media_type="application/json")

        return listing, ack

    async def healthz(request: Request) -> Response:
        auth(request)
        try:
            await storage.ping()
        except StorageError as exc:
            return _json({"status": "unavailable", "error": str(exc)}, 503)
        return _json({"status": "ok"})

    # ------------------------------------------------------------ errors

    async def on_http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _HttpError | AuthError | BodyError):
            return _json({"error": exc.message}, exc.status)
        if isinstance(exc, StorageError):
            log.error("request_failed", path=request.url.path, error=str(exc))
            return _json({"error": "store database unavailable; retry later"}, 503)
        log.exception("request_failed", path=request.url.path)
        return _json({"error": "internal error"}, 500)

    mr_list, mr_ack = follow_up("maintenance_request", "maintenance_requests")
    qa_list, qa_ack = follow_up("quality_alert", "quality_alerts")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await storage.open()
        log.info("store_opened", backend=type(storage).__name__, tokens=len(tokens))
        try:
            yield
        finally:
            await storage.close()

    return Starlette(
        routes=[
            Route("/v1/records", post_records, methods=["POST"]),
            Route("/v1/stops", get_stops, methods=["GET"]),
            Route("/v1/stops/{id:path}", patch_stop, methods=["PATCH"]),
            Route("/v1/reasons", get_reasons, methods=["GET"]),
            Route("/v1/kpis", get_kpis, methods=["GET"]),
            Route("/v1/context", get_context, methods=["GET"]),
            Route("/v1/lines/{line}/context", put_context, methods=["PUT"]),
            Route("/v1/lines/{line}/summary", get_summary, methods=["GET"]),
            Route("/v1/lines/{line}/shifts", get_shifts, methods=["GET"]),
            Route("/v1/maintenance-requests", mr_list, methods=["GET"]),
            Route("/v1/maintenance-requests/{id:path}/ack", mr_ack, methods=["POST"]),
            Route("/v1/quality-alerts", qa_list, methods=["GET"]),
            Route("/v1/quality-alerts/{id:path}/ack", qa_ack, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={
            _HttpError: on_http_error,
            AuthError: on_http_error,
            BodyError: on_http_error,
            StorageError: on_http_error,
            Exception: on_http_error,
        },
        lifespan=lifespan,
    )
