"""The writer side of a line buffer: the edge daemon appends records, they are committed in
batches, kept under a size cap, pruned once sent, and never lost to a full disk.

One transaction per flush (every 100 ms by default, or `flush()`), not per record: the daemon's
scan cycles produce bursts, and SQLite's cost is per commit. Records are serialized once
(MessagePack) here; the agent ships those bytes as they are.

Line identity (site/area/line/machine) is needed for the ``buffer_full`` event the buffer writes
itself: pass it to `LineBuffer.open`, or it is taken from the first record appended, and it is
kept in the file (``meta.identity``) for the next start and for the sync agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Self

import aiosqlite
import msgspec
import structlog

from buffer.schema import (
    RECORD_ID_INDEXED,
    Migration,
    connect,
    immediate,
    is_busy,
    is_disk_error,
    migrate,
    used_bytes,
)
from config.models import BufferConfig, LineIdentity
from sync.records import RECORD_TYPES, AnyRecord, EventRecord, Record, format_ts, uuid7

__all__ = ["EVICTION_ORDER", "NEVER_EVICTED", "LineBuffer"]

# When the size cap is reached: oldest raw samples go first, then per-minute counts. Nothing
# else is ever evicted (stop, kpi, maintenance_request, quality_alert; and state and event,
# which are small and carry the line's history and the buffer_full event itself).
EVICTION_ORDER: tuple[str, ...] = ("sample", "count")
NEVER_EVICTED: frozenset[str] = frozenset(
    {"stop", "kpi", "maintenance_request", "quality_alert", "state", "event"}
)

# Samples are not in the unique index on id (schema v3): they are plain appends; every other
# type is upserted by id, a higher rev replacing the stored record.
_UPSERT = (
    "INSERT INTO records (seq, id, type, rev, written_ms, body) VALUES (?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (id) WHERE {RECORD_ID_INDEXED} DO UPDATE SET seq = excluded.seq, type = excluded.type, rev = excluded.rev, "
    "written_ms = excluded.written_ms, body = excluded.body WHERE excluded.rev > records.rev"
)
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_ADD_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
)
_SET_COUNTER = "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"

# (id, type, rev, msgpack body)
_Pending = tuple[str, str, int, bytes]

_TAGS: dict[type, str] = {cls: tag for tag, cls in RECORD_TYPES.items()}
_DECODER = msgspec.msgpack.Decoder(AnyRecord)
_ID = itemgetter(0)
_BODY = itemgetter(3)


def _tag(cls: type) -> str:
    tag = _TAGS.get(cls)
    if tag is None:
        tag = str(cls.__struct_config__.tag)  # type: ignore[attr-defined]
        _TAGS[cls] = tag
    return tag


def _size(p: _Pending) -> int:
    """About what a row costs in the file: body, id twice (row and unique index; samples are not
    in that index since schema v3, so theirs is an over-estimate, on the safe side), overhead."""
    return len(p[3]) + 2 * len(p[0]) + 24


def _batch_size(batch: Sequence[_Pending]) -> int:
    """``sum(_size(p) for p in batch)``, without a Python call per record."""
    return sum(map(len, map(_BODY, batch))) + 2 * sum(map(len, map(_ID, batch))) + 24 * len(batch)


def _disk_room(path: str) -> tuple[int, int] | None:
    """(free bytes on the buffer's filesystem, bytes in the WAL file)."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    try:
        wal = os.stat(path + "-wal").st_size
    except OSError:
        wal = 0
    return st.f_bavail * st.f_frsize, wal


def _file_bytes(path: str) -> int:
    size = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            size += os.stat(path + suffix).st_size
    return size


class LineBuffer:
    """One line's SQLite buffer, opened by the edge daemon (the only writer of records)."""

    # Below this fraction of the cap the full episode ends; eviction frees down to FREE_TO.
    CLEAR_AT = 0.8
    FREE_TO = 0.9
    PRUNE_EVERY_S = 60.0
    CHECKPOINT_EVERY_S = 30.0
    STATS_EVERY_S = 2.0
    # The stats count the unsent records (a range scan): after an outage that is millions of
    # rows, so the refresh is spaced to keep its share of the time at most 1 / STATS_COST_SHARE.
    STATS_COST_SHARE = 50
    RETRY_EVERY_S = 1.0
    LEARNED_CAP_TTL_S = 600.0
    DISK_RESERVE = 256 * 1024
    # Records queued beyond max(memory_bound_records, this) while the disk takes writes mean
    # the daemon is overloaded: raw samples are shed (a bound of 0 must not mean "no samples").
    OVERLOAD_FLOOR = 20_000

    def __init__(
        self,
        cfg: BufferConfig,
        conn: aiosqlite.Connection,
        identity: dict[str, str] | None,
        flush_interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._cfg = cfg
        self._path = cfg.path
        self._conn = conn
        self._identity = identity
        self._identity_dirty = False
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._enc = msgspec.msgpack.Encoder()
        self._pending: list[_Pending] = []
        self._next_seq = 1
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cap_bytes = cfg.max_size_mb * 1024 * 1024
        self._learned_cap: float | None = None
        self._learned_at = 0.0
        self._full = False
        self._blocked = False
        self._retry_at = 0.0
        self._evicted: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._overload_dropped: int | None = None  # samples shed in the current overload episode
        self._overload_bound = max(cfg.memory_bound_records, self.OVERLOAD_FLOOR)
        self._write_errors = 0
        self._last_error: str | None = None
        self._last_prune = 0.0
        self._last_checkpoint = time.monotonic()
        self._last_stats = 0.0
        self._stats_every_s = self.STATS_EVERY_S
        self._stats: dict[str, Any] = {}
        self._closed = False
        # A write cancelled mid-way: (its batch, meta.next_seq if its COMMIT landed anyway),
        # kept apart from the queue (nothing sheds from it) until _settle_interrupted.
        self._interrupted: tuple[list[_Pending], int] | None = None
        self._log = structlog.get_logger().bind(buffer=cfg.path)
        self.migration: Migration | None = None

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        cfg: BufferConfig,
        identity: LineIdentity | None = None,
        *,
        flush_interval_s: float = 0.1,
        background: bool = True,
        clock: Callable[[], float] = time.time,
        on_migration_copy: Callable[[int], None] | None = None,
    ) -> Self:
        """Create the directory and file if needed, migrate, switch to WAL, start the flush task.

        ``background=False`` commits only on `flush()` (tests, `lineside replay`).
        ``on_migration_copy(bytes)`` is called before a migration that copies the records table
        (seconds per 100 MB; the daemon tells systemd to wait).
        """
        Path(cfg.path).parent.mkdir(parents=True, exist_ok=True)
        conn = await connect(cfg.path, synchronous=cfg.synchronous)
        try:
            migration = await migrate(conn, cfg.path, on_copy=on_migration_copy)
            ident: dict[str, str] | None = None
            if identity is not None:
                ident = {"site": identity.site, "area": identity.area, "line": identity.id,
                         "machine": identity.machine}
            self = cls(cfg, conn, ident, flush_interval_s, clock)
            self.migration = migration
            if migration.copied_bytes:
                self._log.info("buffer_migrated", had=migration.had, now=migration.now,
                               copied_mb=round(migration.copied_bytes / 2**20, 1))
                with contextlib.suppress(sqlite3.Error):  # the copy sits in the WAL: fold it in now
                    await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if migration.deferred is not None:
                self._log.warning("buffer_migration_deferred", version=migration.now, reason=migration.deferred,
                                  effect="runs on the older layout, with slower sample writes; "
                                         "tried again at the next start")
            await self._load_state(store_identity=identity is not None)
        except BaseException:
            await conn.close()
            raise
        if background:
            self._task = asyncio.create_task(self._run(), name=f"buffer-flush:{cfg.path}")
        await self._refresh_stats()
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush what is queued, checkpoint the WAL into the file and close."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            # Let the flush task finish the transaction it may be in and leave its loop; a
            # cancel there would roll back a batch already taken from the queue.
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        async with self._lock:
            await self._flush_locked(force=True)
            if self._pending:
                self._log.error("buffer_records_lost_at_close", records=len(self._pending),
                                last_error=self._last_error)
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with contextlib.suppress(sqlite3.Error):
                await self._refresh_stats()
        await self._conn.close()

    # ------------------------------------------------------------ the daemon's API

    async def append(self, records: Sequence[Record]) -> None:
        """Queue records; the background task commits them within one flush interval.

        The same id with a higher rev replaces the stored record and is shipped again; an equal
        or lower rev is ignored.
        """
        if self._closed:
            raise RuntimeError("append on a closed LineBuffer")
        enc = self._enc.encode
        pend = self._pending
        tags = _TAGS
        try:
            pend.extend([(r.id, tags[r.__class__], r.rev, enc(r)) for r in records])
        except KeyError:  # a Record class not seen yet (a subclass): nothing was queued
            pend.extend([(r.id, _tag(type(r)), r.rev, enc(r)) for r in records])
        if self._identity is None and records:
            r0 = records[0]
            self._identity = {"site": r0.site, "area": r0.area, "line": r0.line, "machine": r0.machine}
            self._identity_dirty = True
        if self._blocked:
            if len(pend) > self._cfg.memory_bound_records:
                self._shed()
        elif len(pend) > self._overload_bound:
            self._shed_samples()
        if len(pend) >= 50_000:
            self._wake.set()
        await asyncio.sleep(0)

    async def flush(self) -> None:
        """Commit everything queued now (the SIGTERM path). Never raises for a full disk: what
        cannot be written stays queued in memory and is reported in `stats()`."""
        async with self._lock:
            await self._flush_locked(force=True)

    async def history(self, types: Sequence[str], since_s: float) -> list[Record]:
        """The latest revision of every record of `types` written since `since_s` (epoch
        seconds), in write order: what a component needs back after a restart (the follow-up
        rules' MTBF baseline and open requests). Pending appends are committed first."""
        await self.flush()
        marks = ",".join("?" * len(types))
        indexed = "" if "sample" in types else f" AND {RECORD_ID_INDEXED}"
        async with self._conn.execute(
            f"SELECT body FROM records WHERE type IN ({marks}){indexed} AND written_ms >= ? ORDER BY seq",
            (*types, int(since_s * 1000)),
        ) as cur:
            rows = await cur.fetchall()
        return [_DECODER.decode(bytes(r[0])) for r in rows]

    def stats(self) -> dict[str, Any]:
        out = dict(self._stats)
        out.update(
            full=self._full,
            write_blocked=self._blocked,
            overloaded=self._overload_dropped is not None,
            held_in_memory=len(self._pending) + (len(self._interrupted[0]) if self._interrupted else 0),
            evicted=dict(self._evicted),
            dropped=dict(self._dropped),
            write_errors=self._write_errors,
            last_error=self._last_error,
            cap_bytes=int(self._effective_cap()),
        )
        return out

    @property
    def path(self) -> str:
        return self._path

    # ------------------------------------------------------------ internals

    async def _load_state(self, *, store_identity: bool) -> None:
        conn = self._conn
        async with conn.execute("SELECT key, value FROM meta") as cur:
            meta = {str(k): str(v) for k, v in await cur.fetchall()}
        if self._identity is None and "identity" in meta:
            self._identity = json.loads(meta["identity"])
        elif store_identity:
            self._identity_dirty = True
        await self._reload_next_seq(meta)
        async with conn.execute("SELECT name, value FROM counters") as cur:
            for name, value in await cur.fetchall():
                if str(name).startswith("evicted."):
                    self._evicted[str(name)[8:]] = int(value)
                elif name == "full":
                    self._full = bool(value)

    async def _settle_interrupted(self) -> None:
        """After a cancelled write: if its COMMIT landed (meta.next_seq, written in the same
        transaction, moved to where that batch ends), the batch is in the file and is let go;
        samples have no unique index, so a second write would store them twice. If not, it
        goes back to the head of the queue. Either way the sequence is re-read."""
        assert self._interrupted is not None
        batch, landed_seq = self._interrupted
        stored = await self._reload_next_seq()
        # No await from here on: a cancel of this flush lands before this point or not at all,
        # so the queue, the sequence and _interrupted never disagree (a cancel between putting
        # the batch back and re-reading the sequence reused the seqs of a batch that had landed).
        if not (batch and stored == landed_seq):
            self._pending[:0] = batch
        self._interrupted = None

    async def _reload_next_seq(self, meta: dict[str, str] | None = None) -> int | None:
        """Set the next seq from the file; returns meta.next_seq as stored (None: not yet)."""
        if meta is None:
            async with self._conn.execute("SELECT value FROM meta WHERE key = 'next_seq'") as cur:
                row = await cur.fetchone()
            meta = {"next_seq": str(row[0])} if row else {}
        top = 0
        for sql in ("SELECT max(seq) FROM records", "SELECT max(seq) FROM cursors",
                    "SELECT max(live_seq) FROM cursors"):
            async with self._conn.execute(sql) as cur:
                row = await cur.fetchone()
            if row and row[0] is not None:
                top = max(top, int(row[0]))
        stored = int(meta["next_seq"]) if "next_seq" in meta else None
        self._next_seq = max(stored or 1, top + 1)
        return stored

    def _effective_cap(self) -> float:
        if self._learned_cap is not None:
            if time.monotonic() - self._learned_at > self.LEARNED_CAP_TTL_S:
                self._learned_cap = None
            else:
                return min(self._cap_bytes, self._learned_cap)
        return self._cap_bytes

    async def _cap_with_disk(self, used: int, incoming: int) -> float:
        """The configured cap, lowered to what the filesystem can still take.

        In WAL mode a checkpoint needs room in the main file for what the WAL holds; a WAL
        that fills the disk can never be checkpointed again. So the WAL is checkpointed early
        when free space runs short, and the data may only grow into what is left after room
        for the next batch (twice: WAL and main file) and a reserve.
        """
        cap = self._effective_cap()
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and soft > 0:
            # A file-size limit (ulimit -f, systemd LimitFSIZE=): the main file must be able to
            # hold every page when the WAL is checkpointed.
            cap = min(cap, soft - 2 * incoming - self.DISK_RESERVE)
        room = _disk_room(self._path)
        if room is None:
            return cap
        free, wal = room
        if free < wal + 2 * incoming + self.DISK_RESERVE:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            room = _disk_room(self._path)
            if room is None:
                return cap
            free, wal = room
        return min(cap, used + free - wal - 2 * incoming - self.DISK_RESERVE)

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval_s)
            self._wake.clear()
            if self._closed:
                return  # close() does the last flush itself
            try:
                async with self._lock:
                    await self._flush_locked(force=False)
                    await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an unexpected SQLite state: report, keep going
                self._last_error = repr(exc)
                self._log.exception("buffer_maintenance_failed")
                await asyncio.sleep(self.RETRY_EVERY_S)

    async def _flush_locked(self, *, force: bool) -> None:
        if self._interrupted is not None:
            await self._settle_interrupted()
        if not self._pending and not self._identity_dirty:
            return
        if self._blocked and not force and time.monotonic() < self._retry_at:
            return
        batch = self._pending
        self._pending = []
        try:
            batch = await self._make_room(batch)
            await self._write(batch)
        except sqlite3.Error as exc:
            self._pending[:0] = batch
            await self._on_write_error(exc)
            return
        except BaseException:
            # Cancelled mid-write: whether its COMMIT landed is read from the file before the
            # next write (_settle_interrupted); until then the batch is held apart.
            self._interrupted = (batch, self._next_seq + len(batch))
            raise
        if self._blocked:
            self._log.warning("buffer_writes_resumed", path=self._path)
        self._blocked = False
        if self._overload_dropped is not None and len(self._pending) <= self._overload_bound // 2:
            self._end_overload()
        if self._learned_cap is not None:
            # Near a physical limit the WAL must not grow between autocheckpoints.
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _write(self, batch: list[_Pending]) -> None:
        now_ms = int(self._clock() * 1000)
        first = self._next_seq
        seq = first + len(batch)
        async with immediate(self._conn) as conn:
            if batch:
                # (seq, id, type, rev, written_ms, body), seqs in batch order. One executemany:
                # it binds each row holding the GIL, so the event loop (the drivers' polls)
                # keeps priority over a large flush on a one-core daemon.
                rows = [(i, p[0], p[1], p[2], now_ms, p[3]) for i, p in enumerate(batch, first)]
                await conn.executemany(_UPSERT, rows)
            await conn.execute(_SET_META, ("next_seq", str(seq)))
            if self._identity_dirty and self._identity is not None:
                await conn.execute(_SET_META, ("identity", json.dumps(self._identity)))
        self._next_seq = seq
        self._identity_dirty = False

    async def _on_write_error(self, exc: sqlite3.Error) -> None:
        self._write_errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            await self._reload_next_seq()
        self._retry_at = time.monotonic() + self.RETRY_EVERY_S
        if is_busy(exc):
            self._log.warning("buffer_write_busy", error=self._last_error, held=len(self._pending))
            return
        disk = is_disk_error(exc)
        first_failure = not self._blocked
        self._blocked = True
        if disk:
            # The disk (or the file-size limit) is smaller than the configured cap: learn the
            # real limit so the next flushes evict before they hit it again.
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                used = await used_bytes(self._conn)
            except sqlite3.Error:
                used = 0
            if used > 0:
                self._learned_cap = min(self._learned_cap or float("inf"), used * 0.85)
                self._learned_at = time.monotonic()
            await self._enter_full("disk_full", used)
            if first_failure:
                self._retry_at = time.monotonic()  # retry at once, evicting under the learned cap
        self._log.error("buffer_write_failed", error=self._last_error, disk=disk,
                        held_in_memory=len(self._pending))
        if len(self._pending) > self._cfg.memory_bound_records:
            self._shed()

    async def _make_room(self, batch: list[_Pending]) -> list[_Pending]:
        """Evict under the cap before writing; drop evictable incoming records only when the
        file holds nothing evictable any more."""
        incoming = _batch_size(batch)
        used = await used_bytes(self._conn)
        cap = await self._cap_with_disk(used, incoming)
        if used + incoming <= cap:
            if self._full and not self._blocked and used + incoming < self.CLEAR_AT * cap:
                await self._leave_full(used)
            return batch
        await self._enter_full("size_cap" if cap >= self._effective_cap() else "disk_space", used)
        # Per type in eviction order: the stored records first (oldest first), then the oldest
        # of that type in the incoming batch, before the next type is touched.
        for rtype in EVICTION_ORDER:
            target = self.FREE_TO * cap - incoming
            while used > target:
                chunk = int(min(50_000, max(500, (used - target) / 150)))
                n = await self._evict(rtype, chunk)
                if n == 0:
                    break
                used = await used_bytes(self._conn)
            if used + incoming <= cap:
                break
            kept: list[_Pending] = []
            dropped = 0
            for p in batch:
                if p[1] == rtype and used + incoming > self.FREE_TO * cap:
                    incoming -= _size(p)
                    dropped += 1
                else:
                    kept.append(p)
            if dropped:
                self._evicted[rtype] = self._evicted.get(rtype, 0) + dropped
                await self._add_counter(f"evicted.{rtype}", dropped)
                self._log.error("buffer_full_dropping_incoming", type=rtype, records=dropped,
                                used_bytes=used, cap_bytes=int(cap))
                batch = kept
            if used + incoming <= cap:
                break
        return batch

    async def _evict(self, rtype: str, limit: int) -> int:
        async with immediate(self._conn) as conn:
            indexed = "" if rtype == "sample" else f" AND {RECORD_ID_INDEXED}"
            cur = await conn.execute(
                f"DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE type = ?{indexed} ORDER BY seq LIMIT ?)",
                (rtype, limit),
            )
            n = cur.rowcount
            if n > 0:
                await conn.execute(_ADD_COUNTER, (f"evicted.{rtype}", n))
        if n > 0:
            self._evicted[rtype] = self._evicted.get(rtype, 0) + n
            self._log.warning("buffer_evicted", type=rtype, records=n)
            # The delete went to the WAL; fold it into the main file now (pages are reused in
            # place) so the WAL does not eat the space the eviction was meant to free.
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(n, 0)

    async def _add_counter(self, name: str, n: int) -> None:
        async with immediate(self._conn) as conn:
            await conn.execute(_ADD_COUNTER, (name, n))

    async def _enter_full(self, reason: str, used: int) -> None:
        if self._full:
            return
        self._full = True
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute(_SET_COUNTER, ("full", 1))
        self._log.error("buffer_full", reason=reason, used_bytes=used, cap_bytes=int(self._effective_cap()),
                        held_in_memory=len(self._pending))
        self._queue_event("buffer_full", {
            "reason": reason, "used_bytes": used, "cap_bytes": int(self._effective_cap()),
            "evicted_sample": self._evicted.get("sample", 0), "evicted_count": self._evicted.get("count", 0),
        })

    async def _leave_full(self, used: int) -> None:
        self._full = False
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute(_SET_COUNTER, ("full", 0))
        self._log.warning("buffer_not_full", used_bytes=used)

    def _drop_oldest(self, excess: int, types: Sequence[str | None]) -> int:
        """Drop up to `excess` queued records: the oldest of ``types[0]`` first, then of
        ``types[1]``, ... (None: any type). Counted in `stats()["dropped"]`; returns how many."""
        pend, n = self._pending, 0
        for rtype in types:
            if n >= excess:
                break
            kept: list[_Pending] = []
            for p in pend:
                if n < excess and (rtype is None or p[1] == rtype):
                    n += 1
                    self._dropped[p[1]] = self._dropped.get(p[1], 0) + 1
                else:
                    kept.append(p)
            pend = kept
        self._pending = pend
        return n

    def _shed(self) -> None:
        """Memory is bounded too: while nothing can be written, drop what matters least."""
        n = self._drop_oldest(len(self._pending) - self._cfg.memory_bound_records, (*EVICTION_ORDER, None))
        if n:
            self._log.critical("buffer_records_dropped", dropped=n, held_in_memory=len(self._pending),
                               dropped_by_type=dict(self._dropped))

    def _shed_samples(self) -> None:
        """The disk takes writes but the records come in faster than they are committed (more
        historized values than this PC can write): memory stays bounded by shedding the oldest
        raw samples queued, and only those. Stops, KPIs, counts, states and events are never
        shed here; the processor computed them from every value, so they stay exact. An episode
        is reported by a ``buffer_overloaded`` event and ends with ``buffer_overload_ended``
        giving the number of samples not historized."""
        n = self._drop_oldest(len(self._pending) - self._overload_bound, ("sample",))
        if n == 0:
            return
        if self._overload_dropped is None:
            self._overload_dropped = 0
            self._log.error("buffer_overloaded", held_in_memory=len(self._pending), bound=self._overload_bound,
                            hint="fewer historized tags or a longer interval_ms; raw samples are being shed")
            self._queue_event("buffer_overloaded", {"memory_bound_records": self._overload_bound})
        self._overload_dropped += n

    def _end_overload(self) -> None:
        dropped = self._overload_dropped or 0
        self._overload_dropped = None
        self._log.warning("buffer_overload_ended", samples_dropped=dropped)
        self._queue_event("buffer_overload_ended", {"samples_dropped": dropped})

    def _queue_event(self, kind: str, detail: dict[str, Any]) -> None:
        """An event the buffer writes itself, queued behind what is pending."""
        if self._identity is None:
            return
        now = self._clock()
        event = EventRecord(
            id=uuid7(now), ts=format_ts(now), kind=kind, detail=detail,
            site=self._identity["site"], area=self._identity["area"],
            line=self._identity["line"], machine=self._identity["machine"],
        )
        self._pending.append((event.id, "event", 0, self._enc.encode(event)))

    async def _housekeeping(self) -> None:
        mono = time.monotonic()
        if self._blocked:
            return
        try:
            if mono - self._last_prune >= self.PRUNE_EVERY_S:
                self._last_prune = mono
                await self._prune()
            if mono - self._last_checkpoint >= self.CHECKPOINT_EVERY_S:
                self._last_checkpoint = mono
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if mono - self._last_stats >= self._stats_every_s:
                await self._refresh_stats()
        except sqlite3.Error as exc:
            if not (is_busy(exc) or is_disk_error(exc)):
                raise
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._log.warning("buffer_housekeeping_failed", error=self._last_error)

    async def _prune(self) -> None:
        """Sent records older than the retention are deleted, in small transactions."""
        async with self._conn.execute("SELECT min(seq) FROM cursors") as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return
        sent_upto = int(row[0])
        cutoff_ms = int((self._clock() - self._cfg.retention_days * 86400) * 1000)
        # written_ms grows with seq (one writer; a revision gets a new seq), so what is old
        # enough is a prefix of the table: find where the young part starts rather than test
        # every sent row (millions in a full buffer) every minute.
        async with self._conn.execute(
            "SELECT seq FROM records WHERE seq <= ? AND written_ms >= ? ORDER BY seq LIMIT 1",
            (sent_upto, cutoff_ms),
        ) as cur:
            young = await cur.fetchone()
        upto = sent_upto if young is None else int(young[0]) - 1
        total = 0
        while True:
            async with immediate(self._conn) as conn:
                cur2 = await conn.execute(
                    "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE seq <= ? ORDER BY seq LIMIT 20000)",
                    (upto,),
                )
                n = cur2.rowcount
            total += max(n, 0)
            if n < 20000:
                break
        if total:
            self._log.info("buffer_pruned", records=total)

    async def _refresh_stats(self) -> None:
        """What the status page shows of the buffer. No query here may scan the whole table: a
        full buffer holds millions of rows (a count by type over 3 M rows took over a second,
        every 2 s, on the daemon's one core)."""
        started = self._last_stats = time.monotonic()
        conn = self._conn
        async with conn.execute(
            "SELECT min(seq), min(live_from), max(live_seq) FROM cursors"
        ) as cur:
            row = await cur.fetchone()
        sent_upto = int(row[0]) if row and row[0] is not None else 0
        async with conn.execute("SELECT count(*) FROM records WHERE seq > ?", (sent_upto,)) as cur:
            unsent = int((await cur.fetchone() or (0,))[0])
        if row and row[1] is not None and row[2] is not None:
            async with conn.execute(
                "SELECT count(*) FROM records WHERE seq >= ? AND seq <= ?", (int(row[1]), int(row[2]))
            ) as cur:
                unsent -= int((await cur.fetchone() or (0,))[0])
        async with conn.execute(
            "SELECT written_ms FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (sent_upto,)
        ) as cur:
            first = await cur.fetchone()
        async with conn.execute("SELECT count(*) FROM quarantine") as cur:
            quarantined = int((await cur.fetchone() or (0,))[0])
        size = _file_bytes(self._path)
        self._stats = {
            "path": self._path,
            "bytes_on_disk": size,
            "used_bytes": await used_bytes(self._conn),
            "unsent": unsent,
            "oldest_unsent_age_s": (self._clock() - first[0] / 1000.0) if first else None,
            "quarantined": quarantined,
        }
        self._stats_every_s = max(self.STATS_EVERY_S, (time.monotonic() - started) * self.STATS_COST_SHARE)
