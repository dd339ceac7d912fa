"""What the rules attach to a record: where (equipment path), the line's context, process values.

The context (shift, order, product) is the newest one seen in the record stream: stops carry
all three, KPI records shift and order, count records the product. Process values come from
``observe_samples`` (tags ``process.NAME``) and are kept per minute (min, max, sum, n) for a
bounded time, so "the values seen in this window" costs a few dict lookups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from config import LineConfig
from drivers.base import Sample
from sync.records import CountRecord, KpiRecord, Record, Scalar, StopRecord

__all__ = ["LineContext", "ProcessHistory", "ValueStats", "sample_time"]


def sample_time(s: Sample) -> float:
    """The PLC's timestamp when it gives one (what the record stream is stamped with), else ours."""
    return s.source_ts if s.source_ts is not None else s.recv_ts


def numeric(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


class LineContext:
    def __init__(self, cfg: LineConfig) -> None:
        ln = cfg.line
        self.site, self.area, self.line, self.machine = ln.site, ln.area, ln.id, ln.machine
        self.machine_path = f"{ln.site}/{ln.area}/{ln.id}/{ln.machine}"
        self.shift: str | None = None
        self.order: str | None = None
        self.product: str | None = None

    def equipment(self, detail: str | None = None) -> str:
        """``site/area/line/machine``, plus e.g. the reason category when the rule is about one."""
        return self.machine_path if not detail else f"{self.machine_path}/{detail}"

    def update(self, rec: Record) -> None:
        if isinstance(rec, StopRecord):
            self.shift, self.order = rec.shift or self.shift, rec.order or self.order
            self.product = rec.product or self.product
        elif isinstance(rec, KpiRecord) and not rec.final:
            # A provisional KPI record is about the running interval: its context is current.
            self.shift, self.order = rec.shift or self.shift, rec.order or self.order
        elif isinstance(rec, CountRecord):
            self.product = rec.product or self.product


@dataclass
class ValueStats:
    lo: float
    hi: float
    total: float
    n: int

    def add(self, v: float) -> None:
        self.lo, self.hi, self.total, self.n = min(self.lo, v), max(self.hi, v), self.total + v, self.n + 1

    def merge(self, o: ValueStats) -> None:
        self.lo, self.hi, self.total, self.n = min(self.lo, o.lo), max(self.hi, o.hi), self.total + o.total, self.n + o.n

    def as_json(self, last: float | None) -> dict[str, float | int | None]:
        return {"min": self.lo, "max": self.hi, "mean": round(self.total / self.n, 6), "n": self.n, "last": last}


class _Missing:
    """No good value seen yet (``None`` can be a value)."""


MISSING = _Missing()


class _Track:
    """One process signal: its last good value and the minute being aggregated, as plain slots
    so a sample costs no allocation (closed minutes go into ``buckets`` once per minute)."""

    __slots__ = ("buckets", "hi", "last_value", "lo", "minute", "n", "total")

    def __init__(self) -> None:
        self.last_value: Scalar | _Missing = MISSING
        self.buckets: dict[int, ValueStats] = {}
        self.minute = -1 << 62  # no minute open
        self.lo = self.hi = self.total = 0.0
        self.n = 0

    def close_minute(self) -> None:
        if self.n:
            stats = ValueStats(self.lo, self.hi, self.total, self.n)
            old = self.buckets.get(self.minute)
            if old is None:
                self.buckets[self.minute] = stats
            else:  # samples came back to an earlier minute
                old.merge(stats)
        self.n = 0

    def stats(self, first: int, last: int) -> ValueStats | None:
        acc: ValueStats | None = None
        for m in range(first, last + 1) if last - first < 10_000 else ():
            b = self.buckets.get(m)
            if b is None:
                continue
            if acc is None:
                acc = ValueStats(b.lo, b.hi, b.total, b.n)
            else:
                acc.merge(b)
        if self.n and first <= self.minute <= last:
            if acc is None:
                acc = ValueStats(self.lo, self.hi, self.total, self.n)
            else:
                acc.merge(ValueStats(self.lo, self.hi, self.total, self.n))
        return acc


class ProcessHistory:
    """Per process signal: the last good value and per-minute stats for ``keep_s``.

    ``add_samples`` is the daemon's per-read path: one dict lookup per sample to find the
    signal, the running minute aggregated in place.
    """

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.tracks: dict[str, _Track] = {}  # name -> track
        self._by_tag: dict[str, _Track | None] = {}  # sample tag -> track (None: not a process tag)
        self._newest = -math.inf

    def _track(self, name: str) -> _Track:
        t = self.tracks.get(name)
        if t is None:
            t = self.tracks[name] = _Track()
            self._by_tag[f"process.{name}"] = t
        return t

    def add(self, name: str, ts: float, value: Scalar) -> None:
        self._add(self._track(name), ts, value)

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Every good ``process.NAME`` sample of a read, in order; other tags are skipped."""
        by_tag = self._by_tag
        prev_ts, minute = math.nan, 0  # a read's samples share a timestamp: its minute once
        for s in samples:
            t = by_tag.get(s.tag, _UNKNOWN)
            if t is None:
                continue
            if t is _UNKNOWN:
                t = self._classify(s.tag)
                if t is None:
                    continue
            if s.quality != "good":
                continue
            value = t.last_value = s.value
            # Plain int/float inline (bool is not a number here); anything else the slow way.
            tp = type(value)
            v: float
            if tp is float:
                v = value  # type: ignore[assignment]  # type() checked: a float
                if v - v != 0.0:  # inf or nan
                    continue
            elif tp is int:
                v = float(value)  # type: ignore[arg-type]
            else:
                nv = numeric(value)
                if nv is None:
                    continue
                v = nv
            ts = s.source_ts if s.source_ts is not None else s.recv_ts
            if ts != prev_ts:
                prev_ts, minute = ts, int(ts // 60)
            if minute == t.minute and t.n:
                if v < t.lo:
                    t.lo = v
                elif v > t.hi:
                    t.hi = v
                t.total += v
                t.n += 1
            else:
                self._new_minute(t, minute, ts, v)

    def _classify(self, tag: str) -> _Track | None:
        if tag.startswith("process."):
            return self._track(tag.removeprefix("process."))
        self._by_tag[tag] = None
        return None

    def _add(self, t: _Track, ts: float, value: Scalar) -> None:
        t.last_value = value
        v = numeric(value)
        if v is None:
            return
        minute = int(ts // 60)
        if minute == t.minute and t.n:
            t.lo, t.hi, t.total, t.n = min(t.lo, v), max(t.hi, v), t.total + v, t.n + 1
        else:
            self._new_minute(t, minute, ts, v)

    def _new_minute(self, t: _Track, minute: int, ts: float, v: float) -> None:
        t.close_minute()
        old = t.buckets.pop(minute, None)
        if old is not None:  # back to a minute already closed: continue its stats
            t.lo, t.hi, t.total, t.n = min(old.lo, v), max(old.hi, v), old.total + v, old.n + 1
            t.minute = minute
        else:
            t.lo = t.hi = t.total = v
            t.n = 1
            t.minute = minute  # before pruning, which must see this minute as the open one
            if ts > self._newest + 60:
                self._newest = ts
                self._prune(ts)

    def _prune(self, now: float) -> None:
        oldest = int((now - self.keep_s) // 60)
        for t in self.tracks.values():
            for m in [m for m in t.buckets if m < oldest]:
                del t.buckets[m]
            if t.n and t.minute < oldest:  # a signal gone quiet: its open minute ages out too
                t.n = 0

    def current(self) -> dict[str, Scalar]:
        return {name: t.last_value for name, t in sorted(self.tracks.items()) if not isinstance(t.last_value, _Missing)}

    def seen(self, start: float, end: float) -> dict[str, dict[str, float | int | None]]:
        """min/max/mean/n of every process value in the minutes touching [start, end]."""
        out: dict[str, dict[str, float | int | None]] = {}
        first, last = int(start // 60), int(end // 60)
        for name, t in sorted(self.tracks.items()):
            acc = t.stats(first, last)
            if acc is not None:
                out[name] = acc.as_json(numeric(t.last_value))
        return out


_UNKNOWN = _Track()  # sentinel: a tag not classified yet
