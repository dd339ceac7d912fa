"""The `lineside` command as a user types it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import HANDLERS, main

SUBCOMMANDS = ["run", "sync", "replay", "store", "simulate", "demo", "check-config", "config"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand() -> None:
    out = run("--help")
    assert out.returncode == 0
    for cmd in SUBCOMMANDS:
        assert cmd in out.stdout
    assert set(HANDLERS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd: str) -> None:
    out = run(cmd, "--help")
    assert out.returncode == 0
    assert "usage: lineside" in out.stdout


def test_version_is_printed() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("lineside ")


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_missing_argument_is_a_usage_error() -> None:
    out = run("replay", "only-one.yaml")
    assert out.returncode == 2 and "SAMPLES.csv" in out.stderr


def test_logs_are_json_lines_when_not_on_a_terminal() -> None:
    code = (
        "from edge import logs; logs.configure('info');"
        "logs.get_logger(line='line3').info('plc_connected', plc='cartoner')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    import json

    event = json.loads(out.stderr.strip().splitlines()[-1])
    assert event["event"] == "plc_connected" and event["line"] == "line3" and event["level"] == "info"
