"""The `lineside` command.

Each subcommand's implementation lives in the package that owns it and is imported only when
that subcommand runs, so `lineside check-config` never loads numba or the protocol stacks.
Exit codes: 0 ok, 2 bad usage or bad config, 1 a runtime failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from edge import logs

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# subcommand -> "module:function"; the function takes the parsed argparse Namespace and
# returns an exit code.
HANDLERS: dict[str, str] = {
    "run": "edge.daemon:cli_run",
    "sync": "sync.agent:cli_sync",
    "replay": "edge.replay:cli_replay",
    "store": "sync.store:cli_store",
    "simulate": "drivers.sim:cli_simulate",
    "demo": "edge.demo:cli_demo",
    "check-config": "edge.cli:cli_check_config",
    "config": "edge.cli:cli_config",
}


def version() -> str:
    try:
        return metadata.version("lineside")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lineside",
        description="Edge daemon and sync agent: PLC signals to stops, micro-stops and OEE, shipped to the MOM store.",
    )
    p.add_argument("--version", action="version", version=f"lineside {version()}")
    p.add_argument("--log-level", choices=logs.LEVELS, default="info", help="log verbosity (default: info)")
    p.add_argument(
        "--log-format", choices=("auto", "json", "console"), default="auto",
        help="auto: JSON lines unless stderr is a terminal",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("run", help="run the edge daemon for one line", description="Run the per-line edge daemon.")
    s.add_argument("line_config", metavar="LINE.yaml")

    s = sub.add_parser("sync", help="run the sync agent", description="Ship every line buffer to the central store.")
    s.add_argument("sync_config", metavar="SYNC.yaml")

    s = sub.add_parser(
        "replay", help="compute records from recorded samples",
        description="Run recorded samples (CSV: timestamp,signal,value) through the live code path; "
        "write stop, state, kpi and event records as JSON lines.",
    )
    s.add_argument("line_config", metavar="LINE.yaml")
    s.add_argument("samples", metavar="SAMPLES.csv")
    s.add_argument("--out", metavar="FILE", help="write JSON lines here (default: stdout)")

    s = sub.add_parser(
        "store", help="run the reference central store",
        description="Serve the ingest protocol and follow-up queries (RECORDS.md).",
    )
    s.add_argument("--db", default="sqlite:///lineside-store.db", help="sqlite:///PATH or postgresql://...")
    s.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT (default 127.0.0.1:8090)")
    s.add_argument("--tokens", metavar="FILE", help="YAML: token_file or token sha256 -> lines it may write")
    s.add_argument("--max-body-mb", type=float, default=64.0, help="largest accepted request body")
    s.add_argument("--max-batch-records", type=int, default=100_000, help="most records accepted in one batch")

    s = sub.add_parser(
        "simulate", help="serve a simulated line over real OPC UA / Modbus / S7 / EtherNet/IP",
        description="Run a line simulator scenario on real protocol servers on this machine.",
    )
    s.add_argument("--scenario", default="demo", help="a shipped scenario name or a scenario YAML file")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--opcua-port", type=int, default=4840)
    s.add_argument("--modbus-port", type=int, default=5020)
    s.add_argument("--s7-port", type=int, default=0, help="also serve S7 on this port (0: off)")
    s.add_argument("--enip-port", type=int, default=0, help="also serve EtherNet/IP on this port (0: off)")
    s.add_argument("--protocol", choices=["opcua", "modbus", "s7", "enip"], default=None,
                   help="which served protocol the printed line config reads (default: the first served)")
    s.add_argument("--speed", type=float, default=1.0, help="time factor (2.0 = twice as fast)")

    s = sub.add_parser(
        "demo", help="simulator + edge daemon + sync agent + store, on embedded defaults",
        description="Start a whole simulated line and print where the status page is.",
    )
    s.add_argument("--data-dir", default="demo-data")
    s.add_argument("--status-port", type=int, default=8080)

    s = sub.add_parser(
        "check-config", help="validate a line or sync config",
        description="Validate config files; print a summary or every error (exit 0 / 2).",
    )
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--kind", choices=("auto", "line", "sync"), default="auto")

    s = sub.add_parser("config", help="config tools", description="Config tools.")
    csub = s.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    sc = csub.add_parser("schema", help="print the JSON Schema (for editor autocomplete)")
    sc.add_argument("which", nargs="?", choices=("line", "sync"), default="line")
    return p


def _resolve(command: str) -> Callable[[argparse.Namespace], int] | None:
    modname, func = HANDLERS[command].split(":")
    try:
        module = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name == modname:
            return None
        raise
    handler: Callable[[argparse.Namespace], int] | None = getattr(module, func, None)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    fmt = {"auto": None, "json": True, "console": False}[args.log_format]
    logs.configure(args.log_level, json=fmt)
    handler = _resolve(args.command)
    if handler is None:
        print(f"lineside {args.command}: not yet available in this version", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------- config commands


def _summary_line(cfg: object) -> str:
    from config import LineConfig

    assert isinstance(cfg, LineConfig)
    lines = [
        f"line     {cfg.line.site}/{cfg.line.area}/{cfg.line.id} ({cfg.line.machine})"
        + (f" - {cfg.line.name}" if cfg.line.name else ""),
        f"timezone {cfg.timezone}",
        "plcs     " + ", ".join(f"{n} ({type(p).__struct_config__.tag})" for n, p in cfg.plcs.items()),
    ]
    roles = cfg.signals.roles()
    lines.append(f"signals  {len(roles)}: " + ", ".join(f"{r}@{s.plc}" for r, s in roles.items()))
    shifts = ", ".join(f"{s.name} {s.start}-{s.end} {','.join(s.days)}" for s in cfg.calendar.shifts)
    lines.append(f"shifts   {shifts or 'none (all time is scheduled)'}")
    lines.append(f"breaks   {len(cfg.calendar.breaks)}")
    lines.append(
        f"products {len(cfg.production.products)} (default ideal cycle {cfg.production.ideal_cycle_time_s:g} s); "
        f"reasons {len(cfg.production.reasons)}"
    )
    lines.append(f"buffer   {cfg.buffer.path} (max {cfg.buffer.max_size_mb:g} MB)")
    lines.append(f"status   http://{cfg.status.listen}/")
    return "\n".join(lines)


def _summary_sync(cfg: object) -> str:
    from config import SyncConfig

    assert isinstance(cfg, SyncConfig)
    return "\n".join(
        [
            f"buffers  {cfg.buffers}",
            f"upstream {cfg.upstream.url} ({cfg.upstream.encoding}, {cfg.upstream.compression})",
            f"batch    {cfg.batch.max_records} records / {cfg.batch.max_bytes} bytes / {cfg.batch.linger_ms} ms",
            f"status   http://{cfg.status.listen}/",
        ]
    )


def cli_check_config(args: argparse.Namespace) -> int:
    from config import ConfigError, detect_kind, load_line_config, load_sync_config

    worst = EXIT_OK
    for file in args.files:
        kind = detect_kind(file) if args.kind == "auto" else args.kind
        try:
            if kind == "sync":
                summary = _summary_sync(load_sync_config(file))
            else:
                summary = _summary_line(load_line_config(file))
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            worst = EXIT_USAGE
            continue
        print(f"{file}: ok ({kind} config)")
        print("  " + summary.replace("\n", "\n  "))
    return worst


def cli_config(args: argparse.Namespace) -> int:
    from config import line_config_schema, sync_config_schema

    schema = line_config_schema() if args.which == "line" else sync_config_schema()
    json.dump(schema, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
