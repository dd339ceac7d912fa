"""Follow-up queries of RECORDS.md: stops, reasons set centrally and pulled back, KPIs, open requests and alerts, acks."""

from __future__ import annotations

import msgspec

from sync.records import KpiRecord, MaintenanceRequestRecord, QualityAlertRecord, encode_json, format_ts
from tests.store.harness import TOKENS, StoreToken, StoreUnderTest, batch, new_line, stop

T0 = 1_763_791_200


def post(store: StoreUnderTest, line: str, recs: list) -> None:  # type: ignore[type-arg]
    r = store.post(encode_json(batch(line, recs)))
    assert r.status_code == 200, r.text


def ids(items: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [i["id"] for i in items]


def test_stops_filter_by_line_since_category_and_unreasoned(store: StoreUnderTest) -> None:
    line, other = new_line(), new_line()
    post(store, line, [
        stop(line, 0, category="micro_stop"),
        stop(line, 1, category="unplanned_stop", reason_code=17, reason_source="plc"),
        stop(line, 2, category="unplanned_stop"),
        stop(line, 3, category="planned_stop", reason_code="changeover", reason_source="operator"),
    ])
    post(store, other, [stop(other, 0)])
    assert ids(store.get("/v1/stops", line=line).json()["stops"]) == [f"{line}:stop:{i}" for i in range(4)]
    assert ids(store.get("/v1/stops", line=line, since=format_ts(T0 + 60)).json()["stops"]) == [
        f"{line}:stop:{i}" for i in (1, 2, 3)
    ]
    # since in another offset means the same instant
    assert store.get("/v1/stops", line=line, since="2025-11-22T07:01:00+01:00").json()["count"] == 3
    assert ids(store.get("/v1/stops", line=line, category="unplanned_stop").json()["stops"]) == [
        f"{line}:stop:1", f"{line}:stop:2"
    ]
    assert ids(store.get("/v1/stops", line=line, unreasoned="true").json()["stops"]) == [
        f"{line}:stop:0", f"{line}:stop:2"
    ]
    assert store.get("/v1/stops", line=line, limit=2).json()["count"] == 2


def test_bad_query_parameters_are_400_with_the_parameter_named(store: StoreUnderTest) -> None:
    for params, name in (({"since": "last tuesday"}, "since"), ({"category": "nap"}, "category"),
                         ({"unreasoned": "maybe"}, "unreasoned"), ({"limit": "0"}, "limit")):
        r = store.get("/v1/stops", **params)
        assert r.status_code == 400 and name in r.json()["error"]
    assert store.get("/v1/kpis", interval="fortnight").status_code == 400
    assert store.get("/v1/maintenance-requests", status="pending").status_code == 400


def test_edge_token_reads_only_its_own_lines(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [stop(line, 0)])
    post(store, "line-a", [stop("line-a", 500)])
    edge_a = TOKENS["line_a"]
    assert store.get("/v1/stops", token=edge_a, line=line).status_code == 403
    seen = {s["line"] for s in store.get("/v1/stops", token=edge_a).json()["stops"]}
    assert seen == {"line-a"}
    assert store.client.get("/v1/stops").status_code == 401


def test_central_reason_is_a_new_rev_with_source_central_and_listed_for_the_edge(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [stop(line, 0), stop(line, 1)])
    last = store.get("/v1/reasons", token=TOKENS["edge"], line=line).json()["last_seq"]
    r = store.client.patch(f"/v1/stops/{line}:stop:1", headers=TOKENS["follow_up"].header,
                           json={"line": line, "reason_code": 42, "reason_text": "jam at infeed",
                                 "reason_category": "material"})
    assert r.status_code == 200, r.text
    assert r.json()["rev"] == 1 and r.json()["reason_source"] == "central" and r.json()["reason_code"] == 42
    assert ids(store.get("/v1/stops", line=line, unreasoned="true").json()["stops"]) == [f"{line}:stop:0"]
    pulled = store.get("/v1/reasons", token=TOKENS["edge"], line=line, since_seq=last).json()
    assert [(c["stop_id"], c["reason_code"], c["reason_text"]) for c in pulled["reasons"]] == [
        (f"{line}:stop:1", 42, "jam at infeed")
    ]
    assert store.get("/v1/reasons", line=line, since_seq=pulled["last_seq"]).json()["reasons"] == []


def test_edge_closing_a_stop_after_a_central_reason_keeps_both(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [stop(line, 1)])
    store.client.patch(f"/v1/stops/{line}:stop:1", headers=TOKENS["follow_up"].header,
                       json={"line": line, "reason_code": "E7"})
    # The edge has not pulled the reason yet and sends rev 1 (closed, no reason).
    closed = stop(line, 1, rev=1, end=format_ts(T0 + 100), duration_s=40.0)
    assert store.post(encode_json(batch(line, [closed]))).json() == {"accepted": 1, "duplicates": 0}
    (s,) = store.get("/v1/stops", line=line).json()["stops"]
    assert (s["end"], s["reason_code"], s["reason_source"]) == (closed.end, "E7", "central")
    assert s["rev"] == 2
    # The edge pulled it and sends the stop with the central reason; later the operator changes it.
    adopted = msgspec.structs.replace(closed, rev=2, reason_code="E7", reason_source="central")
    operator = msgspec.structs.replace(closed, rev=3, reason_code="E9", reason_source="operator")
    assert store.post(encode_json(batch(line, [adopted, operator]))).json()["accepted"] == 2
    (s2,) = store.get("/v1/stops", line=line).json()["stops"]
    assert (s2["reason_code"], s2["reason_source"]) == ("E9", "operator")
    assert s2["rev"] > s["rev"]  # the store's rev only grows, central changes included


def test_patch_needs_the_follow_up_role_a_valid_body_and_an_existing_stop(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [stop(line, 1)])
    path = f"/v1/stops/{line}:stop:1"
    r = store.client.patch(path, headers=TOKENS["edge"].header, json={"line": line, "reason_code": 1})
    assert r.status_code == 403
    r = store.client.patch(path, headers=TOKENS["follow_up"].header, json={"line": line})
    assert r.status_code == 400 and "reason_code" in r.json()["error"]
    r = store.client.patch(f"/v1/stops/{line}:stop:99", headers=TOKENS["follow_up"].header,
                           json={"line": line, "reason_code": 1})
    assert r.status_code == 404
    assert store.get("/v1/stops", line=line).json()["stops"][0]["reason_code"] is None


def kpi(line: str, hour: int, interval: str = "hour", final: bool = True) -> KpiRecord:
    start = T0 + 3600 * hour
    return KpiRecord(id=f"{line}:kpi:{interval}:{start}", site="p", area="a", line=line, machine="m",
                     ts=format_ts(start + 3600), interval=interval, start=format_ts(start),  # type: ignore[arg-type]
                     end=format_ts(start + 3600), total_count=100 * hour, final=final)


def test_kpis_filter_by_interval_and_since_and_final_rev_replaces_provisional(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [kpi(line, 0, final=False), kpi(line, 1), kpi(line, 2), kpi(line, 0, "shift")])
    post(store, line, [msgspec.structs.replace(kpi(line, 0), rev=1)])
    hours = store.get("/v1/kpis", line=line, interval="hour").json()["kpis"]
    assert [(k["start"], k["final"]) for k in hours] == [(format_ts(T0 + 3600 * h), True) for h in range(3)]
    assert store.get("/v1/kpis", line=line, interval="hour", since=format_ts(T0 + 3600)).json()["count"] == 2
    assert store.get("/v1/kpis", line=line, interval="shift").json()["count"] == 1


def mr(line: str, n: int, status: str = "open") -> MaintenanceRequestRecord:
    return MaintenanceRequestRecord(id=f"{line}:mr:{n}", site="p", area="a", line=line, machine="m",
                                    ts=format_ts(T0 + n), rule="repeated_stop", status=status)  # type: ignore[arg-type]


def qa(line: str, n: int) -> QualityAlertRecord:
    return QualityAlertRecord(id=f"{line}:qa:{n}", site="p", area="a", line=line, machine="m", ts=format_ts(T0 + n),
                              rule="reject_rate", window_start=format_ts(T0), window_end=format_ts(T0 + 900),
                              reject_rate=0.08, threshold=0.05)


def ack(store: StoreUnderTest, kind: str, line: str, rid: str, token: StoreToken | None = None) -> int:
    r = store.client.post(f"/v1/{kind}/{rid}/ack", params={"line": line},
                          headers=(token or TOKENS["follow_up"]).header)
    return r.status_code


def test_open_maintenance_requests_are_listed_until_acknowledged(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [mr(line, 1), mr(line, 2), mr(line, 3, status="closed")])
    open_ = store.get("/v1/maintenance-requests", line=line, status="open").json()["maintenance_requests"]
    assert ids(open_) == [f"{line}:mr:1", f"{line}:mr:2"]
    assert ack(store, "maintenance-requests", line, f"{line}:mr:1") == 200
    assert ack(store, "maintenance-requests", line, f"{line}:mr:1") == 200  # again: unchanged
    assert ack(store, "maintenance-requests", line, f"{line}:mr:3") == 409
    assert ack(store, "maintenance-requests", line, f"{line}:mr:9") == 404
    assert ack(store, "maintenance-requests", line, f"{line}:mr:2", token=TOKENS["edge"]) == 403
    assert ids(store.get("/v1/maintenance-requests", line=line, status="open").json()["maintenance_requests"]) == [
        f"{line}:mr:2"
    ]
    # The edge sends a new rev of the acknowledged request (more evidence, still "open" there).
    post(store, line, [msgspec.structs.replace(mr(line, 1), rev=1, summary="5 more stops")])
    (got,) = [m for m in store.get("/v1/maintenance-requests", line=line).json()["maintenance_requests"]
              if m["id"] == f"{line}:mr:1"]
    assert (got["status"], got["summary"]) == ("acknowledged", "5 more stops")


def test_open_quality_alerts_are_listed_until_acknowledged(store: StoreUnderTest) -> None:
    line = new_line()
    post(store, line, [qa(line, 1), qa(line, 2)])
    assert store.get("/v1/quality-alerts", line=line, status="open").json()["count"] == 2
    r = store.client.post(f"/v1/quality-alerts/{line}:qa:2/ack", headers=TOKENS["follow_up"].header)
    assert r.status_code == 400 and "line" in r.json()["error"]
    assert ack(store, "quality-alerts", line, f"{line}:qa:2") == 200
    assert ids(store.get("/v1/quality-alerts", line=line, status="open").json()["quality_alerts"]) == [
        f"{line}:qa:1"
    ]
    assert store.get("/v1/quality-alerts", line=line, status="acknowledged").json()["count"] == 1


def test_healthz_answers_ok_with_any_valid_token(store: StoreUnderTest) -> None:
    assert store.get("/healthz", token=TOKENS["line_a"]).json() == {"status": "ok"}
    assert store.client.get("/healthz").status_code == 401
