"""Schema v3: raw samples are plain appends (no unique index on their ids), every other type is
still one row per id. A file written by v2 is migrated with every record kept, and a write that
was cancelled after its COMMIT landed is not written a second time."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec

from buffer import LineBuffer, Outbox
from buffer.schema import RECORD_ID_INDEXED, SCHEMA_VERSION
from config.models import BufferConfig, LineIdentity
from sync.records import AnyRecord
from tests.buffer.records import mixed, sample, stop, v2_buffer_file

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


async def test_a_v2_buffer_is_migrated_with_every_record_and_the_cursor_kept(tmp_path: Path) -> None:
    path = tmp_path / "line3.db"
    before = v2_buffer_file(path)
    buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, background=False)
    # a revision of a stop written by v2 still replaces it; new samples go on after the old seqs
    old_stop = next(r for r in mixed(0, 300) if r.id.startswith("line3:stop:"))
    assert isinstance(old_stop, type(stop(0)))
    revised = stop(int(old_stop.id.rsplit(":", 1)[1]), rev=1, closed=True)
    await buf.append([revised, sample(10_000)])
    await buf.close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = con.execute("SELECT seq, id, type, rev, written_ms, body FROM records ORDER BY seq").fetchall()
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = [r for r in before if r[1] != revised.id]
    assert after[: len(kept)] == kept
    assert [(r[0], r[1], r[3]) for r in after[len(kept):]] == [(301, revised.id, 1), (302, "line3:sample:10000", 0)]
    ob = await Outbox.open(str(path))
    assert (await ob.cursor()).seq == 120
    pending = await ob.fetch(120, limit=1000, max_bytes=1 << 30)
    assert len(pending) == 300 - 120 - (1 if int(revised.id.rsplit(":", 1)[1]) > 120 else 0) + 2
    assert msgspec.msgpack.decode(pending[-2].body, type=AnyRecord) == revised
    await ob.close()


async def test_a_lookup_by_id_uses_the_index_for_every_type_but_samples(tmp_path: Path) -> None:
    """A stop is found by its id without a scan of the (mostly sample) table."""
    buf = await LineBuffer.open(BufferConfig(path=str(tmp_path / "b.db")), IDENT, background=False)
    await buf.close()
    with sqlite3.connect(tmp_path / "b.db") as con:
        plan = con.execute(f"EXPLAIN QUERY PLAN SELECT body FROM records WHERE id = ? AND type = 'stop' "
                           f"AND {RECORD_ID_INDEXED}", ("x",)).fetchall()
    assert "USING INDEX records_id" in plan[0][3]


async def test_a_cancelled_flush_neither_loses_nor_doubles_a_record(tmp_path: Path) -> None:
    """flush() cancelled at every point of its write, the COMMIT included: after close() each
    record appended is in the file exactly once (samples have no unique index to absorb a
    second write of a batch that had in fact been committed)."""
    rng = random.Random(11)
    cancelled = 0
    for run in range(30):
        path = tmp_path / f"line3-{run}.db"
        buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, background=False)
        recs = mixed(run * 10_000, 4000)
        for i in range(0, len(recs), 500):
            await buf.append(recs[i:i + 500])
            task = asyncio.create_task(buf.flush())
            await asyncio.sleep(rng.uniform(0, 0.01))
            if not task.done():
                task.cancel()
                cancelled += 1
            try:
                await task
            except asyncio.CancelledError:
                pass
        await buf.close()
        with sqlite3.connect(path) as con:
            ids = [r[0] for r in con.execute("SELECT id FROM records WHERE type <> 'event' ORDER BY seq")]
            seqs = [r[0] for r in con.execute("SELECT seq FROM records ORDER BY seq")]
        assert sorted(ids) == sorted(r.id for r in recs), f"run {run}: a record lost or stored twice"
        assert len(set(seqs)) == len(seqs)
    assert cancelled > 30  # the cancellations did hit writes in progress


def test_with_no_room_for_the_copy_the_v2_file_is_used_as_it_is_and_migrated_at_a_later_start(tmp_path: Path) -> None:
    """A file-size limit that leaves no room for a second copy of the table: the writer starts
    anyway on the v2 layout (nothing lost, revisions still replace, samples still appended),
    says why; the next start with room migrates it."""
    path = tmp_path / "line3.db"
    before = v2_buffer_file(path, 3000)
    # room to write (the buffer's own cap keeps 2 batches and 256 KiB free under the limit),
    # not to copy the table
    limit = os.path.getsize(path) + 400 * 1024
    proc = subprocess.run(
        [sys.executable, "-m", "tests.buffer.writer_proc", str(path), "100000", "200", "--fsize", str(limit)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "buffer_migration_deferred" in proc.stdout and "file-size limit" in proc.stdout
    assert "committed 100199" in proc.stdout
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
        rows = con.execute("SELECT seq, id FROM records ORDER BY seq").fetchall()
    assert rows[:3000] == [(r[0], r[1]) for r in before]
    assert [i for _, i in rows[3000:]] == [r.id for r in mixed(100_000, 200)]

    async def reopen() -> None:
        buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, background=False)
        assert buf.migration is not None and (buf.migration.had, buf.migration.now) == (2, SCHEMA_VERSION)
        await buf.append([sample(300_000)])
        await buf.close()

    asyncio.run(reopen())
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = con.execute("SELECT seq, id FROM records ORDER BY seq").fetchall()
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert after == [*rows, (rows[-1][0] + 1, "line3:sample:300000")]


async def test_nothing_the_buffer_runs_at_start_or_every_few_seconds_scans_the_whole_table(tmp_path: Path) -> None:
    """A full buffer holds millions of samples: reading back the stops and KPIs at a restart,
    the stats for the status page, the retention pruning and the eviction of counts must find
    their rows through an index or a seq range, or each costs seconds of the daemon's core."""
    path = tmp_path / "line3.db"
    buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, background=False)
    await buf.append(mixed(0, 3000))
    await buf.flush()
    ob = await Outbox.open(str(path))
    await ob.ack(2000)
    await ob.close()
    statements: list[str] = []
    await buf._conn.set_trace_callback(statements.append)
    restored = await buf.history(("stop", "kpi"), 0)
    await buf._refresh_stats()
    await buf._prune()
    await buf._evict("count", 5)
    await buf._conn.set_trace_callback(None)
    await buf.close()
    assert len(restored) == 60 and {type(r).__name__ for r in restored} == {"StopRecord", "KpiRecord"}
    queries = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "DELETE")) and " records" in s]
    assert len(queries) >= 6, statements
    with sqlite3.connect(path) as con:
        for sql in queries:
            plan = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql)]
            assert "SCAN records" not in plan, (sql, plan)
