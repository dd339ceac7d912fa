"""Plain-Python reference of KPI_DEFINITIONS.md (§2–5, §7), for tests only.

Written from the definitions, not from the kernels or the live processor: readable and slow.
:class:`Reference` takes a sample history (``(ts, role, value, good)``), the line config and
the end of the run, and gives the stops, the state timeline, the intervals and every KPI of
an interval. The property tests check that :mod:`kpi_core` and :mod:`edge.processor` agree
with it.

Where the definitions leave a choice open, this follows the choices documented in
``edge/processor.py`` and ``kpi_core/calendar.py`` (listed at the point they matter):

- an instant is a run of samples with the same timestamp; what the machine does after it is
  what its last values say (a stop is never opened and closed within one instant);
- time before the first input and after the end (+1 ms, the last sample's own millisecond) is
  ``unknown``, as is an outage: from a disconnect of a PLC that serves counters, running or
  state, to the moment every PLC is connected again. At a disconnect the level signals
  (running, state, fault code, blocked, starved) become unknown and an open stop ends; a
  counter keeps its baseline; a counter-only line forgets its last completion;
- a stop's cause is the one at its start; a stop lasting under ``micro_stop_max_s`` is a
  micro-stop whatever its cause; blocked/starved stops are availability loss (and in the
  unplanned six-big-loss) but not failures (not in the unplanned count, MTBF, MTTR);
- the fault code of a stop is the one active at its start, else the first one set strictly
  inside it, else (state lines) the mapped state at its start;
- counter gaps: the stop threshold is the one of the product in force at the last
  completion; the back-dating uses the ideal cycle time of the part that ends the gap; parts
  counted at the instant the product changes were made under the old product;
- only a whole-hour UTC offset is supported for hours here (hours are UTC hours), which
  Europe/* and UTC are.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from config.models import LineConfig

__all__ = [
    "RefStop",
    "Reference",
    "ref_counter_deltas",
    "ref_gap_stops",
    "ref_stop_time_in_windows",
]

COUNTERS = ("total_count", "good_count", "reject_count")
LEVELS = ("running", "state", "fault_code", "blocked", "starved")

# §2: (lowest value, number of values) of each counter type; 64-bit counters never wrap in a
# plant's lifetime, so a drop there is always a reset (and floats have no known width)
COUNTER_RANGE: dict[str, tuple[int, int]] = {
    "uint16": (0, 65536),
    "int16": (-32768, 65536),
    "uint32": (0, 4294967296),
    "int32": (-2147483648, 4294967296),
}

# §7: the ready state mappings, by name
PACKML_NAMES = ["Undefined", "Clearing", "Stopped", "Starting", "Idle", "Suspended", "Execute", "Stopping",
                "Aborting", "Aborted", "Holding", "Held", "Unholding", "Suspending", "Unsuspending",
                "Resetting", "Completing", "Complete"]
MACHINERY_NAMES = ["NotAvailable", "OutOfService", "NotExecuting", "Executing"]
READY_MEANING = {"Execute": "running", "Executing": "running", "Suspended": "starved",
                 "OutOfService": "planned_stop"}

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def ref_counter_deltas(
    ts: list[float], values: list[int | None], lo: int, modulus: int, max_rate: float
) -> list[int]:
    """Parts per sample; None is a bad sample (skipped, baseline kept)."""
    out: list[int] = []
    last: int | None = None
    last_t = 0.0
    for t, v in zip(ts, values, strict=True):
        if v is None:
            out.append(0)
            continue
        if last is None:
            out.append(0)
            last, last_t = v, t
            continue
        delta = v - last
        if delta < 0:
            top = lo + modulus - 1
            if modulus and last > top - modulus // 10:
                delta += modulus  # rollover
            else:
                delta = max(v, 0)  # reset: counting restarted from zero
        plausible = delta <= max_rate * max(t - last_t, 0.0) + 1
        out.append(delta if plausible else 0)
        last, last_t = v, t
    return out


def ref_gap_stops(done: list[float], ict: list[float], stop_after: list[float]) -> list[tuple[float, float]]:
    """Counter-only stops between consecutive completion times."""
    stops = []
    for i in range(1, len(done)):
        if done[i] - done[i - 1] > stop_after[i] and done[i] - ict[i] > done[i - 1]:
            stops.append((done[i - 1], done[i] - ict[i]))
    return stops


def ref_stop_time_in_windows(
    windows: list[tuple[float, float]], stops: list[tuple[float, float, int]]
) -> tuple[list[float], list[int]]:
    times = [0.0] * 5
    counts = [0] * 5
    for s, e, cat in stops:
        inside = sum(max(0.0, min(e, we) - max(s, ws)) for ws, we in windows)
        if inside > 0:
            times[cat] += inside
            counts[cat] += 1
    return times, counts


# ---------------------------------------------------------------- small helpers


def _overlap(s: float, e: float, windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e, we) - max(s, ws)) for ws, we in windows)


def _inside(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(ws <= t < we for ws, we in windows)


def _cut(windows: list[tuple[float, float]], holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``windows`` without ``holes`` (both lists of half-open windows)."""
    out = list(windows)
    for hs, he in holes:
        nxt = []
        for ws, we in out:
            if he <= ws or hs >= we:
                nxt.append((ws, we))
                continue
            if hs > ws:
                nxt.append((ws, hs))
            if he < we:
                nxt.append((he, we))
        out = nxt
    return sorted(w for w in out if w[1] > w[0])


def _div(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _is_true(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "on", "yes")
    return bool(v)


def _as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class RefStop:
    start: float
    end: float
    category: str  # micro_stop | unplanned_stop | planned_stop | blocked | starved
    reason: Any
    cause: str  # stop | planned_stop | blocked | starved


@dataclass
class _Part:
    ts: float
    n: int
    ideal_s: float  # ideal time of one part of this product
    seq: int  # index of its sample in the run


@dataclass
class _Calendar:
    """Shift occurrences in epoch seconds, from the local wall-clock times of the config."""

    cfg: LineConfig
    tz: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.cfg.timezone)

    def wall(self, d: date, minutes: int) -> float:
        d = d + timedelta(days=minutes // 1440)
        minutes %= 1440
        return datetime(d.year, d.month, d.day, minutes // 60, minutes % 60, tzinfo=self.tz).timestamp()

    @staticmethod
    def minutes(clock: str) -> int:
        h, m = clock.split(":")
        return 60 * int(h) + int(m)

    def occurrences(self, a: float, b: float) -> list[tuple[str | None, float, float, list[tuple[float, float]]]]:
        """(name, start, end, breaks) of every shift touching [a, b); the earlier of two
        overlapping shifts keeps the overlap; no shifts configured: every whole day."""
        first = datetime.fromtimestamp(a, self.tz).date() - timedelta(days=2)
        last = datetime.fromtimestamp(b, self.tz).date() + timedelta(days=1)
        found = []
        d = first
        while d <= last:
            wd = WEEKDAYS[d.weekday()]
            specs: list[tuple[str | None, int, int]] = []
            if not self.cfg.calendar.shifts:
                specs.append((None, 0, 1440))
            for sh in self.cfg.calendar.shifts:
                if wd in sh.days:
                    s, e = self.minutes(sh.start), self.minutes(sh.end)
                    specs.append((sh.name, s, e if e > s else e + 1440))
            for name, s, e in specs:
                start, end = self.wall(d, s), self.wall(d, e)
                brk = []
                for br in self.cfg.calendar.breaks:
                    if br.shift is not None and br.shift != name:
                        continue
                    if br.days is not None and wd not in br.days:
                        continue
                    bs, be = self.minutes(br.start), self.minutes(br.end)
                    if be <= bs:
                        be += 1440
                    for day_offset in (0, 1440):  # a break after midnight of a night shift
                        brk.append((self.wall(d, bs + day_offset), self.wall(d, be + day_offset)))
                found.append((start, end, name, brk))
            d += timedelta(days=1)
        found.sort(key=lambda x: x[0])
        out = []
        taken_until = -math.inf
        for start, end, name, brk in found:
            start = max(start, taken_until)
            if end <= start:
                continue
            taken_until = end
            if end > a and start < b:
                mine = [(max(bs, start), min(be, end)) for bs, be in brk if be > start and bs < end]
                out.append((name, start, end, mine))
        return out

    def split(self, a: float, b: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(scheduled windows without breaks, break windows) inside [a, b)."""
        sched: list[tuple[float, float]] = []
        breaks: list[tuple[float, float]] = []
        for _, s, e, brk in self.occurrences(a, b):
            s, e = max(s, a), min(e, b)
            if e <= s:
                continue
            mine = [(max(bs, s), min(be, e)) for bs, be in brk if be > s and bs < e]
            mine = _cut(mine, [])  # sorted, empty ones dropped
            merged: list[tuple[float, float]] = []
            for bs, be in mine:
                if merged and bs <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(be, merged[-1][1]))
                else:
                    merged.append((bs, be))
            breaks += merged
            sched += _cut([(s, e)], merged)
        return sched, breaks

    def day_bounds(self, a: float, b: float) -> list[tuple[float, float]]:
        d = datetime.fromtimestamp(a, self.tz).date()
        out = []
        while self.wall(d, 0) < b:
            out.append((self.wall(d, 0), self.wall(d, 1440)))
            d += timedelta(days=1)
        return out


class Reference:
    """Everything KPI_DEFINITIONS.md says about one run of one line, computed slowly.

    ``samples``: ``(ts, role, value, good)`` in the order they arrived; ``role`` is a role of
    the config or ``connected.<plc>`` (value true/false) for a PLC (dis)connect. ``end``: when
    the run ended (the processor's ``finish``).
    """

    def __init__(self, cfg: LineConfig, samples: list[tuple[float, str, Any, bool]], end: float) -> None:
        self.cfg = cfg
        self.prod = cfg.production
        self.roles = cfg.signals.roles()
        self.cal = _Calendar(cfg)
        self.bad: dict[str, int] = {}
        events = []
        for ts, role, value, good in sorted(samples, key=lambda x: x[0]):  # stable: arrival order kept
            if role.startswith("connected."):
                events.append((ts, role, value))
            elif not good or value is None or (isinstance(value, float) and math.isnan(value)):
                self.bad[role] = self.bad.get(role, 0) + 1  # §2: skipped and counted per tag
            elif role in self.roles:
                events.append((ts, role, value))
        self.events = events
        self.t0 = events[0][0] if events else end
        self.end = max([end] + [e[0] for e in events])
        self.level_mode = "running" in self.roles or "state" in self.roles
        # one walk in arrival order: value history (None at an outage), outages, level stops
        self.history: dict[str, list[tuple[float, Any]]] = {r: [] for r in self.roles}
        self.outages: list[tuple[float, float]] = []
        self.cuts: list[tuple[int, float]] = []  # (event index, time) of outage starts
        spans = self._walk()
        self.parts = {r: self._parts(r) for r in COUNTERS if r in self.roles}
        self.primary = "total_count" if "total_count" in self.roles else "good_count"
        if self.level_mode:
            self.stops = [self._classify(s, e, c, gap=False) for s, e, c in spans if e > s]
        else:
            self.stops = self._gap_stops()

    # ------------------------------------------------------------ inputs

    def _walk(self) -> list[tuple[float, float, str]]:
        critical = {s.plc for r, s in self.roles.items() if r in (*COUNTERS, "running", "state")}
        down: set[str] = set()
        since: float | None = None
        current: dict[str, Any] = {}
        spans: list[tuple[float, float, str]] = []
        start: float | None = None
        cause = "running"
        i = 0
        while i < len(self.events):
            ts, role, value = self.events[i]
            if role.startswith("connected."):
                plc = role.split(".", 1)[1]
                if _is_true(value) and value not in ("0", "false"):
                    down.discard(plc)
                    if not down and since is not None:
                        self.outages.append((since, ts))
                        since = None
                elif plc not in down:
                    down.add(plc)
                    if plc in critical and since is None:
                        since = ts
                        self.cuts.append((i, ts))
                        if start is not None:
                            spans.append((start, ts, cause))
                        start, cause = None, "running"
                        for r in LEVELS:
                            if r in self.roles:
                                current[r] = None
                                self.history[r].append((ts, None))
                i += 1
                continue
            # an instant: the samples with this timestamp up to the next (dis)connect
            j = i
            while j < len(self.events) and self.events[j][0] == ts and not self.events[j][1].startswith("connected."):
                _, r, v = self.events[j]
                current[r] = v
                self.history[r].append((ts, v))
                j += 1
            now = self._cause_of(current)
            if start is None and now != "running":
                start, cause = ts, now
            elif start is not None and now == "running":
                spans.append((start, ts, cause))
                start = None
            i = j
        if since is not None:
            self.outages.append((since, self.end))
        if start is not None:
            spans.append((start, self.end, cause))
        return spans

    def value_at(self, role: str, t: float, strict: bool = False) -> Any:
        """The value of ``role`` after the instant ``t`` (``strict``: just before it)."""
        value: Any = None
        for ts, v in self.history.get(role, []):
            if ts > t or (strict and ts == t):
                break
            value = v
        return value

    def product_for_parts(self, t: float) -> str | None:
        v = self.value_at("product", t, strict=True)
        return None if v is None else str(v)

    def product_at(self, t: float) -> str | None:
        v = self.value_at("product", t)
        return None if v is None else str(v)

    # ------------------------------------------------------------ §2 counters

    def _parts(self, role: str) -> list[_Part]:
        kind = self.roles[role].type
        lo, modulus = COUNTER_RANGE.get(kind, (0, 0))
        rows = [(k, ts, v) for k, (ts, r, v) in enumerate(self.events) if r == role]
        values: list[int | None] = []
        for _, _, v in rows:
            try:
                x = int(v) if isinstance(v, int) else int(float(v))
            except (TypeError, ValueError, OverflowError):
                x = None
            values.append(x)
        deltas = ref_counter_deltas([t for _, t, _ in rows], values, lo, modulus,
                                    self.prod.effective_max_parts_per_s())
        out = []
        for (k, ts, _), n in zip(rows, deltas, strict=True):
            if n > 0:
                ict = self.prod.ideal_cycle_time(self.product_for_parts(ts))
                out.append(_Part(ts, n, ict / self.prod.parts_per_cycle, k))
        return out

    # ------------------------------------------------------------ §3 stops

    def _cause_of(self, current: dict[str, Any]) -> str:
        """What the machine does with these signal values: running / stop / planned_stop /
        blocked / starved. Unknown (None) running or state: running, as after a start."""
        what = "running"
        if "state" in self.roles and self.history["state"]:
            v = current.get("state")
            if v is not None:
                what = self.state_meaning(v)
        elif "running" in self.roles:
            v = current.get("running")
            if v is not None and not _is_true(v):
                what = "stop"
        if what in ("stop", "starved") and _is_true(current.get("blocked")):
            return "blocked"
        if what in ("stop", "blocked") and _is_true(current.get("starved")):
            return "starved"
        return what

    def state_name(self, v: Any) -> str:
        names = {"packml": PACKML_NAMES, "machinery": MACHINERY_NAMES}.get(self.prod.state_map, [])
        number = int(v) if isinstance(v, bool) or (isinstance(v, float) and v.is_integer()) else v
        if isinstance(number, int) and 0 <= number < len(names):
            return names[number]
        return str(v)

    def state_meaning(self, v: Any) -> str:
        name = self.state_name(v)
        for key in (name, str(v)):
            if key in self.prod.states:
                return str(self.prod.states[key])
        if self.prod.state_map in ("packml", "machinery"):
            return READY_MEANING.get(name, "stop")
        return "stop"  # no mapping: anything but a configured running state is a stop

    def _threshold(self, t_prev: float) -> float:
        return self.prod.effective_stop_after_s(self.product_at(t_prev))

    def _gap_stops(self) -> list[RefStop]:
        """§3 counter only: a gap between completions longer than the threshold is a stop
        from the earlier one to one ideal cycle before the later one. An outage or the end
        ends a pending gap where it happens (a stop if the threshold had passed by then)."""
        marks: list[tuple[float, int, str]] = [(p.ts, p.seq, "part") for p in self.parts.get(self.primary, [])]
        marks += [(t, k, "cut") for k, t in self.cuts]
        marks.append((self.end, len(self.events), "cut"))
        spans: list[tuple[float, float]] = []
        prev: float | None = None
        for t, _, what in sorted(marks, key=lambda m: (m[1], m[0])):
            if prev is not None and t - prev > self._threshold(prev):
                end = t if what == "cut" else t - self.prod.ideal_cycle_time(self.product_for_parts(t))
                if end > prev:
                    spans.append((prev, end))
            prev = t if what == "part" else None
        return [self._classify(s, e, "stop", gap=True) for s, e in spans if e > s]

    def _reason(self, s: float, e: float, gap: bool) -> tuple[Any, str]:
        if "fault_code" in self.roles:
            at_start = self.value_at("fault_code", s)
            if at_start is not None and _as_int(at_start) != 0:
                return _as_int(at_start), "plc"
            for ts, r, v in self.events:
                if r == "fault_code" and s < ts < e and _as_int(v) != 0:
                    # a sample before an outage inside the stop cannot be: an outage ends stops
                    return _as_int(v), "plc"
        if "state" in self.roles and not gap:
            v = self.value_at("state", s)
            if v is not None and self.state_meaning(v) != "running":
                return v, "state"
        return None, "none"

    def _classify(self, s: float, e: float, cause: str, gap: bool) -> RefStop:
        reason, source = self._reason(s, e, gap)
        planned = cause == "planned_stop"
        if source == "plc":
            r = self.prod.reasons.get(int(reason))
            planned = planned or bool(r and r.planned)
        if e - s < self.prod.micro_stop_max_s:
            cat = "micro_stop"
        elif cause in ("blocked", "starved"):
            cat = cause
        elif planned:
            cat = "planned_stop"
        else:
            cat = "unplanned_stop"
        return RefStop(s, e, cat, reason, cause)

    # ------------------------------------------------------------ §4 time model

    def unknown_windows(self) -> list[tuple[float, float]]:
        return [(-math.inf, self.t0), *self.outages, (self.end + 0.001, math.inf)]

    def time_model(self, a: float, b: float) -> dict[str, Any]:
        sched, breaks = self.cal.split(a, b)
        ppt = _cut(sched, self.unknown_windows())
        return {
            "all": b - a,
            "not_scheduled": (b - a) - sum(e - s for s, e in sched) - sum(e - s for s, e in breaks),
            "planned_break": sum(e - s for s, e in breaks),
            "unknown": sum(e - s for s, e in sched) - sum(e - s for s, e in ppt),
            "ppt_windows": ppt,
        }

    def intervals(self, kind: str) -> list[tuple[float, float, str | None]]:
        """The hours / shifts / days a run from the first input to the end reports."""
        a, b = self.t0, self.end
        if kind == "hour":  # local clock hours are UTC hours at a whole-hour offset
            h = math.floor(a / 3600.0) * 3600.0
            out: list[tuple[float, float, str | None]] = []
            while h < b:
                out.append((h, h + 3600.0, None))
                h += 3600.0
            return out
        if kind == "day":
            return [(s, e, None) for s, e in self.cal.day_bounds(a, b)]
        if kind == "shift":
            return [(s, e, n) for n, s, e, _ in self.cal.occurrences(a, b) if n is not None]
        raise ValueError(kind)

    def timeline(self, a: float, b: float) -> list[tuple[float, float, str]]:
        """§7 states over [a, b): calendar first, then unknown, then stops, else running."""
        sched, breaks = self.cal.split(a, b)
        cuts = {a, b}
        for ws, we in sched + breaks + [(max(s, a), min(e, b)) for s, e in self.unknown_windows()]:
            cuts |= {ws, we}
        for st in self.stops:
            cuts |= {st.start, st.end}
        pts = sorted(c for c in cuts if a <= c <= b)
        out: list[tuple[float, float, str]] = []
        for s, e in itertools.pairwise(pts):
            mid = (s + e) / 2
            if _inside(mid, breaks):
                state = "planned_break"
            elif not _inside(mid, sched):
                state = "not_scheduled"
            elif _inside(mid, self.unknown_windows()):
                state = "unknown"
            else:
                state = next((st.category for st in self.stops if st.start <= mid < st.end), "running")
            if out and out[-1][2] == state:
                out[-1] = (out[-1][0], e, state)
            else:
                out.append((s, e, state))
        return out

    # ------------------------------------------------------------ §5 KPIs

    def _count(self, parts: list[_Part], a: float, b: float, windows: list[tuple[float, float]]) -> tuple[int, float]:
        inside = [p for p in parts if a <= p.ts < b and _inside(p.ts, windows)]
        return sum(p.n for p in inside), sum(p.n * p.ideal_s for p in inside)

    def kpis(self, a: float, b: float) -> dict[str, Any]:
        """Every KPI of [a, b), keyed like the fields of a KPI record (losses.*, iso22400.*)."""
        tm = self.time_model(a, b)
        ppt_w = tm["ppt_windows"]
        ppt = sum(e - s for s, e in ppt_w)
        time_by = dict.fromkeys(("micro_stop", "unplanned_stop", "planned_stop", "blocked", "starved"), 0.0)
        count_by = dict.fromkeys(time_by, 0)
        for st in self.stops:
            inside = _overlap(max(st.start, a), min(st.end, b), ppt_w) if st.end > a and st.start < b else 0.0
            if inside > 0:
                time_by[st.category] += inside
                count_by[st.category] += 1
        # parts: the primary counter (with the reject counter when it is the good one)
        if self.primary == "good_count" and "reject_count" in self.parts:
            made = self.parts["good_count"] + self.parts["reject_count"]
        else:
            made = self.parts[self.primary]
        total, ideal_total = self._count(made, a, b, ppt_w)
        in_ab = sum(p.n for p in made if a <= p.ts < b)
        if "reject_count" in self.parts:
            reject, ideal_reject = self._count(self.parts["reject_count"], a, b, ppt_w)
            if "good_count" in self.parts and self.primary == "total_count":
                good = self._count(self.parts["good_count"], a, b, ppt_w)[0]
            else:
                good = total - reject
        elif "good_count" in self.parts and self.primary == "total_count":
            good, ideal_good = self._count(self.parts["good_count"], a, b, ppt_w)
            reject, ideal_reject = total - good, ideal_total - ideal_good
        else:
            good, reject, ideal_reject = total, 0, 0.0
        if not 0 <= reject <= total:
            # The counters disagree (an implausible jump dropped from one of them): rejects are
            # capped to the parts counted, their ideal time in proportion.
            raw = reject
            reject = min(max(reject, 0), total)
            ideal_reject = ideal_reject * (reject / raw) if raw else 0.0
            if not ("reject_count" in self.parts and "good_count" in self.parts and self.primary == "total_count"):
                good = total - reject
        startup: float | None = None
        if self.prod.startup_s is not None and "reject_count" in self.parts:
            after = [(st.end, st.end + self.prod.startup_s) for st in self.stops if st.category != "micro_stop"]
            startup = sum(p.n * p.ideal_s for p in self.parts["reject_count"]
                          if a <= p.ts < b and _inside(p.ts, ppt_w) and _inside(p.ts, after))
        micro = time_by["micro_stop"]
        unplanned = time_by["unplanned_stop"]
        planned = time_by["planned_stop"]
        waiting = time_by["blocked"] + time_by["starved"]
        stop = unplanned + planned + waiting
        run = ppt - stop
        if abs(run) < 1e-9:
            run = 0.0
        n_unplanned = count_by["unplanned_stop"]
        av, perf, qual = _div(run, ppt), _div(ideal_total, run), _div(good, total)
        oee = None if None in (av, perf, qual) else av * perf * qual  # type: ignore[operator]
        apt = run - micro
        iso_av, iso_eff = _div(apt, ppt), _div(ideal_total, apt)
        return {
            "all_time_s": tm["all"], "not_scheduled_s": tm["not_scheduled"], "planned_break_s": tm["planned_break"],
            "unknown_s": tm["unknown"], "planned_production_time_s": ppt, "stop_time_s": stop, "run_time_s": run,
            "micro_stop_time_s": micro, "micro_stop_count": count_by["micro_stop"],
            "unplanned_stop_count": n_unplanned, "planned_stop_count": count_by["planned_stop"],
            "unplanned_stop_time_s": unplanned, "planned_stop_time_s": planned,
            "total_count": total, "good_count": good, "reject_count": reject, "counts_outside_ppt": in_ab - total,
            "ideal_time_s": ideal_total, "availability": av, "performance": perf, "quality": qual, "oee": oee,
            "teep": None if oee is None or tm["all"] == 0 else oee * ppt / tm["all"],
            "mtbf_s": _div(run, n_unplanned), "mttr_s": _div(unplanned, n_unplanned),
            "losses.unplanned_stops_s": unplanned + waiting, "losses.planned_stops_s": planned,
            "losses.micro_stops_s": micro, "losses.slow_cycles_s": run - ideal_total - micro,
            "losses.production_rejects_s": ideal_reject, "losses.startup_rejects_s": startup,
            "iso22400.pbt_s": ppt, "iso22400.apt_s": apt, "iso22400.adet_s": micro + unplanned,
            "iso22400.availability": iso_av, "iso22400.effectiveness": iso_eff,
            "iso22400.quality_ratio": _div(good, total),
            "iso22400.oee_index": None if None in (iso_av, iso_eff, qual) else iso_av * iso_eff * qual,  # type: ignore[operator]
            "iso22400.scrap_ratio": _div(reject, total), "iso22400.throughput_rate": _div(total, ppt),
        }
