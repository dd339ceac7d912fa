"""A real EtherNet/IP server: cpppo's Logix simulator (``python -m cpppo.server.enip``) as a
subprocess, with typed tags whose values lineside sets from Python.

Used by the line simulator (``lineside simulate --enip-port N``). cpppo keeps tag values in its
own process, so every change is written into it with cpppo's EtherNet/IP client over one
long-lived session (pycomm3 cannot write STRINGs to cpppo). cpppo forgets everything when it
stops, so this object remembers the values and writes them all back after each ``start()``
(a restarted PLC that kept its tag values). ``port=0`` lets cpppo bind a free port; the port is
then kept for later restarts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["CIP_TYPE", "EnipTagServer"]

# cpppo's client logs every frame it sends at INFO (logger "enip.cli"): one write per simulator tick
for _name in ("enip", "cpppo"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# config type -> the CIP type cpppo declares and writes the tag as
CIP_TYPE: dict[str, str] = {
    "bool": "BOOL", "int16": "INT", "uint16": "UINT", "int32": "DINT", "uint32": "UDINT",
    "float32": "REAL", "float64": "LREAL", "string": "STRING",
}  # fmt: skip
_ADDRESS_LINE = re.compile(r"TCP Server address = \('([^']*)', (\d+)\)")
# cpppo's server, run so that it exits when its stdin closes: the simulator's process may be
# killed without a chance to stop it, and an orphaned cpppo would hold the port forever.
_CHILD = (
    "import os, runpy, sys, threading\n"
    "def watch():\n"
    "    sys.stdin.read()\n"
    "    os._exit(0)\n"
    "threading.Thread(target=watch, daemon=True).start()\n"
    "sys.argv[0] = 'cpppo.server.enip'\n"
    "runpy.run_module('cpppo.server.enip', run_name='__main__', alter_sys=True)\n"
)
_START_TIMEOUT_S = 20.0  # cpppo needs about a second to import on a loaded machine


class EnipTagServer:
    """Logix-style tags ``{tag name: config type}`` served by a cpppo subprocess."""

    def __init__(self, host: str = "127.0.0.1", port: int = 44818, *, tags: dict[str, str],
                 timeout_s: float = 5.0) -> None:
        bad = {n: t for n, t in tags.items() if t not in CIP_TYPE}
        if bad:
            raise ValueError(f"EtherNet/IP simulator cannot serve types {bad}; one of {', '.join(CIP_TYPE)}")
        self.host, self.port, self.tags, self.timeout_s = host, port, dict(tags), timeout_s
        self.values: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._conn: Any = None  # cpppo client.connector, owned by the worker thread
        # cpppo's client is blocking: one worker thread owns the session, the event loop never waits on a socket
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enip-sim")

    @property
    def running(self) -> bool:
        return self._proc is not None

    # ---------------------------------------------------------------- process

    def _start_sync(self) -> subprocess.Popen[str]:
        defs = [f"{name}={CIP_TYPE[t]}" for name, t in self.tags.items()]
        args = ["--no-udp", "--address-output", "--address", f"{self.host}:{self.port}", *defs]
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            self.port = self._await_address(proc)
        except BaseException:
            _kill(proc)
            raise
        return proc

    def _await_address(self, proc: subprocess.Popen[str]) -> int:
        """The port cpppo bound, from its --address-output line (bounded wait)."""
        assert proc.stdout is not None
        found: list[int] = []
        ready = threading.Event()
        stdout = proc.stdout

        def drain() -> None:  # keep reading so cpppo never blocks on a full pipe; closed at its exit
            with stdout:
                for line in stdout:
                    m = _ADDRESS_LINE.search(line)
                    if m and not found:
                        found.append(int(m.group(2)))
                        ready.set()
            ready.set()

        threading.Thread(target=drain, name="enip-sim-stdout", daemon=True).start()
        if not ready.wait(_START_TIMEOUT_S) or not found:
            code = proc.poll()
            why = f"exited with {code}" if code is not None else f"did not listen within {_START_TIMEOUT_S:g} s"
            raise OSError(f"EtherNet/IP simulator (cpppo) on {self.host}:{self.port} {why}")
        return found[0]

    async def start(self) -> None:
        if self._proc is not None:
            return
        self._proc = await asyncio.to_thread(self._start_sync)
        if self.values:
            await self._run(self._write_sync, dict(self.values))

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        await self._run(self._drop_conn)
        if proc is not None:
            await asyncio.to_thread(_kill, proc)  # a PLC that loses power does not say goodbye

    async def close(self) -> None:
        await self.stop()
        self._pool.shutdown(wait=False)

    # ---------------------------------------------------------------- values

    async def set_many(self, values: dict[str, Any]) -> None:
        """Remember the values and, when serving, write them to cpppo (one request pipeline)."""
        unknown = [n for n in values if n not in self.tags]
        if unknown:
            raise KeyError(f"no EtherNet/IP simulator tag {unknown}")
        self.values.update(values)
        if self._proc is not None:
            await self._run(self._write_sync, dict(values))

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _operation(self, name: str, value: Any) -> str:
        t = CIP_TYPE[self.tags[name]]
        if t == "BOOL":
            text = str(int(bool(value)))
        elif t == "STRING":
            text = str(value)
        else:
            text = repr(value)
        return f"{name}=({t}){text}"

    def _write_sync(self, values: dict[str, Any]) -> None:
        from cpppo.server.enip import client

        ops = [self._operation(n, v) for n, v in values.items()]
        for attempt in (1, 2):  # the session may have died with a restarted cpppo: reconnect once
            try:
                if self._conn is None:
                    self._conn = client.connector(host=self.host, port=self.port, timeout=self.timeout_s)
                with self._conn:
                    for _i, _d, op, _r, sts, _v in self._conn.pipeline(
                        operations=client.parse_operations(ops), depth=2, timeout=self.timeout_s
                    ):
                        if sts not in (0, None):
                            raise OSError(f"EtherNet/IP simulator: write {op!r} refused with status {sts!r}")
                return
            except Exception:
                self._drop_conn()
                if attempt == 2:
                    raise

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # a wedged child; nothing more to do
        pass
