"""One storage interface for the reference store, and `open_storage(url)` to pick a backend.

The store keeps one row per (line, id): the full record as JSON plus the columns queries
filter on. Both backends share the logic in `sync.store.sql`; they differ only in how they
connect, lock and name an auto-increment column.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import msgspec
from msgspec import Struct

from sync.records import IngestError, IngestResult, Record

__all__ = [
    "AckOutcome",
    "ContextChange",
    "FollowUpType",
    "ReasonChange",
    "Storage",
    "StorageError",
    "open_storage",
]

FollowUpType = Literal["maintenance_request", "quality_alert"]
AckOutcome = Literal["acknowledged", "already_acknowledged", "closed", "not_found"]


class StorageError(RuntimeError):
    """The database cannot be opened or used (bad URL, server down); the message says which."""


class ReasonChange(Struct, kw_only=True):
    """A reason set centrally (PATCH /v1/stops/{id}) that the edge has to pull back."""

    seq: int
    line: str
    stop_id: str
    rev: int
    reason_code: int | str | None
    reason_text: str | None
    reason_category: str | None
    set_at: str


class ContextChange(Struct, kw_only=True):
    """A line's context as set centrally (PUT /v1/lines/{line}/context), for the edge to pull.

    order/product/operator are the whole context after the change (fields the PUT left out
    keep their previous value); `changed` names the fields that PUT set.
    """

    seq: int
    line: str
    order: str | None = None
    product: str | None = None
    operator: str | None = None
    changed: list[str] = msgspec.field(default_factory=list)
    set_at: str


class Storage(ABC):
    """What the HTTP app needs from a database. Every method is safe to call concurrently."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise StorageError when the database does not answer."""

    @abstractmethod
    async def ingest(self, records: Sequence[Record]) -> IngestResult | list[IngestError]:
        """Store a batch in one transaction, durably, before returning.

        Highest rev per (line, id) wins; a record whose rev is not above the stored one is a
        duplicate and changes nothing. A list of errors (by index) means nothing was stored.
        """

    @abstractmethod
    async def stops(
        self,
        lines: Sequence[str] | None,
        since: str | None,
        category: str | None,
        unreasoned: bool | None,
        limit: int,
    ) -> list[bytes]:
        """Stop records as JSON, by start; `lines` None means every line."""

    @abstractmethod
    async def kpis(
        self, lines: Sequence[str] | None, interval: str | None, since: str | None, limit: int
    ) -> list[bytes]: ...

    @abstractmethod
    async def follow_ups(
        self, rtype: FollowUpType, lines: Sequence[str] | None, status: str | None, limit: int
    ) -> list[bytes]: ...

    @abstractmethod
    async def set_reason(
        self,
        line: str,
        stop_id: str,
        reason_code: int | str,
        reason_text: str | None,
        reason_category: str | None,
    ) -> bytes | None:
        """Write a new rev of the stop with reason_source "central"; None if no such stop."""

    @abstractmethod
    async def reasons(self, lines: Sequence[str] | None, since_seq: int, limit: int) -> list[ReasonChange]: ...

    @abstractmethod
    async def set_context(self, line: str, fields: dict[str, str | None]) -> ContextChange:
        """Record a context change for the line (merged over the previous one)."""

    @abstractmethod
    async def contexts(self, lines: Sequence[str] | None, since_seq: int, limit: int) -> list[ContextChange]: ...

    @abstractmethod
    async def ack(self, rtype: FollowUpType, line: str, rid: str) -> tuple[AckOutcome, bytes | None]: ...


def open_storage(url: str) -> Storage:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or `postgresql://user@host/db[?schema=s]`."""
    if url.startswith("sqlite:///"):
        from sync.store.sqlite import SqliteStorage

        path = url[len("sqlite:///"):]
        if not path:
            raise StorageError("sqlite URL without a path: use sqlite:///PATH")
        return SqliteStorage(path)
    if url.startswith(("postgresql://", "postgres://")):
        from sync.store.postgres import PostgresStorage

        return PostgresStorage(url)
    raise StorageError("unknown database URL scheme: use sqlite:///PATH or postgresql://...")
