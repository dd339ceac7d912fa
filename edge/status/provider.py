"""What the status page needs from the daemon: the `StatusProvider` protocol and its JSON shape.

The daemon (or anything else: the sync agent, a test) implements four cheap, non-blocking
methods that return plain JSON-able data. The status app never reaches into drivers, kpi_core
or the buffer itself, so it can be built and tested before and apart from them.

Timestamps are RFC 3339 UTC strings with milliseconds (`sync.records.format_ts`). Ratios are
floats in 0..1 (performance may exceed 1) or `None` when their denominator is zero
(KPI_DEFINITIONS.md §5), never 0 in that case.

`status()` returns a `StatusDoc`:

```
{
  "line":  {"site": "dossenheim", "area": "packaging", "id": "line3", "machine": "cartoner",
            "name": "Line 3 - cartoner", "timezone": "Europe/Berlin"},
  "now":   "2025-03-04T09:12:03.120Z",
  "state": {"state": "unplanned_stop", "since": "2025-03-04T09:02:41.000Z", "duration_s": 562.1,
            "reason_code": 42, "reason_text": "Sealing jaw jam", "stop_id": "018f...."},
  "shift": {"name": "early", "start": "...", "end": "...",          # name None outside shifts
            "availability": 0.91, "performance": 0.87, "quality": 0.982, "oee": 0.777,
            "total_count": 9120, "good_count": 8956, "reject_count": 164,
            "target_count": 10400,    # parts an ideal line makes by now in this shift; None if unknown
            "plan_count": 25200,      # parts planned for the whole shift; None if unknown
            "run_time_s": 11020.0, "stop_time_s": 1102.0, "product": "A-100", "order": "4711"},
  "timeline": [{"start": "...", "end": "..." | None, "state": "running"}, ...],  # this shift, oldest first
  "plcs":  {"cartoner": {"driver": "opcua", "connected": true, "last_error": None,
                         "values_per_s": 48.2, "samples_total": 120331, "bad_samples": 3,
                         "reconnects": 1, "last_sample_age_s": 0.1}},
  "buffer": {"bytes": 12582912, "unsent": 1200, "oldest_unsent_age_s": 14.2, "full": false,
             "quarantined": 0},
  "sync":  {"lag_s": 14.2, "last_ack": "..." | None, "state": "ok"},    # state: ok | retrying | auth_failed | unknown
  "stops_by_category": {"micro_stop": 31, "unplanned_stop": 4}          # since the daemon started
}
```

`stops(limit)` returns the newest `limit` stops, newest first, each shaped like
`sync.records.StopRecord` encoded to JSON (`msgspec.to_builtins(stop)`). `kpis()` returns the
latest revision of each current KPI interval, shaped like `sync.records.KpiRecord`.
`reasons()` returns the configured reasons `[{"code": 42, "text": "...", "category": "...",
"planned": false}]`. `set_reason(stop_id, code)` records an operator's reason for a stop and
returns the updated stop; it raises `KeyError` for an unknown stop and `ValueError` for a
code not in `reasons()`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

__all__ = [
    "BufferDoc",
    "LineDoc",
    "PlcDoc",
    "ReasonDoc",
    "ShiftDoc",
    "SnapshotProvider",
    "StateDoc",
    "StatusDoc",
    "StatusProvider",
    "SyncDoc",
    "TimelineDoc",
]


class LineDoc(TypedDict):
    site: str
    area: str
    id: str
    machine: str
    name: str
    timezone: NotRequired[str]  # IANA name; the page shows clock times in it


class StateDoc(TypedDict):
    state: str
    since: str | None
    duration_s: float | None
    reason_code: NotRequired[int | str | None]
    reason_text: NotRequired[str | None]
    stop_id: NotRequired[str | None]


class ShiftDoc(TypedDict):
    name: str | None
    start: str | None
    end: str | None
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    total_count: int
    good_count: int
    reject_count: int
    target_count: int | None
    plan_count: NotRequired[int | None]
    run_time_s: NotRequired[float]
    stop_time_s: NotRequired[float]
    product: NotRequired[str | None]
    order: NotRequired[str | None]


class TimelineDoc(TypedDict):
    start: str
    end: str | None
    state: str


class PlcDoc(TypedDict):
    driver: str
    connected: bool
    last_error: str | None
    values_per_s: float
    samples_total: int
    bad_samples: int
    reconnects: int
    last_sample_age_s: NotRequired[float | None]


class BufferDoc(TypedDict):
    bytes: int
    unsent: int
    oldest_unsent_age_s: float | None
    full: bool
    quarantined: NotRequired[int]
    overloaded: NotRequired[bool]  # records arrive faster than they are written: samples shed
    dropped: NotRequired[int]  # records dropped in memory since the daemon started (never written)


class SyncDoc(TypedDict):
    lag_s: float | None
    last_ack: str | None
    state: str


class StatusDoc(TypedDict):
    line: LineDoc
    now: str
    state: StateDoc
    shift: ShiftDoc
    timeline: list[TimelineDoc]
    plcs: dict[str, PlcDoc]
    buffer: BufferDoc
    sync: SyncDoc
    stops_by_category: dict[str, int]


class ReasonDoc(TypedDict):
    code: int | str
    text: str
    category: str
    planned: NotRequired[bool]


@runtime_checkable
class StatusProvider(Protocol):
    """The daemon's side of the status page. Every method must return at once (no I/O):
    it is called on the event loop for each request, about once per second per browser."""

    def status(self) -> StatusDoc: ...

    def stops(self, limit: int) -> list[dict[str, Any]]: ...

    def kpis(self) -> list[dict[str, Any]]: ...

    def reasons(self) -> list[ReasonDoc]: ...

    def set_reason(self, stop_id: str, code: int | str) -> dict[str, Any]: ...


class SnapshotProvider:
    """A `StatusProvider` that serves the latest snapshot the daemon pushed into it.

    The daemon's health task calls `publish(...)` every second or so; requests read the last
    published data. `set_reason` updates the stop here and hands it to `on_reason` (the
    daemon's hook that writes a new revision of the stop to the buffer); without a hook the
    change stays local to the page.
    """

    def __init__(
        self,
        status: StatusDoc,
        *,
        stops: Sequence[Mapping[str, Any]] = (),
        kpis: Sequence[Mapping[str, Any]] = (),
        reasons: Sequence[ReasonDoc] = (),
        on_reason: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._status = status
        self._stops: list[dict[str, Any]] = [dict(s) for s in stops]
        self._kpis: list[dict[str, Any]] = [dict(k) for k in kpis]
        self._reasons: list[ReasonDoc] = list(reasons)
        self._on_reason = on_reason

    def publish(
        self,
        status: StatusDoc | None = None,
        *,
        stops: Sequence[Mapping[str, Any]] | None = None,
        kpis: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Replace what the page shows; `stops` newest first."""
        if status is not None:
            self._status = status
        if stops is not None:
            self._stops = [dict(s) for s in stops]
        if kpis is not None:
            self._kpis = [dict(k) for k in kpis]

    def status(self) -> StatusDoc:
        return self._status

    def stops(self, limit: int) -> list[dict[str, Any]]:
        return self._stops[: max(limit, 0)]

    def kpis(self) -> list[dict[str, Any]]:
        return list(self._kpis)

    def reasons(self) -> list[ReasonDoc]:
        return list(self._reasons)

    def set_reason(self, stop_id: str, code: int | str) -> dict[str, Any]:
        reason = next((r for r in self._reasons if str(r["code"]) == str(code)), None)
        if reason is None:
            raise ValueError(f"unknown reason code {code!r}")
        for i, stop in enumerate(self._stops):
            if stop.get("id") == stop_id:
                updated = copy.deepcopy(stop)
                updated.update(
                    rev=int(stop.get("rev", 0)) + 1,
                    reason_code=reason["code"],
                    reason_text=reason["text"],
                    reason_category=reason["category"],
                    reason_source="operator",
                )
                if self._on_reason is not None:
                    self._on_reason(updated)
                self._stops[i] = updated
                return updated
        raise KeyError(stop_id)
