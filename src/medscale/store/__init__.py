"""The standard chunked store: layout, writer, reader, migration, summary."""

from medscale.store.layout import LAYOUT_VERSION, ArrayInfo, ChannelInfo, RecordingInfo
from medscale.store.migrate import MigrationReport, migrate_store
from medscale.store.store import Record, Store
from medscale.store.summary import StoreSummary, summarize_store

__all__ = [
    "LAYOUT_VERSION",
    "ArrayInfo",
    "ChannelInfo",
    "MigrationReport",
    "Record",
    "RecordingInfo",
    "Store",
    "StoreSummary",
    "migrate_store",
    "summarize_store",
]
