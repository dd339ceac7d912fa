"""kill -9 of the writer and a full disk, with real processes and real files."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from sync.records import AnyRecord, EventRecord

ROOT = Path(__file__).resolve().parents[2]


def writer(db: Path, start: int, n: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.buffer.writer_proc", str(db), str(start), str(n), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def ids_in(db: Path) -> set[str]:
    with sqlite3.connect(db) as c:
        return {r[0] for r in c.execute("SELECT id FROM records")}


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as c:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])


def test_kill_9_of_the_writer_at_20_moments_loses_no_committed_record(tmp_path: Path) -> None:
    from tests.buffer.records import mixed

    db = tmp_path / "line3.db"
    rng = random.Random(5)
    committed: set[str] = set()
    for k in range(20):
        start = k * 1_000_000
        proc = writer(db, start, 200_000, "--batch", str(rng.choice([50, 200, 1000])))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        last = -1
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("committed "):
                last = int(line.split()[1])
            elif not line:
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().splitlines() if proc.stdout else []:
            if line.startswith("committed "):
                last = int(line.split()[1])
        if last >= start:
            committed |= {r.id for r in mixed(start, last - start + 1)}
        assert integrity(db) == "ok"
    have = ids_in(db)
    assert committed, "the writer never committed anything before being killed"
    assert committed <= have
    with sqlite3.connect(db) as c:
        seqs = [r[0] for r in c.execute("SELECT seq FROM records ORDER BY seq")]
    assert len(seqs) == len(set(seqs)) == len(have)


def run_until_disk_full(db: Path, *extra: str) -> dict[str, object]:
    proc = writer(db, 0, 40_000, "--batch", "500", *extra)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    stats_line = [ln for ln in out.splitlines() if ln.startswith("stats ")]
    assert stats_line, out[-2000:]
    stats: dict[str, object] = json.loads(stats_line[-1][6:])
    return stats


def check_full_disk_outcome(db: Path, stats: dict[str, object]) -> None:
    from tests.buffer.records import mixed

    assert integrity(db) == "ok"
    have = ids_in(db)
    recs = mixed(0, 40_000)
    protected = {r.id for r in recs if type(r).__name__ in ("StopRecord", "KpiRecord")}
    assert protected <= have, f"{len(protected - have)} stops/KPIs lost"
    evicted = stats["evicted"]
    assert isinstance(evicted, dict) and evicted.get("sample", 0) > 0
    assert stats["full"] is True
    with sqlite3.connect(db) as c:
        events = [msgspec.msgpack.decode(b[0], type=AnyRecord)
                  for b in c.execute("SELECT body FROM records WHERE type = 'event'")]
        counters = dict(c.execute("SELECT name, value FROM counters").fetchall())
    assert any(isinstance(e, EventRecord) and e.kind == "buffer_full" for e in events)
    assert counters["full"] == 1 and counters["evicted.sample"] > 0


def test_file_size_limit_evicts_samples_keeps_stops_and_kpis_and_never_corrupts(tmp_path: Path) -> None:
    db = tmp_path / "line3.db"
    stats = run_until_disk_full(db, "--fsize", str(1_500_000))
    check_full_disk_outcome(db, stats)


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def test_a_full_2mb_filesystem_evicts_samples_keeps_stops_and_kpis_and_never_corrupts(tmp_path: Path) -> None:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("mounting a tmpfs needs root; the file-size-limit test covers the same path")
    try:
        db = mnt / "line3.db"
        stats = run_until_disk_full(db)
        check_full_disk_outcome(db, stats)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
