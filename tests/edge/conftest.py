from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.sim import Simulator
from tests.edge.line_run import LineRun, make_simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A running simulated line served over Modbus TCP on a free 127.0.0.1 port."""
    s = make_simulator("modbus", reject_every=10)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def line(tmp_path: Path, sim: Simulator) -> Iterator[LineRun]:
    run = LineRun(tmp_path, sim)
    try:
        yield run
    finally:
        run.close()
