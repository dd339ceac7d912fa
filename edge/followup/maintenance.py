"""Maintenance rules (``follow_up.maintenance``): stops and counter events → maintenance_request.

- ``long_stop``: a stop (not planned) whose reason category is in ``categories`` lasting at
  least ``min_duration_s``. Raised while the stop is still open (the team is needed now), and
  revised when it ends. Subject: the machine and the reason category; a second long stop of
  the same category while the request is open is added to it.
- ``repeated_micro_stops``: ``count`` micro-stops (final classification, i.e. ended) of the same
  reason code whose starts lie within ``within_s``. The condition holds until the window no
  longer holds ``count`` of them; micro-stops while it is open are added to the request.
- ``mtbf_drop``: on each ended unplanned stop (a failure), MTBF over the last ``failures``
  failures below ``fraction`` × the MTBF over ``baseline_days``. Exactly:
  the uptime before failure i is ``start_i − end_(i−1)`` minus the time of planned, blocked and
  starved stops in between (micro-stops stay in run time, as in KPI_DEFINITIONS.md §5);
  recent MTBF = mean uptime before the last K failures; baseline MTBF = mean uptime before
  every failure that started within ``baseline_days`` before the newest one (the recent ones
  included). It is evaluated only when the baseline holds more than K uptimes, so a young
  history never raises it. MTTR (mean failure duration) is reported the same two ways.
- ``counter_suspect``: ``counter_reset`` and ``implausible_count`` events (sensor or PLC
  suspect); events while the request is open are added to it.
"""

from __future__ import annotations

import math
from typing import Any

from config.models import CounterSuspectRule, LongStopRule, MtbfDropRule, RepeatedMicroStopsRule
from edge.followup.base import MAX_LISTED, Rule, r3, stop_json, stop_span
from edge.followup.context import LineContext, ProcessHistory
from edge.followup.tracker import Tracker
from sync.records import EventRecord, MaintenanceRequestRecord, Record, StopRecord, format_ts, parse_ts

__all__ = ["CounterSuspect", "LongStop", "MtbfDrop", "RepeatedMicroStops"]

EXCLUDED_FROM_UPTIME = ("planned_stop", "blocked", "starved")


def _duration_text(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 120 else f"{m / 60:.1f} h"


class _MaintenanceRule(Rule):
    priority = "medium"

    def request(self, stop: StopRecord | None, **fields: Any) -> MaintenanceRequestRecord:
        ctx = self.ctx
        return MaintenanceRequestRecord(
            id="pending",
            ts="1970-01-01T00:00:00.000Z",
            rule=self.name,
            priority=self.priority,  # type: ignore[arg-type]
            shift=(stop.shift if stop is not None and stop.shift else ctx.shift),
            order=(stop.order if stop is not None and stop.order else ctx.order),
            product=(stop.product if stop is not None and stop.product else ctx.product),
            site=ctx.site, area=ctx.area, line=ctx.line, machine=ctx.machine,
            **fields,
        )


# ---------------------------------------------------------------- long stop


class LongStop(_MaintenanceRule):
    name = "long_stop"

    def __init__(self, cfg: LongStopRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.priority = cfg.priority
        self.watch: dict[str, StopRecord] = {}  # qualifying stops still open
        self.reported: set[tuple[str, int]] = set()  # (id, rev) of open stops already reported

    def qualifies(self, stop: StopRecord) -> bool:
        return stop.category != "planned_stop" and (stop.reason_category or "unknown") in self.cfg.categories

    def on_record(self, rec: Record, now: float) -> None:
        if not isinstance(rec, StopRecord):
            return
        if not self.qualifies(rec):
            self.watch.pop(rec.id, None)
            return
        _, end = stop_span(rec)
        if end is None:
            self.watch[rec.id] = rec
            self.on_tick(now)
            return
        self.watch.pop(rec.id, None)
        self.reported = {r for r in self.reported if r[0] != rec.id}
        if rec.duration_s >= self.cfg.min_duration_s:
            self._report(rec, max(now, end))

    def on_tick(self, now: float) -> None:
        for stop in list(self.watch.values()):
            if (stop.id, stop.rev) in self.reported:
                continue  # already in the request as it reads now: nothing new while it lasts
            if now - parse_ts(stop.start) >= self.cfg.min_duration_s:
                self._report(stop, now)
                self.reported.add((stop.id, stop.rev))

    def _report(self, stop: StopRecord, now: float) -> None:
        category = stop.reason_category or "unknown"
        equipment = self.ctx.equipment(category)

        def build(prev: MaintenanceRequestRecord | None) -> tuple[MaintenanceRequestRecord, float]:
            stops = {s["id"]: s for s in (prev.evidence.get("stops", []) if prev is not None else [])}
            stops[stop.id] = stop_json(stop)
            listed = sorted(stops.values(), key=lambda s: s["start"])[-MAX_LISTED:]
            ended = [s["duration_s"] for s in listed if s["duration_s"] is not None]
            ongoing = [s for s in listed if s["end"] is None]
            label = stop.reason_text or category
            if len(listed) == 1 and ongoing:
                summary = f"{label}: stopped since {stop.start}, longer than {_duration_text(self.cfg.min_duration_s)}"
            elif len(listed) == 1:
                summary = f"{label}: stop of {_duration_text(ended[0])}"
            else:
                summary = f"{label}: {len(listed)} long stops" + (" (one ongoing)" if ongoing else "")
            evidence = {
                "min_duration_s": self.cfg.min_duration_s,
                "reason_category": category,
                "stops": listed,
                "stop_count": len(listed),
                "longest_s": max(ended) if ended else None,
                "total_stop_s": r3(sum(ended)),
                "ongoing": bool(ongoing),
            }
            until = math.inf if ongoing else max(parse_ts(s["end"]) for s in listed)
            rec = self.request(stop, summary=summary, stop_ids=[s["id"] for s in listed], evidence=evidence,
                               equipment=equipment)
            return rec, until

        self.tracker.report(self.name, equipment, build, trigger_ts=parse_ts(stop.start), now=now,
                            clear_after_s=self.clear_after_s, urgent=True)


# ---------------------------------------------------------------- repeated micro-stops


class RepeatedMicroStops(_MaintenanceRule):
    name = "repeated_micro_stops"

    def __init__(
        self, cfg: RepeatedMicroStopsRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory
    ) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.priority = cfg.priority
        self.by_reason: dict[str, dict[str, StopRecord]] = {}  # reason key -> ended micro-stops by id
        self.reason_of: dict[str, str] = {}  # stop id -> reason key (a reason set later moves it)

    def on_record(self, rec: Record, now: float) -> None:
        if not isinstance(rec, StopRecord):
            return
        old = self.reason_of.pop(rec.id, None)
        if old is not None:
            self.by_reason.get(old, {}).pop(rec.id, None)
        if rec.end is None or rec.category != "micro_stop":
            return
        key = "unknown" if rec.reason_code is None else str(rec.reason_code)
        stops = self.by_reason.setdefault(key, {})
        stops[rec.id] = rec
        self.reason_of[rec.id] = key
        start = parse_ts(rec.start)
        # Keep what a window ending at this stop (or later) can still hold.
        for sid in [sid for sid, s in stops.items() if parse_ts(s.start) <= start - self.cfg.within_s]:
            del stops[sid]
            self.reason_of.pop(sid, None)
        window = sorted(stops.values(), key=lambda s: s.start)
        newest = parse_ts(window[-1].start)
        window = [s for s in window if parse_ts(s.start) > newest - self.cfg.within_s]
        if len(window) < self.cfg.count:
            return
        self._report(key, window, rec, max(now, parse_ts(rec.end)))

    def _report(self, key: str, window: list[StopRecord], latest: StopRecord, now: float) -> None:
        n = self.cfg.count
        category = latest.reason_category or "unknown"
        equipment = self.ctx.equipment(category)
        subject = f"{equipment}#{key}"
        durations = [s.duration_s for s in window]
        # Without another micro-stop the window stops holding `count` once the oldest of the
        # newest `count` leaves it.
        until = parse_ts(window[-n].start) + self.cfg.within_s

        def build(prev: MaintenanceRequestRecord | None) -> tuple[MaintenanceRequestRecord, float]:
            seen = list(prev.stop_ids) if prev is not None else []
            total = int(prev.evidence.get("micro_stops_since_open", len(seen))) if prev is not None else 0
            known = set(seen)
            for s in window:
                if s.id not in known:
                    seen.append(s.id)
                    known.add(s.id)
                    total += 1
            label = latest.reason_text or f"reason {key}"
            evidence = {
                "reason_code": latest.reason_code,
                "reason_text": latest.reason_text,
                "reason_category": category,
                "count": n,
                "within_s": self.cfg.within_s,
                "window_count": len(window),
                "window_start": window[0].start,
                "window_end": latest.end,
                "window_stop_s": r3(sum(durations)),
                "mean_duration_s": r3(sum(durations) / len(durations)),
                "micro_stops_since_open": total,
            }
            rec = self.request(
                latest,
                summary=f"{label}: {len(window)} micro-stops within {_duration_text(self.cfg.within_s)}",
                stop_ids=seen[-MAX_LISTED:],
                evidence=evidence,
                equipment=equipment,
            )
            return rec, until

        # Micro-stops while it is open are aggregate evidence: revised at the tracker's pace.
        self.tracker.report(self.name, subject, build, trigger_ts=now, now=now,
                            clear_after_s=self.clear_after_s, urgent=False)


# ---------------------------------------------------------------- MTBF drop


class MtbfDrop(_MaintenanceRule):
    name = "mtbf_drop"

    def __init__(self, cfg: MtbfDropRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.cfg = cfg
        self.priority = cfg.priority
        self.failures: dict[str, tuple[float, float, StopRecord]] = {}
        self.excluded: dict[str, tuple[float, float]] = {}

    def on_record(self, rec: Record, now: float) -> None:
        if not isinstance(rec, StopRecord):
            return
        before = self.failures.pop(rec.id, None)
        self.excluded.pop(rec.id, None)
        start, end = stop_span(rec)
        if end is None:
            return
        if rec.category in EXCLUDED_FROM_UPTIME:
            self.excluded[rec.id] = (start, end)
        elif rec.category == "unplanned_stop":
            self.failures[rec.id] = (start, end, rec)
            # A new failure (or one whose span changed) is new evidence; a reason set later is not.
            if before is None or before[:2] != (start, end):
                self._evaluate(rec, max(now, end))

    def _uptime(self, prev_end: float, start: float) -> float:
        gap = start - prev_end
        for s, e in self.excluded.values():
            gap -= max(0.0, min(e, start) - max(s, prev_end))
        return max(0.0, gap)

    def _evaluate(self, latest: StopRecord, now: float) -> None:
        k = self.cfg.failures
        horizon = self.cfg.baseline_days * 86400.0
        fs = sorted(self.failures.values(), key=lambda f: f[0])
        newest = fs[-1][0]
        # Keep one failure before the baseline window: it bounds the first uptime in it.
        inside = [i for i, f in enumerate(fs) if f[0] >= newest - horizon]
        keep_from = max(0, inside[0] - 1) if inside else len(fs) - 1
        for f in fs[:keep_from]:
            self.failures.pop(f[2].id, None)
        fs = fs[keep_from:]
        oldest_kept = fs[0][1]
        for sid in [sid for sid, (_, e) in self.excluded.items() if e < oldest_kept]:
            del self.excluded[sid]
        ups = [(self._uptime(fs[i - 1][1], fs[i][0]), fs[i]) for i in range(1, len(fs))]
        baseline = [(u, f) for u, f in ups if f[0] >= newest - horizon]
        if len(baseline) <= k or latest.id != fs[-1][2].id:
            return
        recent = ups[-k:]
        mtbf_recent = sum(u for u, _ in recent) / k
        mtbf_base = sum(u for u, _ in baseline) / len(baseline)
        if not mtbf_recent < self.cfg.fraction * mtbf_base:
            return
        mttr_recent = sum(f[1] - f[0] for _, f in recent) / k
        mttr_base = sum(f[1] - f[0] for _, f in baseline) / len(baseline)
        equipment = self.ctx.equipment()

        def build(prev: MaintenanceRequestRecord | None) -> tuple[MaintenanceRequestRecord, float]:
            ids = list(prev.stop_ids) if prev is not None else []
            ids += [f[2].id for _, f in recent if f[2].id not in ids]
            evidence = {
                "failures": k,
                "fraction": self.cfg.fraction,
                "baseline_days": self.cfg.baseline_days,
                "mtbf_recent_s": r3(mtbf_recent),
                "mtbf_baseline_s": r3(mtbf_base),
                "mtbf_ratio": round(mtbf_recent / mtbf_base, 4) if mtbf_base > 0 else None,
                "mttr_recent_s": r3(mttr_recent),
                "mttr_baseline_s": r3(mttr_base),
                "baseline_failures": len(baseline),
                "baseline_start": format_ts(newest - horizon),
                "recent_failures": [
                    {**{x: stop_json(f[2])[x] for x in ("id", "start", "end", "duration_s", "reason_text")},
                     "uptime_before_s": r3(u)}
                    for u, f in recent
                ],
            }
            summary = (f"MTBF of the last {k} failures {_duration_text(mtbf_recent)}, "
                       f"{_duration_text(mtbf_base)} over {self.cfg.baseline_days:g} days")
            rec = self.request(latest, summary=summary, stop_ids=ids[-MAX_LISTED:], evidence=evidence,
                               equipment=equipment)
            return rec, now

        self.tracker.report(self.name, equipment, build, trigger_ts=now, now=now,
                            clear_after_s=self.clear_after_s, urgent=True)


# ---------------------------------------------------------------- counter suspect


class CounterSuspect(_MaintenanceRule):
    name = "counter_suspect"
    KINDS = ("counter_reset", "implausible_count")

    def __init__(self, cfg: CounterSuspectRule, ctx: LineContext, tracker: Tracker, history: ProcessHistory) -> None:
        super().__init__(ctx, tracker, history, cfg.clear_after_s)
        self.priority = cfg.priority

    def on_record(self, rec: Record, now: float) -> None:
        if not isinstance(rec, EventRecord) or rec.kind not in self.KINDS:
            return
        equipment = self.ctx.equipment()
        at = parse_ts(rec.ts)

        def build(prev: MaintenanceRequestRecord | None) -> tuple[MaintenanceRequestRecord, float]:
            events: list[dict[str, Any]] = list(prev.evidence.get("events", [])) if prev is not None else []
            counts = dict(prev.evidence.get("counts", {})) if prev is not None else {}
            if all(e["id"] != rec.id for e in events):
                events.append({"id": rec.id, "kind": rec.kind, "ts": rec.ts, "detail": dict(rec.detail)})
                counts[rec.kind] = counts.get(rec.kind, 0) + 1
            parts = [f"{counts[k]} {k.replace('_', ' ')}{'s' if counts[k] != 1 else ''}" for k in self.KINDS
                     if counts.get(k)]
            evidence = {"counts": counts, "events": events[-MAX_LISTED:], "last_event": events[-1]["ts"]}
            rec_out = self.request(None, summary="Counter or sensor suspect: " + ", ".join(parts),
                                   evidence=evidence, equipment=equipment)
            return rec_out, max(at, parse_ts(events[-1]["ts"]))

        self.tracker.report(self.name, equipment, build, trigger_ts=at, now=max(now, at),
                            clear_after_s=self.clear_after_s, urgent=True)
