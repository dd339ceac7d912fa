"""Line simulator scenarios: small YAML files (see drivers/scenarios/demo.yaml).

A scenario is an ideal cycle time, a reject pattern, and a timeline of events in simulated
seconds from the start (repeated every ``repeat_s`` when given)::

    name: demo
    ideal_cycle_time_s: 1.0
    product: A-100
    reject_every: 20          # every 20th part is a reject (0: none)
    counter_start: 65500      # counters start here, so the uint16 rollover shows up early
    repeat_s: 120
    events:
      - {at: 10, do: micro_stop, seconds: 6}
      - {at: 20, do: slow, seconds: 15, factor: 1.6}      # slow cycles
      - {at: 40, do: breakdown, seconds: 25, code: 42}    # a stop with a fault code
      - {at: 70, do: product, product: B-200, cycle_time_s: 1.25}
      - {at: 100, do: restart_plc}                         # counters reset to 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

__all__ = ["SCENARIO_DIR", "Event", "Scenario", "load_scenario", "scenario_path"]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
Seconds = Annotated[float, Meta(ge=0)]


class Event(Struct, forbid_unknown_fields=True, kw_only=True):
    at: Seconds
    do: Literal["micro_stop", "breakdown", "slow", "product", "restart_plc", "stop", "start"]
    seconds: Seconds = 0.0
    code: Annotated[int, Meta(ge=0, le=32767)] = 0
    factor: Annotated[float, Meta(ge=1)] = 1.5
    product: str | None = None
    cycle_time_s: Annotated[float, Meta(gt=0)] | None = None


class Scenario(Struct, forbid_unknown_fields=True, kw_only=True):
    name: str = "scenario"
    ideal_cycle_time_s: Annotated[float, Meta(gt=0)] = 1.0
    product: str = "A-100"
    order: str = "ORD-0001"
    reject_every: Annotated[int, Meta(ge=0)] = 0
    counter_start: Annotated[int, Meta(ge=0, le=65535)] = 0
    repeat_s: Annotated[float, Meta(gt=0)] | None = None
    events: list[Event] = field(default_factory=list)


def scenario_path(name_or_file: str) -> Path:
    """A shipped scenario by name (``demo``) or a YAML file path."""
    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return SCENARIO_DIR / f"{name_or_file}.yaml"


def load_scenario(name_or_file: str) -> Scenario:
    """Load and validate; raises config.ConfigError naming the file, line and field."""
    from config.loader import _load

    return _load(scenario_path(name_or_file), Scenario, lambda _cfg: iter(()))
