"""Quality rules (``follow_up.quality``): counts, stops and process values → quality_alert.

- ``reject_rate``: over the count records whose start lies in the last ``window_s`` before the
  newest one's end, rejects / parts above ``threshold`` with at least ``min_parts`` parts.
  ``reject_rate`` in the alert is the highest window rate seen while it was open; the
  evidence holds the first, the peak and the latest window over the threshold.
- ``startup_rejects``: more than ``max_rejects`` rejects in the ``after_stop_s`` after a stop
  ended. Micro-stops are left out (they are the reject_rate rule's business). Count records
  overlapping [end, end + after_stop_s] are summed: the per-minute bucket holding the end of
  a stop longer than a minute has no production before the end, so only the last bucket may
  reach up to a minute past the window.
- ``process_limits``: a ``process.SIGNAL`` value outside [min, max] while parts were made. Parts
  come from the counter samples (``total_count``, else ``good_count``) when the engine gets
  them, else from count records (minute resolution). The alert lists the values seen.

Every alert carries the window, product, order, the current process values (``process``) and
the min/max/mean of every process value over the window (``evidence.process_seen``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from config.models import ProcessLimitsRule, RejectRateRule, StartupRejectsRule
from drivers.base import Sample
from edge.followup.base import MAX_LISTED, Rule, r3
from edge.followup.context import LineContext, ProcessHistory, numeric, sample_time
from edge.followup.tracker import Tracker
from sync.records import CountRecord, QualityAlertRecord, Record, StopRecord, format_ts, parse_ts

__all__ = ["ProcessLimits", "RejectRate", "StartupRejects", "parts_of"]


def parts_of(rec: CountRecord) -> int:
    """Parts in a count record; total is good + reject, but a line without a total counter may leave it 0."""
    return max(rec.total, rec.good + rec.reject)


@dataclass
class _Count:
    id: str
    start: float
    end: float
    parts: int
    rejects: int
    product: str | None


def _count(rec: CountRecord) -> _Count:
    return _Count(rec.id, parse_ts(rec.start), parse_ts(rec.end), parts_of(rec), rec.reject, rec.product)


class _QualityRule(Rule):
    def alert(self, start: float, end: float, **fields: Any) -> QualityAlertRecord:
        evidence = dict(fields.pop("evidence", {}))
        evidence["process_seen"] = self.history.seen(start, end)
        fields.setdefault("product", self.ctx.product)
        fields.setdefault("order", self.ctx.order)
        return QualityAlertRecord(
            id="pending",
            ts="1970-01-01T00:00:00.000Z",
            rule=self.name,
            window_start=format_ts(start),
            window_end=format_ts(end),
            process=self.history.current(),
            evidence=evidence,
            site=self.ctx.site, area=self.ctx.area, line=self.ctx.line, machine=self.ctx.machine,
            **fields,
        )


# ---------------------------------------------------------------- reject rate


class RejectRate(_QualityRule):
    name = "reject_rate"

    def __init__(self, cfg: RejectRateRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.counts: dict[str, _Count] = {}

    def on_record(self, rec: Record, now: float) -> None:
        if not isinstance(rec, CountRecord):
            return
        c = _count(rec)
        self.counts[c.id] = c  # a revised count record replaces the earlier one
        lo = c.end - self.cfg.window_s
        for cid in [cid for cid, x in self.counts.items() if x.start < lo]:
            del self.counts[cid]
        window = [x for x in self.counts.values() if x.end <= c.end]
        parts = sum(x.parts for x in window)
        rejects = sum(x.rejects for x in window)
        if parts < self.cfg.min_parts or rejects / parts <= self.cfg.threshold:
            return
        by_product: dict[str, dict[str, int]] = {}
        for x in window:
            p = by_product.setdefault(x.product or "unknown", {"parts": 0, "rejects": 0})
            p["parts"] += x.parts
            p["rejects"] += x.rejects
        product = max(by_product, key=lambda k: by_product[k]["parts"])
        w = {"start": format_ts(lo), "end": format_ts(c.end), "parts": parts, "rejects": rejects,
             "rate": round(rejects / parts, 6), "by_product": by_product}
        subject = self.ctx.equipment()

        def build(prev: QualityAlertRecord | None) -> tuple[QualityAlertRecord, float]:
            first = prev.evidence["first_window"] if prev is not None else w
            peak = prev.evidence["peak_window"] if prev is not None else w
            if w["rate"] > peak["rate"]:  # type: ignore[operator]
                peak = w
            windows_over = (int(prev.evidence["windows_over"]) if prev is not None else 0) + 1
            evidence = {"window_s": self.cfg.window_s, "min_parts": self.cfg.min_parts,
                        "first_window": first, "peak_window": peak, "latest_window": w,
                        "windows_over": windows_over}
            start = parse_ts(first["start"])  # type: ignore[arg-type]
            rec_out = self.alert(start, c.end, reject_rate=peak["rate"], threshold=self.cfg.threshold,
                                 product=None if product == "unknown" else product, evidence=evidence)
            return rec_out, c.end

        self.tracker.report(self.name, subject, build, trigger_ts=c.end, now=max(now, c.end),
                            clear_after_s=self.clear_after_s, urgent=False)


# ---------------------------------------------------------------- startup rejects


@dataclass
class _StartupWindow:
    stop: StopRecord
    start: float
    end: float
    counts: dict[str, _Count] = field(default_factory=dict)

    def parts(self) -> int:
        return sum(c.parts for c in self.counts.values())

    def rejects(self) -> int:
        return sum(c.rejects for c in self.counts.values())

    def covered_until(self) -> float:
        return min(self.end, max((c.end for c in self.counts.values()), default=self.start))


class StartupRejects(_QualityRule):
    name = "startup_rejects"

    def __init__(
        self, cfg: StartupRejectsRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory
    ) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.windows: dict[str, _StartupWindow] = {}  # by stop id
        self.recent: deque[_Count] = deque()  # count records that may still fall in a window

    def on_record(self, rec: Record, now: float) -> None:
        if isinstance(rec, StopRecord):
            if rec.end is None or rec.category == "micro_stop":
                self.windows.pop(rec.id, None)
                return
            end = parse_ts(rec.end)
            old = self.windows.get(rec.id)
            if old is not None and old.start == end:
                old.stop = rec  # a later revision (reason set): same window
                return
            win = _StartupWindow(rec, end, end + self.cfg.after_stop_s)
            self.windows[rec.id] = win
            # Count records can arrive before the stop's closing revision.
            for c in self.recent:
                if c.start < win.end and c.end > win.start:
                    win.counts[c.id] = c
            self._check(win, max(now, end))
        elif isinstance(rec, CountRecord):
            c = _count(rec)
            self.recent.append(c)
            while self.recent and self.recent[0].end < c.end - self.cfg.after_stop_s - 600:
                self.recent.popleft()
            for sid, win in list(self.windows.items()):
                if c.start < win.end and c.end > win.start:
                    win.counts[c.id] = c
                    self._check(win, max(now, c.end))
                elif c.start >= win.end + 600:
                    del self.windows[sid]  # long past: no count record can still belong to it

    def _check(self, win: _StartupWindow, now: float) -> None:
        rejects = win.rejects()
        if rejects <= self.cfg.max_rejects:
            return
        stop = win.stop
        entry = {"stop_id": stop.id, "category": stop.category, "reason_text": stop.reason_text,
                 "stop_start": stop.start, "stop_end": stop.end, "stop_duration_s": r3(stop.duration_s),
                 "window_end": format_ts(win.end), "parts": win.parts(), "rejects": rejects}
        subject = self.ctx.equipment()

        def build(prev: QualityAlertRecord | None) -> tuple[QualityAlertRecord, float]:
            stops = {s["stop_id"]: s for s in (prev.evidence["stops"] if prev is not None else [])}
            stops[stop.id] = entry
            listed = sorted(stops.values(), key=lambda s: s["stop_end"])[-MAX_LISTED:]
            parts = sum(s["parts"] for s in listed)
            rej = sum(s["rejects"] for s in listed)
            evidence = {"after_stop_s": self.cfg.after_stop_s, "max_rejects": self.cfg.max_rejects,
                        "stops": listed, "stop_ids": [s["stop_id"] for s in listed], "parts": parts, "rejects": rej}
            start = parse_ts(listed[0]["stop_end"])
            rec_out = self.alert(start, win.covered_until(), reject_rate=round(rej / parts, 6) if parts else None,
                                 product=stop.product or self.ctx.product, order=stop.order or self.ctx.order,
                                 evidence=evidence)
            return rec_out, win.end

        new_stop = (cur := self.tracker.current(self.name, subject)) is None or stop.id not in cur.evidence["stop_ids"]
        self.tracker.report(self.name, subject, build, trigger_ts=win.start, now=now,
                            clear_after_s=self.clear_after_s, urgent=new_stop)


# ---------------------------------------------------------------- process limits


@dataclass
class _Excursion:
    start: float
    end: float | None = None
    lo: float = math.inf
    hi: float = -math.inf
    samples: int = 0
    values: list[tuple[float, float]] = field(default_factory=list)  # first ones and the newest ones
    parts: int = 0  # parts made while out of limits
    last_part_ts: float | None = None

    def add(self, ts: float, v: float) -> None:
        self.lo, self.hi, self.samples = min(self.lo, v), max(self.hi, v), self.samples + 1
        if len(self.values) >= 2 * 10:
            del self.values[10]  # keep the first 10 and the newest 10
        self.values.append((ts, v))

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and (self.end is None or self.end >= start)


class ProcessLimits(_QualityRule):
    name = "process_limits"
    KEEP_S = 600.0  # ended excursions stay this long for count records that arrive later

    def __init__(
        self, cfg: ProcessLimitsRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory,
        counter_tag: str | None,
    ) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.tag = f"process.{cfg.signal}"
        self.counter_tag = counter_tag
        self.counter_last: int | None = None
        self.counter_seen = False  # once counter samples come, count records are not used
        self.excursions: list[_Excursion] = []
        self.tags = frozenset(t for t in (self.tag, counter_tag) if t is not None)  # what on_samples reads
        self._prune_after = math.inf  # the first time an ended excursion is older than KEEP_S

    def out_of_limits(self, v: float) -> bool:
        return (self.cfg.min is not None and v < self.cfg.min) or (self.cfg.max is not None and v > self.cfg.max)

    def on_samples(self, samples: list[Sample]) -> None:
        for s in samples:
            if s.quality != "good":
                continue
            if s.tag == self.tag:
                self._value(sample_time(s), s.value)
            elif s.tag == self.counter_tag:
                self._counter(sample_time(s), s.value)

    def _value(self, ts: float, value: object) -> None:
        v = numeric(value)
        if v is None:
            return
        cur = self.excursions[-1] if self.excursions and self.excursions[-1].end is None else None
        if self.out_of_limits(v):
            if cur is None:
                cur = _Excursion(ts)
                self.excursions.append(cur)
            cur.add(ts, v)
        elif cur is not None:
            cur.end = ts
            self._prune_after = min(self._prune_after, ts + self.KEEP_S)
            if cur.parts:
                self._report([cur], ts)  # the alert learns when the value came back
        if ts > self._prune_after:  # rebuilt only when an ended excursion ages out, not per sample
            self.excursions = [e for e in self.excursions if e.end is None or e.end >= ts - self.KEEP_S]
            self._prune_after = min((e.end + self.KEEP_S for e in self.excursions if e.end is not None),
                                    default=math.inf)

    def _counter(self, ts: float, value: object) -> None:
        self.counter_seen = True
        v = numeric(value)
        if v is None:
            return
        last, self.counter_last = self.counter_last, int(v)
        if last is not None and int(v) > last:
            # A reset or rollover is the counter rules' business; only plain increments here.
            self._parts(ts, ts, int(v) - last)

    def on_record(self, rec: Record, now: float) -> None:
        if isinstance(rec, CountRecord) and not self.counter_seen and parts_of(rec) > 0:
            self._parts(parse_ts(rec.start), parse_ts(rec.end), parts_of(rec))

    def _parts(self, start: float, end: float, parts: int) -> None:
        hit = [e for e in self.excursions if e.overlaps(start, end)]
        if not hit:
            return
        for e in hit:
            e.parts += parts
            e.last_part_ts = end if e.end is None else min(end, e.end)
        self._report(hit, end)

    def _report(self, hit: list[_Excursion], now: float) -> None:
        cfg = self.cfg
        subject = f"{self.ctx.equipment()}/{cfg.signal}"

        def as_json(e: _Excursion) -> dict[str, Any]:
            return {"start": format_ts(e.start), "end": None if e.end is None else format_ts(e.end),
                    "min_seen": e.lo, "max_seen": e.hi, "samples": e.samples, "parts_made": e.parts,
                    "values": [{"ts": format_ts(t), "value": v} for t, v in e.values]}

        def build(prev: QualityAlertRecord | None) -> tuple[QualityAlertRecord, float]:
            exc = {x["start"]: x for x in (prev.evidence["excursions"] if prev is not None else [])}
            for e in hit:
                exc[format_ts(e.start)] = as_json(e)
            listed = sorted(exc.values(), key=lambda x: x["start"])[-MAX_LISTED:]
            lo = min(x["min_seen"] for x in listed)
            hi = max(x["max_seen"] for x in listed)
            last_part = max(e.last_part_ts or e.start for e in hit)
            evidence = {"signal": cfg.signal, "min": cfg.min, "max": cfg.max, "min_seen": lo, "max_seen": hi,
                        "parts_made": sum(x["parts_made"] for x in listed), "excursions": listed}
            # The window: from the first excursion to the last part made out of limits.
            rec_out = self.alert(parse_ts(listed[0]["start"]), last_part, evidence=evidence)
            return rec_out, last_part

        first = min(e.start for e in hit)
        new_excursion = (cur := self.tracker.current(self.name, subject)) is None or any(
            format_ts(e.start) not in {x["start"] for x in cur.evidence["excursions"]} for e in hit
        )
        self.tracker.report(self.name, subject, build, trigger_ts=first, now=now,
                            clear_after_s=self.clear_after_s, urgent=new_excursion)
