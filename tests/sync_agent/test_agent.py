"""The sync agent against the real reference store over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from buffer import LineBuffer, Outbox
from config.models import BufferConfig, LineIdentity
from config.sync_models import Backfill, Batch, Retry
from sync.store import running_store
from tests.buffer.records import mixed, sample, stop
from tests.sync_agent.helpers import (
    running_agent,
    store_count,
    store_rows,
    sync_config,
    token_files,
    wait_for,
)

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


async def open_buffer(tmp: Path, line: str = "line3", **kw: object) -> LineBuffer:
    ident = LineIdentity(site="dossenheim", area="packaging", id=line, machine="cartoner")
    return await LineBuffer.open(BufferConfig(path=str(tmp / "buffers" / f"{line}.db")), ident, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("encoding", "compression"), [("msgpack", "gzip"), ("json", "none")])
async def test_every_buffered_record_arrives_once_per_line_in_order(
    tmp_path: Path, encoding: str, compression: str
) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        a = await open_buffer(tmp_path, "line3")
        b = await open_buffer(tmp_path, "line4")
        ra, rb = mixed(0, 3000, "line3"), mixed(0, 2000, "line4")
        await a.append(ra)
        await b.append(rb)
        await a.flush()
        await b.flush()
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token,
                          upstream={"encoding": encoding, "compression": compression})
        async with running_agent(cfg):
            await wait_for(lambda: store_count(db, "line3") == 3000 and store_count(db, "line4") == 2000,
                           30, "both lines in the store")
        assert [i for i, _ in store_rows(db, "line3")] == [r.id for r in ra]
        assert [i for i, _ in store_rows(db, "line4")] == [r.id for r in rb]
        await a.close()
        await b.close()


async def test_a_closed_stop_revision_replaces_the_open_stop_in_the_store(tmp_path: Path) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        buf = await open_buffer(tmp_path)
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token)
        async with running_agent(cfg):
            await buf.append([stop(1)])
            await buf.flush()
            await wait_for(lambda: store_rows(db, "line3") == [("line3:stop:1", 0)], 20, "open stop")
            await buf.append([stop(1, rev=1, closed=True)])
            await buf.flush()
            await wait_for(lambda: store_rows(db, "line3") == [("line3:stop:1", 1)], 20, "closed stop")
        await buf.close()


async def test_records_the_store_refuses_are_quarantined_and_the_rest_still_arrive(tmp_path: Path) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        buf = await open_buffer(tmp_path)
        await buf.append([stop(7)])
        await buf.flush()
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token)
        async with running_agent(cfg) as agent:
            await wait_for(lambda: store_count(db, "line3") == 1, 20, "the stop")
            # Structs do not check constraints when built, only when decoded: a daemon bug can
            # buffer a record the store's validation refuses.
            bad = msgspec.structs.replace(sample(1), ts="yesterday at noon")
            good = [sample(i) for i in range(2, 60)]
            await buf.append([*good[:20], bad, *good[20:]])
            await buf.flush()
            await wait_for(lambda: store_count(db, "line3") == 1 + len(good), 20, "the good records")
            st = agent.lines[buf.path]
            await wait_for(lambda: st.quarantined == 1, 10, "quarantine count")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.status_port}") as c:
                q = (await c.get("/api/quarantine", params={"line": "line3"})).json()
                metrics = (await c.get("/metrics")).text
        assert q["count"] == 1 and q["records"][0]["id"] == "line3:sample:1"
        assert q["records"][0]["record"]["type"] == "sample" and q["records"][0]["error"]
        assert 'lineside_sync_quarantined_records{line="line3"} 1.0' in metrics
        ob = await Outbox.open(buf.path)
        assert (await ob.lag()).records == 0  # the queue went on past it
        await ob.close()
        await buf.close()


async def test_a_refused_token_keeps_records_buffered_reports_it_and_resumes_after_rotation(
    tmp_path: Path,
) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    good_token = agent_token.read_text()
    agent_token.write_text("not-the-token\n")
    db = tmp_path / "store.db"
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        buf = await open_buffer(tmp_path)
        await buf.append(mixed(0, 500))
        await buf.flush()
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token,
                          retry=Retry(initial_s=0.05, max_s=0.2))
        async with running_agent(cfg) as agent:
            await wait_for(lambda: bool(agent.lines) and next(iter(agent.lines.values())).auth_failing,
                           20, "auth failure reported")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.status_port}") as c:
                status = (await c.get("/api/status")).json()
                metrics = (await c.get("/metrics")).text
            line = status["lines"][0]
            assert line["auth_failing"] is True and "401" in line["last_error"]
            assert good_token.strip() not in str(status) and good_token.strip() not in metrics
            assert 'lineside_sync_auth_failing{line="line3"} 1.0' in metrics
            assert store_count(db, "line3") == 0
            ob = await Outbox.open(buf.path)
            assert (await ob.lag()).records == 500  # nothing dropped
            await ob.close()
            agent_token.write_text(good_token)  # the token is rotated on disk
            await wait_for(lambda: store_count(db, "line3") == 500, 20, "records after rotation")
            await wait_for(lambda: not agent.lines[buf.path].auth_failing, 5, "auth recovered")
        await buf.close()


async def test_status_reports_lag_in_records_and_seconds_and_the_last_success(tmp_path: Path) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        buf = await open_buffer(tmp_path)
        await buf.append(mixed(0, 100))
        await buf.flush()
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token)
        async with running_agent(cfg) as agent:
            await wait_for(lambda: store_count(db, "line3") == 100, 20, "records")
            st = agent.lines[buf.path]
            await wait_for(lambda: st.lag_records == 0 and st.last_success is not None, 5, "lag 0")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.status_port}") as c:
                line = (await c.get("/api/status")).json()["lines"][0]
                metrics = (await c.get("/metrics")).text
        assert line["line"] == "line3" and line["lag_records"] == 0 and line["sent_records"] == 100
        assert 'lineside_sync_lag_records{line="line3"} 0.0' in metrics
        assert 'lineside_sync_lag_seconds{line="line3"}' in metrics
        assert 'lineside_sync_last_success_timestamp_seconds{line="line3"}' in metrics
        await buf.close()


async def test_after_an_outage_live_records_go_ahead_of_the_rate_limited_backlog(tmp_path: Path) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    # A backlog written an hour ago (the buffer's clock says so) ...
    old = await open_buffer(tmp_path, clock=lambda: time.time() - 3600, background=False)
    backlog = [sample(i) for i in range(7000)]
    await old.append(backlog)
    await old.close()
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        buf = await open_buffer(tmp_path)
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token,
                          batch=Batch(max_records=500, linger_ms=0),
                          backfill=Backfill(max_records_per_s=2000, live_window_s=5))
        live = [sample(i) for i in range(100_000, 100_200)]
        async with running_agent(cfg) as agent:
            await wait_for(lambda: any(st.backfilling for st in agent.lines.values()), 10, "backfill mode")
            for k in range(0, 200, 50):  # ... and live records arrive while it drains (>= 3 s)
                await buf.append(live[k:k + 50])
                await buf.flush()
                await asyncio.sleep(0.05)
            await wait_for(lambda: store_count(db, "line3") == 7200, 30, "backlog and live")
            # The agent merges its cursors on the step after the last backlog batch was
            # acknowledged: wait for that before stopping it (stopped earlier, it would resend
            # that batch at its next start, which the store takes as duplicates).
            await wait_for(lambda: not any(st.backfilling for st in agent.lines.values()), 10,
                           "backfill to finish")
        order = [i for i, _ in store_rows(db, "line3")]
        pos = {rid: k for k, rid in enumerate(order)}
        live_ids = [r.id for r in live]
        backlog_ids = [r.id for r in backlog]
        # each stream in its own order ...
        assert [i for i in order if i in set(live_ids)] == live_ids
        assert [i for i in order if i in set(backlog_ids)] == backlog_ids
        # ... and every live record was stored before the backlog was done
        assert max(pos[i] for i in live_ids) < pos[backlog_ids[-1]]
        ob = await Outbox.open(buf.path)
        c = await ob.cursor()
        assert c.live_from is None and (await ob.lag()).records == 0
        await ob.close()
        await buf.close()
