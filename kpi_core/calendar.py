"""The shift calendar in real time: shifts, breaks, days, hours, with DST (zoneinfo).

Shift and break times are local wall-clock times; each occurrence is converted to epoch
seconds on its own date, so a night shift across a DST change lasts 7 h or 9 h, as the clock
on the shop-floor wall says.

Choices (where KPI_DEFINITIONS.md leaves them open):

- a shift whose end is not after its start ends on the next day; ``24:00`` is midnight;
- a shift's ``days`` are the days it *starts* on;
- a break applies to every shift (or only to the shift it names) and its ``days`` are
  matched against the day its shift started, so a 02:00 break in a night shift starting on
  Friday follows Friday's rule; break time outside its shift is ignored;
- overlapping shifts: the earlier one keeps the overlap;
- no shifts configured: every day is scheduled from 00:00 to 24:00 (unnamed shift) and
  breaks still apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from config.models import Calendar
from kpi_core.timeline import Windows, clip, normalize, subtract

__all__ = ["Segment", "ShiftCalendar", "ShiftInstance"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ShiftInstance:
    name: str | None  # None: the implicit all-day shift of a calendar without shifts
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    kind: str  # "scheduled" | "planned_break" | "not_scheduled"
    shift: str | None


def _minutes(clock: str) -> int:
    hh, mm = clock.split(":")
    return int(hh) * 60 + int(mm)


class ShiftCalendar:
    def __init__(self, calendar: Calendar, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self.calendar = calendar
        self._cache: dict[date, list[ShiftInstance]] = {}

    # ------------------------------------------------------------ conversions

    def _at(self, d: date, minutes: int) -> float:
        day = d + timedelta(days=minutes // 1440)
        m = minutes % 1440
        return datetime(day.year, day.month, day.day, m // 60, m % 60, tzinfo=self.tz).timestamp()

    def local_date(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.tz).date()

    # ------------------------------------------------------------ shifts

    def _shifts_starting_on(self, d: date) -> list[ShiftInstance]:
        cached = self._cache.get(d)
        if cached is not None:
            return cached
        wd = _DAYS[d.weekday()]
        specs: list[tuple[str | None, int, int]] = []
        if self.calendar.shifts:
            for sh in self.calendar.shifts:
                if wd in sh.days:
                    s, e = _minutes(sh.start), _minutes(sh.end)
                    if e <= s:
                        e += 1440
                    specs.append((sh.name, s, e))
        else:
            specs.append((None, 0, 1440))
        out: list[ShiftInstance] = []
        for name, sm, em in specs:
            start, end = self._at(d, sm), self._at(d, em)
            brk: Windows = []
            for b in self.calendar.breaks:
                if b.shift is not None and b.shift != name:
                    continue
                if b.days is not None and wd not in b.days:
                    continue
                bs, be = _minutes(b.start), _minutes(b.end)
                if be <= bs:
                    be += 1440
                for off in (0, 1440):
                    brk.append((self._at(d, bs + off), self._at(d, be + off)))
            out.append(ShiftInstance(name, start, end, tuple(clip(normalize(brk), start, end))))
        out.sort(key=lambda x: x.start)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[d] = out
        return out

    def shifts(self, a: float, b: float) -> list[ShiftInstance]:
        """Shift occurrences overlapping [a, b), in time order, overlaps given to the earlier."""
        d0 = self.local_date(a) - timedelta(days=2)
        d1 = self.local_date(b) + timedelta(days=1)
        found: list[ShiftInstance] = []
        d = d0
        while d <= d1:
            found.extend(self._shifts_starting_on(d))
            d += timedelta(days=1)
        found.sort(key=lambda x: x.start)
        out: list[ShiftInstance] = []
        last_end = float("-inf")
        for sh in found:
            start = max(sh.start, last_end)
            if sh.end <= start:
                continue
            last_end = sh.end
            if sh.end > a and start < b:
                brk = tuple(clip(list(sh.breaks), start, sh.end))
                out.append(ShiftInstance(sh.name, start, sh.end, brk))
        return out

    def shift_at(self, t: float) -> ShiftInstance | None:
        for sh in self.shifts(t, t + 1e-6):
            if sh.start <= t < sh.end:
                return sh
        return None

    def segments(self, a: float, b: float) -> list[Segment]:
        """[a, b) cut into scheduled / planned_break / not_scheduled segments."""
        out: list[Segment] = []
        cur = a
        for sh in self.shifts(a, b):
            s, e = max(sh.start, a), min(sh.end, b)
            if s > cur:
                out.append(Segment(cur, s, "not_scheduled", None))
            brk = clip(list(sh.breaks), s, e)
            for ws, we in subtract([(s, e)], brk):
                out.append(Segment(ws, we, "scheduled", sh.name))
            for bs, be in brk:
                out.append(Segment(bs, be, "planned_break", sh.name))
            cur = max(cur, e)
        if cur < b:
            out.append(Segment(cur, b, "not_scheduled", None))
        out.sort(key=lambda g: g.start)
        return out

    def scheduled(self, a: float, b: float) -> tuple[Windows, float, float]:
        """(scheduled windows, not_scheduled seconds, planned_break seconds) within [a, b)."""
        win: Windows = []
        ns = br = 0.0
        for g in self.segments(a, b):
            if g.kind == "scheduled":
                win.append((g.start, g.end))
            elif g.kind == "planned_break":
                br += g.end - g.start
            else:
                ns += g.end - g.start
        return normalize(win), ns, br

    # ------------------------------------------------------------ hours and days

    def hour_start(self, t: float) -> float:
        dt = datetime.fromtimestamp(t, self.tz)
        return dt.replace(minute=0, second=0, microsecond=0).timestamp()

    def hours(self, a: float, b: float) -> list[tuple[float, float]]:
        """Local clock hours overlapping [a, b) (3600 s each, also across DST)."""
        out: list[tuple[float, float]] = []
        h = self.hour_start(a)
        while h < b:
            out.append((h, h + 3600.0))
            h += 3600.0
        return out

    def days(self, a: float, b: float) -> list[tuple[float, float]]:
        """Local calendar days overlapping [a, b) (23 h or 25 h on DST change days)."""
        out: list[tuple[float, float]] = []
        d = self.local_date(a)
        while True:
            s, e = self._at(d, 0), self._at(d, 1440)
            if s >= b:
                break
            out.append((s, e))
            d += timedelta(days=1)
        return out
