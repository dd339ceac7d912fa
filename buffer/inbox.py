"""The line buffer's inbox: changes from the central store for the edge daemon to apply.

The sync agent pulls reasons set at the store (``GET /v1/reasons``) and line context
(``GET /v1/context``) and `deliver`s them here, together with how far it has pulled (the
store's ``since_seq``, kept in ``meta`` so a restart resumes there), in one short transaction:
either both are stored or neither, and a change delivered twice (same key) is kept once.
The daemon polls `pending`, applies each item and `mark_applied` it with an outcome. Both
sides use their own connection; nothing holds a transaction while waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import aiosqlite

from buffer.schema import SCHEMA_VERSION, BufferFileError, connect, immediate, schema_version

__all__ = ["INBOX_KINDS", "Inbox", "InboxItem", "InboxKind"]

InboxKind = Literal["reason", "context"]
INBOX_KINDS: tuple[InboxKind, ...] = ("reason", "context")
_INBOX_VERSION = 2  # the schema version that added the inbox table


@dataclass(frozen=True, slots=True)
class InboxItem:
    seq: int
    key: str
    kind: InboxKind
    body: dict[str, Any]
    received_ms: int


class Inbox:
    """Either side of one line buffer's inbox (the file must exist; the daemon creates it)."""

    def __init__(self, path: str, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    async def open(cls, path: str) -> Self:
        """`BufferFileError` when the file is newer than this lineside or has no inbox yet."""
        conn = await connect(path, readonly=True)
        try:
            have = await schema_version(conn)
            if have > SCHEMA_VERSION:
                raise BufferFileError(f"{path}: schema version {have} is newer than this lineside ({SCHEMA_VERSION})")
            if have < _INBOX_VERSION:
                raise BufferFileError(f"{path}: schema version {have} has no inbox (the daemon migrates it at start)")
        except BaseException:
            await conn.close()
            raise
        return cls(path, conn)

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the agent's side

    async def since_seq(self, kind: InboxKind) -> int:
        """How far the agent has pulled this kind from the store (0 = nothing yet)."""
        async with self._conn.execute("SELECT value FROM meta WHERE key = ?", (f"inbox.{kind}.since_seq",)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def deliver(self, kind: InboxKind, items: Sequence[tuple[str, dict[str, Any]]], since_seq: int) -> int:
        """Store (key, body) items and the new pull position at once; returns how many were new."""
        if kind not in INBOX_KINDS:
            raise ValueError(f"inbox kind must be one of {INBOX_KINDS}, got {kind!r}")
        now = int(time.time() * 1000)
        async with immediate(self._conn):
            before = self._conn.total_changes
            await self._conn.executemany(
                "INSERT INTO inbox (key, kind, body, received_ms) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                [(key, kind, json.dumps(body, separators=(",", ":")), now) for key, body in items],
            )
            new = self._conn.total_changes - before
            await self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"inbox.{kind}.since_seq", str(since_seq)),
            )
        return new

    # ------------------------------------------------------------ the daemon's side

    async def pending(self, limit: int = 100) -> list[InboxItem]:
        """Items not applied yet, oldest first."""
        async with self._conn.execute(
            "SELECT seq, key, kind, body, received_ms FROM inbox WHERE applied_ms IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [InboxItem(int(r[0]), str(r[1]), r[2], json.loads(r[3]), int(r[4])) for r in rows]

    async def mark_applied(self, outcomes: Sequence[tuple[int, str]]) -> None:
        """(seq, outcome) for items the daemon is done with (applied or refused, never retried)."""
        if not outcomes:
            return
        now = int(time.time() * 1000)
        async with immediate(self._conn):
            await self._conn.executemany(
                "UPDATE inbox SET applied_ms = ?, outcome = ? WHERE seq = ?", [(now, o, s) for s, o in outcomes]
            )

    async def applied(self, limit: int = 100) -> list[tuple[InboxItem, str]]:
        """The newest applied items with their outcome (status page, tests), newest first."""
        async with self._conn.execute(
            "SELECT seq, key, kind, body, received_ms, outcome FROM inbox WHERE applied_ms IS NOT NULL "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [(InboxItem(int(r[0]), str(r[1]), r[2], json.loads(r[3]), int(r[4])), str(r[5])) for r in rows]

    async def prune(self, older_than_ms: int) -> int:
        """Forget applied items received before `older_than_ms` (the daemon's retention)."""
        async with immediate(self._conn):
            cur = await self._conn.execute(
                "DELETE FROM inbox WHERE applied_ms IS NOT NULL AND received_ms < ?", (older_than_ms,)
            )
        return int(cur.rowcount)
