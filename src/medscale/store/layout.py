"""The store layout, its version, and the records that describe a stored recording.

Layout version 1 (see ``docs/design/store.md``)::

    STORE/
      zarr.json                     root group; attributes["medscale_store"]["layout_version"]
      recordings/<dataset>/<rec>/   one Zarr v3 group per recording
        signals                     int16 (channels, samples), one shard, zstd; value * scale
        hypnogram                   int8 (epochs,), AASM codes, UNKNOWN = -1
        stage_epochs                int32 epoch indices grouped by stage (see stage_offsets)
      commits/<dataset>/<rec>.json  the commit record, written last: no record, no recording
      reports/                      ingest reports (JSON + Markdown)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LAYOUT_VERSION = 1
KNOWN_LAYOUT_VERSIONS = (1,)
STORE_ATTRIBUTE = "medscale_store"
DEFAULT_SFREQ_HZ = 128.0
EPOCH_LENGTH_S = 30.0


@dataclass(frozen=True)
class ChannelInfo:
    """One stored channel: its canonical name, where it came from, and its statistics."""

    name: str
    type: str
    source: str
    source_sfreq_hz: float
    unit: str
    scale: float
    median: float
    iqr: float


@dataclass(frozen=True)
class RecordingInfo:
    """The commit record of one stored recording (small; read without opening the arrays).

    ``stage_offsets[k]:stage_offsets[k+1]`` slices ``stage_epochs`` for stage code ``k``
    (W, N1, N2, N3, REM), so a sampler never scans a hypnogram.
    """

    dataset: str
    recording_id: str
    subject: str
    session: str
    sfreq_hz: float
    epoch_length_s: float
    n_epochs: int
    channels: tuple[ChannelInfo, ...]
    stage_counts: dict[str, int]
    stage_offsets: tuple[int, ...]
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
        return round(self.n_epochs * self.epoch_length_s * self.sfreq_hz)

    @property
    def duration_h(self) -> float:
        return self.n_epochs * self.epoch_length_s / 3600

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingInfo:
        data = dict(data)
        data["channels"] = tuple(ChannelInfo(**c) for c in data["channels"])
        data["stage_offsets"] = tuple(data["stage_offsets"])
        return cls(**data)
