"""The reference central store: `lineside store` (see README.md in this folder).

Receives batches from sync agents (`POST /v1/records`), keeps one row per (line, id) with the
highest rev, and answers the follow-up queries of RECORDS.md. SQLite or PostgreSQL.

Names are imported on first use, so `python -m sync.store.tokens` runs without loading
the HTTP stack (and without runpy's double-import warning).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.store.app import StoreSettings, create_app
    from sync.store.backend import Storage, StorageError, open_storage
    from sync.store.server import cli_store, running_store
    from sync.store.tokens import TokenEntry, hash_token, load_token_file, new_token, write_token_file

_WHERE = {
    "StoreSettings": "sync.store.app",
    "create_app": "sync.store.app",
    "Storage": "sync.store.backend",
    "StorageError": "sync.store.backend",
    "open_storage": "sync.store.backend",
    "cli_store": "sync.store.server",
    "running_store": "sync.store.server",
    "TokenEntry": "sync.store.tokens",
    "hash_token": "sync.store.tokens",
    "load_token_file": "sync.store.tokens",
    "new_token": "sync.store.tokens",
    "write_token_file": "sync.store.tokens",
}

__all__ = [
    "Storage",
    "StorageError",
    "StoreSettings",
    "TokenEntry",
    "cli_store",
    "create_app",
    "hash_token",
    "load_token_file",
    "new_token",
    "open_storage",
    "running_store",
    "write_token_file",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sync.store' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
