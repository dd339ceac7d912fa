"""The buffer file's inbox: what the agent delivers the daemon applies once, across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer import BufferFileError, LineBuffer
from buffer.inbox import Inbox
from config.models import BufferConfig, LineIdentity

IDENT = LineIdentity(site="s", area="a", id="l1", machine="m")


async def _buffer(tmp_path: Path) -> str:
    path = str(tmp_path / "l1.db")
    buf = await LineBuffer.open(BufferConfig(path=path), IDENT, background=False)
    await buf.close()
    return path


async def test_delivered_items_are_applied_once_and_the_pull_position_survives_a_restart(tmp_path: Path) -> None:
    path = await _buffer(tmp_path)
    async with await Inbox.open(path) as agent:
        assert await agent.since_seq("reason") == 0
        items = [("reason:7", {"stop_id": "l1:stop:1", "reason_code": 90}), ("reason:8", {"stop_id": "l1:stop:2"})]
        assert await agent.deliver("reason", items, since_seq=8) == 2
        # the agent crashed before it knew the commit happened and pulls the same again
        assert await agent.deliver("reason", items[1:], since_seq=8) == 0
    async with await Inbox.open(path) as daemon:
        todo = await daemon.pending()
        assert [(i.key, i.kind, i.body.get("reason_code")) for i in todo] == [
            ("reason:7", "reason", 90), ("reason:8", "reason", None)]
        await daemon.mark_applied([(todo[0].seq, "applied"), (todo[1].seq, "unknown_stop")])
        assert await daemon.pending() == []
        assert [o for _, o in await daemon.applied()] == ["unknown_stop", "applied"]
    async with await Inbox.open(path) as agent:
        assert await agent.since_seq("reason") == 8
        assert await agent.since_seq("context") == 0


async def test_inbox_refuses_a_file_without_the_inbox_table_and_an_unknown_kind(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute("PRAGMA user_version = 1")
    con.close()
    with pytest.raises(BufferFileError, match="no inbox"):
        await Inbox.open(str(old))
    async with await Inbox.open(await _buffer(tmp_path)) as inbox:
        with pytest.raises(ValueError):
            await inbox.deliver("alarm", [], since_seq=1)  # type: ignore[arg-type]


async def test_a_version_1_buffer_file_is_migrated_with_its_records_kept(tmp_path: Path) -> None:
    from buffer.schema import MIGRATIONS

    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    for stmt in MIGRATIONS[0]:
        con.execute(stmt)
    con.execute("INSERT INTO records (seq, id, type, rev, written_ms, body) VALUES (1, 'x', 'event', 0, 1, x'80')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, background=False)
    await buf.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT id FROM records").fetchall() == [("x",)]
    assert con.execute("SELECT count(*) FROM inbox").fetchone() == (0,)
    con.close()
