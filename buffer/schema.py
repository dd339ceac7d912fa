"""The buffer file's schema, its migrations and the connection settings both processes use.

The schema version lives in ``PRAGMA user_version``; migrations run in one ``BEGIN IMMEDIATE``
transaction at start, so a daemon and an agent opening the same file at once never see half a
schema. Only the writer (the edge daemon) migrates; the reader refuses a file newer than it
knows and waits for a file the writer has not created yet.
"""

from __future__ import annotations

import resource
import sqlite3
from collections.abc import Sequence
from typing import Literal

import aiosqlite

__all__ = [
    "SCHEMA_VERSION",
    "BufferFileError",
    "connect",
    "is_busy",
    "is_disk_error",
    "migrate",
    "schema_version",
]

# Each entry migrates from version i to i + 1.
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        # seq is the outbox order. A new revision of a record gets a new, higher seq so it is
        # shipped again after everything written before it; seqs are allocated by the single
        # writer and never reused (meta.next_seq is the high-water mark).
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            rev INTEGER NOT NULL,
            written_ms INTEGER NOT NULL,
            body BLOB NOT NULL
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # seq: every record up to it was acknowledged. live_from..live_seq: during a backfill,
        # the live tail is shipped ahead of the backlog and acknowledged separately.
        """CREATE TABLE cursors (
            upstream TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            live_from INTEGER,
            live_seq INTEGER,
            updated_ms INTEGER NOT NULL
        )""",
        """CREATE TABLE quarantine (
            seq INTEGER NOT NULL,
            upstream TEXT NOT NULL,
            id TEXT NOT NULL,
            type TEXT NOT NULL,
            rev INTEGER NOT NULL,
            error TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (upstream, seq)
        )""",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
    (
        # What the central store sends back to the edge (reasons set there, line context),
        # written by the sync agent and applied by the daemon (buffer/inbox.py). key makes a
        # second delivery of the same change a no-op; applied_ms is NULL until the daemon
        # has applied it, outcome says how that went.
        """CREATE TABLE inbox (
            seq INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            received_ms INTEGER NOT NULL,
            applied_ms INTEGER,
            outcome TEXT
        )""",
        "CREATE INDEX inbox_pending ON inbox (seq) WHERE applied_ms IS NULL",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 30_000

SQLITE_FULL = 13
SQLITE_IOERR = 10
SQLITE_BUSY = 5
SQLITE_LOCKED = 6


JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024


def _autocheckpoint_pages() -> int:
    """SQLite's default (1000 pages), lower under a file-size limit so the WAL is
    checkpointed before it reaches the limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1000
    return max(16, min(1000, soft // 4096 // 4))


class BufferFileError(Exception):
    """A buffer file this version cannot use (written by a newer lineside)."""


def is_disk_error(exc: BaseException) -> bool:
    """SQLITE_FULL or an I/O error: the transaction is rolled back and the file stays intact."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (SQLITE_FULL, SQLITE_IOERR)
    text = str(exc).lower()
    return "disk is full" in text or "disk i/o error" in text


def is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (SQLITE_BUSY, SQLITE_LOCKED)
    return "locked" in str(exc).lower()


async def connect(
    path: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL", readonly: bool = False
) -> aiosqlite.Connection:
    """A connection in autocommit mode: every write is an explicit ``BEGIN IMMEDIATE``, so a
    writer never upgrades a stale read snapshot (which fails at once, without waiting)."""
    if readonly:
        conn = await aiosqlite.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    else:
        conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            row = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise BufferFileError(f"{path}: cannot switch to WAL mode (got {row!r})")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        if not readonly:
            # After a checkpoint the WAL file shrinks back to this, so one large transaction
            # does not keep its disk space forever.
            await conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            await conn.execute(f"PRAGMA wal_autocheckpoint = {_autocheckpoint_pages()}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def schema_version(conn: aiosqlite.Connection) -> int:
    row = await (await conn.execute("PRAGMA user_version")).fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, path: str) -> int:
    """Bring the file to SCHEMA_VERSION; returns the version it had."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        have = await schema_version(conn)
        if have > SCHEMA_VERSION:
            raise BufferFileError(
                f"{path}: schema version {have} is newer than this lineside ({SCHEMA_VERSION}); upgrade lineside"
            )
        for version in range(have, SCHEMA_VERSION):
            for stmt in MIGRATIONS[version]:
                await conn.execute(stmt)
        if have != SCHEMA_VERSION:
            await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await conn.execute("COMMIT")
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return have
