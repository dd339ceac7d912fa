"""Starting the reference store for tests (this package's and the sync agent's).

`start_store` runs it in this process (a thread, ephemeral port); `StoreProcess` runs
`lineside store` as a child process so a test can kill -9 it. Records and batches are built
with the real Structs; `rows` reads what the database really holds.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from sync.records import Batch, Record, Source, StopRecord, format_ts
from sync.store import StoreSettings, running_store
from sync.store.postgres import split_schema

__all__ = [
    "TOKENS",
    "StoreProcess",
    "StoreToken",
    "StoreUnderTest",
    "batch",
    "new_line",
    "rows",
    "start_store",
    "stop",
]

MiB = 1024 * 1024
# Small limits so the oversize tests stay cheap.
TEST_SETTINGS = StoreSettings(max_body_bytes=1 * MiB, max_batch_records=500)


@dataclass(frozen=True)
class StoreToken:
    name: str
    token: str
    lines: list[str]
    roles: list[str]

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


TOKENS = {
    "edge": StoreToken("edge-any", secrets.token_urlsafe(24), ["*"], ["write"]),
    "line_a": StoreToken("edge-line-a", secrets.token_urlsafe(24), ["line-a"], ["write"]),
    "follow_up": StoreToken("follow-up", secrets.token_urlsafe(24), ["*"], ["read"]),
}


@dataclass
class StoreUnderTest:
    url: str
    db_url: str
    client: httpx.Client = field(repr=False)

    def post(self, body: bytes, token: StoreToken | None = None, **headers: str) -> httpx.Response:
        h = {"Content-Type": "application/json", **(token or TOKENS["edge"]).header}
        h.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.client.post("/v1/records", content=body, headers=h)

    def get(self, path: str, token: StoreToken | None = None, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=(token or TOKENS["follow_up"]).header)


@contextmanager
def start_store(db_url: str, tokens: Path, settings: StoreSettings = TEST_SETTINGS) -> Iterator[StoreUnderTest]:
    with running_store(db_url, tokens, settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield StoreUnderTest(url=url, db_url=db_url, client=client)


def new_line() -> str:
    """A line id of its own, so tests sharing a store never see each other's rows."""
    return f"line-{secrets.token_hex(4)}"


def stop(line: str, n: int, rev: int = 0, **kw: Any) -> StopRecord:
    start = 1_763_791_200 + 60 * n
    return StopRecord(
        id=f"{line}:stop:{n}", rev=rev, site="plant1", area="pack", line=line, machine="filler",
        ts=format_ts(start), start=format_ts(start), **kw,
    )


def batch(line: str, records: Sequence[Record], batch_id: str | None = None) -> Batch:
    return Batch(
        batch_id=batch_id or secrets.token_hex(8),
        source=Source(site="plant1", line=line, host="ipc-1"),
        records=list(records),
    )


def rows(db_url: str, line: str) -> list[tuple[str, str, int]]:
    """(type, id, rev) of every row the database holds for a line, read directly."""
    query = "SELECT type, id, rev FROM records WHERE line = {} ORDER BY type, id"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            return [tuple(r) for r in conn.execute(query.format("?"), (line,))]  # type: ignore[misc]
    conninfo, schema = split_schema(db_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if schema:
            conn.execute(f'SET search_path TO "{schema}"')
        return [tuple(r) for r in conn.execute(query.format("%s"), (line,))]  # type: ignore[misc]


class StoreProcess:
    """`lineside store` as a child process on an ephemeral port; `kill()` is kill -9."""

    def __init__(
        self, db_url: str, tokens: Path, *extra: str, env: dict[str, str] | None = None, log_level: str = "info"
    ) -> None:
        self.db_url = db_url
        cmd = [sys.executable, "-m", "edge.cli", "--log-format", "json", "--log-level", log_level,
               "store", "--db", db_url,
               "--listen", "127.0.0.1:0", "--tokens", str(tokens), *extra]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_url(30.0)
        # Keep draining stderr so a chatty store never blocks on a full pipe.
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_url(self, timeout_s: float) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("lineside store listening on "):
                    found.append(line.split(" on ", 1)[1].strip())
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout_s)
        if not found:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"store did not start: {err[-2000:]}")
        return found[0]

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(10)

    def __enter__(self) -> StoreProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
