"""`FollowUpEngine.observe_samples` per-sample cost, beside a bare loop over the same samples.

The samples look like the daemon's: reads of 500 process tags plus the total counter and the
running signal, one shared timestamp per read, 10 reads a second of line time. Three engines:

- no rules at all (the typical daemon): should cost about nothing;
- a ``reject_rate`` rule only (quality alerts carry process values, so the per-minute history
  is kept, but no rule reads samples);
- a ``process_limits`` rule on one of the 500 tags (plus the history).

Baseline: a bare ``for s in batch: s.tag`` over the same batches in the same run; the ratio is
engine time / baseline time (1.0 would be free beyond touching each sample once).

    python bench/followup.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import yaml

from config import LineConfig
from drivers.base import Sample
from edge.followup import FollowUpEngine

TAGS = 500
T0 = 1_763_791_200.0


def config(rules: list[dict[str, object]]) -> LineConfig:
    sig = {f"t{i:03d}": {"plc": "p", "address": "total_count", "type": "float32"} for i in range(TAGS)}
    raw = {
        "line": {"site": "bench", "area": "a", "id": "bench1", "machine": "m"},
        "plcs": {"p": {"driver": "sim"}},
        "signals": {"total_count": {"plc": "p", "address": "total_count", "type": "uint32"},
                    "running": {"plc": "p", "address": "running", "type": "bool"},
                    "process": sig},
        "production": {"ideal_cycle_time_s": 1.0},
        "buffer": {"path": "/tmp/unused-bench-followup.db"},
        "follow_up": {"quality": rules},
    }
    return msgspec.convert(yaml.safe_load(yaml.safe_dump(raw)), LineConfig)


def batches(reads: int) -> list[list[Sample]]:
    out = []
    for k in range(reads):
        ts = T0 + k * 0.1
        b = [Sample(f"process.t{i:03d}", 20.0 + (k + i) % 50, "good", None, ts) for i in range(TAGS)]
        b.append(Sample("total_count", k // 10, "good", None, ts))
        b.append(Sample("running", True, "good", None, ts))
        out.append(b)
    return out


def timed(fn: object, data: list[list[Sample]], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for b in data:
            fn(b)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def bare(batch: list[Sample]) -> None:
    for s in batch:
        s.tag  # noqa: B018 - touching each sample once is the baseline


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    data = batches(600 if args.quick else 3000)  # 1 or 5 minutes of line time at 10 Hz
    n = sum(len(b) for b in data)
    base = timed(bare, data)
    print(f"samples: {n:,} ({TAGS} process tags + counter + running, 10 reads/s of line time)")
    print(f"baseline: bare loop over the samples        {n / base:14,.0f} samples/s")
    cases = {
        "no rules": [],
        "reject_rate only (history kept)": [{"rule": "reject_rate", "threshold": 0.05}],
        "process_limits on one tag": [{"rule": "process_limits", "signal": "t007", "min": 21.0, "max": 60.0}],
    }
    for name, rules in cases.items():
        eng = FollowUpEngine(config(rules))
        t = timed(eng.observe_samples, data, repeat=1)  # state grows: one pass per engine
        print(f"observe_samples, {name:33} {n / t:14,.0f} samples/s   = {t / base:6.2f} x the bare loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
