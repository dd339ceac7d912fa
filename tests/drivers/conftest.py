"""Shared helpers of the driver tests: free ports, and a harness that runs a driver."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from drivers.base import Driver, Sample


def free_port() -> int:
    """An ephemeral port nobody listens on right now (several suites share this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


class Run:
    """A driver running in the background; every emitted batch and state change is kept."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.batches: list[tuple[float, list[Sample]]] = []
        self.states: list[tuple[bool, str | None]] = []
        self._changed = asyncio.Event()

    def emit(self, samples: list[Sample]) -> None:
        self.batches.append((time.monotonic(), samples))
        self._changed.set()

    def on_state(self, connected: bool, error: str | None) -> None:
        self.states.append((connected, error))
        self._changed.set()

    def samples(self, since: int = 0) -> list[Sample]:
        return [s for _, b in self.batches[since:] for s in b]

    def latest(self, since: int = 0) -> dict[str, Sample]:
        return {s.tag: s for s in self.samples(since)}

    async def wait_for(self, pred: Callable[[], Any], within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        while True:
            res = pred()
            if res:
                return res
            left = deadline - time.monotonic()
            if left <= 0:
                last = self.batches[-1][1] if self.batches else []
                raise AssertionError(f"timed out after {within}s waiting for {what}; states={self.states[-3:]}, "
                                     f"last batch={last[:6]}, health={self.driver.health.snapshot()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass


@asynccontextmanager
async def running(driver: Driver) -> AsyncIterator[Run]:
    r = Run(driver)
    task = asyncio.create_task(driver.run(r.emit, r.on_state))
    try:
        yield r
    finally:
        task.cancel()
        try:
            await asyncio.wait_for(task, 5)
        except (TimeoutError, asyncio.CancelledError):
            pass
