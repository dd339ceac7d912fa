"""Running the store: `lineside store` and `running_store()` for tests and embedding.

The listening socket is bound before uvicorn starts, so `--listen 127.0.0.1:0` works: the
store prints `lineside store listening on http://HOST:PORT` on stdout once it accepts
requests (a parent process reads the port from there).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from edge.logs import get_logger
from sync.store.app import MiB, StoreSettings, create_app
from sync.store.backend import StorageError, open_storage
from sync.store.tokens import TokenEntry, TokenError, load_token_file

__all__ = ["cli_store", "parse_listen", "running_store"]

EXIT_USAGE = 2
FAULT_ENV = "LINESIDE_STORE_FAULT"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` -> (host, port); ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    host = host.strip("[]")
    try:
        num = int(port)
    except ValueError:
        raise ValueError(f"--listen {text!r}: port is not a number") from None
    if not 0 <= num <= 65535:
        raise ValueError(f"--listen {text!r}: port out of range")
    return host, num


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the real address once startup (DB open) succeeded."""

    announce: str | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.announce:
            print(self.announce, flush=True)
        if self.started:
            from edge.notify import notify_ready

            notify_ready("store: serving")  # lineside-store.service is Type=notify


def _config(app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http="h11",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        # Header blocks beyond this are refused by h11 before the app sees them.
        h11_max_incomplete_event_size=64 * 1024,
    )


def _fault_from_env() -> int | None:
    raw = os.environ.get(FAULT_ENV, "")
    if not raw:
        return None
    key, _, value = raw.partition("=")
    if key != "exit_after_commit" or not value.isdigit() or int(value) < 1:
        raise ValueError(f"{FAULT_ENV}={raw!r}: expected exit_after_commit=N (N >= 1)")
    return int(value)


def cli_store(args: argparse.Namespace) -> int:
    """`lineside store --db URL --listen HOST:PORT --tokens FILE [--max-body-mb N]`."""
    log = get_logger(component="store")
    try:
        if not args.tokens:
            raise ValueError("--tokens FILE is required: the store accepts no request without a token "
                             "(see sync/store/README.md, python -m sync.store.tokens new)")
        tokens = load_token_file(args.tokens)
        if args.max_body_mb <= 0:
            raise ValueError("--max-body-mb must be positive")
        max_records = int(getattr(args, "max_batch_records", 100_000))
        if max_records < 1:
            raise ValueError("--max-batch-records must be at least 1")
        settings = StoreSettings(
            max_body_bytes=int(args.max_body_mb * MiB),
            max_batch_records=max_records,
            exit_after_commit=_fault_from_env(),
        )
        host, port = parse_listen(args.listen)
        storage = open_storage(args.db)
    except (ValueError, TokenError, StorageError) as exc:
        print(f"lineside store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"lineside store: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    server = _Server(_config(create_app(storage, tokens, settings)))
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    server.announce = f"lineside store listening on http://{shown}:{bound_port}"
    log.info("store_starting", listen=f"{shown}:{bound_port}", db=args.db.split("://")[0], tokens=len(tokens))
    server.run(sockets=[sock])
    if not server.started:
        log.error("store_start_failed")
        return 1
    return 0


@contextmanager
def running_store(
    db_url: str,
    tokens: Mapping[str, TokenEntry] | str | os.PathLike[str],
    settings: StoreSettings | None = None,
    timeout_s: float = 30.0,
) -> Iterator[str]:
    """A store serving on 127.0.0.1 (ephemeral port) in a thread; yields its base URL."""
    entries = dict(tokens) if isinstance(tokens, Mapping) else load_token_file(Path(tokens))
    storage = open_storage(db_url)
    server = _Server(_config(create_app(storage, entries, settings)))
    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="store", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise StorageError(f"store did not start ({db_url.split('://')[0]}); see the log")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
