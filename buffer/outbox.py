"""The reader side of a line buffer: the sync agent's view, on its own connection.

Every query runs in autocommit mode and reads its rows completely, so no read transaction is
held while a batch is on the wire (the writer's checkpoints never wait for an upload). The
cursor moves only when the store has acknowledged (`ack`), in its own short write transaction.

Cursor model, per upstream: every record with ``seq <= cursor.seq`` was acknowledged. During a
backfill the agent ships the live tail first: records from ``live_from`` on are acknowledged in
``live_seq``; when the backlog reaches ``live_from`` both merge back into ``seq``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import aiosqlite

from buffer.schema import SCHEMA_VERSION, BufferFileError, connect, immediate, schema_version

__all__ = ["Cursor", "Lag", "Outbox", "OutboxRow", "QuarantinedRecord"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    type: str
    rev: int
    written_ms: int
    body: bytes  # the record as MessagePack, exactly as the writer serialized it


@dataclass(frozen=True, slots=True)
class Cursor:
    seq: int = 0
    live_from: int | None = None
    live_seq: int | None = None

    @property
    def live(self) -> bool:
        return self.live_from is not None


@dataclass(frozen=True, slots=True)
class Lag:
    records: int
    seconds: float  # age of the oldest record not yet acknowledged (0 when none)


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    seq: int
    id: str
    type: str
    rev: int
    error: str
    at_ms: int
    body: bytes


class Outbox:
    """One upstream's outbox over one line buffer file (which must already exist)."""

    def __init__(self, path: str, conn: aiosqlite.Connection, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self._conn = conn

    @classmethod
    async def open(cls, path: str, upstream: str = "default") -> Self:
        """Open an existing buffer; `BufferFileError` if it is from a newer lineside.

        A file the daemon has not initialized yet opens fine; `ready()` says when it is.
        """
        conn = await connect(path, readonly=True)
        try:
            have = await schema_version(conn)
            if have > SCHEMA_VERSION:
                raise BufferFileError(
                    f"{path}: schema version {have} is newer than this lineside ({SCHEMA_VERSION})"
                )
        except BaseException:
            await conn.close()
            raise
        return cls(path, conn, upstream)

    async def close(self) -> None:
        await self._conn.close()

    async def ready(self) -> bool:
        return await schema_version(self._conn) >= SCHEMA_VERSION

    # ------------------------------------------------------------ reading

    async def identity(self) -> dict[str, str] | None:
        """site/area/line/machine: from the writer's meta, else from the first record."""
        async with self._conn.execute("SELECT value FROM meta WHERE key = 'identity'") as cur:
            row = await cur.fetchone()
        if row is not None:
            ident: dict[str, str] = json.loads(row[0])
            return ident
        return None

    async def cursor(self) -> Cursor:
        async with self._conn.execute(
            "SELECT seq, live_from, live_seq FROM cursors WHERE upstream = ?", (self.upstream,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return Cursor()
        return Cursor(int(row[0]), None if row[1] is None else int(row[1]),
                      None if row[2] is None else int(row[2]))

    async def fetch(
        self, after: int, *, limit: int, max_bytes: int, before: int | None = None
    ) -> list[OutboxRow]:
        """Records with ``after < seq (< before)``, in order, at most `limit` rows and about
        `max_bytes` of bodies (always at least one row)."""
        sql = "SELECT seq, id, type, rev, written_ms, body FROM records WHERE seq > ?"
        args: tuple[int, ...] = (after,)
        if before is not None:
            sql += " AND seq < ?"
            args = (after, before)
        sql += " ORDER BY seq LIMIT ?"
        async with self._conn.execute(sql, (*args, limit)) as cur:
            rows = await cur.fetchall()
        out: list[OutboxRow] = []
        size = 0
        for seq, rid, rtype, rev, wms, body in rows:
            size += len(body)
            if out and size > max_bytes:
                break
            out.append(OutboxRow(int(seq), str(rid), str(rtype), int(rev), int(wms), bytes(body)))
        return out

    async def max_seq(self) -> int:
        async with self._conn.execute("SELECT max(seq) FROM records") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def first_seq_written_since(self, after: int, since_ms: int) -> int | None:
        """The first unacknowledged record written at or after `since_ms` (written_ms grows
        with seq, so this is where the live tail starts)."""
        async with self._conn.execute(
            "SELECT seq FROM records WHERE seq > ? AND written_ms >= ? ORDER BY seq LIMIT 1",
            (after, since_ms),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def lag(self, now_s: float | None = None) -> Lag:
        c = await self.cursor()
        async with self._conn.execute("SELECT count(*) FROM records WHERE seq > ?", (c.seq,)) as cur:
            n = int((await cur.fetchone() or (0,))[0])
        if c.live_from is not None and c.live_seq is not None and c.live_seq >= c.live_from:
            async with self._conn.execute(
                "SELECT count(*) FROM records WHERE seq >= ? AND seq <= ?", (c.live_from, c.live_seq)
            ) as cur:
                n -= int((await cur.fetchone() or (0,))[0])
        async with self._conn.execute(
            "SELECT written_ms FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (c.seq,)
        ) as cur:
            row = await cur.fetchone()
        now = time.time() if now_s is None else now_s
        seconds = max(0.0, now - row[0] / 1000.0) if row and n > 0 else 0.0
        return Lag(records=n, seconds=seconds)

    async def counters(self) -> dict[str, int]:
        """The writer's persistent counters (``evicted.sample``, ``full``, ...)."""
        async with self._conn.execute("SELECT name, value FROM counters") as cur:
            return {str(k): int(v) for k, v in await cur.fetchall()}

    async def quarantined(self, limit: int = 100) -> tuple[int, list[QuarantinedRecord]]:
        """How many records this upstream refused, and the newest `limit` of them."""
        async with self._conn.execute(
            "SELECT count(*) FROM quarantine WHERE upstream = ?", (self.upstream,)
        ) as cur:
            total = int((await cur.fetchone() or (0,))[0])
        async with self._conn.execute(
            "SELECT seq, id, type, rev, error, at_ms, body FROM quarantine WHERE upstream = ? "
            "ORDER BY seq DESC LIMIT ?",
            (self.upstream, limit),
        ) as cur:
            rows = await cur.fetchall()
        return total, [
            QuarantinedRecord(int(s), str(i), str(t), int(r), str(e), int(a), bytes(b))
            for s, i, t, r, e, a, b in rows
        ]

    # ------------------------------------------------------------ moving the cursor

    async def ack(self, seq: int) -> Cursor:
        """The store acknowledged every backlog record up to `seq`."""
        return await self._update(backlog=seq)

    async def ack_live(self, seq: int) -> Cursor:
        """The store acknowledged the live tail up to `seq`."""
        return await self._update(live=seq)

    async def start_live(self, live_from: int) -> Cursor:
        """Ship records from `live_from` on ahead of the backlog before it."""
        return await self._update(start_live=live_from)

    async def quarantine(self, rejected: Sequence[tuple[OutboxRow, str]]) -> None:
        """Keep the records the store refused, with its reason; the cursor moves past them
        with the rest of their batch."""
        if not rejected:
            return
        now_ms = int(time.time() * 1000)
        async with immediate(self._conn) as conn:
            await conn.executemany(
                "INSERT INTO quarantine (seq, upstream, id, type, rev, error, at_ms, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upstream, seq) DO UPDATE SET "
                "error = excluded.error, at_ms = excluded.at_ms",
                [(r.seq, self.upstream, r.id, r.type, r.rev, err[:2000], now_ms, r.body) for r, err in rejected],
            )

    async def _update(
        self, *, backlog: int | None = None, live: int | None = None, start_live: int | None = None
    ) -> Cursor:
        async with immediate(self._conn) as conn:
            c = await self.cursor()
            seq, lf, ls = c.seq, c.live_from, c.live_seq
            if start_live is not None and lf is None and start_live > seq + 1:
                lf, ls = start_live, start_live - 1
            if live is not None and lf is not None:
                ls = max(ls if ls is not None else lf - 1, live)
            if backlog is not None:
                seq = max(seq, backlog)
            if lf is not None and seq >= lf - 1:
                # The backlog caught up with the live tail: one cursor again.
                seq = max(seq, ls if ls is not None else seq)
                lf = ls = None
            await conn.execute(
                "INSERT INTO cursors (upstream, seq, live_from, live_seq, updated_ms) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (upstream) DO UPDATE SET seq = excluded.seq, live_from = excluded.live_from, "
                "live_seq = excluded.live_seq, updated_ms = excluded.updated_ms",
                (self.upstream, seq, lf, ls, int(time.time() * 1000)),
            )
        return Cursor(seq, lf, ls)
