"""Record factories for the buffer and sync-agent tests: natural ids, so a test can name them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec

from sync.records import (
    CountRecord,
    KpiRecord,
    Record,
    SampleRecord,
    StopRecord,
    format_ts,
)

LINE = {"site": "dossenheim", "area": "packaging", "line": "line3", "machine": "cartoner"}


def sample(i: int, line: str = "line3", value: float | None = None) -> SampleRecord:
    t = 1_763_791_200 + i / 100
    return SampleRecord(
        id=f"{line}:sample:{i}", ts=format_ts(t), tag="temp", value=float(i) if value is None else value,
        source_ts=format_ts(t), **{**LINE, "line": line},
    )


def count(i: int, line: str = "line3") -> CountRecord:
    t = 1_763_791_200 + i * 60
    return CountRecord(id=f"{line}:count:{i}", ts=format_ts(t), start=format_ts(t), end=format_ts(t + 60),
                       total=60, good=59, reject=1, **{**LINE, "line": line})


def stop(i: int, rev: int = 0, closed: bool = False, line: str = "line3") -> StopRecord:
    t = 1_763_791_200 + i * 10
    return StopRecord(
        id=f"{line}:stop:{i}", rev=rev, ts=format_ts(t), start=format_ts(t),
        end=format_ts(t + 5) if closed else None, duration_s=5.0 if closed else 0.0,
        category="micro_stop", **{**LINE, "line": line},
    )


def kpi(i: int, line: str = "line3") -> KpiRecord:
    t = 1_763_791_200 + i * 3600
    return KpiRecord(id=f"{line}:kpi:hour:{i}", ts=format_ts(t), interval="hour", start=format_ts(t),
                     end=format_ts(t + 3600), oee=0.8, final=True, **{**LINE, "line": line})


def mixed(start: int, n: int, line: str = "line3") -> list[Record]:
    """Mostly samples, with a count every 20, a stop every 50 and a KPI every 100 records."""
    out: list[Record] = []
    for i in range(start, start + n):
        if i % 100 == 99:
            out.append(kpi(i, line))
        elif i % 50 == 49:
            out.append(stop(i, line=line))
        elif i % 20 == 19:
            out.append(count(i, line))
        else:
            out.append(sample(i, line))
    return out


def now_ts() -> str:
    return format_ts(time.time())


def v2_buffer_file(path: Path, n: int = 300, line: str = "line3") -> list[tuple[int, str, str, int, int, bytes]]:
    """A buffer file as lineside wrote it before v3, with a sent part and an unsent part."""
    from buffer.schema import MIGRATIONS

    con = sqlite3.connect(path)
    for stmts in MIGRATIONS[:2]:
        for stmt in stmts:
            con.execute(stmt)
    rows = []
    for seq, rec in enumerate(mixed(0, n, line), 1):
        tag = type(rec).__struct_config__.tag  # type: ignore[attr-defined]
        rows.append((seq, rec.id, str(tag), rec.rev, 1_763_791_200_000 + seq, msgspec.msgpack.encode(rec)))
    con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("INSERT INTO meta VALUES ('next_seq', ?)", (str(n + 1),))
    con.execute("INSERT INTO cursors (upstream, seq, updated_ms) VALUES ('default', 120, 0)")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    return rows
