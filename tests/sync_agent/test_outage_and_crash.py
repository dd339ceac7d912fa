"""Outage, kill -9 of the writer and of the agent, and a store that dies between its commit
and its answer: afterwards every record committed at the edge is in the store exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from buffer import LineBuffer
from config.models import BufferConfig, LineIdentity
from config.sync_models import Batch, Retry
from tests.buffer.records import mixed
from tests.store.harness import StoreProcess
from tests.sync_agent.helpers import (
    free_port,
    running_agent,
    store_count,
    store_rows,
    sync_config,
    token_files,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
IDENT = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")


def start_store(db: Path, tokens: Path, port: int, fault_after: int | None = None) -> StoreProcess:
    env = {"LINESIDE_STORE_FAULT": f"exit_after_commit={fault_after}"} if fault_after else None
    return StoreProcess(f"sqlite:///{db}", tokens, "--listen", f"127.0.0.1:{port}", env=env)


async def test_outage_of_the_store_while_100k_records_are_written_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    port = free_port()
    store = start_store(db, store_tokens, port)
    buf = await LineBuffer.open(BufferConfig(path=str(tmp_path / "buffers" / "line3.db")), IDENT)
    cfg = sync_config(str(tmp_path / "buffers" / "*.db"), f"http://127.0.0.1:{port}", agent_token,
                      upstream={"timeout_s": 1.0}, retry=Retry(initial_s=0.05, max_s=0.5),
                      batch=Batch(max_records=5000, linger_ms=50))
    records = mixed(0, 101_000)
    try:
        async with running_agent(cfg) as agent:
            await buf.append(records[:1000])
            await wait_for(lambda: store_count(db, "line3") == 1000, 20, "records before the outage")
            os.kill(store.proc.pid, signal.SIGSTOP)  # hung: requests time out
            await buf.append(records[1000:20_000])
            await asyncio.sleep(2.0)
            os.kill(store.proc.pid, signal.SIGKILL)  # then gone: connections refused
            store.proc.wait(10)
            for k in range(20_000, 101_000, 1000):
                await buf.append(records[k:k + 1000])
                await asyncio.sleep(0.005)
            await buf.flush()
            assert store_count(db, "line3") < 20_000
            st = next(iter(agent.lines.values()))
            assert st.last_error is not None
            store = start_store(db, store_tokens, port)
            await wait_for(lambda: store_count(db, "line3") >= 101_000, 50, "every record after the outage")
            await wait_for(lambda: st.lag_records == 0, 10, "lag back to 0")
        got = store_rows(db, "line3")
        assert [i for i, _ in got] == [r.id for r in records]  # each once, in the order written
    finally:
        await buf.close()
        store.stop()


def agent_config(tmp: Path, port: int, token: Path) -> Path:
    path = tmp / "sync.yaml"
    path.write_text(yaml.safe_dump({
        "buffers": str(tmp / "buffers" / "*.db"),
        "upstream": {"url": f"http://127.0.0.1:{port}", "token_file": str(token),
                     "allow_insecure_http": True, "timeout_s": 2, "encoding": "msgpack"},
        "batch": {"max_records": 300, "linger_ms": 0},
        "retry": {"initial_s": 0.05, "max_s": 0.3},
        "status": {"listen": "127.0.0.1:0"},
    }))
    return path


def spawn(args: list[str], log: Path) -> subprocess.Popen[str]:
    with log.open("a") as fh:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=fh, text=True)


def test_kill_9_of_writer_and_agent_at_20_moments_each_and_a_store_dying_before_its_answer(
    tmp_path: Path,
) -> None:
    store_tokens, agent_token = token_files(tmp_path)
    db = tmp_path / "store.db"
    port = free_port()
    cfg = agent_config(tmp_path, port, agent_token)
    buffer_db = tmp_path / "buffers" / "line3.db"
    log = tmp_path / "procs.log"
    rng = random.Random(11)
    store = start_store(db, store_tokens, port)
    committed: set[str] = set()
    agent_cmd = ["-m", "edge.cli", "--log-format", "json", "sync", str(cfg)]
    faults = 0
    stores = [store]
    try:
        for k in range(20):
            if store.proc.poll() is not None:
                store = start_store(db, store_tokens, port)
                stores.append(store)
            if k % 4 == 2:  # this round the store dies after a commit, before its 200
                store.stop()
                store = start_store(db, store_tokens, port, fault_after=rng.randint(1, 3))
                stores.append(store)
                faults += 1
            t0 = time.monotonic()
            agent = spawn(agent_cmd, log)
            start = k * 1_000_000
            writer = spawn(["-m", "tests.buffer.writer_proc", str(buffer_db), str(start), "4000",
                            "--batch", str(rng.choice([20, 100, 400]))], log)
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.02, 0.4))
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
            last = -1
            for line in writer.stdout.read().splitlines():
                if line.startswith("committed "):
                    last = int(line.split()[1])
            if last >= start:
                committed |= {r.id for r in mixed(start, last - start + 1)}
            time.sleep(max(0.0, t0 + rng.uniform(0.8, 1.8) - time.monotonic()))
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait()
        if store.proc.poll() is not None or faults:
            store.stop()
            store = start_store(db, store_tokens, port)
            stores.append(store)
        with sqlite3.connect(buffer_db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            at_edge = {r[0] for r in c.execute("SELECT id FROM records")}
        assert committed and committed <= at_edge
        agent = spawn(agent_cmd, log)
        try:
            deadline = time.monotonic() + 60
            while store_count(db, "line3") < len(at_edge) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            agent.terminate()
            agent.wait(10)
        got = store_rows(db, "line3")
        assert len(got) == len({i for i, _ in got})
        assert {i for i, _ in got} == at_edge, log.read_text()[-3000:]
        assert all(rev == 0 for _, rev in got)
        # The faults really happened: stores died after a commit without answering, and the
        # agent sent those batches again (the store counted them as duplicates).
        assert sum(1 for s in stores if s.proc.returncode == 137) >= 1
        dups = [ln for s in stores for ln in s.stderr_lines if '"batch_stored"' in ln and '"duplicates": 0' not in ln]
        assert dups, "no batch was ever re-sent after a lost answer"
        with sqlite3.connect(buffer_db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.stop()
