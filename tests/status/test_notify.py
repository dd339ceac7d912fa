"""sd_notify against a real AF_UNIX datagram socket the test owns, as systemd would."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import notify


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n") if line)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_reaches_systemd_socket_with_main_pid_and_status(notify_socket: socket.socket) -> None:
    assert notify.notify_ready(status="buffer open") is True
    fields = _fields(notify_socket.recv(4096))
    assert fields == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "buffer open"}


def test_watchdog_and_stopping_are_separate_datagrams(notify_socket: socket.socket) -> None:
    notify.notify_watchdog()
    notify.notify_stopping()
    assert _fields(notify_socket.recv(4096)) == {"WATCHDOG": "1"}
    assert _fields(notify_socket.recv(4096)) == {"STOPPING": "1"}


def test_newline_in_status_cannot_inject_a_ready_field(notify_socket: socket.socket) -> None:
    notify.notify_status("PLC down\nREADY=1")
    fields = _fields(notify_socket.recv(4096))
    assert "READY" not in fields
    assert fields["STATUS"] == "PLC down READY=1"


def test_abstract_namespace_socket_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"lineside-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.notify_watchdog() is True
        assert _fields(sock.recv(4096)) == {"WATCHDOG": "1"}


def test_outside_systemd_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify_ready() is False
    assert notify.notify_watchdog() is False


def test_vanished_notify_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify.notify_ready() is False


def test_watchdog_interval_comes_from_watchdog_usec_for_this_pid_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert notify.watchdog_interval_s() is None


async def test_watchdog_task_pings_while_healthy_and_stops_when_wedged(notify_socket: socket.socket) -> None:
    healthy = True
    task = asyncio.create_task(notify.run_watchdog(lambda: healthy, interval_s=0.1))
    try:
        notify_socket.settimeout(2)
        assert _fields(await asyncio.to_thread(notify_socket.recv, 4096)) == {"WATCHDOG": "1"}
        healthy = False
        await asyncio.sleep(0.15)  # let a ping already in flight land
        notify_socket.setblocking(False)
        while True:
            try:
                notify_socket.recv(4096)
            except BlockingIOError:
                break
        notify_socket.settimeout(0.4)
        with pytest.raises(TimeoutError):
            notify_socket.recv(4096)
    finally:
        task.cancel()


def test_separate_process_sends_ready_then_watchdog_to_the_socket_systemd_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        code = (
            "from edge import notify; import sys\n"
            "assert notify.notify_ready('config and buffer open')\n"
            "assert notify.watchdog_interval_s() == 2.0\n"
            "assert notify.notify_watchdog()\n"
        )
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[2], timeout=60)
        assert proc.returncode == 0
        ready = _fields(sock.recv(4096))
        assert ready["READY"] == "1" and ready["STATUS"] == "config and buffer open"
        assert ready["MAINPID"].isdigit() and ready["MAINPID"] != str(os.getpid())
        assert _fields(sock.recv(4096)) == {"WATCHDOG": "1"}
