"""The agent pulls reasons and context set at the store into the line buffer's inbox."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from buffer import LineBuffer
from buffer.inbox import Inbox
from config.models import BufferConfig, LineIdentity
from sync.records import StopRecord, format_ts
from sync.store import running_store, write_token_file
from tests.sync_agent.helpers import TOKEN, running_agent, store_count, sync_config, wait_for

IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")
PLANNER = secrets.token_urlsafe(24)


def _stop(n: int) -> StopRecord:
    t = 1_795_000_000 + 600 * n
    return StopRecord(id=f"line3:stop:{t * 1000}", site="dossenheim", area="packaging", line="line3",
                      machine="cartoner", ts=format_ts(t + 300), start=format_ts(t), end=format_ts(t + 300),
                      duration_s=300.0, category="unplanned_stop")


async def _pending(path: str, n: int, within_s: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
    """The inbox's pending items once there are `n` (what it holds at the deadline otherwise)."""
    deadline = time.monotonic() + within_s
    while True:
        async with await Inbox.open(path) as inbox:
            got = [(i.kind, i.body) for i in await inbox.pending()]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_reason_and_context_set_at_the_store_arrive_once_in_the_inbox_and_resume_after_a_restart(
    tmp_path: Path,
) -> None:
    store_tokens = tmp_path / "store-tokens.yaml"
    write_token_file(store_tokens, [("edge", TOKEN, ["line3"], ["write"]), ("planner", PLANNER, ["*"], ["read"])])
    agent_token = tmp_path / "upstream-token"
    agent_token.write_text(TOKEN)
    db = tmp_path / "store.db"
    path = str(tmp_path / "buffers" / "line3.db")
    buf = await LineBuffer.open(BufferConfig(path=path), IDENT)
    stops = [_stop(0), _stop(1)]
    await buf.append(stops)
    await buf.flush()
    with running_store(f"sqlite:///{db}", store_tokens) as url:
        cfg = sync_config(str(tmp_path / "buffers" / "*.db"), url, agent_token)
        h = {"Authorization": f"Bearer {PLANNER}"}
        async with httpx.AsyncClient(base_url=url, headers=h, timeout=10) as planner:
            async with running_agent(cfg) as agent:
                await wait_for(lambda: store_count(db, "line3") == 2, 20, "stops in the store")
                assert [st.line for st in agent.lines.values()] == ["line3"]
                r = await planner.patch(f"/v1/stops/{stops[1].id}",
                                        json={"line": "line3", "reason_code": 90, "reason_text": "Changeover"})
                assert r.status_code == 200, r.text
                r = await planner.put("/v1/lines/line3/context", json={"product": "B-200"})
                assert r.status_code == 200, r.text
                got = await _pending(path, 2)
                assert sorted(k for k, _ in got) == ["context", "reason"], got
                body = dict(got)
                assert (body["reason"]["stop_id"], body["reason"]["reason_code"]) == (stops[1].id, 90)
                assert body["context"]["product"] == "B-200"
            # the agent restarts: it resumes after what it pulled; a new change still comes
            async with running_agent(cfg):
                r = await planner.patch(f"/v1/stops/{stops[0].id}", json={"line": "line3", "reason_code": 42})
                assert r.status_code == 200, r.text
                got = await _pending(path, 3)
                assert [b.get("stop_id") for k, b in got if k == "reason"] == [stops[1].id, stops[0].id]
                assert len(got) == 3
    await buf.close()
