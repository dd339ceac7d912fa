"""Whatever the interleaving of revisions and flushes: the file keeps the highest rev of each
id, once, and the outbox order is the order in which each kept revision was appended."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from buffer import LineBuffer
from config.models import BufferConfig
from tests.buffer.records import stop

ops = st.lists(
    st.one_of(st.tuples(st.just("append"), st.integers(0, 6), st.integers(0, 3)), st.just(("flush", 0, 0))),
    min_size=1, max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops=ops, synchronous=st.sampled_from(["NORMAL", "FULL"]))
def test_the_highest_rev_of_each_id_is_kept_once_in_the_order_it_was_appended(
    ops: list[tuple[str, int, int]], synchronous: str
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "b.db")

        async def run() -> None:
            buf = await LineBuffer.open(BufferConfig(path=path, synchronous=synchronous),  # type: ignore[arg-type]
                                        background=False)
            for op, n, rev in ops:
                if op == "append":
                    await buf.append([stop(n, rev=rev)])
                else:
                    await buf.flush()
            await buf.close()

        asyncio.run(run())
        best: dict[str, int] = {}
        order: list[str] = []  # the append that set each kept revision, in append order
        for op, n, rev in ops:
            if op != "append":
                continue
            rid = f"line3:stop:{n}"
            if rid not in best or rev > best[rid]:
                best[rid] = rev
                if rid in order:
                    order.remove(rid)
                order.append(rid)
        with sqlite3.connect(path) as c:
            got = c.execute("SELECT id, rev FROM records ORDER BY seq").fetchall()
        assert [i for i, _ in got] == order
        assert dict(got) == best
