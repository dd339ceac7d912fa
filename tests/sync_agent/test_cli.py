"""`lineside sync` as a user runs it: config errors, secrets, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from buffer import LineBuffer
from config.models import BufferConfig
from sync.agent import TokenError, resolve_token_path
from tests.buffer.records import mixed
from tests.sync_agent.helpers import TOKEN, token_files

ROOT = Path(__file__).resolve().parents[2]


def run_sync(cfg: Path, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", "sync", str(cfg)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def write_cfg(tmp: Path, **upstream: object) -> Path:
    path = tmp / "sync.yaml"
    path.write_text(yaml.safe_dump({
        "buffers": str(tmp / "*.db"),
        "upstream": {"url": "http://127.0.0.1:9", **upstream},
        "status": {"listen": "127.0.0.1:0"},
    }))
    return path


async def _buffer_with_records(path: Path) -> None:
    buf = await LineBuffer.open(BufferConfig(path=str(path)), background=False)
    await buf.append(mixed(0, 10))
    await buf.close()


def test_a_config_error_exits_2_and_names_the_field(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, encoding="protobuf", allow_insecure_http=True)
    r = run_sync(cfg)
    assert r.returncode == 2
    assert "upstream.encoding" in r.stderr and "protobuf" in r.stderr


def test_plain_http_is_refused_unless_explicitly_allowed(tmp_path: Path) -> None:
    r = run_sync(write_cfg(tmp_path))
    assert r.returncode == 2
    assert "allow_insecure_http" in r.stderr


def test_a_systemd_credential_path_is_expanded_and_outside_systemd_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert resolve_token_path("$CREDENTIALS_DIRECTORY/upstream-token") == tmp_path / "creds" / "upstream-token"
    assert resolve_token_path("${CREDENTIALS_DIRECTORY}/t") == tmp_path / "creds" / "t"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(TokenError, match="LoadCredential"):
        resolve_token_path("$CREDENTIALS_DIRECTORY/upstream-token")


def test_a_missing_token_file_exits_2_and_the_token_never_reaches_the_log(tmp_path: Path) -> None:
    r = run_sync(write_cfg(tmp_path, allow_insecure_http=True, token_file="$CREDENTIALS_DIRECTORY/tok"),
                 env={"CREDENTIALS_DIRECTORY": str(tmp_path / "nowhere")})
    assert r.returncode == 2 and "tok" in r.stderr and "No such file" in r.stderr
    token_files(tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tok").write_text(TOKEN)
    cfg = write_cfg(tmp_path, allow_insecure_http=True, token_file="$CREDENTIALS_DIRECTORY/tok", timeout_s=1)
    asyncio.run(_buffer_with_records(tmp_path / "line3.db"))  # so the agent keeps trying to upload
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "debug", "sync", str(cfg)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)})
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)  # a clean stop within seconds
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    assert "sync_started" in err and "upload_failed" in err
    assert TOKEN not in out + err
