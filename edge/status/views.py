"""Small pure helpers that shape provider data for the page (no I/O, easy to test)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sync.records import parse_ts

__all__ = ["stop_seconds_in_window", "top_reasons"]


def stop_seconds_in_window(stop: Mapping[str, Any], since: float | None, now: float) -> float:
    """Seconds of `stop` at or after `since`; an open stop runs until `now`."""
    try:
        start = parse_ts(stop["start"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    end_raw = stop.get("end")
    end = now if end_raw is None else parse_ts(end_raw)
    if since is not None:
        start = max(start, since)
    return max(end - start, 0.0)


def top_reasons(
    stops: Iterable[Mapping[str, Any]], *, since: float | None, now: float, limit: int = 5
) -> list[dict[str, Any]]:
    """Stop reasons ranked by stop time since `since` (the shift start), longest first.

    Stops without a reason are grouped as one "no reason" entry, so missing reasons are
    visible as a loss of their own rather than hidden.
    """
    groups: dict[str, dict[str, Any]] = {}
    for stop in stops:
        seconds = stop_seconds_in_window(stop, since, now)
        if seconds <= 0:
            continue
        code = stop.get("reason_code")
        key = "" if code is None else str(code)
        g = groups.setdefault(
            key,
            {
                "reason_code": code,
                "reason_text": stop.get("reason_text") or ("no reason" if code is None else str(code)),
                "reason_category": stop.get("reason_category"),
                "count": 0,
                "duration_s": 0.0,
            },
        )
        g["count"] += 1
        g["duration_s"] += seconds
    ranked = sorted(groups.values(), key=lambda g: (-g["duration_s"], -g["count"]))
    for g in ranked:
        g["duration_s"] = round(g["duration_s"], 1)
    return ranked[:limit]
