"""Run the status app with uvicorn inside the daemon's own event loop.

uvicorn's `Server.serve()` would install its own SIGINT/SIGTERM handlers and re-raise the
signal on exit; the daemon owns shutdown (cancellation of its TaskGroup), so that is turned
off here. The socket is bound before uvicorn starts so that a taken port is a clear `OSError`
at startup instead of uvicorn's `sys.exit(1)` from inside a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from edge.logs import get_logger
from edge.status.auth import split_listen

__all__ = ["bind", "serve"]


class _EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(listen: str) -> socket.socket:
    """A listening TCP socket for `HOST:PORT` (port 0: any free port)."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"status page cannot listen on {listen}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


async def serve(
    app: ASGIApp,
    listen: str | socket.socket,
    *,
    on_started: Callable[[str], None] | None = None,
    shutdown_timeout_s: float = 3.0,
) -> None:
    """Serve `app` until cancelled, then close connections gracefully and re-raise.

    `on_started` receives the base URL actually bound (useful with port 0).
    """
    sock = bind(listen) if isinstance(listen, str) else listen
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(max(shutdown_timeout_s, 1)),
    )
    server = _EmbeddedServer(config)
    log = get_logger(component="status")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        started = asyncio.create_task(server.started_event.wait())
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if server.started:
            log.info("status_page_started", url=url)
            if on_started is not None:
                on_started(url)
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, shutdown_timeout_s + 2)
        raise
    finally:
        if not task.done():
            task.cancel()
        sock.close()
