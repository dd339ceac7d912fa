"""A tiny sd_notify client: tell systemd we are ready, alive, stopping.

The protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by
`$NOTIFY_SOCKET` (a leading `@` means the Linux abstract namespace). Outside systemd the
variable is unset and every function here is a cheap no-op, so the daemon calls them
unconditionally. libsystemd is deliberately not used: the protocol is four lines of code and
the daemon must not need a C library that industrial PCs may lack.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

__all__ = [
    "notify",
    "notify_ready",
    "notify_reloading",
    "notify_status",
    "notify_stopping",
    "notify_watchdog",
    "run_watchdog",
    "watchdog_interval_s",
]


def _address(raw: str) -> str | bytes:
    # Abstract-namespace sockets are spelled with a leading "@" in the environment and with a
    # leading NUL byte on the wire.
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(*fields: str) -> bool:
    """Send `KEY=VALUE` fields to systemd; True if a datagram was sent, False outside systemd.

    A failure to send (socket gone, systemd restarting) is swallowed and reported as False:
    the service manager being briefly unreachable must never take the daemon down.
    """
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if not raw or not fields:
        return False
    # A newline inside a value would inject a second field (STATUS=...\nREADY=1).
    payload = "\n".join(f.replace("\n", " ") for f in fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(raw))
            sock.sendall(payload)
    except OSError:
        return False
    return True


def notify_ready(status: str | None = None) -> bool:
    """READY=1: config loaded and buffer open; systemd now starts units ordered after us."""
    fields = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def notify_extend_timeout(seconds: float, status: str | None = None) -> bool:
    """Ask systemd to wait `seconds` more from now for READY (or for the stop): a long step
    at start, such as a buffer migration, must not be killed by TimeoutStartSec."""
    fields = [f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}"]
    if status:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def notify_watchdog() -> bool:
    """WATCHDOG=1: the loop is alive and healthy; send at least every watchdog_interval_s()/2."""
    return notify("WATCHDOG=1")


def notify_stopping(status: str | None = None) -> bool:
    fields = ["STOPPING=1"]
    if status:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def notify_reloading() -> bool:
    return notify("RELOADING=1")


def notify_status(text: str) -> bool:
    """STATUS=...: one line shown by `systemctl status`."""
    return notify(f"STATUS={text}")


def watchdog_interval_s() -> float | None:
    """The watchdog timeout systemd enforces on this process (WatchdogSec=), or None.

    `$WATCHDOG_PID`, when set, names the process the watchdog is meant for: a child that
    inherited the environment must not ping on its parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


async def run_watchdog(healthy: Callable[[], bool], *, interval_s: float | None = None) -> None:
    """Ping WATCHDOG=1 at half the watchdog timeout, but only while `healthy()` is true.

    Meant to run in the daemon's TaskGroup. When `healthy()` turns false (the acquisition loop
    is wedged), pings stop and systemd restarts the unit after WatchdogSec: that is the point
    of the watchdog. Returns immediately when no watchdog is configured.
    """
    timeout = interval_s if interval_s is not None else watchdog_interval_s()
    if timeout is None:
        return
    period = max(timeout / 2.0, 0.01)
    while True:
        if healthy():
            notify_watchdog()
        await asyncio.sleep(period)
