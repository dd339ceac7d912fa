"""The record contract's wire form, the uploader (sync agent) and the reference central store.

Importing `sync` only loads the record types; the agent and the store live in their own
modules so the edge daemon never pulls in HTTP code it does not use.
"""

from sync.records import RECORD_TYPES, AnyRecord, Record

__all__ = ["RECORD_TYPES", "AnyRecord", "Record"]
