"""numba-jitted streaming kernels for counters, cycles, stops and interval KPIs, and their reference."""

from kpi_core.calendar import Segment, ShiftCalendar, ShiftInstance
from kpi_core.counters import counter_deltas, counter_range, new_counter_state
from kpi_core.kpi import CountStream, IntervalSums, KpiFigures, StopArrays, interval_figures, kpis_from_sums
from kpi_core.stops import classify_stop, gap_stops, level_changes

__all__ = [
    "CountStream",
    "IntervalSums",
    "KpiFigures",
    "Segment",
    "ShiftCalendar",
    "ShiftInstance",
    "StopArrays",
    "classify_stop",
    "counter_deltas",
    "counter_range",
    "gap_stops",
    "interval_figures",
    "kpis_from_sums",
    "level_changes",
    "new_counter_state",
]
