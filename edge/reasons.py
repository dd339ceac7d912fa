"""Reasons set after the fact, and context from the central store, applied in the daemon.

Two ways in, one way out:

- the status page: an operator picks a configured reason for a stop; `SnapshotProvider` calls
  `on_operator_reason` (wired in `edge.daemon`), which applies it at once with
  ``source="operator"``;
- the central store: the sync agent pulls reasons set there (``PATCH /v1/stops/{id}``) and
  line context (``PUT /v1/lines/{line}/context``) into the buffer file's inbox
  (`buffer.inbox`); `run` polls it every ``POLL_S`` and applies each item once
  (``source="central"``; context as if the signal had changed when the edge received it),
  marking it applied with an outcome.

Either way `LineProcessor.set_reason` gives the stop's new revision (same id) and the KPI
records of the intervals it changes; they go through the follow-up rules and into the buffer
with the daemon's next tick, and the agent ships them. A stop the processor no longer keeps
(closed longer ago than its memory) still gets its new revision, built from the latest copy
the daemon wrote (its recent stops, else the buffer file); its KPIs are then not recomputed and
a ``reason_applied_without_kpis`` event says so. A reason for a stop the edge never had is
refused: 404 on the page, outcome ``unknown_stop`` in the inbox (and a ``central_reason_refused``
event). Precedence between PLC, operator and central: see `edge.processor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import msgspec

from buffer.inbox import Inbox, InboxItem
from buffer.schema import RECORD_ID_INDEXED
from sync.records import Record, StopRecord, decode_msgpack, format_ts

if TYPE_CHECKING:
    from edge.daemon import LineDaemon

__all__ = ["EdgeReasons"]

CONTEXT_FIELDS = ("order", "product", "operator")


class EdgeReasons:
    """The daemon's side of reasons set later and central context (see the module docstring)."""

    POLL_S = 1.0
    BATCH = 100
    RETENTION_S = 7 * 86400.0

    def __init__(self, daemon: LineDaemon) -> None:
        self._d = daemon
        self._inbox: Inbox | None = None
        self._last_prune = 0.0
        self.applied: dict[str, int] = {}

    # ------------------------------------------------------------ applying

    def _queue(self, records: list[Record]) -> None:
        """Into the daemon's next write, through the follow-up rules like every processor record."""
        d = self._d
        d._pending.extend(records)
        d._pending.extend(d.followup.observe(records))

    def apply_reason(
        self, stop_id: str, code: int | str, *, source: str, text: str | None = None,
        category: str | None = None, fallback: StopRecord | None = None,
    ) -> list[Record]:
        """Apply a reason; KeyError when neither the processor nor `fallback`/the daemon's recent
        stops know the stop."""
        d = self._d
        now = d.clock.now()
        try:
            out = d.processor.set_reason(stop_id, code, source=source, text=text, category=category, at=now)
        except KeyError:
            copy = fallback or self._recent_copy(stop_id)
            if copy is None:
                raise
            out = [self._revise_copy(copy, code, source, text, category, now),
                   d.event("reason_applied_without_kpis", stop_id=stop_id, reason_source=source,
                           why="the stop is older than what the processor keeps; its KPIs were not recomputed")]
        self._queue(out)
        d.log.info("stop_reason_applied", stop_id=stop_id, reason_code=code, reason_source=source,
                   records=len(out))
        return out

    def _recent_copy(self, stop_id: str) -> StopRecord | None:
        raw = self._d._stops.get(stop_id)
        return None if raw is None else msgspec.convert(raw, StopRecord)

    def _revise_copy(self, st: StopRecord, code: int | str, source: str, text: str | None,
                     category: str | None, now: float) -> StopRecord:
        try:
            r = self._d.cfg.production.reasons.get(int(code))
        except (TypeError, ValueError):
            r = None
        cat = st.category
        if r is not None and r.planned and cat == "unplanned_stop":
            cat = "planned_stop"
        return msgspec.structs.replace(
            st, rev=st.rev + 1, ts=format_ts(now), reason_code=code, category=cat,
            reason_text=text if text is not None else (r.text if r else None),
            reason_category=category if category is not None else (r.category if r else None),
            reason_source=source,
        )

    def on_operator_reason(self, updated: dict[str, Any]) -> None:
        """`SnapshotProvider(on_reason=...)`: the page already checked the code is configured."""
        self.apply_reason(str(updated["id"]), updated["reason_code"], source="operator")

    # ------------------------------------------------------------ the inbox

    async def run(self) -> None:
        """Poll the inbox for ever (a task in the daemon's group)."""
        while True:
            try:
                await self.poll_once()
            except (sqlite3.Error, OSError) as exc:
                # a busy or briefly unusable file: try again next round, never take the line down
                self._d.log.warning("inbox_poll_failed", error=str(exc))
            await asyncio.sleep(self.POLL_S)

    async def close(self) -> None:
        if self._inbox is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._inbox.close()
            self._inbox = None

    async def poll_once(self) -> int:
        if self._inbox is None:
            self._inbox = await Inbox.open(self._d.cfg.buffer.path)
        items = await self._inbox.pending(self.BATCH)
        done: list[tuple[int, str]] = []
        for item in items:
            outcome = await self._apply_item(item)
            self.applied[outcome] = self.applied.get(outcome, 0) + 1
            done.append((item.seq, outcome))
        await self._inbox.mark_applied(done)
        if time.monotonic() - self._last_prune > 3600:
            self._last_prune = time.monotonic()
            await self._inbox.prune(int((time.time() - self.RETENTION_S) * 1000))
        return len(done)

    async def _apply_item(self, item: InboxItem) -> str:
        d = self._d
        b = item.body
        try:
            if item.kind == "context":
                changed = [f for f in b.get("changed", CONTEXT_FIELDS) if f in CONTEXT_FIELDS]
                now = d.clock.now()
                for f in changed:
                    v = b.get(f)
                    d.processor.set_context(f, None if v is None else str(v), now)
                d._pending.append(d.event("context_applied", **{f: b.get(f) for f in changed}, seq=b.get("seq")))
                d.log.info("central_context_applied", fields=changed)
                return "applied"
            stop_id, code = str(b["stop_id"]), b["reason_code"]
            if code is None or not isinstance(code, int | str):
                return "refused: no reason code"
            kw: dict[str, Any] = {"source": "central", "text": b.get("reason_text"),
                                  "category": b.get("reason_category")}
            try:
                try:
                    out = self.apply_reason(stop_id, code, **kw)
                except KeyError:
                    out = self.apply_reason(stop_id, code, **kw, fallback=await asyncio.to_thread(self._buffer_copy, stop_id))
            except KeyError:
                d._pending.append(d.event("central_reason_refused", stop_id=stop_id, why="unknown stop"))
                d.log.warning("central_reason_refused", stop_id=stop_id, why="unknown stop")
                return "unknown_stop"
            return "applied" if not any(getattr(r, "kind", "") == "reason_applied_without_kpis" for r in out) \
                else "applied_without_kpis"
        except (KeyError, TypeError, ValueError) as exc:
            d.log.warning("inbox_item_refused", key=item.key, error=str(exc))
            return f"refused: {type(exc).__name__}: {exc}"[:300]

    def _buffer_copy(self, stop_id: str) -> StopRecord | None:
        """The latest revision of the stop the daemon wrote, read back from the buffer file."""
        path = self._d.cfg.buffer.path
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as con:
            row = con.execute(f"SELECT body FROM records WHERE id = ? AND type = 'stop' AND {RECORD_ID_INDEXED}",
                              (stop_id,)).fetchone()
        if row is None:
            return None
        rec = decode_msgpack(bytes(row[0]))
        return rec if isinstance(rec, StopRecord) else None
