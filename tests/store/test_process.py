"""`lineside store` as a process: ephemeral port, kill -9, a crash between commit and answer, tokens, startup errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge.cli import build_parser
from sync.records import encode_json
from sync.store import cli_store, hash_token, load_token_file
from tests.store.conftest import db_url_for
from tests.store.harness import TOKENS, StoreProcess, batch, new_line, rows, stop


def main(argv: list[str]) -> int:
    # cli_store directly, not edge.cli.main: main() points structlog at this test's
    # captured stderr, which is closed once the test ends.
    return cli_store(build_parser().parse_args(argv))


def post(url: str, body: bytes, token: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/records", content=body, timeout=30,
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})


def test_batch_answered_200_survives_kill_9_of_the_store(
    backend: str, token_file: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = db_url_for(backend, tmp_path, request)
    line = new_line()
    body = encode_json(batch(line, [stop(line, i) for i in range(50)]))
    with StoreProcess(db, token_file) as store:
        assert post(store.url, body, TOKENS["edge"].token).json() == {"accepted": 50, "duplicates": 0}
        store.kill()
    assert len(rows(db, line)) == 50
    with StoreProcess(db, token_file) as store:
        assert post(store.url, body, TOKENS["edge"].token).json() == {"accepted": 0, "duplicates": 50}


def test_store_crashing_after_commit_before_answer_keeps_the_batch_once(
    backend: str, token_file: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = db_url_for(backend, tmp_path, request)
    line = new_line()
    body = encode_json(batch(line, [stop(line, i) for i in range(10)]))
    with StoreProcess(db, token_file, env={"LINESIDE_STORE_FAULT": "exit_after_commit=1"}) as store:
        with pytest.raises(httpx.TransportError):
            post(store.url, body, TOKENS["edge"].token)
        assert store.proc.wait(10) == 137
    # What the agent does: the same batch again, to a store that is back.
    with StoreProcess(db, token_file) as store:
        assert post(store.url, body, TOKENS["edge"].token).json() == {"accepted": 0, "duplicates": 10}
    assert len(rows(db, line)) == 10


def test_tokens_new_writes_only_the_hash_and_the_printed_token_works(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "sync.store.tokens", "new", "--file", str(tokens), "--name", "l7", "--lines", "line7"],
        capture_output=True, text=True, check=True,
    )
    token = out.stdout.strip()
    assert out.stderr == ""
    text = tokens.read_text()
    assert token not in text and hash_token(token) in text
    assert tokens.stat().st_mode & 0o077 == 0
    hashed = subprocess.run([sys.executable, "-m", "sync.store.tokens", "hash"], input=token + "\n",
                            capture_output=True, text=True, check=True)
    assert hashed.stdout.strip() == hash_token(token)
    db = f"sqlite:///{tmp_path / 's.db'}"
    with StoreProcess(db, tokens) as store:
        assert post(store.url, encode_json(batch("line7", [stop("line7", 1)])), token).status_code == 200
        assert post(store.url, encode_json(batch("line8", [stop("line8", 1)])), token).status_code == 403
        store.stop()
        logs = "".join(store.stderr_lines)
    assert "batch_stored" in logs and "l7" in logs
    assert token not in logs


def test_plain_token_is_never_logged_even_when_refused(token_file: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    wrong = "wrong-" + TOKENS["edge"].token
    with StoreProcess(db, token_file, log_level="debug") as store:
        body = encode_json(batch("line-a", [stop("line-a", 1)]))
        assert post(store.url, body, wrong).status_code == 401
        assert post(store.url, body, TOKENS["follow_up"].token).status_code == 403
        assert post(store.url, body, TOKENS["line_a"].token).status_code == 200
        store.stop()
    logs = "".join(store.stderr_lines)
    assert "batch_refused" in logs
    for t in (wrong, *(t.token for t in TOKENS.values())):
        assert t not in logs


def test_store_without_token_file_refuses_to_start_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "--db", f"sqlite:///{tmp_path / 's.db'}", "--listen", "127.0.0.1:0"]) == 2
    assert "--tokens FILE is required" in capsys.readouterr().err


def test_bad_token_file_or_db_url_refuses_to_start_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  - name: x\n    sha256: my-plain-secret\n    lines: [l1]\n")
    assert main(["store", "--tokens", str(bad), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "my-plain-secret" not in err
    good = tmp_path / "good.yaml"
    good.write_text(f"tokens:\n  - name: x\n    sha256: {hash_token('t')}\n    lines: ['*']\n")
    assert load_token_file(good)[hash_token("t")].roles == ["write"]
    assert main(["store", "--tokens", str(good), "--db", "mysql://x", "--listen", "127.0.0.1:0"]) == 2
    assert "sqlite:///PATH or postgresql://" in capsys.readouterr().err
    assert main(["store", "--tokens", str(good), "--db", f"sqlite:///{tmp_path}/s.db", "--listen", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
