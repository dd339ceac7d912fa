"""The status page of a running line in real headless Chromium: `lineside run` as a process
reading the simulator (in-process, real OPC UA server on 127.0.0.1); the simulator breaks the
line down and the open page follows without a reload. Screenshot: test-artifacts/status-demo.png.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.edge.line_run import LineRun, make_simulator
from tests.status.cdp import ARTIFACTS, Chromium

pytestmark = pytest.mark.browser


async def test_status_page_of_a_running_line_shows_the_breakdown_the_simulator_causes(
    browser: Chromium, tmp_path: Path
) -> None:
    sim = make_simulator("opcua", reject_every=12, ideal_cycle_time_s=0.5)
    await sim.start()
    line = LineRun(tmp_path, sim, protocol="opcua")
    line.cfg["line"]["name"] = "Demo line (simulated)"
    line.cfg["production"]["micro_stop_max_s"] = 3
    line.cfg["calendar"] = {"shifts": [{"name": "early", "start": "00:00", "end": "12:00"},
                                       {"name": "late", "start": "12:00", "end": "24:00"}]}
    try:
        line.start()
        url = await line.status_url()
        await line.wait_log("plc_connected")
        await asyncio.to_thread(browser.navigate, url + "/")
        label = await asyncio.to_thread(
            browser.wait_for,
            "document.body.dataset.state === 'running' && document.getElementById('state-label').textContent", 20.0,
        )
        assert label == "RUNNING"
        await asyncio.to_thread(browser.evaluate, "window.__sameDocument = 'yes'")

        # let it make some parts first, so the figures on the page mean something
        await line.wait_record("kpi", lambda k: k.interval == "hour" and k.total_count >= 8)
        await sim.breakdown(42, 600)
        label = await asyncio.to_thread(
            browser.wait_for,
            "document.body.dataset.state === 'unplanned_stop' && document.getElementById('state-label').textContent",
            20.0,  # 3 s until a stop is no longer a micro-stop, a poll a second, a loaded machine
        )
        assert label == "STOPPED"
        assert await asyncio.to_thread(browser.evaluate, "window.__sameDocument") == "yes"  # no reload
        reason = await asyncio.to_thread(
            browser.wait_for, "document.getElementById('state-reason').textContent", 10.0
        )
        assert reason == "Sealing jaw jam"
        await asyncio.sleep(1.5)  # one more refresh: the stop's duration and the timeline grow
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(browser.screenshot, ARTIFACTS / "status-demo.png")
        rc, _ = line.terminate()
        assert rc == 0, line.failure()
    finally:
        line.close()
        await sim.close()
    assert (ARTIFACTS / "status-demo.png").stat().st_size > 10_000
