"""The daemon writes and the agent reads and moves its cursor, in two processes, at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from buffer import Outbox
from tests.buffer.records import mixed

ROOT = Path(__file__).resolve().parents[2]


async def test_writer_and_outbox_in_two_processes_never_fail_with_database_locked(tmp_path: Path) -> None:
    db = tmp_path / "line3.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.buffer.writer_proc", str(db), "0", "30000", "--batch", "50",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    lines: list[bytes] = []

    async def drain_stdout() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line)

    reader = asyncio.create_task(drain_stdout())
    ob = await Outbox.open(str(db))
    shipped: list[str] = []
    acks = 0
    while True:
        finished = reader.done()  # read before the fetch, so the last fetch sees every commit
        rows = await ob.fetch((await ob.cursor()).seq, limit=500, max_bytes=1 << 20)
        if rows:
            shipped += [r.id for r in rows]
            await ob.ack(rows[-1].seq)
            await ob.quarantine([(rows[0], "test: a write from the reader's side too")])
            acks += 1
        elif finished:
            break
        await asyncio.sleep(0.001)
    await proc.wait()
    await reader
    await ob.close()
    stats = json.loads([ln for ln in lines if ln.startswith(b"stats ")][-1][6:])
    assert proc.returncode == 0
    assert stats["write_errors"] == 0 and stats["held_in_memory"] == 0
    assert acks > 10  # the two really ran side by side
    assert shipped == [r.id for r in mixed(0, 30000)]
