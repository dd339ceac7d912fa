"""`lineside sync SYNC.yaml`: discover the line buffers, ship each, serve status and metrics.

Each line has its own task; one httpx client serves all of them. Every task lives in the
agent's TaskGroup; SIGTERM cancels it, and since the cursor only moves after a 200, whatever
was on the wire is simply sent again next time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import signal
import socket
import sys
import time
from typing import Any

import msgspec
import structlog
import uvicorn

from buffer import Outbox
from config import ConfigError, SyncConfig, load_sync_config
from sync.agent.line import LineShipper, LineStatus
from sync.agent.status import create_status_app
from sync.agent.uploader import TokenError, Uploader

__all__ = ["SyncAgent", "cli_sync"]

UPSTREAM = "default"  # the cursor name in each buffer file


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the agent owns SIGTERM
        pass


def _buffer_files(pattern: str) -> list[str]:
    # Only the main files: never a -wal/-shm of one that a broad glob might catch.
    return sorted(p for p in glob.glob(pattern)
                  if os.path.isfile(p) and not p.endswith(("-wal", "-shm", "-journal")))


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class SyncAgent:
    DISCOVER_EVERY_S = 5.0

    def __init__(self, cfg: SyncConfig) -> None:
        self.cfg = cfg
        self.host = cfg.host or socket.gethostname()
        self.lines: dict[str, LineStatus] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._unusable: set[str] = set()
        self.status_port: int | None = None
        self.started = asyncio.Event()
        self._log = structlog.get_logger().bind(component="sync")
        # Fail at start on what cannot work (plain http, token file): a clear error, exit 2.
        self._uploader = Uploader(cfg.upstream, cfg.retry)

    async def run(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in _listen(self.cfg.status.listen)[0] else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(_listen(self.cfg.status.listen))
        sock.listen(64)
        sock.setblocking(False)
        self.status_port = sock.getsockname()[1]
        app = create_status_app(lambda: list(self.lines.values()), self._quarantined)
        server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        try:
            async with self._uploader, asyncio.TaskGroup() as tg:
                tg.create_task(server.serve(sockets=[sock]), name="sync-status")
                self._log.info("sync_started", buffers=self.cfg.buffers, upstream=self.cfg.upstream.url,
                               status=f"http://{self.cfg.status.listen.rsplit(':', 1)[0]}:{self.status_port}")
                self.started.set()
                await self._discover_forever(tg)
        finally:
            server.should_exit = True
            for ob in self._outboxes.values():
                with contextlib.suppress(Exception):
                    await ob.close()
            sock.close()

    async def _discover_forever(self, tg: asyncio.TaskGroup) -> None:
        while True:
            for path in _buffer_files(self.cfg.buffers):
                if path in self._outboxes:
                    continue
                try:
                    ob = await Outbox.open(path, UPSTREAM)
                    if not await ob.ready():
                        await ob.close()
                        continue
                except Exception as exc:  # one bad file must not stop the others
                    if path not in self._unusable:
                        self._log.error("buffer_unusable", path=path, error=str(exc))
                    self._unusable.add(path)
                    continue
                self._outboxes[path] = ob
                st = LineStatus(path=path)
                self.lines[path] = st
                shipper = LineShipper(ob, self._uploader, self.cfg, self.host, st)
                tg.create_task(self._ship_forever(shipper), name=f"sync:{path}")
                self._log.info("buffer_discovered", path=path)
            await asyncio.sleep(self.DISCOVER_EVERY_S)

    async def _ship_forever(self, shipper: LineShipper) -> None:
        """A line's loop; a local failure (a locked or damaged file) is reported and retried,
        never allowed to take the other lines down."""
        while True:
            try:
                await shipper.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                shipper.status.last_error, shipper.status.last_error_at = repr(exc), time.time()
                self._log.exception("line_sync_failed", path=shipper.status.path)
                await asyncio.sleep(1.0)

    async def _quarantined(self, line: str, limit: int) -> dict[str, Any] | None:
        for path, st in self.lines.items():
            if line in (st.line, path):
                total, recs = await self._outboxes[path].quarantined(limit)
                return {
                    "line": st.line, "count": total,
                    "records": [
                        {"seq": q.seq, "id": q.id, "type": q.type, "rev": q.rev, "error": q.error,
                         "at_ms": q.at_ms, "record": msgspec.msgpack.decode(q.body)}
                        for q in recs
                    ],
                }
        return None


def cli_sync(args: argparse.Namespace) -> int:
    log = structlog.get_logger()
    try:
        cfg = load_sync_config(args.sync_config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        agent = SyncAgent(cfg)
    except (TokenError, ValueError, OSError) as exc:
        print(f"{args.sync_config}: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        from edge.notify import notify_ready, notify_stopping

        # lineside-sync.service is Type=notify: config and token are read, buffers are found
        # by the run loop as they appear.
        notify_ready("sync: running")
        try:
            await agent.run()
        finally:
            notify_stopping()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        log.info("sync_stopped")
    except OSError as exc:
        log.error("sync_failed", error=str(exc))
        return 1
    return 0
