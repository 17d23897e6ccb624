"""A recording to predict on goes through the funnel's own per-channel conversion into a
scratch store, so the model reads it through the very data path it was trained on (same
resampling, quantisation, statistics, scaling and channel combinations)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscale.data.config import ChannelGroup
from medscale.errors import ChannelError
from medscale.ingest.convert import encode_channel
from medscale.io.signals import list_signal_labels, read_signals
from medscale.io.stages import UNKNOWN
from medscale.predict.channels import select_channels
from medscale.store.layout import ChannelInfo
from medscale.store.store import RecordingArrays, Store

SCRATCH_DATASET = "predict"


@dataclass
class PreparedNight:
    """Where the night was written, and what was taken from the source."""

    store: Store
    key: str
    n_epochs: int
    channels: dict[str, list[tuple[str, str]]]  # group -> (canonical name, source label)
    start_time_of_day: str | None
    warnings: list[str] = field(default_factory=list)


def prepare_night(
    path: str | Path,
    groups: tuple[ChannelGroup, ...],
    scratch: str | Path,
    *,
    overrides: dict[str, list[str]] | None = None,
    sfreq_hz: float = 128.0,
    epoch_length_s: float = 30.0,
    reader: str = "auto",
    reader_options: dict[str, Any] | None = None,
) -> PreparedNight:
    """Read ``path`` (any format the funnel reads), pick the channels for ``groups`` and write
    them, whole epochs from the start, as one recording of a scratch store at ``scratch``.
    ``reader_options`` go to the reader (a text signal needs ``{"sfreq_hz": ...}``)."""
    path = Path(path)
    options = dict(reader_options or {})
    labels = list_signal_labels(path, reader=reader)
    # A reader that cannot list labels cheaply reads the whole file once, here.
    whole = read_signals(path, reader=reader, **options) if labels is None else None
    chosen = select_channels(whole.labels if whole else labels, groups, overrides, source=str(path))
    wanted = sorted({label for pairs in chosen.values() for _, label in pairs})
    recording = whole or read_signals(path, wanted, reader=reader, **options)
    duration_s = min(recording.signal(label).duration_s for label in wanted)
    n_epochs = math.floor(duration_s / epoch_length_s + 1e-9)
    if n_epochs < 1:
        raise ChannelError(f"{path}: {duration_s:.1f} s of signal is shorter than one epoch")
    n_samples = round(n_epochs * epoch_length_s * sfreq_hz)
    names = list(dict.fromkeys(name for pairs in chosen.values() for name, _ in pairs))
    source_of = {name: label for pairs in chosen.values() for name, label in pairs}
    codes = np.empty((len(names), n_samples), dtype=np.int16)
    infos: list[ChannelInfo] = []
    warnings = list(recording.warnings)
    for row, name in enumerate(names):
        signal = recording.signal(source_of[name])
        info, warning = encode_channel(name, signal, source_of[name], sfreq_hz, 0, out=codes[row])
        infos.append(info)
        if warning:
            warnings.append(f"{name}: {warning}")
    store = Store.create(scratch)
    arrays = RecordingArrays(
        dataset=SCRATCH_DATASET,
        recording_id="night",
        subject="night",
        session="",
        sfreq_hz=sfreq_hz,
        epoch_length_s=epoch_length_s,
        signals=codes,
        hypnogram=np.full(n_epochs, UNKNOWN, dtype=np.int8),
        channels=infos,
        source_hash="",
        config_hash="",
        synthetic=recording.synthetic,
        metadata={"warnings": warnings},
    )
    info = store.write_recording(arrays)
    start = recording.start.time().isoformat() if recording.start else None
    return PreparedNight(store, info.key, n_epochs, chosen, start, warnings)
