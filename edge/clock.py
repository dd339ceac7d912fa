"""The line clock: UTC timestamps whose differences come from the monotonic clock.

Durations must never depend on the wall clock (an NTP step of an hour would otherwise create or
eat a stop), yet records need UTC timestamps. The line clock is anchored to the wall clock once
and then advances with ``time.monotonic()``; a wall-clock step is detected and reported, not
followed. Restarting the daemon re-anchors it.

For simulations only, ``LINESIDE_TIME_SCALE`` (e.g. ``8``) makes the line clock run that many
times faster than real time, matching ``lineside simulate --speed 8``: a 3-minute breakdown
then lasts 3 minutes in the records and 22.5 s on the wall. The daemon logs a warning when it
is set; a production line never sets it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["LineClock"]


class LineClock:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        step_threshold_s: float = 2.0,
        scale: float | None = None,
    ) -> None:
        self._wall = wall
        self._mono = mono
        self._anchor_wall = wall()
        self._anchor_mono = mono()
        self.step_threshold_s = step_threshold_s
        self.scale = scale if scale is not None else float(os.environ.get("LINESIDE_TIME_SCALE", "1") or 1)
        if not self.scale > 0:
            raise ValueError(f"LINESIDE_TIME_SCALE must be a positive number, got {self.scale!r}")

    def now(self) -> float:
        """Epoch seconds (UTC) advancing with the monotonic clock."""
        return self._anchor_wall + (self._mono() - self._anchor_mono) * self.scale

    def wall_offset(self) -> float:
        """Wall clock minus line clock: how far the system clock has stepped since the anchor."""
        return self._wall() - self.now()

    def stepped(self) -> float | None:
        """The wall-clock step in seconds if it exceeds the threshold, else None."""
        if self.scale != 1.0:
            return None  # a scaled (simulation) clock is meant to run away from the wall
        off = self.wall_offset()
        return off if abs(off) > self.step_threshold_s else None


class SourceTimeMapper:
    """Source timestamps (the PLC's clock) mapped onto the line clock.

    For a PLC configured with ``timestamps: source``: a sample's time becomes
    ``source_ts + offset``, where ``offset`` tracks the smallest observed
    ``receive - source`` (the PLC-to-edge clock offset plus the least transport delay). Event
    spacing is then exactly what the PLC stamped, even when notifications arrive in batches,
    and records stay on the line clock. The offset follows slow drift; a jump of more than
    ``step_s`` in either direction (the PLC's clock was set) re-anchors it at once, so a PLC
    clock step never creates or eats a stop. Mapped times never run backwards and never lie
    after the receive time. Samples without a source timestamp keep their receive time.
    """

    def __init__(self, step_s: float = 2.0, follow: float = 0.01) -> None:
        self.step_s = step_s
        self.follow = follow
        self.offset: float | None = None
        self.steps = 0
        self._last = float("-inf")

    def map(self, source_ts: float | None, recv_ts: float) -> float:
        if source_ts is None:
            t = recv_ts
        else:
            off = recv_ts - source_ts
            if self.offset is None or abs(off - self.offset) > self.step_s:
                if self.offset is not None:
                    self.steps += 1
                self.offset = off
            elif off < self.offset:
                self.offset = off
            else:
                self.offset += self.follow * (off - self.offset)
            t = min(source_ts + self.offset, recv_ts)
        t = max(t, self._last)
        self._last = t
        return t
