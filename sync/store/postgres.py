"""The plant / company backend: PostgreSQL through psycopg 3.

`postgresql://user@host:5432/db?schema=name` keeps the store's tables in their own schema
(created if missing), so one database can host several stores or test runs. Writers take a
transaction-scoped advisory lock per line, so several store processes behind a load
balancer still decide "highest rev wins" one batch at a time for a line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from sync.store.backend import StorageError
from sync.store.sql import SqlStorage

__all__ = ["PostgresStorage", "split_schema"]


def split_schema(url: str) -> tuple[str, str | None]:
    """The URL without `schema=...` (libpq does not know it), and the schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


def _safe(url: str) -> str:
    """The URL for messages: host and database only, never the password."""
    p = urlsplit(url)
    return f"postgresql://{p.hostname or ''}{':' + str(p.port) if p.port else ''}{p.path}"


class PostgresStorage(SqlStorage):
    SERIAL_PK = "BIGSERIAL PRIMARY KEY"
    KEY_CHUNK = 10_000
    UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.AdminShutdown)

    def _usable(self, conn: Any) -> bool:
        return conn is not None and not conn.closed and not conn.broken

    # One array parameter instead of an IN list: a prepared IN list of hundreds of
    # parameters got a sequential-scan plan, making every batch slower as the table grew.
    def _id_in(self, n: int) -> str:
        return "id = ANY(?)"

    def _id_params(self, line: str, ids: list[str]) -> tuple[Any, ...]:
        return (line, ids)

    def __init__(self, url: str) -> None:
        super().__init__()
        self.conninfo, self.schema = split_schema(url)

    def _q(self, query: str) -> str:
        # The shared SQL uses qmark; psycopg wants %s. No literal '?' or '%' in the queries.
        return query.replace("?", "%s")

    def _connect(self, writer: bool) -> Any:
        try:
            conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=10, application_name="lineside-store"
            )
        except psycopg.Error as exc:
            # psycopg's message can quote the conninfo; name only host and database.
            raise StorageError(f"{_safe(self.conninfo)}: cannot connect: {type(exc).__name__}") from exc
        if self.schema:
            ident = sql.Identifier(self.schema)
            if writer:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            conn.execute(sql.SQL("SET search_path TO {}").format(ident))
        return conn

    @contextmanager
    def _transaction(self, conn: Any, lines: Sequence[str]) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            for line in sorted(lines):  # sorted: two writers never wait on each other in a cycle
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("lineside:" + line,))
            yield cur
