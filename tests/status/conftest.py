from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.types import ASGIApp

from edge.status import serve
from tests.status.line_data import RunningLine


@asynccontextmanager
async def running_app(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 on a free port with the real uvicorn server; yield its URL."""
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, "127.0.0.1:0", on_started=url.set_result))
    try:
        yield await asyncio.wait_for(url, 10)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


@pytest.fixture
def line() -> RunningLine:
    return RunningLine(now=time.time())
