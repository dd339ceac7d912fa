"""What the driver contract suite needs from each real protocol peer.

Each protocol has a module `tests/drivers/peer_<driver>.py` exposing `make_peer(port) -> Peer`.
The contract suite (`test_contract.py`) is parametrized over every such module, so one suite
checks all drivers against their real servers on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any, Protocol

from config.models import Plc, Signal


class Peer(Protocol):
    driver: str  # "opcua", "modbus", "enip", "s7"

    async def start(self) -> None:
        """Start serving on 127.0.0.1 (again, after stop(): same port, same values)."""

    async def stop(self) -> None:
        """Stop serving (the PLC goes away)."""

    def plc_config(self, interval_ms: int = 100) -> Plc:
        """The config a user would write to reach this peer."""

    def tags(self) -> dict[str, Signal]:
        """One tag per supported type (name -> Signal), each holding a known value."""

    def expected(self) -> dict[str, Any]:
        """What the driver must read for each tag of tags() (after scale/offset)."""

    async def set_value(self, tag: str, value: Any) -> None:
        """Change the value the peer holds for a tag of tags() (raw, before scale/offset)."""

    def wrong_address_tag(self) -> tuple[str, Signal]:
        """A tag whose address does not exist on the peer."""
