"""Shipping one line buffer: in order, batched, acknowledged, with live data ahead of a backlog.

Normal operation is one ordered stream: fetch after the cursor, post, move the cursor on the
store's 200. After an outage (the oldest unacknowledged record is older than
``backfill.live_window_s``) the buffer is split where the live window starts: the live tail
is shipped as it comes, in order, and the backlog before it is shipped in order too, at most
``backfill.max_records_per_s``, between live batches. When the backlog is done both merge
into one cursor again (Outbox keeps both in the file, so a restart resumes the same way).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from buffer import Cursor, Outbox, OutboxRow
from config.sync_models import SyncConfig
from sync.agent.pull import CentralPuller
from sync.agent.uploader import PullError, Uploader
from sync.agent.wire import encode_batch
from sync.records import Source, uuid7

__all__ = ["LineShipper", "LineStatus"]


@dataclass
class LineStatus:
    """What the status page and /metrics show per line."""

    path: str
    line: str = ""
    site: str = ""
    lag_records: int = 0
    lag_seconds: float = 0.0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    auth_failing: bool = False
    sent_records: int = 0
    sent_bytes: int = 0
    duplicates: int = 0
    batches: int = 0
    quarantined: int = 0
    backfilling: bool = False
    buffer_full: bool = False
    evicted: dict[str, int] = field(default_factory=dict)
    central_changes: int = 0  # reasons and context pulled from the store into the inbox

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Bucket:
    """Token bucket for the backlog: `rate` records/s, bursts of one batch."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.at = time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        # Wait for a reasonable batch instead of trickling single records.
        return int(self.tokens) if self.tokens >= min(self.burst, max(1.0, self.rate / 10)) else 0

    def take(self, n: int) -> None:
        self.tokens -= n


class LineShipper:
    POLL_S = 0.05
    LAG_EVERY_S = 1.0
    PULL_EVERY_S = 2.0  # reasons and context set at the store reach the edge within this (plus the daemon's poll)

    def __init__(self, outbox: Outbox, uploader: Uploader, cfg: SyncConfig, host: str,
                 status: LineStatus) -> None:
        self._ob = outbox
        self._up = uploader
        self._cfg = cfg
        self._host = host
        self.status = status
        self._bucket = _Bucket(cfg.backfill.max_records_per_s, cfg.batch.max_records)
        self._source: Source | None = None
        self._last_lag = 0.0
        self._last_pull = 0.0
        self._puller = CentralPuller(outbox.path, uploader)
        self._log = structlog.get_logger().bind(buffer=outbox.path)

    def _on_failure(self, message: str, auth: bool) -> None:
        st = self.status
        if auth and not st.auth_failing:
            self._log.error("upstream_auth_rejected", error=message,
                            hint="check upstream.token_file; records keep buffering")
        elif not auth:
            self._log.warning("upload_failed", error=message)
        st.last_error, st.last_error_at, st.auth_failing = message, time.time(), auth

    async def run(self) -> None:
        try:
            await self._identify()
            while True:
                sent = await self.step()
                if time.monotonic() - self._last_lag >= self.LAG_EVERY_S:
                    await self.refresh()
                if time.monotonic() - self._last_pull >= self.PULL_EVERY_S:
                    await self.pull()
                if not sent:
                    await asyncio.sleep(self.POLL_S)
        finally:
            # its connection has a worker thread that would keep the process from exiting
            await self._puller.close()

    async def _identify(self) -> None:
        while self._source is None:
            ident = await self._ob.identity()
            if ident is None:
                rows = await self._ob.fetch(0, limit=1, max_bytes=1)
                if rows:
                    rec = msgspec.msgpack.decode(rows[0].body)
                    ident = {"site": rec["site"], "line": rec["line"]}
            if ident is None:
                await asyncio.sleep(self.POLL_S * 4)
                continue
            self._source = Source(site=ident["site"], line=ident["line"], host=self._host)
            self.status.line, self.status.site = ident["line"], ident["site"]
            self._log = self._log.bind(line=ident["line"])

    async def pull(self) -> int:
        """Reasons and context set at the store, into the buffer's inbox (see sync.agent.pull)."""
        self._last_pull = time.monotonic()
        assert self._source is not None
        try:
            n = await self._puller.pull(self._source.line)
        except PullError as exc:
            self._log.warning("central_pull_failed", error=str(exc))
            return 0
        self.status.central_changes += n
        return n

    async def refresh(self) -> None:
        self._last_lag = time.monotonic()
        lag = await self._ob.lag()
        self.status.lag_records, self.status.lag_seconds = lag.records, lag.seconds
        self.status.quarantined = (await self._ob.quarantined(limit=0))[0]
        counters = await self._ob.counters()
        self.status.buffer_full = bool(counters.get("full", 0))
        self.status.evicted = {k[8:]: v for k, v in counters.items() if k.startswith("evicted.")}

    async def step(self) -> int:
        """Ship at most one live batch and one backlog batch; returns records acknowledged."""
        b = self._cfg.batch
        c = await self._ob.cursor()
        if c.live_from is None:
            c = await self._maybe_split(c.seq)
        if c.live_from is None:
            rows = await self._fetch_lingering(c.seq)
            if not rows:
                self.status.backfilling = False
                return 0
            await self._ship(rows)
            await self._ob.ack(rows[-1].seq)
            return len(rows)
        self.status.backfilling = True
        sent = 0
        live_after = c.live_seq if c.live_seq is not None else c.live_from - 1
        rows = await self._ob.fetch(live_after, limit=b.max_records, max_bytes=b.max_bytes)
        if rows:
            await self._ship(rows)
            c = await self._ob.ack_live(rows[-1].seq)
            sent += len(rows)
        if c.live_from is None:
            return sent
        allowance = self._bucket.available()
        if allowance:
            rows = await self._ob.fetch(c.seq, limit=min(allowance, b.max_records), max_bytes=b.max_bytes,
                                        before=c.live_from)
            if rows:
                await self._ship(rows)
                self._bucket.take(len(rows))
                await self._ob.ack(rows[-1].seq)
                sent += len(rows)
            else:
                await self._ob.ack(c.live_from - 1)  # backlog done: merge the cursors
                self._log.info("backfill_finished")
        return sent

    async def _maybe_split(self, after: int) -> Cursor:
        window = self._cfg.backfill.live_window_s
        first = await self._ob.fetch(after, limit=1, max_bytes=1)
        now = time.time()
        if not first or now - first[0].written_ms / 1000.0 <= window:
            return await self._ob.cursor()
        since = await self._ob.first_seq_written_since(after, int((now - window) * 1000))
        split = since if since is not None else await self._ob.max_seq() + 1
        if split <= after + self._cfg.batch.max_records:
            return await self._ob.cursor()  # the backlog is one batch: no need to split
        self._log.warning("backfill_started", backlog_from=after + 1, live_from=split,
                          rate=self._cfg.backfill.max_records_per_s)
        return await self._ob.start_live(split)

    async def _fetch_lingering(self, after: int) -> list[OutboxRow]:
        b = self._cfg.batch
        rows = await self._ob.fetch(after, limit=b.max_records, max_bytes=b.max_bytes)
        if not rows or len(rows) >= b.max_records or b.linger_ms == 0:
            return rows
        if sum(len(r.body) for r in rows) >= b.max_bytes * 0.9:
            return rows
        age = time.time() - rows[0].written_ms / 1000.0
        wait = b.linger_ms / 1000.0 - age
        if wait > 0:
            await asyncio.sleep(wait)
            rows = await self._ob.fetch(after, limit=b.max_records, max_bytes=b.max_bytes)
        return rows

    async def _ship(self, rows: list[OutboxRow]) -> None:
        """Until the store has taken every record of `rows` (or quarantined the ones it refuses)."""
        assert self._source is not None
        up = self._cfg.upstream
        stack = [rows]
        while stack:
            part = stack.pop()
            body, headers = encode_batch(part, batch_id=uuid7(), source=self._source,
                                         encoding=up.encoding, compression=up.compression)
            ans = await self._up.send(body, headers, self._on_failure)
            if ans.status == 200:
                self.status.sent_records += ans.accepted
                self.status.sent_bytes += len(body)
                self.status.duplicates += ans.duplicates
                self.status.batches += 1
                self.status.last_success = time.time()
                self.status.auth_failing = False
                continue
            named: dict[int, str] = {}
            by_id = {r.id: i for i, r in enumerate(part)}
            for e in ans.errors:
                i = e.index if 0 <= e.index < len(part) and (e.id is None or part[e.index].id == e.id) \
                    else by_id.get(e.id or "", -1)
                if i >= 0:
                    named[i] = e.error
            if not named and len(part) == 1:
                named[0] = ans.error or f"HTTP {ans.status}"
            if named:
                await self._ob.quarantine([(part[i], err) for i, err in sorted(named.items())])
                self.status.quarantined += len(named)
                self._log.error("records_quarantined", records=len(named), status=ans.status,
                                ids=[part[i].id for i in sorted(named)][:10], error=ans.error)
                rest = [r for i, r in enumerate(part) if i not in named]
                if rest:
                    stack.append(rest)
            else:
                # The store refused the batch without naming records (too large, bad envelope):
                # halve it until the culprits stand alone. Second half pushed first: order kept.
                mid = len(part) // 2
                stack.append(part[mid:])
                stack.append(part[:mid])
