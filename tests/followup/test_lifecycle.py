"""The life of follow-up records across replays and restarts, and the one-open-per-subject rule."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.followup import FollowUpEngine
from sync.records import MaintenanceRequestRecord, QualityAlertRecord, Record, decode_json, encode_json
from tests.followup.scenario import T0, config, count, event, sample, stop

ALL_RULES = """\
  maintenance:
    - {rule: long_stop, min_duration_s: 600, clear_after_s: 3600}
    - {rule: repeated_micro_stops, count: 3, within_s: 600, clear_after_s: 600}
    - {rule: mtbf_drop, failures: 2, fraction: 0.5, baseline_days: 1}
    - {rule: counter_suspect}
  quality:
    - {rule: reject_rate, threshold: 0.05, window_s: 300, min_parts: 100}
    - {rule: startup_rejects, after_stop_s: 300, max_rejects: 5}
    - {rule: process_limits, signal: seal_temp_c, max: 190}
"""


def _day() -> list[tuple[float, list[Record]]]:
    """A scripted shift: (time, records the processor emits then) for every rule."""
    steps: list[tuple[float, list[Record]]] = []
    for i, s in enumerate([0, 10300, 20600, 30900, 33200, 34500]):
        d = 300 if i != 5 else 600
        steps += [(T0 + s, [stop(T0 + s, None)]), (T0 + s + d, [stop(T0 + s, T0 + s + d, rev=1)])]
    steps.append((T0 + 40000, [stop(T0 + 39700, T0 + 40000, code=90)]))  # changeover, then startup scrap
    for m in range(20):
        steps.append((T0 + 40000 + 60 * (m + 1), [count(T0 + 40000 + 60 * m, 60, 12 if 1 <= m < 4 else 0)]))
    for t in (41500, 41600, 41700):
        steps.append((T0 + t + 30, [stop(T0 + t, T0 + t + 30, code=17)]))
    steps.append((T0 + 42000, [event(T0 + 42000, "counter_reset", tag="total_count", old=9, new=0)]))
    return sorted(steps, key=lambda x: x[0])


def _run(engine: FollowUpEngine, steps: list[tuple[float, list[Record]]], tick_every: float = 30.0) -> list[Record]:
    out: list[Record] = []
    now = steps[0][0]
    for at, records in steps:
        while now + tick_every < at:
            now += tick_every
            out += engine.tick(now)
        out += engine.observe(records)
        now = at
    out += engine.tick(now + 100_000)
    return out


def test_replaying_the_same_day_gives_the_same_records_and_they_pass_the_record_schema() -> None:
    first = _run(FollowUpEngine(config(ALL_RULES)), _day())
    second = _run(FollowUpEngine(config(ALL_RULES)), _day())
    assert [encode_json(r) for r in first] == [encode_json(r) for r in second]
    rules = {r.rule for r in first if isinstance(r, MaintenanceRequestRecord | QualityAlertRecord)}
    assert rules == {"long_stop", "mtbf_drop", "repeated_micro_stops", "counter_suspect", "reject_rate",
                     "startup_rejects"}
    for r in first:
        assert decode_json(encode_json(r)) == r  # plain JSON evidence, valid timestamps


def test_open_request_survives_a_restart_and_is_revised_not_recreated() -> None:
    start = T0 + 100
    cfg = config(ALL_RULES)
    before = FollowUpEngine(cfg)
    history: list[Record] = [stop(start, None)]
    before.observe(history)
    opened = before.tick(start + 600)
    assert [r.rev for r in opened] == [0]
    after = FollowUpEngine(cfg)
    after.restore([*history, *opened])
    assert after.tick(start + 700) == []  # not opened again
    revised = after.observe([stop(start, start + 900, rev=1)])
    assert [(r.id, r.rev, r.status) for r in revised] == [(opened[0].id, 1, "open")]
    assert revised[0].stop_ids == opened[0].stop_ids  # the restored evidence goes on, nothing older joins it


def test_restart_keeps_the_mtbf_baseline_from_the_buffered_stops() -> None:
    spans = [(0, 300), (10300, 10600), (20600, 20900), (30900, 31200), (33200, 33500)]
    buffered: list[Record] = [stop(T0 + s, T0 + e) for s, e in spans]
    restarted = FollowUpEngine(config(ALL_RULES))
    restarted.restore(buffered)
    out = restarted.observe([stop(T0 + 34500, T0 + 35100)])
    mtbf = [r for r in out if isinstance(r, MaintenanceRequestRecord) and r.rule == "mtbf_drop"]
    assert len(mtbf) == 1 and mtbf[0].evidence["mtbf_recent_s"] == 1500.0


def test_restart_after_request_closed_does_not_reopen_it_from_history() -> None:
    cfg = config(ALL_RULES)
    first = FollowUpEngine(cfg)
    history: list[Record] = [stop(T0, T0 + 700)]
    out = first.observe(history) + first.tick(T0 + 700 + 3600)
    assert [r.status for r in out if isinstance(r, MaintenanceRequestRecord)] == ["open", "closed"]
    again = FollowUpEngine(cfg)
    again.restore([*history, *out])
    assert again.tick(T0 + 5000) == [] and again.open_count() == 0


def test_ticks_while_nothing_changes_emit_nothing() -> None:
    eng = FollowUpEngine(config(ALL_RULES))
    eng.observe([stop(T0, None)])
    eng.observe_samples([sample("process.seal_temp_c", T0, 180.0)])
    assert [eng.tick(T0 + t) for t in range(0, 599, 7)] == [[] for _ in range(0, 599, 7)]


stop_steps = st.lists(
    st.tuples(
        st.floats(min_value=1, max_value=4000),  # gap before the stop
        st.floats(min_value=1, max_value=2000),  # its duration
        st.sampled_from([17, 42, 90, None]),  # its reason
        st.integers(min_value=0, max_value=12),  # rejects in the minute after it
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stop_steps, st.sampled_from([10.0, 60.0, 600.0]))
def test_random_stop_sequences_keep_one_open_record_per_rule_and_subject(steps, tick_every: float) -> None:  # type: ignore[no-untyped-def]
    eng = FollowUpEngine(config(ALL_RULES))
    t = T0
    out: list[Record] = []
    for gap, dur, code, rej in steps:
        start = t + gap
        end = start + dur
        while t + tick_every < start:
            t += tick_every
            out += eng.tick(t)
        out += eng.observe([stop(start, None, code=code)])
        out += eng.tick(min(end, start + 700))
        out += eng.observe([stop(start, end, code=code, rev=1)])
        minute = end - end % 60 + 60
        out += eng.observe([count(minute, 60, rej)])
        t = minute + 60
    out += eng.tick(t + 200_000)

    latest: dict[str, MaintenanceRequestRecord | QualityAlertRecord] = {}
    open_by_subject: dict[tuple[str, str], str] = {}
    for r in out:
        assert isinstance(r, MaintenanceRequestRecord | QualityAlertRecord)
        prev = latest.get(r.id)
        assert r.rev == (0 if prev is None else prev.rev + 1), "revisions go up one by one"
        assert prev is None or prev.status == "open", "nothing follows a closing revision"
        latest[r.id] = r
        key = (r.rule, r.evidence["subject"])
        if r.status == "open":
            assert open_by_subject.setdefault(key, r.id) == r.id, "two open records for one rule and subject"
        else:
            assert open_by_subject.pop(key) == r.id
    assert open_by_subject == {}, "everything closes once its condition has been clear long enough"


MICRO_ONLY = """\
  maintenance:
    - {rule: repeated_micro_stops, count: 3, within_s: 600, clear_after_s: 3600}
"""


def _micro_stops(*starts: float) -> list[Record]:
    return [stop(T0 + s, T0 + s + 20, code=17) for s in starts]


def test_a_throttled_revision_is_written_at_shutdown_not_lost() -> None:
    engine = FollowUpEngine(config(MICRO_ONLY))
    opened = engine.observe(_micro_stops(0, 100, 200))
    assert [(r.rev, len(r.stop_ids)) for r in opened] == [(0, 3)]
    # A fourth micro-stop a minute later joins the request, held back by the revision throttle.
    assert engine.observe(_micro_stops(260)) == []
    flushed = engine.flush(T0 + 300)
    assert [(r.id, r.rev, len(r.stop_ids)) for r in flushed] == [(opened[0].id, 1, 4)]
    assert engine.flush(T0 + 301) == []  # nothing pending twice


def test_a_revision_unsent_at_a_crash_goes_out_after_the_restart() -> None:
    cfg = config(MICRO_ONLY)
    crashed = FollowUpEngine(cfg)
    history = _micro_stops(0, 100, 200)
    opened = crashed.observe(history)
    history += _micro_stops(260)
    assert crashed.observe(history[-1:]) == []  # pending when the daemon died (kill -9)
    restarted = FollowUpEngine(cfg)
    restarted.restore([*history, *opened])
    out = restarted.tick(T0 + 220 + 300)  # the throttle counts from the buffered revision
    assert [(r.id, r.rev, len(r.stop_ids)) for r in out] == [(opened[0].id, 1, 4)]
