"""The simulated line: a deterministic model advanced in simulated seconds.

No I/O and no clock of its own: the caller passes simulated time to ``advance``. Counters
are what a PLC exposes (uint16, wrapping at 65536, reset to 0 by a PLC restart); ``truth``
keeps what really happened (unwrapped counts, every stop with its start, end and fault code)
so tests can compare lineside's records with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from drivers.simulator.scenario import Event, Scenario

__all__ = ["SIGNALS", "LineModel", "StopTruth"]

# signal name -> type, as the simulator serves them (OPC UA, Modbus and the in-process driver)
SIGNALS: dict[str, str] = {
    "total_count": "uint16",
    "good_count": "uint16",
    "reject_count": "uint16",
    "running": "bool",
    "state": "int16",  # 1 running, 2 stopped, 3 fault (breakdown), 4 slow
    "fault_code": "int16",
    "product": "string",
    "order": "string",
}
WRAP = 65536


@dataclass
class StopTruth:
    start: float  # simulated seconds since the scenario started
    end: float | None
    kind: str  # micro_stop | breakdown | stop | restart
    code: int = 0


@dataclass
class LineModel:
    scenario: Scenario
    t: float = 0.0
    total: int = 0  # true parts since start (never wraps, never resets)
    rejects: int = 0
    restarts: int = 0
    product: str = ""
    cycle_s: float = 1.0
    stops: list[StopTruth] = field(default_factory=list)
    _plc_total: int = 0  # the PLC's counters (reset by restart_plc, wrap when read)
    _plc_rejects: int = 0
    _down_until: float = -1.0  # stopped until this time (micro-stop / breakdown)
    _manual_stop: bool = False
    _fault: int = 0
    _slow_until: float = -1.0
    _slow_factor: float = 1.0
    _next_part: float = 0.0
    _next_event: int = 0
    _cycle_base: float = 0.0  # repeat cycle start

    def __post_init__(self) -> None:
        s = self.scenario
        self.product = s.product
        self.cycle_s = s.ideal_cycle_time_s
        self._plc_total = self._plc_rejects = s.counter_start
        self._next_part = self.cycle_s
        self._events = sorted(s.events, key=lambda e: e.at)

    # ---------------------------------------------------------------- control

    @property
    def running(self) -> bool:
        return not self._manual_stop and self.t >= self._down_until

    def stop_line(self) -> None:
        if self.running:
            self.stops.append(StopTruth(self.t, None, "stop"))
        self._manual_stop = True

    def start_line(self) -> None:
        if self._manual_stop:
            self._manual_stop = False
            self._close_stop()
            self._next_part = self.t + self._cycle()

    def breakdown(self, code: int, seconds: float) -> None:
        self._down(seconds, "breakdown", code)

    def micro_stop(self, seconds: float) -> None:
        self._down(seconds, "micro_stop", 0)

    def restart_plc(self) -> None:
        self.restarts += 1
        self._plc_total = self._plc_rejects = 0

    def _down(self, seconds: float, kind: str, code: int) -> None:
        if self.running:
            self.stops.append(StopTruth(self.t, None, kind, code))
        self._down_until = max(self._down_until, self.t + seconds)
        self._fault = code

    def _close_stop(self) -> None:
        if self.stops and self.stops[-1].end is None:
            self.stops[-1].end = self.t

    def _cycle(self) -> float:
        return self.cycle_s * (self._slow_factor if self.t < self._slow_until else 1.0)

    def _apply(self, e: Event) -> None:
        if e.do == "micro_stop":
            self.micro_stop(e.seconds)
        elif e.do == "breakdown":
            self.breakdown(e.code, e.seconds)
        elif e.do == "slow":
            self._slow_until, self._slow_factor = self.t + e.seconds, e.factor
        elif e.do == "product":
            self.product = e.product or self.product
            self.cycle_s = e.cycle_time_s or self.scenario.ideal_cycle_time_s
        elif e.do == "restart_plc":
            self.restart_plc()
        elif e.do == "stop":
            self.stop_line()
        elif e.do == "start":
            self.start_line()

    # ---------------------------------------------------------------- time

    def advance(self, t: float) -> None:
        """Run the line up to simulated time `t` (seconds since start); parts, stops, events."""
        while True:
            ev_t = self._event_time()
            step_to = min(t, ev_t)
            self._run_until(step_to)
            if ev_t > t:
                break
            self._apply(self._events[self._next_event])
            self._next_event += 1
            if self._next_event >= len(self._events) and self.scenario.repeat_s:
                self._next_event = 0
                self._cycle_base += self.scenario.repeat_s

    def _event_time(self) -> float:
        if self._next_event >= len(self._events):
            return math.inf
        return self._cycle_base + self._events[self._next_event].at

    def _run_until(self, t: float) -> None:
        while True:
            if not self.running:
                if self._manual_stop or self._down_until > t:
                    self.t = t
                    return
                # the micro-stop / breakdown ends: the first part comes one cycle later
                self.t = self._down_until
                self._fault = 0
                self._close_stop()
                self._next_part = self.t + self._cycle()
            if self._next_part > t:
                self.t = t
                return
            self.t = self._next_part
            self._part()
            self._next_part = self.t + self._cycle()

    def _part(self) -> None:
        self.total += 1
        self._plc_total += 1
        every = self.scenario.reject_every
        if every and self.total % every == 0:
            self.rejects += 1
            self._plc_rejects += 1

    # ---------------------------------------------------------------- what the PLC shows

    def values(self) -> dict[str, Any]:
        total, rej = self._plc_total % WRAP, self._plc_rejects % WRAP
        state = 1 if self.running else (3 if self._fault else 2)
        if state == 1 and self.t < self._slow_until:
            state = 4
        return {
            "total_count": total,
            "good_count": (self._plc_total - self._plc_rejects) % WRAP,
            "reject_count": rej,
            "running": self.running,
            "state": state,
            "fault_code": self._fault if not self.running else 0,
            "product": self.product,
            "order": self.scenario.order,
        }

    def truth(self, micro_stop_max_s: float = 120.0) -> dict[str, Any]:
        stops: list[dict[str, Any]] = [
            {"start": s.start, "end": s.end, "kind": s.kind, "code": s.code,
             "duration_s": (s.end if s.end is not None else self.t) - s.start}
            for s in self.stops
        ]
        return {
            "t": self.t,
            "total": self.total,
            "good": self.total - self.rejects,
            "rejects": self.rejects,
            "restarts": self.restarts,
            "stops": stops,
            "micro_stops": sum(1 for s in stops if s["duration_s"] <= micro_stop_max_s),
            "breakdowns": sum(1 for s in stops if s["kind"] == "breakdown"),
        }
