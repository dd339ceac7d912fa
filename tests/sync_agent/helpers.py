"""The sync agent's tests: a real store (thread or process), real buffer files, real HTTP."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from config.models import StatusConfig
from config.sync_models import Backfill, Batch, Retry, SyncConfig, Upstream
from sync.agent import SyncAgent
from sync.store import write_token_file

TOKEN = secrets.token_urlsafe(24)


def token_files(tmp: Path, lines: list[str] | None = None) -> tuple[Path, Path]:
    """(the store's token file, the agent's token file)."""
    store_tokens = tmp / "store-tokens.yaml"
    write_token_file(store_tokens, [("edge", TOKEN, lines or ["*"], ["write"])])
    agent_token = tmp / "upstream-token"
    agent_token.write_text(TOKEN + "\n")
    return store_tokens, agent_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sync_config(buffers: str, url: str, token_file: Path, **kw: Any) -> SyncConfig:
    up = {"url": url, "token_file": str(token_file), "allow_insecure_http": True, "timeout_s": 5.0,
          **kw.pop("upstream", {})}
    return SyncConfig(
        buffers=buffers,
        upstream=Upstream(**up),
        batch=kw.pop("batch", Batch(max_records=2000, linger_ms=20)),
        retry=kw.pop("retry", Retry(initial_s=0.05, max_s=0.5)),
        backfill=kw.pop("backfill", Backfill()),
        status=StatusConfig(listen="127.0.0.1:0"),
        host="test-ipc",
        **kw,
    )


@asynccontextmanager
async def running_agent(cfg: SyncConfig) -> AsyncIterator[SyncAgent]:
    agent = SyncAgent(cfg)
    agent.DISCOVER_EVERY_S = 0.2
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    try:
        yield agent
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def wait_for(pred: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def store_rows(db: Path, line: str) -> list[tuple[str, int]]:
    """(id, rev) of the store's rows for a line, in the order they were first stored."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as c:
        return [(str(i), int(r)) for i, r in c.execute(
            "SELECT id, rev FROM records WHERE line = ? ORDER BY rowid", (line,))]


def store_count(db: Path, line: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as c:
            return int(c.execute("SELECT count(*) FROM records WHERE line = ?", (line,)).fetchone()[0])
    except sqlite3.OperationalError:  # the store has not created its schema yet
        return 0
