"""The config a plant engineer writes: the examples load, and every mistake is named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import ConfigError, load_line_config, load_sync_config
from edge.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
LINE = (EXAMPLES / "line.yaml").read_text()
SYNC = (EXAMPLES / "sync.yaml").read_text()


def test_example_line_config_loads_with_defaults_from_kpi_definitions() -> None:
    cfg = load_line_config(EXAMPLES / "line.yaml")
    assert cfg.line.id == "line3"
    assert set(cfg.plcs) == {"cartoner", "labeler"}
    assert cfg.signals.total_count is not None and cfg.signals.total_count.type == "uint32"
    assert cfg.production.reasons[90].planned is True
    assert cfg.production.effective_stop_after_s("B-200") == 2.0  # explicit stop_after_s wins
    assert cfg.production.ideal_cycle_time("A-100") == 0.8
    assert cfg.production.ideal_cycle_time("unknown-product") == 1.0


def test_defaults_follow_kpi_definitions_when_not_configured() -> None:
    text = LINE.replace("  stop_after_s: 2.0 ", "  # stop_after_s removed ").replace(
        "  micro_stop_max_s: 120 ", "  # micro_stop_max_s removed "
    )
    cfg = load_line_config("line.yaml", text)
    assert cfg.production.stop_after_s is None
    assert cfg.production.effective_stop_after_s(None) == 2.0  # 2 x ideal cycle 1.0 s
    assert cfg.production.effective_stop_after_s("B-200") == 2.5
    assert cfg.production.micro_stop_max_s == 120.0
    assert cfg.production.effective_max_parts_per_s(None) == 20.0  # 20 x the ideal rate


def test_example_sync_config_loads() -> None:
    cfg = load_sync_config(EXAMPLES / "sync.yaml")
    assert cfg.upstream.encoding == "msgpack"
    assert cfg.batch.max_records == 5000
    assert cfg.status.listen == "127.0.0.1:8081"


def test_unquoted_clock_times_stay_times_not_base_60_numbers() -> None:
    cfg = load_line_config("line.yaml", LINE.replace('start: "14:00"', "start: 14:00"))
    assert cfg.calendar.shifts[1].start == "14:00"


def test_night_shift_with_a_break_after_midnight_is_valid() -> None:
    text = LINE.replace(
        '    - {name: late,  start: "14:00", end: "22:00", days: [mon, tue, wed, thu, fri]}',
        '    - {name: late,  start: "14:00", end: "22:00", days: [mon, tue, wed, thu, fri]}\n'
        '    - {name: night, start: "22:00", end: "06:00", days: [mon, tue, wed, thu, fri]}',
    ).replace('    - {start: "12:00", end: "12:15"}', '    - {start: "12:00", end: "12:15"}\n    - {start: "02:00", end: "02:30"}')
    cfg = load_line_config("line.yaml", text)
    assert [s.name for s in cfg.calendar.shifts] == ["early", "late", "night"]


# Each case: (what the engineer got wrong, text to replace, replacement, path named, value named)
BROKEN = [
    ("typo in a key", "    endpoint: opc", "    endpiont: opc", "plcs.cartoner.endpiont", "did you mean `endpoint`"),
    ("wrong type", "port: 502", 'port: "502"', "plcs.labeler.port", "'502'"),
    ("missing PLC", "plc: labeler, address", "plc: labeller, address", "signals.process.label_speed.plc", "'labeller'"),
    ("break outside shift", '{start: "10:00", end: "10:30"}', '{start: "04:00", end: "04:30"}', "calendar.breaks[1]", "'04:00-04:30'"),
    ("bad timezone", "timezone: Europe/Berlin", "timezone: Europe/Berlinn", "timezone", "'Europe/Berlinn'"),
    ("bad time format", 'start: "06:00"', 'start: "6am"', "calendar.shifts[0].start", "'6am'"),
    ("negative threshold", "threshold: 0.03", "threshold: -0.03", "follow_up.quality[0].threshold", "-0.03"),
    ("YAML syntax error", "    mode: subscribe ", "    mode: [subscribe ", "YAML syntax error", ":17:"),
    ("unknown driver", "driver: modbus", "driver: modbuss", "plcs.labeler.driver", "'modbuss'"),
    ("inline password", "    username: lineside", "    password: hunter2", "plcs.cartoner.password", "password_file"),
    ("micro-stop limit not above stop_after", "micro_stop_max_s: 120", "micro_stop_max_s: 1.5", "production.micro_stop_max_s", "1.5"),
    ("counter with a float type", "Counters.Total\", type: uint32", "Counters.Total\", type: float32", "signals.total_count.type", "'float32'"),
    ("unknown subscribe mode", "mode: subscribe", "mode: sub", "plcs.cartoner.mode", "'sub'"),
    ("typo in a reason", "17: {text:", "17: {txt:", "production.reasons.17.txt", "did you mean `text`"),
    ("unknown follow-up rule", "rule: long_stop", "rule: longstop", "follow_up.maintenance[0].rule", "'longstop'"),
    ("scan interval too short", "interval_ms: 100", "interval_ms: 1", "plcs.cartoner.interval_ms", "1"),
    ("no counter at all", "  total_count:  {plc", "  total_countt:  {plc", "signals.total_countt", "did you mean `total_count`"),
    ("security policy without mode", "mode: SignAndEncrypt", "mode: None", "plcs.cartoner.security.mode", "'None'"),
    ("bad day name", "days: [mon, tue, wed, thu, fri]}", "days: [mon, tues]}", "calendar.shifts[0].days[1]", "'tues'"),
    ("missing required key", "  path: /var/lib/lineside/line3.db\n", "  paht: /var/lib/lineside/line3.db\n", "buffer.paht", "did you mean `path`"),
    ("shift starting when it ends", 'end: "14:00", days', 'end: "06:00", days', "calendar.shifts[0].end", "'06:00'"),
    ("bad endpoint scheme", "endpoint: opc.tcp://", "endpoint: http://", "plcs.cartoner.endpoint", "'http://"),
]


@pytest.mark.parametrize(("what", "old", "new", "path", "value"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_line_config_exits_2_naming_file_path_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, old: str, new: str, path: str, value: str
) -> None:
    assert old in LINE, f"test case {what!r} no longer matches the example"
    bad = tmp_path / "broken-line.yaml"
    bad.write_text(LINE.replace(old, new, 1))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert path in err
    assert value in err


def test_no_counter_signal_is_rejected() -> None:
    text = LINE.replace("  total_count:  {plc", "  #").replace("  reject_count: {plc", "  reject_count: {plc")
    with pytest.raises(ConfigError) as exc:
        load_line_config("line.yaml", text)
    assert "at least one of total_count and good_count" in str(exc.value)


def test_all_problems_of_the_cross_checks_are_listed_at_once() -> None:
    text = LINE.replace("timezone: Europe/Berlin", "timezone: Mars/Olympus").replace(
        "plc: labeler, address", "plc: nowhere, address"
    )
    with pytest.raises(ConfigError) as exc:
        load_line_config("line.yaml", text)
    paths = [p.path for p in exc.value.problems]
    assert "timezone" in paths and "signals.process.label_speed.plc" in paths


def test_plain_http_upstream_needs_explicit_permission() -> None:
    text = SYNC.replace("https://mom.example.com", "http://mom.example.com")
    with pytest.raises(ConfigError) as exc:
        load_sync_config("sync.yaml", text)
    assert "upstream.url" in str(exc.value) and "allow_insecure_http" in str(exc.value)
    ok = load_sync_config("sync.yaml", text.replace("  encoding: msgpack", "  allow_insecure_http: true\n  encoding: msgpack"))
    assert ok.upstream.allow_insecure_http


def test_sync_config_typo_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "sync.yaml"
    bad.write_text(SYNC.replace("max_records:", "max_record:"))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "batch.max_record" in err and "did you mean `max_records`" in err


def test_check_config_prints_a_summary_of_both_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLES / "line.yaml"), str(EXAMPLES / "sync.yaml")]) == 0
    out = capsys.readouterr().out
    assert "dossenheim/packaging/line3" in out
    assert "cartoner (opcua)" in out and "labeler (modbus)" in out
    assert "early 06:00-14:00" in out
    assert "https://mom.example.com/lineside" in out


def test_missing_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_config_schema_is_json_schema_for_editors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "$defs" in schema and "LineConfig" in schema["$defs"]
    assert "plcs" in schema["$defs"]["LineConfig"]["properties"]
    assert main(["config", "schema", "sync"]) == 0
    assert "SyncConfig" in json.loads(capsys.readouterr().out)["$defs"]


# ---------------------------------------------------------------- fuzzing

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["opcua", "modbus", "06:00", "uint32", "line3", "long_stop"]),
)
_keys = st.one_of(
    st.sampled_from(
        ["line", "plcs", "signals", "production", "buffer", "calendar", "shifts", "breaks", "driver", "endpoint",
         "plc", "address", "type", "total_count", "ideal_cycle_time_s", "path", "timezone", "upstream", "url",
         "buffers", "follow_up", "quality", "rule", "reasons", "process"]
    ),
    st.text(max_size=8),
    st.integers(-5, 100),
)
_docs = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_docs)
def test_loader_raises_only_config_errors_on_random_yaml(doc: object) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    for loader in (load_line_config, load_sync_config):
        try:
            loader("fuzz.yaml", text)
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_loader_raises_only_config_errors_on_random_text(text: str) -> None:
    try:
        load_line_config("fuzz.yaml", text)
    except ConfigError:
        pass


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(LINE)), junk=st.text(max_size=5))
def test_loader_raises_only_config_errors_on_mangled_example(cut: int, junk: str) -> None:
    try:
        load_line_config("fuzz.yaml", LINE[:cut] + junk + LINE[cut + len(junk) :])
    except ConfigError:
        pass
