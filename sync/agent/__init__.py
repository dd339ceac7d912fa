"""The sync agent (`lineside sync`): ships every line buffer on this PC to the central store.

Modules: `wire` (batch bodies), `uploader` (HTTP, token, TLS, retries), `line` (one buffer's
ordered shipping and backfill), `status` (/api/status, /metrics), `agent` (discovery, CLI).
"""

from sync.agent.agent import SyncAgent, cli_sync
from sync.agent.line import LineShipper, LineStatus
from sync.agent.uploader import Answer, TokenError, Uploader, resolve_token_path
from sync.agent.wire import encode_batch

__all__ = [
    "Answer",
    "LineShipper",
    "LineStatus",
    "SyncAgent",
    "TokenError",
    "Uploader",
    "cli_sync",
    "encode_batch",
    "resolve_token_path",
]
