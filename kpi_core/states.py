"""Ready state mappings (KPI_DEFINITIONS.md §7): a machine state value -> what it means here.

Mapped by name, so sources that number PackML states differently map by the name; the config
``production.states`` (keys: a state's name or its number as text) overrides entries.
"""

from __future__ import annotations

from collections.abc import Mapping

from kpi_core.stops import CAUSE_BLOCKED, CAUSE_PLANNED, CAUSE_RUNNING, CAUSE_STARVED, CAUSE_STOP

__all__ = ["MACHINERY", "PACKML", "StateMapper"]

PACKML: dict[int, str] = {
    0: "Undefined", 1: "Clearing", 2: "Stopped", 3: "Starting", 4: "Idle", 5: "Suspended",
    6: "Execute", 7: "Stopping", 8: "Aborting", 9: "Aborted", 10: "Holding", 11: "Held",
    12: "Unholding", 13: "Suspending", 14: "Unsuspending", 15: "Resetting", 16: "Completing",
    17: "Complete",
}
MACHINERY: dict[int, str] = {0: "NotAvailable", 1: "OutOfService", 2: "NotExecuting", 3: "Executing"}

_CAUSES = {
    "running": CAUSE_RUNNING,
    "stop": CAUSE_STOP,
    "planned_stop": CAUSE_PLANNED,
    "blocked": CAUSE_BLOCKED,
    "starved": CAUSE_STARVED,
}
# Suspended waits on an interlock: blocked or starved per the interlock tags; starved if
# neither says (waiting for material is the common case). OutOfService is planned.
_DEFAULTS = {"Execute": "running", "Suspended": "starved", "Executing": "running", "OutOfService": "planned_stop"}


class StateMapper:
    def __init__(self, state_map: str, overrides: Mapping[str, str]) -> None:
        self.names: dict[int, str] = {"packml": PACKML, "machinery": MACHINERY}.get(state_map, {})
        self.overrides = dict(overrides)

    def name(self, value: object) -> str:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and value in self.names:
            return self.names[value]
        return str(value)

    def cause(self, value: object) -> int:
        """CAUSE_* of a raw state value; unmapped values are a stop."""
        name = self.name(value)
        for key in (name, str(value)):
            if key in self.overrides:
                return _CAUSES[self.overrides[key]]
        if self.names:
            return _CAUSES[_DEFAULTS.get(name, "stop")]
        return CAUSE_STOP
