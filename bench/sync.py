"""Buffer appends and backlog drain, each beside a baseline measured in the same run.

1. Durable appends: `LineBuffer.append` + `flush` (one transaction per 10,000 records, WAL,
   synchronous=NORMAL and FULL) vs a bare `sqlite3` executemany loop into a table of the same
   shape with the same bytes. Target >= 200,000 records/s.
2. Backlog drain: a buffer of N records (default 1,000,000) shipped by the sync agent to the
   reference store (`lineside store`, SQLite, a separate process) over loopback; records/s and
   MB/s on the wire for MessagePack vs JSON, gzip vs none. Target >= 20,000 records/s.

    python bench/sync.py [--records N] [--drain-records N] [--combos msgpack-gzip,json-none,...]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from buffer import LineBuffer, Outbox
from config.models import BufferConfig, LineIdentity, StatusConfig
from config.sync_models import Backfill, Batch, Retry, SyncConfig, Upstream
from edge import logs
from sync.agent import SyncAgent
from sync.records import SampleRecord, format_ts
from sync.store import write_token_file

IDENT = LineIdentity(site="bench", area="a", id="line1", machine="m")
CHUNK = 10_000


def make_records(n: int, line: str = "line1") -> list[SampleRecord]:
    t0 = 1_763_791_200.0
    return [
        SampleRecord(id=f"{line}:sample:{i}", ts=format_ts(t0 + i / 100), tag="line1.temperature",
                     value=20.0 + (i % 1000) / 10, source_ts=format_ts(t0 + i / 100),
                     site="bench", area="a", line=line, machine="m")
        for i in range(n)
    ]


def bare_sqlite(path: Path, records: list[SampleRecord]) -> float:
    enc = msgspec.msgpack.Encoder()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # The buffer's shape since schema v3: samples are not in the unique index on id.
    conn.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, body BLOB NOT NULL)")
    conn.execute("CREATE UNIQUE INDEX r_id ON r (id) WHERE type <> 'sample'")
    t = time.perf_counter()
    for k in range(0, len(records), CHUNK):
        rows = [(k + i + 1, r.id, "sample", enc.encode(r)) for i, r in enumerate(records[k:k + CHUNK])]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t
    conn.close()
    return len(records) / dt


async def line_buffer(path: Path, records: list[SampleRecord], synchronous: str) -> float:
    buf = await LineBuffer.open(BufferConfig(path=str(path), synchronous=synchronous),  # type: ignore[arg-type]
                                IDENT, background=False)
    t = time.perf_counter()
    for k in range(0, len(records), CHUNK):
        await buf.append(records[k:k + CHUNK])
        await buf.flush()
    dt = time.perf_counter() - t
    await buf.close()
    return len(records) / dt


def start_store(tmp: Path, tokens: Path) -> tuple[subprocess.Popen[str], str]:
    db = tmp / f"store-{secrets.token_hex(3)}.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--log-level", "warning", "store", "--db", f"sqlite:///{db}",
         "--listen", "127.0.0.1:0", "--tokens", str(tokens), "--max-body-mb", "256"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("lineside store listening on "):
            return proc, line.split(" on ", 1)[1].strip()
    raise RuntimeError("the store did not start")


async def drain(tmp: Path, records: list[SampleRecord], encoding: str, compression: str) -> tuple[float, float]:
    token = secrets.token_urlsafe(24)
    tokens = tmp / "tokens.yaml"
    write_token_file(tokens, [("bench", token, ["*"], ["write"])])
    (tmp / "token").write_text(token)
    bufdir = tmp / f"drain-{encoding}-{compression}"
    buf = await LineBuffer.open(BufferConfig(path=str(bufdir / "line1.db")), IDENT, background=False)
    for k in range(0, len(records), 50_000):
        await buf.append(records[k:k + 50_000])
        await buf.flush()
    await buf.close()
    proc, url = start_store(tmp, tokens)
    cfg = SyncConfig(
        buffers=str(bufdir / "*.db"),
        upstream=Upstream(url=url, token_file=str(tmp / "token"), allow_insecure_http=True,
                          encoding=encoding, compression=compression),  # type: ignore[arg-type]
        batch=Batch(max_records=5000, max_bytes=8 * 1024 * 1024, linger_ms=0),
        retry=Retry(initial_s=0.1, max_s=1.0),
        backfill=Backfill(max_records_per_s=1e9, live_window_s=1e6),
        status=StatusConfig(listen="127.0.0.1:0"),
        host="bench",
    )
    agent = SyncAgent(cfg)
    agent.DISCOVER_EVERY_S = 0.1
    ob = await Outbox.open(str(bufdir / "line1.db"), "default")
    top = await ob.max_seq()
    task = asyncio.create_task(agent.run())
    t = time.perf_counter()
    try:
        while True:
            if (await ob.cursor()).seq >= top:
                break
            await asyncio.sleep(0.05)
        dt = time.perf_counter() - t
        sent = sum(st.sent_bytes for st in agent.lines.values())
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await ob.close()
        proc.terminate()
        proc.wait(10)
    return len(records) / dt, sent / dt / 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000, help="records for the append benchmark")
    ap.add_argument("--drain-records", type=int, default=1_000_000)
    ap.add_argument("--combos", default="msgpack-gzip,msgpack-none,json-gzip,json-none")
    args = ap.parse_args()
    logs.configure("warning", json=False)
    with tempfile.TemporaryDirectory(prefix="lineside-bench-") as d:
        tmp = Path(d)
        records = make_records(max(args.records, args.drain_records))
        app = records[:args.records]
        base = bare_sqlite(tmp / "bare.db", app)
        normal = await line_buffer(tmp / "normal.db", app, "NORMAL")
        full = await line_buffer(tmp / "full.db", app, "FULL")
        print(f"append {len(app):,} sample records, {CHUNK:,} per transaction (WAL):")
        print(f"  bare sqlite3 executemany      {base:12,.0f} records/s   (baseline)")
        print(f"  LineBuffer synchronous=NORMAL {normal:12,.0f} records/s   {normal / base:.2f}x baseline"
              f"   target >= 200,000: {'ok' if normal >= 200_000 else 'MISSED'}")
        print(f"  LineBuffer synchronous=FULL   {full:12,.0f} records/s   {full / base:.2f}x baseline")
        drain_recs = records[:args.drain_records]
        print(f"drain a backlog of {len(drain_recs):,} records to `lineside store` (SQLite) over loopback:")
        for combo in args.combos.split(","):
            enc, comp = combo.split("-")
            rate, mbs = await drain(tmp, drain_recs, enc, comp)
            print(f"  {enc:8s} {comp:5s} {rate:12,.0f} records/s  {mbs:7.2f} MB/s on the wire"
                  f"   target >= 20,000: {'ok' if rate >= 20_000 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
