"""FollowUpEngine: the record stream of one line in, maintenance requests and quality alerts out.

Used by the daemon (live) and by ``lineside replay`` (data time). Everything it decides is a
function of the data (record and sample timestamps, the ``now`` given to ``tick``), never of
the wall clock, so a replay of the same day produces the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from config import LineConfig
from config.models import (
    CounterSuspectRule,
    LongStopRule,
    MtbfDropRule,
    ProcessLimitsRule,
    RejectRateRule,
    RepeatedMicroStopsRule,
    StartupRejectsRule,
)
from drivers.base import Sample
from edge.followup.base import Rule
from edge.followup.context import LineContext, ProcessHistory
from edge.followup.maintenance import CounterSuspect, LongStop, MtbfDrop, RepeatedMicroStops
from edge.followup.quality import ProcessLimits, RejectRate, StartupRejects
from edge.followup.tracker import Tracker
from sync.records import MaintenanceRequestRecord, QualityAlertRecord, Record, parse_ts

__all__ = ["FollowUpEngine"]


class FollowUpEngine:
    """Follow-up rules of one line (``follow_up`` in its config).

    - ``observe(records)``: every record the processor emitted, in order. Returns the new
      ``maintenance_request`` / ``quality_alert`` records and new revisions of open ones (same
      id, rev+1). Follow-up records given back to it are ignored.
    - ``observe_samples(samples)``: raw samples; it uses ``process.NAME`` values (context and
      ``process_limits``) and the ``total_count`` (else ``good_count``) counter, which tells
      ``process_limits`` exactly when parts were made. What they cause comes out of the next
      ``observe`` or ``tick``.
    - ``tick(now)``: time passing: a long stop still open crossing ``min_duration_s``, throttled
      revisions falling due, records closing after ``clear_after_s`` without a new trigger.
      Cheap when nothing is open or pending.
    - ``restore(records)``: warm start from the buffer after a restart. Give it, oldest first,
      the stop records of the last ``baseline_days`` (MTBF baseline), the count and event
      records of the last few hours (sliding windows) and every maintenance_request /
      quality_alert record still open (any revisions; the newest counts). Open ones are then
      revised, not re-created; nothing is emitted by ``restore`` itself.
    """

    def __init__(self, cfg: LineConfig) -> None:
        self.cfg = cfg
        self.ctx = LineContext(cfg)
        self.tracker = Tracker(cfg.line.id)
        keep_s = 3600.0
        for q in cfg.follow_up.quality:
            keep_s = max(keep_s, getattr(q, "window_s", 0.0) + 600.0, getattr(q, "after_stop_s", 0.0) + 600.0)
        self.history = ProcessHistory(keep_s)
        sig = cfg.signals
        counter_tag = "total_count" if sig.total_count is not None else ("good_count" if sig.good_count else None)
        self.rules: list[Rule] = []
        self.clear_after: dict[str, float] = {}
        for rule in [*cfg.follow_up.maintenance, *cfg.follow_up.quality]:
            built = self._build(rule, counter_tag)
            self.rules.append(built)
            self.clear_after.setdefault(built.name, built.clear_after_s)
        self._sample_rules = [r for r in self.rules if isinstance(r, ProcessLimits)]
        # Only quality alerts carry process values (``process``, ``process_seen``): without a
        # quality rule nothing reads them and observe_samples does nothing at all.
        self._keep_history = bool(cfg.follow_up.quality)
        self._sample_tags = frozenset(t for r in self._sample_rules for t in r.tags)
        self._tick_rules = [r for r in self.rules if isinstance(r, LongStop)]

    def _build(
        self,
        rule: LongStopRule | RepeatedMicroStopsRule | MtbfDropRule | CounterSuspectRule
        | RejectRateRule | StartupRejectsRule | ProcessLimitsRule,
        counter_tag: str | None,
    ) -> Rule:
        args = (self.ctx, self.tracker, self.history)
        match rule:
            case LongStopRule():
                return LongStop(rule, *args)
            case RepeatedMicroStopsRule():
                return RepeatedMicroStops(rule, *args)
            case MtbfDropRule():
                return MtbfDrop(rule, *args)
            case CounterSuspectRule():
                return CounterSuspect(rule, *args)
            case RejectRateRule():
                return RejectRate(rule, *args)
            case StartupRejectsRule():
                return StartupRejects(rule, *args)
            case ProcessLimitsRule():
                return ProcessLimits(rule, *args, counter_tag)
        raise TypeError(f"unknown follow-up rule {rule!r}")

    # ------------------------------------------------------------------ the interface

    def observe(self, records: Sequence[Record]) -> list[Record]:
        for rec in records:
            if isinstance(rec, MaintenanceRequestRecord | QualityAlertRecord):
                continue
            now = parse_ts(rec.ts)
            self.ctx.update(rec)
            for rule in self.rules:
                rule.on_record(rec, now)
        return list(self.tracker.drain())

    def observe_samples(self, samples: Sequence[Sample]) -> None:
        if not self._keep_history:
            return
        self.history.add_samples(samples)
        if self._sample_rules:
            # The few samples a rule reads, picked out once per read; each rule then sees
            # them in order, after the history holds the whole read (as its alerts show).
            tags = self._sample_tags
            hits = [s for s in samples if s.tag in tags and s.quality == "good"]
            if hits:
                for rule in self._sample_rules:
                    rule.on_samples(hits)

    def tick(self, now: float) -> list[Record]:
        for rule in self._tick_rules:
            rule.on_tick(now)
        if now >= self.tracker.next_due():
            self.tracker.tick(now)
        return list(self.tracker.drain())

    def flush(self, now: float) -> list[Record]:
        """The throttled revisions, sent now: at shutdown, before a reload and at a replay's end."""
        self.tracker.flush(now)
        return list(self.tracker.drain())

    def restore(self, records: Iterable[Record]) -> None:
        history: list[Record] = []
        newest: dict[str, MaintenanceRequestRecord | QualityAlertRecord] = {}
        for rec in records:
            if isinstance(rec, MaintenanceRequestRecord | QualityAlertRecord):
                if rec.id not in newest or rec.rev >= newest[rec.id].rev:
                    newest[rec.id] = rec
            else:
                history.append(rec)
        for rec in newest.values():
            if rec.rule in self.clear_after:  # a rule removed from the config stays closed at the store
                self.tracker.restore_open(rec, self.clear_after[rec.rule])
        history.sort(key=lambda r: parse_ts(r.ts))
        self.tracker.quiet = True
        try:
            self.observe(history)
        finally:
            self.tracker.quiet = False
        self.tracker.drain()

    def open_count(self) -> int:
        """Open requests and alerts, for the status page."""
        return len(self.tracker.items)

    def next_due(self) -> float:
        """When ``tick`` next has timed work (inf: none); a replay can tick only then."""
        due = self.tracker.next_due()
        for rule in self._tick_rules:
            if rule.watch:
                due = min(due, *(parse_ts(s.start) + rule.cfg.min_duration_s for s in rule.watch.values()))
        return due if due < math.inf else math.inf
