"""Load YAML into the config Structs with errors a plant engineer can act on.

Every problem names the file, the line in it, the field path (``plcs.cartoner.endpoint``) and
the bad value. The loader never raises anything but :class:`ConfigError` for a bad file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from config.models import (
    ALL_DAYS,
    CLOCK_PATTERN,
    COUNTER_TYPES,
    Break,
    LineConfig,
    Shift,
)
from config.sync_models import SyncConfig

T = TypeVar("T")

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    value: Any = _MISSING
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line is not None else file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.value is not _MISSING:
            text += f" (got {_show(self.value)})"
        return text


class ConfigError(Exception):
    """A config file that cannot be used; ``str()`` lists every problem found."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.render(file) for p in problems))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- YAML with positions


class _Loader(yaml.SafeLoader):
    """YAML 1.1 minus its surprises: `14:00` stays a string (not 840, base 60)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT_RX = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT_RX = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
    r"|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RX, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RX, list("-+0123456789."))


def _parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        raise ConfigError(file, [Problem("", msg, line=line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, [Problem("", f"YAML error: {exc}")]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(file, [Problem("", f"YAML error: {exc}")]) from None
    return data, node


_SEG = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _split_path(path: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEG.finditer(path)]


def _join(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _walk_data(data: Any, parts: list[str | int]) -> Any:
    cur = data
    for p in parts:
        if isinstance(cur, dict):
            if p in cur:
                cur = cur[p]
            elif isinstance(p, str) and p.lstrip("-").isdigit() and int(p) in cur:
                cur = cur[int(p)]
            else:
                return _MISSING
        elif isinstance(cur, list) and isinstance(p, int) and p < len(cur):
            cur = cur[p]
        else:
            return _MISSING
    return cur


def _walk_node(node: yaml.Node | None, parts: list[str | int], key: bool = False) -> int | None:
    """The 1-based line of the node at `parts` (or of its key), or of the deepest ancestor found."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    cur: yaml.Node = node
    for i, p in enumerate(parts):
        nxt: yaml.Node | None = None
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(p):
                    nxt = k if (key and i == len(parts) - 1) else v
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(p, int) and p < len(cur.value):
            nxt = cur.value[p]
        if nxt is None:
            return line
        cur = nxt
        line = cur.start_mark.line + 1
    return line


# ---------------------------------------------------------------- msgspec errors


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>[^`]*)`")

_SECRET_HINTS = {
    "password": "password_file (secrets are never inline)",
    "token": "token_file (secrets are never inline)",
}


def _strip(tp: Any) -> Any:
    """Drop Annotated metadata and Optional's None."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _member(tp: Any, value: Any) -> Any:
    """For a union of tagged Structs, the member the value's tag selects."""
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [_strip(a) for a in typing.get_args(tp) if a is not type(None)]
        structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
        if isinstance(value, dict):
            for m in structs:
                cfg = m.__struct_config__
                if cfg.tag_field and value.get(cfg.tag_field) == cfg.tag:
                    return m
        for m in members:
            if not (isinstance(m, type) and issubclass(m, msgspec.Struct)):
                return m
        return structs[0] if structs else tp
    return tp


def _child(tp: Any, part: str | int, value: Any) -> Any:
    tp = _member(tp, value)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return typing.get_type_hints(tp, include_extras=True).get(str(part))
    origin = typing.get_origin(tp)
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is list:
        return typing.get_args(tp)[0]
    return None


def _locate(tp: Any, data: Any, exc: msgspec.ValidationError) -> tuple[str, list[str | int]]:
    """msgspec writes dict keys as `[...]`; find the real keys by re-checking each entry."""
    m = _AT.match(str(exc))
    assert m is not None
    msg, raw = m.group("msg"), m.group("path") or ""
    tokens = re.findall(r"\.[^.\[\]]+|\[\d+\]|\[\.\.\.\]", raw)
    parts: list[str | int] = []
    cur_tp, cur = tp, data
    for tok in tokens:
        if tok == "[...]":
            value_tp = _child(cur_tp, "", cur)
            for key, value in (cur.items() if isinstance(cur, dict) else []):
                try:
                    msgspec.convert(value, type=value_tp, strict=True)
                except msgspec.ValidationError as sub:
                    inner_msg, inner_parts = _locate(value_tp, value, sub)
                    return inner_msg, [*parts, str(key), *inner_parts]
            return msg, parts
        part: str | int = int(tok[1:-1]) if tok.startswith("[") else tok[1:]
        cur_tp = _child(cur_tp, part, cur)
        cur = _walk_data(cur, [part])
        parts.append(part)
    return msg, parts


def _type_at(root: Any, parts: list[str | int], data: Any, *, keep_union: bool = False) -> Any:
    """The type at `parts`; a union of tagged Structs resolves to the member the data's tag
    selects, unless `keep_union` (to list the tags a union accepts)."""
    tp, cur = root, data
    for p in parts:
        tp = _child(tp, p, cur)
        cur = _walk_data(cur, [p])
        if tp is None:
            return None
    return _strip(tp) if keep_union else _member(tp, cur)


def _did_you_mean(name: str, options: list[str]) -> str:
    if name in _SECRET_HINTS:
        return f"; use {_SECRET_HINTS[name]}"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return hint + f" (allowed: {', '.join(sorted(options))})"


def _validation_problem(exc: msgspec.ValidationError, root: type, data: Any, node: yaml.Node | None) -> Problem:
    msg, parts = _locate(root, data, exc)
    unknown = _UNKNOWN.match(msg)
    if unknown:
        name = unknown.group("name")
        holder = _type_at(root, parts, data)
        options = list(holder.__struct_fields__) if isinstance(holder, type) and issubclass(holder, msgspec.Struct) else []
        full = [*parts, name]
        return Problem(
            _join(full), f"unknown key `{name}`{_did_you_mean(name, options)}", line=_walk_node(node, full, key=True)
        )
    missing = _MISSING_FIELD.match(msg)
    if missing:
        full = [*parts, missing.group("name")]
        return Problem(_join(full), "required key is missing", line=_walk_node(node, parts))
    value = _walk_data(data, parts)
    msg = msg.replace("Expected `", "expected `").replace("Invalid enum value", "not one of the allowed values:")
    msg = msg.replace("Invalid value", "not one of the allowed values:")
    msg = msg.replace(f"expected `str` matching regex '{CLOCK_PATTERN}'", 'expected a time "HH:MM" (24-hour clock)')
    allowed = _literals(_type_at(root, parts, data)) if parts else []
    if not allowed and len(parts) >= 1:
        allowed = _union_tags(_type_at(root, parts[:-1], data, keep_union=True), str(parts[-1]))
    if allowed:
        msg += f" (allowed: {', '.join(repr(v) for v in allowed)})"
    return Problem(_join(parts), msg, value, _walk_node(node, parts))


def _union_tags(tp: Any, field_name: str) -> list[Any]:
    """The tag values a union of tagged Structs accepts under `field_name` (`driver`, `rule`)."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return []
    out = []
    for m in typing.get_args(tp):
        m = _strip(m)
        if isinstance(m, type) and issubclass(m, msgspec.Struct) and m.__struct_config__.tag_field == field_name:
            out.append(m.__struct_config__.tag)
    return out


def _literals(tp: Any) -> list[Any]:
    tp = _strip(tp)
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    return []


def _convert(data: Any, tp: type[T], file: str, node: yaml.Node | None) -> T:
    if data is None:
        raise ConfigError(file, [Problem("", "the file is empty")])
    if not isinstance(data, dict):
        raise ConfigError(file, [Problem("", "the file must be a YAML mapping of keys", type(data).__name__, 1)])
    try:
        return msgspec.convert(data, type=tp, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(file, [_validation_problem(exc, tp, data, node)]) from None


# ---------------------------------------------------------------- cross-field checks


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def shift_span(shift: Shift) -> tuple[int, int]:
    """Start and end in minutes after the shift day's midnight; end may pass 1440 (night shift)."""
    start, end = _minutes(shift.start), _minutes(shift.end)
    if end <= start:
        end += 24 * 60
    return start, end


def _break_in_shift(brk: Break, shift: Shift) -> bool:
    s0, s1 = shift_span(shift)
    b0, b1 = _minutes(brk.start), _minutes(brk.end)
    if b1 <= b0:
        b1 += 24 * 60
    for shift_offset in (0, 24 * 60):  # a break after midnight inside a night shift
        if s0 <= b0 + shift_offset and b1 + shift_offset <= s1:
            if brk.days is None:
                return True
            # the break's days are calendar days; a night shift's after-midnight part falls on the next day
            day_shift = 1 if shift_offset else 0
            shift_days = {ALL_DAYS[(ALL_DAYS.index(d) + day_shift) % 7] for d in shift.days}
            if set(brk.days) & shift_days:
                return True
    return False


def _line_checks(cfg: LineConfig) -> Iterator[Problem]:
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        yield Problem("timezone", "unknown IANA time zone (e.g. Europe/Berlin, America/Chicago, UTC)", cfg.timezone)

    for pname, plc in cfg.plcs.items():
        kind = type(plc).__struct_config__.tag
        if kind == "modbus":
            if getattr(plc, "transport", "tcp") == "tcp" and not getattr(plc, "host", None):
                yield Problem(f"plcs.{pname}.host", "a Modbus TCP connection needs a host", None)
            if getattr(plc, "transport", "tcp") == "rtu" and not getattr(plc, "serial_port", None):
                yield Problem(f"plcs.{pname}.serial_port", "Modbus RTU needs a serial_port", None)
        if kind == "opcua":
            sec = plc.security  # type: ignore[union-attr]
            if sec.policy != "None" and sec.mode == "None":
                yield Problem(f"plcs.{pname}.security.mode", f"policy {sec.policy} needs Sign or SignAndEncrypt", "None")
            if sec.policy == "None" and sec.mode != "None":
                yield Problem(f"plcs.{pname}.security.policy", f"mode {sec.mode} needs a security policy", "None")
            if sec.policy != "None" and (not sec.certificate or not sec.private_key):
                yield Problem(f"plcs.{pname}.security", "a security policy needs certificate and private_key files")
            if plc.username and not plc.password_file:  # type: ignore[union-attr]
                yield Problem(f"plcs.{pname}.password_file", "username given without password_file", None)

    roles = cfg.signals.roles()
    for role, sig in roles.items():
        path = f"signals.{role}"
        if sig.plc not in cfg.plcs:
            names = list(cfg.plcs)
            close = difflib.get_close_matches(sig.plc, names, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f" (PLCs: {', '.join(names) or 'none'})"
            yield Problem(f"{path}.plc", f"no PLC of that name under `plcs`{hint}", sig.plc)
        if role in ("total_count", "good_count", "reject_count") and sig.type not in COUNTER_TYPES:
            yield Problem(f"{path}.type", f"a counter needs an integer type ({', '.join(COUNTER_TYPES)})", sig.type)
        if role in ("running", "blocked", "starved") and sig.type != "bool" and sig.type not in COUNTER_TYPES:
            yield Problem(f"{path}.type", "a run / interlock bit needs type bool (or an integer, 0 = false)", sig.type)
        if role == "fault_code" and sig.type not in COUNTER_TYPES:
            yield Problem(f"{path}.type", "a fault code needs an integer type", sig.type)
        if sig.type == "string" and sig.length is None and type(cfg.plcs.get(sig.plc)).__name__ in ("ModbusPlc", "S7Plc"):
            yield Problem(f"{path}.length", "a string on Modbus or S7 needs a length (characters)", None)

    if cfg.signals.total_count is None and cfg.signals.good_count is None:
        yield Problem("signals", "at least one of total_count and good_count is required")

    prod = cfg.production
    longest = max([prod.effective_stop_after_s(p) for p in prod.products] + [prod.effective_stop_after_s(None)])
    if prod.micro_stop_max_s <= longest:
        yield Problem(
            "production.micro_stop_max_s",
            f"must be greater than stop_after_s ({longest:g} s for the slowest product)",
            prod.micro_stop_max_s,
        )
    for value in prod.states:
        if prod.state_map == "none" and cfg.signals.state is None:
            yield Problem(f"production.states.{value}", "states are mapped but there is no `signals.state`", value)
            break

    names = [s.name for s in cfg.calendar.shifts]
    for i, sh in enumerate(cfg.calendar.shifts):
        if sh.start == sh.end:
            yield Problem(f"calendar.shifts[{i}].end", "a shift cannot end when it starts", sh.end)
        if names.count(sh.name) > 1:
            yield Problem(f"calendar.shifts[{i}].name", "shift names must be unique", sh.name)
        if not sh.days:
            yield Problem(f"calendar.shifts[{i}].days", "a shift needs at least one day", sh.days)
    for i, brk in enumerate(cfg.calendar.breaks):
        if brk.start == brk.end:
            yield Problem(f"calendar.breaks[{i}].end", "a break cannot end when it starts", brk.end)
            continue
        candidates = [s for s in cfg.calendar.shifts if brk.shift is None or s.name == brk.shift]
        if brk.shift is not None and not candidates:
            yield Problem(f"calendar.breaks[{i}].shift", "no shift of that name", brk.shift)
        elif not any(_break_in_shift(brk, s) for s in candidates):
            yield Problem(
                f"calendar.breaks[{i}]", "the break does not lie inside any shift", f"{brk.start}-{brk.end}"
            )

    for i, rule in enumerate(cfg.follow_up.quality):
        if type(rule).__name__ == "ProcessLimitsRule":
            sig_name = rule.signal  # type: ignore[union-attr]
            if sig_name not in cfg.signals.process:
                yield Problem(f"follow_up.quality[{i}].signal", "no such process signal under signals.process", sig_name)
            if rule.min is None and rule.max is None:  # type: ignore[union-attr]
                yield Problem(f"follow_up.quality[{i}]", "process_limits needs min, max or both")
            elif rule.min is not None and rule.max is not None and rule.min >= rule.max:  # type: ignore[union-attr]
                yield Problem(f"follow_up.quality[{i}].max", "max must be greater than min", rule.max)  # type: ignore[union-attr]


def _sync_checks(cfg: SyncConfig) -> Iterator[Problem]:
    if cfg.upstream.url.startswith("http://") and not cfg.upstream.allow_insecure_http:
        yield Problem(
            "upstream.url", "plain http sends records and the token in clear; use https or set allow_insecure_http: true",
            cfg.upstream.url,
        )
    if bool(cfg.upstream.client_certificate) != bool(cfg.upstream.client_key):
        yield Problem("upstream", "client_certificate and client_key go together (mTLS)")


# ---------------------------------------------------------------- public API


def _load(path: str | Path, tp: type[T], checks: Any, text: str | None = None) -> T:
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(file, [Problem("", "file not found")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(file, [Problem("", f"cannot read the file: {exc}")]) from None
    data, node = _parse_yaml(text, file)
    cfg = _convert(data, tp, file, node)
    problems = [
        Problem(p.path, p.message, p.value, _walk_node(node, _split_path("." + p.path) if p.path else []))
        for p in checks(cfg)
    ]
    if problems:
        raise ConfigError(file, problems)
    return cfg


def load_line_config(path: str | Path, text: str | None = None) -> LineConfig:
    """Read and validate a line config; raises ConfigError naming file, line, path and value."""
    return _load(path, LineConfig, _line_checks, text)


def load_sync_config(path: str | Path, text: str | None = None) -> SyncConfig:
    """Read and validate a sync agent config."""
    return _load(path, SyncConfig, _sync_checks, text)


def detect_kind(path: str | Path) -> str:
    """`line` or `sync`, from the top-level keys; for `check-config` on either kind of file."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except Exception:
        return "line"
    if isinstance(data, dict) and ("upstream" in data or "buffers" in data) and "plcs" not in data:
        return "sync"
    return "line"
