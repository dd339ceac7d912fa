"""The status page in a real headless Chromium: it follows the line live, without reloading."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge.status import create_app
from tests.status.cdp import ARTIFACTS, Chromium
from tests.status.conftest import running_app
from tests.status.line_data import RunningLine

TOKEN = "b7e3c0d94f2a1e68c5d7a9b0e1f2c3d4"

pytestmark = pytest.mark.browser


async def test_status_page_shows_the_line_stopping_without_a_reload(browser: Chromium) -> None:
    line = RunningLine(now=time.time())
    app = create_app(line, token=TOKEN, require_token=True)
    async with running_app(app) as url:
        # The operator opens the page once with the token; the cookie carries it afterwards.
        await asyncio.to_thread(browser.navigate, f"{url}/?token={TOKEN}")
        label = await asyncio.to_thread(
            browser.wait_for, "document.body.dataset.state === 'running' && document.getElementById('state-label').textContent"
        )
        assert label == "RUNNING"
        assert await asyncio.to_thread(browser.evaluate, "location.search") == ""  # token left the URL
        assert await asyncio.to_thread(browser.evaluate, "document.getElementById('kpi-oee').textContent") == "74.8 %"
        await asyncio.to_thread(browser.evaluate, "window.__sameDocument = 'yes'")
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(browser.screenshot, ARTIFACTS / "status-page-running.png")

        line.stop_line(42)
        line.advance(83)
        label = await asyncio.to_thread(
            browser.wait_for,
            "document.body.dataset.state === 'unplanned_stop' && document.getElementById('state-label').textContent",
            10.0,  # the page polls every second; the margin is for a loaded 2-core machine
        )
        assert label == "STOPPED"
        assert await asyncio.to_thread(browser.evaluate, "window.__sameDocument") == "yes"  # no reload
        texts = await asyncio.to_thread(
            browser.evaluate,
            "[document.getElementById('state-reason').textContent, document.getElementById('state-duration').textContent,"
            " document.querySelector('#stops tr td:nth-child(4)').textContent,"
            " getComputedStyle(document.getElementById('banner')).backgroundColor]",
        )
        assert texts == ["Sealing jaw jam", "1:23", "Sealing jaw jam", "rgb(214, 40, 40)"]
        await asyncio.to_thread(browser.screenshot, ARTIFACTS / "status-page.png")
    assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000


async def test_status_page_flags_figures_as_stale_when_the_daemon_stops_answering(browser: Chromium) -> None:
    line = RunningLine(now=time.time())
    async with running_app(create_app(line, token=None, require_token=False)) as url:
        await asyncio.to_thread(browser.navigate, f"{url}/")
        await asyncio.to_thread(browser.wait_for, "document.body.dataset.state === 'running'")
    # server gone: the page keeps the last figures and says they are old
    shown = await asyncio.to_thread(browser.wait_for, "!document.getElementById('stale').hidden", 10.0)
    assert shown is True
    assert await asyncio.to_thread(browser.evaluate, "document.getElementById('state-label').textContent") == "RUNNING"
