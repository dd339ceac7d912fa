"""One line's samples -> stops, states, counts, events and interval KPIs (the live code path).

The daemon and ``lineside replay`` both drive a :class:`LineProcessor`: ``feed`` samples,
``set_connected`` on PLC (dis)connects, ``tick`` at least once a second, ``finish`` at the end.
All the arithmetic lives in :mod:`kpi_core`; this module keeps the streaming state, the
context (shift, order, product, operator) and turns results into RECORDS.md records.

Choices a plant engineer would expect (KPI_DEFINITIONS.md leaves them open):

- a stop's cause (stop / planned state / blocked / starved) is the one at its start;
- counter-only lines: a disconnect closes a pending gap stop at the disconnect (if the gap
  already exceeds ``stop_after_s``) and the gap is not carried over the outage; the counter
  baseline *is* kept, so parts made during the outage count once at the reconnect sample;
- with ``parts_per_cycle`` > 1 a part's ideal time is the ideal cycle time / parts per cycle;
- an interval's final KPI is sent once the clock passed its end and every stop touching it
  is closed or settled (lasted ``micro_stop_max_s`` with a known reason);
- time before the processor's first input and after ``finish`` is ``unknown``;
- per-minute count records are written only for minutes with parts.

Reasons set later (`set_reason`, from the status page or the central store): a person's
reason (``operator`` or ``central``) wins over the PLC's fault code and the mapped state; a
fault code seen later for that stop does not replace it (an ``plc_reason_overridden`` event
records the disagreement once). Between two people's reasons the later call wins. The
reason's config entry (by code) decides planned or not; a code the config does not know is
unplanned. A planned reason turns an ``unplanned_stop`` into a ``planned_stop`` (micro-stops,
blocked and starved keep their category: §3 classifies by duration and cause first); every
KPI interval the stop touches is computed again and re-sent (final ones as a new revision of
the same id, still ``final``). Intervals older than what the processor keeps in memory
(``kept_from``) are not recomputed: an ``kpi_not_recomputed`` event lists them.

Context without signals (`set_context`): the central store may set order, product and operator
for lines without such tags; the value applies from the given instant on, exactly like a
sample of that signal (a product change switches the ideal cycle time there).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.models import LineConfig
from drivers.base import Sample
from kpi_core.calendar import ShiftCalendar
from kpi_core.counters import FLAG_RESET, counter_range
from kpi_core.cycles import CycleBuffers, counter_cycles, new_cycle_state
from kpi_core.kpi import CountStream, IntervalSums, KpiFigures, StopArrays, interval_figures, kpis_from_sums
from kpi_core.states import StateMapper
from kpi_core.stops import (
    CAT_BLOCKED,
    CAT_MICRO,
    CAT_NAMES,
    CAT_PLANNED,
    CAT_UNPLANNED,
    CAUSE_BLOCKED,
    CAUSE_RUNNING,
    CAUSE_STARVED,
    CAUSE_STOP,
    classify_stop,
    level_changes,
    new_level_state,
)
from kpi_core.timeline import Windows, clip, measure, normalize
from sync.records import (
    CountRecord,
    EventRecord,
    Iso22400,
    KpiRecord,
    Losses,
    Record,
    StateRecord,
    StopRecord,
    format_ts,
    natural_id,
    parse_ts,
)

__all__ = ["LineProcessor"]

COUNTER_ROLES = ("total_count", "good_count", "reject_count")
MANUAL_SOURCES = ("operator", "central")
LEVEL_ROLES = ("running", "state", "blocked", "starved", "fault_code")
CONTEXT_ROLES = ("product", "order", "operator")
# process.* history is kept only this far behind the newest sample: samples of one instant
# may come from several PLCs a moment apart, and a stop opened at that instant takes the
# process values of its start. Older values are needed by nothing (stops hold their own).
PROCESS_SLACK_S = 5.0


def _ms(t: float) -> int:
    return round(t * 1000)


def _next_rev(prev: int, now: float) -> int:
    """A record's next revision: the line time in ms, or one more than the last one sent.

    Time-based so that a restarted processor (which does not know what its predecessor sent)
    still sends higher revisions of the same ids: RECORDS.md only needs an int where the
    later revision is the higher one.
    """
    return max(prev + 1, _ms(now))


def _add_sums(x: IntervalSums, y: IntervalSums) -> IntervalSums:
    su = None if x.startup_reject_ideal_s is None and y.startup_reject_ideal_s is None else (
        (x.startup_reject_ideal_s or 0.0) + (y.startup_reject_ideal_s or 0.0))
    return IntervalSums(
        all_time_s=x.all_time_s + y.all_time_s, not_scheduled_s=x.not_scheduled_s + y.not_scheduled_s,
        planned_break_s=x.planned_break_s + y.planned_break_s, unknown_s=x.unknown_s + y.unknown_s,
        ppt_s=x.ppt_s + y.ppt_s, stop_time_s=[a + b for a, b in zip(x.stop_time_s, y.stop_time_s, strict=True)],
        stop_count=[a + b for a, b in zip(x.stop_count, y.stop_count, strict=True)], total=x.total + y.total,
        good=x.good + y.good, reject=x.reject + y.reject, outside=x.outside + y.outside,
        ideal_total_s=x.ideal_total_s + y.ideal_total_s, ideal_reject_s=x.ideal_reject_s + y.ideal_reject_s,
        startup_reject_ideal_s=su,
    )


def _record_sums(r: KpiRecord) -> IntervalSums:
    """The additive figures of a KPI record (blocked + starved time goes under blocked:
    only their sum enters a KPI)."""
    t = [0.0] * len(CAT_NAMES)
    c = [0] * len(CAT_NAMES)
    t[CAT_UNPLANNED], t[CAT_PLANNED], t[CAT_MICRO] = r.unplanned_stop_time_s, r.planned_stop_time_s, r.micro_stop_time_s
    t[CAT_BLOCKED] = r.stop_time_s - r.unplanned_stop_time_s - r.planned_stop_time_s
    c[CAT_UNPLANNED], c[CAT_PLANNED], c[CAT_MICRO] = r.unplanned_stop_count, r.planned_stop_count, r.micro_stop_count
    return IntervalSums(
        all_time_s=r.all_time_s, not_scheduled_s=r.not_scheduled_s, planned_break_s=r.planned_break_s,
        unknown_s=r.unknown_s, ppt_s=r.planned_production_time_s, stop_time_s=t, stop_count=c,
        total=float(r.total_count), good=float(r.good_count), reject=float(r.reject_count),
        outside=float(r.counts_outside_ppt), ideal_total_s=r.ideal_time_s,
        ideal_reject_s=r.losses.production_rejects_s, startup_reject_ideal_s=r.losses.startup_rejects_s,
    )


class _Steps:
    """A step function kept as its change points."""

    __slots__ = ("ts", "vals")

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.vals: list[Any] = []

    def add(self, t: float, v: Any) -> None:
        if self.vals and self.vals[-1] == v:
            return
        self.ts.append(t)
        self.vals.append(v)

    def extend(self, rows: list[tuple[float, Any]]) -> None:
        """``add`` for each row, in one call (a process tag has a row per value)."""
        ts, vals = self.ts, self.vals
        for t, v in rows:
            if vals and vals[-1] == v:
                continue
            ts.append(t)
            vals.append(v)

    def at(self, t: float) -> Any:
        i = bisect.bisect_right(self.ts, t) - 1
        return self.vals[i] if i >= 0 else None

    def first_set(self, a: float, b: float) -> tuple[float, Any] | None:
        """First change in (a, b) to a non-empty, non-zero value."""
        i = bisect.bisect_right(self.ts, a)
        while i < len(self.ts) and self.ts[i] < b:
            if self.vals[i] not in (None, 0, "", "0"):
                return self.ts[i], self.vals[i]
            i += 1
        return None

    def prune(self, before: float) -> None:
        i = bisect.bisect_right(self.ts, before) - 1
        if i > 0:
            del self.ts[:i]
            del self.vals[:i]


@dataclass
class _Stop:
    start: float
    cause: int
    gap: bool  # a counter-gap stop (its end is back-dated by the ideal cycle time)
    end: float | None = None
    rev: int = -1
    sent_cat: int | None = None
    sent_reason: Any = None
    reason: Any = None
    reason_source: str = "none"
    category: int = CAT_MICRO
    # a person's reason (operator/central): its text and category as they gave them
    reason_text: str | None = None
    reason_category: str | None = None
    plc_conflict: bool = False
    # the process values at the stop's start, taken when it opens: process history is not kept
    process: dict[str, Any] | None = None


class _Counter:
    def __init__(self, signal_type: str, max_rate: float) -> None:
        if signal_type in ("float32", "float64"):
            signal_type = "int64"  # a counter sent as a float: no known width, no rollover
        self.lo, self.modulus = counter_range(signal_type)
        self.max_rate = max_rate
        # sf[1:] is the counter-gap state ([has_prev_completion, t_prev]) of the primary counter
        self.si, self.sf = new_cycle_state()
        self.buf = CycleBuffers()
        self.ts: list[np.ndarray] = []
        self.n: list[np.ndarray] = []
        self.ict: list[np.ndarray] = []
        self._cat: CountStream | None = None

    def stream(self) -> CountStream:
        if self._cat is None:
            if self.ts:
                self._cat = CountStream(np.concatenate(self.ts), np.concatenate(self.n), np.concatenate(self.ict))
                self.ts, self.n, self.ict = [self._cat.ts], [self._cat.n], [self._cat.ict]
            else:
                e = np.zeros(0, dtype=np.float64)
                self._cat = CountStream(e, e, e)
        return self._cat

    def append(self, ts: np.ndarray, n: np.ndarray, ict: np.ndarray) -> None:
        if ts.size:
            self.ts.append(ts)
            self.n.append(n)
            self.ict.append(ict)
            self._cat = None

    def prune(self, before: float) -> None:
        s = self.stream()
        i = int(np.searchsorted(s.ts, before, "left"))
        if i:
            self._cat = CountStream(s.ts[i:], s.n[i:], s.ict[i:])
            self.ts, self.n, self.ict = [self._cat.ts], [self._cat.n], [self._cat.ict]


class LineProcessor:
    """Streaming detection and KPIs for one line; see the module docstring for the rules."""

    def __init__(self, cfg: LineConfig) -> None:
        self.cfg = cfg
        self.prod = cfg.production
        self.cal = ShiftCalendar(cfg.calendar, cfg.timezone)
        self.roles = cfg.signals.roles()
        self.mapper = StateMapper(self.prod.state_map, self.prod.states)
        self.level_mode = "running" in self.roles or "state" in self.roles
        self.max_ict = max([self.prod.ideal_cycle_time_s, *(p.ideal_cycle_time_s for p in self.prod.products.values())])
        self.counters = {
            r: _Counter(self.roles[r].type, self.prod.effective_max_parts_per_s()) for r in COUNTER_ROLES if r in self.roles
        }
        self.primary = "total_count" if "total_count" in self.counters else "good_count"
        self.steps: dict[str, _Steps] = {r: _Steps() for r in self.roles if r not in COUNTER_ROLES}
        self.level_state = {r: new_level_state() for r in LEVEL_ROLES}
        # a view: the fused kernel keeps it; cleared at a disconnect (no gap over an outage)
        self.gap_state = self.counters[self.primary].sf[1:]
        self.pending: dict[str, list[tuple[float, Any]]] = {}
        self.bad_by_tag: dict[str, int] = {}
        self.cause = CAUSE_RUNNING
        self.t0: float | None = None
        self.t_end: float | None = None
        self.last_ts = -math.inf
        self.watermark = -math.inf
        self.disconnected: dict[str, float] = {}
        self.unknown: Windows = []
        self.unknown_since: float | None = None
        self.open_stop: _Stop | None = None
        self.closed: list[_Stop] = []  # sorted by start
        self.out: list[Record] = []
        self.kpi_rev: dict[str, int] = {}
        # intervals open at a restart: id -> (end of what the predecessor measured, its sums, products)
        self.carried: dict[str, tuple[float, IntervalSums, list[str]]] = {}
        self.final_cursor: dict[str, float] = {}
        self.order_final_idx = 0
        self.next_provisional = -math.inf
        self.minutes: dict[int, list[Any]] = {}
        self.state_cursor: float | None = None
        self.state_carry: tuple[float, str] | None = None
        self.kept_from = -math.inf  # data before this was pruned: intervals there cannot be recomputed
        self._plc_roles = {r: s.plc for r, s in self.roles.items()}
        self._critical = {
            s.plc for r, s in self.roles.items() if r in (*COUNTER_ROLES, "running", "state")
        }

    # ------------------------------------------------------------ identity

    def _common(self, rid: str, rev: int, now: float) -> dict[str, Any]:
        ln = self.cfg.line
        return {"id": rid, "rev": rev, "site": ln.site, "area": ln.area, "line": ln.id, "machine": ln.machine,
                "ts": format_ts(now)}

    def _event(self, t: float, kind: str, key: str, **detail: Any) -> None:
        rid = natural_id(self.cfg.line.id, "event", kind, key, _ms(t))
        self.out.append(EventRecord(**self._common(rid, 0, t), kind=kind, detail=detail))

    def _new_stop(self, start: float, cause: int, gap: bool) -> _Stop:
        process = {r[8:]: s.at(start) for r, s in self.steps.items() if r.startswith("process.")}
        return _Stop(start, cause, gap=gap, process=process)

    def retained(self) -> int:
        """Signal change points held in memory (every non-counter signal, plus samples still
        queued): what the soak tests watch; it must not grow with the time the line runs."""
        return sum(len(s.ts) for s in self.steps.values()) + sum(len(r) for r in self.pending.values())

    def _start(self, t: float) -> None:
        if self.t0 is None:
            self.t0 = t
            self.state_cursor = t
        self.last_ts = max(self.last_ts, t)

    # ------------------------------------------------------------ input

    def feed(self, samples: Iterable[Sample]) -> None:
        """Queue samples (processed at the next tick / set_connected / finish)."""
        # This runs for every value the line delivers: `_start` once per batch, not per value.
        roles, pending, bad = self.roles, self.pending, self.bad_by_tag
        isnan = math.isnan
        first: float | None = None
        last = -math.inf
        for s in samples:
            v = s.value
            if s.quality != "good" or v is None or (isinstance(v, float) and isnan(v)):
                bad[s.tag] = bad.get(s.tag, 0) + 1
                continue
            tag = s.tag
            if tag not in roles:
                continue
            t = s.recv_ts
            if first is None:
                first = t
            if t > last:
                last = t
            rows = pending.get(tag)
            if rows is None:
                pending[tag] = [(t, v)]
            else:
                rows.append((t, v))
        if first is not None:
            self._start(first)  # the first sample the line ever sends starts its time
            self.last_ts = max(self.last_ts, last)

    def set_connected(self, ts: float, connected: bool, plc: str, error: str | None = None) -> None:
        self._process_pending()
        self._start(ts)
        detail: dict[str, Any] = {"plc": plc}
        if error:
            detail["error"] = error
        if connected:
            if plc in self.disconnected:
                del self.disconnected[plc]
                self._event(ts, "plc_connected", plc, **detail)
                if not self.disconnected and self.unknown_since is not None:
                    self.unknown.append((self.unknown_since, ts))
                    self.unknown_since = None
            return
        if plc in self.disconnected:
            return
        self.disconnected[plc] = ts
        self._event(ts, "plc_disconnected", plc, **detail)
        if plc in self._critical and self.unknown_since is None:
            self.unknown_since = ts
            self._interrupt(ts)

    def _interrupt(self, t: float) -> None:
        """No data from here on: close what is open, do not carry gaps over the outage.

        The level signals (running, state, fault code, blocked, starved) become unknown:
        after the reconnect they count from their first new sample, as after a start.
        """
        for role in LEVEL_ROLES:
            self.level_state[role][:] = 0
            if role in self.steps:
                self.steps[role].add(t, None)
        if self.level_mode:
            if self.open_stop is not None:
                self._close(t)
            self.cause = CAUSE_RUNNING
        else:
            self._close_gap_at(t)
            self.gap_state[:] = 0

    def _close_gap_at(self, t: float) -> None:
        if self.open_stop is None and self.gap_state[0] and t - self.gap_state[1] > self._stop_after(self.gap_state[1]):
            self.open_stop = self._new_stop(float(self.gap_state[1]), CAUSE_STOP, gap=True)
        if self.open_stop is not None:
            self._close(t)

    # ------------------------------------------------------------ processing

    def _product(self, t: float) -> str | None:
        st = self.steps.get("product")
        v = st.at(t) if st is not None else None
        return None if v is None else str(v)

    def _ict(self, t: float) -> float:
        return self.prod.ideal_cycle_time(self._product(t))

    def _stop_after(self, t: float) -> float:
        return self.prod.effective_stop_after_s(self._product(t))

    def _code(self, role: str, v: Any) -> int:
        if role == "state":
            return self.mapper.cause(v)
        if role in ("running", "blocked", "starved"):
            if isinstance(v, str):
                return int(v.strip().lower() in ("1", "true", "on", "yes"))
            return int(bool(v))
        try:
            return int(v)
        except (TypeError, ValueError):
            return 0

    def _process_pending(self) -> None:
        if not self.pending:
            return
        pend, self.pending = self.pending, {}
        level_events: list[tuple[float, int, str, Any]] = []
        for role, rows in pend.items():
            if role in COUNTER_ROLES:
                continue
            steps = self.steps[role]
            if role in LEVEL_ROLES:
                codes = np.fromiter((self._code(role, v) for _, v in rows), dtype=np.int64, count=len(rows))
                if role in ("state", "fault_code"):
                    # keep the raw value's changes (two raw states may map to one cause)
                    raw = [v for _, v in rows]
                    keep = [i for i in range(len(raw)) if i == 0 or raw[i] != raw[i - 1]]
                else:
                    idx = np.empty(len(rows), dtype=np.int64)
                    k = level_changes(codes, self.level_state[role], idx)
                    keep = [int(i) for i in idx[:k]]
                for i in keep:
                    t, v = rows[i]
                    val = self._code(role, v) if role != "state" else v
                    if role in ("running", "blocked", "starved"):
                        val = bool(val)
                    steps.add(t, val)
                    if role != "fault_code":
                        level_events.append((t, LEVEL_ROLES.index(role), role, val))
            elif role.startswith("process."):
                steps.extend(rows)
            else:
                for t, v in rows:
                    steps.add(t, str(v))
        if self.level_mode and level_events:
            level_events.sort(key=lambda e: (e[0], e[1]))
            i = 0
            while i < len(level_events):
                t = level_events[i][0]
                while i < len(level_events) and level_events[i][0] == t:
                    i += 1
                self._set_cause(t, self._cause_at(t))
        for role in COUNTER_ROLES:
            if role in pend:
                self._counter_rows(role, pend[role])
        self._prune_process()

    def _prune_process(self) -> None:
        """Keep a process value's history only as far back as a stop can still open: a few
        seconds behind the newest sample, and (counter-only lines) back to the last part,
        where a counter-gap stop would start."""
        keep = self.last_ts - PROCESS_SLACK_S
        if not self.level_mode and self.open_stop is None and self.gap_state[0]:
            keep = min(keep, float(self.gap_state[1]))
        for role, steps in self.steps.items():
            if role.startswith("process."):
                steps.prune(keep)

    def _cause_at(self, t: float) -> int:
        if "state" in self.steps and self.steps["state"].ts:
            v = self.steps["state"].at(t)
            c = CAUSE_RUNNING if v is None else self.mapper.cause(v)
        elif "running" in self.steps:
            r = self.steps["running"].at(t)
            c = CAUSE_RUNNING if r is None or r else CAUSE_STOP
        else:
            c = CAUSE_RUNNING
        if c in (CAUSE_STOP, CAUSE_STARVED) and "blocked" in self.steps and self.steps["blocked"].at(t):
            return CAUSE_BLOCKED
        if c in (CAUSE_STOP, CAUSE_BLOCKED) and "starved" in self.steps and self.steps["starved"].at(t):
            return CAUSE_STARVED
        return c

    def _set_cause(self, t: float, cause: int) -> None:
        """Open or close a stop at a change of what the machine is doing.

        Samples of one instant may come in two chunks (a tick in between); the instant is
        then seen twice, and what the second look says wins, as in one batch: a stop that
        started at the instant takes the instant's final cause, and a stop that ended at the
        instant goes on (it is reopened) when the instant says the machine is stopped.
        """
        prev, self.cause = self.cause, cause
        if prev == CAUSE_RUNNING and cause != CAUSE_RUNNING:
            last = self._reopenable()
            if last is not None and last.end == t:
                self.closed.pop()
                last.end = None
                last.sent_cat = None  # its record said it had ended: send a new revision
                self.open_stop = last
            else:
                self.open_stop = self._new_stop(t, cause, gap=False)
        elif prev != CAUSE_RUNNING and cause == CAUSE_RUNNING and self.open_stop is not None:
            self._close(t)
        elif cause != CAUSE_RUNNING and self.open_stop is not None and self.open_stop.start == t:
            self.open_stop.cause = cause

    def _reopenable(self) -> _Stop | None:
        """The last closed stop while more samples of the instant it ended at may come."""
        if self.closed and not self.closed[-1].gap and (self.closed[-1].end or 0.0) >= self.last_ts:
            return self.closed[-1]
        return None

    def _counter_rows(self, role: str, rows: list[tuple[float, Any]]) -> None:
        c = self.counters[role]
        n = len(rows)
        ts = np.fromiter((t for t, _ in rows), dtype=np.float64, count=n)
        ok = np.ones(n, dtype=np.bool_)
        vals = np.zeros(n, dtype=np.int64)
        for i, (_, v) in enumerate(rows):
            try:
                x = int(float(v)) if not isinstance(v, int) else int(v)
                vals[i] = x - (1 << 64) if x >= (1 << 63) else x
            except (TypeError, ValueError, OverflowError):
                ok[i] = False
                self.bad_by_tag[role] = self.bad_by_tag.get(role, 0) + 1
        gaps = role == self.primary and not self.level_mode
        pts, pict, pafter = self._product_table()
        b = c.buf.ensure(n)
        counter_cycles(ts, vals, ok, c.lo, c.modulus, c.max_rate, pts, pict, pafter, self.prod.ideal_cycle_time_s,
                       self.prod.effective_stop_after_s(None), gaps, c.si, c.sf,
                       b.comp_idx, b.comp_n, b.comp_ict, b.ev_idx, b.ev_flag, b.ev_old, b.stop_s, b.stop_e, b.counts)
        nc, ne, ns = (int(x) for x in b.counts)
        for j in range(ne):
            i = int(b.ev_idx[j])
            kind = "counter_reset" if b.ev_flag[j] == FLAG_RESET else "implausible_count"
            self._event(float(ts[i]), kind, role, signal=role, old=int(b.ev_old[j]), new=int(vals[i]))
        idx = b.comp_idx[:nc]
        cts, cn = ts[idx], b.comp_n[:nc].astype(np.float64)
        c.append(cts, cn, b.comp_ict[:nc] / self.prod.parts_per_cycle)
        for t, k in zip(cts.tolist(), cn.tolist(), strict=True):
            m = self.minutes.setdefault(int(t // 60), [0, 0, 0, {}])
            m[COUNTER_ROLES.index(role)] += int(k)
            if role == self.primary:
                p = self._product(t)
                m[3][p] = m[3].get(p, 0) + int(k)
        if gaps and nc:
            self._gap_stops(b.stop_s[:ns].tolist(), b.stop_e[:ns].tolist(), float(cts[0]), float(b.comp_ict[0]))

    def _product_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The product step function for the kernel: change times, ideal cycle times, stop thresholds."""
        st = self.steps.get("product")
        if st is None or not st.ts:
            e = np.zeros(0, dtype=np.float64)
            return e, e, e
        names = [None if v is None else str(v) for v in st.vals]
        return (np.array(st.ts, dtype=np.float64),
                np.array([self.prod.ideal_cycle_time(v) for v in names], dtype=np.float64),
                np.array([self.prod.effective_stop_after_s(v) for v in names], dtype=np.float64))

    def _gap_stops(self, starts: list[float], ends: list[float], first_t: float, first_ict: float) -> None:
        for s, e in zip(starts, ends, strict=True):
            if self.open_stop is None or self.open_stop.start != s:
                if self.open_stop is not None:  # cannot happen: an open gap stop starts at t_prev
                    self._close(max(self.open_stop.start, s))
                self.open_stop = self._new_stop(s, CAUSE_STOP, gap=True)
            self._close(e)
        if self.open_stop is not None and self.open_stop.gap:
            # cannot happen either: a stop opened live passed the threshold the kernel uses
            self._close(max(self.open_stop.start, first_t - first_ict))

    # ------------------------------------------------------------ stops

    def _reason(self, st: _Stop, upto: float) -> None:
        """The fault code active at the stop's start, else the first one set during it
        (before ``upto``, the end or what is known of it), else the mapped state at its start.

        A fault code is final once found. The state is a fallback while the stop is open: a
        fault code set later during the stop replaces it, as a batch run would find.
        """
        if st.reason_source == "plc":
            return
        fc = self.steps.get("fault_code")
        if st.reason_source in MANUAL_SOURCES:
            # a person's reason wins; a disagreeing fault code is reported, not applied
            if fc is not None and not st.plc_conflict:
                v = fc.at(st.start)
                found = (st.start, v) if v not in (None, 0) else fc.first_set(st.start, upto)
                if found is not None and str(found[1]) != str(st.reason):
                    st.plc_conflict = True
                    self._event(st.start, "plc_reason_overridden", str(_ms(st.start)),
                                stop_id=self._stop_id(st), plc_reason=found[1], reason=st.reason,
                                reason_source=st.reason_source)
            return
        if fc is not None:
            v = fc.at(st.start)
            if v not in (None, 0):
                st.reason, st.reason_source = v, "plc"
                return
            first = fc.first_set(st.start, upto)
            if first is not None:
                st.reason, st.reason_source = first[1], "plc"
                return
        if "state" in self.steps and not st.gap:
            v = self.steps["state"].at(st.start)
            if v is not None and self.mapper.cause(v) != CAUSE_RUNNING:
                st.reason, st.reason_source = v, "state"

    def _planned(self, st: _Stop) -> bool:
        if st.reason_source in ("plc", *MANUAL_SOURCES):
            try:
                r = self.prod.reasons.get(int(st.reason))
            except (TypeError, ValueError):
                r = None
            return bool(r and r.planned)
        return False

    def _category(self, st: _Stop, now: float) -> int:
        end = st.end if st.end is not None else now
        return classify_stop(end - st.start, st.cause, self._planned(st), self.prod.micro_stop_max_s)

    def _settled(self, st: _Stop, now: float) -> bool:
        """An open stop's category can no longer change."""
        if st.end is not None:
            return True
        if self._min_end(st, now) - st.start < self.prod.micro_stop_max_s:
            return False
        return st.reason_source in ("plc", *MANUAL_SOURCES) or "fault_code" not in self.steps

    def _min_end(self, st: _Stop, now: float) -> float:
        """The earliest end an open stop can still get: a gap stop ends one ideal cycle
        before the next completion, whose product is not known yet."""
        return now - self.max_ict if st.gap else now

    def _close(self, t: float) -> None:
        st = self.open_stop
        assert st is not None
        self.open_stop = None
        st.end = max(t, st.start)
        self._reason(st, st.end)
        st.category = self._category(st, st.end)
        if st.end > st.start or st.rev >= 0:
            self.closed.append(st)
            self._emit_stop(st, st.end)

    def _emit_stop(self, st: _Stop, now: float) -> None:
        st.rev = _next_rev(st.rev, now)
        st.sent_cat, st.sent_reason = st.category, st.reason
        code = st.reason
        text = cat = None
        if st.reason_source == "plc":
            try:
                r = self.prod.reasons.get(int(code))
            except (TypeError, ValueError):
                r = None
            if r is not None:
                text, cat = r.text, r.category
        elif st.reason_source == "state":
            text = self.mapper.name(code)
            code = code if isinstance(code, (int, str)) else str(code)
        elif st.reason_source in MANUAL_SOURCES:
            text, cat = st.reason_text, st.reason_category
        sh = self.cal.shift_at(st.start)
        if st.process is None:
            st.process = {r[8:]: s.at(st.start) for r, s in self.steps.items() if r.startswith("process.")}
        process = st.process

        def ctx(role: str) -> str | None:
            s = self.steps.get(role)
            v = s.at(st.start) if s is not None else None
            return None if v is None else str(v)

        rid = self._stop_id(st)
        self.out.append(
            StopRecord(
                **self._common(rid, st.rev, now),
                start=format_ts(st.start),
                end=None if st.end is None else format_ts(st.end),
                duration_s=round((st.end if st.end is not None else now) - st.start, 3),
                category=CAT_NAMES[st.category],  # type: ignore[arg-type]
                reason_code=code,
                reason_text=text,
                reason_category=cat,
                reason_source=st.reason_source,  # type: ignore[arg-type]
                shift=sh.name if sh else None,
                order=ctx("order"),
                product=ctx("product"),
                operator=ctx("operator"),
                process=process,
            )
        )

    # ------------------------------------------------------------ reasons and context set later

    def _stop_id(self, st: _Stop) -> str:
        return natural_id(self.cfg.line.id, "stop", _ms(st.start))

    def find_stop(self, stop_id: str) -> _Stop | None:
        """The stop with this id while the processor still keeps it (open or recently closed)."""
        if self.open_stop is not None and self._stop_id(self.open_stop) == stop_id:
            return self.open_stop
        for st in reversed(self.closed):
            if self._stop_id(st) == stop_id:
                return st
        return None

    def set_reason(
        self,
        stop_id: str,
        code: int | str,
        *,
        source: str,
        text: str | None = None,
        category: str | None = None,
        at: float,
    ) -> list[Record]:
        """A person's reason for a stop (see the module docstring for the precedence).

        Returns the stop's new revision (same id, rev + 1, ``reason_source`` = ``source``) and,
        when its category changed, the KPI records of every interval it touches, computed
        again (plus events). ``text``/``category`` default to the configured reason's.
        Raises KeyError when the processor does not keep this stop (unknown, or closed longer
        ago than what it keeps: the caller then decides, see ``edge.reasons``), ValueError for
        a source other than operator/central.
        """
        if source not in MANUAL_SOURCES:
            raise ValueError(f"reason source must be one of {MANUAL_SOURCES}, got {source!r}")
        self._process_pending()
        st = self.find_stop(stop_id)
        if st is None:
            raise KeyError(stop_id)
        mark = len(self.out)
        now = max(at, self.watermark, st.start)
        try:
            r = self.prod.reasons.get(int(code))
        except (TypeError, ValueError):
            r = None
        st.reason, st.reason_source = code, source
        st.reason_text = text if text is not None else (r.text if r else None)
        st.reason_category = category if category is not None else (r.category if r else None)
        st.plc_conflict = False
        old_cat = st.category
        st.category = self._category(st, now)
        self._emit_stop(st, now)
        if st.category != old_cat:
            self._recompute(st.start, st.end if st.end is not None else now, now)
        out = self.out[mark:]
        del self.out[mark:]
        return out

    def _recompute(self, s: float, e: float, now: float) -> None:
        """KPI records again for every interval [a, b) that overlaps the stop [s, e)."""
        skipped: list[str] = []

        def touches(a: float, b: float | None) -> bool:
            return a < max(e, s + 1e-3) and (b is None or b > s)

        for kind in self.cfg.kpi.intervals:
            if kind == "order":
                for i, (a, b, name) in enumerate(self._orders(now)):
                    if not touches(a, b):
                        continue
                    if i < self.order_final_idx and b is not None:
                        if a < self.kept_from:
                            skipped.append(f"order:{name}")
                        else:
                            self._kpi("order", a, b, now, True, name)
                    elif b is None:
                        self._kpi("order", a, max(now, a), now, False, name)
                continue
            cursor = self.final_cursor.get(kind, -math.inf)
            for a, b, label in self._candidates(kind, s, max(e, s + 1e-3)):
                if not touches(a, b) or a > now:
                    continue
                if b <= cursor:
                    if a < self.kept_from:
                        skipped.append(f"{kind}:{format_ts(a)}")
                    else:
                        self._kpi(kind, a, b, now, True, label)
                else:
                    self._kpi(kind, a, b, now, False, label)
        if skipped:
            self._event(now, "kpi_not_recomputed", str(_ms(s)), intervals=skipped,
                        why="older than the data the processor keeps")

    def set_context(self, role: str, value: str | None, at: float) -> None:
        """Order, product or operator from outside (the central store), applied from ``at`` on
        (or from the last change already known, whichever is later) as if the signal changed."""
        if role not in CONTEXT_ROLES:
            raise ValueError(f"context role must be one of {CONTEXT_ROLES}, got {role!r}")
        self._process_pending()
        steps = self.steps.setdefault(role, _Steps())
        t = max(at, steps.ts[-1]) if steps.ts else at
        steps.add(t, None if value in (None, "") else str(value))

    # ------------------------------------------------------------ restart

    def carry_in(self, records: Iterable[Record]) -> None:
        """KPI records of the intervals still open when the previous processor stopped (the
        latest revision of each, as ``LineBuffer.history`` gives them back); call before the
        first ``feed``.

        Their additive figures for [interval start, end of what they measured) are added to
        what this processor measures from there on, so the interval keeps its id, gets a
        higher revision and loses neither part. What they measured ends at the record's
        ``start + all_time_s`` for a provisional one; a final one sent by ``finish`` at a
        shutdown before the interval's end (its ``ts`` before its ``end``) measured up to its
        ``ts`` (+ the 1 ms of the last sample) and counted the rest as unknown: that tail is
        taken out again. Other records, and final ones of ended intervals, are ignored.
        Orders: a still running order (provisional record) is taken as the order in force
        from its start, so a first order sample of the same value continues it.
        """
        latest: dict[str, KpiRecord] = {}
        for r in records:
            if isinstance(r, KpiRecord) and r.line == self.cfg.line.id and (
                    r.id not in latest or r.rev > latest[r.id].rev):
                latest[r.id] = r
        for r in sorted(latest.values(), key=lambda r: parse_ts(r.start)):
            a, b, ts = parse_ts(r.start), parse_ts(r.end), parse_ts(r.ts)
            sums = _record_sums(r)
            if r.interval == "order":
                if r.final or r.order is None:
                    continue
                c = a + r.all_time_s
                steps = self.steps.setdefault("order", _Steps())
                if not steps.ts or steps.ts[-1] < a:
                    steps.add(a, r.order)
            elif not r.final:
                c = a + r.all_time_s
            elif ts < b:
                c = min(ts + 0.001, b)
                sched, ns, br = self.cal.scheduled(c, b)
                sums.all_time_s -= b - c
                sums.not_scheduled_s -= ns
                sums.planned_break_s -= br
                sums.unknown_s -= measure(clip(sched, c, b))
            else:
                continue
            self.carried[r.id] = (c, sums, list(r.products))
            self.kpi_rev[r.id] = max(self.kpi_rev.get(r.id, -1), r.rev)

    # ------------------------------------------------------------ tick

    def tick(self, now: float) -> list[Record]:
        """Records new or changed since the last call (see the class docstring)."""
        # time before the first sample is unknown: a tick alone does not start the processor
        self._process_pending()
        if self.t0 is None:
            return []
        self.watermark = max(self.watermark, now, self.last_ts)
        now = self.watermark
        if not self.level_mode and self.open_stop is None and self.gap_state[0] and self.unknown_since is None:
            t_prev = float(self.gap_state[1])
            if now - t_prev > self._stop_after(t_prev):
                self.open_stop = self._new_stop(t_prev, CAUSE_STOP, gap=True)
        st = self.open_stop
        # a stop that started at this very instant waits for the next tick: more samples of
        # the instant may still come and cancel it or change its cause or reason
        if st is not None and st.start < now:
            self._reason(st, self._min_end(st, now))
            st.category = self._category(st, now)
            if st.rev < 0 or st.category != st.sent_cat or st.reason != st.sent_reason:
                self._emit_stop(st, now)
        self._emit_states(self._state_limit())
        self._emit_minutes(now)
        self._finals(now)
        if now >= self.next_provisional:
            self.next_provisional = now + self.cfg.kpi.provisional_every_s
            self._provisionals(now)
        out, self.out = self.out, []
        return out

    def finish(self, end_ts: float) -> list[Record]:
        """Close everything at ``end_ts``; final KPIs for every interval covered."""
        self._process_pending()
        self._start(end_ts)
        end_ts = max(end_ts, self.last_ts)
        if self.level_mode:
            if self.open_stop is not None:
                self._close(end_ts)
        else:
            self._close_gap_at(end_ts)
        if self.unknown_since is not None:
            self.unknown.append((self.unknown_since, end_ts))
            self.unknown_since = None
        # the last sample's own millisecond is covered: a part counted at end_ts is in PPT
        self.t_end = end_ts + 0.001
        self.watermark = max(self.watermark, end_ts)
        self._emit_states(end_ts)
        if self.state_carry is not None:
            self._emit_state(self.state_carry[0], end_ts, self.state_carry[1])
            self.state_carry = None
        self._emit_minutes(math.inf)
        self._finals(end_ts, finishing=True)
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------ states and counts

    def _state_limit(self) -> float:
        lim = self.watermark
        last = self._reopenable()
        if last is not None:
            lim = min(lim, last.start)
        if self.open_stop is not None:
            lim = min(lim, self.open_stop.start)
        if not self.level_mode and self.gap_state[0]:
            lim = min(lim, float(self.gap_state[1]))
        if self.unknown_since is not None:
            lim = min(lim, self.unknown_since)
        return lim

    def _unknown_windows(self, upto: float) -> Windows:
        w = list(self.unknown)
        if self.unknown_since is not None:
            w.append((self.unknown_since, upto))
        if self.t0 is not None:
            w.append((-math.inf, self.t0))
        if self.t_end is not None:
            w.append((self.t_end, math.inf))
        return normalize(w)

    def _segments(self, a: float, upto: float, now: float | None = None) -> list[tuple[float, float, str]]:
        """§7 states over [a, upto): calendar first (not_scheduled, planned_break), then
        unknown, then the stops by category, else running. With ``now``, the open stop is
        in as well (its category as of now). Adjacent equal states are merged."""
        if upto <= a:
            return []
        bounds = {a, upto}
        kinds: list[tuple[float, float, int, str]] = []
        for g in self.cal.segments(a, upto):
            if g.kind != "scheduled":
                kinds.append((g.start, g.end, 0, g.kind))
        for s, e in self._unknown_windows(upto):
            if e > a and s < upto:
                kinds.append((max(s, a), min(e, upto), 1, "unknown"))
        first = bisect.bisect_left([s.end or 0.0 for s in self.closed], a)
        stops = [(st.start, st.end or 0.0, st.category) for st in self.closed[max(0, first - 1):]]
        if now is not None and self.open_stop is not None:
            st = self.open_stop
            stops.append((st.start, now - (self._ict(st.start) if st.gap else 0.0), self._category(st, now)))
        for s, e, cat in stops:
            if e > a and s < upto:
                kinds.append((max(s, a), min(e, upto), 2, CAT_NAMES[cat]))
        for s, e, _, _ in kinds:
            bounds.update((s, e))
        pts = sorted(b for b in bounds if a <= b <= upto)
        kinds.sort(key=lambda k: k[2])
        out: list[tuple[float, float, str]] = []
        for s, e in itertools.pairwise(pts):
            mid = (s + e) / 2
            state = next((k[3] for k in kinds if k[0] <= mid < k[1]), "running")
            if out and out[-1][2] == state:
                out[-1] = (out[-1][0], e, state)
            else:
                out.append((s, e, state))
        return out

    def _emit_states(self, upto: float) -> None:
        a = self.state_cursor
        if a is None or upto <= a:
            return
        for s, _, state in self._segments(a, upto):
            if self.state_carry is None:
                self.state_carry = (s, state)
            elif self.state_carry[1] != state:
                self._emit_state(self.state_carry[0], s, self.state_carry[1])
                self.state_carry = (s, state)
        self.state_cursor = upto

    def _emit_state(self, s: float, e: float, state: str) -> None:
        rid = natural_id(self.cfg.line.id, "state", _ms(s))
        self.out.append(
            StateRecord(**self._common(rid, 0, e), start=format_ts(s), end=format_ts(e), state=state)  # type: ignore[arg-type]
        )

    def _emit_minutes(self, now: float) -> None:
        limit = now // 60
        for m in sorted(k for k in self.minutes if k < limit):
            tot, good, rej, prods = self.minutes.pop(m)
            if "total_count" not in self.counters:
                tot = good + rej
            if "good_count" not in self.counters:
                good = tot - rej
            elif "reject_count" not in self.counters:
                rej = tot - good
            prod = max(prods, key=prods.get) if prods else None
            rid = natural_id(self.cfg.line.id, "count", m * 60_000)
            self.out.append(
                CountRecord(**self._common(rid, 0, min(now, (m + 1) * 60.0)), start=format_ts(m * 60.0),
                            end=format_ts((m + 1) * 60.0), total=tot, good=good, reject=rej, product=prod)
            )

    # ------------------------------------------------------------ KPIs

    def _stop_arrays(self, now: float, include_open: bool) -> StopArrays:
        stops = [(s.start, s.end, s.category) for s in self.closed if s.end is not None]
        st = self.open_stop
        if include_open and st is not None:
            end = now - (self._ict(st.start) if st.gap else 0.0)
            if end > st.start:
                stops.append((st.start, end, self._category(st, now)))
        return StopArrays(
            np.array([s[0] for s in stops], dtype=np.float64),
            np.array([s[1] for s in stops], dtype=np.float64),
            np.array([s[2] for s in stops], dtype=np.int64),
        )

    def figures(self, a: float, b: float, now: float, include_open: bool = True) -> KpiFigures:
        """KPIs of [a, b) with what is known at ``now`` (open stops end at ``now``)."""
        return kpis_from_sums(self._sums(a, b, now, include_open))

    def _sums(self, a: float, b: float, now: float, include_open: bool = True) -> IntervalSums:
        sched, ns, br = self.cal.scheduled(a, b)
        get = self.counters.get
        total = get(self.primary)
        assert total is not None
        good = get("good_count") if self.primary == "total_count" else None
        rej = get("reject_count")
        tot_stream = total.stream()
        if self.primary == "good_count" and rej is not None:
            r = rej.stream()
            order = np.argsort(np.concatenate([tot_stream.ts, r.ts]), kind="stable")
            tot_stream = CountStream(*(np.concatenate([x, y])[order] for x, y in
                                       ((tot_stream.ts, r.ts), (tot_stream.n, r.n), (tot_stream.ict, r.ict))))
            good = total
        return interval_figures(
            a, b, sched, ns, br, self._unknown_windows(now), self._stop_arrays(now, include_open), tot_stream,
            good.stream() if good is not None else None, rej.stream() if rej is not None else None,
            self.prod.startup_s,
        )

    def _candidates(self, kind: str, a: float, b: float) -> list[tuple[float, float, str | None]]:
        if kind == "hour":
            return [(s, e, None) for s, e in self.cal.hours(a, b)]
        if kind == "day":
            return [(s, e, None) for s, e in self.cal.days(a, b)]
        if kind == "shift":
            return [(sh.start, sh.end, sh.name) for sh in self.cal.shifts(a, b) if sh.name is not None]
        return []

    def _orders(self, upto: float) -> list[tuple[float, float | None, str]]:
        st = self.steps.get("order")
        if st is None:
            return []
        out: list[tuple[float, float | None, str]] = []
        for i, (t, v) in enumerate(zip(st.ts, st.vals, strict=True)):
            end = st.ts[i + 1] if i + 1 < len(st.ts) else None
            if v not in (None, ""):
                out.append((t, end, str(v)))
        return out

    def _final_ok(self, a: float, b: float, now: float) -> bool:
        if now < b:
            return False
        last = self._reopenable()
        if last is not None and last.start < b and not (
            now - last.start >= self.prod.micro_stop_max_s
            and (last.reason_source in ("plc", *MANUAL_SOURCES) or "fault_code" not in self.steps)
        ):
            return False
        st = self.open_stop
        if st is not None and st.start < b:
            if not (self._settled(st, now) and self._min_end(st, now) >= b):
                return False
        if not self.level_mode and self.open_stop is None and self.gap_state[0] and float(self.gap_state[1]) < b:
            return False
        return not (self.unknown_since is not None and self.unknown_since < b)

    def _kpi(self, kind: str, a: float, b: float, now: float, final: bool, name: str | None) -> None:
        key = f"{_ms(a)}" if kind != "order" else f"{_ms(a)}:{name}"
        rid = natural_id(self.cfg.line.id, "kpi", kind, key)
        rev = _next_rev(self.kpi_rev.get(rid, -1), now)
        self.kpi_rev[rid] = rev
        upto = b if final else min(b, now)
        carried = self.carried.get(rid)
        if carried is None:
            f = self.figures(a, upto, now)
            prods = self._products(a, upto)
        else:
            # the predecessor's [a, c) plus what this processor measured from c on (its time
            # before the first input, the restart gap, is unknown); ratios from the sums
            c, before, old_prods = carried
            lo = min(max(a, c), upto)
            f = kpis_from_sums(_add_sums(before, self._sums(lo, upto, now)))
            prods = sorted({*old_prods, *self._products(lo, upto)})
        sh = name if kind == "shift" else (None if kind == "order" else self._shift_name((a + b) / 2))
        self.out.append(
            KpiRecord(
                **self._common(rid, rev, now), interval=kind, start=format_ts(a), end=format_ts(b),  # type: ignore[arg-type]
                shift=sh, order=name if kind == "order" else None, products=prods,
                all_time_s=f.all_time_s, not_scheduled_s=f.not_scheduled_s, planned_break_s=f.planned_break_s,
                unknown_s=f.unknown_s, planned_production_time_s=f.planned_production_time_s,
                stop_time_s=f.stop_time_s, run_time_s=f.run_time_s, micro_stop_time_s=f.micro_stop_time_s,
                micro_stop_count=f.micro_stop_count, unplanned_stop_count=f.unplanned_stop_count,
                planned_stop_count=f.planned_stop_count, unplanned_stop_time_s=f.unplanned_stop_time_s,
                planned_stop_time_s=f.planned_stop_time_s, total_count=f.total_count, good_count=f.good_count,
                reject_count=f.reject_count, counts_outside_ppt=f.counts_outside_ppt, ideal_time_s=f.ideal_time_s,
                availability=f.availability, performance=f.performance, quality=f.quality, oee=f.oee,
                teep=f.teep, mtbf_s=f.mtbf_s, mttr_s=f.mttr_s,
                losses=Losses(unplanned_stops_s=f.loss_unplanned_s, planned_stops_s=f.loss_planned_s,
                              micro_stops_s=f.loss_micro_s, slow_cycles_s=f.loss_slow_cycles_s,
                              production_rejects_s=f.loss_production_rejects_s,
                              startup_rejects_s=f.loss_startup_rejects_s),
                iso22400=Iso22400(pbt_s=f.iso_pbt_s, apt_s=f.iso_apt_s, adet_s=f.iso_adet_s,
                                  availability=f.iso_availability, effectiveness=f.iso_effectiveness,
                                  quality_ratio=f.iso_quality_ratio, oee_index=f.iso_oee_index,
                                  scrap_ratio=f.iso_scrap_ratio, throughput_rate=f.iso_throughput_rate),
                final=final,
            )
        )

    def _shift_name(self, t: float) -> str | None:
        sh = self.cal.shift_at(t)
        return sh.name if sh else None

    def _products(self, a: float, b: float) -> list[str]:
        st = self.steps.get("product")
        if st is None:
            return []
        i0 = max(0, bisect.bisect_right(st.ts, a) - 1)
        i1 = bisect.bisect_left(st.ts, b)
        return sorted({str(v) for v in st.vals[i0:i1] if v is not None})

    def _finals(self, now: float, finishing: bool = False) -> None:
        if self.t0 is None:
            return
        for kind in self.cfg.kpi.intervals:
            if kind == "order":
                orders = self._orders(now)
                while self.order_final_idx < len(orders):
                    a, b, name = orders[self.order_final_idx]
                    if b is None:
                        if not finishing:
                            break
                        b = now
                    if not finishing and not self._final_ok(a, b, now):
                        break
                    self._kpi("order", a, b, now, True, name)
                    self.order_final_idx += 1
                continue
            cursor = self.final_cursor.get(kind, self.t0)
            for a, b, label in self._candidates(kind, cursor, now):
                if b <= cursor:
                    continue
                if not finishing and not self._final_ok(a, b, now):
                    break
                self._kpi(kind, a, b, now, True, label)
                self.final_cursor[kind] = b
        self._prune()

    def _provisionals(self, now: float) -> None:
        for kind in self.cfg.kpi.intervals:
            if kind == "order":
                orders = self._orders(now)
                if orders and orders[-1][1] is None and self.order_final_idx < len(orders):
                    a, _, name = orders[-1]
                    self._kpi("order", a, max(now, a), now, False, name)
                continue
            for a, b, label in self._candidates(kind, now, now + 1e-6):
                if a <= now < b and b > self.final_cursor.get(kind, -math.inf):
                    self._kpi(kind, a, b, now, False, label)

    def _prune(self) -> None:
        keep = min([self.final_cursor.get(k, self.t0 or 0.0) for k in self.cfg.kpi.intervals if k != "order"]
                   + [self.watermark - 86400.0 * 2])
        orders = self._orders(self.watermark)
        if self.order_final_idx < len(orders):
            keep = min(keep, orders[self.order_final_idx][0])
        if self.open_stop is not None:
            keep = min(keep, self.open_stop.start)
        if self.state_cursor is not None:
            keep = min(keep, self.state_cursor - 1.0)
        keep -= 86400.0  # a day of slack: shift candidates look back
        self.kept_from = max(self.kept_from, keep)
        for c in self.counters.values():
            c.prune(keep)
        for s in self.steps.values():
            s.prune(keep)
        i = 0
        while i < len(self.closed) and (self.closed[i].end or 0.0) < keep:
            i += 1
        if i:
            del self.closed[:i]
        self.unknown = [w for w in self.unknown if w[1] >= keep]

    # ------------------------------------------------------------ status page

    def snapshot(self, now: float, last_stops: int = 10) -> dict[str, Any]:
        """Live view for the status page. Keys:

        ``state`` (current timeline state), ``state_since`` (RFC 3339), ``shift`` (name or
        null), ``shift_start``/``shift_end``, ``availability``/``performance``/``quality``/
        ``oee`` of the current shift (or day without shifts; null when undefined),
        ``total``/``good``/``reject`` of that interval, ``target`` (parts the ideal cycle time
        allows in its planned production time so far), ``last_stops`` (newest first: id,
        start, end, duration_s, category, reason_code, reason_text), ``top_reasons``
        (reason -> stop seconds, largest first, up to 5), ``timeline`` (the shift's
        state timeline so far, oldest first: {start, end, state}, states of
        KPI_DEFINITIONS.md §7, end null for the segment going on now), ``bad_samples`` (per tag).
        """
        sh = self.cal.shift_at(now)
        if sh is not None and sh.name is not None:
            a, b = sh.start, sh.end
        else:
            a, b = self.cal.days(now, now + 1e-6)[0]
        f = self.figures(a, min(b, now), now) if self.t0 is not None and self.counters else None
        stops = [s for s in self.closed if s.end is not None and s.end > a]
        if self.open_stop is not None:
            stops.append(self.open_stop)
        reasons: dict[str, float] = {}
        for s in stops:
            end = s.end if s.end is not None else now
            key = str(s.reason) if s.reason is not None else "unknown"
            reasons[key] = reasons.get(key, 0.0) + end - max(s.start, a)
        if self.open_stop is not None:
            state, since = CAT_NAMES[self._category(self.open_stop, now)], self.open_stop.start
        elif self.state_carry is not None:
            state, since = self.state_carry[1], self.state_carry[0]
        else:
            state, since = ("unknown" if self.unknown_since else "running"), (self.t0 or now)
        if self.unknown_since is not None:
            state, since = "unknown", self.unknown_since
        # the shift's whole state timeline so far; the last segment is still going on
        segs = self._segments(a, min(b, now), now) if self.t0 is not None else []
        timeline = [{"start": format_ts(s), "end": format_ts(e) if i + 1 < len(segs) or now >= b else None, "state": k}
                    for i, (s, e, k) in enumerate(segs)]
        return {
            "state": state,
            "state_since": format_ts(since),
            "shift": sh.name if sh else None,
            "shift_start": format_ts(a),
            "shift_end": format_ts(b),
            "availability": f.availability if f else None,
            "performance": f.performance if f else None,
            "quality": f.quality if f else None,
            "oee": f.oee if f else None,
            "total": f.total_count if f else 0,
            "good": f.good_count if f else 0,
            "reject": f.reject_count if f else 0,
            "target": int(f.planned_production_time_s / self._ict(now)) if f else 0,
            "last_stops": [
                {"id": natural_id(self.cfg.line.id, "stop", _ms(s.start)), "start": format_ts(s.start),
                 "end": None if s.end is None else format_ts(s.end),
                 "duration_s": round((s.end if s.end is not None else now) - s.start, 3),
                 "category": CAT_NAMES[self._category(s, now)], "reason_code": s.reason,
                 "reason_text": self._reason_text(s.reason)}
                for s in reversed(stops[-last_stops:])
            ],
            "top_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5]),
            "timeline": timeline,
            "bad_samples": dict(self.bad_by_tag),
        }

    def _reason_text(self, code: Any) -> str | None:
        try:
            r = self.prod.reasons.get(int(code))
        except (TypeError, ValueError):
            return None
        return r.text if r else None
