"""Nothing appended before close() is lost, whatever the flush task was doing at that moment."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from buffer import LineBuffer
from config.models import BufferConfig, LineIdentity
from tests.buffer.records import mixed

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


async def test_close_keeps_every_record_appended_before_it_even_during_a_background_flush(tmp_path: Path) -> None:
    rng = random.Random(7)
    for run in range(40):
        path = tmp_path / f"line3-{run}.db"
        # a tiny flush interval keeps the background task inside a write most of the time
        buf = await LineBuffer.open(BufferConfig(path=str(path)), IDENT, flush_interval_s=0.001)
        recs = mixed(0, 3000)
        sent = 0
        for i in range(0, len(recs), 300):
            await buf.append(recs[i : i + 300])
            sent += len(recs[i : i + 300])
            await asyncio.sleep(rng.uniform(0, 0.004))
            if rng.random() < 0.3:
                break
        await buf.close()
        with sqlite3.connect(path) as con:
            stored = {r[0] for r in con.execute("SELECT id FROM records")}
        assert {r.id for r in recs[:sent]} <= stored, f"run {run}: lost records at close"
