"""The per-line SQLite store: schema, migrations, append, outbox cursor, retention, size cap.

The edge daemon writes through `LineBuffer`; the sync agent reads through `Outbox` (its own
connection, in its own process).
"""

from buffer.linebuffer import EVICTION_ORDER, NEVER_EVICTED, LineBuffer
from buffer.outbox import Cursor, Lag, Outbox, OutboxRow, QuarantinedRecord
from buffer.schema import SCHEMA_VERSION, BufferFileError

__all__ = [
    "EVICTION_ORDER",
    "NEVER_EVICTED",
    "SCHEMA_VERSION",
    "BufferFileError",
    "Cursor",
    "Lag",
    "LineBuffer",
    "Outbox",
    "OutboxRow",
    "QuarantinedRecord",
]
