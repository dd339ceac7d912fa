"""The line buffer against real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import msgspec
import pytest

from buffer import SCHEMA_VERSION, BufferFileError, LineBuffer, Outbox
from config.models import BufferConfig, LineIdentity
from sync.records import AnyRecord, EventRecord
from tests.buffer.records import count, kpi, mixed, sample, stop

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


def cfg(tmp_path: Path, **kw: object) -> BufferConfig:
    return BufferConfig(path=str(tmp_path / "lines" / "line3.db"), **kw)  # type: ignore[arg-type]


def rows(path: str) -> list[tuple[int, str, int, bytes]]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT seq, id, rev, body FROM records ORDER BY seq").fetchall()


async def test_flushed_records_are_in_the_file_in_append_order_and_decode_back(tmp_path: Path) -> None:
    buf = await LineBuffer.open(cfg(tmp_path), IDENT, background=False)
    recs = mixed(0, 500)
    await buf.append(recs[:200])
    await buf.append(recs[200:])
    await buf.flush()
    got = rows(buf.path)
    assert [r[1] for r in got] == [r.id for r in recs]
    assert [msgspec.msgpack.decode(r[3], type=AnyRecord) for r in got] == recs
    await buf.close()


async def test_background_task_commits_without_an_explicit_flush(tmp_path: Path) -> None:
    buf = await LineBuffer.open(cfg(tmp_path), IDENT, flush_interval_s=0.05)
    await buf.append([sample(i) for i in range(10)])
    for _ in range(100):
        if len(rows(buf.path)) == 10:
            break
        await asyncio.sleep(0.05)
    assert len(rows(buf.path)) == 10
    await buf.close()


async def test_a_higher_rev_replaces_the_record_and_is_queued_again_lower_or_equal_is_ignored(
    tmp_path: Path,
) -> None:
    buf = await LineBuffer.open(cfg(tmp_path), IDENT, background=False)
    await buf.append([stop(1), sample(1), sample(2)])
    await buf.flush()
    ob = await Outbox.open(buf.path)
    await ob.ack(3)  # everything shipped
    await buf.append([stop(1, rev=1, closed=True)])
    await buf.append([stop(1, rev=0)])  # a late, older revision
    await buf.append([stop(1, rev=1, closed=False)])  # same rev again: ignored
    await buf.flush()
    pending = await ob.fetch((await ob.cursor()).seq, limit=100, max_bytes=1 << 20)
    assert [(r.id, r.rev) for r in pending] == [("line3:stop:1", 1)]
    assert msgspec.msgpack.decode(pending[0].body, type=AnyRecord).end is not None
    assert len(rows(buf.path)) == 3  # replaced, not duplicated
    await ob.close()
    await buf.close()


async def test_reopening_continues_the_sequence_and_keeps_the_line_identity(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    buf = await LineBuffer.open(c, IDENT, background=False)
    await buf.append([sample(i) for i in range(5)])
    await buf.close()
    buf = await LineBuffer.open(c, background=False)
    await buf.append([sample(i) for i in range(5, 8)])
    await buf.close()
    assert [r[0] for r in rows(c.path)] == list(range(1, 9))
    ob = await Outbox.open(c.path)
    assert await ob.identity() == {"site": "dossenheim", "area": "packaging", "line": "line3",
                                   "machine": "cartoner"}
    assert await ob.ready()
    await ob.close()
    with sqlite3.connect(c.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_file_from_a_newer_lineside_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    Path(c.path).parent.mkdir(parents=True)
    with sqlite3.connect(c.path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(BufferFileError, match="newer than this lineside"):
        await LineBuffer.open(c, IDENT)


async def test_size_cap_evicts_oldest_samples_then_counts_and_keeps_stops_and_kpis(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_size_mb=0.5)
    buf = await LineBuffer.open(c, IDENT, background=False)
    protected = [stop(i) for i in range(100)] + [kpi(i) for i in range(100)]
    await buf.append(protected)
    await buf.append([count(i) for i in range(300)])
    await buf.flush()
    for start in range(0, 12_000, 1000):
        await buf.append([sample(i) for i in range(start, start + 1000)])
        await buf.flush()
    st = buf.stats()
    assert st["full"] is True
    assert st["evicted"]["sample"] > 0
    await buf.close()
    with sqlite3.connect(c.path) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM records")}
        samples = sorted(int(r[0].rsplit(":", 1)[1]) for r in conn.execute(
            "SELECT id FROM records WHERE type = 'sample'"))
        events = [msgspec.msgpack.decode(b[0], type=AnyRecord)
                  for b in conn.execute("SELECT body FROM records WHERE type = 'event'")]
        evicted = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    assert {r.id for r in protected} <= ids
    # the newest samples survive, the oldest went first
    assert samples and samples[-1] == 11_999 and samples[0] > 0
    assert samples == list(range(samples[0], 12_000))
    assert any(isinstance(e, EventRecord) and e.kind == "buffer_full" for e in events)
    assert evicted["evicted.sample"] == st["evicted"]["sample"]
    assert evicted.get("evicted.count", 0) == 0  # samples were enough


async def test_counts_are_evicted_once_no_samples_remain_but_stops_never(tmp_path: Path) -> None:
    c = cfg(tmp_path, max_size_mb=0.25)
    buf = await LineBuffer.open(c, IDENT, background=False)
    await buf.append([stop(i) for i in range(200)])
    await buf.flush()
    for start in range(0, 3000, 500):
        await buf.append([count(i) for i in range(start, start + 500)])
        await buf.flush()
    st = buf.stats()
    assert st["evicted"].get("count", 0) > 0
    await buf.close()
    with sqlite3.connect(c.path) as conn:
        n_stops = conn.execute("SELECT count(*) FROM records WHERE type = 'stop'").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert n_stops == 200


async def test_sent_records_older_than_retention_are_pruned_and_unsent_ones_are_kept(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    c = cfg(tmp_path, retention_days=1.0)
    buf = await LineBuffer.open(c, IDENT, background=False, clock=lambda: now[0])
    await buf.append([sample(i) for i in range(100)])
    await buf.flush()
    ob = await Outbox.open(c.path)
    await ob.ack(60)
    now[0] += 2 * 86400
    await buf._prune()
    await buf.close()
    left = [r[0] for r in rows(c.path)]
    assert left == list(range(61, 101))
    await ob.close()


async def test_memory_is_bounded_while_nothing_can_be_written(tmp_path: Path) -> None:
    c = cfg(tmp_path, memory_bound_records=1000)
    buf = await LineBuffer.open(c, IDENT, background=False)
    # Another process holds the write lock and a zero busy timeout makes every write fail.
    await buf._conn.execute("PRAGMA busy_timeout = 0")
    blocker = sqlite3.connect(c.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    buf._blocked = True
    await buf.append([stop(i) for i in range(200)] + [sample(i) for i in range(2000)])
    st = buf.stats()
    assert st["held_in_memory"] == 1000
    assert st["dropped"] == {"sample": 1200}
    blocker.execute("ROLLBACK")
    blocker.close()
    await buf._conn.execute("PRAGMA busy_timeout = 30000")
    await buf.close()
    with sqlite3.connect(c.path) as conn:
        assert conn.execute("SELECT count(*) FROM records WHERE type = 'stop'").fetchone()[0] == 200


async def test_records_queued_faster_than_they_are_committed_shed_only_samples_and_say_so(tmp_path: Path) -> None:
    """More historized values than the PC can write: memory stays at the bound, the oldest raw
    samples go, every stop and count is kept, and the episode is in the buffer as events."""
    c = cfg(tmp_path, memory_bound_records=20_000)
    buf = await LineBuffer.open(c, IDENT, background=False)  # commits only on flush: the slowest disk
    await buf.append([stop(i) for i in range(100)] + [sample(i) for i in range(25_000)])
    await buf.append([count(i) for i in range(10)] + [sample(i) for i in range(25_000, 30_000)])
    st = buf.stats()
    assert st["held_in_memory"] <= 20_001 and st["overloaded"] and not st["write_blocked"]
    assert st["dropped"] == {"sample": 10_111}
    await buf.flush()  # the disk caught up: the episode ends
    assert not buf.stats()["overloaded"]
    await buf.close()
    with sqlite3.connect(c.path) as conn:
        by_type = dict(conn.execute("SELECT type, count(*) FROM records GROUP BY type").fetchall())
        samples = [int(r[0].rsplit(":", 1)[1]) for r in conn.execute(
            "SELECT id FROM records WHERE type = 'sample' ORDER BY seq")]
        events = [msgspec.msgpack.decode(r[0], type=AnyRecord) for r in conn.execute(
            "SELECT body FROM records WHERE type = 'event' ORDER BY seq")]
    assert by_type["stop"] == 100 and by_type["count"] == 10
    assert samples == list(range(10_111, 30_000))  # the newest samples are kept, in order
    assert [(e.kind, e.detail) for e in events if isinstance(e, EventRecord)] == [
        ("buffer_overloaded", {"memory_bound_records": 20_000}),
        ("buffer_overload_ended", {"samples_dropped": 10_111}),
    ]


async def test_a_memory_bound_of_zero_still_historizes_samples_while_the_disk_keeps_up(tmp_path: Path) -> None:
    buf = await LineBuffer.open(cfg(tmp_path, memory_bound_records=0), IDENT, background=False)
    await buf.append([sample(i) for i in range(5000)])
    await buf.close()
    assert len(rows(buf.path)) == 5000
