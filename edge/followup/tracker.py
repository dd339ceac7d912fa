"""The life of follow-up records: one open request per rule and subject, revised, then closed.

Rules say "this condition holds, here is the record as it should read now"; the tracker turns
that into records for the store:

- the first report of a subject opens a record (rev 0) whose id comes from the data
  (``natural_id(line, type, rule, subject, first_trigger_ms)``), so a replay or a restart
  computes the same id and the store de-duplicates it;
- later reports while it is open become revisions (same id, rev+1), only when the content
  changed. A report marked ``urgent`` (a new stop, a new event) is sent at once; other
  changes (a sliding window moving on) at most every ``REVISE_MIN_S`` so a persisting
  condition costs a few revisions an hour, never one per tick;
- when the condition has not been seen for the rule's ``clear_after_s``
  (``now >= active_until + clear_after_s``) the record is closed (status ``closed``, rev+1).
  A later trigger opens a new record with a new id. ``acknowledged`` is never set here: that
  is a person's act at the central store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from edge.logs import get_logger
from sync.records import MaintenanceRequestRecord, QualityAlertRecord, format_ts, natural_id, parse_ts

__all__ = ["REVISE_MIN_S", "FollowUpRecord", "OpenItem", "Tracker"]

FollowUpRecord = MaintenanceRequestRecord | QualityAlertRecord
R = TypeVar("R", MaintenanceRequestRecord, QualityAlertRecord)

# Non-urgent revisions (a window sliding on, a growing aggregate) are batched this long: the
# store only needs the picture, not every minute of it.
REVISE_MIN_S = 300.0


@dataclass
class OpenItem:
    key: str  # "rule|subject"
    sent: FollowUpRecord  # the last revision handed out
    pending: FollowUpRecord | None  # newer content not sent yet (throttled)
    active_until: float  # the condition was last seen to hold until here (inf: still holds)
    clear_after_s: float
    last_sent_at: float
    since: float  # data time of the first trigger (the id's time)

    def clears_at(self) -> float:
        return self.active_until + self.clear_after_s


class Tracker:
    """Open follow-up records by ``rule|subject``; the records to send pile up in ``drain()``."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.items: dict[str, OpenItem] = {}
        self.out: list[FollowUpRecord] = []
        self.quiet = False  # restore(): rebuild state, emit nothing
        self.log = get_logger(line=line)

    @staticmethod
    def key(rule: str, subject: str) -> str:
        return f"{rule}|{subject}"

    def is_open(self, rule: str, subject: str) -> bool:
        return self.key(rule, subject) in self.items

    def report(
        self,
        rule: str,
        subject: str,
        build: Callable[[R | None], tuple[R, float]],
        *,
        trigger_ts: float,
        now: float,
        clear_after_s: float,
        urgent: bool,
    ) -> None:
        """The condition of ``rule`` on ``subject`` holds at data time ``now``.

        ``build(previous)`` makes the record as it should read now from the previous content of
        the open record (None for a new one: what a request accumulates, e.g. its stops, lives
        in the record itself, so a restored record goes on from where it was) and says until
        when the condition is known to hold (inf: it still holds). The tracker fills in id, rev,
        ts and status. ``trigger_ts`` (data time) only matters for a new record: it makes its id.
        """
        key = self.key(rule, subject)
        item = self.items.get(key)
        if item is not None and now >= item.clears_at():
            # Cleared long ago and nobody ticked in between (a replay without ticks): close the
            # old one first so the new occurrence gets its own record.
            self._close(item, max(item.clears_at(), item.last_sent_at))
            item = None
        if item is None:
            if self.quiet:
                return  # restoring: history does not open records the buffer does not know
            record, active_until = build(None)
            rtype = "maintenance_request" if isinstance(record, MaintenanceRequestRecord) else "quality_alert"
            rec = msgspec.structs.replace(
                record,
                id=natural_id(self.line, rtype, rule, subject, round(trigger_ts * 1000)),
                rev=0,
                ts=format_ts(now),
                status="open",
                evidence={"subject": subject, **record.evidence},
            )
            self.items[key] = OpenItem(key, rec, None, active_until, clear_after_s, now, since=trigger_ts)
            self.out.append(rec)
            self.log.info("follow_up_opened", rule=rule, subject=subject, id=rec.id)
            return
        if self.quiet and now < item.since:
            return  # restoring: this is history from before the record was opened
        base = item.pending if item.pending is not None else item.sent
        record, active_until = build(base)  # type: ignore[arg-type]
        item.active_until = active_until
        item.clear_after_s = clear_after_s
        new = msgspec.structs.replace(
            record, id=item.sent.id, rev=item.sent.rev, ts=item.sent.ts, status="open",
            evidence={"subject": subject, **record.evidence},
        )
        if new == item.sent:
            item.pending = None
            return
        item.pending = new
        if self.quiet:
            # Restoring: history says more than the buffer's newest revision (the daemon died
            # with a throttled revision unsent). It stays pending and goes out when due.
            return
        if urgent or now - item.last_sent_at >= REVISE_MIN_S:
            self._send(item, now)

    def current(self, rule: str, subject: str) -> FollowUpRecord | None:
        """The open record's newest content (sent or pending), if one is open."""
        item = self.items.get(self.key(rule, subject))
        if item is None:
            return None
        return item.pending if item.pending is not None else item.sent

    def tick(self, now: float) -> None:
        """Send throttled revisions that are due; close what has been clear long enough."""
        for key in list(self.items):
            item = self.items[key]
            if now >= item.clears_at():
                self._close(item, now)
            elif item.pending is not None and now - item.last_sent_at >= REVISE_MIN_S:
                self._send(item, now)

    def next_due(self) -> float:
        """The earliest time ``tick`` has something to do (inf: nothing)."""
        due = math.inf
        for item in self.items.values():
            due = min(due, item.clears_at())
            if item.pending is not None:
                due = min(due, item.last_sent_at + REVISE_MIN_S)
        return due

    def flush(self, now: float) -> None:
        """Send every throttled revision now (shutdown, reload, end of a replay): what is known
        is written before the process lets go of it."""
        for item in self.items.values():
            if item.pending is not None:
                self._send(item, now)

    def drain(self) -> list[FollowUpRecord]:
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------------ internals

    def _send(self, item: OpenItem, now: float) -> None:
        assert item.pending is not None
        rec = msgspec.structs.replace(item.pending, rev=item.sent.rev + 1, ts=format_ts(now))
        item.sent, item.pending, item.last_sent_at = rec, None, now
        self.out.append(rec)

    def _close(self, item: OpenItem, now: float) -> None:
        base = item.pending if item.pending is not None else item.sent
        evidence = dict(base.evidence)
        evidence["cleared_at"] = format_ts(item.active_until) if item.active_until < math.inf else None
        rec = msgspec.structs.replace(
            base, rev=item.sent.rev + 1, ts=format_ts(now), status="closed", evidence=evidence
        )
        del self.items[item.key]
        if not self.quiet:
            self.out.append(rec)
            self.log.info("follow_up_closed", rule=rec.rule, id=rec.id, rev=rec.rev)

    # ------------------------------------------------------------------ warm start

    def restore_open(self, rec: FollowUpRecord, clear_after_s: float) -> None:
        """An open record from the buffer (its newest revision): keep revising it, do not re-create."""
        subject = rec.evidence.get("subject")
        if rec.status != "open" or not isinstance(subject, str):
            return
        made = parse_ts(rec.ts)
        try:
            since = int(rec.id.rsplit(":", 1)[1]) / 1000.0  # natural_id(..., first_trigger_ms)
        except (IndexError, ValueError):
            since = made
        key = self.key(rec.rule, subject)
        current = self.items.get(key)
        if current is not None and current.sent.id == rec.id and current.sent.rev >= rec.rev:
            return
        # Until history says otherwise, the condition was last seen when this revision was made.
        self.items[key] = OpenItem(key, rec, None, made, clear_after_s, made, since=since)
