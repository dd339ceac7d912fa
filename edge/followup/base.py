"""What every follow-up rule shares: its inputs, the tracker it reports to, small JSON helpers."""

from __future__ import annotations

from typing import Any

from drivers.base import Sample
from edge.followup.context import LineContext, ProcessHistory
from edge.followup.tracker import Tracker
from sync.records import Record, StopRecord, format_ts, parse_ts

__all__ = ["Rule", "r3", "stop_json", "ts_or_none"]

# Lists in evidence are capped so a condition that persists for days keeps a bounded record;
# counts beside them stay exact.
MAX_LISTED = 100


def r3(x: float) -> float:
    return round(x, 3)


def ts_or_none(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else format_ts(epoch_s)


def stop_json(stop: StopRecord) -> dict[str, Any]:
    """A stop as maintenance reads it in evidence; duration null while it is still open."""
    return {
        "id": stop.id,
        "start": stop.start,
        "end": stop.end,
        "duration_s": r3(stop.duration_s) if stop.end is not None else None,
        "category": stop.category,
        "reason_code": stop.reason_code,
        "reason_text": stop.reason_text,
        "reason_category": stop.reason_category,
    }


def stop_span(stop: StopRecord) -> tuple[float, float | None]:
    return parse_ts(stop.start), (parse_ts(stop.end) if stop.end is not None else None)


class Rule:
    """A rule sees every record and sample in order and reports conditions to the tracker."""

    name = ""

    def __init__(self, ctx: LineContext, tracker: Tracker, history: ProcessHistory, clear_after_s: float) -> None:
        self.ctx = ctx
        self.tracker = tracker
        self.history = history
        self.clear_after_s = clear_after_s

    def on_record(self, rec: Record, now: float) -> None:
        """``now`` is the record's data time (its ``ts``)."""

    def on_samples(self, samples: list[Sample]) -> None:
        """Raw samples (process values and counters), in order."""

    def on_tick(self, now: float) -> None:
        """Time passing; must be cheap when nothing is pending."""
