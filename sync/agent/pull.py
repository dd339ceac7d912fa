"""Pulling what the central store sends back to one line: reasons set there and line context.

After each upload round (at most every ``PULL_EVERY_S``) the agent asks the store for the
changes after the position it has reached (``GET /v1/reasons`` and ``GET /v1/context`` with
``since_seq``) and delivers them into the line buffer's inbox together with the new position,
in one transaction (`buffer.inbox.Inbox.deliver`): a crash in between pulls the same changes
again, and their keys (``reason:<seq>``, ``context:<seq>``) keep them once. The daemon applies
them. A failed pull is logged and tried again next round; it never holds up shipping.
"""

from __future__ import annotations

from typing import Any

import structlog

from buffer.inbox import Inbox, InboxKind
from sync.agent.uploader import Uploader

__all__ = ["CentralPuller"]

_ENDPOINTS: dict[InboxKind, tuple[str, str]] = {"reason": ("/v1/reasons", "reasons"), "context": ("/v1/context", "context")}


class CentralPuller:
    PAGE = 500

    def __init__(self, path: str, uploader: Uploader) -> None:
        self._path = path
        self._up = uploader
        self._inbox: Inbox | None = None
        self._log = structlog.get_logger().bind(buffer=path)
        self.pulled = 0

    async def close(self) -> None:
        if self._inbox is not None:
            await self._inbox.close()
            self._inbox = None

    async def pull(self, line: str) -> int:
        """Fetch and deliver every change after the stored positions; returns how many were new."""
        if self._inbox is None:
            self._inbox = await Inbox.open(self._path)
        new = 0
        for kind, (path, key) in _ENDPOINTS.items():
            while True:
                since = await self._inbox.since_seq(kind)
                doc = await self._up.get_json(path, {"line": line, "since_seq": since, "limit": self.PAGE})
                items: list[dict[str, Any]] = doc.get(key, [])
                last = int(doc.get("last_seq", since))
                if not items:
                    break
                n = await self._inbox.deliver(kind, [(f"{kind}:{it['seq']}", it) for it in items], last)
                new += n
                if n:
                    self._log.info("central_changes_pulled", kind=kind, line=line, new=n, since_seq=last)
                if len(items) < self.PAGE:
                    break
        self.pulled += new
        return new
