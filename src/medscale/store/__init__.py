"""The standard chunked store: layout, writer, reader, summary."""

from medscale.store.layout import LAYOUT_VERSION, ChannelInfo, RecordingInfo
from medscale.store.store import RecordingArrays, Store
from medscale.store.summary import StoreSummary, summarize_store

__all__ = [
    "LAYOUT_VERSION",
    "ChannelInfo",
    "RecordingArrays",
    "RecordingInfo",
    "Store",
    "StoreSummary",
    "summarize_store",
]
