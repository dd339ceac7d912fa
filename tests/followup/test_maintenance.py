"""Maintenance rules: each scripted scenario raises its request once, with the evidence maintenance needs."""

from __future__ import annotations

from edge.followup import FollowUpEngine
from sync.records import MaintenanceRequestRecord, format_ts
from tests.followup.scenario import MACHINE, T0, config, event, stop


def _engine(rules: str) -> FollowUpEngine:
    return FollowUpEngine(config("  maintenance:\n" + rules))


def _only(records: list) -> MaintenanceRequestRecord:  # type: ignore[type-arg]
    assert len(records) == 1, records
    rec = records[0]
    assert isinstance(rec, MaintenanceRequestRecord)
    return rec


LONG = "    - {rule: long_stop, min_duration_s: 600, clear_after_s: 3600}\n"


def test_long_equipment_failure_stop_raises_one_request_while_open_and_revises_it_when_it_ends() -> None:
    eng = _engine(LONG)
    start = T0 + 100
    assert eng.observe([stop(start, None)]) == []
    assert eng.observe([stop(start, None, category="unplanned_stop", rev=1, ts=start + 120)]) == []
    assert eng.tick(start + 599) == []
    req = _only(eng.tick(start + 600))
    sid = stop(start, None).id
    assert req.id == f"line3:maintenance_request:long_stop:{MACHINE}/equipment_failure:{round(start * 1000)}"
    assert (req.rev, req.status, req.priority) == (0, "open", "high")
    assert req.equipment == f"{MACHINE}/equipment_failure"
    assert req.stop_ids == [sid]
    assert (req.shift, req.order, req.product) == ("early", "PO-4711", "A-100")
    assert req.evidence["ongoing"] is True and req.evidence["stops"][0]["duration_s"] is None
    # The stop goes on: ticks add nothing.
    for t in range(610, 900, 10):
        assert eng.tick(start + t) == []
    ended = _only(eng.observe([stop(start, start + 900, rev=2)]))
    assert (ended.id, ended.rev, ended.status) == (req.id, 1, "open")
    assert ended.evidence["stops"][0]["duration_s"] == 900.0
    assert ended.evidence["longest_s"] == 900.0 and ended.evidence["ongoing"] is False
    assert "Sealing jaw jam" in ended.summary
    # Closed once the condition has been clear for clear_after_s, and only then.
    assert eng.tick(start + 900 + 3599) == []
    closed = _only(eng.tick(start + 900 + 3600))
    assert (closed.id, closed.rev, closed.status) == (req.id, 2, "closed")
    assert closed.evidence["cleared_at"] == format_ts(start + 900)
    assert eng.tick(start + 9000) == []


def test_second_long_stop_while_request_open_is_added_to_it_not_a_new_request() -> None:
    eng = _engine(LONG)
    a, b = T0, T0 + 2000
    first = _only(eng.observe([stop(a, a + 700)]))
    second = _only(eng.observe([stop(b, b + 650)]))
    assert second.id == first.id and second.rev == 1
    assert second.stop_ids == [stop(a, None).id, stop(b, None).id]
    assert second.evidence["stop_count"] == 2 and second.evidence["total_stop_s"] == 1350.0


def test_long_stop_after_the_request_closed_opens_a_new_request() -> None:
    eng = _engine(LONG)
    first = _only(eng.observe([stop(T0, T0 + 700)]))
    closed = _only(eng.tick(T0 + 700 + 3600))
    assert closed.status == "closed"
    later = _only(eng.observe([stop(T0 + 9000, T0 + 9700)]))
    assert later.id != first.id and later.rev == 0


def test_long_stop_with_other_reason_or_planned_or_short_raises_nothing() -> None:
    eng = _engine(LONG)
    out = eng.observe([
        stop(T0, T0 + 900, code=17),  # material: not equipment failure
        stop(T0 + 1000, T0 + 2000, code=90),  # changeover: planned
        stop(T0 + 3000, T0 + 3500),  # equipment failure, but shorter than 600 s
    ])
    assert out == [] and eng.tick(T0 + 4000) == []


MICRO = "    - {rule: repeated_micro_stops, count: 3, within_s: 600, clear_after_s: 600}\n"


def test_third_micro_stop_of_same_reason_within_window_raises_one_request_with_window_evidence() -> None:
    eng = _engine(MICRO)
    stops = [stop(T0 + t, T0 + t + 30, code=17) for t in (0, 100, 200)]
    other = [stop(T0 + t, T0 + t + 20, code=42) for t in (50, 150)]  # other reason: its own count
    assert eng.observe([stops[0], other[0], stops[1], other[1]]) == []
    req = _only(eng.observe([stops[2]]))
    assert req.rule == "repeated_micro_stops" and req.priority == "medium"
    assert req.equipment == f"{MACHINE}/material"
    assert req.stop_ids == [s.id for s in stops]
    ev = req.evidence
    assert (ev["reason_code"], ev["window_count"], ev["count"], ev["within_s"]) == (17, 3, 3, 600.0)
    assert (ev["window_start"], ev["window_end"]) == (format_ts(T0), format_ts(T0 + 230))
    assert (ev["window_stop_s"], ev["mean_duration_s"]) == (90.0, 30.0)


def test_micro_stops_while_open_revise_at_most_every_five_minutes_then_the_request_closes() -> None:
    eng = _engine(MICRO)
    eng.observe([stop(T0 + t, T0 + t + 30, code=17) for t in (0, 100)])
    req = _only(eng.observe([stop(T0 + 200, T0 + 230, code=17)]))
    assert eng.observe([stop(T0 + 300, T0 + 330, code=17)]) == []  # batched, not per stop
    assert eng.tick(T0 + 529) == []
    rev = _only(eng.tick(T0 + 530))
    assert (rev.id, rev.rev) == (req.id, 1)
    assert len(rev.stop_ids) == 4 and rev.evidence["micro_stops_since_open"] == 4
    # Without more stops the window stops holding 3 at T0+100+600; closed 600 s later.
    assert eng.tick(T0 + 1299) == []
    closed = _only(eng.tick(T0 + 1300))
    assert (closed.id, closed.status, closed.rev) == (req.id, "closed", 2)


MTBF = "    - {rule: mtbf_drop, failures: 2, fraction: 0.5, baseline_days: 1}\n"


def _failures() -> list:  # type: ignore[type-arg]
    # (start, end) of failures; uptimes before F1..F6: 10000, 10000, 10000-1000 (changeover), 2000, 1000, 500
    spans = [(0, 300), (10300, 10600), (20600, 20900), (30900, 31200), (33200, 33500), (34500, 35100),
             (35600, 35900)]
    return [stop(T0 + s, T0 + e) for s, e in spans]


def test_mtbf_drop_below_half_of_baseline_raises_request_with_hand_computed_mtbf_and_mttr() -> None:
    eng = _engine(MTBF)
    f = _failures()
    assert eng.observe(f[:3]) == []
    assert eng.observe([stop(T0 + 25000, T0 + 26000, code=90)]) == []  # planned: not run time
    # F4: recent (9000 + 2000) / 2 = 5500 >= 0.5 x 31000 / 4: no request.
    assert eng.observe(f[3:5]) == []
    req = _only(eng.observe([f[5]]))
    ev = req.evidence
    assert ev["mtbf_recent_s"] == 1500.0  # (2000 + 1000) / 2
    assert ev["mtbf_baseline_s"] == 6400.0  # (10000 + 10000 + 9000 + 2000 + 1000) / 5
    assert ev["mtbf_ratio"] == 0.2344
    assert ev["mttr_recent_s"] == 450.0  # (300 + 600) / 2
    assert ev["mttr_baseline_s"] == 360.0  # (300 x 4 + 600) / 5
    assert ev["baseline_failures"] == 5
    assert [x["uptime_before_s"] for x in ev["recent_failures"]] == [2000.0, 1000.0]
    assert req.stop_ids == [f[4].id, f[5].id] and req.equipment == MACHINE
    # One more failure, MTBF still low: the same request, revised with it.
    again = _only(eng.observe([f[6]]))
    assert (again.id, again.rev) == (req.id, 1)
    assert again.stop_ids == [f[4].id, f[5].id, f[6].id]
    assert again.evidence["mtbf_recent_s"] == 750.0
    # A reason set later on a failure is no new failure.
    assert eng.observe([stop(T0 + 35600, T0 + 35900, rev=3, ts=T0 + 36000)]) == []


def test_mtbf_rule_stays_quiet_while_history_is_too_short_for_a_baseline() -> None:
    eng = _engine(MTBF)
    # Three failures in quick succession: only two uptimes, not more than K=2.
    spans = [(0, 300), (10300, 10600), (10700, 11000)]
    assert eng.observe([stop(T0 + s, T0 + e) for s, e in spans]) == []


SUSPECT = "    - {rule: counter_suspect, clear_after_s: 3600}\n"


def test_counter_reset_and_implausible_count_make_one_request_with_both_events() -> None:
    eng = _engine(SUSPECT)
    reset = event(T0 + 10, "counter_reset", tag="total_count", old=51234, new=3)
    jump = event(T0 + 20, "implausible_count", tag="total_count", old=3, new=900000)
    assert eng.observe([event(T0 + 5, "plc_disconnected", plc="cartoner")]) == []
    req = _only(eng.observe([reset]))
    assert (req.rule, req.priority, req.equipment) == ("counter_suspect", "low", MACHINE)
    assert req.evidence["counts"] == {"counter_reset": 1}
    rev = _only(eng.observe([jump]))
    assert (rev.id, rev.rev) == (req.id, 1)
    assert rev.evidence["counts"] == {"counter_reset": 1, "implausible_count": 1}
    assert [e["detail"]["new"] for e in rev.evidence["events"]] == [3, 900000]
    assert eng.observe([jump]) == []  # the same event again changes nothing
    assert eng.tick(T0 + 20 + 3599) == []
    assert _only(eng.tick(T0 + 20 + 3600)).status == "closed"
