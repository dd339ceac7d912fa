"""structlog, configured once per process.

JSON lines when stderr is not a terminal (journald keeps them as they are), a readable console
on a terminal. Bind context once (`log.bind(line=..., plc=...)`); event names are snake_case
verbs (`plc_connected`).
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(level: str = "info", json: bool | None = None) -> None:
    """Set up structlog and the stdlib root logger (libraries log through it) once."""
    if json is None:
        json = not sys.stderr.isatty()
    lvl = getattr(logging, level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Protocol libraries are chatty at INFO (every connect, every subscription); keep them at
    # WARNING unless the user asks for debug.
    root.setLevel(lvl)
    for noisy in ("asyncua", "pymodbus", "pycomm3", "snap7", "cpppo", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING))


def get_logger(**bind: object) -> structlog.stdlib.BoundLogger:
    log: structlog.stdlib.BoundLogger = structlog.get_logger().bind(**bind)
    return log
