"""Scripted record streams for the follow-up tests: a line config and record builders."""

from __future__ import annotations

from typing import Any

from config import LineConfig, load_line_config
from drivers.base import Sample
from sync.records import CountRecord, EventRecord, Record, StopRecord, format_ts, natural_id

T0 = 1_763_791_200.0  # 2025-11-22T06:00:00Z

LINE_YAML = """
line: {site: dossenheim, area: packaging, id: line3, machine: cartoner}
plcs:
  cartoner: {driver: sim}
signals:
  total_count:  {plc: cartoner, address: total, type: uint32}
  reject_count: {plc: cartoner, address: reject, type: uint32}
  process:
    seal_temp_c: {plc: cartoner, address: temp, type: float32}
production:
  ideal_cycle_time_s: 1.0
  reasons:
    17: {text: "Carton magazine empty", category: material}
    42: {text: "Sealing jaw jam", category: equipment_failure}
    90: {text: "Changeover", category: changeover, planned: true}
buffer: {path: /tmp/unused-followup.db}
follow_up:
"""

IDENT = {"site": "dossenheim", "area": "packaging", "line": "line3", "machine": "cartoner"}
MACHINE = "dossenheim/packaging/line3/cartoner"
REASONS: dict[int, tuple[str, str]] = {
    17: ("Carton magazine empty", "material"),
    42: ("Sealing jaw jam", "equipment_failure"),
    90: ("Changeover", "changeover"),
}


def config(follow_up: str) -> LineConfig:
    """A calendar-free line config with the given ``follow_up:`` body (YAML, indented 2)."""
    return load_line_config("line3.yaml", text=LINE_YAML + follow_up)


def stop(
    start: float,
    end: float | None,
    *,
    code: int | None = 42,
    category: str | None = None,
    rev: int = 0,
    ts: float | None = None,
    order: str = "PO-4711",
    product: str = "A-100",
    shift: str = "early",
) -> StopRecord:
    """A stop as the processor emits it; ``category`` defaults to the classification of §3."""
    if category is None:
        if end is None:
            category = "micro_stop"
        elif code == 90:
            category = "planned_stop"
        else:
            category = "micro_stop" if end - start < 120 else "unplanned_stop"
    text, rcat = REASONS.get(code, (None, None)) if code is not None else (None, None)
    made = ts if ts is not None else (end if end is not None else start)
    return StopRecord(
        id=natural_id("line3", "stop", round(start * 1000)),
        rev=rev,
        ts=format_ts(made),
        start=format_ts(start),
        end=None if end is None else format_ts(end),
        duration_s=0.0 if end is None else round(end - start, 3),
        category=category,  # type: ignore[arg-type]
        reason_code=code,
        reason_text=text,
        reason_category=rcat,
        reason_source="plc" if code is not None else "none",
        shift=shift,
        order=order,
        product=product,
        **IDENT,
    )


def count(start: float, total: int, reject: int, *, product: str = "A-100", length: float = 60.0) -> CountRecord:
    return CountRecord(
        id=natural_id("line3", "count", round(start * 1000)),
        ts=format_ts(start + length),
        start=format_ts(start),
        end=format_ts(start + length),
        total=total,
        good=total - reject,
        reject=reject,
        product=product,
        **IDENT,
    )


def event(at: float, kind: str, **detail: Any) -> EventRecord:
    return EventRecord(id=natural_id("line3", "event", kind, round(at * 1000)), ts=format_ts(at), kind=kind,
                       detail=detail, **IDENT)


def sample(tag: str, at: float, value: float | int) -> Sample:
    return Sample(tag=tag, value=value, quality="good", source_ts=at, recv_ts=at + 0.05)


def by_id(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.id, []).append(r)
    return out
