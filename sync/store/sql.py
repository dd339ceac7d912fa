"""The storage logic both backends share: schema, idempotent upsert, queries, reasons, acks.

Every call runs on one of two worker threads, each with its own connection: one writer
(all writes are serialized, so "highest rev wins" is decided without races inside a
process) and one reader (queries do not wait behind a large ingest). Backends provide the
connection, the transaction (with whatever lock makes concurrent store processes safe)
and a few dialect words.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import msgspec

from sync.records import (
    IngestError,
    IngestResult,
    MaintenanceRequestRecord,
    QualityAlertRecord,
    Record,
    StopRecord,
    encode_json,
    format_ts,
)
from sync.store.backend import AckOutcome, ContextChange, FollowUpType, ReasonChange, Storage, StorageError

__all__ = ["SqlStorage"]

T = TypeVar("T")
_COLUMNS = (
    "line", "id", "type", "rev", "edge_rev", "ts", "start_ts", "end_ts", "category",
    "reason_code", "kpi_interval", "status", "central_reason", "acked_at", "body", "stored_at",
)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {}


def _decoder(cls: type[Record]) -> msgspec.json.Decoder[Any]:
    dec = _decoders.get(cls.__name__)
    if dec is None:
        dec = _decoders[cls.__name__] = msgspec.json.Decoder(cls)
    return dec


class _Existing(msgspec.Struct):
    type: str
    rev: int
    edge_rev: int
    central_reason: str | None
    acked_at: str | None


class _CentralReason(msgspec.Struct):
    reason_code: int | str | None
    reason_text: str | None
    reason_category: str | None


def _row(rec: Record, rev: int, edge_rev: int, central: str | None, acked: str | None, now: str) -> tuple[Any, ...]:
    start = getattr(rec, "start", None)
    end = getattr(rec, "end", None)
    reason = getattr(rec, "reason_code", None)
    return (
        rec.line, rec.id, type(rec).__struct_config__.tag, rev, edge_rev, rec.ts, start, end,
        getattr(rec, "category", None),
        None if reason is None else str(reason),
        getattr(rec, "interval", None),
        getattr(rec, "status", None),
        central, acked, encode_json(rec).decode(), now,
    )


class SqlStorage(Storage):
    """Storage over a DB-API connection; subclasses supply connection and dialect."""

    #: DDL for the auto-increment primary key of reason_changes
    SERIAL_PK = "INTEGER PRIMARY KEY AUTOINCREMENT"
    #: ids per lookup SELECT: below SQLite's host-parameter limit with room to spare
    KEY_CHUNK = 400

    def __init__(self) -> None:
        self._wx: ThreadPoolExecutor | None = None
        self._rx: ThreadPoolExecutor | None = None
        self._wconn: Any = None
        self._rconn: Any = None

    # ------------------------------------------------------------ backend hooks

    @abstractmethod
    def _connect(self, writer: bool) -> Any: ...

    @abstractmethod
    def _transaction(self, conn: Any, lines: Sequence[str]) -> AbstractContextManager[Any]:
        """A write transaction holding whatever lock serializes writers to these lines."""

    def _q(self, sql: str) -> str:
        return sql

    # ------------------------------------------------------------ lifecycle

    def _schema(self) -> list[str]:
        return [
            """CREATE TABLE IF NOT EXISTS records (
                line TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
                rev BIGINT NOT NULL, edge_rev BIGINT NOT NULL, ts TEXT NOT NULL,
                start_ts TEXT, end_ts TEXT, category TEXT, reason_code TEXT, kpi_interval TEXT,
                status TEXT, central_reason TEXT, acked_at TEXT,
                body TEXT NOT NULL, stored_at TEXT NOT NULL,
                PRIMARY KEY (line, id))""",
            "CREATE INDEX IF NOT EXISTS records_type_line_start ON records (type, line, start_ts)",
            "CREATE INDEX IF NOT EXISTS records_type_status ON records (type, status, ts)",
            f"""CREATE TABLE IF NOT EXISTS reason_changes (
                seq {self.SERIAL_PK}, line TEXT NOT NULL, stop_id TEXT NOT NULL,
                rev BIGINT NOT NULL, body TEXT NOT NULL, set_at TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS reason_changes_line_seq ON reason_changes (line, seq)",
            # context set centrally for lines without order/product/operator tags; the
            # body is the whole context after the change, so the latest row is the current one
            f"""CREATE TABLE IF NOT EXISTS context_changes (
                seq {self.SERIAL_PK}, line TEXT NOT NULL, body TEXT NOT NULL, set_at TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS context_changes_line_seq ON context_changes (line, seq)",
        ]

    async def open(self) -> None:
        self._wx = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="store-reader")

        def init_writer() -> None:
            self._wconn = self._connect(writer=True)
            with self._transaction(self._wconn, ()) as cur:
                for ddl in self._schema():
                    cur.execute(ddl)

        def init_reader() -> None:
            self._rconn = self._connect(writer=False)

        await self._run(self._wx, init_writer)
        await self._run(self._rx, init_reader)

    async def close(self) -> None:
        for ex, attr in ((self._wx, "_wconn"), (self._rx, "_rconn")):
            if ex is None:
                continue
            conn = getattr(self, attr)
            if conn is not None:
                await self._run(ex, conn.close)
                setattr(self, attr, None)
            ex.shutdown(wait=True)
        self._wx = self._rx = None

    async def _run(self, ex: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if ex is None:
            raise StorageError("storage is not open")
        return await asyncio.get_running_loop().run_in_executor(ex, fn)

    async def _write(self, fn: Callable[[Any], T], lines: Sequence[str]) -> T:
        def job() -> T:
            conn = self._wconn = self._wconn if self._usable(self._wconn) else self._reconnect(self._wconn, True)
            try:
                with self._transaction(conn, lines) as cur:
                    return fn(cur)
            except self.UNAVAILABLE as exc:
                raise StorageError(f"database write failed: {type(exc).__name__}: {_first_line(exc)}") from exc

        return await self._run(self._wx, job)

    async def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def attempt() -> list[tuple[Any, ...]]:
            conn = self._rconn = self._rconn if self._usable(self._rconn) else self._reconnect(self._rconn, False)
            cur = conn.cursor()
            try:
                cur.execute(self._q(sql), tuple(params))
                return list(cur.fetchall())
            finally:
                cur.close()

        def job() -> list[tuple[Any, ...]]:
            # A read is safe to repeat: once more on a fresh connection when the old one
            # turned out dead (the server restarted since the last query).
            try:
                return attempt()
            except self.UNAVAILABLE:
                if self._usable(self._rconn):
                    raise  # the connection is fine: the database itself refused
            return attempt()

        try:
            return await self._run(self._rx, job)
        except self.UNAVAILABLE as exc:
            raise StorageError(f"database read failed: {type(exc).__name__}: {_first_line(exc)}") from exc

    #: errors that mean "the database is not available right now" (answered 503, retried)
    UNAVAILABLE: tuple[type[BaseException], ...] = ()

    def _usable(self, conn: Any) -> bool:
        """False when the connection is gone (server restart, network) and must be replaced."""
        return conn is not None

    def _reconnect(self, old: Any, writer: bool) -> Any:
        # A dropped connection is replaced on the next request instead of failing every
        # request until the store restarts.
        if old is not None:
            try:
                old.close()
            except Exception:
                pass
        return self._connect(writer)

    async def ping(self) -> None:
        try:
            await self._read("SELECT 1", ())
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"database does not answer: {type(exc).__name__}") from exc

    # ------------------------------------------------------------ ingest

    def _existing(self, cur: Any, records: Sequence[Record]) -> dict[tuple[str, str], _Existing]:
        by_line: dict[str, list[str]] = {}
        for r in records:
            by_line.setdefault(r.line, []).append(r.id)
        found: dict[tuple[str, str], _Existing] = {}
        for line, ids in by_line.items():
            uniq = list(dict.fromkeys(ids))
            for i in range(0, len(uniq), self.KEY_CHUNK):
                chunk = uniq[i : i + self.KEY_CHUNK]
                cur.execute(
                    self._q(
                        "SELECT id, type, rev, edge_rev, central_reason, acked_at FROM records "
                        f"WHERE line = ? AND {self._id_in(len(chunk))}"
                    ),
                    self._id_params(line, chunk),
                )
                for rid, rtype, rev, erev, central, acked in cur.fetchall():
                    found[(line, rid)] = _Existing(rtype, int(rev), int(erev), central, acked)
        return found

    def _id_in(self, n: int) -> str:
        return f"id IN ({','.join('?' * n)})"

    def _id_params(self, line: str, ids: list[str]) -> tuple[Any, ...]:
        return (line, *ids)

    async def ingest(self, records: Sequence[Record]) -> IngestResult | list[IngestError]:
        lines = sorted({r.line for r in records})
        now = format_ts(time.time())

        def job(cur: Any) -> IngestResult | list[IngestError]:
            state = self._existing(cur, records)
            errors: list[IngestError] = []
            rows: dict[tuple[str, str], tuple[Any, ...]] = {}
            duplicates = 0
            for i, rec in enumerate(records):
                key = (rec.line, rec.id)
                tag = str(type(rec).__struct_config__.tag)
                old = state.get(key)
                if old is not None and old.type != tag:
                    errors.append(IngestError(
                        index=i, id=rec.id,
                        error=f"id {rec.id!r} of line {rec.line!r} is already stored as a {old.type} record",
                    ))
                    continue
                row = _merge_row(rec, old, now)
                if row is None:
                    duplicates += 1
                    continue
                rows[key] = row
                state[key] = _Existing(tag, int(row[3]), int(row[4]), str_or_none(row[12]), str_or_none(row[13]))
            if errors:
                raise _Rejected(errors)
            if rows:
                cols = ", ".join(_COLUMNS)
                marks = ", ".join("?" * len(_COLUMNS))
                updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
                cur.executemany(
                    self._q(
                        f"INSERT INTO records ({cols}) VALUES ({marks}) "
                        f"ON CONFLICT (line, id) DO UPDATE SET {updates}"
                    ),
                    list(rows.values()),
                )
            # Every occurrence that was not a duplicate counts as accepted, also when a later
            # rev of the same id in this batch superseded it before the commit.
            return IngestResult(accepted=len(records) - duplicates, duplicates=duplicates)

        try:
            return await self._write(job, lines)
        except _Rejected as rej:
            return rej.errors

    # ------------------------------------------------------------ queries

    @staticmethod
    def _line_filter(lines: Sequence[str] | None, where: list[str], params: list[Any]) -> None:
        if lines is not None:
            where.append(f"line IN ({','.join('?' * len(lines))})" if lines else "1 = 0")
            params.extend(lines)

    async def stops(
        self,
        lines: Sequence[str] | None,
        since: str | None,
        category: str | None,
        unreasoned: bool | None,
        limit: int,
    ) -> list[bytes]:
        where: list[str] = ["type = 'stop'"]
        params: list[Any] = []
        self._line_filter(lines, where, params)
        if since is not None:
            where.append("start_ts >= ?")
            params.append(since)
        if category is not None:
            where.append("category = ?")
            params.append(category)
        if unreasoned is not None:
            where.append("reason_code IS NULL" if unreasoned else "reason_code IS NOT NULL")
        rows = await self._read(
            f"SELECT body FROM records WHERE {' AND '.join(where)} ORDER BY start_ts, line, id LIMIT ?",
            [*params, limit],
        )
        return [r[0].encode() for r in rows]

    async def kpis(
        self, lines: Sequence[str] | None, interval: str | None, since: str | None, limit: int
    ) -> list[bytes]:
        where: list[str] = ["type = 'kpi'"]
        params: list[Any] = []
        self._line_filter(lines, where, params)
        if interval is not None:
            where.append("kpi_interval = ?")
            params.append(interval)
        if since is not None:
            where.append("start_ts >= ?")
            params.append(since)
        rows = await self._read(
            f"SELECT body FROM records WHERE {' AND '.join(where)} ORDER BY start_ts, line, id LIMIT ?",
            [*params, limit],
        )
        return [r[0].encode() for r in rows]

    async def follow_ups(
        self, rtype: FollowUpType, lines: Sequence[str] | None, status: str | None, limit: int
    ) -> list[bytes]:
        where: list[str] = ["type = ?"]
        params: list[Any] = [rtype]
        self._line_filter(lines, where, params)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        rows = await self._read(
            f"SELECT body FROM records WHERE {' AND '.join(where)} ORDER BY ts, line, id LIMIT ?",
            [*params, limit],
        )
        return [r[0].encode() for r in rows]

    async def reasons(self, lines: Sequence[str] | None, since_seq: int, limit: int) -> list[ReasonChange]:
        where: list[str] = ["seq > ?"]
        params: list[Any] = [since_seq]
        self._line_filter(lines, where, params)
        rows = await self._read(
            f"SELECT seq, body FROM reason_changes WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            [*params, limit],
        )
        out = []
        for seq, body in rows:
            d = json.loads(body)
            out.append(ReasonChange(seq=int(seq), **d))
        return out

    # ------------------------------------------------------------ central changes

    def _get(self, cur: Any, line: str, rid: str, rtype: str) -> tuple[_Existing, str] | None:
        cur.execute(
            self._q(
                "SELECT type, rev, edge_rev, central_reason, acked_at, body FROM records "
                "WHERE line = ? AND id = ?"
            ),
            (line, rid),
        )
        row = cur.fetchone()
        if row is None or row[0] != rtype:
            return None
        return _Existing(row[0], int(row[1]), int(row[2]), row[3], row[4]), row[5]

    def _put(self, cur: Any, row: tuple[Any, ...]) -> None:
        sets = ", ".join(f"{c} = ?" for c in _COLUMNS[2:])
        cur.execute(self._q(f"UPDATE records SET {sets} WHERE line = ? AND id = ?"), (*row[2:], row[0], row[1]))

    async def set_reason(
        self,
        line: str,
        stop_id: str,
        reason_code: int | str,
        reason_text: str | None,
        reason_category: str | None,
    ) -> bytes | None:
        now = format_ts(time.time())

        def job(cur: Any) -> bytes | None:
            got = self._get(cur, line, stop_id, "stop")
            if got is None:
                return None
            old, body = got
            stop = _decoder(StopRecord).decode(body)
            rev = old.rev + 1
            new = msgspec.structs.replace(
                stop, rev=rev, ts=now, reason_code=reason_code, reason_text=reason_text,
                reason_category=reason_category, reason_source="central",
            )
            central = encode_json(_CentralReason(reason_code, reason_text, reason_category)).decode()
            row = _row(new, rev, old.edge_rev, central, old.acked_at, now)
            self._put(cur, row)
            change = {
                "line": line, "stop_id": stop_id, "rev": rev, "reason_code": reason_code,
                "reason_text": reason_text, "reason_category": reason_category, "set_at": now,
            }
            cur.execute(
                self._q("INSERT INTO reason_changes (line, stop_id, rev, body, set_at) VALUES (?, ?, ?, ?, ?)"),
                (line, stop_id, rev, json.dumps(change), now),
            )
            return encode_json(new)

        return await self._write(job, [line])

    async def set_context(self, line: str, fields: dict[str, str | None]) -> ContextChange:
        now = format_ts(time.time())

        def job(cur: Any) -> ContextChange:
            cur.execute(
                self._q("SELECT body FROM context_changes WHERE line = ? ORDER BY seq DESC LIMIT 1"), (line,)
            )
            row = cur.fetchone()
            ctx: dict[str, Any] = {"order": None, "product": None, "operator": None}
            if row is not None:
                prev = json.loads(row[0])
                ctx.update({k: prev.get(k) for k in ctx})
            ctx.update(fields)
            body = {**ctx, "line": line, "changed": sorted(fields), "set_at": now}
            cur.execute(
                self._q("INSERT INTO context_changes (line, body, set_at) VALUES (?, ?, ?)"),
                (line, json.dumps(body), now),
            )
            cur.execute(
                self._q("SELECT seq FROM context_changes WHERE line = ? ORDER BY seq DESC LIMIT 1"), (line,)
            )
            seq = int(cur.fetchone()[0])
            return ContextChange(seq=seq, **body)

        return await self._write(job, [line])

    async def contexts(self, lines: Sequence[str] | None, since_seq: int, limit: int) -> list[ContextChange]:
        where: list[str] = ["seq > ?"]
        params: list[Any] = [since_seq]
        self._line_filter(lines, where, params)
        rows = await self._read(
            f"SELECT seq, body FROM context_changes WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            [*params, limit],
        )
        return [ContextChange(seq=int(seq), **json.loads(body)) for seq, body in rows]

    async def ack(self, rtype: FollowUpType, line: str, rid: str) -> tuple[AckOutcome, bytes | None]:
        now = format_ts(time.time())
        cls: type[Record] = MaintenanceRequestRecord if rtype == "maintenance_request" else QualityAlertRecord

        def job(cur: Any) -> tuple[AckOutcome, bytes | None]:
            got = self._get(cur, line, rid, rtype)
            if got is None:
                return "not_found", None
            old, body = got
            rec = _decoder(cls).decode(body)
            if rec.status == "closed":
                return "closed", body.encode()
            if rec.status == "acknowledged":
                return "already_acknowledged", body.encode()
            rev = old.rev + 1
            new = msgspec.structs.replace(rec, rev=rev, status="acknowledged")
            self._put(cur, _row(new, rev, old.edge_rev, old.central_reason, now, now))
            return "acknowledged", encode_json(new)

        return await self._write(job, [line])


class _Rejected(Exception):
    """Raised inside the write transaction so that it rolls back; carries the errors."""

    def __init__(self, errors: list[IngestError]) -> None:
        super().__init__(f"{len(errors)} records rejected")
        self.errors = errors


def _merge_row(rec: Record, old: _Existing | None, now: str) -> tuple[Any, ...] | None:
    """The row to write for an incoming edge record, or None when it is a duplicate.

    Decisions use `edge_rev` (the highest rev the edge sent), not `rev`, because a central
    PATCH or ack also bumps `rev`: the edge's next revision of that stop (it closes, say)
    must still be taken, and must not erase the central reason it has not pulled yet.
    """
    if old is None:
        return _row(rec, rec.rev, rec.rev, None, None, now)
    if rec.rev <= old.edge_rev:
        return None
    edge_rev = rec.rev
    central, acked = old.central_reason, old.acked_at
    if isinstance(rec, StopRecord) and central is not None:
        if rec.reason_source == "central":
            central = None  # the edge has taken the central reason over; it owns the stop again
        else:
            cr = msgspec.json.decode(central, type=_CentralReason)
            rec = msgspec.structs.replace(
                rec, reason_code=cr.reason_code, reason_text=cr.reason_text,
                reason_category=cr.reason_category, reason_source="central",
            )
    if isinstance(rec, MaintenanceRequestRecord | QualityAlertRecord) and acked and rec.status == "open":
        rec = msgspec.structs.replace(rec, status="acknowledged")
    # Readers see rev grow with every change, central ones included.
    rev = max(rec.rev, old.rev + 1)
    if rev != rec.rev:
        rec = msgspec.structs.replace(rec, rev=rev)
    return _row(rec, rev, edge_rev, central, acked, now)


def str_or_none(v: object) -> str | None:
    return None if v is None else str(v)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
