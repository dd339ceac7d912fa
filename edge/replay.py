"""`lineside replay LINE.yaml SAMPLES.csv [--out FILE]`: recorded samples through the live path.

CSV header ``timestamp,signal,value``; ``timestamp`` is RFC 3339 with an offset or epoch
seconds; ``signal`` a role of the line config (``total_count``, ``running``,
``process.seal_temp_c``, ...) or ``connected.<plc>`` with value 1/0 for a PLC (dis)connect.
Rows are fed to :class:`edge.processor.LineProcessor` in time order with a tick per second of
sample time, exactly as the daemon does, and the follow-up rules see what the daemon's see.
Output: JSON lines of the last revision of every stop, maintenance request and quality alert,
the state records, the final KPI records and the events. Bad rows are reported on
stderr with their line number and skipped; the run completes (exit 0, or 1 if any row was
bad so scripts notice).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from config import ConfigError, LineConfig, load_line_config
from drivers.base import Sample
from edge.followup import FollowUpEngine
from edge.processor import LineProcessor
from sync.records import (
    EventRecord,
    KpiRecord,
    MaintenanceRequestRecord,
    QualityAlertRecord,
    Record,
    StateRecord,
    StopRecord,
    encode_json,
    parse_ts,
)

__all__ = ["BadRow", "cli_replay", "read_samples", "replay"]


@dataclass(frozen=True)
class BadRow:
    line: int
    error: str


def _value(text: str) -> Any:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        pass
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    return t


def read_samples(f: IO[str], roles: set[str], bad: list[BadRow]) -> Iterator[tuple[int, float, str, Any]]:
    """(line number, epoch seconds, signal, value) per good row; bad rows go to ``bad``."""
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["timestamp", "signal", "value"]:
        bad.append(BadRow(1, "header must be: timestamp,signal,value"))
        return
    for row in reader:
        ln = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != 3:
            bad.append(BadRow(ln, f"expected 3 fields, got {len(row)}"))
            continue
        ts_text, signal, value = (x.strip() for x in row)
        try:
            ts = float(ts_text)
        except ValueError:
            try:
                ts = parse_ts(ts_text)
            except ValueError as exc:
                bad.append(BadRow(ln, f"bad timestamp {ts_text!r}: {exc}"))
                continue
        if not math.isfinite(ts):
            bad.append(BadRow(ln, f"bad timestamp {ts_text!r}"))
            continue
        if signal not in roles and not signal.startswith("connected."):
            bad.append(BadRow(ln, f"unknown signal {signal!r} (not a role of this line config)"))
            continue
        yield ln, ts, signal, _value(value)


def replay(cfg: LineConfig, f: IO[str], bad: list[BadRow]) -> list[Record]:
    """Every record the live path makes from these samples (all revisions): the processor's,
    and the follow-up rules' maintenance requests and quality alerts, as in the daemon."""
    rows = sorted(read_samples(f, set(cfg.signals.roles()), bad), key=lambda r: (r[1], r[0]))
    proc = LineProcessor(cfg)
    follow = FollowUpEngine(cfg)
    out: list[Record] = []
    next_tick = -math.inf
    batch: list[Sample] = []
    last = None

    def feed() -> None:
        nonlocal batch
        proc.feed(batch)
        follow.observe_samples(batch)
        batch = []

    def emit(records: list[Record], now: float) -> None:
        out.extend(records)
        out.extend(follow.observe(records))
        out.extend(follow.tick(now))

    for _, ts, signal, value in rows:
        if ts >= next_tick and last is not None:
            feed()
            emit(proc.tick(last), last)
        if ts >= next_tick:
            next_tick = math.floor(ts) + 1.0
        if signal.startswith("connected."):
            feed()
            proc.set_connected(ts, bool(value) and value not in ("0", "false"), signal.split(".", 1)[1])
        else:
            batch.append(Sample(signal, value, "good", None, ts))
        last = ts
    feed()
    if last is not None:
        emit(proc.tick(last), last)
        emit(proc.finish(last), last)
        out.extend(follow.flush(last))
    return out


def final_records(records: list[Record]) -> list[Record]:
    """Stops, maintenance requests and quality alerts at their last revision, states, final
    KPIs, events; in the order they were made."""
    revised = StopRecord | MaintenanceRequestRecord | QualityAlertRecord
    last_rev: dict[str, int] = {}
    for i, r in enumerate(records):
        if isinstance(r, revised):
            last_rev[r.id] = i
    keep: list[Record] = []
    for i, r in enumerate(records):
        if (isinstance(r, revised) and last_rev[r.id] == i) or isinstance(r, StateRecord | EventRecord):
            keep.append(r)
        elif isinstance(r, KpiRecord) and r.final:
            keep.append(r)
    return keep


def cli_replay(args: argparse.Namespace) -> int:
    try:
        cfg = load_line_config(args.line_config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    bad: list[BadRow] = []
    try:
        with open(args.samples, newline="", encoding="utf-8") as f:
            records = final_records(replay(cfg, f, bad))
    except OSError as exc:
        print(f"lineside replay: cannot read {args.samples}: {exc.strerror}", file=sys.stderr)
        return 2
    for b in bad:
        print(f"{args.samples}:{b.line}: {b.error}", file=sys.stderr)
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        for r in records:
            out.write(encode_json(r) + b"\n")
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
    print(f"lineside replay: {len(records)} records, {len(bad)} bad rows", file=sys.stderr)
    return 1 if bad else 0
