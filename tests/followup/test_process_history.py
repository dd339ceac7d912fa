"""The per-minute process history behind ``process`` / ``process_seen`` in quality alerts."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Sample
from edge.followup.context import ProcessHistory, numeric

T0 = 1_763_791_200.0

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6), st.integers(-1000, 1000), st.booleans(), st.none(), st.just("x"),
    st.sampled_from([math.inf, -math.inf, math.nan]),
)
samples = st.lists(
    st.tuples(st.sampled_from(["process.a", "process.b", "running", "total_count"]),
              st.floats(0, 600), values, st.sampled_from(["good", "good", "bad"])),
    max_size=60,
)


def reference(rows: list[tuple[str, float, object, str]], start: float, end: float) -> dict[str, dict[str, object]]:
    """Straight from the definition: every good numeric value in the minutes touching [start, end]."""
    out: dict[str, dict[str, object]] = {}
    last: dict[str, object] = {}
    seen: dict[str, list[float]] = {}
    for tag, dt, value, quality in rows:
        if not tag.startswith("process.") or quality != "good":
            continue
        name = tag.removeprefix("process.")
        last[name] = value
        v = numeric(value)
        if v is not None and int(start // 60) <= int((T0 + dt) // 60) <= int(end // 60):
            seen.setdefault(name, []).append(v)
    for name, vs in seen.items():
        out[name] = {"min": min(vs), "max": max(vs), "mean": round(sum(vs) / len(vs), 6), "n": len(vs),
                     "last": numeric(last[name])}
    return out


@settings(max_examples=150, deadline=None)
@given(samples, st.integers(1, 5), st.floats(0, 600), st.floats(0, 600))
def test_process_seen_is_min_max_mean_of_good_numeric_values_in_window_minutes_whatever_the_order(
    rows: list[tuple[str, float, object, str]], reads: int, a: float, b: float
) -> None:
    hist = ProcessHistory(keep_s=86400.0)
    batch = [Sample(tag, value, quality, None, T0 + dt) for tag, dt, value, quality in rows]  # type: ignore[arg-type]
    step = max(1, len(batch) // reads)
    for k in range(0, len(batch), step):  # split over several reads: state carries across them
        hist.add_samples(batch[k:k + step])
    start, end = T0 + min(a, b), T0 + max(a, b)
    got = hist.seen(start, end)
    want = reference(rows, start, end)
    assert got.keys() == want.keys()
    for name, w in want.items():
        g = got[name]
        assert g["n"] == w["n"] and g["min"] == w["min"] and g["max"] == w["max"] and g["last"] == w["last"]
        assert math.isclose(g["mean"], w["mean"], rel_tol=1e-9, abs_tol=1e-6)  # type: ignore[arg-type]
    current = {tag.removeprefix("process."): v for tag, _, v, q in rows if tag.startswith("process.") and q == "good"}
    assert hist.current() == dict(sorted(current.items()))


def test_process_history_forgets_minutes_older_than_keep_including_a_signal_gone_quiet() -> None:
    hist = ProcessHistory(keep_s=600.0)
    hist.add_samples([Sample("process.quiet", 5.0, "good", None, T0), Sample("process.busy", 1.0, "good", None, T0)])
    for k in range(1, 21):  # 20 minutes of the busy signal only
        hist.add_samples([Sample("process.busy", float(k), "good", None, T0 + 60 * k)])
    assert "quiet" not in hist.seen(T0, T0 + 30)
    assert hist.current()["quiet"] == 5.0  # the current value stays: it is still the last one read
    recent = hist.seen(T0 + 60 * 20, T0 + 60 * 20 + 1)
    assert recent["busy"]["n"] == 1 and recent["busy"]["last"] == 20.0


def test_samples_of_other_tags_and_bad_quality_leave_no_process_values() -> None:
    hist = ProcessHistory(keep_s=600.0)
    hist.add_samples([Sample("total_count", 3, "good", None, T0), Sample("process.t", 9.0, "bad", None, T0, "timeout")])
    assert hist.current() == {} and hist.seen(T0 - 60, T0 + 60) == {}
