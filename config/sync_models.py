"""The sync agent's config (/etc/lineside/sync.yaml) as msgspec Structs."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, field

from config.models import Positive, StatusConfig, _Base


class Upstream(_Base):
    url: Annotated[str, Meta(pattern=r"^https?://", description="https://host[:port][/prefix]")]
    token_file: str | None = None
    ca_file: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    encoding: Literal["msgpack", "json"] = "msgpack"
    compression: Literal["gzip", "none"] = "gzip"
    allow_insecure_http: bool = False
    timeout_s: Positive = 30.0


class Batch(_Base):
    max_records: Annotated[int, Meta(ge=1, le=1_000_000)] = 5000
    max_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    linger_ms: Annotated[int, Meta(ge=0, le=600_000)] = 500


class Retry(_Base):
    initial_s: Positive = 0.5
    max_s: Positive = 300.0


class Backfill(_Base):
    """After an outage, the backlog drains at most this fast so live records go first."""

    max_records_per_s: Annotated[float, Meta(gt=0)] = 20_000.0
    live_window_s: Positive = 60.0


class SyncConfig(_Base):
    buffers: Annotated[str, Meta(min_length=1, description="glob of line buffer files")]
    upstream: Upstream
    batch: Batch = field(default_factory=Batch)
    retry: Retry = field(default_factory=Retry)
    backfill: Backfill = field(default_factory=Backfill)
    status: StatusConfig = field(default_factory=lambda: StatusConfig(listen="127.0.0.1:8081"))
    host: str | None = None


def sync_config_schema() -> dict[str, object]:
    return msgspec.json.schema(SyncConfig)
