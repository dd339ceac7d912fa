"""The embedded backend: one SQLite file in WAL mode, synchronous=FULL.

FULL makes each commit reach the disk before `ingest` returns, which is what "durable before
200" needs (NORMAL in WAL mode may lose the last commits on a power cut). BEGIN IMMEDIATE
takes the write lock up front, so a second store process on the same file waits (busy
timeout) instead of failing half-way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sync.store.backend import StorageError
from sync.store.sql import SqlStorage

__all__ = ["SqliteStorage"]


class SqliteStorage(SqlStorage):
    # "database is locked" after the busy timeout, disk I/O errors, a full disk.
    UNAVAILABLE = (sqlite3.OperationalError,)

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path)

    def _connect(self, writer: bool) -> Any:
        try:
            if writer and self.path.parent and not self.path.parent.exists():
                raise StorageError(f"directory for the store database does not exist: {self.path.parent}")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA busy_timeout = 30000")
            if writer:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StorageError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            return conn
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open SQLite database: {exc}") from exc

    @contextmanager
    def _transaction(self, conn: Any, lines: Sequence[str]) -> Iterator[Any]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()
