"""Prometheus metrics of one line, in a registry of their own.

The metric objects are public so the daemon may set gauges directly, but the intended path is
`LineMetrics.update(status)` with the provider's status document: it turns the cumulative
totals there (samples, bad samples, reconnects, stops per category) into counter increments,
so calling it from the daemon's health task and again on each scrape counts nothing twice.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from edge.status.provider import StatusDoc
from sync.records import LineState

__all__ = ["CONTENT_TYPE", "STATES", "LineMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# KPI_DEFINITIONS.md §7, in the order the page's legend shows them (the record type's order).
STATES: tuple[str, ...] = typing.get_args(LineState)


class LineMetrics:
    """The metrics of one line. `render()` gives the text exposition for `/metrics`."""

    def __init__(self, line: str, registry: CollectorRegistry | None = None) -> None:
        self.line = line
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.samples = Counter("lineside_samples_total", "Samples read from the PLC", ["line", "plc"], registry=r)
        self.bad_samples = Counter(
            "lineside_bad_samples_total", "Samples with bad quality or unreadable values, skipped",
            ["line", "plc"], registry=r,
        )
        self.reconnects = Counter(
            "lineside_reconnects_total", "Reconnections to the PLC after a lost connection", ["line", "plc"], registry=r
        )
        self.samples_per_s = Gauge(
            "lineside_samples_per_second", "Values read per second, recent average", ["line", "plc"], registry=r
        )
        self.plc_connected = Gauge("lineside_plc_connected", "1 while the PLC connection is up", ["line", "plc"], registry=r)
        self.stops = Counter("lineside_stops_total", "Stops by category since the daemon started", ["line", "category"], registry=r)
        self.oee = Gauge("lineside_oee", "OEE of the current shift so far (0..1)", ["line", "shift"], registry=r)
        self.availability = Gauge("lineside_availability", "Availability of the current shift so far", ["line", "shift"], registry=r)
        self.performance = Gauge("lineside_performance", "Performance of the current shift so far", ["line", "shift"], registry=r)
        self.quality = Gauge("lineside_quality", "Quality of the current shift so far", ["line", "shift"], registry=r)
        self.state = Gauge("lineside_state", "1 for the line's current state, 0 for the others", ["line", "state"], registry=r)
        self.buffer_bytes = Gauge("lineside_buffer_bytes", "Size of the line's SQLite buffer on disk", ["line"], registry=r)
        self.buffer_unsent = Gauge("lineside_buffer_unsent_records", "Records not yet acknowledged upstream", ["line"], registry=r)
        self.buffer_full = Gauge("lineside_buffer_full", "1 while the buffer is at its size cap", ["line"], registry=r)
        self.buffer_overloaded = Gauge(
            "lineside_buffer_overloaded", "1 while values arrive faster than they are written (samples shed)",
            ["line"], registry=r,
        )
        self.buffer_dropped = Counter(
            "lineside_buffer_dropped_records_total",
            "Records dropped in memory, never written (overload: raw samples; unwritable disk: least important first)",
            ["line"], registry=r,
        )
        self.oldest_unsent_age = Gauge(
            "lineside_oldest_unsent_age_seconds", "Age of the oldest record not yet acknowledged upstream", ["line"], registry=r
        )
        self.sync_lag = Gauge("lineside_sync_lag_seconds", "How far the central store is behind this line", ["line"], registry=r)
        self._seen: dict[tuple[str, ...], float] = {}
        self._shift_labels: set[str] = set()

    def _advance(self, counter: Counter, key: tuple[str, ...], total: float) -> None:
        """Increment `counter` by how much the cumulative `total` grew since the last update.

        A total lower than last time means its owner restarted counting (driver recreated):
        the whole new total is then new, as Prometheus' own reset handling assumes.
        """
        seen_key = (str(id(counter)), *key)
        last = self._seen.get(seen_key)
        delta = total if last is None or total < last else total - last
        self._seen[seen_key] = total
        child = counter.labels(*key)  # exported at 0 too, so an alert rule has a series to watch
        if delta > 0:
            child.inc(delta)

    def update(self, status: StatusDoc | Mapping[str, Any]) -> None:
        line = self.line
        for name, plc in (status.get("plcs") or {}).items():
            self._advance(self.samples, (line, name), float(plc.get("samples_total") or 0))
            self._advance(self.bad_samples, (line, name), float(plc.get("bad_samples") or 0))
            self._advance(self.reconnects, (line, name), float(plc.get("reconnects") or 0))
            self.samples_per_s.labels(line, name).set(float(plc.get("values_per_s") or 0.0))
            self.plc_connected.labels(line, name).set(1.0 if plc.get("connected") else 0.0)
        for category, count in (status.get("stops_by_category") or {}).items():
            self._advance(self.stops, (line, category), float(count))

        shift = status.get("shift") or {}
        shift_name = shift.get("name")
        # Only the current shift is exported: a stale gauge for yesterday's shift would read
        # as a live value on a dashboard. Prometheus keeps the history.
        for old in self._shift_labels - ({shift_name} if shift_name else set()):
            for g in (self.oee, self.availability, self.performance, self.quality):
                g.remove(line, old)
        self._shift_labels = {shift_name} if shift_name else set()
        if shift_name:
            for g, key in ((self.oee, "oee"), (self.availability, "availability"),
                           (self.performance, "performance"), (self.quality, "quality")):
                value: Any = shift.get(key)
                # A ratio without denominator is null, not 0 (KPI_DEFINITIONS.md §5): NaN says
                # "no value" to Prometheus, 0 would page someone.
                g.labels(line, shift_name).set(float("nan") if value is None else float(value))

        current = (status.get("state") or {}).get("state")
        for s in STATES:
            self.state.labels(line, s).set(1.0 if s == current else 0.0)

        buf = status.get("buffer") or {}
        self.buffer_bytes.labels(line).set(float(buf.get("bytes") or 0))
        self.buffer_unsent.labels(line).set(float(buf.get("unsent") or 0))
        self.buffer_full.labels(line).set(1.0 if buf.get("full") else 0.0)
        self.buffer_overloaded.labels(line).set(1.0 if buf.get("overloaded") else 0.0)
        self._advance(self.buffer_dropped, (line,), float(buf.get("dropped") or 0))
        age = buf.get("oldest_unsent_age_s")
        self.oldest_unsent_age.labels(line).set(0.0 if age is None else float(age))
        lag = (status.get("sync") or {}).get("lag_s")
        self.sync_lag.labels(line).set(float("nan") if lag is None else float(lag))

    def render(self) -> bytes:
        return generate_latest(self.registry)
