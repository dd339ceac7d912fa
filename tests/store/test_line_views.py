"""The store's per-line views (summary by ISO week, MTBF/MTTR per shift) and central context."""

from __future__ import annotations

import time
from typing import Any

from edge.processor import LineProcessor
from sync.records import KpiRecord, Record, StopRecord, encode_json, format_ts
from sync.store.views import weeks_start
from tests.reasons.scenario import END, T0, config, run, stop_id
from tests.store.harness import TOKENS, StoreUnderTest, batch, new_line

IDENT = {"site": "plant1", "area": "pack", "machine": "filler"}


def post(store: StoreUnderTest, line: str, recs: list[Record]) -> None:
    r = store.post(encode_json(batch(line, recs)))
    assert r.status_code == 200, r.text


def _stop(line: str, start: float, dur: float, category: str, code: Any = None) -> StopRecord:
    return StopRecord(id=f"{line}:stop:{round(start * 1000)}", line=line, ts=format_ts(start + dur),
                      start=format_ts(start), end=format_ts(start + dur), duration_s=dur, category=category,
                      reason_code=code, reason_text={42: "Jam", 90: "Changeover"}.get(code), **IDENT)


def _kpi(line: str, interval: str, start: float, length: float, run_s: float) -> KpiRecord:
    return KpiRecord(id=f"{line}:kpi:{interval}:{round(start * 1000)}", line=line, ts=format_ts(start + length),
                     interval=interval, start=format_ts(start), end=format_ts(start + length), run_time_s=run_s,
                     final=True, **IDENT)  # type: ignore[arg-type]


def test_summary_gives_mtbf_mttr_per_iso_week_open_stops_without_reason_and_top_reasons(
    store: StoreUnderTest,
) -> None:
    line = new_line()
    this = weeks_start(time.time(), 1)
    last = this - 7 * 86400
    post(store, line, [
        # last week: run 20000 s, unplanned 600 s (42) + 400 s (no reason)
        _kpi(line, "day", last, 86400, 20000.0),
        _stop(line, last + 3600, 600, "unplanned_stop", 42),
        _stop(line, last + 7200, 400, "unplanned_stop"),
        # this week: run 30000 s (the hour records must not be added on top of the day's),
        # unplanned 300 + 600 s (42) and 900 s (none), a micro-stop and a planned changeover
        _kpi(line, "day", this, 86400, 30000.0),
        _kpi(line, "hour", this, 3600, 3000.0),
        _stop(line, this + 100, 300, "unplanned_stop", 42),
        _stop(line, this + 1000, 600, "unplanned_stop", 42),
        _stop(line, this + 2000, 900, "unplanned_stop"),
        _stop(line, this + 4000, 60, "micro_stop"),
        _stop(line, this + 5000, 1200, "planned_stop", 90),
        # three weeks ago: outside weeks=2
        _stop(line, last - 14 * 86400, 5000, "unplanned_stop"),
    ])
    r = store.get(f"/v1/lines/{line}/summary", weeks=2)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["run_time_from"] == "day"
    weeks = [(w["unplanned_stop_count"], w["run_time_s"], w["mtbf_s"], w["mttr_s"]) for w in s["weeks"]]
    assert weeks == [(2, 20000.0, 10000.0, 500.0), (3, 30000.0, 10000.0, 600.0)]
    assert s["open_stops_without_reason"]["count"] == 2
    assert [x["duration_s"] for x in s["open_stops_without_reason"]["stops"]] == [900.0, 400.0]
    assert [(x["reason_code"], x["count"], x["lost_time_s"]) for x in s["top_reasons"]] == [
        (42, 3, 1500.0), (None, 3, 1360.0), (90, 1, 1200.0)]


def test_summary_and_shifts_refuse_lines_the_token_may_not_see_and_bad_parameters(store: StoreUnderTest) -> None:
    line = new_line()
    assert store.get(f"/v1/lines/{line}/summary", token=TOKENS["line_a"]).status_code == 403
    assert store.get(f"/v1/lines/{line}/summary", weeks=0).status_code == 400
    assert store.get(f"/v1/lines/{line}/shifts", since="yesterday").status_code == 400
    assert store.get(f"/v1/lines/{line}/summary").json()["weeks"] == []


def test_mtbf_and_mttr_per_shift_match_the_hand_computed_scenario_before_and_after_a_planned_reason(
    store: StoreUnderTest,
) -> None:
    proc = LineProcessor(config())
    records = run(proc)
    line = "l1"  # the scenario's line id; this module's other tests use random ids
    post(store, line, records)
    shifts = store.get(f"/v1/lines/{line}/shifts", since=format_ts(T0)).json()["shifts"]
    assert [(s["shift"], s["unplanned_stop_count"], s["mtbf_s"], s["mttr_s"]) for s in shifts] == [
        ("early", 3, 2040.0, 360.0)]
    # the operator says B (600 s) was a changeover: 2 unplanned stops, 300 + 180 s, run 6120 s
    post(store, line, proc.set_reason(stop_id("B"), 90, source="operator", at=T0 + END + 5))
    shifts = store.get(f"/v1/lines/{line}/shifts", since=format_ts(T0)).json()["shifts"]
    assert [(s["shift"], s["unplanned_stop_count"], s["planned_stop_count"], s["mtbf_s"], s["mttr_s"])
            for s in shifts] == [("early", 2, 1, 3060.0, 240.0)]
    stops = store.get("/v1/stops", line=line).json()["stops"]
    assert len(stops) == len({s["id"] for s in stops}) == 3


def test_context_set_centrally_is_merged_and_pulled_by_sequence(store: StoreUnderTest) -> None:
    line = new_line()
    h = TOKENS["follow_up"].header
    r = store.client.put(f"/v1/lines/{line}/context", json={"product": "B-200", "order": "4711"}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()["seq"]
    r = store.client.put(f"/v1/lines/{line}/context", json={"operator": "mia", "order": None}, headers=h)
    assert r.status_code == 200, r.text
    got = store.get("/v1/context", line=line).json()
    assert [(c["product"], c["order"], c["operator"], c["changed"]) for c in got["context"]] == [
        ("B-200", "4711", None, ["order", "product"]), ("B-200", None, "mia", ["operator", "order"])]
    assert got["last_seq"] == got["context"][-1]["seq"]
    later = store.get("/v1/context", line=line, since_seq=first).json()
    assert [c["operator"] for c in later["context"]] == ["mia"]
    # bad input: a clear error, nothing stored
    assert store.client.put(f"/v1/lines/{line}/context", json={}, headers=h).status_code == 400
    assert store.client.put(f"/v1/lines/{line}/context", json={"shift": "x"}, headers=h).status_code == 400
    assert store.client.put(f"/v1/lines/{line}/context", json={"product": "B"},
                            headers=TOKENS["edge"].header).status_code == 403  # write-only edge token
    assert len(store.get("/v1/context", line=line).json()["context"]) == 2
