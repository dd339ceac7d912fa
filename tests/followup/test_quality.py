"""Quality rules: each scripted scenario raises its alert once, with window, rates and process values."""

from __future__ import annotations

from edge.followup import FollowUpEngine
from sync.records import QualityAlertRecord, format_ts
from tests.followup.scenario import T0, config, count, sample, stop


def _engine(rules: str) -> FollowUpEngine:
    return FollowUpEngine(config("  quality:\n" + rules))


def _only(records: list) -> QualityAlertRecord:  # type: ignore[type-arg]
    assert len(records) == 1, records
    rec = records[0]
    assert isinstance(rec, QualityAlertRecord)
    return rec


REJECT = "    - {rule: reject_rate, threshold: 0.05, window_s: 300, min_parts: 100, clear_after_s: 900}\n"


def test_reject_rate_over_threshold_in_sliding_window_raises_one_alert_and_revises_with_the_peak() -> None:
    eng = _engine(REJECT)
    rejects = [1, 1, 1, 1, 1, 10, 10, 10, 0, 0, 0, 0, 0]  # per minute, 60 parts each
    out = []
    for minute, rej in enumerate(rejects):
        out += eng.observe([count(T0 + 60 * minute, 60, rej)])
    # Minute 6 is the first window over 5 %: minutes 2..6 hold 3 + 20 = 23 rejects of 300 parts.
    alert = _only(out)
    assert (alert.rule, alert.status, alert.threshold) == ("reject_rate", "open", 0.05)
    assert alert.reject_rate == round(23 / 300, 6)
    assert (alert.window_start, alert.window_end) == (format_ts(T0 + 120), format_ts(T0 + 420))
    assert (alert.product, alert.ts) == ("A-100", format_ts(T0 + 420))
    first = alert.evidence["first_window"]
    assert (first["parts"], first["rejects"]) == (300, 23)
    # Later windows over the threshold are batched into one revision.
    rev = _only(eng.tick(T0 + 720))
    assert (rev.id, rev.rev) == (alert.id, 1)
    assert rev.reject_rate == round(32 / 300, 6)  # the peak: minutes 3..7
    assert rev.evidence["windows_over"] == 5  # windows ending at minutes 6, 7, 8, 9, 10
    assert rev.window_end == format_ts(T0 + 660)
    assert eng.tick(T0 + 660 + 899) == []
    closed = _only(eng.tick(T0 + 660 + 900))
    assert (closed.id, closed.status) == (alert.id, "closed")


def test_reject_rate_below_min_parts_raises_nothing_however_high() -> None:
    eng = _engine(REJECT)
    out = [r for m in range(5) for r in eng.observe([count(T0 + 60 * m, 19, 10)])]
    assert out == [] and eng.tick(T0 + 3600) == []


STARTUP = "    - {rule: startup_rejects, after_stop_s: 300, max_rejects: 5}\n"


def test_rejects_after_a_stop_raise_one_startup_alert_with_the_stop_and_its_window() -> None:
    eng = _engine(STARTUP)
    failure = stop(T0 + 30, T0 + 630)
    buckets = [(600, 20, 4), (660, 60, 2), (720, 60, 1), (780, 60, 0), (840, 60, 1), (900, 60, 0), (960, 60, 3)]
    assert eng.observe([count(T0 + 540, 60, 3), failure]) == []  # rejects before the stop do not count
    out = []
    for start, total, rej in buckets:
        out += eng.observe([count(T0 + start, total, rej)])
    alert = _only(out)  # opened when the window passed 5 (4 + 2)
    assert alert.ts == format_ts(T0 + 720)
    assert alert.evidence["stop_ids"] == [failure.id]
    assert alert.window_start == format_ts(T0 + 630)
    assert (alert.product, alert.order) == ("A-100", "PO-4711")
    rev = _only(eng.tick(T0 + 1020))
    entry = rev.evidence["stops"][0]
    # Buckets overlapping [630, 930]: 4 + 2 + 1 + 0 + 1 + 0; the bucket from 960 is after it.
    assert (entry["rejects"], entry["parts"]) == (8, 320)
    assert entry["window_end"] == format_ts(T0 + 930)
    assert rev.reject_rate == round(8 / 320, 6)
    assert rev.window_end == format_ts(T0 + 930)


def test_rejects_after_micro_stop_or_at_most_max_rejects_raise_no_startup_alert() -> None:
    eng = _engine(STARTUP)
    out = eng.observe([stop(T0, T0 + 30, code=17), count(T0 + 60, 60, 9)])  # micro-stop
    out += eng.observe([stop(T0 + 1000, T0 + 1500), count(T0 + 1500, 60, 3), count(T0 + 1560, 60, 2)])
    assert out == [] and eng.tick(T0 + 4000) == []


LIMITS = "    - {rule: process_limits, signal: seal_temp_c, min: 160, max: 190}\n"


def _run_with_temps(eng: FollowUpEngine, temps: dict[int, float], until: int, making: bool) -> None:
    total = 1000
    for t in range(until):
        eng.observe_samples([sample("process.seal_temp_c", T0 + t, temps.get(t, 175.0))])
        total += 1 if making else 0
        eng.observe_samples([sample("total_count", T0 + t + 0.5, total)])


def test_process_value_out_of_limits_while_parts_are_made_raises_one_alert_with_values_seen() -> None:
    eng = _engine(LIMITS)
    hot = {61 + i: 191.0 + i for i in range(10)}  # 191 .. 200 for ten seconds
    _run_with_temps(eng, hot, 120, making=True)
    alert = _only(eng.observe([]))
    assert (alert.rule, alert.window_start) == ("process_limits", format_ts(T0 + 61))
    assert alert.process["seal_temp_c"] == 191.0  # the value when the alert was made
    assert alert.evidence["excursions"][0]["values"][0] == {"ts": format_ts(T0 + 61), "value": 191.0}
    rev = _only(eng.tick(T0 + 400))  # the growing excursion, batched into one revision
    ev = rev.evidence
    assert (ev["min_seen"], ev["max_seen"], ev["parts_made"]) == (191.0, 200.0, 10)
    assert [v["value"] for v in ev["excursions"][0]["values"]] == [191.0 + i for i in range(10)]
    assert ev["excursions"][0]["end"] == format_ts(T0 + 71)
    assert rev.window_end == format_ts(T0 + 70.5)  # the last part made out of limits
    assert ev["process_seen"]["seal_temp_c"]["max"] == 200.0


def test_process_value_out_of_limits_while_line_stands_raises_nothing() -> None:
    eng = _engine(LIMITS)
    _run_with_temps(eng, {t: 150.0 for t in range(30, 90)}, 120, making=False)
    assert eng.observe([]) == [] and eng.tick(T0 + 1000) == []


def test_process_limits_use_count_records_when_no_counter_samples_come() -> None:
    eng = _engine(LIMITS)
    for t in range(0, 120, 2):
        eng.observe_samples([sample("process.seal_temp_c", T0 + t, 198.0 if 70 <= t < 80 else 175.0)])
    assert eng.observe([count(T0, 60, 0)]) == []  # in limits during this minute
    alert = _only(eng.observe([count(T0 + 60, 60, 0)]))
    assert alert.evidence["parts_made"] == 60 and alert.evidence["max_seen"] == 198.0
