"""The sync agent and the store tell systemd they are ready (their units are Type=notify)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sync.store import new_token, write_token_file


def _ready_from(cmd: list[str], tmp_path: Path, timeout: float = 30.0) -> list[str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *cmd], env={**os.environ, "NOTIFY_SOCKET": path},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any("READY=1" in m for m in messages):
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        return messages
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sock.close()


def test_store_notifies_ready_once_it_serves(tmp_path: Path) -> None:
    write_token_file(tmp_path / "tokens.yaml", [("edge", new_token(), ["l1"], ["write"])])
    msgs = _ready_from(
        ["store", "--db", f"sqlite:///{tmp_path / 's.db'}", "--tokens", str(tmp_path / "tokens.yaml"),
         "--listen", "127.0.0.1:0"],
        tmp_path,
    )
    assert any("READY=1" in m for m in msgs), msgs


def test_sync_agent_notifies_ready(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(new_token())
    (tmp_path / "sync.yaml").write_text(
        yaml.safe_dump(
            {
                "buffers": str(tmp_path / "*.db"),
                "upstream": {"url": "http://127.0.0.1:9", "token_file": str(tmp_path / "token"),
                             "allow_insecure_http": True},
                "status": {"listen": "127.0.0.1:0"},
            }
        )
    )
    msgs = _ready_from(["sync", str(tmp_path / "sync.yaml")], tmp_path)
    assert any("READY=1" in m for m in msgs), msgs
