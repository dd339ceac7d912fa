"""The status app's JSON API, /metrics and access rules, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import msgspec
import pytest

from config.models import StatusConfig
from edge.status import (
    STATIC_DIR,
    LineMetrics,
    StatusAuthError,
    app_from_config,
    bind,
    create_app,
    is_loopback_listen,
    load_token,
)
from edge.status.views import top_reasons
from sync.records import KpiRecord, StopRecord, format_ts, parse_ts
from tests.status.conftest import running_app
from tests.status.line_data import RunningLine

TOKEN = "3f9c1d0e7b2a4c58a1e6d9f0b3c7e2a1"


async def test_status_api_shows_state_shift_kpis_health_last_stops_and_top_reasons(line: RunningLine) -> None:
    async with running_app(create_app(line, token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        r = await c.get(f"{url}/api/status")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert doc["state"]["state"] == "running"
    assert doc["shift"]["oee"] == pytest.approx(0.748)
    assert doc["shift"]["good_count"] == 8919 and doc["shift"]["target_count"] == 10500
    assert doc["plcs"]["cartoner"]["connected"] is True
    assert doc["buffer"]["unsent"] == 1200 and doc["sync"]["lag_s"] == pytest.approx(14.2)
    assert [s["category"] for s in doc["last_stops"]][:2] == ["micro_stop", "unplanned_stop"]
    # 780 s + 60 s of reason 42, then 420 s + 30 s of reason 17, then the unreasoned micro-stop
    assert [(t["reason_code"], t["count"], t["duration_s"]) for t in doc["top_reasons"]] == [
        (42, 2, 840.0), (17, 2, 450.0), (None, 1, 45.0)
    ]


async def test_status_api_follows_the_line_when_it_stops(line: RunningLine) -> None:
    async with running_app(create_app(line, token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        assert (await c.get(f"{url}/api/status")).json()["state"]["state"] == "running"
        stop_id = line.stop_line(42)
        line.advance(95)
        doc = (await c.get(f"{url}/api/status")).json()
    assert doc["state"]["state"] == "unplanned_stop"
    assert doc["state"]["reason_text"] == "Sealing jaw jam"
    assert doc["state"]["duration_s"] == pytest.approx(95, abs=0.01)
    assert doc["last_stops"][0]["id"] == stop_id and doc["last_stops"][0]["end"] is None
    assert doc["timeline"][-1] == {"start": doc["state"]["since"], "end": None, "state": "unplanned_stop"}
    # the open stop's 95 s so far count for its reason
    assert doc["top_reasons"][0]["reason_code"] == 42 and doc["top_reasons"][0]["duration_s"] == 935.0


async def test_stops_and_kpis_api_return_records_of_the_contract(line: RunningLine) -> None:
    async with running_app(create_app(line, token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        stops = (await c.get(f"{url}/api/stops", params={"limit": 3})).json()
        kpis = (await c.get(f"{url}/api/kpis")).json()
        reasons = (await c.get(f"{url}/api/reasons")).json()
        bad = [await c.get(f"{url}/api/stops", params={"limit": v}) for v in ("0", "abc", "5000")]
    assert len(stops) == 3
    decoded = [msgspec.convert(s, StopRecord) for s in stops]
    assert parse_ts(decoded[0].start) > parse_ts(decoded[1].start)  # newest first
    assert msgspec.convert(kpis[0], KpiRecord).oee == pytest.approx(0.748)
    assert {r["code"] for r in reasons} == {17, 42, 90}
    assert [b.status_code for b in bad] == [400, 400, 400]
    assert "limit must be an integer" in bad[1].json()["error"]


async def test_operator_sets_a_reason_and_the_stop_gets_a_new_revision(line: RunningLine) -> None:
    written: list[dict[str, object]] = []
    line._on_reason = written.append
    stop_id = line.stop_line(None)
    async with running_app(create_app(line, token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        r = await c.post(f"{url}/api/stops/{stop_id}/reason", json={"code": 17})
        unknown_stop = await c.post(f"{url}/api/stops/nope/reason", json={"code": 17})
        unknown_code = await c.post(f"{url}/api/stops/{stop_id}/reason", json={"code": 99})
        bool_code = await c.post(f"{url}/api/stops/{stop_id}/reason", json={"code": True})
        form = await c.post(f"{url}/api/stops/{stop_id}/reason", data={"code": "17"})
        broken = await c.post(
            f"{url}/api/stops/{stop_id}/reason", content=b"{", headers={"content-type": "application/json"}
        )
        latest = (await c.get(f"{url}/api/stops", params={"limit": 1})).json()[0]
    assert r.status_code == 200
    assert r.json()["reason_text"] == "Carton magazine empty" and r.json()["reason_source"] == "operator"
    assert latest["rev"] == 1 and latest["reason_code"] == 17
    assert [w["id"] for w in written] == [stop_id]
    assert unknown_stop.status_code == 404
    assert unknown_code.status_code == 400 and "99" in unknown_code.json()["error"]
    assert bool_code.status_code == 400
    # a cross-site HTML form cannot send JSON: refused
    assert form.status_code == 415
    assert broken.status_code == 400


async def test_with_a_token_everything_but_healthz_needs_it(line: RunningLine) -> None:
    app = create_app(line, token=TOKEN, require_token=True)  # metrics made on first scrape
    async with running_app(app) as url, httpx.AsyncClient() as c:
        anonymous = {p: (await c.get(f"{url}{p}")).status_code for p in ("/", "/api/status", "/api/stops", "/metrics", "/static/status.js")}
        wrong = await c.get(f"{url}/api/status", headers={"authorization": "Bearer " + "x" * len(TOKEN)})
        bearer = await c.get(f"{url}/api/status", headers={"authorization": f"Bearer {TOKEN}"})
        metrics = await c.get(f"{url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        health = await c.get(f"{url}/healthz")
        html = await c.get(f"{url}/", headers={"accept": "text/html"})
        # the browser path: open /?token=... once, the cookie carries it from then on
        login = await c.get(f"{url}/", params={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert "httponly" in login.headers["set-cookie"].lower()
        with_cookie = await c.get(f"{url}/api/status")
    assert set(anonymous.values()) == {401}
    assert wrong.status_code == 401
    assert TOKEN not in wrong.text and TOKEN not in html.text
    assert bearer.status_code == 200 and metrics.status_code == 200 and with_cookie.status_code == 200
    assert 'lineside_oee{line="line3",shift="early"} 0.748' in metrics.text
    assert health.json() == {"ok": True}
    assert "token" in html.text and html.headers["content-type"].startswith("text/html")


def test_a_non_loopback_listen_without_a_token_refuses_to_start(line: RunningLine) -> None:
    with pytest.raises(StatusAuthError, match="token_file"):
        app_from_config(line, StatusConfig(listen="0.0.0.0:8080"), line="line3")
    with pytest.raises(StatusAuthError):
        create_app(line, token=None, require_token=True)
    # loopback needs none
    app_from_config(line, StatusConfig(listen="127.0.0.1:8080"), line="line3")


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert is_loopback_listen("127.0.0.1:8080") and is_loopback_listen("[::1]:8080")
    assert is_loopback_listen("localhost:80") and is_loopback_listen("127.0.1.1:1")
    assert not is_loopback_listen("0.0.0.0:8080") and not is_loopback_listen("[::]:8080")
    assert not is_loopback_listen("192.168.10.5:8080") and not is_loopback_listen("hmi-3.plant:8080")


def test_token_file_is_read_from_the_systemd_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "status-token").write_text(TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_token("$CREDENTIALS_DIRECTORY/status-token") == TOKEN
    app_from_config(
        RunningLine(1.7e9), StatusConfig(listen="0.0.0.0:8080", token_file="${CREDENTIALS_DIRECTORY}/status-token"),
        line="line3",
    )


def test_unusable_token_files_are_named_in_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(StatusAuthError, match=r"CREDENTIALS_DIRECTORY.*not set"):
        load_token("$CREDENTIALS_DIRECTORY/status-token")
    with pytest.raises(StatusAuthError, match="cannot read"):
        load_token(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("secret")
    with pytest.raises(StatusAuthError, match="at least 16") as err:
        load_token(str(short))
    assert "secret'" not in str(err.value).replace(str(short), "")


async def test_metrics_export_counters_oee_and_buffer_and_count_each_sample_once(line: RunningLine) -> None:
    metrics = LineMetrics("line3")
    metrics.update(line.status())  # the daemon's health task publishes too: must not double count
    async with running_app(create_app(line, token=None, require_token=False, metrics=metrics)) as url, httpx.AsyncClient() as c:
        first = (await c.get(f"{url}/metrics")).text
        line.buffer_dropped = 4000  # the daemon fell behind and shed raw samples
        line.advance(1.0, samples=55)
        second = (await c.get(f"{url}/metrics")).text
    assert 'lineside_samples_total{line="line3",plc="cartoner"} 598000.0' in first
    assert 'lineside_samples_total{line="line3",plc="cartoner"} 598055.0' in second
    assert 'lineside_bad_samples_total{line="line3",plc="cartoner"} 3.0' in second
    assert 'lineside_reconnects_total{line="line3",plc="cartoner"} 1.0' in second
    assert 'lineside_stops_total{category="unplanned_stop",line="line3"} 2.0' in second
    assert 'lineside_oee{line="line3",shift="early"} 0.748' in second
    assert 'lineside_buffer_bytes{line="line3"} 4.8234496e+07' in second
    assert 'lineside_buffer_dropped_records_total{line="line3"} 0.0' in first
    assert 'lineside_buffer_dropped_records_total{line="line3"} 4000.0' in second
    assert 'lineside_oldest_unsent_age_seconds{line="line3"} 14.2' in second
    assert 'lineside_samples_per_second{line="line3",plc="cartoner"} 50.0' in second
    assert 'lineside_state{line="line3",state="running"} 1.0' in second


def test_metrics_survive_a_provider_total_that_restarts_and_a_shift_change(line: RunningLine) -> None:
    metrics = LineMetrics("line3")
    doc = line.status()
    metrics.update(doc)
    doc["plcs"]["cartoner"]["reconnects"] = 0  # driver recreated: its totals start over
    metrics.update(doc)
    doc["plcs"]["cartoner"]["reconnects"] = 2
    doc["shift"]["name"] = "late"
    doc["shift"]["oee"] = None
    metrics.update(doc)
    text = metrics.render().decode()
    assert 'lineside_reconnects_total{line="line3",plc="cartoner"} 3.0' in text
    assert 'shift="early"' not in text
    assert 'lineside_oee{line="line3",shift="late"} NaN' in text


def test_top_reasons_count_only_this_shifts_time_and_group_stops_without_reason() -> None:
    t = 1_700_000_000.0
    stops = [
        {"start": format_ts(t - 600), "end": format_ts(t + 300), "reason_code": 5, "reason_text": "Jam"},  # 300 s in shift
        {"start": format_ts(t + 1000), "end": format_ts(t + 1100), "reason_code": None},
        {"start": format_ts(t + 2000), "end": None, "reason_code": None},  # open: 500 s so far
        {"start": format_ts(t - 900), "end": format_ts(t - 800), "reason_code": 9},  # before the shift
    ]
    ranked = top_reasons(stops, since=t, now=t + 2500)
    assert [(r["reason_text"], r["count"], r["duration_s"]) for r in ranked] == [("no reason", 2, 600.0), ("Jam", 1, 300.0)]


async def test_a_failing_provider_answers_503_with_a_short_error(line: RunningLine) -> None:
    class Broken(RunningLine):
        def status(self):  # type: ignore[override, no-untyped-def]
            raise RuntimeError("kpi state lock poisoned")

    async with running_app(create_app(Broken(line.now), token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        r = await c.get(f"{url}/api/status")
        health = await c.get(f"{url}/healthz")
    assert r.status_code == 503 and r.json() == {"error": "status unavailable: RuntimeError"}
    assert health.status_code == 200


async def test_page_and_assets_come_from_the_package_with_no_external_urls(line: RunningLine) -> None:
    async with running_app(create_app(line, token=None, require_token=False)) as url, httpx.AsyncClient() as c:
        page = await c.get(f"{url}/")
        assets = [await c.get(f"{url}/static/{name}") for name in ("status.js", "status.css")]
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert all(a.status_code == 200 for a in assets)
    for text in (page.text, *(a.text for a in assets)):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert {p.name for p in STATIC_DIR.iterdir()} >= {"index.html", "status.js", "status.css"}


def test_a_taken_port_is_a_clear_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind(f"127.0.0.1:{port}")


async def test_cancelling_the_server_task_closes_the_port(line: RunningLine) -> None:
    async with running_app(create_app(line, token=None, require_token=False)) as url:
        port = int(url.rsplit(":", 1)[1])
    await asyncio.sleep(0)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.get(f"http://127.0.0.1:{port}/healthz")
