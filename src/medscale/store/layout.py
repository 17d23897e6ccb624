"""The store layout, its version, and the records that describe a stored record.

Layout version 2 (see ``docs/design/store.md`` and ``docs/design/tasks.md``)::

    STORE/
      zarr.json                     root group; attributes["medscale_store"] =
                                    {layout_version: 2, created_by, task: <Task.to_json()>}
      recordings/<dataset>/<rec>/   one Zarr v3 group per record; its arrays carry their
                                    dimension names (zarr ``dimension_names``):
        signals          (channel, time)         int16, value * channel scale, 1 shard
        image            (channel, y, x)         any numeric dtype, 1 shard
        volume           (channel, z, y, x)      any numeric dtype, 1 shard, 3-D chunks
        segment_labels   (segment,)              int8 class codes, unknown = -1
        events           (event, field)          float64 onset_s, offset_s, channel, class
        image_labels     (class,)                uint8 multi-hot
        mask             (z, y, x)               uint8 class per voxel, chunked as volume
        class_segments   (entry,)                int32 segment indices grouped by class
        class_voxels     (entry, axis)           int32 (z, y, x) per class, <= 10,000 each
      commits/<dataset>/<rec>.json  the commit record, written last: no record, no data
      reports/                      ingest reports (JSON + Markdown)

A record holds its task's input array and label array (``Task.input_kind`` and
``Task.label_array``), plus ``class_segments`` (segmented tasks) or ``class_voxels`` (masks),
which the store derives so that samplers find each class without reading labels.

Version 1 (sleep only: ``hypnogram``, ``stage_epochs``, ``RecordingInfo.n_epochs``) is
migrated in place by ``medscale store migrate STORE`` (`medscale.store.migrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LAYOUT_VERSION = 2
KNOWN_LAYOUT_VERSIONS = (2,)
STORE_ATTRIBUTE = "medscale_store"
DEFAULT_SFREQ_HZ = 128.0
#: sleep's scoring segment (the AASM "30-s epoch")
SLEEP_SEGMENT_S = 30.0

#: every array name a record may hold, with its dimension names
ARRAY_DIMS: dict[str, tuple[str, ...]] = {
    "signals": ("channel", "time"),
    "image": ("channel", "y", "x"),
    "volume": ("channel", "z", "y", "x"),
    "segment_labels": ("segment",),
    "events": ("event", "field"),
    "image_labels": ("class",),
    "mask": ("z", "y", "x"),
    "class_segments": ("entry",),
    "class_voxels": ("entry", "axis"),
}
#: arrays the store derives from the labels (never handed in by a writer)
DERIVED_ARRAYS: tuple[str, ...] = ("class_segments", "class_voxels")


@dataclass(frozen=True)
class ChannelInfo:
    """One stored channel: its canonical name, where it came from, and its statistics.

    For images and volumes a channel is a colour or modality plane; ``scale`` converts stored
    values to physical ones (1.0 when they already are).
    """

    name: str
    type: str
    source: str
    source_sfreq_hz: float
    unit: str
    scale: float
    median: float
    iqr: float


@dataclass(frozen=True)
class ArrayInfo:
    """One stored array: its dimension names, shape and dtype (as in its zarr.json)."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class RecordingInfo:
    """The commit record of one stored record (small; read without opening the arrays).

    ``class_offsets[k]:class_offsets[k+1]`` slices ``class_segments`` for class code ``k``, so
    a sampler never scans labels. ``n_segments`` is 0 for images and volumes; ``sfreq_hz``
    and ``segment_s`` are None there, ``spacing`` (mm per voxel, one per spatial dimension)
    is None for signals.
    """

    dataset: str
    recording_id: str
    subject: str
    session: str
    arrays: dict[str, ArrayInfo]
    channels: tuple[ChannelInfo, ...]
    sfreq_hz: float | None
    segment_s: float | None
    n_segments: int
    spacing: tuple[float, ...] | None
    class_counts: dict[str, int]
    class_offsets: tuple[int, ...]
    content_hash: str
    source_hash: str
    config_hash: str
    synthetic: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.recording_id}"

    @property
    def n_samples(self) -> int:
        """Samples per channel of ``signals`` (0 when the record has none)."""
        signals = self.arrays.get("signals")
        return signals.shape[1] if signals is not None else 0

    @property
    def duration_h(self) -> float:
        return self.n_segments * (self.segment_s or 0.0) / 3600

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingInfo:
        data = dict(data)
        data["channels"] = tuple(ChannelInfo(**c) for c in data["channels"])
        data["arrays"] = {
            name: ArrayInfo(tuple(a["dims"]), tuple(a["shape"]), a["dtype"])
            for name, a in data["arrays"].items()
        }
        data["class_offsets"] = tuple(data["class_offsets"])
        if data.get("spacing") is not None:
            data["spacing"] = tuple(data["spacing"])
        return cls(**data)
