"""The agent's own status endpoint: JSON at /api/status, Prometheus text at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync.agent.line import LineStatus

__all__ = ["create_status_app"]


class _AgentCollector(Collector):
    """Reads the live per-line status at scrape time (no second copy of the numbers)."""

    def __init__(self, lines: Callable[[], Iterable[LineStatus]]) -> None:
        self._lines = lines

    def collect(self) -> Iterable[Any]:
        g = {
            "lag_records": GaugeMetricFamily("lineside_sync_lag_records", "Records not yet acknowledged", labels=["line"]),
            "lag_seconds": GaugeMetricFamily("lineside_sync_lag_seconds", "Age of the oldest unacknowledged record", labels=["line"]),
            "last_success": GaugeMetricFamily("lineside_sync_last_success_timestamp_seconds", "Last batch the store acknowledged", labels=["line"]),
            "last_error_at": GaugeMetricFamily("lineside_sync_last_error_timestamp_seconds", "Last failed attempt", labels=["line"]),
            "auth_failing": GaugeMetricFamily("lineside_sync_auth_failing", "1 while the store refuses the token (401/403)", labels=["line"]),
            "quarantined": GaugeMetricFamily("lineside_sync_quarantined_records", "Records the store refused, kept in the buffer", labels=["line"]),
            "backfilling": GaugeMetricFamily("lineside_sync_backfilling", "1 while a backlog drains behind live data", labels=["line"]),
            "buffer_full": GaugeMetricFamily("lineside_buffer_full", "1 while the line buffer is at its size cap or the disk is full", labels=["line"]),
        }
        sent = CounterMetricFamily("lineside_sync_records_sent", "Records the store accepted", labels=["line"])
        sent_bytes = CounterMetricFamily("lineside_sync_sent_bytes", "Request bytes of acknowledged batches (as sent)", labels=["line"])
        dups = CounterMetricFamily("lineside_sync_duplicates", "Records the store already had", labels=["line"])
        evicted = CounterMetricFamily("lineside_buffer_evicted_records", "Records evicted by the size cap", labels=["line", "type"])
        for st in self._lines():
            name = st.line or st.path
            for key, fam in g.items():
                value = getattr(st, key)
                if value is None:
                    continue
                fam.add_metric([name], float(value))
            sent.add_metric([name], st.sent_records)
            dups.add_metric([name], st.duplicates)
            sent_bytes.add_metric([name], st.sent_bytes)
            for rtype, n in st.evicted.items():
                evicted.add_metric([name, rtype], n)
        yield from g.values()
        yield from (sent, sent_bytes, dups, evicted)


def create_status_app(
    lines: Callable[[], Iterable[LineStatus]],
    quarantined: Callable[[str, int], Any],
) -> Starlette:
    registry = CollectorRegistry()
    registry.register(_AgentCollector(lines))

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"lines": [st.as_dict() for st in lines()]})

    async def quarantine(request: Request) -> JSONResponse:
        line = request.query_params.get("line", "")
        try:
            limit = max(0, min(1000, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return JSONResponse({"error": "limit must be an integer"}, status_code=400)
        result = await quarantined(line, limit)
        if result is None:
            return JSONResponse({"error": f"unknown line {line!r}"}, status_code=404)
        return JSONResponse(result)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(routes=[
        Route("/api/status", status),
        Route("/api/quarantine", quarantine),
        Route("/metrics", metrics),
    ])
