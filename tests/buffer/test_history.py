"""Reading history back after a restart: the follow-up rules' warm start."""

from __future__ import annotations

from pathlib import Path

from buffer import LineBuffer
from config.models import BufferConfig, LineIdentity
from tests.buffer.records import count, sample, stop

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


async def test_history_gives_the_latest_revision_of_the_asked_types_written_since_a_time(tmp_path: Path) -> None:
    now = [1000.0]
    cfg = BufferConfig(path=str(tmp_path / "line3.db"))
    buf = await LineBuffer.open(cfg, IDENT, background=False, clock=lambda: now[0])
    await buf.append([stop(1), sample(1), count(1)])
    await buf.flush()
    now[0] = 2000.0
    await buf.append([stop(2), stop(1, rev=1, closed=True), sample(2)])  # stop 1 closes later
    await buf.close()

    buf = await LineBuffer.open(cfg, IDENT, background=False, clock=lambda: now[0])  # a restart
    stops = await buf.history(("stop",), since_s=0)
    assert [(s.id, s.rev, s.end is not None) for s in stops] == [("line3:stop:2", 0, False), ("line3:stop:1", 1, True)]
    recent = await buf.history(("stop", "count"), since_s=1500)
    assert [r.id for r in recent] == ["line3:stop:2", "line3:stop:1"]  # count 1 was written before
    assert await buf.history(("maintenance_request",), since_s=0) == []
    await buf.close()
