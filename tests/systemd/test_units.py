"""The shipped unit files, checked by systemd's own tools, and the installer's plan."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = {  # unit file -> the name systemd verifies it as
    "lineside@.service": "lineside@line3.service",
    "lineside-sync.service": "lineside-sync.service",
    "lineside-store.service": "lineside-store.service",
}
ANALYZE = "/usr/bin/systemd-analyze"


def _settings(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, repeated keys kept in order."""
    out: dict[str, list[str]] = {}
    for raw in (SYSTEMD / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file-system root holding the host's stock units, our real unit files and the one
    thing the machine lacks: an executable at /opt/lineside/venv/bin/lineside."""
    r = tmp_path_factory.mktemp("root")
    shutil.copytree("/lib/systemd/system", r / "usr/lib/systemd/system", symlinks=True)
    (r / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, r / "etc/systemd/system" / unit)
    exe = r / "opt/lineside/venv/bin/lineside"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return r


@pytest.mark.parametrize("unit", list(UNITS))
def test_unit_passes_systemd_analyze_verify_without_a_warning(unit: str, root: Path) -> None:
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", f"--root={root}", UNITS[unit]], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""


def test_verify_catches_a_broken_unit(root: Path) -> None:
    # The check above is only worth something if verify rejects what a typo produces.
    broken = (SYSTEMD / "lineside-sync.service").read_text().replace("ExecStart=/opt/lineside/venv/bin/lineside", "ExecStart=/opt/lineside/venv/bin/lineside-typo")
    (root / "etc/systemd/system/lineside-broken.service").write_text(broken)
    proc = subprocess.run([ANALYZE, "verify", "--man=no", f"--root={root}", "lineside-broken.service"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "lineside-typo" in proc.stderr


@pytest.mark.parametrize("unit", list(UNITS))
def test_unit_exposure_is_rated_2_or_lower_by_systemd_analyze_security(unit: str) -> None:
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(SYSTEMD / unit)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.0, proc.stdout


def test_line_template_runs_the_instances_config_and_is_watched() -> None:
    s = _settings("lineside@.service")
    assert s["ExecStart"] == ["/opt/lineside/venv/bin/lineside run /etc/lineside/lines/%i.yaml"]
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert "WatchdogSec" in s and s["Restart"] == ["on-failure"]
    assert s["LoadCredential"] == ["status-token:/etc/lineside/secrets/status-token"]


@pytest.mark.parametrize("unit", list(UNITS))
def test_unit_has_the_required_hardening(unit: str) -> None:
    s = _settings(unit)
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    for key, value in {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert s.get(key) == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    assert "StateDirectory" in s and "ConfigurationDirectory" in s
    assert ("DynamicUser" in s) != ("User" in s)
    # serial access is granted per line by a drop-in, never by default
    assert "SupplementaryGroups" not in s


def test_secrets_reach_sync_and_store_only_as_credentials() -> None:
    sync, store = _settings("lineside-sync.service"), _settings("lineside-store.service")
    assert sync["ExecStart"] == ["/opt/lineside/venv/bin/lineside sync /etc/lineside/sync.yaml"]
    assert sync["LoadCredential"] == ["upstream-token:/etc/lineside/secrets/upstream-token"]
    assert store["LoadCredential"] == ["store-tokens:/etc/lineside/store-tokens.yaml"]
    assert "--tokens %d/store-tokens" in store["ExecStart"][0]
    assert "sqlite:///var/lib/lineside-store/store.db" in " ".join(store["Environment"])
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text().lower()
        assert "token=" not in text.replace("loadcredential=", "") and "password=" not in text


def test_install_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(SYSTEMD / "install.sh")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_install_dry_run_prints_the_whole_plan_and_changes_nothing(tmp_path: Path) -> None:
    etc = tmp_path / "etc-lineside"
    (etc / "lines").mkdir(parents=True)
    for name in ("line3", "line4"):
        (etc / "lines" / f"{name}.yaml").write_text("line: {}\n")
    (etc / "sync.yaml").write_text("buffers: /var/lib/lineside/*.db\n")
    (etc / "secrets").mkdir()
    (etc / "secrets" / "upstream-token").write_text("s3cr3t-upstream-token-value\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess.run(
        ["bash", str(SYSTEMD / "install.sh"), "--dry-run", "--etc", str(etc), "--prefix", str(tmp_path / "opt"),
         "--unit-dir", str(tmp_path / "units")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert f"-m venv {tmp_path}/opt/venv" in plan
    assert f"pip install --quiet --upgrade {SYSTEMD.parent}\n" in plan
    assert f"install -m 0644 {SYSTEMD}/lineside@.service {tmp_path}/units/lineside@.service" in plan
    assert "lineside-store.service" not in plan  # only with --with-store
    assert "+ systemctl daemon-reload" in plan
    assert plan.index("daemon-reload") < plan.index("enable --now lineside@line3.service")
    assert "+ systemctl enable --now lineside@line4.service" in plan
    assert "+ systemctl enable --now lineside-sync.service" in plan
    assert "s3cr3t" not in plan + proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_install_refuses_an_unknown_option_and_a_tree_that_is_not_lineside(tmp_path: Path) -> None:
    bad = subprocess.run(["bash", str(SYSTEMD / "install.sh"), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr
    notdir = subprocess.run(["bash", str(SYSTEMD / "install.sh"), "--dry-run", "--source", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert notdir.returncode == 2 and "not a lineside source tree" in notdir.stderr
