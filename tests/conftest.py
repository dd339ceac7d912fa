"""Fixtures shared across the suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.status.cdp import Chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    """Debian's headless Chromium, driven over the DevTools pipe, closed after the test."""
    b = Chromium(tmp_path / "profile", width=1600, height=900, log=tmp_path / "chromium.log")
    try:
        yield b
    finally:
        b.close()
