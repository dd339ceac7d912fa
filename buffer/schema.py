"""The buffer file's schema, its migrations and the connection settings both processes use.

The schema version lives in ``PRAGMA user_version``; migrations run in one ``BEGIN IMMEDIATE``
transaction at start, so a daemon and an agent opening the same file at once never see half a
schema. Only the writer (the edge daemon) migrates; the reader refuses a file newer than it
knows and waits for a file the writer has not created yet.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

__all__ = [
    "RECORD_ID_INDEXED",
    "SCHEMA_VERSION",
    "BufferFileError",
    "Migration",
    "connect",
    "immediate",
    "is_busy",
    "is_disk_error",
    "migrate",
    "schema_version",
    "used_bytes",
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
    (
        # Raw samples leave the unique index on id. They are never revised, so nothing upserts
        # them; and their ids (``line:sample:<tag>:<ms>``) are ordered by tag, so a commit of
        # one poll of 5,000 tags touched 5,000 different index pages, which capped the daemon
        # well below a line's sample rate. Every other type keeps id unique (revisions replace
        # the stored record). A query by id must say ``type <> 'sample'`` (RECORD_ID_INDEXED)
        # for SQLite to use this index. A re-write of a batch whose COMMIT may have landed is
        # told apart by meta.next_seq, not by the index (LineBuffer._settle_interrupted).
        """CREATE TABLE records_v3 (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL,
            type TEXT NOT NULL,
            rev INTEGER NOT NULL,
            written_ms INTEGER NOT NULL,
            body BLOB NOT NULL
        )""",
        "INSERT INTO records_v3 (seq, id, type, rev, written_ms, body) "
        "SELECT seq, id, type, rev, written_ms, body FROM records ORDER BY seq",
        "DROP TABLE records",
        "ALTER TABLE records_v3 RENAME TO records",
        "CREATE UNIQUE INDEX records_id ON records (id) WHERE type <> 'sample'",
        # The few records a restart reads back (stops, KPIs, requests: `LineBuffer.history`)
        # and eviction by type, without a scan of the samples around them.
        "CREATE INDEX records_type ON records (type, seq) WHERE type <> 'sample'",
    ),
)
# Migrations from these versions copy the records table: they need room for a second copy (in
# the WAL, then in the main file at the checkpoint) and take time in proportion to its size.
COPIES_RECORDS: frozenset[int] = frozenset({2})
COPY_RESERVE = 256 * 1024

# The condition of the partial indexes on records (id; type, seq): an upsert's conflict target
# and a lookup by id or by type both repeat it, or SQLite does not use the index.
RECORD_ID_INDEXED = "type <> 'sample'"
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


@contextlib.asynccontextmanager
async def immediate(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` (the other process waits on busy_timeout) ...
    ``COMMIT``. Any exit by an exception rolls back, a cancellation included, even one that
    arrives while BEGIN itself is awaited (the statement still runs on aiosqlite's thread, so
    without the ROLLBACK the connection would be left inside a transaction)."""
    try:
        await conn.execute("BEGIN IMMEDIATE")
        yield conn
        await conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise


async def schema_version(conn: aiosqlite.Connection) -> int:
    row = await (await conn.execute("PRAGMA user_version")).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Migration:
    had: int  # the file's version before
    now: int  # its version after: SCHEMA_VERSION, or lower when a copy was deferred
    deferred: str | None = None  # why the file stays at `now`
    copied_bytes: int = 0


async def used_bytes(conn: aiosqlite.Connection) -> int:
    """Logical size (pages in use, WAL included): deleting rows frees pages for reuse."""
    values = []
    for pragma in ("page_count", "freelist_count", "page_size"):
        async with conn.execute(f"PRAGMA {pragma}") as cur:
            row = await cur.fetchone()
        values.append(int(row[0]) if row else 0)
    return (values[0] - values[1]) * values[2]


def _no_room_to_copy(path: str, used: int) -> str | None:
    """Why a second copy of `used` bytes does not fit (free space, RLIMIT_FSIZE), or None."""
    need = 2 * used + COPY_RESERVE
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None and free < need:
        return f"{free // 2**20} MiB free on the buffer's file system, the copy needs {need // 2**20} MiB"
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and soft > 0:
        size = os.stat(path).st_size if os.path.exists(path) else 0
        if size + used + COPY_RESERVE > soft:
            return f"the file-size limit ({soft // 2**20} MiB) leaves no room for a second copy of {used // 2**20} MiB"
    return None


async def migrate(
    conn: aiosqlite.Connection, path: str, *, on_copy: Callable[[int], None] | None = None
) -> Migration:
    """Bring the file to SCHEMA_VERSION, in one transaction.

    A step that copies the records table (COPIES_RECORDS) is deferred, and the file left at the
    version before it, when the disk or the file-size limit has no room for the copy: the code
    runs on every version from 2 on (the upsert and the lookups by id use the same SQL on both
    layouts), only slower, and the next start tries again. Before such a copy `on_copy` gets
    the bytes to copy (the daemon extends its systemd start timeout).
    """
    async with immediate(conn):
        have = await schema_version(conn)
        if have > SCHEMA_VERSION:
            raise BufferFileError(
                f"{path}: schema version {have} is newer than this lineside ({SCHEMA_VERSION}); upgrade lineside"
            )
        version, deferred, copied = have, None, 0
        while version < SCHEMA_VERSION:
            if version in COPIES_RECORDS and have > 0:  # a new file has nothing to copy
                used = await used_bytes(conn)
                deferred = _no_room_to_copy(path, used)
                if deferred is not None:
                    break
                if on_copy is not None:
                    on_copy(used)
                copied += used
            for stmt in MIGRATIONS[version]:
                await conn.execute(stmt)
            version += 1
        if version != have:
            await conn.execute(f"PRAGMA user_version = {version}")
    return Migration(have, version, deferred, copied)
